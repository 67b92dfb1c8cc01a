"""How stable is the ranking a proxy is measured against? Kendall tau between the trainings of two proxy checks.

Two checks of the same networks (matched by architecture) with references of different length tell whether the
networks' order at one training length predicts their order at another: a short proxy cannot be expected to
rank a 5x longer training better than a reference ranks a 2x longer one.

    python benchmarks/reference_stability.py A.records B.records [--out FILE.json]

Every training kind of both checks (A:reference, A:proxy, A:alt5, B:reference, ...) is averaged over its seeds;
each pair of kinds gets its tau and a 95% bootstrap interval over the networks.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from patsearch.io import atomic_write_json  # noqa: E402
from patsearch.proxycheck.options import job_settings  # noqa: E402
from patsearch.proxycheck.plan import arch_key  # noqa: E402
from patsearch.ranking import bootstrap_interval, kendall_tau, pooled_std  # noqa: E402
from patsearch.search.jobs import RecordStore  # noqa: E402


def load_scores(folder: Path, label: str) -> tuple[dict[str, dict[str, list[float]]], dict[str, str]]:
    """{kind label: {architecture json: [top-1 per seed]}} of one check's records, and its settings per kind."""
    plan = json.loads((folder / "plan.json").read_text())
    arch_of = {row["id"]: arch_key(row["arch"]) for row in plan["plan"]}
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in RecordStore(folder).load().values():
        if record.get("top1") is not None and record.get("arch_id") in arch_of:
            scores[f"{label}:{record['kind']}"][arch_of[record["arch_id"]]].append(100 * record["top1"])
    described = {f"{label}:{kind}": f"{v['epochs']} ep, {v['resolution']} px"
                 for kind, v in job_settings(plan["settings"]).items()}
    return scores, described


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checks", nargs=2, type=Path, help="two .records folders of proxy-check runs")
    parser.add_argument("--kinds", default="", help="comma-separated kinds to compare (default: all)")
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    args = parser.parse_args(argv)
    scores, described = {}, {}
    for folder, label in zip(args.checks, "AB", strict=True):
        if not (folder / "plan.json").is_file():
            parser.error(f"{folder}: no plan.json; give the .records folder of a proxy-check")
        s, d = load_scores(folder, label)
        scores.update(s)
        described.update(d)
    wanted = [k for k in args.kinds.split(",") if k] or sorted(scores)
    unknown = [k for k in wanted if k not in scores]
    if unknown:
        parser.error(f"no trainings of {', '.join(unknown)}; there are {', '.join(sorted(scores))}")
    common = sorted(set.intersection(*(set(scores[k]) for k in wanted)))
    if len(common) < 3:
        parser.error(f"only {len(common)} networks are in every kind; the checks must share their networks")
    means = {k: [float(np.mean(scores[k][a])) for a in common] for k in wanted}
    rows = []
    for a, b in itertools.combinations(wanted, 2):
        ci = bootstrap_interval(means[a], means[b])
        rows.append({"a": a, "b": b, "kendall_tau": round(kendall_tau(means[a], means[b]), 4),
                     "ci95": None if ci is None else [round(v, 4) for v in ci]})
        print(f"{a:>14} ({described.get(a, '?')}) vs {b:>14} ({described.get(b, '?')}): tau "
              f"{rows[-1]['kendall_tau']:.3f}" + ("" if ci is None else f" [{ci[0]:.2f}, {ci[1]:.2f}]"))
    spread = {k: {"between_networks_sd": round(float(np.std(means[k], ddof=1)), 3),
                  "seed_sd": pooled_std([scores[k][a] for a in common]),
                  "seeds": min(len(scores[k][a]) for a in common)} for k in wanted}
    for k, v in spread.items():
        seed = "n/a" if v["seed_sd"] is None else f"{v['seed_sd']:.3f}"
        print(f"{k:>14}: networks sd {v['between_networks_sd']:.3f} points, seed sd {seed} points "
              f"({v['seeds']} seeds)")
    if args.out:
        atomic_write_json(args.out, {"networks": len(common), "pairs": rows, "spread": spread,
                                     "settings": {k: described.get(k) for k in wanted}}, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

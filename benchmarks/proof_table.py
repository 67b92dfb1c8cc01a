"""The search proof's table: each network's rung scores in the study, its reference top-1 per seed, and its
measured latency or throughput, against one baseline (mean difference and its standard error).

    python benchmarks/proof_table.py --runs RUNS [--study mf-cpu] --net mf=RUNS/mf-cpu/rank1.yaml \\
        --net patnet_t1=patnet_t1 --net sf=docs/search/proof/holdout-tpe-best.yaml --baseline patnet_t1 \\
        [--ref-dir RUNS/ref] [--epochs 100] [--bench bench.json] [--out table.md]

A network is a label and its source: an architecture file (a search's rank/best file names its trial, which links
it to the study's rung scores) or a named variant (a baseline enqueued in the study). References are
``<ref-dir>/<label>-s<seed>/metrics.json`` as ``benchmarks/mf_proof.sh reference`` writes them; a training short
of ``--epochs`` is shown with its epoch count and left out of the mean. ``--bench`` is ``patsearch bench --format
json`` output whose ``model`` column is the same source string (``--models a.yaml,patnet_t1``).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass
class Network:
    label: str
    source: str
    arch: dict
    trial: int | None = None  # in the study, when the source says so (or a baseline enqueued in it)
    rungs: list[tuple[float, ...]] = field(default_factory=list)  # top-1 by seed, rung 0 first (%)
    predicted: float | None = None
    refs: list[tuple[int, float, int]] = field(default_factory=list)  # (seed, final top-1 %, epochs)
    measured: float | None = None

    def complete(self, epochs: int) -> list[float]:
        return [t for _, t, e in self.refs if e >= epochs]


def load_network(label: str, source: str) -> Network:
    """An architecture file (with its ``search:`` block when a search wrote it), a variant or a FasterNet point."""
    from patsearch.arch import FASTERNET_POINTS, ArchError, resolve_arch

    trial = None
    if source.endswith((".yaml", ".yml")) and Path(source).is_file():
        doc = yaml.safe_load(Path(source).read_text())
        search = doc.get("search") if isinstance(doc, dict) else None
        trial = search.get("trial") if isinstance(search, dict) else None
    try:
        arch = FASTERNET_POINTS.get(source) or resolve_arch(source)
    except ArchError as exc:
        raise SystemExit(f"--net {label}={source}: {exc}") from None
    return Network(label, source, arch.to_dict(), trial)


def _structure(arch: dict | None) -> dict:
    """What makes two architectures the same network here: not the name, the classifier's classes or the drop-path
    rate (the search trains its baselines without drop path)."""
    return {k: v for k, v in (arch or {}).items() if k not in ("name", "num_classes", "drop_path_rate")}


def attach_study(nets: list[Network], storage: str, study_name: str, key: str | None) -> None:
    """Each network's rung scores (rung 0: the trial's own proxy score) and predicted metric from the study: by the
    trial its file names, else by the baseline it is."""
    import optuna

    from patsearch.search.results import rows

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_rows = rows(optuna.load_study(study_name=study_name, storage=storage))
    by_number = {r.number: r for r in study_rows}
    by_baseline = {r.baseline: r for r in study_rows if r.baseline}
    for net in nets:
        row = by_number.get(net.trial) if net.trial is not None else by_baseline.get(net.source)
        if row is None or _structure(row.arch) != _structure(net.arch):  # another study's, or never trained
            net.trial = None
            continue
        net.trial = row.number
        net.rungs = [(100 * row.top1,)] if row.top1 is not None else []
        net.rungs += [tuple(100 * s for s in row.rung_scores[k]) for k in sorted(row.rung_scores)]
        if key is not None:
            net.predicted = row.predicted.get(key)
        elif row.predicted:
            net.predicted = next(iter(row.predicted.values()))


def attach_references(nets: list[Network], ref_dir: Path) -> None:
    for net in nets:
        for metrics in sorted(ref_dir.glob(f"{net.label}-s*/metrics.json")):
            seed = metrics.parent.name[len(net.label) + 2:]
            if not seed.isdigit():  # another label that starts with this one
                continue
            history = json.loads(metrics.read_text()).get("history") or []
            if history and history[-1].get("top1") is not None:
                net.refs.append((int(seed), float(history[-1]["top1"]), len(history)))


def attach_bench(nets: list[Network], bench: dict) -> str:
    """Each network's measured value in the deployment (fused) form; returns the metric's name."""
    values = {r["model"]: r["value"] for r in bench["rows"] if r["form"] == "fused" and r["value"] is not None}
    for net in nets:
        net.measured = values.get(net.source)
    return bench["metric"]


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def render(nets: list[Network], *, epochs: int, baseline: str | None, metric: str | None,
           rung_epochs: list[int] | None) -> str:
    from patsearch.ranking import pooled_std

    n_rungs = max((len(n.rungs) for n in nets), default=0)
    rung_names = [f"rung {k}" + (f" ({rung_epochs[k]} ep)" if rung_epochs and k < len(rung_epochs) else "")
                  for k in range(n_rungs)]
    unit = "latency (ms)" if metric == "latency_ms" else "throughput (img/s)" if metric else None
    base = next((n for n in nets if n.label == baseline), None)
    head = ["network", "architecture", *rung_names, f"{epochs}-epoch top-1 by seed", "mean ± sd"]
    if base is not None:
        head.append(f"- {base.label} (± se)")
    if unit:
        head += [f"measured {unit}", f"/ {base.label}'s" if base is not None else "ratio"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    pooled = pooled_std([n.complete(epochs) for n in nets])
    for net in nets:
        a = net.arch
        desc = (f"embed {a['embed_dim']}, depths {'-'.join(map(str, a['depths']))}, "
                f"{'/'.join(a['mixers'])}, PAT_sp {'/'.join(a['spatial'])}, n_div {a['n_div']}, "
                f"mlp {a['mlp_ratio']:g}, {a['act']}")
        label = net.label + (f" (trial {net.trial})" if net.trial is not None else "")
        cells = [label, desc]
        for k in range(n_rungs):
            scores = net.rungs[k] if k < len(net.rungs) else ()
            cells.append(" / ".join(f"{s:.2f}" for s in scores) if scores else "-")
        done = net.complete(epochs)
        cells.append(", ".join(f"s{s} {t:.2f}" + ("" if e >= epochs else f" ({e} ep)")
                               for s, t, e in sorted(net.refs)) or "-")
        if done:
            m, sd = mean_sd(done)
            cells.append(f"**{m:.2f}** ± {sd:.2f} ({len(done)})" if not math.isnan(sd) else f"{m:.2f} (1)")
        else:
            cells.append("-")
        if base is not None:
            other = base.complete(epochs)
            if done and other and net is not base:
                # a network trained on one seed has no sd of its own: it takes the seed-to-seed sd pooled over
                # the networks trained on several
                sd1, sd2 = (statistics.stdev(v) if len(v) > 1 else pooled for v in (done, other))
                diff = statistics.mean(done) - statistics.mean(other)
                cells.append(f"{diff:+.2f}" if sd1 is None or sd2 is None else
                             f"{diff:+.2f} ± {math.sqrt(sd1 ** 2 / len(done) + sd2 ** 2 / len(other)):.2f}")
            else:
                cells.append("-")
        if unit:
            cells.append("-" if net.measured is None else f"{net.measured:.2f}" if metric == "latency_ms"
                         else f"{net.measured:.0f}")
            ref = base.measured if base is not None else None
            cells.append("-" if net.measured is None or not ref else f"{net.measured / ref:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True, help="the runs folder that holds <study>/study.db and ref/")
    ap.add_argument("--study", help="the search's study in RUNS (without it: references and measurements only)")
    ap.add_argument("--net", action="append", required=True, metavar="LABEL=SOURCE",
                    help="a network: an architecture file or a variant name; repeatable, in table order")
    ap.add_argument("--baseline", help="the label the others are compared with")
    ap.add_argument("--ref-dir", help="reference trainings (default: RUNS/ref)")
    ap.add_argument("--epochs", type=int, default=100, help="a reference's full length")
    ap.add_argument("--rung-epochs", help="the study's rungs, e.g. 5,15,45 (for the column names)")
    ap.add_argument("--bench", help="patsearch bench --format json output measuring the same sources")
    ap.add_argument("--predicted-key", help="the study's predicted metric to show (default: its first)")
    ap.add_argument("--out", help="also write the table here")
    args = ap.parse_args(argv)

    nets = []
    for spec in args.net:
        label, sep, source = spec.partition("=")
        if not (sep and label and source):
            raise SystemExit(f"--net {spec!r}: give LABEL=SOURCE, e.g. patnet_t1=patnet_t1")
        nets.append(load_network(label, source))
    if args.baseline is not None and args.baseline not in {n.label for n in nets}:
        labels = ", ".join(n.label for n in nets)
        raise SystemExit(f"--baseline {args.baseline}: not one of the --net labels ({labels})")
    runs = Path(args.runs)
    if args.study is not None:
        db = runs / args.study / "study.db"
        if not db.is_file():
            raise SystemExit(f"no study database at {db}; pass the runs folder that holds {args.study}/study.db")
        attach_study(nets, f"sqlite:///{db}", args.study, args.predicted_key)
    attach_references(nets, Path(args.ref_dir) if args.ref_dir else runs / "ref")
    metric = attach_bench(nets, json.loads(Path(args.bench).read_text())) if args.bench else None
    rung_epochs = [int(e) for e in args.rung_epochs.split(",")] if args.rung_epochs else None
    table = render(nets, epochs=args.epochs, baseline=args.baseline, metric=metric, rung_epochs=rung_epochs)
    print(table, end="")
    if args.out:
        from patsearch.io import atomic_write_text

        atomic_write_text(Path(args.out), table)


if __name__ == "__main__":
    main()

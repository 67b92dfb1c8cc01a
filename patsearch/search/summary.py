"""A search's summary, on screen and as ``summary.md`` / ``summary.json``: the best trials against the baselines.

It counts trial states without calling infeasible proposals complete, gives every score its noise
(:class:`~patsearch.search.results.Noise`), says whether the lead over the best baseline is inside that noise,
states the proxy's measured fidelity and warns when the data is synthetic. Files are written to a temp name and
renamed.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from patsearch.io import atomic_write_text
from patsearch.ranking import describe_figure, describe_interval, describe_seed_std, kendall_tau
from patsearch.search.objective import ATTR_BASELINE, ATTR_COLLAPSE, ATTR_RUNG, ATTR_RUNG_PARENT
from patsearch.search.results import (
    Row,
    best_row,
    budget_use,
    constraints_of,
    finished,
    lead,
    noise_of,
    rows,
    rung_se,
    shown_rows,
    state_counts,
    validation_size,
)
from patsearch.search.rungs import rung_report


def _fmt_count(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= unit:
            return f"{n / unit:.3g}{suffix}"
    return str(n)


def describe_counts(counts: dict[str, int]) -> str:
    order = ("complete", "pruned", "running", "waiting", "fail", "infeasible")
    labels = {"infeasible": "infeasible (not trained)", "fail": "failed",
              "re-trained": "re-trainings at longer rungs"}
    candidates = {k: v for k, v in counts.items() if k != "re-trained"}
    parts = [f"{counts[k]} {labels.get(k, k)}"
             for k in sorted(candidates, key=lambda k: order.index(k) if k in order else len(order)) if counts[k]]
    text = f"{sum(candidates.values())} candidates: " + ", ".join(parts)
    return text + (f"; {counts['re-trained']} {labels['re-trained']}" if counts.get("re-trained") else "")


def _fmt_top1(top1: float | None, se: float | None, seeds: int = 1) -> str:
    if top1 is None:
        return "-"
    return (f"{100 * top1:.2f}%" + ("" if se is None else f" ± {se:.2f}")
            + (f" ({seeds} seeds)" if seeds > 1 else ""))


def summary_table(study, *, top: int = 5, title: str | None = None, fidelity=None):
    """A rich table: the best trials, then every baseline, with proxy top-1 ± its standard error (points),
    predictions, the share of the budget used, params and FLOPs."""
    from rich.table import Table

    cons = constraints_of(study)
    rs = rows(study)
    shown, baselines = shown_rows(rs, top)
    noise = noise_of(study, fidelity, rs)
    table = Table(title=title or f"study {study.study_name}: " + " AND ".join(c.describe() for c in cons),
                  caption=describe_counts(state_counts(study)) + f"; ± = 1 standard error ({noise.source()})")
    table.add_column("trial", justify="right")
    table.add_column("source")
    table.add_column("proxy top-1", justify="right")
    for c in cons:
        table.add_column(f"pred. {c.label()}", justify="right")
    if cons:
        table.add_column(f"of {cons[0].device} budget", justify="right")
    table.add_column("params", justify="right")
    table.add_column("FLOPs", justify="right")
    table.add_column("res", justify="right")
    table.add_column("state")
    for group, style in ((shown, None), (baselines, "cyan")):
        for r in group:
            preds = [("-" if c.key not in r.predicted else f"{r.predicted[c.key]:.3g}" if c.kind == "latency"
                      else f"{r.predicted[c.key]:,.0f}") for c in cons]
            if cons:
                use = budget_use(r, cons[0])
                preds.append("-" if use is None else f"{100 * use:.0f}%")
            table.add_row(str(r.number), r.baseline or "search", _fmt_top1(r.score, noise.of_row(r), len(r.scores)),
                          *preds,
                          _fmt_count(r.params), _fmt_count(r.flops), str(r.resolution or "-"), _state(r),
                          style=style)
        if group is shown and shown and baselines:
            table.add_section()
    return table


def rung_table(study, *, top: int = 5):
    """A rich table of a multi-fidelity search: per rung its training length, networks, seeds and time, the Kendall
    tau of its order against the rung before on the networks both trained, and its best networks with 1 standard
    error (binomial on one seed, the rung's pooled seed-to-seed std over sqrt(seeds) on several)."""
    from rich.table import Table

    report = rung_report(study)
    n_val = validation_size(study)
    table = Table(title=f"rungs of {study.study_name}", caption="tau: Kendall tau of the rung's order against the "
                  "rung before, on the networks both trained; seconds: summed trainings (wall-clock time with one "
                  "running)")
    for name in ("rung", "epochs", "networks", "seeds", "seconds", "tau", f"best {top} (proxy top-1 %)"):
        table.add_column(name, justify="left" if name.startswith("best") else "right")
    for r in report:
        table.add_row(str(r["rung"]), str(r["epochs"]), str(r["networks"]), str(r["seeds"]),
                      f"{r['training_seconds']:.0f} ({r['wall_seconds']:.0f})",
                      "-" if r["tau_vs_previous"] is None else f"{r['tau_vs_previous']:+.2f} ({r['tau_networks']})",
                      "; ".join(f"{e['source'] if e['source'] != 'search' else '#' + str(e['trial'])} "
                                f"{100 * e['mean']:.2f}" + _se_text(e, r, n_val) for e in r["ranking"][:top]))
    return table


def _se_text(entry: dict[str, Any], rung: dict[str, Any], n_val: int | None) -> str:
    se = rung_se(entry, rung, n_val)
    return "" if se is None else f" ± {se:.2f}"


def _state(r: Row) -> str:
    return (r.state.lower() + ("" if r.feasible else " (infeasible)") + (" (stopped)" if r.stopped_early else "")
            + (f" (= trial {r.duplicate_of})" if r.duplicate_of is not None else ""))


def comparison(study, fidelity=None) -> str:
    """The best searched network against the best baseline at the same constraints, with the noise; a second line
    against the network a constraint was set by (``--min-throughput <table>=fasternet_t2``) when that is another
    baseline: the user asked to beat that one."""
    rs = rows(study)
    search = best_row([r for r in rs if not r.baseline])
    base = best_row([r for r in rs if r.baseline])
    if search is None:
        return "no feasible candidate finished yet"
    if base is None:
        why = "no baseline in this study" if not any(r.baseline for r in rs) else "no baseline finished"
        seeds = f" (mean of {len(search.scores)} seeds)" if search.confirmed else ""
        return f"best: trial {search.number}, proxy top-1 {100 * search.score:.2f}%{seeds} ({why})"
    epochs = ((study.user_attrs.get("patsearch_config") or {}).get("rungs") or {}).get("epochs") or []
    info = lead(study, fidelity, rs)
    lines = [_lead_line(info, epochs)]
    roles = {c.relative_to: "the budget's network" if c.kind == "latency" else "the floor's network"
             for c in constraints_of(study) if c.relative_to}
    for name, role in roles.items():
        if name != info["baseline"] and (other := lead(study, fidelity, rs, baseline=name)) is not None:
            lines.append(_lead_line(other, epochs, role))
    return "\n".join(lines)


def _lead_line(info: dict[str, Any], epochs: list[int], role: str = "") -> str:
    at = f" at rung {info['rung']} ({epochs[info['rung']]} epochs)" if info["rung"] < len(epochs) else ""
    line = (f"best searched{at} (trial {info['trial']}) {100 * info['top1']:.2f}%{_seeds(info, '')} vs "
            f"{info['baseline']}{f' ({role})' if role else ''} {100 * info['baseline_top1']:.2f}%"
            f"{_seeds(info, 'baseline_')} proxy top-1: "
            f"{info['delta_points']:+.2f} points")
    if info["se_points"] is None:
        return line + " (noise unknown: the validation set size is not recorded)"
    if info["inside_noise"] is None:
        return line + f" (noise not measured: every seed scored alike, {info['noise']})"
    verdict = ("inside the noise: not evidence that either is better" if info["inside_noise"]
               else f"{abs(info['delta_points']) / info['se_points']:.1f} standard errors")
    return line + f", standard error of the difference {info['se_points']:.2f} points ({info['noise']}): {verdict}"


def _seeds(info: dict[str, Any], side: str) -> str:
    return f" (mean of {info[side + 'seeds']} seeds)" if info[side + "confirmed"] else ""


def summary_notes(study, fidelity=None, *, top: int = 5) -> list[str]:
    """The statements under the table: synthetic-data warning, the proxy's measured fidelity, budget use."""
    config = study.user_attrs.get("patsearch_config") or {}
    notes: list[str] = []
    if str(config.get("data", "")).startswith("synthetic"):
        notes.append("warning: the proxy trained on the built-in synthetic set (coloured shapes), not real images: "
                     "these scores show the pipeline working, not which network is better; pass --data")
    if fidelity is not None:
        path, rep = fidelity
        ref = (rep.get("settings") or {}).get("reference") or {}
        interval = describe_interval(rep.get("kendall_tau_ci95"))
        seeds = len((rep.get("settings") or {}).get("seeds") or []) or None
        notes.append(f"proxy fidelity ({path.name}): Kendall tau {describe_figure(rep.get('kendall_tau'))}{interval}, "
                     f"Spearman {describe_figure(rep.get('spearman'))} against {ref.get('epochs')} epochs at "
                     f"{ref.get('resolution')} px over {rep.get('n')} networks; seed-to-seed std "
                     f"{describe_seed_std(rep.get('seed_std'), seeds)}; free scores (tau): "
                     + ", ".join(f"{k} {describe_figure(v)}" for k, v in (rep.get("baselines") or {}).items()))
    else:
        notes.append(f"proxy fidelity: not measured for these settings ({config.get('data')}, "
                     f"{config.get('proxy_epochs')} epochs at {config.get('proxy_resolution')} px); run "
                     "`patsearch proxy-check` with them to know how far this ranking can be trusted")
    cons = constraints_of(study)
    rs = rows(study)
    shown, _ = shown_rows(rs, top)
    if cons and shown:
        c = cons[0]
        uses = [u for u in (budget_use(r, c) for r in shown) if u is not None]
        trained = [r for r in finished(rs) if not r.baseline and c.key in r.predicted]
        line = (f"budget use: the top {len(shown)} use {100 * min(uses):.0f}-{100 * max(uses):.0f}% of "
                f"{c.describe()}" if uses else "")
        if len(trained) >= 3:
            tau = kendall_tau([r.top1 for r in trained], [r.predicted[c.key] for r in trained])
            if math.isfinite(tau):
                sign = 1 if c.kind == "latency" else -1
                line += (f"; proxy top-1 vs predicted {c.kind} over {len(trained)} trained candidates: Kendall tau "
                         f"{tau:+.2f} ({'larger' if sign * tau > 0 else 'smaller'} networks scored higher)")
        if line:
            notes.append(line)
    return notes + collapse_notes(study)


def collapse_notes(study, most: int = 3) -> list[str]:
    """Proxy trainings whose top-1 fell most of the way back to chance: such a score ranks the proxy's lr, not the
    network, so a comparison with it says little."""
    from optuna.trial import TrialState

    hits = [t for t in study.get_trials(deepcopy=False)
            if t.state == TrialState.COMPLETE and ATTR_COLLAPSE in t.user_attrs]
    if not hits:
        return []

    def described(t) -> str:
        ua, c = t.user_attrs, t.user_attrs[ATTR_COLLAPSE]
        name = ua.get(ATTR_BASELINE) or f"trial {ua.get(ATTR_RUNG_PARENT, t.number)}"
        where = f" at rung {ua[ATTR_RUNG]}" if ua.get(ATTR_RUNG) else ""
        return (f"{name}{where}, top-1 {c['best']:.1f}% at epoch {c['best_epoch']} to {c['top1']:.1f}% at epoch "
                f"{c['epoch']}")

    listed = "; ".join(described(t) for t in hits[:most]) + (f"; and {len(hits) - most} more" if len(hits) > most
                                                              else "")
    return [f"warning: {len(hits)} proxy training(s) collapsed ({listed}): a score that fell back toward chance "
            f"ranks the proxy's lr, not the network; rerun with a lower --proxy-lr to compare them"]


def summary_dict(study, fidelity=None, *, top: int = 5) -> dict[str, Any]:
    """Everything the summary states, JSON-ready (``summary.json``)."""
    cons = constraints_of(study)
    rs = rows(study)
    shown, baselines = shown_rows(rs, top)
    noise = noise_of(study, fidelity, rs)
    config = study.user_attrs.get("patsearch_config") or {}

    def row(r: Row) -> dict[str, Any]:
        return {"trial": r.number, "source": r.baseline or "search", "proxy_top1": r.score,
                "se_points": noise.of_row(r), "seed_scores": list(r.scores), "predicted": r.predicted,
                "budget_use": {c.key: budget_use(r, c) for c in cons}, "params": r.params, "flops": r.flops,
                "resolution": r.resolution, "state": _state(r), "arch": r.arch}

    return {"study": study.study_name, "constraints": [c.describe() for c in cons],
            "counts": state_counts(study), "counts_text": describe_counts(state_counts(study)),
            "data": config.get("data"), "synthetic": str(config.get("data", "")).startswith("synthetic"),
            "proxy": {k: config.get(k) for k in ("proxy_epochs", "proxy_resolution", "recipe")},
            "validation_images": noise.n_val, "noise": noise.source(),
            "fidelity": None if fidelity is None else {"path": str(fidelity[0]), **{
                k: fidelity[1].get(k) for k in ("n", "kendall_tau", "spearman", "seed_std", "baselines")}},
            "top": [row(r) for r in shown], "baselines": [row(r) for r in baselines],
            "lead": lead(study, fidelity), "comparison": comparison(study, fidelity),
            "rungs": _rungs_with_se(study, noise.n_val),
            "notes": summary_notes(study, fidelity, top=top)}


def _rungs_with_se(study, n_val: int | None) -> list[dict[str, Any]]:
    report = rung_report(study)
    for rung in report:
        for entry in rung["ranking"]:
            entry["se_points"] = rung_se(entry, rung, n_val)
    return report


def summary_markdown(summary: dict[str, Any]) -> str:
    """``summary.md``: the same statements as the screen, as a Markdown table and lines."""
    cons = summary["constraints"]
    lines = [f"# Search {summary['study']}", "", "Constraints: " + " AND ".join(cons), "",
             summary["counts_text"] + f"; ± = 1 standard error ({summary['noise']}).", "",
             "| trial | source | proxy top-1 (%) | predicted | budget use | params | FLOPs | state |",
             "|---:|---|---:|---|---:|---:|---:|---|"]
    for r in summary["top"] + summary["baselines"]:
        top1 = "-" if r["proxy_top1"] is None else f"{100 * r['proxy_top1']:.2f}" + (
            "" if r["se_points"] is None else f" ± {r['se_points']:.2f}") + (
            f" ({len(r['seed_scores'])} seeds)" if len(r["seed_scores"]) > 1 else "")
        pred = ", ".join(f"{k} {v:.3g}" for k, v in r["predicted"].items())
        use = ", ".join("-" if v is None else f"{100 * v:.0f}%" for v in r["budget_use"].values())
        lines.append(f"| {r['trial']} | {r['source']} | {top1} | {pred} | {use} | {_fmt_count(r['params'])} | "
                     f"{_fmt_count(r['flops'])} | {r['state']} |")
    if summary.get("rungs"):
        lines += ["", "| rung | epochs | networks | seeds | training s (wall s) | tau vs rung before | best (%) |",
                  "|---:|---:|---:|---:|---:|---:|---|"]
        for r in summary["rungs"]:
            best = "; ".join(f"{e['source'] if e['source'] != 'search' else '#' + str(e['trial'])} "
                             f"{100 * e['mean']:.2f}" + ("" if e["se_points"] is None else f" ± {e['se_points']:.2f}")
                             for e in r["ranking"][:5])
            tau = "-" if r["tau_vs_previous"] is None else f"{r['tau_vs_previous']:+.2f} ({r['tau_networks']})"
            lines.append(f"| {r['rung']} | {r['epochs']} | {r['networks']} | {r['seeds']} | "
                         f"{r['training_seconds']:.0f} ({r['wall_seconds']:.0f}) | {tau} | {best} |")
    lines += ["", "\n\n".join(summary["comparison"].splitlines()), ""]  # one paragraph per comparison
    lines += [f"- {note}" for note in summary["notes"]]
    return "\n".join(lines) + "\n"


def write_summary(study, out_dir: str | os.PathLike, fidelity=None) -> list[Path]:
    """``summary.json`` and ``summary.md`` in ``out_dir``."""
    summary = summary_dict(study, fidelity)
    out = Path(out_dir)
    return [atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n"),
            atomic_write_text(out / "summary.md", summary_markdown(summary))]

"""The report of a proxy check: rank agreement of each proxy with the reference, seed noise, free scores and
costs (JSON), its scatter plot (PNG) and the summary lines the command prints."""
from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from patsearch.io import atomic_save_figure, atomic_write_json
from patsearch.proxycheck.options import (
    FREE,
    PROXY,
    REFERENCE,
    REFERENCE_FACTOR,
    FidelityOptions,
    fingerprint,
    proxy_kinds,
    settings_dict,
)
from patsearch.proxycheck.plan import make_jobs, reference_key
from patsearch.ranking import describe_figure, describe_interval, describe_seed_std

FREE_SCORES = ("params", "flops", "synflow")
REPORT_VERSION = 1


def build_report(opts: FidelityOptions, plan: Sequence[dict[str, Any]], records: dict[str, dict[str, Any]],
                 *, elapsed: float | None = None) -> dict[str, Any]:
    """The JSON report from the records so far (rows missing a training are listed but not correlated)."""
    import numpy as np

    from patsearch.ranking import average_ranks, bootstrap_interval, kendall_tau, pooled_std, spearman

    kinds = proxy_kinds(len(opts.alternatives))
    rows = []
    for item in plan:
        rid = item["id"]
        by_kind = {kind: [records.get(f"{rid}.{kind}.s{s}", {}).get("top1") for s in opts.seeds] for kind in kinds}
        ref_recs = [records.get(reference_key(rid, k, s), {}) for k, s in enumerate(opts.reference_seed_list())]
        ref_tops = [r.get("top1") for r in ref_recs]
        free = records.get(f"{rid}.free", {})
        diverged = sorted(r["key"] for r in (records.get(f"{rid}.{kind}.s{s}") for kind in kinds for s in opts.seeds)
                          if r and r.get("diverged")) + [r["key"] for r in ref_recs if r.get("diverged")]
        row = {"id": rid, "source": item["source"], "resolution": item["resolution"],
               "predicted": item["predicted"], "budget": item.get("budget"),
               "proxy_top1": by_kind[PROXY], "proxy_mean": _mean_or_none(by_kind[PROXY]),
               "reference_top1": _mean_or_none(ref_tops),  # the mean over the reference seeds
               "params": free.get("params"), "flops": free.get("flops"), "synflow": free.get("synflow"),
               "synflow_overflow": free.get("synflow_overflow", False), "diverged": diverged,
               "seconds": {k: records[k]["seconds"] for k in records if k.startswith(rid + ".")},
               "arch": item["arch"]}
        if opts.alternatives:
            row["alternatives_top1"] = {kind: by_kind[kind] for kind in kinds[1:]}
        if opts.reference_seeds > 1:
            row["reference_seeds_top1"] = ref_tops
        rows.append(row)
    complete = [r for r in rows if r["proxy_mean"] is not None and r["reference_top1"] is not None
                and f"{r['id']}.free" in records]

    def corr(fn, xs, ys) -> float | None:
        value = fn(xs, ys) if len(xs) >= 2 else float("nan")
        return None if value is None or not math.isfinite(value) else round(float(value), 4)

    def stats(kind: str, scored: list[dict[str, Any]]) -> dict[str, Any]:
        """Rank agreement with the reference, seed noise, size bias and cost of one proxy over ``scored`` rows."""
        tops = [r["proxy_top1"] if kind == PROXY else r["alternatives_top1"][kind] for r in scored]
        ref = [r["reference_top1"] for r in scored]
        mean = [float(np.mean(t)) for t in tops]
        seed_std = None
        if len(opts.seeds) >= 2 and scored:
            seed_std = round(100 * pooled_std(tops), 3)  # every row has all seeds: the mean of the variances
        seconds = [r["seconds"].get(f"{r['id']}.{kind}.s{s}") for r in scored for s in opts.seeds]
        seconds = [x for x in seconds if x is not None]
        extra: dict[str, Any] = {}
        curves = [[records.get(f"{r['id']}.{kind}.s{s}", {}).get("curve") for s in opts.seeds] for r in scored]
        if scored and all(c and len(c) >= 2 for per_seed in curves for c in per_seed):
            # Learning-curve scores from the same trainings: the mean of the last two epochs (less end noise) and
            # the mean over all epochs (the area under the curve, which rewards early learners more).
            extra["curve_kendall_tau"] = {
                name: corr(kendall_tau, [float(np.mean([fn(c) for c in per_seed])) for per_seed in curves], ref)
                for name, fn in (("last2", lambda c: np.mean(c[-2:])), ("area", np.mean))}
        losses = [[records.get(f"{r['id']}.{kind}.s{s}", {}).get("curve_val_loss") for s in opts.seeds]
                  for r in scored]
        if scored and all(c for per_seed in losses for c in per_seed):
            # the final validation loss, negated: graded where top-1 counts only the arg-max
            extra.setdefault("curve_kendall_tau", {})["val_loss"] = corr(
                kendall_tau, [-float(np.mean([c[-1] for c in per_seed])) for per_seed in losses], ref)
        interval = bootstrap_interval(mean, ref)
        return {
            "n": len(scored),
            "kendall_tau": corr(kendall_tau, mean, ref),
            # over networks like these: a 95% bootstrap interval (20 networks leave about +-0.2)
            "kendall_tau_ci95": None if interval is None else [round(v, 4) for v in interval],
            "spearman": corr(spearman, mean, ref),
            "seed_std": seed_std,
            "single_seed_kendall_tau": {str(s): corr(kendall_tau, [t[i] for t in tops], ref)
                                        for i, s in enumerate(opts.seeds)},
            # Item 5's question: does the proxy reward size less than the longer training does (favouring small
            # networks that merely learn fastest)? Both taus are against parameter counts.
            "size_bias": {"proxy_vs_params": corr(kendall_tau, mean, [r["params"] for r in scored]),
                          "reference_vs_params": corr(kendall_tau, ref, [r["params"] for r in scored])},
            "mean_seconds": round(float(np.mean(seconds)), 2) if seconds else None,
            **extra,
        }

    ref = [r["reference_top1"] for r in complete]
    baselines, baselines_rho = {}, {}
    for name in FREE_SCORES:
        # Ranks, not values: an overflowed synflow (inf) ranks above every finite one and ties with the others.
        vals = [math.inf if (name == "synflow" and r["synflow_overflow"]) else r[name] for r in complete]
        if any(v is None for v in vals):
            baselines[name] = baselines_rho[name] = None
            continue
        ranks = average_ranks(vals) if vals else []
        baselines[name] = corr(kendall_tau, ranks, ref)
        baselines_rho[name] = corr(spearman, ranks, ref)
    main = stats(PROXY, complete)
    alternatives = []
    for kind, settings, factor in zip(kinds[1:], opts.alternatives, opts.alternative_reference_factors,
                                     strict=True):
        scored = [r for r in rows if r["reference_top1"] is not None and f"{r['id']}.free" in records
                  and all(t is not None for t in r["alternatives_top1"][kind])]
        alternatives.append({"kind": kind, "settings": settings_dict(settings), **stats(kind, scored),
                             "reference_factor": round(factor, 2),
                             "meets_reference_rule": factor >= REFERENCE_FACTOR})
    tau = main["kendall_tau"]
    extra: dict[str, Any] = {}
    if opts.reference_seeds > 1:
        std = pooled_std([r["reference_seeds_top1"] for r in complete])
        extra["reference_seed_std"] = None if std is None else round(100 * std, 3)
    return {
        "version": REPORT_VERSION,
        "n": len(complete),
        "kendall_tau": tau,
        "kendall_tau_ci95": main["kendall_tau_ci95"],
        "spearman": main["spearman"],
        "seed_std": main["seed_std"],
        "baselines": baselines,
        "baselines_spearman": baselines_rho,
        "single_seed_kendall_tau": main["single_seed_kendall_tau"],
        "size_bias": main["size_bias"],
        "proxy_mean_seconds": main["mean_seconds"],
        **({"curve_kendall_tau": main["curve_kendall_tau"]} if "curve_kendall_tau" in main else {}),
        "beats_free_scores": None if tau is None else all(v is None or tau > v for v in baselines.values()),
        "alternatives": alternatives,
        "complete": len(complete) == len(plan),
        "networks": len(plan),
        **extra,
        "jobs": {"done": len(records),
                 "total": len(make_jobs(plan, opts.seeds, len(opts.alternatives), opts.reference_seeds))},
        "diverged": sorted({k for r in rows for k in r["diverged"]}),
        # Jobs per GPU (CUDA_VISIBLE_DEVICES of the worker that ran them): shows that every GPU took work.
        "jobs_by_device": _count_by(records.values(), "cuda_visible_devices"),
        "training_seconds": {kind: round(sum(r.get("seconds", 0.0) for r in records.values() if r.get("kind") == kind),
                                         1) for kind in (*kinds, REFERENCE, FREE)},
        "settings": opts.settings(),
        "fingerprint": fingerprint(opts.settings()),
        "elapsed_seconds": None if elapsed is None else round(elapsed, 1),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": rows,
    }


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    return float(sum(values) / len(values)) if values and all(v is not None for v in values) else None


def _count_by(records, key: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in records:
        name = str(r.get(key) if r.get(key) is not None else "unset")
        counts[name] = counts.get(name, 0) + 1
    return counts


def write_report(report: dict[str, Any], path: str | os.PathLike) -> Path:
    return atomic_write_json(path, report, indent=2)


def plot_report(report: dict[str, Any], path: str | os.PathLike) -> Path | None:
    """Proxy mean top-1 (seed range as bars) vs reference top-1, and log parameters vs reference; PNG."""
    rows = [r for r in report["rows"] if r["proxy_mean"] is not None and r["reference_top1"] is not None]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 5), dpi=110)
    for r in rows:
        x, y = 100 * r["proxy_mean"], 100 * r["reference_top1"]
        lo, hi = 100 * min(r["proxy_top1"]), 100 * max(r["proxy_top1"])
        variant = r["source"] == "variant"
        ax.errorbar([x], [y], xerr=[[x - lo], [hi - x]], fmt="*" if variant else "o",
                    color="tab:red" if variant else "tab:blue", ms=11 if variant else 5, capsize=2, alpha=0.85)
        if variant:
            ax.annotate(r["id"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        if r["params"]:
            ax2.scatter([r["params"] / 1e6], [y], marker="*" if variant else "o",
                        color="tab:red" if variant else "tab:gray", s=90 if variant else 20)
    s = report["settings"]
    ax.set_xlabel(f"proxy top-1 (%), mean of {len(s['seeds'])} seeds (bars: seed range); "
                  f"{s['proxy']['epochs']} ep at {s['proxy']['resolution']} px")
    ax.set_ylabel(f"reference top-1 (%), {s['reference']['epochs']} ep at {s['reference']['resolution']} px")
    ci = report.get("kendall_tau_ci95")
    interval = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
    ax.set_title(f"proxy vs reference: tau {describe_figure(report['kendall_tau'])}{interval}, rho "
                 f"{describe_figure(report['spearman'])},\nseed std "
                 f"{describe_seed_std(report['seed_std'], len(s['seeds']))} (n={report['n']})", fontsize=9)
    ax2.set_xscale("log")
    ax2.set_xlabel("parameters (M)")
    ax2.set_ylabel("reference top-1 (%)")
    b = report["baselines"]
    ax2.set_title("free scores, Kendall tau vs reference:\n" + ", ".join(f"{k} {v}" for k, v in b.items()),
                  fontsize=9)
    fig.suptitle(f"proxy fidelity on {s['proxy']['data_id']} ({'complete' if report['complete'] else 'partial'})",
                 fontsize=10)
    fig.tight_layout()
    return atomic_save_figure(fig, path)


def print_summary(report: dict[str, Any], console, *, seeds: int) -> None:
    """The command's summary of a report: the proxy's tau, rho and seed noise against the free scores, then one
    line per alternative proxy."""
    from rich.markup import escape

    state = "complete" if report["complete"] else f"partial ({report['jobs']['done']}/{report['jobs']['total']} " \
                                                  "jobs; rerun the same command to continue)"
    fig = describe_figure
    console.print(f"proxy vs reference over {report['n']} networks: Kendall tau {fig(report['kendall_tau'])}"
                  f"{describe_interval(report['kendall_tau_ci95'])}, Spearman "
                  f"{fig(report['spearman'])}, proxy seed std {describe_seed_std(report['seed_std'], seeds)}; free "
                  "scores (tau): " + ", ".join(f"{k} {fig(v)}" for k, v in report["baselines"].items())
                  + escape(f" [{state}]"))
    for alt in report["alternatives"]:
        st = alt["settings"]
        shape = "".join(f", {name} {st[key]}" for key, name in (("batch_size", "batch"), ("lr", "lr"))
                        if st[key] is not None)
        console.print(f"  {alt['kind']} ({st['epochs']} ep at {st['resolution']} px, {st['train_samples'] or 'all'} "
                      f"images{shape}) over {alt['n']} networks: Kendall tau {fig(alt['kendall_tau'])}"
                      f"{describe_interval(alt['kendall_tau_ci95'])}, Spearman "
                      f"{fig(alt['spearman'])}, seed std {describe_seed_std(alt['seed_std'], seeds)}, "
                      f"{fig(alt['mean_seconds'], 1)} s per training"
                      + ("" if alt["meets_reference_rule"] else f" (exploratory: the reference trains on only "
                                                                  f"{alt['reference_factor']}x its images)"))


__all__ = ["build_report", "plot_report", "print_summary", "write_report"]

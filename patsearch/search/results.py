"""What a search leaves behind: ``best.yaml``, a summary table against the baselines, and PNG plots.

``runs/<study>/best.yaml`` wraps the winning architecture description (``arch:``, which ``patsearch train --arch``
and :meth:`ArchConfig.load` accept) with how it was found (``search:``). Plots use
``optuna.visualization.matplotlib``; every file is written to a temp name and renamed.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from patsearch.arch import ArchConfig
from patsearch.search.objective import (ATTR_ARCH, ATTR_BASELINE, ATTR_DUPLICATE, ATTR_FEASIBLE, ATTR_FLOPS,
                                        ATTR_PARAMS, ATTR_RESOLUTION, ATTR_STOPPED, ATTR_TOP1, PRED_PREFIX)


@dataclass(frozen=True)
class ConstraintInfo:
    """A constraint as stored with the study (enough to print and plot it without loading any table)."""

    device: str
    kind: str
    limit: float

    @property
    def key(self) -> str:
        return f"{self.device}:{'latency_ms' if self.kind == 'latency' else 'throughput'}"

    @property
    def unit(self) -> str:
        return "ms" if self.kind == "latency" else "img/s"

    def label(self) -> str:
        return f"{self.device} {'latency' if self.kind == 'latency' else 'throughput'} ({self.unit})"

    def describe(self) -> str:
        op = "<=" if self.kind == "latency" else ">="
        return f"{self.device} {self.kind} {op} {self.limit:g} {self.unit}"


def constraints_of(study) -> list[ConstraintInfo]:
    config = study.user_attrs.get("patsearch_config") or {}
    return [ConstraintInfo(c["device"], c["kind"], float(c["limit"])) for c in config.get("constraints", [])]


@dataclass
class Row:
    number: int
    state: str
    baseline: str | None
    top1: float | None
    predicted: dict[str, float]
    feasible: bool
    params: int | None
    flops: int | None
    arch: dict[str, Any] | None
    resolution: int | None
    stopped_early: bool = False
    duplicate_of: int | None = None


COSTS_ATTR = "costs"  # study user attr: {trial number: [params, flops]}, filled for the rows a summary shows


def rows(study) -> list[Row]:
    """One row per trial that got as far as a prediction (FAIL trials without one are left out)."""
    out = []
    costs = study.user_attrs.get(COSTS_ATTR) or {}
    for t in study.get_trials(deepcopy=False):
        ua = t.user_attrs
        if ATTR_ARCH not in ua:
            continue
        predicted = {k[len(PRED_PREFIX):]: float(v) for k, v in ua.items() if k.startswith(PRED_PREFIX)}
        top1 = ua.get(ATTR_TOP1)
        if top1 is None and t.state.name == "PRUNED" and t.intermediate_values:
            top1 = t.intermediate_values[max(t.intermediate_values)]
        params, flops = costs.get(str(t.number), (ua.get(ATTR_PARAMS), ua.get(ATTR_FLOPS)))
        out.append(Row(t.number, t.state.name, ua.get(ATTR_BASELINE), top1, predicted,
                       bool(ua.get(ATTR_FEASIBLE, all(v <= 0 for v in t.constraints.values()))),
                       params, flops, ua.get(ATTR_ARCH), ua.get(ATTR_RESOLUTION),
                       bool(ua.get(ATTR_STOPPED, False)), ua.get(ATTR_DUPLICATE)))
    return out


def shown_rows(rs: Sequence[Row], top: int = 5) -> tuple[list[Row], list[Row]]:
    """(best searched rows, baseline rows): what the summary table lists."""
    done = [r for r in finished(rs) if not r.baseline and r.duplicate_of is None][:top]
    baselines = sorted([r for r in rs if r.baseline], key=lambda r: r.number)
    return done, baselines


def fill_costs(study, count: Callable[[ArchConfig, int], tuple[int, int]], top: int = 5) -> None:
    """Count params and FLOPs of the rows the summary shows (and the front), caching them on the study."""
    rs = rows(study)
    shown, baselines = shown_rows(rs, top)
    wanted = shown + baselines + [r for r in finished(rs)[:1]]
    costs = dict(study.user_attrs.get(COSTS_ATTR) or {})
    missing = [r for r in wanted if r.params is None and r.arch is not None and str(r.number) not in costs]
    if not missing:
        return
    for r in missing:
        params, flops = count(ArchConfig.from_dict(r.arch), int(r.resolution))
        costs[str(r.number)] = [int(params), int(flops)]
    study.set_user_attr(COSTS_ATTR, costs)


def finished(rs: Sequence[Row]) -> list[Row]:
    """Feasible, completed, trained trials, best proxy top-1 first."""
    done = [r for r in rs if r.state == "COMPLETE" and r.feasible and r.top1 is not None]
    return sorted(done, key=lambda r: (-r.top1, r.number))


def best_row(rs: Sequence[Row], *, include_baselines: bool = True) -> Row | None:
    done = [r for r in finished(rs) if include_baselines or not r.baseline]
    return done[0] if done else None


def pareto_front(rs: Sequence[Row], key: str, kind: str) -> list[Row]:
    """Feasible completed rows no other row beats on both proxy top-1 and the ``key`` metric."""
    done = finished(rs)
    sign = 1.0 if kind == "latency" else -1.0
    front = []
    for r in done:
        cost = sign * r.predicted.get(key, math.inf)
        dominated = any(o is not r and o.top1 >= r.top1 and sign * o.predicted.get(key, math.inf) <= cost
                        and (o.top1 > r.top1 or sign * o.predicted.get(key, math.inf) < cost) for o in done)
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: sign * r.predicted.get(key, math.inf))


# --- best.yaml -------------------------------------------------------------------------------------------------
def _atomic_write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    if isinstance(data, str):
        tmp.write_text(data)
    else:
        tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def write_best_yaml(path: str | os.PathLike, row: Row, *, study_name: str,
                    constraints: Sequence[ConstraintInfo]) -> Path:
    arch = ArchConfig.from_dict(row.arch or {})
    if not arch.name:
        arch = arch.replace(name=f"{study_name}-trial{row.number}")
    doc = {
        "arch": arch.to_dict(),
        "search": {
            "study": study_name,
            "trial": row.number,
            "resolution": row.resolution,
            "proxy_top1": None if row.top1 is None else round(float(row.top1), 4),
            "predicted": {k: round(v, 4) for k, v in row.predicted.items()},
            "constraints": [c.describe() for c in constraints],
            "baseline": row.baseline,
            "params": row.params,
            "flops": row.flops,
        },
    }
    return _atomic_write(Path(path), yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))


def write_front_yaml(path: str | os.PathLike, front: Sequence[Row], *, study_name: str) -> Path:
    doc = {"study": study_name, "front": [
        {"trial": r.number, "proxy_top1": round(float(r.top1), 4), "predicted": r.predicted,
         "resolution": r.resolution, "baseline": r.baseline, "arch": r.arch} for r in front]}
    return _atomic_write(Path(path), yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))


# --- the summary table -----------------------------------------------------------------------------------------
def _fmt_count(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= unit:
            return f"{n / unit:.3g}{suffix}"
    return str(n)


def summary_table(study, *, top: int = 5, title: str | None = None):
    """A rich table: the best trials, then every baseline, with predictions, proxy top-1, params and FLOPs."""
    from rich.table import Table

    cons = constraints_of(study)
    rs = rows(study)
    shown, baselines = shown_rows(rs, top)
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    infeasible = sum(1 for r in rs if not r.feasible)
    caption = (f"{len(rs)} candidates: " + ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items()))
               + f"; {infeasible} infeasible (not trained)")
    table = Table(title=title or f"study {study.study_name}: " + " AND ".join(c.describe() for c in cons),
                  caption=caption)
    table.add_column("trial", justify="right")
    table.add_column("source")
    table.add_column("proxy top-1", justify="right")
    for c in cons:
        table.add_column(f"pred. {c.label()}", justify="right")
    table.add_column("params", justify="right")
    table.add_column("FLOPs", justify="right")
    table.add_column("res", justify="right")
    table.add_column("state")
    for group, style in ((shown, None), (baselines, "cyan")):
        for r in group:
            top1 = "-" if r.top1 is None else f"{100 * r.top1:.2f}%"
            preds = [("-" if c.key not in r.predicted else f"{r.predicted[c.key]:.3g}" if c.kind == "latency"
                      else f"{r.predicted[c.key]:,.0f}") for c in cons]
            state = (r.state.lower() + ("" if r.feasible else " (infeasible)") + (" (stopped)" if r.stopped_early else "")
                     + (f" (= trial {r.duplicate_of})" if r.duplicate_of is not None else ""))
            table.add_row(str(r.number), r.baseline or "search", top1, *preds, _fmt_count(r.params),
                          _fmt_count(r.flops), str(r.resolution or "-"), state, style=style)
        if group is shown and shown and baselines:
            table.add_section()
    return table


def comparison(study) -> str:
    """One line: the best searched network against the best baseline at the same constraints."""
    rs = rows(study)
    search = best_row([r for r in rs if not r.baseline])
    base = best_row([r for r in rs if r.baseline])
    if search is None:
        return "no feasible candidate finished yet"
    if base is None:
        why = "no baseline in this study" if not any(r.baseline for r in rs) else "no baseline finished"
        return f"best: trial {search.number}, proxy top-1 {100 * search.top1:.2f}% ({why})"
    delta = 100 * (search.top1 - base.top1)
    return (f"best searched (trial {search.number}) {100 * search.top1:.2f}% vs {base.baseline} "
            f"{100 * base.top1:.2f}% proxy top-1: {delta:+.2f} points")


# --- plots -----------------------------------------------------------------------------------------------------
def write_plots(study, out_dir: str | os.PathLike) -> tuple[list[Path], list[str]]:
    """Pareto front (accuracy vs the primary constraint), optimisation history and parameter importances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    out = Path(out_dir)
    written: list[Path] = []
    notes: list[str] = []
    multi = len(study.directions) > 1
    cons = constraints_of(study)
    rs = rows(study)
    target = (lambda t: t.values[0]) if multi else None
    target_name = "proxy top-1"

    def save(ax, name: str) -> None:
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.set_size_inches(8, 5.5)
        tmp = out / f".{name}.tmp{os.getpid()}.png"
        out.mkdir(parents=True, exist_ok=True)
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        plt.close(fig)
        os.replace(tmp, out / name)
        written.append(out / name)

    plots = [
        ("pareto.png", lambda: _front_plot(study, rs, cons, multi)),
        ("history.png", lambda: ovm.plot_optimization_history(study, target=target, target_name=target_name)),
        ("importances.png", lambda: ovm.plot_param_importances(study, target=target, target_name=target_name)),
    ]
    for name, make in plots:
        try:
            save(make(), name)
        except Exception as exc:  # too few trials for importances, no parameters, ...
            notes.append(f"{name} skipped: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            plt.close("all")
    return written, notes


def _front_plot(study, rs: Sequence[Row], cons: Sequence[ConstraintInfo], multi: bool):
    import matplotlib.pyplot as plt

    if multi:
        import optuna.visualization.matplotlib as ovm

        c = cons[0]
        return ovm.plot_pareto_front(study, target_names=["proxy top-1", c.label()])
    # Single objective: still show accuracy against the primary constraint, with the budget and the front.
    c = cons[0]
    fig, ax = plt.subplots()
    trained = [r for r in rs if r.top1 is not None and c.key in r.predicted]
    infeasible = [r for r in rs if not r.feasible and c.key in r.predicted]
    ax.scatter([r.predicted[c.key] for r in trained if not r.baseline], [r.top1 for r in trained if not r.baseline],
               label="searched", alpha=0.8)
    ax.scatter([r.predicted[c.key] for r in infeasible], [0.0] * len(infeasible), marker="x", color="grey",
               label="infeasible (not trained)")
    for r in trained:
        if r.baseline:
            ax.scatter([r.predicted[c.key]], [r.top1], marker="*", s=160, color="tab:red")
            ax.annotate(r.baseline, (r.predicted[c.key], r.top1), textcoords="offset points", xytext=(5, 5))
    front = pareto_front(rs, c.key, c.kind)
    if front:
        ax.plot([r.predicted[c.key] for r in front], [r.top1 for r in front], color="tab:green", label="front")
    ax.axvline(c.limit, color="tab:red", linestyle="--", label=f"budget {c.limit:g} {c.unit}")
    ax.set_xlabel(f"predicted {c.label()}")
    ax.set_ylabel("proxy top-1")
    ax.set_title(f"{study.study_name}: proxy accuracy vs predicted {c.kind}")
    ax.legend(loc="best")
    return ax

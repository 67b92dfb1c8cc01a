"""What a search leaves behind: ``best.yaml``, a summary against the baselines, and PNG plots.

``runs/<study>/best.yaml`` wraps the winning architecture description (``arch:``, which ``patsearch train --arch``
and :meth:`ArchConfig.load` accept) with how it was found (``search:``). The summary (on screen, and as
``summary.md`` / ``summary.json``) counts trial states without calling infeasible proposals complete, gives every
score its noise (the binomial standard error on the validation set, or the proxy's measured seed-to-seed spread
when a fidelity report of ``patsearch proxy-check`` matches the proxy settings), says whether the lead over the
best baseline is inside that noise, states the proxy's measured fidelity and warns when the data is synthetic.
Plots use ``optuna.visualization.matplotlib``; every file is written to a temp name and renamed.
"""
from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from patsearch.arch import ArchConfig
from patsearch.errors import UserError
from patsearch.io import atomic_save_figure, atomic_write_text
from patsearch.ranking import (
    binomial_se,
    describe_figure,
    describe_interval,
    describe_seed_std,
    kendall_tau,
    pooled_std,
)
from patsearch.search.objective import (
    ATTR_ARCH,
    ATTR_BASELINE,
    ATTR_DUPLICATE,
    ATTR_FEASIBLE,
    ATTR_FLOPS,
    ATTR_PARAMS,
    ATTR_RESOLUTION,
    ATTR_RUNG,
    ATTR_STOPPED,
    ATTR_TOP1,
    PRED_PREFIX,
)
from patsearch.search.rungs import rung_report, rung_scores


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
    seed_scores: tuple[float, ...] = ()  # the confirmation runs' top-1 (other proxy seeds), in seed order
    # A multi-fidelity search's re-trainings of this network: {rung: top-1 by seed} (rung 0 is ``top1``)
    rung_scores: dict[int, tuple[float, ...]] = field(default_factory=dict)

    @property
    def top_rung(self) -> int:
        return max(self.rung_scores, default=0)

    @property
    def scores(self) -> tuple[float, ...]:
        """The scores that rank this network: its highest rung's seeds, else the trial's own proxy top-1 and its
        confirmation seeds'."""
        if self.rung_scores:
            return self.rung_scores[self.top_rung]
        return ((self.top1,) if self.top1 is not None else ()) + self.seed_scores

    @property
    def confirmed(self) -> bool:
        """Scored on several seeds (confirmation runs, or a multi-fidelity search's last rung)."""
        return len(self.scores) > 1 and self.top1 is not None

    @property
    def score(self) -> float | None:
        """What ranks the row: the mean over its ranking scores (the highest rung's, or the confirmed seeds')."""
        return sum(self.scores) / len(self.scores) if self.scores else self.top1


COSTS_ATTR = "costs"  # study user attr: {trial number: [params, flops]}, filled for the rows a summary shows
# study user attr: {trial number: {seed: top1}}, the confirmation runs of ``patsearch search --confirm-top``
CONFIRM_ATTR = "confirm"


def rows(study) -> list[Row]:
    """One row per trial that got as far as a prediction (FAIL trials without one are left out)."""
    out = []
    costs = study.user_attrs.get(COSTS_ATTR) or {}
    confirm = study.user_attrs.get(CONFIRM_ATTR) or {}
    trials = study.get_trials(deepcopy=False)
    retrained = rung_scores(trials)
    for t in trials:
        ua = t.user_attrs
        if ATTR_ARCH not in ua or ATTR_RUNG in ua:  # re-trainings join their network's row
            continue
        predicted = {k[len(PRED_PREFIX):]: float(v) for k, v in ua.items() if k.startswith(PRED_PREFIX)}
        top1 = ua.get(ATTR_TOP1)
        if top1 is None and t.state.name == "PRUNED" and t.intermediate_values:
            top1 = t.intermediate_values[max(t.intermediate_values)]
        params, flops = costs.get(str(t.number), (ua.get(ATTR_PARAMS), ua.get(ATTR_FLOPS)))
        out.append(Row(t.number, t.state.name, ua.get(ATTR_BASELINE), top1, predicted,
                       bool(ua.get(ATTR_FEASIBLE, all(v <= 0 for v in t.constraints.values()))),
                       params, flops, ua.get(ATTR_ARCH), ua.get(ATTR_RESOLUTION),
                       bool(ua.get(ATTR_STOPPED, False)), ua.get(ATTR_DUPLICATE),
                       tuple(float(v) for _, v in sorted((confirm.get(str(t.number)) or {}).items(),
                                                         key=lambda kv: int(kv[0]))),
                       {k: r.scores for k, r in (retrained.get(t.number) or {}).items()}))
    return out


def shown_rows(rs: Sequence[Row], top: int = 5) -> tuple[list[Row], list[Row]]:
    """(best searched rows, baseline rows): what the summary table lists."""
    done = [r for r in finished(rs) if not r.baseline and r.duplicate_of is None][:top]
    baselines = sorted([r for r in rs if r.baseline], key=lambda r: r.number)
    return done, baselines


def missing_costs(study, top: int = 5) -> list[Row]:
    """The rows the summary shows (and the best one) whose params and FLOPs are not counted yet, each once."""
    rs = rows(study)
    shown, baselines = shown_rows(rs, top)
    wanted = {r.number: r for r in shown + baselines + finished(rs)[:1]}
    return [r for r in wanted.values() if r.params is None and r.arch is not None]


def fill_costs(study, count: Callable[[ArchConfig, int], tuple[int, int]], top: int = 5,
               track: Callable[[list[Row]], Iterable[Row]] | None = None) -> int:
    """Count params and FLOPs of the rows the summary shows (and the front) that lack them; returns how many.

    Each count is stored on the study as soon as it is made (fvcore takes seconds to a minute per network on a
    busy CPU), so an interrupted count keeps what it did and a rerun never counts a trial again. ``track`` wraps
    the rows to count, e.g. to show progress.
    """
    missing = missing_costs(study, top)
    if not missing:
        return 0
    costs = dict(study.user_attrs.get(COSTS_ATTR) or {})
    for r in (track(missing) if track is not None else missing):
        params, flops = count(ArchConfig.from_dict(r.arch), int(r.resolution))
        costs[str(r.number)] = [int(params), int(flops)]
        study.set_user_attr(COSTS_ATTR, costs)
    return len(missing)


def finished(rs: Sequence[Row]) -> list[Row]:
    """Feasible, completed, trained trials, best first: those trained at the highest rung of a multi-fidelity
    search ahead of the rest, then confirmed ones (several seeds) by their mean ahead of single scores (a winner is
    only chosen among networks scored at the longest training and on every seed)."""
    done = [r for r in rs if r.state == "COMPLETE" and r.feasible and r.top1 is not None]
    return sorted(done, key=lambda r: (-r.top_rung, not r.confirmed, -r.score, r.number))


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
            **({"proxy_seed_scores": [round(float(v), 4) for v in row.scores],
                "proxy_mean_top1": round(float(row.score), 4)} if row.confirmed else {}),
            **({"rung_scores": {int(k): [round(float(v), 4) for v in vs] for k, vs in sorted(row.rung_scores.items())}}
               if row.rung_scores else {}),
            "predicted": {k: round(v, 4) for k, v in row.predicted.items()},
            "constraints": [c.describe() for c in constraints],
            "baseline": row.baseline,
            "params": row.params,
            "flops": row.flops,
        },
    }
    return atomic_write_text(path, yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))


def record_measured(path: str | os.PathLike, result: Any) -> dict[str, Any] | None:
    """Add what ``patsearch bench --arch best.yaml`` measured to that file's ``search:`` block (``measured``, keyed
    by device and protocol, next to the table's ``predicted``); None, and the file untouched, when it is a plain
    architecture file. ``result`` is a :class:`~patsearch.profiler.bench.BenchResult`."""
    p = Path(path)
    doc = yaml.safe_load(p.read_text())
    if not isinstance(doc, dict) or not isinstance(doc.get("search"), dict):
        return None
    entry = {"metric": result.metric, "resolution": result.resolution, "hardware": result.provenance.get("hardware"),
             "date": result.provenance.get("date"),
             **{row.form: None if row.value is None else round(float(row.value), 3) for row in result.rows}}
    measured = dict(doc["search"].get("measured") or {})
    measured[f"{result.device} ({result.protocol})"] = entry
    doc["search"]["measured"] = measured
    atomic_write_text(p, yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))
    return entry


def write_front_yaml(path: str | os.PathLike, front: Sequence[Row], *, study_name: str) -> Path:
    doc = {"study": study_name, "front": [
        {"trial": r.number, "proxy_top1": round(float(r.top1), 4), "predicted": r.predicted,
         "resolution": r.resolution, "baseline": r.baseline, "arch": r.arch} for r in front]}
    return atomic_write_text(path, yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))


# --- the summary table -----------------------------------------------------------------------------------------
def _fmt_count(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= unit:
            return f"{n / unit:.3g}{suffix}"
    return str(n)


def state_counts(study) -> dict[str, int]:
    """Trials by what happened to them: infeasible proposals (never trained) apart from complete ones."""
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        if ATTR_RUNG in t.user_attrs:
            counts["re-trained"] = counts.get("re-trained", 0) + 1
            continue
        infeasible = any(v > 0 for v in t.constraints.values()) or t.user_attrs.get(ATTR_FEASIBLE) is False
        name = "infeasible" if infeasible else t.state.name.lower()
        counts[name] = counts.get(name, 0) + 1
    return counts


def describe_counts(counts: dict[str, int]) -> str:
    order = ("complete", "pruned", "running", "waiting", "fail", "infeasible")
    labels = {"infeasible": "infeasible (not trained)", "fail": "failed",
              "re-trained": "re-trainings at longer rungs"}
    candidates = {k: v for k, v in counts.items() if k != "re-trained"}
    parts = [f"{counts[k]} {labels.get(k, k)}"
             for k in sorted(candidates, key=lambda k: order.index(k) if k in order else len(order)) if counts[k]]
    text = f"{sum(candidates.values())} candidates: " + ", ".join(parts)
    return text + (f"; {counts['re-trained']} {labels['re-trained']}" if counts.get("re-trained") else "")


# --- noise and fidelity --------------------------------------------------------------------------------------
PROXY_CHECK_DIR = "proxy-check"  # under the runs folder: where `patsearch proxy-check` writes its reports


def validation_size(study) -> int | None:
    """Images the proxy's top-1 is measured on: stored with the study, or read from its data id."""
    config = study.user_attrs.get("patsearch_config") or {}
    if config.get("val_images"):
        return int(config["val_images"])
    match = re.search(r":(\d+|all)/(\d+)$", str(config.get("data", "")))
    return int(match.group(2)) if match else None


def _proxy_matches(proxy: dict[str, Any], config: dict[str, Any]) -> bool:
    return (proxy.get("data_id") == config.get("data") and proxy.get("epochs") == config.get("proxy_epochs")
            and proxy.get("resolution") == config.get("proxy_resolution")
            and proxy.get("recipe", "proxy") == config.get("recipe", "proxy"))


def _fidelity_view(report: dict[str, Any], config: dict[str, Any]) -> dict[str, Any] | None:
    """The report's figures for the study's proxy: the main proxy's, or an alternative's lifted to the top level
    (the free scores are the report's either way); None when neither proxy is the study's."""
    if _proxy_matches((report.get("settings") or {}).get("proxy") or {}, config):
        return report
    for alt in report.get("alternatives") or []:
        if isinstance(alt, dict) and _proxy_matches(alt.get("settings") or {}, config):
            return {**report, **{k: alt.get(k) for k in ("n", "kendall_tau", "kendall_tau_ci95", "spearman",
                                                          "seed_std")},
                    "proxy_kind": alt.get("kind")}
    return None


def fidelity_reports(runs_dir: str | os.PathLike = "runs") -> list[Path]:
    """Where proxy-check reports are looked for, in order: the user's own (``<runs_dir>/proxy-check/``, where
    ``patsearch proxy-check`` writes by default), then the shipped ones (``profiles/fidelity/``). Never docs/."""
    from patsearch.resources import shipped_fidelity_dir

    found: list[Path] = []
    for folder in (Path(runs_dir) / PROXY_CHECK_DIR, shipped_fidelity_dir()):
        found += sorted(p.resolve() for p in folder.glob("*.json") if p.resolve() not in found)
    return found


def find_fidelity(study, path: str | os.PathLike | None = None,
                  runs_dir: str | os.PathLike = "runs") -> tuple[Path, dict[str, Any]] | None:
    """The proxy-check report for this study's proxy settings: ``path`` if given (it must exist), else the first of
    :func:`fidelity_reports` whose proxy data, epochs, resolution and recipe match the study's."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"--fidelity {p}: no such file (write one with `patsearch proxy-check --out {p}`)")
        try:
            return p, json.loads(p.read_text())
        except ValueError:
            raise UserError(f"--fidelity {p}: not a JSON report of `patsearch proxy-check`") from None
    config = study.user_attrs.get("patsearch_config") or {}
    for candidate in fidelity_reports(runs_dir):
        try:
            report = json.loads(candidate.read_text())
        except (OSError, ValueError):
            continue
        view = _fidelity_view(report, config) if isinstance(report, dict) else None
        if view is not None:
            return candidate, view
    return None


@dataclass
class Noise:
    """The standard error of one proxy score, in points, and where it comes from."""

    n_val: int | None
    seed_std: float | None  # points, measured by proxy-check
    confirm_std: float | None = None  # points: the pooled seed-to-seed std of this study's confirmed rows

    def of(self, top1: float | None) -> float | None:
        if top1 is None:
            return None
        if self.seed_std is not None:
            return self.seed_std
        return None if self.n_val is None else 100 * binomial_se(top1, self.n_val)

    def of_row(self, row: Row) -> float | None:
        """The standard error of what ranks ``row``: a confirmed mean's is the seed std over sqrt(seeds)."""
        if row.confirmed and self.confirm_std is not None:
            return self.confirm_std / math.sqrt(len(row.scores))
        return self.of(row.top1)

    def source(self) -> str:
        if self.seed_std is not None:
            text = "the proxy's measured seed-to-seed std"
        elif self.n_val is not None:
            text = f"binomial, {self.n_val} validation images"
        else:
            text = "unknown (validation set size not recorded)"
        if self.confirm_std is not None:
            text += (f"; means over seeds: their seed-to-seed std, {self.confirm_std:.2f} points pooled over the "
                     "confirmed networks, over sqrt(seeds)")
        return text


def pooled_seed_std(rs: Sequence[Row]) -> float | None:
    """Seed-to-seed std (points) pooled over the rows scored on several seeds: sqrt of the mean within-row
    variance, weighted by degrees of freedom."""
    std = pooled_std([r.scores for r in rs if r.confirmed])
    return None if std is None else 100 * std


def noise_of(study, fidelity: tuple[Path, dict[str, Any]] | None, rs: Sequence[Row] | None = None) -> Noise:
    """The noise of the study's scores; ``rs`` are its :func:`rows` when the caller has them already."""
    seed_std = fidelity[1].get("seed_std") if fidelity else None
    return Noise(validation_size(study), float(seed_std) if seed_std is not None else None,
                 pooled_seed_std(rows(study) if rs is None else rs))


def budget_use(row: Row, c: ConstraintInfo) -> float | None:
    """How much of the constraint a row uses: predicted latency / budget, or floor / predicted throughput."""
    value = row.predicted.get(c.key)
    if value is None or value <= 0:
        return None
    return value / c.limit if c.kind == "latency" else c.limit / value


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
                  "rung before, on the networks both trained; seconds: summed trainings (wall-clock span)")
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


def rung_se(entry: dict[str, Any], rung: dict[str, Any], n_val: int | None) -> float | None:
    """1 standard error (points) of one network's mean at one rung."""
    seeds = len(entry["scores"])
    if seeds > 1:
        std = pooled_std([e["scores"] for e in rung["ranking"] if len(e["scores"]) > 1])
        return None if std is None else 100 * std / math.sqrt(seeds)
    return None if n_val is None else 100 * binomial_se(entry["mean"], n_val)


def _state(r: Row) -> str:
    return (r.state.lower() + ("" if r.feasible else " (infeasible)") + (" (stopped)" if r.stopped_early else "")
            + (f" (= trial {r.duplicate_of})" if r.duplicate_of is not None else ""))


def lead(study, fidelity=None) -> dict[str, Any] | None:
    """The best searched network against the best baseline: the gap and whether it is inside the noise.

    Two independent scores each with standard error s1, s2 differ by noise of sqrt(s1^2 + s2^2); a lead smaller
    than twice that (about 95%) is called inside the noise.
    """
    rs = rows(study)
    search = best_row([r for r in rs if not r.baseline])
    base = best_row([r for r in rs if r.baseline])
    if search is None or base is None:
        return None
    noise = noise_of(study, fidelity, rs)
    s1, s2 = noise.of_row(search), noise.of_row(base)
    delta = 100 * (search.score - base.score)
    se = None if s1 is None or s2 is None else math.sqrt(s1 ** 2 + s2 ** 2)
    return {"trial": search.number, "top1": search.score, "baseline": base.baseline, "baseline_top1": base.score,
            "seeds": len(search.scores), "baseline_seeds": len(base.scores),
            "delta_points": round(delta, 3), "se_points": None if se is None else round(se, 3),
            "inside_noise": None if se is None else abs(delta) < 2 * se, "noise": noise.source()}


def comparison(study, fidelity=None) -> str:
    """One line: the best searched network against the best baseline at the same constraints, with the noise."""
    rs = rows(study)
    search = best_row([r for r in rs if not r.baseline])
    base = best_row([r for r in rs if r.baseline])
    if search is None:
        return "no feasible candidate finished yet"
    if base is None:
        why = "no baseline in this study" if not any(r.baseline for r in rs) else "no baseline finished"
        return f"best: trial {search.number}, proxy top-1 {100 * search.score:.2f}%{_seeds(search)} ({why})"
    info = lead(study, fidelity)
    line = (f"best searched (trial {search.number}) {100 * search.score:.2f}%{_seeds(search)} vs {base.baseline} "
            f"{100 * base.score:.2f}%{_seeds(base)} proxy top-1: {info['delta_points']:+.2f} points")
    if info["se_points"] is None:
        return line + " (noise unknown: the validation set size is not recorded)"
    verdict = ("inside the noise: not evidence that either is better" if info["inside_noise"]
               else f"{abs(info['delta_points']) / info['se_points']:.1f} standard errors")
    return line + f", standard error of the difference {info['se_points']:.2f} points ({info['noise']}): {verdict}"


def _seeds(r: Row) -> str:
    return f" (mean of {len(r.scores)} seeds)" if r.confirmed else ""


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
    return notes


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
    lines += ["", summary["comparison"], ""]
    lines += [f"- {note}" for note in summary["notes"]]
    return "\n".join(lines) + "\n"


def write_summary(study, out_dir: str | os.PathLike, fidelity=None) -> list[Path]:
    """``summary.json`` and ``summary.md`` in ``out_dir``."""
    summary = summary_dict(study, fidelity)
    out = Path(out_dir)
    return [atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n"),
            atomic_write_text(out / "summary.md", summary_markdown(summary))]


# --- plots -----------------------------------------------------------------------------------------------------
# Below this many trained networks parameter importances are a rough hint (8 trials gave "depth3 0.81" on a tiny
# study, which a few more trials can overturn): the plot says so in its title.
FEW_FOR_IMPORTANCES = 20


def write_plots(study, out_dir: str | os.PathLike) -> tuple[list[Path], list[str]]:
    """Pareto front (accuracy vs the primary constraint), optimisation history and parameter importances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    written: list[Path] = []
    notes: list[str] = []
    multi = len(study.directions) > 1
    cons = constraints_of(study)
    rs = rows(study)

    def save(ax, name: str) -> None:
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.set_size_inches(8, 5.5)
        written.append(atomic_save_figure(fig, out / name, dpi=110, bbox_inches="tight"))

    plots = [
        ("pareto.png", lambda: _front_plot(study, rs, cons, multi)),
        ("history.png", lambda: _history_plot(study, multi)),
        ("importances.png", lambda: importances_plot(study, notes)),
    ]
    for name, make in plots:
        try:
            save(make(), name)
        except Exception as exc:  # too few trials for importances, no parameters, ...
            notes.append(f"{name} skipped: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            plt.close("all")
    return written, notes


TOP1_LABEL = "proxy top-1 (%)"


def _history_plot(study, multi: bool):
    """Optuna's history plot with the top-1 axis in % like the summary: a tick format, since a ``target`` that
    scaled the values would drop Optuna's best-value line of single-objective studies."""
    import optuna.visualization.matplotlib as ovm
    from matplotlib.ticker import PercentFormatter

    ax = ovm.plot_optimization_history(study, target=(lambda t: t.values[0]) if multi else None,
                                       target_name="proxy top-1")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel(TOP1_LABEL)
    return ax


def importances_plot(study, notes: list[str] | None = None):
    """Parameter importances over the trained networks, titled with how many they are and, when they are few,
    that the ranking is only a hint (a line in ``notes`` says so too)."""
    import optuna.visualization.matplotlib as ovm

    trained = trained_study(study)
    n = len(trained.trials)
    if len(study.directions) == 1:
        ax = ovm.plot_param_importances(trained, target_name="proxy top-1")
    else:  # PED-ANOVA ranks low targets as good (and says so): negate the maximised top-1, as optuna-dashboard does
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="PedAnovaImportanceEvaluator computes the importances")
            ax = ovm.plot_param_importances(trained, target=lambda t: -t.values[0], target_name="proxy top-1")
    title = f"Parameter importances for proxy top-1, from {n} trained networks"
    if n < FEW_FOR_IMPORTANCES:
        title += f"\nonly {n}: a rough hint that more trials can overturn, not a measurement"
        if notes is not None:
            notes.append(f"importances.png: from only {n} trained networks (under {FEW_FOR_IMPORTANCES}), a rough "
                         "hint")
    ax.set_title(title, loc="left", fontsize=10)  # in place of Optuna's own title, which sits on the left
    return ax


def trained_study(study):
    """An in-memory copy holding only the trained, completed trials: importances computed on it say what made
    networks score well, not which choices were too slow (infeasible trials score -inf, which Optuna's importances
    skip anyway; older studies gave them a placeholder 0. They teach the sampler through the constraint)."""
    import optuna

    copy = optuna.create_study(directions=study.directions, study_name=study.study_name)
    copy.add_trials([t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                     if not any(v > 0 for v in t.constraints.values())
                     and t.user_attrs.get(ATTR_FEASIBLE) is not False])
    return copy


def _front_plot(study, rs: Sequence[Row], cons: Sequence[ConstraintInfo], multi: bool):
    import matplotlib.pyplot as plt

    if multi:
        import optuna.visualization.matplotlib as ovm

        c = cons[0]  # trained networks only: an infeasible one has no top-1 to place (its legend entry misled)
        return ovm.plot_pareto_front(trained_study(study), targets=lambda t: (100 * t.values[0], t.values[1]),
                                     target_names=[TOP1_LABEL, c.label()])
    # Single objective: still show accuracy against the primary constraint, with the budget and the front.
    c = cons[0]
    fig, ax = plt.subplots()
    trained = [r for r in rs if r.top1 is not None and c.key in r.predicted]
    infeasible = [r for r in rs if not r.feasible and c.key in r.predicted]
    searched = [r for r in trained if not r.baseline and r.state != "PRUNED"]
    pruned = [r for r in trained if not r.baseline and r.state == "PRUNED"]
    # Only what occurred gets a legend entry; scores in % as the summary gives them.
    if searched:
        ax.scatter([r.predicted[c.key] for r in searched], [100 * r.top1 for r in searched], label="searched",
                   alpha=0.8)
    if pruned:
        ax.scatter([r.predicted[c.key] for r in pruned], [100 * r.top1 for r in pruned], facecolors="none",
                   edgecolors="tab:orange", label="pruned (top-1 when stopped)", alpha=0.9)
    if infeasible:  # no score: along the bottom edge, so that they do not stretch the top-1 axis down to 0
        xs = [r.predicted[c.key] for r in infeasible]
        ax.scatter(xs, [0.02] * len(xs), marker="x", color="grey", transform=ax.get_xaxis_transform(),
                   label="infeasible (not trained, no score)")
        ax.update_datalim([(x, 100 * trained[0].top1) for x in xs] if trained else [(x, 0.0) for x in xs])
    for r in trained:
        if r.baseline:
            ax.scatter([r.predicted[c.key]], [100 * r.top1], marker="*", s=160, color="tab:red")
            ax.annotate(r.baseline, (r.predicted[c.key], 100 * r.top1), textcoords="offset points", xytext=(5, 5))
    front = pareto_front(rs, c.key, c.kind)
    if front:
        ax.plot([r.predicted[c.key] for r in front], [100 * r.top1 for r in front], color="tab:green",
                label="front")
    ax.axvline(c.limit, color="tab:red", linestyle="--", label=f"budget {c.limit:g} {c.unit}")
    ax.set_xlabel(f"predicted {c.label()}")
    ax.set_ylabel(TOP1_LABEL)
    ax.set_title(f"{study.study_name}: proxy accuracy vs predicted {c.kind}")
    ax.legend(loc="best")
    return ax

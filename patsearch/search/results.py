"""A search's results as rows, and what is chosen from them: :class:`Row` per trial (:func:`rows`), the finished
ones best first (:func:`finished`, :func:`best_row`), the Pareto front, the share of a budget a row uses, and the
noise of each score (:class:`Noise`: the binomial standard error on the validation set, or the proxy's measured
seed-to-seed spread when a ``patsearch proxy-check`` report matches the proxy settings).

What is shown or written from them: :mod:`~patsearch.search.summary` (tables, ``summary.md`` / ``summary.json``),
:mod:`~patsearch.search.plots` (PNG plots) and :mod:`~patsearch.search.best_yaml` (``best.yaml``, ``front.yaml``).
"""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from patsearch.arch import ArchConfig
from patsearch.errors import UserError
from patsearch.ranking import binomial_se, pooled_std
from patsearch.search.budget import describe_limit
from patsearch.search.objective import (
    ATTR_ARCH,
    ATTR_BASELINE,
    ATTR_DUPLICATE,
    ATTR_FLOPS,
    ATTR_PARAMS,
    ATTR_RESOLUTION,
    ATTR_RUNG,
    ATTR_STOPPED,
    ATTR_TOP1,
)
from patsearch.search.rungs import faster_first, predictions, rung_scores
from patsearch.search.trial_counts import is_infeasible


@dataclass(frozen=True)
class ConstraintInfo:
    """A constraint as stored with the study (enough to print and plot it without loading any table)."""

    device: str
    kind: str
    limit: float
    relative_to: str | None = None

    @property
    def key(self) -> str:
        return f"{self.device}:{'latency_ms' if self.kind == 'latency' else 'throughput'}"

    @property
    def unit(self) -> str:
        return "ms" if self.kind == "latency" else "img/s"

    def label(self) -> str:
        return f"{self.device} {'latency' if self.kind == 'latency' else 'throughput'} ({self.unit})"

    def describe(self) -> str:
        return describe_limit(self.device, self.kind, self.limit, self.relative_to)


def constraints_of(study) -> list[ConstraintInfo]:
    config = study.user_attrs.get("patsearch_config") or {}
    return [ConstraintInfo(c["device"], c["kind"], float(c["limit"]), c.get("relative_to"))
            for c in config.get("constraints", [])]


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
        predicted = predictions(ua)
        top1 = ua.get(ATTR_TOP1)
        if top1 is None and t.state.name == "PRUNED" and t.intermediate_values:
            top1 = t.intermediate_values[max(t.intermediate_values)]
        params, flops = costs.get(str(t.number), (ua.get(ATTR_PARAMS), ua.get(ATTR_FLOPS)))
        out.append(Row(t.number, t.state.name, ua.get(ATTR_BASELINE), top1, predicted,
                       not is_infeasible(t),
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
    only chosen among networks scored at the longest training and on every seed); ties: the faster by its
    predictions, then the earlier trial."""
    done = [r for r in rs if r.state == "COMPLETE" and r.feasible and r.top1 is not None]
    return sorted(done, key=lambda r: (-r.top_rung, not r.confirmed, -r.score, faster_first(r.predicted), r.number))


def at_rung(r: Row, rung: int) -> Row:
    """The row as it stood after ``rung``: its scores there, or at the highest rung below it that it reached."""
    return replace(r, rung_scores={k: v for k, v in r.rung_scores.items() if k <= rung})


def common_rung(rs: Sequence[Row]) -> int:
    """The highest rung at which both a searched network and a baseline were scored (0 without rungs)."""
    done = finished(rs)
    return min(max((r.top_rung for r in done if not r.baseline), default=0),
               max((r.top_rung for r in done if r.baseline), default=0))


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


def state_counts(study) -> dict[str, int]:
    """Trials by what happened to them: infeasible proposals (never trained) apart from complete ones."""
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        if ATTR_RUNG in t.user_attrs:
            counts["re-trained"] = counts.get("re-trained", 0) + 1
            continue
        name = "infeasible" if is_infeasible(t) else t.state.name.lower()
        counts[name] = counts.get(name, 0) + 1
    return counts



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


def lead(study, fidelity=None, rs: list[Row] | None = None, *, baseline: str | None = None) -> dict[str, Any] | None:
    """The best searched network against the best baseline (or the baseline named ``baseline``): the gap and whether
    it is inside the noise.

    Two independent scores each with standard error s1, s2 differ by noise of sqrt(s1^2 + s2^2); a lead smaller
    than twice that (about 95%) is called inside the noise.
    In a multi-fidelity search the two are compared at the highest rung both were trained at (``rung``): a score
    at 15 epochs against one at 5 says nothing about the networks. ``rs``: the study's rows when the caller has
    them already.
    """
    rs = rows(study) if rs is None else rs
    rung = common_rung(rs)
    view = [at_rung(r, rung) for r in rs]
    search = best_row([r for r in view if not r.baseline])
    base = best_row([r for r in view if r.baseline and baseline in (None, r.baseline)])
    if search is None or base is None:
        return None
    noise = noise_of(study, fidelity, rs)
    s1, s2 = noise.of_row(search), noise.of_row(base)
    delta = 100 * (search.score - base.score)
    se = None if s1 is None or s2 is None else math.sqrt(s1 ** 2 + s2 ** 2)
    return {"trial": search.number, "top1": search.score, "baseline": base.baseline, "baseline_top1": base.score,
            "seeds": len(search.scores), "baseline_seeds": len(base.scores), "rung": rung,
            "confirmed": search.confirmed, "baseline_confirmed": base.confirmed,
            "delta_points": round(delta, 3), "se_points": None if se is None else round(se, 3),
            # a zero standard error (every seed scored alike) measures no noise: no verdict rather than infinity
            "inside_noise": None if not se else abs(delta) < 2 * se, "noise": noise.source()}



def rung_se(entry: dict[str, Any], rung: dict[str, Any], n_val: int | None) -> float | None:
    """1 standard error (points) of one network's mean at one rung."""
    seeds = len(entry["scores"])
    if seeds > 1:
        std = pooled_std([e["scores"] for e in rung["ranking"] if len(e["scores"]) > 1])
        return None if std is None else 100 * std / math.sqrt(seeds)
    return None if n_val is None else 100 * binomial_se(entry["mean"], n_val)

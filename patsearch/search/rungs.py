"""Multi-fidelity search: successive halving over training length (``patsearch search --rungs 5,15,45``).

A proxy of a few epochs ranks networks by how fast they learn, which is not how well they end up: the order of
the same networks moves with training length. So the search decides at growing lengths. Rung 0 is the search
itself (``--trials`` candidates, each proxy-trained for the first rung's epochs). When rung ``k - 1`` is finished,
its best ``keep`` share of searched networks, and every baseline, are trained again for rung ``k``'s epochs, each
with its own full schedule (a cosine run cut short is not a shorter run); the last rung trains each network on
``top_seeds`` seeds. The winner is the best mean at the highest rung.

Re-trainings are Optuna trials of the same study, enqueued with the network's parameters and ``rung``,
``rung_parent`` and ``rung_seed`` user attributes, so the one worker loop of :mod:`patsearch.search.worker_loop`
runs them: exact counts with many workers, heartbeat retry of a killed worker's trial, and resume after a kill at
any rung come with it. Which networks each rung promoted is stored once, under the claim lock, in the study's user
attribute ``rungs_promoted``; a finished rung is never trained again.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from patsearch.errors import UserError
from patsearch.search.constraints import lower_is_better
from patsearch.search.objective import (
    ATTR_ARCH,
    ATTR_BASELINE,
    ATTR_DUPLICATE,
    ATTR_OUTSIDE_SPACE,
    ATTR_RESOLUTION,
    ATTR_RUNG,
    ATTR_RUNG_EPOCHS,
    ATTR_RUNG_PARENT,
    ATTR_RUNG_SEED,
    ATTR_SECONDS,
    ATTR_TOP1,
    PRED_PREFIX,
)
from patsearch.search.trial_counts import is_infeasible

PROMOTED_ATTR = "rungs_promoted"  # study user attr: {rung: [parent trial numbers]}

# What :meth:`Rungs.advance` asks the worker loop to do.
CLAIM = "claim"  # re-trainings were enqueued (or are waiting): claim them
WAIT = "wait"  # a rung is still training elsewhere; its results decide the next rung
DONE = "done"  # every rung is promoted; nothing more will be enqueued


@dataclass(frozen=True)
class Rungs:
    """The rungs' training lengths, the last rung's seeds and the share of networks each rung keeps."""

    epochs: tuple[int, ...]
    top_seeds: int = 2
    keep: float = 1 / 3

    def __post_init__(self) -> None:
        if len(self.epochs) < 2:
            raise UserError(f"--rungs needs at least two training lengths (e.g. 5,15,45), got {list(self.epochs)}; "
                            "use --rungs none for a single-fidelity search")
        if any(not isinstance(e, int) or e < 1 for e in self.epochs) or list(self.epochs) != sorted(set(self.epochs)):
            raise UserError(f"--rungs must be increasing positive epoch counts (e.g. 5,15,45), got {list(self.epochs)}")
        self.check_shape(self.top_seeds, self.keep)

    @staticmethod
    def check_shape(top_seeds: Any, keep: Any) -> None:
        """One-line errors for the last rung's seeds and the share each rung keeps (``--rung-seeds``,
        ``--rung-keep``), the one check of both."""
        if isinstance(top_seeds, bool) or not isinstance(top_seeds, int) or top_seeds < 1:
            raise UserError(f"--rung-seeds must be a positive integer, got {top_seeds!r}")
        if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep < 1:
            raise UserError(f"--rung-keep must be a fraction between 0 and 1 (e.g. 0.33), got {keep!r}")

    @classmethod
    def parse(cls, text: str, *, top_seeds: int = 2, keep: float = 1 / 3) -> Rungs | None:
        """``"5,15,45"`` -> three rungs; ``"none"`` -> None (single fidelity)."""
        raw = str(text).strip().lower()
        if raw in ("none", "off", "0", ""):
            return None
        try:
            epochs = tuple(int(part) for part in raw.split(","))
        except ValueError:
            raise UserError(f"--rungs {text!r}: give increasing epoch counts separated by commas (e.g. 5,15,45), "
                            "or none") from None
        return cls(epochs, top_seeds=top_seeds, keep=keep)

    @classmethod
    def scaled(cls, first: int, *, top_seeds: int = 2, keep: float = 1 / 3) -> Rungs:
        """Three rungs at ``first``, 3x and 9x its epochs: each rung trains its third of networks about as long
        in all as the rung before."""
        return cls((first, 3 * first, 9 * first), top_seeds=top_seeds, keep=keep)

    def seeds(self, rung: int) -> int:
        return self.top_seeds if rung == len(self.epochs) - 1 else 1

    def kept(self, n: int) -> int:
        """How many of ``n`` searched networks the next rung trains again."""
        return min(n, max(1, math.ceil(self.keep * n)))

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": list(self.epochs), "top_seeds": self.top_seeds, "keep": round(self.keep, 4)}

    def describe(self) -> str:
        return (" -> ".join(f"{e}" for e in self.epochs) + f" epochs, keeping {self.keep:.0%} of networks per rung, "
                f"{self.top_seeds} seed(s) at the last")

    def planned_epochs(self, trials: int, baselines: int) -> int:
        """Training epochs the whole search plans: rung 0's candidates plus every re-training."""
        total, n = trials * self.epochs[0], trials
        for k in range(1, len(self.epochs)):
            n = self.kept(n)
            total += (n + baselines) * self.epochs[k] * self.seeds(k)
        return total

    # --- the worker loop's step ----------------------------------------------------------------------------
    def advance(self, study, trials: Sequence[Any], *, base_seed: int) -> str:
        """Called under the claim lock once rung 0 holds its target: enqueue the next rung when the one before
        is finished. Returns :data:`CLAIM`, :data:`WAIT` or :data:`DONE`."""
        from optuna.trial import TrialState

        promoted = dict(study.user_attrs.get(PROMOTED_ATTR) or {})
        busy = (TrialState.RUNNING, TrialState.WAITING)
        if any(t.state == TrialState.WAITING for t in trials):
            return CLAIM
        for k in range(1, len(self.epochs)):
            if str(k) in promoted:
                continue
            if any(t.state in busy and rung_of(t) == k - 1 for t in trials):
                return WAIT
            ranking = rung_ranking(trials, k - 1)
            searched = [r for r in ranking if not r.baseline]
            chosen = searched[:self.kept(len(searched))] + [r for r in ranking if r.baseline]
            by_number = {t.number: t for t in trials}
            for r in chosen:
                parent = by_number[r.parent]
                for j in range(self.seeds(k)):
                    _enqueue_retraining(study, parent, rung=k, epochs=self.epochs[k], seed=base_seed + j)
            promoted[str(k)] = [r.parent for r in chosen]
            study.set_user_attr(PROMOTED_ATTR, promoted)
            if chosen:
                return CLAIM
        return DONE


def _enqueue_retraining(study, parent, *, rung: int, epochs: int, seed: int) -> None:
    ua = parent.user_attrs
    attrs: dict[str, Any] = {ATTR_RUNG: rung, ATTR_RUNG_PARENT: parent.number, ATTR_RUNG_SEED: seed,
                             ATTR_RUNG_EPOCHS: epochs, ATTR_ARCH: ua[ATTR_ARCH],
                             ATTR_RESOLUTION: ua[ATTR_RESOLUTION]}
    for key in (ATTR_BASELINE, ATTR_OUTSIDE_SPACE):
        if ua.get(key):
            attrs[key] = ua[key]
    study.enqueue_trial(dict(parent.params), user_attrs=attrs)


def rung_of(trial) -> int:
    return int(trial.user_attrs.get(ATTR_RUNG, 0))


@dataclass(frozen=True)
class RungScore:
    """One network's result at one rung: its rung-0 trial number, its scores by seed, training seconds."""

    parent: int
    baseline: str | None
    scores: tuple[float, ...]
    seconds: float
    speed: tuple[float, ...] = ()  # the network's predictions as a sort key: see faster_first

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores)


def faster_first(predicted: dict[str, float]) -> tuple[float, ...]:
    """A sort key over a network's predicted constraint metrics (``device:latency_ms`` or ``device:throughput``)
    that puts the faster of two networks first: of two that score the same, the user wants the faster one."""
    return tuple(v if lower_is_better(k) else -v for k, v in sorted(predicted.items()))


def predictions(user_attrs: dict[str, Any]) -> dict[str, float]:
    """A trial's predicted constraint metrics, by ``device:metric``."""
    return {k[len(PRED_PREFIX):]: float(v) for k, v in user_attrs.items() if k.startswith(PRED_PREFIX)}


def rung_ranking(trials: Sequence[Any], rung: int) -> list[RungScore]:
    """The networks scored at ``rung``, best mean first (ties: the faster by its predictions, then the earlier
    trial). Rung 0 counts completed, feasible, trained trials that are not copies of another trial's score."""
    from optuna.trial import TrialState

    by_parent: dict[int, dict[str, Any]] = {}
    for t in trials:
        if t.state != TrialState.COMPLETE or rung_of(t) != rung or ATTR_TOP1 not in t.user_attrs:
            continue
        ua = t.user_attrs
        if rung == 0 and (is_infeasible(t) or ua.get(ATTR_DUPLICATE) is not None):
            continue
        parent = t.number if rung == 0 else int(ua[ATTR_RUNG_PARENT])
        entry = by_parent.setdefault(parent, {"baseline": ua.get(ATTR_BASELINE), "scores": {}, "seconds": 0.0})
        entry["scores"][int(ua.get(ATTR_RUNG_SEED, 0))] = float(ua[ATTR_TOP1])
        entry["seconds"] += float(ua.get(ATTR_SECONDS) or 0.0)
    by_number = {t.number: t for t in trials}  # a re-training is ranked by its rung-0 trial's predictions
    out = [RungScore(p, e["baseline"], tuple(v for _, v in sorted(e["scores"].items())), e["seconds"],
                     faster_first(predictions(by_number[p].user_attrs)) if p in by_number else ())
           for p, e in by_parent.items()]
    return sorted(out, key=lambda r: (-r.mean, r.speed, r.parent))


def rung_scores(trials: Sequence[Any]) -> dict[int, dict[int, RungScore]]:
    """``{parent trial: {rung: RungScore}}`` for every re-trained network (rungs 1 and up)."""
    out: dict[int, dict[int, RungScore]] = {}
    rungs = sorted({rung_of(t) for t in trials} - {0})
    for k in rungs:
        for r in rung_ranking(trials, k):
            out.setdefault(r.parent, {})[k] = r
    return out


def busy_seconds(intervals: Sequence[tuple[Any, Any]]) -> float:
    """Wall-clock seconds during which at least one of the (start, end) datetime intervals ran: a rung resumed in a
    later GPU stretch does not count the hours between the stretches."""
    total, end = 0.0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total, end = total + (b - a).total_seconds(), b
        elif b > end:
            total, end = total + (b - end).total_seconds(), b
    return total


def rung_report(study, trials: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """Per rung: its epochs, networks, seeds, training seconds (summed over trainings, and the wall-clock time
    during which any of them ran), the top of its ranking and the Kendall tau of its order against the rung before,
    measured on the networks the two rungs share (free fidelity evidence for every search)."""
    from patsearch.ranking import kendall_tau

    trials = study.get_trials(deepcopy=False) if trials is None else trials
    config = (study.user_attrs.get("patsearch_config") or {}).get("rungs") or {}
    epochs = list(config.get("epochs") or [])
    if not epochs:
        return []
    report: list[dict[str, Any]] = []
    previous: dict[int, float] = {}
    for k, e in enumerate(epochs):
        ranking = rung_ranking(trials, k)
        wall = busy_seconds([(t.datetime_start, t.datetime_complete) for t in trials
                             if rung_of(t) == k and t.datetime_start and t.datetime_complete])
        shared = [r for r in ranking if r.parent in previous]
        tau = kendall_tau([previous[r.parent] for r in shared], [r.mean for r in shared]) if len(shared) >= 2 \
            else float("nan")
        report.append({"rung": k, "epochs": e, "networks": len(ranking), "seeds": max((len(r.scores) for r in ranking),
                                                                                    default=0),
                       "training_seconds": round(sum(r.seconds for r in ranking), 1),
                       "wall_seconds": round(wall, 1),
                       "tau_vs_previous": None if math.isnan(tau) else round(tau, 3), "tau_networks": len(shared),
                       "ranking": [{"trial": r.parent, "source": r.baseline or "search", "scores": list(r.scores),
                                    "mean": r.mean} for r in ranking]})
        previous = {r.parent: r.mean for r in ranking}
    return report


__all__ = ["CLAIM", "DONE", "PROMOTED_ATTR", "WAIT", "RungScore", "Rungs", "busy_seconds", "rung_of", "rung_ranking",
           "rung_report", "rung_scores"]

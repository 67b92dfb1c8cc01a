"""How far a search is, in training epochs: the unit its cost is planned in. Counting candidates alone stops at a
multi-fidelity search's first rung, while its later rungs (no new candidates, longer trainings) take most of the
time."""
from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from patsearch.search.objective import ATTR_DUPLICATE, ATTR_RUNG_EPOCHS
from patsearch.search.trial_counts import is_infeasible


def minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def trained_epochs(trials: Iterable[Any], first_epochs: int) -> int:
    """Epochs the finished trainings of ``trials`` took: a re-training its rung's, a first-fidelity candidate
    ``first_epochs`` (a pruned one the epochs it reached); infeasible candidates and copies of another trial's
    network trained nothing."""
    from optuna.trial import TrialState

    total = 0
    for t in trials:
        ua = t.user_attrs
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED) or is_infeasible(t) \
                or ua.get(ATTR_DUPLICATE) is not None:
            continue
        if ATTR_RUNG_EPOCHS in ua:
            total += int(ua[ATTR_RUNG_EPOCHS])
        elif t.state == TrialState.PRUNED:
            total += len(t.intermediate_values)
        else:
            total += first_epochs
    return total


class EpochClock:
    """The planned epochs, those trained so far, and the time left at the rate this run has trained them (a
    resumed search's earlier epochs count as done, not toward the rate)."""

    def __init__(self, planned: int, done: int, now: float | None = None) -> None:
        self.planned = planned
        self.done_at_start = done
        self.started = time.time() if now is None else now

    def line(self, done: int, now: float | None = None) -> str:
        now = time.time() if now is None else now
        text = f"{min(done, self.planned):,}/{self.planned:,} planned epochs"
        ran, elapsed, left = done - self.done_at_start, now - self.started, self.planned - done
        if ran > 0 and elapsed > 0 and left > 0:
            text += f", about {minutes(left * elapsed / ran)} left"
        return text

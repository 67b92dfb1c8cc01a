"""Which trials count toward a search's target of trials: distinct networks within the constraints, scored at the
first fidelity."""
from __future__ import annotations

from patsearch.search.objective import ATTR_DUPLICATE, ATTR_FEASIBLE, ATTR_RUNG


def is_infeasible(trial) -> bool:
    """Outside a constraint: a positive violation, or marked so by the objective (older studies recorded only
    the mark, with a placeholder score)."""
    return any(v > 0 for v in trial.constraints.values()) or trial.user_attrs.get(ATTR_FEASIBLE) is False


def is_distinct_candidate(trial) -> bool:
    """A first-fidelity candidate the target counts: within the constraints, not a copy of another trial's
    network, not a multi-fidelity re-training."""
    ua = trial.user_attrs
    return not is_infeasible(trial) and ATTR_DUPLICATE not in ua and ATTR_RUNG not in ua


def count_toward_target(trials) -> tuple[int, int, list]:
    """(trials that count toward the target, WAITING trials, RUNNING trials).

    The target counts the distinct networks scored at the first fidelity: FAIL trials, infeasible ones (never
    trained, they cost a table lookup), copies of another trial's network (their score is reused) and the
    re-trainings of a multi-fidelity search do not count, whatever the sampler proposes.
    """
    from optuna.trial import TrialState

    counted = sum(t.state != TrialState.FAIL and is_distinct_candidate(t) for t in trials)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    running = [t for t in trials if t.state == TrialState.RUNNING]
    return counted, waiting, running

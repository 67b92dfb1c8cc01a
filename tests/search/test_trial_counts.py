"""What counts toward a search's target (patsearch.search.trial_counts): distinct feasible first-fidelity
networks that did not fail; WAITING and RUNNING trials are reported beside the count."""
from __future__ import annotations

from optuna.trial import TrialState, create_trial

from patsearch.search.objective import ATTR_DUPLICATE, ATTR_RUNG
from patsearch.search.trial_counts import count_toward_target, is_distinct_candidate, is_infeasible


def _trial(state=TrialState.COMPLETE, *, over: float = -1.0, user_attrs=None):
    value = 0.5 if state == TrialState.COMPLETE else None
    return create_trial(state=state, value=value, constraints={"latency": over}, user_attrs=user_attrs or {})


def test_only_distinct_feasible_first_fidelity_trials_that_did_not_fail_count():
    trials = [
        _trial(),                                         # counts
        _trial(TrialState.PRUNED),                        # counts: trained, then stopped
        _trial(over=0.3),                                 # infeasible: never trained
        _trial(user_attrs={ATTR_DUPLICATE: 0}),           # a copy of trial 0's network
        _trial(user_attrs={ATTR_RUNG: 1}),                # a multi-fidelity re-training
        _trial(TrialState.FAIL),
        _trial(TrialState.WAITING),                       # counts (already claimed) and is waiting
        _trial(TrialState.RUNNING),                       # counts and is running
    ]
    counted, waiting, running = count_toward_target(trials)
    assert (counted, waiting) == (4, 1)
    assert running == [trials[7]]


def test_a_constraint_exactly_at_its_budget_is_feasible():
    assert not is_infeasible(_trial(over=0.0))
    assert is_infeasible(_trial(over=1e-9))
    assert is_distinct_candidate(_trial(over=0.0))
    assert not is_distinct_candidate(_trial(over=0.0, user_attrs={ATTR_RUNG: 2}))


def test_the_objectives_infeasible_mark_counts_without_a_violation():
    from patsearch.search.objective import ATTR_FEASIBLE

    # older studies recorded only the mark (with a placeholder score); plots, summaries and rungs read it alike
    assert is_infeasible(_trial(user_attrs={ATTR_FEASIBLE: False}))
    assert not is_infeasible(_trial(user_attrs={ATTR_FEASIBLE: True}))

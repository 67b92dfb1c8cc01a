"""A search's progress in training epochs: what each finished trial trained, and the time left at this run's pace."""
from __future__ import annotations

import optuna
import pytest
from optuna.distributions import IntDistribution
from optuna.trial import TrialState, create_trial

from patsearch.search.epochs import EpochClock, minutes, trained_epochs
from patsearch.search.objective import ATTR_DUPLICATE, ATTR_RUNG, ATTR_RUNG_EPOCHS


def _trial(state=TrialState.COMPLETE, steps: int = 0, **attrs):
    return create_trial(state=state, value=0.5 if state == TrialState.COMPLETE else None,
                        params={"x": 1}, distributions={"x": IntDistribution(0, 2)}, user_attrs=attrs,
                        intermediate_values={i: 0.1 for i in range(steps)})


def test_each_finished_training_counts_its_own_epochs():
    trials = [
        _trial(),                                                   # a first-fidelity candidate: 5
        _trial(baseline="patnet_t1"),                               # a baseline at rung 0: 5
        _trial(**{ATTR_RUNG: 1, ATTR_RUNG_EPOCHS: 15}),             # re-trainings: their rung's
        _trial(**{ATTR_RUNG: 2, ATTR_RUNG_EPOCHS: 45}),
        _trial(TrialState.PRUNED, steps=2),                         # pruned after 2 epochs
        _trial(feasible=False),                                     # over budget: never trained
        _trial(**{ATTR_DUPLICATE: 0}),                              # a copy: the score is reused
        _trial(TrialState.FAIL),
    ]
    assert trained_epochs(trials, first_epochs=5) == 5 + 5 + 15 + 45 + 2


def test_running_and_waiting_trials_have_trained_nothing_yet():
    study = optuna.create_study()
    study.enqueue_trial({"x": 1}, user_attrs={ATTR_RUNG: 1, ATTR_RUNG_EPOCHS: 15})
    study.ask()  # RUNNING
    study.enqueue_trial({"x": 2}, user_attrs={ATTR_RUNG: 1, ATTR_RUNG_EPOCHS: 15})  # WAITING
    assert trained_epochs(study.get_trials(), first_epochs=5) == 0


def test_the_clock_says_how_far_and_how_long_at_this_runs_pace():
    clock = EpochClock(planned=1440, done=300, now=1000.0)  # a resumed search: 300 epochs from an earlier run
    assert clock.line(300, now=1000.0) == "300/1,440 planned epochs"  # no pace yet
    # 120 epochs in 120 s: 1 epoch/s, 1,020 left
    assert clock.line(420, now=1120.0) == "420/1,440 planned epochs, about 17 min left"
    assert clock.line(1440, now=2000.0) == "1,440/1,440 planned epochs"
    assert clock.line(1500, now=2100.0) == "1,440/1,440 planned epochs"  # more than planned (a retried trial)


@pytest.mark.parametrize("seconds, text", [(45, "45 s"), (89.4, "89 s"), (90, "2 min"), (1020, "17 min")])
def test_minutes(seconds, text):
    assert minutes(seconds) == text

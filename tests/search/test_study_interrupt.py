"""An interrupted worker leaves no trial RUNNING: the one it was creating or training is failed and queued again,
and worker threads are interrupted inside their objective only."""
from __future__ import annotations

import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from patsearch.search.storage import parse_storage
from patsearch.search.study import create_or_load_study, open_storage
from patsearch.search.worker_loop import ThreadInterrupter, run_worker


class _StopInAsk(optuna.samplers.RandomSampler):
    """Ctrl-C arriving inside Optuna's ask, after the trial was created and before the objective runs."""

    def before_trial(self, study, trial) -> None:
        raise KeyboardInterrupt


@pytest.mark.parametrize("scheme", ["sqlite", "journal"])
def test_an_interruption_inside_ask_queues_the_new_trial_again(tmp_path, scheme):
    spec = parse_storage(f"{scheme}:///{tmp_path}/s.{'db' if scheme == 'sqlite' else 'log'}", "s")
    study = create_or_load_study(spec, "s", directions=["maximize"], sampler=_StopInAsk(seed=0), pruner=None,
                                 storage=open_storage(spec, heartbeat_interval=1))
    with pytest.raises(KeyboardInterrupt):
        run_worker(study, lambda t: t.suggest_float("x", 0.0, 1.0), spec=spec, n_trials=2, heartbeat_interval=1)
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.WAITING]
    assert study.get_trials()[1].system_attrs["failed_trial"] == 0

    study.sampler = optuna.samplers.RandomSampler(seed=0)  # the rerun: the queued trial, then one more
    assert run_worker(study, lambda t: t.suggest_float("x", 0.0, 1.0), spec=spec, n_trials=2,
                      heartbeat_interval=1).ran == 2
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL] + [TrialState.COMPLETE] * 2


def test_thread_interrupter_raises_inside_the_objective_only():
    interrupter = ThreadInterrupter()
    inside, outside, go = threading.Event(), threading.Event(), threading.Event()
    outcome: dict[str, str] = {}

    def training():
        try:
            with interrupter.training():
                inside.set()
                while True:  # a training step after another
                    time.sleep(0.01)
        except KeyboardInterrupt:
            outcome["training"] = "interrupted"

    def claiming():  # a thread between trials (claiming one, writing a result): left to finish that
        try:
            outside.set()
            while not go.is_set():
                time.sleep(0.01)
            outcome["claiming"] = "finished"
        except KeyboardInterrupt:
            outcome["claiming"] = "interrupted"

    threads = [threading.Thread(target=training, daemon=True), threading.Thread(target=claiming, daemon=True)]
    for t in threads:
        t.start()
    assert inside.wait(30) and outside.wait(30)
    interrupter.interrupt()
    threads[0].join(30)
    go.set()
    threads[1].join(30)
    assert outcome == {"training": "interrupted", "claiming": "finished"}
    with pytest.raises(KeyboardInterrupt):  # and the next objective a thread reaches does not start
        with interrupter.training():
            pass

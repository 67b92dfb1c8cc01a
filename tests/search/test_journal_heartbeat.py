"""Heartbeats on the journal-file storage: a dead worker's trial is failed and retried like on SQLite/PostgreSQL,
a live worker's is left alone, and a multi-fidelity search whose rung-0 trial lost its worker still finishes."""
from __future__ import annotations

import os
import signal
import threading
import time
import types
import warnings

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState
from search_helpers import start_worker, wait_for_marker

from patsearch.search import journal_heartbeat, objective
from patsearch.search.journal_heartbeat import HEARTBEAT_ATTR, JournalHeartbeatStorage
from patsearch.search.rungs import rung_of
from patsearch.search.storage import parse_storage
from patsearch.search.study import create_or_load_study, open_storage
from patsearch.search.worker_loop import run_worker

X = {"x": FloatDistribution(0.0, 1.0)}
GRACE_S = 3  # heartbeat interval 1 s, grace 3 x that (patsearch.search.storage.GRACE_FACTOR)


def _study(spec, name: str = "s"):
    storage = open_storage(spec, heartbeat_interval=1)
    return create_or_load_study(spec, name, directions=["maximize"], sampler=optuna.samplers.RandomSampler(seed=0),
                                pruner=None, storage=storage)


def _left_running(spec):
    """A trial RUNNING in the study whose worker beat once and is gone (its storage object dropped)."""
    gone = _study(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna: heartbeats are meant for Study.optimize, which the dead worker ran
        trial = gone.ask(X)
    gone._storage.record_heartbeat(trial._trial_id)
    return gone._storage.get_trial(trial._trial_id)


def _clock_moves_on(monkeypatch, seconds: float) -> float:
    """The heartbeat clock jumps ``seconds`` ahead (the same as waiting that long, without the wait)."""
    real = time.time
    monkeypatch.setattr(journal_heartbeat, "time", types.SimpleNamespace(time=lambda: real() + seconds))
    return real() + seconds


def test_journal_storage_gets_heartbeats(tmp_path):
    spec = parse_storage(f"journal:///{tmp_path}/s.log", "s")
    assert spec.heartbeats
    storage = open_storage(spec, heartbeat_interval=2)
    assert isinstance(storage, JournalHeartbeatStorage)
    assert storage.get_heartbeat_interval() == 2 and storage.grace_period == 6
    assert optuna.storages._heartbeat.is_heartbeat_enabled(storage)


def test_a_dead_workers_trial_is_failed_and_retried_by_the_next_worker(tmp_path, monkeypatch):
    spec = parse_storage(f"journal:///{tmp_path}/s.log", "s")
    dead = _left_running(spec)
    assert isinstance(dead.system_attrs[HEARTBEAT_ATTR], float)
    _clock_moves_on(monkeypatch, GRACE_S + 5)  # no beat for longer than the grace

    study = _study(spec)
    stats = run_worker(study, lambda t: t.suggest_float("x", 0.0, 1.0), spec=spec, n_trials=3, heartbeat_interval=1)
    trials = study.get_trials()
    assert stats.ran == 3
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [dead.number]
    retries = [t for t in trials if t.system_attrs.get("failed_trial") is not None]
    assert len(retries) == 1 and retries[0].system_attrs["failed_trial"] == dead.number
    assert retries[0].params == dead.params and retries[0].state == TrialState.COMPLETE
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3 and len(trials) == 4
    # The finished trials beat while they ran (the worker's heartbeat thread, from Study.optimize).
    assert all(HEARTBEAT_ATTR in t.system_attrs for t in trials)


def test_a_live_workers_beating_trial_is_not_failed(tmp_path, monkeypatch):
    spec = parse_storage(f"journal:///{tmp_path}/s.log", "s")
    dead = _left_running(spec)
    started, release = threading.Event(), threading.Event()
    live_trial: list = []

    def blocking(trial):
        if not live_trial:
            live_trial.append(trial.number)
            started.set()
            assert release.wait(60)
        return trial.suggest_float("x", 0.0, 1.0)

    live = _study(spec)
    errors: list = []

    def work():
        try:
            run_worker(live, blocking, spec=spec, n_trials=2, heartbeat_interval=1)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work)
    # The dead trial is failed at the live worker's first claim only if already stale: keep it fresh until then.
    thread.start()
    try:
        assert started.wait(60), "the live worker never started its trial"
        shifted = _clock_moves_on(monkeypatch, GRACE_S + 5)
        checker = _study(spec)
        deadline = time.monotonic() + 30
        beat = lambda: checker.trials[live_trial[0]].system_attrs.get(HEARTBEAT_ATTR, 0)  # noqa: E731
        while beat() < shifted - 1:  # marker: the live worker has beaten since the clock moved on
            assert time.monotonic() < deadline, "the live worker's heartbeat never came"
            time.sleep(0.05)
        fail_stale_trials(checker)
        states = {t.number: t.state for t in checker.get_trials()}
        assert states[live_trial[0]] == TrialState.RUNNING  # beating: left alone
        assert states[dead.number] == TrialState.FAIL  # silent for longer than the grace: failed
    finally:
        release.set()
        thread.join(60)
    assert not errors, errors
    trials = checker.get_trials()
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [dead.number]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2  # the live trial, and the dead one's retry
    assert [t.system_attrs.get("failed_trial") for t in trials if t.state == TrialState.COMPLETE
            and t.number != live_trial[0]] == [dead.number]


def test_a_duplicate_waiting_on_a_dead_workers_trial_gives_up(tmp_path, monkeypatch):
    """A proposal identical to a RUNNING trial waits for its score; when that trial's worker is gone the wait ends
    (the claim step then retries the trial) instead of lasting forever."""
    spec = parse_storage(f"journal:///{tmp_path}/s.log", "s")
    dead = _left_running(spec)
    study = _study(spec)
    monkeypatch.setattr(objective, "DUPLICATE_POLL_S", 0.01)
    _clock_moves_on(monkeypatch, GRACE_S + 5)
    waiter = types.SimpleNamespace(study=study)
    answer: list = []
    thread = threading.Thread(target=lambda: answer.append(objective._wait_for(waiter, study.trials[dead.number])),
                              daemon=True)  # a wait that never ends fails the test instead of hanging it
    thread.start()
    thread.join(30)
    assert answer == [None]
    assert study.trials[dead.number].state == TrialState.RUNNING  # only the claim step fails it


def _load(path, name: str):
    from optuna.storages.journal import JournalFileBackend

    return optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(JournalFileBackend(str(path))))


@pytest.mark.slow
def test_kill_9_at_rung_0_on_a_journal_file_then_the_next_worker_finishes_every_rung(tmp_path, tiny_profile):
    """Without heartbeats on the journal file, the killed trial stayed RUNNING and the next rung waited forever."""
    path = tmp_path / "mf.log"
    url = f"journal:///{path}"
    marker, log = tmp_path / "training", tmp_path / "calls.log"
    victim = start_worker(url, tiny_profile, tmp_path / "runs", "mf", 6, sleep=0.01, rungs="2,4,8", seed=0,
                          marker=marker, calls=log)
    try:  # the marker is written when the victim's first (rung-0) training starts, which never ends
        wait_for_marker(victim, marker, "a rung-0 training started")
    finally:
        os.kill(victim.pid, signal.SIGKILL)
        victim.communicate(timeout=30)
    killed = [t for t in _load(path, "mf").get_trials() if t.state == TrialState.RUNNING]
    assert len(killed) == 1 and rung_of(killed[0]) == 0
    assert log.read_text().splitlines()[0].startswith("2 ")
    log.unlink()

    rerun = start_worker(url, tiny_profile, tmp_path / "runs", "mf", 6, sleep=0.01, rungs="2,4,8", seed=0, calls=log)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    calls = log.read_text().splitlines()
    # Six distinct rung-0 networks (five new and the killed one again), then 2 at rung 1 and 1 x 2 seeds at rung 2.
    assert [sum(c.startswith(f"{e} ") for c in calls) for e in (2, 4, 8)] == [6, 2, 2]
    trials = _load(path, "mf").get_trials()
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [killed[0].number]
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == killed[0].number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == killed[0].params
    assert [sum(rung_of(t) == k and t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs
                for t in trials) for k in (0, 1, 2)] == [6, 2, 2]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]

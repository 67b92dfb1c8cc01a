"""Several worker processes on one study file, and kill -9 recovery through the real CLI and trainer."""
from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from search_helpers import HEARTBEAT_S, ROOT, wait_for_marker
from search_helpers import start_worker as _worker

from patsearch.search.trial_counts import is_distinct_candidate


def _load_study(url: str, name: str):
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        storage = optuna.storages.JournalStorage(JournalFileBackend(url[len("journal://"):]))
    else:
        storage = optuna.storages.RDBStorage(url)
    return optuna.load_study(study_name=name, storage=storage)


def _counted(trials) -> list:
    """The finished trials `--trials N` counts (within the budget, not a copy of another trial's network)."""
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and is_distinct_candidate(t)]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_processes_share_one_file_with_an_exact_trial_count(tmp_path, tiny_profile, kind):
    url = f"sqlite:///{tmp_path}/shared.db" if kind == "sqlite" else f"journal:///{tmp_path}/shared.log"
    procs = [_worker(url, tiny_profile, tmp_path / "runs", "shared", 10, sleep=0.05, n_jobs=2) for _ in range(3)]
    outputs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
        assert "locked" not in err and "Traceback" not in err, err[-3000:]
    trials = _load_study(url, "shared").get_trials()
    counted = _counted(trials)  # a repeated network reuses a score and is not counted
    assert len(counted) == 10
    assert not [t for t in trials if t.state in (TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING)]


def _schema_ready(path: Path) -> bool:
    """Whether the CLI has finished creating Optuna's schema in ``path`` (a read-only look that creates nothing)."""
    if not path.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)) as db:
            return db.execute("SELECT count(*) FROM alembic_version").fetchone()[0] > 0
    except sqlite3.Error:
        return False


def _cli(runs: Path, profile: Path) -> list[str]:
    """The real `patsearch search` with real (tiny) proxy training on 64 synthetic images. 50 epochs, so that a
    trial trains for seconds (25 epochs: 2.2-2.6 s on the 2-core VM): at 1 epoch both trials and the exit often fell
    between two of the test's looks at the study (every 0.3 s), and the search ended before it could be killed
    (2 runs in 3)."""
    return [sys.executable, str(ROOT / "cli.py"), "search", "--latency-budget", f"{profile}=5ms", "--space", "tiny",
            "--trials", "2", "--proxy-epochs", "50", "--proxy-train-samples", "64", "--proxy-val-samples", "32",
            "--proxy-batch-size", "32", "--runs-dir", str(runs), "--study-name", "killed", "--heartbeat-interval",
            str(HEARTBEAT_S), "--baselines", "none", "--no-plots", "--seed", "0"]


@pytest.mark.slow
def test_kill_9_mid_trial_then_rerun_completes_the_study(tmp_path, tiny_profile):
    runs = tmp_path / "runs"
    url = f"sqlite:///{runs}/killed/study.db"
    proc = subprocess.Popen(_cli(runs, tiny_profile), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    victim = None
    deadline = time.time() + 180
    try:
        while victim is None and time.time() < deadline:
            assert proc.poll() is None, f"the search ended before it could be killed: {proc.stderr.read()[-2000:]}"
            time.sleep(0.3)
            if not _schema_ready(runs / "killed" / "study.db"):
                continue  # opening it now would race the CLI's own schema creation
            try:
                trials = _load_study(url, "killed").get_trials()
            except KeyError:  # the schema exists but the study row not yet
                continue
            # A trial in training: RUNNING and already past its constraint check (feasible).
            running = [t for t in trials if t.state == TrialState.RUNNING and t.user_attrs.get("feasible")]
            if running:
                victim = running[0]
        assert victim is not None, "no trial reached training in time"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    rerun = subprocess.run(_cli(runs, tiny_profile), capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    trials = _load_study(url, "killed").get_trials()
    by_state = {s: [t for t in trials if t.state == s] for s in TrialState}
    assert [t.number for t in by_state[TrialState.FAIL]] == [victim.number]  # the killed trial, failed
    assert not by_state[TrialState.RUNNING] and not by_state[TrialState.WAITING]
    counted = _counted(trials)  # a repeated network reuses a score and is not counted
    assert len(counted) == 2  # no trial lost, none duplicated
    retries = [t for t in trials if t.system_attrs.get("failed_trial") is not None]
    assert len(retries) == 1
    assert retries[0].system_attrs["failed_trial"] == victim.number
    assert retries[0].params == victim.params and retries[0] in counted  # the same candidate, trained again
    assert (runs / "killed" / "best.yaml").exists()



@pytest.mark.slow
@pytest.mark.parametrize("kind, n_jobs", [("sqlite", 1), ("journal", 1), ("sqlite", 2)])
def test_sigterm_mid_trial_queues_the_trial_again_with_one_line_and_a_rerun_finishes(tmp_path, tiny_profile, kind,
                                                                                      n_jobs):
    """`timeout` or a scheduler's stop (SIGTERM) ends `patsearch search` like Ctrl-C: the running trials (each worker
    thread's) are failed and queued again at once (not left RUNNING until a later run's heartbeat check), one line,
    exit 143; the same command then finishes the study with those networks trained once more and nothing else
    repeated."""
    url = f"sqlite:///{tmp_path}/term.db" if kind == "sqlite" else f"journal:///{tmp_path}/term.log"
    marker = tmp_path / "training"
    proc = _worker(url, tiny_profile, tmp_path / "runs", "term", 3, marker=marker, via_cli=1, n_jobs=n_jobs)
    wait_for_marker(proc, marker, "a trial reached training")
    stopped_at = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert time.monotonic() - stopped_at < 30  # promptly: not after the trainings end or a heartbeat grace
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert err.strip().splitlines() == ["stopped by SIGTERM: every running trial is queued again; rerun the same "
                                        "command to resume"], err[-3000:]

    trials = _load_study(url, "term").get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    victims = {t.number: t for t in trials if t.state == TrialState.FAIL}
    # The trial in training; with two threads also the other one's, in training or stopped before it began.
    assert 1 <= len(victims) <= n_jobs and any(t.user_attrs.get("feasible") is True for t in victims.values())
    queued = [t for t in trials if t.state == TrialState.WAITING]
    assert sorted(t.system_attrs.get("failed_trial") for t in queued) == sorted(victims)  # each stopped one, once
    assert all(t.params == victims[t.system_attrs["failed_trial"]].params for t in queued)

    rerun = _worker(url, tiny_profile, tmp_path / "runs", "term", 3, via_cli=1, n_jobs=n_jobs)
    _, err = rerun.communicate(timeout=240)
    assert rerun.returncode == 0, err[-3000:]
    trials = _load_study(url, "term").get_trials()
    assert sorted(t.number for t in trials if t.state == TrialState.FAIL) == sorted(victims)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    counted = _counted(trials)
    assert len(counted) == 3  # the target exactly: the stopped networks once each, none lost or added
    assert sorted(t.number for t in counted if t.system_attrs.get("failed_trial") in victims) == \
        sorted(t.number for t in queued)


def _gpu_processes_cli(runs: Path, profile: Path) -> list[str]:
    """`patsearch search` with two `--gpus` worker processes that train on the CPU (this host has no GPU): the
    parent's GPU list is replaced, everything else (spawned workers, real tiny trainings, signals) is the command's."""
    code = ("import sys; from patsearch.search import api; api.worker_gpus = lambda opts: [None, None]; "
            "from patsearch.cli import main; sys.argv = ['patsearch', '--quiet'] + sys.argv[1:]; main()")
    return [sys.executable, "-c", code] + _cli(runs, profile)[2:] + ["--gpus", "2"]


@pytest.mark.slow
def test_sigterm_to_a_search_with_gpu_worker_processes_queues_their_trials_again(tmp_path, tiny_profile):
    """A scheduler stops the parent with SIGTERM: it passes the signal on to its worker processes, each queues its
    running trial again, and the command exits with the one line; the same command then finishes the study."""
    runs = tmp_path / "runs"
    url = f"sqlite:///{runs}/killed/study.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(_gpu_processes_cli(runs, tiny_profile), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    deadline = time.monotonic() + 240
    training = []
    while not training:  # marker: a worker process has a trial in training (RUNNING, past its constraint check)
        assert proc.poll() is None, f"the search ended before it could be stopped: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "no trial reached training in time"
        time.sleep(0.3)
        if not _schema_ready(runs / "killed" / "study.db"):
            continue
        try:
            trials = _load_study(url, "killed").get_trials()
        except KeyError:
            continue
        training = [t for t in trials if t.state == TrialState.RUNNING and t.user_attrs.get("feasible")]
    stopped_at = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert time.monotonic() - stopped_at < 60, err[-3000:]
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert err.strip().splitlines()[-1] == ("stopped by SIGTERM: every running trial is queued again; rerun the same "
                                            "command to resume"), err[-3000:]
    assert "Traceback" not in err, err[-3000:]

    trials = _load_study(url, "killed").get_trials()
    states = {t.number: t.state.name for t in trials}  # in every message below: which race a failure was
    assert not [t for t in trials if t.state == TrialState.RUNNING], states
    victims = {t.number: t for t in trials if t.state == TrialState.FAIL}
    # at most one per worker process
    assert training[0].number in victims and len(victims) <= 2, (training[0].number, states, err[-2000:])
    queued = [t for t in trials if t.state == TrialState.WAITING]
    assert sorted(t.system_attrs.get("failed_trial") for t in queued) == sorted(victims), states

    rerun = subprocess.run(_gpu_processes_cli(runs, tiny_profile), capture_output=True, text=True, cwd=tmp_path,
                           env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    trials = _load_study(url, "killed").get_trials()
    assert sorted(t.number for t in trials if t.state == TrialState.FAIL) == sorted(victims)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert len(_counted(trials)) == 2  # the target exactly

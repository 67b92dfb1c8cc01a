"""Many workers on one PostgreSQL study (a real server started by conftest.py on loopback).

Four worker processes share a study: the trial count is exact, nothing errors, and a worker killed with SIGKILL
mid-trial has its trial failed by heartbeat and retried by a surviving worker. The password in the URL appears in
no output and no file.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState
from search_helpers import PG_PASSWORD, ROOT, wait_for_marker
from search_helpers import start_worker as _worker

from patsearch.search.storage import parse_storage
from patsearch.search.trial_counts import is_infeasible

pytestmark = pytest.mark.postgres


@pytest.mark.slow
def test_four_workers_exact_count_and_a_killed_workers_trial_is_retried(tmp_path, postgres_url, tiny_profile):
    runs = tmp_path / "runs"
    marker = tmp_path / "victim.started"
    victim = _worker(postgres_url, tiny_profile, runs, "pg", 12, marker=marker)
    wait_for_marker(victim, marker, "the victim started training", timeout=120)
    # The others start once the victim holds a trial: started together, they could fill the study before the
    # victim's interpreter came up (it then exits 0 having trained nothing, a race seen on a loaded 2-core VM).
    others = [_worker(postgres_url, tiny_profile, runs, "pg", 12, sleep=0.15) for _ in range(3)]
    os.kill(victim.pid, signal.SIGKILL)  # mid-trial: after creating the marker it waits in its first trial
    victim_out, victim_err = victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    outputs = [p.communicate(timeout=240) for p in others]
    for p, (_, err) in zip(others, outputs):
        assert p.returncode == 0, err[-3000:]
        assert "Traceback" not in err and "error" not in err.lower(), err[-3000:]
    for out, err in outputs:  # each surviving worker names its storage, with the password masked
        assert "postgresql://***@127.0.0.1" in out + err, (out + err)[-2000:]
    for out, err in outputs + [(victim_out, victim_err)]:
        assert PG_PASSWORD not in out + err
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert PG_PASSWORD.encode() not in path.read_bytes(), path

    study = optuna.load_study(study_name="pg", storage=parse_storage(postgres_url, "pg").url)
    trials = study.get_trials()
    counted = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and not is_infeasible(t)
               and "duplicate_of" not in t.user_attrs]  # a repeated network reuses a score and is not counted
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(counted) == 12
    assert len(failed) == 1  # the killed worker's trial ...
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retried) == 1 and retried[0] in counted  # ... ran again, once, to completion
    assert retried[0].params == failed[0].params
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_show_and_errors_never_print_the_password(tmp_path, postgres_url):
    bad = postgres_url.replace(PG_PASSWORD, "wrong-" + PG_PASSWORD)
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), "search", "--show", "nope", "--storage", bad],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert PG_PASSWORD not in proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "postgresql://***@" in proc.stderr
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), "search", "--show", "missing", "--storage",
                           postgres_url], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and "no study 'missing'" in proc.stderr
    assert PG_PASSWORD not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_workers_on_postgres_train_distinct_networks_through_every_rung(tmp_path, postgres_url, tiny_profile):
    from test_rungs import distinct_networks

    from patsearch.search.rungs import rung_of

    procs = [_worker(postgres_url, tiny_profile, tmp_path / "runs", "pgmf", 6, sleep=0.02, seed=0, rungs="2,4,8")
             for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name="pgmf", storage=parse_storage(postgres_url, "pgmf").url)
    trials = study.get_trials()
    assert len(distinct_networks(trials)) == 6  # one seed, three workers: six different networks
    assert sum(rung_of(t) == 1 and t.state == TrialState.COMPLETE for t in trials) == 2  # ceil(6 / 3)
    assert sum(rung_of(t) == 2 and t.state == TrialState.COMPLETE for t in trials) == 2  # one network, two seeds
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING, TrialState.FAIL)]

"""A study opened: its Optuna storage (heartbeats, SQLite in WAL mode, the schema created by one worker at a time),
the study created or loaded (its options checked against the ones it was created with), and a worker joining it.

Every storage gets heartbeats (Optuna's own for RDB storages, :mod:`patsearch.search.journal_heartbeat` for the
journal file): a RUNNING trial whose worker stops beating for ``grace_period`` seconds is failed and re-enqueued
with the same parameters (:class:`optuna.storages.RetryHeartbeatStaleTrialCallback`) by
:func:`optuna.storages.fail_stale_trials`, the one check for every storage, so a killed worker loses nothing and a
multi-fidelity search never waits on a dead rung. Where a study lives is :mod:`patsearch.search.storage`; the
workers' loop over it is :mod:`patsearch.search.worker_loop`.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from patsearch.errors import UserError
from patsearch.io import ensure_writable
from patsearch.search.claim import ClaimLock
from patsearch.search.optuna_noise import quiet_optuna
from patsearch.search.storage import (
    DEFAULT_HEARTBEAT_INTERVAL,
    GRACE_FACTOR,
    MAX_RETRY,
    StorageError,
    StorageSpec,
    first_line,
)


def open_storage(spec: StorageSpec, *, heartbeat_interval: int = DEFAULT_HEARTBEAT_INTERVAL,
                 grace_period: int | None = None):
    """An Optuna storage for ``spec``, with heartbeats and retry of dead workers' trials where supported."""
    quiet_optuna()
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    if spec.path is not None:  # a file storage: the study, its lock files and SQLite's WAL go into its folder
        ensure_writable(spec.path, "--storage", example=f"{spec.kind}:///runs/{spec.path.name}")
    grace = grace_period or GRACE_FACTOR * heartbeat_interval
    if spec.kind == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        from patsearch.search.journal_heartbeat import JournalHeartbeatStorage

        assert spec.path is not None
        spec.path.parent.mkdir(parents=True, exist_ok=True)
        backend = JournalFileBackend(str(spec.path), lock_obj=JournalFileOpenLock(str(spec.path)))
        return JournalHeartbeatStorage(backend, heartbeat_interval=heartbeat_interval, grace_period=grace,
                                       stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY))

    engine_kwargs: dict[str, Any] = {}
    if spec.kind == "sqlite":
        assert spec.path is not None
        spec.path.parent.mkdir(parents=True, exist_ok=True)
        # Writers from several processes queue on SQLite's file lock; wait for it instead of failing at 5 s.
        engine_kwargs["connect_args"] = {"timeout": 120}
    else:
        engine_kwargs["pool_pre_ping"] = True
    # Several workers starting at once would race to create the schema; let one at a time in.
    lock = ClaimLock(spec, "__schema__")
    try:
        with lock:
            if spec.kind == "sqlite":
                assert spec.path is not None
                _sqlite_wal(spec.path)
            return optuna.storages.RDBStorage(
                spec.url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval, grace_period=grace,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY))
    except StorageError:
        raise
    except ImportError as exc:
        raise StorageError(f"storage {spec.display}: missing database driver ({exc}); "
                           "install it, e.g. pip install 'patsearch[postgres]'") from None
    except Exception as exc:  # SQLAlchemy errors echo the URL; report one clean line
        raise StorageError(f"cannot open study storage {spec.display}: {first_line(exc, spec)}") from None
    finally:
        lock.close()


def _sqlite_wal(path: Path, *, attempts: int = 60) -> None:
    """Switch the file to write-ahead logging once: readers then never block the writer (several workers).

    Called under the schema lock, so workers never race each other here. The switch needs an exclusive lock, and
    SQLite answers BUSY at once, without waiting, when two connections would deadlock upgrading; a process outside
    the lock (a dashboard reading the file, say) can still cause that, so retry a bounded number of times.
    """
    import sqlite3

    for attempt in range(attempts):
        try:
            with contextlib.closing(sqlite3.connect(str(path), timeout=120)) as con:
                if con.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                    return
                con.execute("PRAGMA journal_mode=WAL")
                return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if attempt == attempts - 1:
                raise StorageError(f"study file {path} stayed locked while switching it to WAL; stop the other "
                                   "process using it and run again") from None
            time.sleep(min(2.0, 0.05 * 2 ** attempt))


def create_or_load_study(spec: StorageSpec, study_name: str, *, directions: Sequence[str], sampler, pruner,
                         storage=None, config: dict[str, Any] | None = None,
                         on_create: Callable[[Any], None] | None = None, heartbeat_interval: int =
                         DEFAULT_HEARTBEAT_INTERVAL):
    """Create the study, or load it if it exists (rerunning a command resumes it).

    ``config`` (the options that define the search) is stored on a new study and compared on resume, so that a
    rerun with a different budget or space fails loudly instead of mixing two searches in one study.
    ``on_create(study)`` runs once, when the study is new (e.g. to enqueue baselines), under the claim lock.
    """
    import optuna

    storage = storage if storage is not None else open_storage(spec, heartbeat_interval=heartbeat_interval)
    lock = ClaimLock(spec, study_name)
    try:
        with lock:
            try:
                existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
            except Exception as exc:
                raise StorageError(f"cannot read studies from {spec.display}: {first_line(exc, spec)}") from None
            is_new = study_name not in existing
            if not is_new:
                old = existing[study_name]
                wanted = [optuna.study.StudyDirection[d.upper()] for d in directions]
                if list(old.directions) != wanted:
                    raise UserError(f"study {study_name!r} in {spec.display} optimises "
                                    f"{'/'.join(d.name.lower() for d in old.directions)}, not {'/'.join(directions)}; "
                                    "use the same --objective or a new --study-name")
            study = optuna.create_study(storage=storage, study_name=study_name, sampler=sampler, pruner=pruner,
                                        directions=list(directions), load_if_exists=True)
            if is_new:
                if config is not None:
                    study.set_user_attr("patsearch_config", config)
                if on_create is not None:
                    on_create(study)
            elif config is not None:
                _check_same_config(study, config, spec)
    finally:
        lock.close()
    return study


# Options that define a search; resuming with different values would silently mix two searches.
_IDENTITY_KEYS = ("constraints", "space", "data", "proxy_epochs", "proxy_resolution", "objective", "recipe",
                  "proxy_lr", "proxy_batch_size")


def _check_same_config(study, config: dict[str, Any], spec: StorageSpec) -> None:
    stored = study.user_attrs.get("patsearch_config")
    if not isinstance(stored, dict):
        return
    for key in _IDENTITY_KEYS:
        if key in stored and key in config and stored[key] != config[key]:
            raise UserError(f"study {study.study_name!r} in {spec.display} was created with {key}={stored[key]!r}, "
                            f"not {config[key]!r}; rerun with the original options to resume it, or pass a new "
                            "--study-name")


WORKERS_ATTR = "workers_joined"


def join_study(study, spec: StorageSpec) -> int:
    """A worker identity handed out by the study's storage (0, 1, 2, ... in the order workers join, across
    threads, processes and machines): what gives each worker a sampler stream of its own."""
    lock = ClaimLock(spec, study.study_name)
    try:
        with lock:
            identity = int(study.user_attrs.get(WORKERS_ATTR, 0))
            study.set_user_attr(WORKERS_ATTR, identity + 1)
    finally:
        lock.close()
    return identity

"""Study storage, samplers and pruners, and the worker loop that shares one study between many workers.

Storages: an embedded SQLite file (the default, under ``runs/``), a journal file (``journal:///path`` or a path
ending in ``.log``/``.journal``) or any SQLAlchemy URL (``postgresql://``, ``mysql://``). Every storage gets
heartbeats (Optuna's own for RDB storages, :mod:`patsearch.search.journal_heartbeat` for the journal file): a RUNNING
trial whose worker stops beating for ``grace_period`` seconds is failed and re-enqueued with the same parameters
(:class:`optuna.storages.RetryHeartbeatStaleTrialCallback`) by :func:`optuna.storages.fail_stale_trials`, the one
check for every storage, so a killed worker loses nothing and a multi-fidelity search never waits on a dead rung.

Exact trial counts with many workers: Optuna's ``n_trials`` is per worker and ``MaxTrialsCallback`` checks after a
trial ends, so concurrent workers overshoot. Here a worker *claims* a trial under a lock shared by all workers of
the study (a file lock next to a SQLite/journal file, a PostgreSQL advisory lock, a thread lock in-process): under
the lock it fails stale trials, counts the trials that are not FAIL, and asks for a new one only while that count
is below the target (enqueued WAITING trials, already counted, are always taken). The lock is released as soon
as the trial has been created, so training runs in parallel.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patsearch.errors import UserError
from patsearch.io import ensure_writable
from patsearch.search.objective import ATTR_DUPLICATE, ATTR_RUNG
from patsearch.search.redact import redact_url, scrub

logger = logging.getLogger("patsearch.search")

SAMPLERS = ("tpe", "nsga2", "gp", "random")
PRUNERS = ("median", "hyperband", "none")
DEFAULT_HEARTBEAT_INTERVAL = 10  # seconds between heartbeats of a running trial
GRACE_FACTOR = 3  # a trial is stale after this many missed heartbeats
MAX_RETRY = 3  # how often a trial whose worker died is re-run before it is given up


class StorageError(UserError):
    """A study storage could not be opened (bad URL, server down, missing driver)."""


# PED-ANOVA (the importances plot) warns about every parameter with a rare value: on a search of a few trials that
# is most of them, every time the plot is drawn, and the summary already says how many trials the plot rests on.
_IMPORTANCE_NOISE = (r"(Some regimes for parameter|PedAnovaImportanceEvaluator computes|The number of trials is too "
                     r"small to compute importances|Target and region quantiles select)")


def _quiet_optuna() -> None:
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    # Infeasible trials score -inf by design (see patsearch.search.objective); GP clips them on every proposal.
    warnings.filterwarnings("ignore", message="Clip non-finite values to the min/max finite values")
    warnings.filterwarnings("ignore", message=_IMPORTANCE_NOISE, category=UserWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


# --- storage ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StorageSpec:
    """Where a study lives. ``url`` may hold credentials: print :attr:`display`, never ``url``."""

    url: str
    kind: str  # "sqlite" | "journal" | "rdb" (a server database)
    path: Path | None = None  # the file for sqlite/journal storages
    given: str | None = None  # the URL as the user wrote it (before a driver was filled in)

    @property
    def display(self) -> str:
        return redact_url(self.given or self.url)

    @property
    def heartbeats(self) -> bool:
        return self.kind in ("sqlite", "journal", "rdb")


def default_storage_url(study_name: str, runs_dir: str | os.PathLike = "runs") -> str:
    """The embedded SQLite file of a study: ``runs/<study>/study.db``."""
    return f"sqlite:///{Path(runs_dir) / study_name / 'study.db'}"


def parse_storage(storage: str | None, study_name: str, runs_dir: str | os.PathLike = "runs") -> StorageSpec:
    """Turn ``--storage`` (or its absence) into a :class:`StorageSpec`."""
    url = (storage or "").strip() or default_storage_url(study_name, runs_dir)
    if url.startswith("journal://"):
        path = url[len("journal://"):]
        path = path[1:] if path.startswith("//") else path  # journal:///abs/path -> /abs/path
        if not path:
            raise StorageError("journal storage needs a file, e.g. --storage journal:///path/to/study.log")
        return StorageSpec(url=url, kind="journal", path=Path(path))
    if "://" not in url:
        if url.endswith((".log", ".journal", ".jsonl")):
            return StorageSpec(url=url, kind="journal", path=Path(url))
        if url.endswith((".db", ".sqlite", ".sqlite3")):
            return StorageSpec(url=f"sqlite:///{url}", kind="sqlite", path=Path(url))
        raise StorageError(f"storage {redact_url(url)!r}: not a URL; use sqlite:///runs/x.db, journal:///runs/x.log "
                           "or postgresql://user@host/db")
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
    if scheme == "sqlite":
        rest = url.split("://", 1)[1]
        if rest in ("", "/", "/:memory:"):
            raise StorageError("an in-memory SQLite study cannot be shared or resumed; give a file, "
                               "e.g. sqlite:///runs/study.db")
        return StorageSpec(url=url, kind="sqlite", path=Path(rest[1:] if rest.startswith("/") else rest))
    if scheme in ("postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql"):
        if scheme == "postgres":  # SQLAlchemy only knows the long name
            url = "postgresql" + url[len("postgres"):]
        given = url
        if url.startswith("postgresql://"):
            url = "postgresql+" + _postgres_driver() + url[len("postgresql"):]
        return StorageSpec(url=url, kind="rdb", given=given)
    raise StorageError(f"storage {redact_url(url)!r}: unsupported scheme {scheme!r}; use sqlite:///, journal:/// "
                       "or postgresql://")


def _postgres_driver() -> str:
    """SQLAlchemy 2.1 defaults to psycopg 3; use whichever driver is installed (psycopg2-binary is our extra)."""
    import importlib.util

    if importlib.util.find_spec("psycopg") is not None:
        return "psycopg"
    return "psycopg2"


def open_storage(spec: StorageSpec, *, heartbeat_interval: int = DEFAULT_HEARTBEAT_INTERVAL,
                 grace_period: int | None = None):
    """An Optuna storage for ``spec``, with heartbeats and retry of dead workers' trials where supported."""
    _quiet_optuna()
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
        raise StorageError(f"cannot open study storage {spec.display}: {_first_line(exc, spec)}") from None
    finally:
        lock.close()


def _first_line(exc: BaseException, spec: StorageSpec) -> str:
    text = scrub(str(exc), spec.url).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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


# --- samplers and pruners --------------------------------------------------------------------------------------
def make_sampler(name: str, *, seed: int | None, n_trials: int, multi_objective: bool = False):
    """TPE (multivariate, grouped, constant liar), NSGA-II, GP or random, sized for a short search.

    All read the constraints each trial records with ``trial.set_constraint`` (Optuna 5), so they learn where the
    feasible region is without a second model.
    """
    _quiet_optuna()
    import optuna

    name = name.lower().replace("-", "").replace("_", "")
    startup = max(3, min(10, n_trials // 3))  # Optuna's default (10) would make a 10-trial search purely random
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                          n_startup_trials=startup)
    if name in ("nsga2", "nsgaii"):
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, n_trials // 3)))
    if name == "gp":
        import importlib.util

        if importlib.util.find_spec("scipy") is None:
            raise UserError("--sampler gp needs scipy, which is not installed; pip install scipy, or use "
                            "--sampler tpe")
        # the space is conditional (num_heads only where a stage has attention): GP samples such parameters
        # independently by design, and would warn about each on every trial
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup, warn_independent_sampling=False)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UserError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")


def make_pruner(name: str, *, multi_objective: bool, epochs: int):
    """Median pruning of proxy runs by default; none for Pareto studies (Optuna prunes single objectives only)."""
    import optuna

    name = name.lower()
    if name not in PRUNERS:
        raise UserError(f"unknown pruner {name!r}; choose from {', '.join(PRUNERS)}")
    if multi_objective or name == "none" or epochs < 2:
        return optuna.pruners.NopPruner()
    if name == "hyperband":
        return TrainedOnly(optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3))
    # Once 3 candidates were trained; not in the first half of a run, where short proxies still rank noise (a
    # CIFAR search that pruned from epoch 1 stopped 5 of 6 candidates and finished one).
    return TrainedOnly(optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=epochs // 2, interval_steps=1))


class _TrainedTrialsView:
    """A study as a pruner should see it: without infeasible trials, which completed without training and
    would otherwise count as finished "startup" trials and thin out the median."""

    def __init__(self, study) -> None:
        self._study = study

    def get_trials(self, deepcopy: bool = True, states=None):
        return [t for t in self._study.get_trials(deepcopy=deepcopy, states=states) if not is_infeasible(t)]

    @property
    def trials(self):
        return self.get_trials()

    def __getattr__(self, name: str):
        return getattr(self._study, name)


def _base_pruner():
    import optuna

    return optuna.pruners.BasePruner


class TrainedOnly(_base_pruner()):
    """Wraps an Optuna pruner so that it ignores infeasible (never trained) trials."""

    def __init__(self, pruner) -> None:
        self.pruner = pruner

    def prune(self, study, trial) -> bool:
        return self.pruner.prune(_TrainedTrialsView(study), trial)

    def __getattr__(self, name: str):
        return getattr(self.pruner, name)


# --- the claim lock --------------------------------------------------------------------------------------------
_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


class ClaimLock:
    """Mutual exclusion for claiming trials, across threads, processes and (for server databases) machines.

    One instance per worker thread. ``acquire``/``release`` may be called repeatedly; ``release`` when not held is
    a no-op, so the objective can release early and the loop can release unconditionally afterwards.
    """

    def __init__(self, spec: StorageSpec, study_name: str) -> None:
        self.spec = spec
        self.study_name = study_name
        # File storages: one lock file per file (all its studies); server databases: one advisory lock per study.
        key = f"{spec.url}\0{study_name if spec.kind == 'rdb' else ''}"
        with _THREAD_LOCKS_GUARD:
            self._thread_lock = _THREAD_LOCKS.setdefault(key, threading.Lock())
        self._held = False
        self._file = None
        self._engine = None
        self._conn = None
        digest = hashlib.sha256(f"patsearch:{study_name}".encode()).digest()
        self._pg_key = int.from_bytes(digest[:8], "big", signed=True)

    @property
    def held(self) -> bool:
        return self._held

    def acquire(self) -> None:
        if self._held:
            return
        self._thread_lock.acquire()
        try:
            if self.spec.kind in ("sqlite", "journal"):
                assert self.spec.path is not None
                lock_path = self.spec.path.with_name(self.spec.path.name + ".claim.lock")
                lock_path.parent.mkdir(parents=True, exist_ok=True)
                if self._file is None:
                    self._file = open(lock_path, "a+")
                fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
            elif self.spec.url.startswith("postgresql"):  # postgresql+<driver>://
                self._pg_call("SELECT pg_advisory_lock(:k)")
            # Other server databases: in-process lock only (exact counts hold per machine).
        except BaseException:
            self._thread_lock.release()
            raise
        self._held = True

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        try:
            if self._file is not None:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            elif self._conn is not None:
                self._pg_call("SELECT pg_advisory_unlock(:k)")
        finally:
            self._thread_lock.release()

    def _pg_call(self, sql: str) -> None:
        import sqlalchemy

        if self._conn is None:
            self._engine = sqlalchemy.create_engine(self.spec.url, poolclass=sqlalchemy.pool.NullPool)
            try:
                self._conn = self._engine.connect()
            except Exception as exc:
                raise StorageError(f"cannot connect to {self.spec.display}: {_first_line(exc, self.spec)}") from None
        self._conn.execute(sqlalchemy.text(sql), {"k": self._pg_key})
        self._conn.commit()

    def close(self) -> None:
        self.release()
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._conn is not None:
            self._conn.close()
            self._engine.dispose()
            self._conn = self._engine = None

    def __enter__(self) -> ClaimLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


# --- creating, resuming and running a study -------------------------------------------------------------------
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
                raise StorageError(f"cannot read studies from {spec.display}: {_first_line(exc, spec)}") from None
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
_IDENTITY_KEYS = ("constraints", "space", "data", "proxy_epochs", "proxy_resolution", "objective", "recipe")


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


@dataclass
class WorkerStats:
    ran: int = 0
    interrupted: bool = False


def is_infeasible(trial) -> bool:
    return any(v > 0 for v in trial.constraints.values())


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


def run_worker(study, objective: Callable[[Any], Any], *, spec: StorageSpec, n_trials: int,
               deadline: float | None = None, heartbeats: bool = True, heartbeat_interval: int =
               DEFAULT_HEARTBEAT_INTERVAL, on_trial_end: Callable[[Any], None] | None = None,
               stop_event: threading.Event | None = None, max_infeasible: int | None = None,
               advance: Callable[[Any, list], str] | None = None,
               interrupter: ThreadInterrupter | None = None) -> WorkerStats:
    """Claim and run trials until the study holds ``n_trials`` trials that count (see :func:`count_toward_target`).

    When nothing is left to claim but trials are still RUNNING, the worker waits up to one grace period: if one
    of them belonged to a dead worker, it is failed, re-enqueued and picked up here; live workers' trials finish
    on their own. ``advance(study, trials)`` (a multi-fidelity search's :meth:`Rungs.advance
    <patsearch.search.rungs.Rungs.advance>`) is asked, under the lock, what comes once the target is met: it may
    enqueue the next rung's re-trainings ("claim"), ask to wait while a rung still trains elsewhere ("wait"), or
    say that nothing more will come ("done").
    """
    from optuna.storages import fail_stale_trials

    lock = ClaimLock(spec, study.study_name)
    stats = WorkerStats()
    grace = GRACE_FACTOR * heartbeat_interval
    waited_since: float | None = None
    current: dict[str, Any] = {}

    # Objectives that check constraints first (``after_constraints`` hook) release the lock once the trial's
    # feasibility is recorded, so every RUNNING trial another worker counts is known to be feasible or not.
    hooked = hasattr(objective, "after_constraints")
    if hooked:
        objective.after_constraints = lock.release

    def wrapped(trial):
        current["trial"] = trial  # before the lock goes: an interruption in between still finds the trial
        if not hooked:
            lock.release()  # the trial exists now; let other workers claim theirs while this one trains
        if interrupter is None:
            return objective(trial)
        with interrupter.training():
            return objective(trial)

    try:
        while True:
            if stop_event is not None and stop_event.is_set():
                break
            if deadline is not None and time.time() >= deadline:
                break
            lock.acquire()
            if heartbeats:
                fail_stale_trials(study)
            trials = study.get_trials(deepcopy=False)
            counted, waiting, running = count_toward_target(trials)
            if max_infeasible is not None and sum(map(is_infeasible, trials)) >= max_infeasible:
                lock.release()
                raise UserError(f"{max_infeasible} candidates proposed so far miss the constraints and only "
                                f"{counted} fit; the feasible part of the space is tiny: relax the budget or use "
                                "a smaller space")
            if max_infeasible is not None and sum(ATTR_DUPLICATE in t.user_attrs for t in trials) >= max_infeasible:
                lock.release()
                raise UserError(f"{max_infeasible} proposals repeated networks already trained and only {counted} "
                                "distinct ones were found: the feasible space is nearly exhausted; ask for fewer "
                                "--trials or widen the space or budget")
            step = advance(study, trials) if advance is not None and waiting == 0 and counted >= n_trials else None
            if step == "claim":
                waiting = 1
            elif step == "wait":
                lock.release()
                time.sleep(min(heartbeat_interval, 2.0))
                continue
            if waiting == 0 and counted >= n_trials:
                lock.release()
                if not running or not heartbeats:
                    break
                now = time.time()
                waited_since = waited_since or now
                if now - waited_since > grace + 2 * heartbeat_interval:
                    logger.info("%d trial(s) still running in other workers", len(running))
                    break
                time.sleep(min(heartbeat_interval, 2.0))
                continue
            waited_since = None
            current.clear()
            running_before = {t.number for t in running}
            try:
                study.optimize(wrapped, n_trials=1, catch=(), gc_after_trial=False, show_progress_bar=False)
            except KeyboardInterrupt:
                stats.interrupted = True
                for trial in _own_running_trials(study, current.get("trial"), lock.held, running_before):
                    _requeue_interrupted(study, trial)
                raise
            finally:
                lock.release()
            stats.ran += 1
            if on_trial_end is not None and "trial" in current:
                on_trial_end(study.get_trials(deepcopy=False)[current["trial"].number])
    finally:
        lock.close()
    return stats


def _own_running_trials(study, trial, lock_held: bool, running_before: set[int]) -> list:
    """What an interrupted worker leaves behind: the trial it was running, or, when the interruption came inside
    Optuna's ask (the objective not yet called), the trial being created, RUNNING and found by elimination: while
    this worker holds the claim lock no other worker can start one."""
    if trial is not None:
        return [trial]
    if not lock_held:
        return []
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t.number not in running_before]


def _requeue_interrupted(study, trial) -> None:
    """Ctrl-C marks the running trial FAIL; queue it again so that rerunning the command loses nothing.

    An interruption that lands after the objective returned but before Optuna recorded the result leaves the trial
    RUNNING with no one to finish it: fail it here rather than leave it to the heartbeat grace period.
    """
    if trial is None:
        return
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    storage = study._storage
    if storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # finished meanwhile: keep that
            storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    frozen = storage.get_trial(trial._trial_id)
    if frozen.state == TrialState.FAIL:
        RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, frozen)


INTERRUPT_WAIT_S = 30  # how long an interrupted process waits for its worker threads to queue their trials again


class ThreadInterrupter:
    """Stops the worker threads of one process in the middle of their training, as Ctrl-C stops a lone worker.

    Ctrl-C and SIGTERM reach the main thread only; a worker thread would train on (its heartbeat thread keeping the
    process alive) and leave its trial RUNNING when the scheduler's kill follows. :meth:`interrupt` raises
    KeyboardInterrupt inside each thread's objective, where Optuna fails the trial and :func:`run_worker` queues it
    again; a thread outside its objective (claiming a trial, writing a result) is not interrupted in the middle of
    a storage write but stops at its next objective or loop turn. A thread inside a long C call sees the exception
    when the call returns.
    """

    def __init__(self) -> None:
        self._gate = threading.Lock()
        self._training: set[int] = set()
        self.stopping = False

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        """Around one objective call: the region :meth:`interrupt` may raise into."""
        ident = threading.get_ident()
        with self._gate:
            if self.stopping:
                raise KeyboardInterrupt
            self._training.add(ident)
        try:
            yield
        finally:
            with self._gate:
                self._training.discard(ident)

    def interrupt(self) -> None:
        import ctypes

        with self._gate:
            self.stopping = True
            for ident in self._training:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(KeyboardInterrupt))
            self._training.clear()


def run_workers(make_study: Callable[[], Any], objective_factory: Callable[[], Callable[[Any], Any]], *,
                spec: StorageSpec, n_trials: int, n_jobs: int = 1, timeout: float | None = None,
                heartbeat_interval: int = DEFAULT_HEARTBEAT_INTERVAL,
                on_trial_end: Callable[[Any], None] | None = None, max_infeasible: int | None = None,
                advance: Callable[[Any, list], str] | None = None) -> int:
    """Run ``n_jobs`` worker threads on one study; returns how many trials this process ran."""
    deadline = time.time() + timeout if timeout else None
    heartbeats = spec.heartbeats
    if n_jobs <= 1:
        study = make_study()
        return run_worker(study, objective_factory(), spec=spec, n_trials=n_trials, deadline=deadline,
                          heartbeats=heartbeats, heartbeat_interval=heartbeat_interval,
                          on_trial_end=on_trial_end, max_infeasible=max_infeasible, advance=advance).ran
    stop = threading.Event()
    results: list[WorkerStats] = []
    errors: list[BaseException] = []

    # Each thread's own "finished" flag: Thread.join/is_alive are unreliable once a signal has interrupted a join
    # (CPython then marks the joined thread stopped while it still runs).
    done = [threading.Event() for _ in range(n_jobs)]
    interrupter = ThreadInterrupter()

    def work(finished: threading.Event) -> None:
        try:
            results.append(run_worker(make_study(), objective_factory(), spec=spec, n_trials=n_trials,
                                      deadline=deadline, heartbeats=heartbeats,
                                      heartbeat_interval=heartbeat_interval, on_trial_end=on_trial_end,
                                      stop_event=stop, max_infeasible=max_infeasible, advance=advance,
                                      interrupter=interrupter))
        except BaseException as exc:  # surface the first error after all threads stop
            errors.append(exc)
            stop.set()
        finally:
            finished.set()

    threads = [threading.Thread(target=work, args=(done[i],), name=f"patsearch-worker-{i}", daemon=True)
               for i in range(n_jobs)]
    for t in threads:
        t.start()
    try:
        while not all(finished.is_set() for finished in done):
            time.sleep(0.2)
    except KeyboardInterrupt:
        stop.set()
        interrupter.interrupt()
        end = time.monotonic() + INTERRUPT_WAIT_S
        for finished in done:
            finished.wait(max(0.0, end - time.monotonic()))
        left = sum(not finished.is_set() for finished in done)
        if left:
            logger.warning("%d worker thread(s) did not stop within %d s; their trials are retried after the "
                           "heartbeat grace period", left, INTERRUPT_WAIT_S)
        raise
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sum(r.ran for r in results)


@contextlib.contextmanager
def silenced_optuna() -> Iterator[None]:
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)

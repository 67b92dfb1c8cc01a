"""The worker loop that shares one study between many workers (threads, processes, machines), with exact trial
counts, and its interruption: Ctrl-C or SIGTERM queues the running trials again.

Optuna's ``n_trials`` is per worker and ``MaxTrialsCallback`` checks after a trial ends, so concurrent workers
overshoot. Here a worker *claims* a trial under the :class:`~patsearch.search.claim.ClaimLock` shared by all workers
of the study: under the lock it fails stale trials, counts the trials that count toward the target
(:func:`~patsearch.search.trial_counts.count_toward_target`), and asks for a new one only while that count is below
the target (enqueued WAITING trials, already counted, are always taken). The lock is released as soon as the trial
has been created, so training runs in parallel.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from patsearch.errors import UserError
from patsearch.search.claim import ClaimLock
from patsearch.search.objective import ATTR_DUPLICATE
from patsearch.search.storage import DEFAULT_HEARTBEAT_INTERVAL, GRACE_FACTOR, MAX_RETRY, StorageSpec
from patsearch.search.trial_counts import count_toward_target, is_infeasible

logger = logging.getLogger("patsearch.search")


@dataclass
class WorkerStats:
    ran: int = 0
    interrupted: bool = False


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

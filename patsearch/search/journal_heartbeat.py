"""Heartbeats for Optuna's journal storage, which has none of its own.

Optuna gives heartbeats to its RDB storage only: a journal-file study whose worker died kept that worker's trial
RUNNING forever, and a multi-fidelity search waiting for the rung to finish waited forever. Here the journal storage
implements Optuna's :class:`~optuna.storages._heartbeat.BaseHeartbeat`, so the same machinery runs for every
storage: ``Study.optimize`` starts Optuna's heartbeat thread, which records a beat (a trial system attribute holding
the time) every ``heartbeat_interval`` seconds, and :func:`optuna.storages.fail_stale_trials` fails the RUNNING
trials that have not beaten for ``grace_period`` seconds and hands each to the stale-trial callback (a retry).

The beat is the writing host's wall clock, compared with the reading host's: workers on several machines sharing a
journal file need clocks that agree to well within the grace period (NTP does).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import JournalStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState

logger = logging.getLogger("patsearch.search")

HEARTBEAT_ATTR = "patsearch:heartbeat"  # trial system attr: the time (seconds since the epoch) of the last beat


def last_sign_of_life(trial: FrozenTrial) -> float | None:
    """When a running trial's worker last showed it is alive: its last beat or its start, whichever is later.

    The start counts too: a retried trial inherits its failed predecessor's attributes (old beat included), and a
    worker that dies before its first beat would otherwise never look stale.
    """
    times = []
    beat = trial.system_attrs.get(HEARTBEAT_ATTR)
    if isinstance(beat, (int, float)):
        times.append(float(beat))
    if trial.datetime_start is not None:  # local naive time, as the journal replays it
        times.append(trial.datetime_start.timestamp())
    return max(times) if times else None


class JournalHeartbeatStorage(JournalStorage, BaseHeartbeat):
    """A :class:`~optuna.storages.JournalStorage` whose running trials beat, like an RDB storage's."""

    def __init__(self, backend: Any, *, heartbeat_interval: int, grace_period: int,
                 stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None) -> None:
        super().__init__(backend)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.heartbeat_stale_trial_callback = stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        # The heartbeat thread may outlive its trial by one beat (or another worker may have failed it meanwhile):
        # a finished trial takes no attribute, and there is nothing left to keep alive.
        if self.get_trial(trial_id).state.is_finished():
            return
        try:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
        except UpdateFinishedTrialError:
            logger.debug("trial %d finished before its heartbeat was recorded", trial_id)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            alive = last_sign_of_life(trial)
            if alive is not None and now - alive > self.grace_period:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self.heartbeat_stale_trial_callback


__all__ = ["HEARTBEAT_ATTR", "JournalHeartbeatStorage", "last_sign_of_life"]

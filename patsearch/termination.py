"""SIGTERM handled like Ctrl-C: ``timeout``, a batch scheduler's stop or ``kill`` end a long job through the same
clean-up as an interruption (a search queues its running trial again) instead of killing it where it stands.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM; a KeyboardInterrupt, so every ``except
    KeyboardInterrupt`` clean-up runs for it too."""

    exit_code = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM


def _raise_terminated(signum: int, _frame: Any) -> None:
    # Once only: a second SIGTERM (schedulers repeat theirs) must not break the clean-up the first one started.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (elsewhere: nothing changes, since
    Python delivers signals to the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _DropInterruptions(logging.Filter):
    """Drops a record logged with a KeyboardInterrupt (or :class:`Terminated`) as its exception, and the record
    right after it from the same thread (Optuna follows its traceback of a failed trial with "failed with value
    None"): an interruption is reported once, by the command, not as an error with a traceback."""

    def __init__(self) -> None:
        super().__init__()
        self._follow_up: int | None = None  # the thread whose next record goes too

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, KeyboardInterrupt):
            self._follow_up = record.thread
            return False
        if self._follow_up is not None and self._follow_up == record.thread:
            self._follow_up = None
            return False
        return True


@contextlib.contextmanager
def quiet_interruptions(*logger_names: str) -> Iterator[None]:
    """Within the block, the named loggers (e.g. ``optuna.study._optimize``, which logs every failed trial with its
    traceback) say nothing about an interruption; other records pass."""
    flt = _DropInterruptions()
    loggers = [logging.getLogger(name) for name in logger_names]
    for logger in loggers:
        logger.addFilter(flt)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(flt)

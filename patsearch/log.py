"""Where the library's notes and progress lines go: loggers under ``patsearch``, shown by the application.

Library modules log with ``logging.getLogger(__name__)`` and never configure logging; an application decides
what reaches the terminal: the ``patsearch`` command calls :func:`configure` (``--quiet`` / ``--verbose``), a
script can call it too or set up ``logging`` its own way (``logging.basicConfig(level=logging.INFO)``).
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Callable

ROOT = "patsearch"
QUIET, DEFAULT, VERBOSE = logging.WARNING, logging.INFO, logging.DEBUG


class _TerminalHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes: rich's live bars swap it to print records above
    the bar, and test runners swap it to capture output."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.setStream assigns it; the live sys.stderr always wins
        pass


class _Formatter(logging.Formatter):
    """Notes and progress as plain lines (they carry their own ``note:`` prefix); other levels say what they are."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.levelno >= logging.ERROR:
            return f"error: {text}"
        if record.levelno >= logging.WARNING:
            # a note raised to a warning (so --quiet keeps it) already says what it is
            return text if text.startswith(("warning", "note:")) else f"warning: {text}"
        if record.levelno < logging.INFO:
            return f"debug: {record.name}: {text}"
        return text


def configure(level: int = DEFAULT) -> Callable[[], None]:
    """Show the library's records at ``level`` and above on stderr, one line each; returns a function that undoes
    it (the CLI calls it when its command ends, so in-process callers such as tests leave no handler behind)."""
    logger = logging.getLogger(ROOT)
    for old in [h for h in logger.handlers if isinstance(h, _TerminalHandler)]:
        logger.removeHandler(old)
    handler = _TerminalHandler()
    handler.setFormatter(_Formatter())
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous)
    return undo


def progress_shown() -> bool:
    """Live progress bars show unless the application turned the library's notes off (``--quiet``)."""
    level = logging.getLogger(ROOT).level
    return level == logging.NOTSET or level <= logging.INFO

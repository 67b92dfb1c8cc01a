"""The progress of a measuring loop (table layers, held-out networks, bench models): a rich bar with ETA on a
terminal, plain log lines (every ~10% or 30 s) otherwise, nothing when disabled."""
from __future__ import annotations

import logging
import sys
import time
from typing import Any

logger = logging.getLogger(__name__)


class MeasureProgress:
    """Progress with ETA, used as ``with MeasureProgress(...) as advance: advance()``: a rich bar on a terminal, plain
    lines (every ~10% or 30 s) in logs, nothing when disabled."""

    def __init__(self, enabled: bool, *, total: int, done: int = 0, description: str = "") -> None:
        self.enabled, self.total, self.done, self.description = enabled, total, done, description
        self._bar = None

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        if not sys.stderr.isatty():
            return self._plain()
        from rich.console import Console

        from patsearch.progress import progress_bar

        self._bar = progress_bar(console=Console(stderr=True))
        self._bar.__enter__()
        task = self._bar.add_task(self.description, total=self.total, completed=self.done)
        return lambda: self._bar.advance(task)

    def _plain(self):
        start, state = time.perf_counter(), {"done": self.done, "new": 0, "last": 0.0, "pct": -1}

        def advance() -> None:
            state["done"] += 1
            state["new"] += 1
            elapsed = time.perf_counter() - start
            pct = int(100 * state["done"] / max(self.total, 1)) // 10
            if pct != state["pct"] or elapsed - state["last"] >= 30 or state["done"] == self.total:
                state["pct"], state["last"] = pct, elapsed
                eta = elapsed / state["new"] * (self.total - state["done"])
                logger.info(f"{self.description}: {state['done']}/{self.total} elapsed {elapsed:.0f}s ETA {eta:.0f}s")
        return advance

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

"""What a training run shows while it runs: a rich bar on rank 0, or plain log lines off a terminal, and the
lines it says at the start of a resumed run and at the end of each epoch."""
from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class TrainProgress:
    """A rich progress bar with ETA and img/s on rank 0 (silent elsewhere or when disabled).

    When stdout is not a terminal (nohup, CI, a pipe) a live bar shows nothing, so ``plain`` mode prints one line
    per ``log_every`` steps (when the loop has metrics) or every ``interval_s`` seconds, with the run's ETA.
    """

    def __init__(self, enabled: bool, *, plain: bool | None = None, total_steps: int = 0,
                 interval_s: float = 30.0) -> None:
        self.bar = None
        self.plain = enabled and (plain if plain is not None else not sys.stdout.isatty())
        self.total_steps, self.interval_s = total_steps, interval_s
        self.done = self.epoch_done = self.epoch_total = 0
        self.description = ""
        self.started = self.last_print = time.perf_counter()
        self.start_done = 0
        if enabled and not self.plain:
            from rich.progress import TextColumn

            from patsearch.progress import progress_bar

            self.bar = progress_bar(TextColumn("{task.fields[info]}"))
            self.bar.start()
        self.task = None

    def start_epoch(self, description: str, total: int, done: int = 0, global_done: int | None = None) -> None:
        self.description, self.epoch_total, self.epoch_done = description, total, done
        if global_done is not None and self.done == 0:
            self.done = self.start_done = global_done  # a resumed run: the rate counts this run's steps only
        if self.bar is not None:
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task(description, total=total, completed=done, info="")

    def advance(self, info: str | None = None) -> None:
        self.done += 1
        self.epoch_done += 1
        if self.bar is not None:
            self.bar.update(self.task, advance=1, **({"info": info} if info is not None else {}))
        elif self.plain:
            now = time.perf_counter()
            if info is not None or now - self.last_print >= self.interval_s:
                self.last_print = now
                logger.info(self.plain_line(info, now))

    def plain_line(self, info: str | None, now: float) -> str:
        rate = (self.done - self.start_done) / max(now - self.started, 1e-9)
        left = max(self.total_steps - self.done, 0)
        eta = time.strftime("%H:%M:%S", time.gmtime(left / rate)) if rate > 0 else "?"
        return (f"{self.description} step {self.epoch_done}/{self.epoch_total} ({self.done}/{self.total_steps} "
                f"total)" + (f" {info}" if info else "") + f" eta {eta}")

    def log(self, message: str) -> None:
        if self.bar is not None or self.plain:  # above a live bar: rich routes stderr there while it draws
            logger.info(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def resumed_line(path: Path, epoch: int, step: int, epochs: int, steps_per_epoch: int) -> str:
    """The header line of a resumed run: which file, and where in the schedule it continues."""
    if epoch >= epochs:
        return f"resumed from {path}: all {epochs} epochs are done"
    return f"resumed from {path} at epoch {epoch + 1}/{epochs}, step {step}/{steps_per_epoch}"


def epoch_line(m: Mapping[str, Any], epochs: int) -> str:
    """The line an epoch ends with: its loss, validation scores (when evaluated), speed and learning rate."""
    parts = [f"epoch {m['epoch']}/{epochs}", f"train_loss {m['train_loss']:.4f}"]
    if "top1" in m:
        parts += [f"top1 {m['top1']:.2f}", f"top5 {m['top5']:.2f}", f"val_loss {m['val_loss']:.4f}"]
    parts += [f"{m['img_s']:.0f} img/s", f"lr {m['lr']:.2e}"]
    return "  ".join(parts)

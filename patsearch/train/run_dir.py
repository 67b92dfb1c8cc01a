"""A training run's folder: what rank 0 writes there (``metrics.json``, TensorBoard scalars, a profiler trace),
whether a checkpoint found there belongs to this run, and the clean-up after a run that failed before its first
checkpoint."""
from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from patsearch.errors import UserError
from patsearch.io import atomic_write_text
from patsearch.train import checkpoint as ckpt
from patsearch.train.distributed import DistContext

logger = logging.getLogger(__name__)


class RunWriter:
    """Rank-0 outputs: metrics JSON (atomic), TensorBoard scalars (if tensorboard is installed)."""

    def __init__(self, out_dir: Path | None, enabled: bool, tensorboard: bool) -> None:
        self.out_dir = out_dir if enabled else None
        self.tb = None
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self.tb = SummaryWriter(str(self.out_dir / "tb"))
                except ImportError:
                    logger.info("note: tensorboard is not installed; no TensorBoard scalars are written")

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        if self.tb is not None:
            for key, value in values.items():
                self.tb.add_scalar(key, value, step)

    def metrics(self, payload: dict[str, Any]) -> None:
        if self.out_dir is None:
            return
        atomic_write_text(self.out_dir / "metrics.json", json.dumps(payload, indent=1))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def make_profiler(steps: int, out_path: Path, ctx: DistContext) -> Any:
    """A torch.profiler trace of ``steps`` training steps (after 1 wait + 1 warm-up) for torch-tb-profiler."""
    from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if ctx.device.type == "cuda" else [])
    prof = profile(activities=activities, schedule=schedule(wait=1, warmup=1, active=steps, repeat=1),
                   on_trace_ready=tensorboard_trace_handler(str(out_path / "profile"), worker_name=f"rank{ctx.rank}"))
    prof.start()
    return prof


def check_resumable(saved: Mapping[str, Any], current: Mapping[str, Any], path: Path) -> None:
    """An exact resume needs the same run: refuse one whose schedule or data would differ."""
    keys = ("arch", "recipe", "global_batch", "epochs", "steps_per_epoch", "seed")
    changed = [f"{k} {saved.get(k)!r} -> {current.get(k)!r}" for k in keys if k in saved and saved[k] != current[k]]
    if changed:
        raise UserError(f"cannot resume from {path}: the run's settings differ ({', '.join(changed)}); resume with "
                        "the same options, or train into a new --out")


def remove_unfinished(created: list[Path]) -> None:
    """After a run failed: remove the run folder it created if no checkpoint reached it (only TensorBoard's first
    events or nothing: a folder that looks like a run and cannot be resumed), and the parents it created if empty."""
    if not created or (created[0] / ckpt.LATEST).exists():
        return
    shutil.rmtree(created[0], ignore_errors=True)
    for folder in created[1:]:
        try:
            folder.rmdir()
        except OSError:  # not empty: something else lives there now
            break

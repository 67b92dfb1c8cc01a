"""A training collapse: validation top-1 falling most of the way back to chance mid-run and recovering only
partly, as a network whose stable learning rate is below the recipe's does when the warm-up passes it. It ends
in a finite loss, so the trainer's divergence check never sees it; the run says so once, with what to change.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MIN_DROP_POINTS = 10.0  # smaller dips are the noise of a small validation split, not a collapse
SHARE_TO_CHANCE = 0.5  # how far back from the best to chance top-1 must fall


@dataclass(frozen=True)
class Collapse:
    """Top-1 fell from ``best`` (at ``best_epoch``) to ``top1`` at ``epoch``."""

    epoch: int
    top1: float
    best: float
    best_epoch: int

    def note(self, peak_lr: float) -> str:
        return (f"note: validation top-1 fell from {self.best:.1f}% (epoch {self.best_epoch}) to {self.top1:.1f}% at "
                f"epoch {self.epoch}: the run collapsed, most likely at a learning rate too high for this network; "
                f"train again with a lower --lr (this run peaked at {peak_lr:.3g}) or with clip_grad in the recipe")

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "top1": self.top1, "best": self.best, "best_epoch": self.best_epoch}


def find_collapse(history: Sequence[Mapping[str, Any]], num_classes: int) -> Collapse | None:
    """The first evaluated epoch of ``history`` whose top-1 fell at least :data:`MIN_DROP_POINTS` below the best
    before it and at least :data:`SHARE_TO_CHANCE` of the way from that best back to chance (100 / classes)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    chance = 100.0 / num_classes
    best, best_epoch = None, 0
    for metrics in history:
        top1 = metrics.get("top1")
        if top1 is None:
            continue
        top1 = float(top1)
        if best is not None and best - top1 >= MIN_DROP_POINTS and \
                top1 <= best - SHARE_TO_CHANCE * (best - chance):
            return Collapse(int(metrics["epoch"]), top1, best, best_epoch)
        if best is None or top1 > best:
            best, best_epoch = top1, int(metrics["epoch"])
    return None

"""Proxy training of search candidates: the full trainer (:func:`patsearch.train.train`) with a short recipe.

There is no second training loop: :func:`make_proxy_runner` returns ``run_proxy(arch, on_epoch_end)`` which calls
the trainer in-process (no files written) with the ``proxy`` recipe, a few epochs at a low resolution, on the
built-in synthetic set or a class-balanced subset of an ImageFolder (``--data``), and forwards each epoch's
validation top-1 (as a fraction) to ``on_epoch_end(epoch, top1)``, which may raise to stop the run (pruning).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from patsearch.arch import ArchConfig
from patsearch.errors import UserError

# Measured on the synthetic set (patnet_t0, 2026-11-24, 2-core VM): 2 epochs on 1,000 images at 64 px with the
# batch-scaled lr stayed at chance (10%); 4 epochs on 2,000 images at 32 px, batch 64, lr 3e-3 reached 30% in ~30 s.
DEFAULT_EPOCHS = 4
DEFAULT_RESOLUTION = 32
DEFAULT_SYNTHETIC = (2000, 400)


@dataclass(frozen=True)
class ProxySettings:
    """How candidates are scored. ``data=None`` uses the trainer's built-in synthetic set."""

    data: str | None = None
    epochs: int = DEFAULT_EPOCHS
    resolution: int = DEFAULT_RESOLUTION
    recipe: str = "proxy"
    batch_size: int = 64
    lr: float | None = None
    train_samples: int | None = None  # synthetic: set size; folder: class-balanced subset (None: all)
    val_samples: int | None = None
    seed: int = 0
    device: str = "cpu"
    workers: int = 0
    subset_dir: str | None = None  # where folder subsets are linked (default: next to the study's results)

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise UserError(f"--proxy-epochs must be a positive integer, got {self.epochs!r}")
        if not isinstance(self.resolution, int) or self.resolution < 32 or self.resolution % 32:
            raise UserError(f"--proxy-resolution must be a multiple of 32 (at least 32), got {self.resolution!r}")
        for name in ("train_samples", "val_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"--proxy-{name.replace('_', '-')} must be positive, got {value}")
        if self.batch_size < 2:
            raise UserError(f"--proxy-batch-size must be at least 2, got {self.batch_size}")

    def data_id(self) -> str:
        """How the data is named in a study's stored options (a folder's name, not its path on this machine)."""
        if self.data is None:
            n_train, n_val = self.synthetic_sizes()
            return f"synthetic:{n_train}/{n_val}"
        tail = f":{self.train_samples or 'all'}/{self.val_samples or 'all'}"
        return f"folder:{Path(self.data).resolve().name}{tail}"

    def synthetic_sizes(self) -> tuple[int, int]:
        return (self.train_samples or DEFAULT_SYNTHETIC[0], self.val_samples or DEFAULT_SYNTHETIC[1])


def make_proxy_runner(settings: ProxySettings, *, num_classes_hint: int | None = None,
                      threads: int | None = None) -> Callable[..., float]:
    """``run_proxy(arch, on_epoch_end=None) -> final top-1 in [0, 1]`` for :class:`~patsearch.search.objective.Objective`."""
    data = settings.data
    num_classes = num_classes_hint or 10
    if data is not None:
        data, num_classes = prepare_folder(settings)

    def run_proxy(arch: ArchConfig, on_epoch_end: Callable[[int, float], None] | None = None) -> float:
        import torch

        from patsearch.search.objective import ProxyDiverged
        from patsearch.train import TrainingDiverged, train

        if threads:
            torch.set_num_threads(threads)

        def forward(epoch: int, metrics: dict[str, Any]) -> None:
            if on_epoch_end is not None and metrics.get("top1") is not None:
                on_epoch_end(epoch, float(metrics["top1"]) / 100.0)

        try:
            result = train(arch.replace(num_classes=num_classes), settings.recipe, data=data, out_dir=None,
                           epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr,
                           resolution=settings.resolution, device=settings.device, workers=settings.workers,
                           synthetic=settings.synthetic_sizes(), seed=settings.seed, progress=False,
                           tensorboard=False, on_epoch_end=forward)
        except TrainingDiverged as exc:
            raise ProxyDiverged(str(exc).split(";")[0]) from None
        final = result.get("final") or {}
        if final.get("top1") is None:
            raise RuntimeError("proxy training returned no validation top-1")
        return float(final["top1"]) / 100.0

    run_proxy.num_classes = num_classes  # type: ignore[attr-defined]
    return run_proxy


def prepare_folder(settings: ProxySettings) -> tuple[str, int]:
    """The folder to train on (a linked class-balanced subset when sizes are given) and its class count.

    Subsets are deterministic (sorted files, every k-th per class) and built once, under a name derived from the
    source path and sizes, by linking files into ``train/`` and ``val/``: the trainer reads them unchanged.
    """
    from patsearch.data.folder import scan_split, split_dir

    root = Path(settings.data).expanduser()
    train_dir = split_dir(root, "train")
    val_dir = split_dir(root, "val")
    classes, train_samples = scan_split(train_dir)
    _, val_samples = scan_split(val_dir, classes)
    if settings.train_samples is None and settings.val_samples is None:
        return str(root), len(classes)
    key = hashlib.sha256(f"{root.resolve()}|{settings.train_samples}|{settings.val_samples}".encode()).hexdigest()[:12]
    base = Path(settings.subset_dir) if settings.subset_dir else Path("runs") / ".proxy-data"
    target = base / f"{root.resolve().name}-{key}"
    if (target / ".complete").exists():
        return str(target), len(classes)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    for split, samples, n in (("train", train_samples, settings.train_samples),
                              ("val", val_samples, settings.val_samples)):
        for path, label in _balanced(samples, len(classes), n):
            dest = tmp / split / classes[label] / Path(path).name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.abspath(path), dest)
    (tmp / ".complete").write_text("ok\n")
    try:
        os.replace(tmp, target)
    except OSError:  # another worker built it first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return str(target), len(classes)


def _balanced(samples: list[tuple[str, int]], num_classes: int, n: int | None) -> list[tuple[str, int]]:
    if n is None or n >= len(samples):
        return samples
    per_class: dict[int, list[tuple[str, int]]] = {}
    for item in samples:
        per_class.setdefault(item[1], []).append(item)
    quota = max(1, n // num_classes)
    out: list[tuple[str, int]] = []
    for label in sorted(per_class):
        items = per_class[label]
        step = max(1, len(items) // quota)
        out.extend(items[::step][:quota])
    return out


__all__ = ["ProxySettings", "make_proxy_runner", "prepare_folder"]

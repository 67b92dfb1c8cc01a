"""The trainer's data as device tensors: which runs use them, the epoch's augmented training batches, and the
evaluation batches.

The whole set sits on the device as uint8 tensors (:mod:`patsearch.data.tensor_cache`) and is augmented there
(:mod:`patsearch.data.device_augment`): no loader processes, so several GPUs are not held back by the host.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch

from patsearch.data.device_augment import (
    epoch_permutation,
    pad_crop_flip,
    parse_rand_augment,
    rand_augment,
    random_resized_boxes,
    resized_crop_flip,
    step_generator,
    step_seed,
)
from patsearch.data.recipe_fields import AugmentRecipe
from patsearch.data.tensor_cache import TensorSplit
from patsearch.errors import UserError


def uses_device_data(rec: AugmentRecipe, data_loader: str) -> bool:
    """Whether a run keeps its data as device tensors: ``crop: pad`` recipes always (only the device does that
    crop), others with ``data_loader="device"`` when their augmentation has a device form."""
    if rec.uses_tensor_cache:
        if data_loader == "files":
            raise UserError(f"recipe {rec.name or '(custom)'} crops by padding, which only the device loader does; "
                            "drop --data-loader files")
        return True
    if data_loader != "device":
        return False
    if rec.color_jitter:
        raise UserError(f"recipe {rec.name or '(custom)'} has colour jitter, which the device loader does not do; "
                        "use --data-loader files")
    if rec.rand_augment:
        try:
            parse_rand_augment(rec.rand_augment)
        except ValueError as exc:
            raise UserError(f"recipe {rec.name or '(custom)'}: {exc}") from None
    return True


def tensor_batches(data: TensorSplit, rec: AugmentRecipe, seed: int, epoch: int, first_step: int, steps: int,
                   global_batch: int, local_batch: int, rank: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The epoch's batches from device tensors: process ``rank``'s share of each global batch, augmented on the
    device (pad-and-crop + flip for ``crop: pad`` recipes; else random-resized crop + flip + the recipe's
    RandAugment).

    Order and augmentation are functions of (seed, epoch, step), so a resumed run sees the same batches.
    """
    perm = epoch_permutation(len(data), seed, epoch, data.images.device)
    padding = rec.resolution // 8  # the classic CIFAR pad of 4 at 32 px
    size = rec.resolution_at(epoch)
    height, width = data.images.shape[-2:]
    mode = "bilinear" if rec.interpolation == "bilinear" else "bicubic"
    for step in range(first_step, steps):
        start = step * global_batch + rank * local_batch
        idx = perm[start:start + local_batch]
        gen = step_generator(data.images.device, seed, epoch, step, rank)
        if rec.uses_tensor_cache:
            yield pad_crop_flip(data.images[idx], padding, gen, rec.hflip), data.labels[idx]
            continue
        boxes = random_resized_boxes(len(idx), height, width, gen)
        flip = torch.rand(len(idx), device=gen.device, generator=gen) < rec.hflip
        images = resized_crop_flip(data.images[idx], boxes, size, flip, mode)
        if rec.rand_augment:
            images = rand_augment(images, rec.rand_augment, step_seed(seed, epoch, step, rank, stream=54321))
        yield images, data.labels[idx]


class TensorEval:
    """Evaluation batches straight from the device tensors (this rank's shard)."""

    def __init__(self, data: TensorSplit, indices: list[int], batch: int) -> None:
        self.data, self.batch = data, batch
        self.indices = torch.tensor(indices, dtype=torch.int64, device=data.images.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, len(self.indices), self.batch):
            idx = self.indices[i:i + self.batch]
            yield self.data.images[idx], self.data.labels[idx]

"""Image transforms: timm's ``create_transform`` configured from a recipe, plus per-sample seeding.

The transforms output uint8 CHW arrays (timm's prefetcher mode); normalisation happens on the device, in the
training dtype and memory format (:class:`DeviceNormalizer`), which keeps the CPU side cheap enough to feed a GPU.

Augmentation randomness is a function of a per-sample seed handed in by the sampler (``dataset[(index, seed)]``),
not of worker state: a resumed run, a run with another worker count and every DDP rank see the same augmented
images as an uninterrupted single run.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from timm.data import create_transform
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from patsearch.data.recipe_fields import AugmentRecipe


def train_transform(recipe: AugmentRecipe, resolution: int) -> Callable:
    """Bicubic RandomResizedCrop + flip (+ RandAugment per the recipe), uint8 CHW output."""
    return create_transform(resolution, is_training=True, hflip=recipe.hflip,
                            color_jitter=recipe.color_jitter or None, auto_augment=recipe.rand_augment,
                            interpolation=recipe.interpolation, re_prob=0.0, use_prefetcher=True)


def eval_transform(recipe: AugmentRecipe, resolution: int | None = None) -> Callable:
    """Resize the shorter side to ``resolution / crop_pct`` and centre-crop ``resolution``; uint8 CHW output."""
    return create_transform(resolution or recipe.test_resolution, is_training=False,
                            interpolation=recipe.interpolation, crop_pct=recipe.test_crop_pct, use_prefetcher=True)


class TransformedDataset(torch.utils.data.Dataset):
    """Applies a transform to a ``(PIL image, label)`` dataset; ``dataset[(index, seed)]`` seeds the augmentation."""

    def __init__(self, base: Any, transform: Callable) -> None:
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[Any, int]:
        if isinstance(item, tuple):
            index, seed = item
            in_worker = torch.utils.data.get_worker_info() is not None
            saved = None if in_worker else (random.getstate(), np.random.get_state(), torch.get_rng_state())
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.default_generator.manual_seed(seed)  # CPU only: torch.manual_seed costs ~100x more per sample
            try:
                img, label = self.base[index]
                return self.transform(img), label
            finally:
                if saved is not None:  # in the main process, leave the training RNG streams untouched
                    random.setstate(saved[0])
                    np.random.set_state(saved[1])
                    torch.set_rng_state(saved[2])
        img, label = self.base[item]
        return self.transform(img), label


def collate_uint8(batch: list[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    # timm's prefetcher-mode transforms return uint8 CHW numpy arrays or tensors, depending on the version
    images = torch.stack([torch.as_tensor(b[0]) for b in batch])
    labels = torch.tensor([b[1] for b in batch], dtype=torch.int64)
    return images, labels


class DeviceNormalizer:
    """uint8 (B, 3, H, W) on the host -> normalised float on the device, optionally channels_last."""

    def __init__(self, device: torch.device, channels_last: bool = False,
                 mean: tuple[float, ...] = IMAGENET_DEFAULT_MEAN,
                 std: tuple[float, ...] = IMAGENET_DEFAULT_STD) -> None:
        self.device = device
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.mean = torch.tensor([m * 255 for m in mean], device=device).view(1, 3, 1, 1)
        self.std = torch.tensor([s * 255 for s in std], device=device).view(1, 3, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True).to(memory_format=self.memory_format)
        return (x.float() - self.mean) / self.std

"""Augmentation of uint8 image batches where they live (the GPU for the tensor-cache path): pad-and-crop and flip.

The classic CIFAR augmentation (pad by R/8, random R x R crop, horizontal flip) as a few batched tensor ops, so a
proxy run never waits for the host. Randomness comes from a generator the caller seeds per step, so a batch's
augmentation is a function of (seed, epoch, step): the same after a resume and on any device count.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def step_generator(device: torch.device, seed: int, epoch: int, step: int, rank: int = 0) -> torch.Generator:
    """A generator on ``device`` seeded from the step's coordinates (no Python ``hash``: stable across runs)."""
    gen = torch.Generator(device=device)
    gen.manual_seed((seed * 1_000_003 + epoch * 10_007 + step * 101 + rank * 7 + 12345) % (2 ** 63 - 1))
    return gen


def epoch_permutation(n: int, seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The epoch's sample order (identical on every rank; ranks take their share of each global batch)."""
    gen = torch.Generator().manual_seed((seed * 7919 + epoch * 104_729 + 1) % (2 ** 63 - 1))
    return torch.randperm(n, generator=gen).to(device)


def pad_crop_flip(images: torch.Tensor, padding: int, generator: torch.Generator, hflip: float = 0.5) -> torch.Tensor:
    """Random crop of the zero-padded batch back to its size, then a horizontal flip with probability ``hflip``.

    ``images``: (B, C, H, W), any dtype; returns the same shape and dtype on the same device.
    """
    b, _, h, w = images.shape
    dev = images.device
    out = images
    if padding > 0:
        padded = F.pad(images, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (b,), device=dev, generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (b,), device=dev, generator=generator)
        rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]    # (B, 1, H, 1)
        cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :]    # (B, 1, 1, W)
        batch = torch.arange(b, device=dev)[:, None, None, None]
        chan = torch.arange(images.shape[1], device=dev)[None, :, None, None]
        out = padded[batch, chan, rows, cols]
    if hflip > 0:
        flip = torch.rand(b, device=dev, generator=generator) < hflip
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out


__all__ = ["epoch_permutation", "pad_crop_flip", "step_generator"]

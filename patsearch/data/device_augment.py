"""Augmentation of uint8 image batches where they live (the GPU for the tensor-cache path).

- :func:`pad_crop_flip`: the classic CIFAR augmentation (pad by R/8, random R x R crop, horizontal flip), the
  proxy recipe's.
- :func:`resized_crop_flip` with :func:`random_resized_boxes`, then :func:`rand_augment`: the paper recipes'
  RandomResizedCrop + flip + RandAugment for sets held on the device (``--data-loader device``). The boxes follow
  torchvision's ``RandomResizedCrop.get_params`` per image; the crop is resampled by ``grid_sample`` (bicubic or
  bilinear), which only ever upsamples here because the cache is stored at most at the training resolution.
  RandAugment is torchvision's (the same op count and magnitude as the recipe's timm string; timm's magnitude
  noise is not reproduced), applied to groups of images, each group drawing its own ops.

Randomness comes from a generator the caller seeds per step, so a batch's augmentation is a function of
(seed, epoch, step): the same after a resume and on any device count.
"""
from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F


def step_seed(seed: int, epoch: int, step: int, rank: int = 0, stream: int = 12345) -> int:
    """A seed from a step's coordinates (no Python ``hash``: stable across runs); ``stream`` tells apart the
    random streams one step draws from."""
    return (seed * 1_000_003 + epoch * 10_007 + step * 101 + rank * 7 + stream) % (2 ** 63 - 1)


def step_generator(device: torch.device, seed: int, epoch: int, step: int, rank: int = 0) -> torch.Generator:
    """A generator on ``device`` seeded by :func:`step_seed`."""
    gen = torch.Generator(device=device)
    gen.manual_seed(step_seed(seed, epoch, step, rank))
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


def random_resized_boxes(n: int, height: int, width: int, generator: torch.Generator,
                         scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                         attempts: int = 10) -> torch.Tensor:
    """Crop boxes ``(n, 4)`` as ``(x0, y0, w, h)`` in pixels, drawn as torchvision's ``RandomResizedCrop`` does:
    the first of ``attempts`` (area, log-ratio) draws that fits, else the centre crop at the nearest allowed ratio."""
    dev = generator.device
    area = torch.empty(n, attempts, device=dev).uniform_(scale[0], scale[1], generator=generator) * height * width
    aspect = torch.exp(torch.empty(n, attempts, device=dev).uniform_(math.log(ratio[0]), math.log(ratio[1]),
                                                                      generator=generator))
    w = torch.sqrt(area * aspect).round()
    h = torch.sqrt(area / aspect).round()
    fits = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    first = fits.to(torch.uint8).argmax(1, keepdim=True)  # index of the first fitting draw (0 when none fits)
    found = fits.any(1)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fallback_w, fallback_h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fallback_w, fallback_h = round(height * ratio[1]), height
    else:
        fallback_w, fallback_h = width, height
    w = torch.where(found, w.gather(1, first).squeeze(1), torch.full_like(found, fallback_w, dtype=w.dtype))
    h = torch.where(found, h.gather(1, first).squeeze(1), torch.full_like(found, fallback_h, dtype=h.dtype))
    u = torch.rand(n, 2, device=dev, generator=generator)
    x0 = torch.where(found, torch.floor(u[:, 0] * (width - w + 1)), (width - w) // 2)
    y0 = torch.where(found, torch.floor(u[:, 1] * (height - h + 1)), (height - h) // 2)
    return torch.stack([x0, y0, w, h], 1)


def resized_crop_flip(images: torch.Tensor, boxes: torch.Tensor, size: int, flip: torch.Tensor | None = None,
                      mode: str = "bicubic") -> torch.Tensor:
    """Each image's box resampled to ``size`` x ``size`` (pixel centres as ``F.interpolate(align_corners=False)``),
    mirrored where ``flip`` is True. ``images``: (B, C, H, W) uint8; returns uint8 on the same device."""
    b, _, height, width = images.shape
    boxes = boxes.to(torch.float32)
    x0, y0, w, h = boxes.unbind(1)
    sx = w / width
    sy = h / height
    if flip is not None:
        sx = torch.where(flip, -sx, sx)
    theta = torch.zeros(b, 2, 3, device=images.device)
    theta[:, 0, 0] = sx
    theta[:, 0, 2] = (2 * x0 + w) / width - 1
    theta[:, 1, 1] = sy
    theta[:, 1, 2] = (2 * y0 + h) / height - 1
    grid = F.affine_grid(theta, [b, images.shape[1], size, size], align_corners=False)
    out = F.grid_sample(images.float(), grid, mode=mode, padding_mode="border", align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)


_RAND_AUGMENT = re.compile(r"^rand(-[a-z]+[0-9.]+)*$")


def parse_rand_augment(spec: str) -> tuple[int, int]:
    """``(num_ops, magnitude out of 10)`` of a timm RandAugment string such as ``rand-m9-mstd0.5-inc1``."""
    if not isinstance(spec, str) or not _RAND_AUGMENT.match(spec):
        raise ValueError(f"the device loader runs RandAugment strings such as rand-m9-n2-mstd0.5, got {spec!r}; "
                         "use --data-loader files for other augmentations")
    params = dict(re.findall(r"-([a-z]+)([0-9.]+)", spec))
    return int(params.get("n", 2)), int(round(float(params.get("m", 9))))


def rand_augment(images: torch.Tensor, spec: str, seed: int, group: int = 8) -> torch.Tensor:
    """torchvision's RandAugment at ``spec``'s op count and magnitude on uint8 ``images``, ``group`` images at a
    time (each group draws its own ops), seeded by ``seed`` without touching the caller's random streams."""
    from torchvision.transforms import v2

    num_ops, magnitude = parse_rand_augment(spec)
    # timm's magnitude is out of 10, torchvision's a bin of 31 (0..30)
    augment = v2.RandAugment(num_ops=num_ops, magnitude=min(30, 3 * magnitude), num_magnitude_bins=31)
    with torch.random.fork_rng(devices=[]):  # v2 draws its ops from the CPU generator
        torch.manual_seed(seed)
        return torch.cat([augment(chunk) for chunk in images.split(group)])


__all__ = ["epoch_permutation", "pad_crop_flip", "parse_rand_augment", "rand_augment", "random_resized_boxes",
           "resized_crop_flip", "step_generator", "step_seed"]

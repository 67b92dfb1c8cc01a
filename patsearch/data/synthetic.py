"""The built-in offline dataset: classes of shapes and textures under random pose, colour and noise.

Every image is a pure function of ``(seed, split, index)``, so the set needs no files, no download and is identical
on every machine and in every DataLoader worker. It is learnable (a small CNN gets well above chance in an epoch or
two) but not trivial: shapes are rotated, scaled, shifted and coloured at random, textures have random frequency and
phase, and Gaussian pixel noise is added, so a learning curve means something.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

# Ten classes: five filled shapes, one outline shape and four textures (textures fill the frame, masked to a disc
# of random radius so that size varies too).
CLASSES = ("disc", "square", "triangle", "cross", "ring", "diamond", "stripes", "checker", "dots", "waves")
_SPLIT_IDS = {"train": 0, "val": 1}


class SyntheticShapes:
    """A map-style dataset of ``(PIL.Image, label)``; labels cycle through the classes (balanced)."""

    def __init__(self, num_samples: int, *, image_size: int = 64, num_classes: int = 10, split: str = "train",
                 seed: int = 0, noise: float = 0.08) -> None:
        if not 2 <= num_classes <= len(CLASSES):
            raise ValueError(f"num_classes must be in [2, {len(CLASSES)}], got {num_classes}")
        if split not in _SPLIT_IDS:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        self.num_samples = int(num_samples)
        self.image_size = int(image_size)
        self.num_classes = num_classes
        self.classes = list(CLASSES[:num_classes])
        self.split = split
        self.seed = seed
        self.noise = noise
        coords = (np.arange(self.image_size, dtype=np.float32) + 0.5) / self.image_size * 2 - 1
        self._yy, self._xx = np.meshgrid(coords, coords, indexing="ij")

    def __len__(self) -> int:
        return self.num_samples

    def label(self, index: int) -> int:
        return index % self.num_classes

    @property
    def targets(self) -> list[int]:
        return [self.label(i) for i in range(self.num_samples)]

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        if not 0 <= index < self.num_samples:
            raise IndexError(index)
        label = self.label(index)
        rng = np.random.default_rng([self.seed, _SPLIT_IDS[self.split], index])
        return Image.fromarray(self.render(label, rng)), label

    def render(self, label: int, rng: np.random.Generator) -> np.ndarray:
        """One (H, W, 3) uint8 image of class ``label``."""
        angle = rng.uniform(0, 2 * np.pi)
        scale = rng.uniform(0.35, 0.75)
        cx, cy = rng.uniform(-0.3, 0.3, size=2)
        cos, sin = np.cos(angle), np.sin(angle)
        x, y = self._xx - cx, self._yy - cy
        u = (cos * x + sin * y) / scale  # pose-normalised coordinates: the shape lives in [-1, 1]^2
        v = (-sin * x + cos * y) / scale
        r = np.sqrt(u * u + v * v)
        name = CLASSES[label]
        freq = rng.uniform(2.5, 5.0) * np.pi
        phase = rng.uniform(0, 2 * np.pi)
        if name == "disc":
            mask = r < 1
        elif name == "square":
            mask = np.maximum(np.abs(u), np.abs(v)) < 0.85
        elif name == "triangle":
            mask = (v > -0.6) & (np.abs(u) * 1.7 < 0.95 - v)
        elif name == "cross":
            mask = ((np.abs(u) < 0.3) & (np.abs(v) < 1)) | ((np.abs(v) < 0.3) & (np.abs(u) < 1))
        elif name == "ring":
            mask = (r < 1) & (r > 0.6)
        elif name == "diamond":
            mask = np.abs(u) + np.abs(v) < 1
        elif name == "stripes":
            mask = (np.sin(u * freq + phase) > 0) & (r < 1.6)
        elif name == "checker":
            mask = (np.sin(u * freq + phase) * np.sin(v * freq) > 0) & (r < 1.6)
        elif name == "dots":
            mask = (np.sin(u * freq + phase) * np.sin(v * freq) > 0.55) & (r < 1.6)
        else:  # waves: stripes that bend
            mask = (np.sin(u * freq + 1.5 * np.sin(v * 2.5) + phase) > 0) & (r < 1.6)
        fg = rng.uniform(0, 1, size=3)
        bg = rng.uniform(0, 1, size=3)
        while np.abs(fg - bg).sum() < 0.6:  # keep the shape visible
            bg = rng.uniform(0, 1, size=3)
        img = np.where(mask[..., None], fg, bg).astype(np.float32)
        img += rng.normal(0, self.noise, size=img.shape).astype(np.float32)
        return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)

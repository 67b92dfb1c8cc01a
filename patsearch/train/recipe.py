"""Training recipes: one validated dataclass, loaded from YAML (``safe_load``), one file per variant.

The shipped files under ``patsearch/recipes/`` hold Table 7 of the paper (and the authors' released settings where
the table is silent). Learning rates are stated at the paper's reference batch (``batch_size``) and scaled linearly
to the global batch a run actually uses (:meth:`Recipe.scaled_lr`).
"""
from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from patsearch.config import dataclass_from_mapping, parse_yaml, read_yaml
from patsearch.errors import UserError

MULTI_SCALE_MODES = {
    "none": "train at `resolution` throughout",
    "random": "each step draws its resolution from `multi_scale_sizes` (Table 7)",
    "schedule": "piecewise by epoch from `multi_scale_schedule` (the authors' released 192 -> 224)",
}
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
CROPS = {
    "random-resized": "RandomResizedCrop: timm's on the host (the paper's recipes; any data size), or on the device "
                      "from a uint8 tensor cache with data_loader='device'",
    "pad": "pad by resolution/8 and crop back, on the device, from an in-memory uint8 tensor cache (proxies)",
}
LR_SCALINGS = ("linear", "sqrt")


class RecipeError(UserError, ValueError):
    """A recipe file or override is invalid."""


@dataclass(frozen=True)
class Recipe:
    """Everything about *how* a network is trained (the *what* is an :class:`~patsearch.arch.ArchConfig`)."""

    name: str = ""
    # schedule
    epochs: int = 300
    batch_size: int = 4096          # the paper's global batch, at which `lr` is stated
    lr: float = 0.004
    lr_scaling: str = "linear"      # how `lr` moves to another batch: linear (paper) or sqrt (Adam-style)
    warmup_epochs: float = 20
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5
    # true: the cosine starts at the peak when warm-up ends and spans the epochs left (the authors' schedule,
    # LinearWarmupCosineAnnealingLR); false: timm's default, one cosine over the whole run whose first part
    # warm-up replaces, so the lr steps down where warm-up ends
    warmup_prefix: bool = True
    # optimiser
    optimizer: str = "adamw"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.005
    clip_grad: float | None = None  # max gradient norm (Table 7: M 1, L 0.01)
    # regularisation and augmentation
    label_smoothing: float = 0.1
    drop_path: float | None = None  # None: keep the architecture's own rate
    rand_augment: str | None = None  # timm string, e.g. "rand-m5-mstd0.5-inc1"
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    crop: str = "random-resized"    # see CROPS
    hflip: float = 0.5
    color_jitter: float = 0.0
    interpolation: str = "bicubic"
    # precision
    amp: bool = True                # bf16 autocast where the device has it, else fp16 + GradScaler (CUDA only)
    # resolution
    resolution: int = 224
    multi_scale: str = "none"
    multi_scale_sizes: tuple[int, ...] = (128, 160, 192, 224, 256, 288)
    multi_scale_schedule: tuple[tuple[int, int], ...] = ((0, 192), (280, 224))  # (first epoch, resolution)
    test_resolution: int = 224
    test_crop_pct: float = 0.9

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(self.betas))
        object.__setattr__(self, "multi_scale_sizes", tuple(self.multi_scale_sizes))
        object.__setattr__(self, "multi_scale_schedule", tuple(tuple(p) for p in self.multi_scale_schedule))
        _validate(self)

    # --- derived ------------------------------------------------------------------------------------------
    def scaled_lr(self, global_batch: int) -> float:
        """The peak learning rate for a global batch, scaled from the recipe's batch by ``lr_scaling``: linear
        (the paper's rule) or square root (the usual rule for Adam-type optimisers, used by the proxy)."""
        ratio = global_batch / self.batch_size
        return self.lr * (math.sqrt(ratio) if self.lr_scaling == "sqrt" else ratio)

    @property
    def uses_tensor_cache(self) -> bool:
        """Whether runs decode the data once into device tensors (``crop: pad``) instead of loading files."""
        return self.crop == "pad"

    @property
    def uses_mixup(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def resolution_at(self, epoch: int) -> int:
        """The loader's resolution in an epoch (``random`` loads at the largest size and shrinks per step)."""
        if self.multi_scale == "random":
            return max(self.multi_scale_sizes)
        if self.multi_scale == "schedule":
            res = self.multi_scale_schedule[0][1]
            for first_epoch, size in self.multi_scale_schedule:
                if epoch >= first_epoch:
                    res = size
            return res
        return self.resolution

    @property
    def largest_resolution(self) -> int:
        """The largest size the recipe trains at in any epoch or step."""
        if self.multi_scale == "random":
            return max(self.multi_scale_sizes)
        if self.multi_scale == "schedule":
            return max(size for _, size in self.multi_scale_schedule)
        return self.resolution

    def with_epochs(self, epochs: int) -> Recipe:
        """The same recipe over a different number of epochs.

        Warm-up and the multi-scale switch points keep their fraction of the run (20/300 warm-up, switch at 280/300)
        so that a short run has the same shape as the paper's.
        """
        if epochs == self.epochs:
            return self
        if not isinstance(epochs, int) or epochs < 1:
            raise RecipeError(f"epochs must be a positive integer, got {epochs!r}")
        scale = epochs / self.epochs
        schedule = tuple((min(epochs - 1, int(round(first * scale))), size)
                         for first, size in self.multi_scale_schedule)
        return self.replace(epochs=epochs, warmup_epochs=self.warmup_epochs * scale, multi_scale_schedule=schedule)

    # --- serialisation ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        out["multi_scale_sizes"] = list(self.multi_scale_sizes)
        out["multi_scale_schedule"] = [list(p) for p in self.multi_scale_schedule]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "recipe") -> Recipe:
        return dataclass_from_mapping(cls, data, error=RecipeError, source=source, what="recipe")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def replace(self, **changes: Any) -> Recipe:
        try:
            return dataclasses.replace(self, **changes)
        except TypeError as exc:
            raise RecipeError(str(exc)) from None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _validate(r: Recipe) -> None:
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise RecipeError(msg)

    need(isinstance(r.epochs, int) and not isinstance(r.epochs, bool) and r.epochs >= 1,
         f"epochs must be a positive integer, got {r.epochs!r}")
    need(isinstance(r.batch_size, int) and r.batch_size >= 1,
         f"batch_size must be a positive integer, got {r.batch_size!r}")
    for name in ("lr", "warmup_lr", "min_lr", "eps", "weight_decay", "warmup_epochs", "label_smoothing",
                 "mixup_alpha", "cutmix_alpha", "mixup_prob", "mixup_switch_prob", "hflip", "color_jitter"):
        value = getattr(r, name)
        need(_number(value) and value >= 0, f"{name} must be a non-negative number, got {value!r}")
    need(r.lr > 0, f"lr must be positive, got {r.lr!r}")
    need(r.warmup_epochs <= r.epochs, f"warmup_epochs ({r.warmup_epochs}) exceeds epochs ({r.epochs})")
    need(r.label_smoothing < 1, f"label_smoothing must be < 1, got {r.label_smoothing!r}")
    for name in ("mixup_prob", "mixup_switch_prob", "hflip"):
        need(getattr(r, name) <= 1, f"{name} must be a probability in [0, 1], got {getattr(r, name)!r}")
    need(r.optimizer == "adamw", f"optimizer: only 'adamw' (the paper's) is supported, got {r.optimizer!r}")
    need(len(r.betas) == 2 and all(_number(b) and 0 <= b < 1 for b in r.betas),
         f"betas must be two numbers in [0, 1), got {list(r.betas)!r}")
    need(r.clip_grad is None or (_number(r.clip_grad) and r.clip_grad > 0),
         f"clip_grad must be a positive number or null, got {r.clip_grad!r}")
    need(r.drop_path is None or (_number(r.drop_path) and 0 <= r.drop_path < 1),
         f"drop_path must be in [0, 1) or null, got {r.drop_path!r}")
    if r.rand_augment is not None:
        need(isinstance(r.rand_augment, str) and r.rand_augment.startswith("rand-"),
             "rand_augment must be a timm RandAugment string such as 'rand-m5-mstd0.5-inc1' or null, "
             f"got {r.rand_augment!r}")
    need(r.interpolation in INTERPOLATIONS,
         f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {r.interpolation!r}")
    need(isinstance(r.amp, bool), f"amp must be true or false, got {r.amp!r}")
    need(isinstance(r.warmup_prefix, bool), f"warmup_prefix must be true or false, got {r.warmup_prefix!r}")
    need(r.lr_scaling in LR_SCALINGS, f"lr_scaling must be one of {', '.join(LR_SCALINGS)}, got {r.lr_scaling!r}")
    need(r.crop in CROPS, f"crop must be one of {', '.join(CROPS)}, got {r.crop!r}")
    if r.crop == "pad":  # the device path implements pad-crop, flip and Mixup/CutMix, nothing else
        need(r.rand_augment is None and r.color_jitter == 0 and r.multi_scale == "none",
             "crop: pad (the in-memory tensor path) supports flip and mixup only; set rand_augment null, "
             "color_jitter 0 and multi_scale none, or use crop: random-resized")
    need(r.multi_scale in MULTI_SCALE_MODES,
         f"multi_scale must be one of {', '.join(MULTI_SCALE_MODES)}, got {r.multi_scale!r}")
    sizes = [r.resolution, r.test_resolution, *r.multi_scale_sizes,
             *(p[1] for p in r.multi_scale_schedule if len(p) == 2)]
    for size in sizes:
        need(isinstance(size, int) and size >= 32 and size % 32 == 0,
             f"resolutions must be multiples of 32 and at least 32 (e.g. 224), got {size!r}")
    need(len(r.multi_scale_sizes) >= 1, "multi_scale_sizes must list at least one resolution")
    need(len(r.multi_scale_schedule) >= 1 and all(len(p) == 2 for p in r.multi_scale_schedule),
         "multi_scale_schedule must list [first_epoch, resolution] pairs")
    firsts = [p[0] for p in r.multi_scale_schedule]
    need(firsts[0] == 0 and firsts == sorted(firsts),
         "multi_scale_schedule must start at epoch 0 and be sorted by epoch")
    need(_number(r.test_crop_pct) and 0 < r.test_crop_pct <= 1,
         f"test_crop_pct must be in (0, 1], got {r.test_crop_pct!r}")


# --- the shipped recipes --------------------------------------------------------------------------------------
def recipe_names() -> list[str]:
    """Names of the recipes shipped as package data (patnet_t0 ... patnet_l, proxy)."""
    root = resources.files("patsearch") / "recipes"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_recipe(ref: str | os.PathLike | Recipe | Mapping[str, Any]) -> Recipe:
    """A recipe from a shipped name (``patnet_t2``), a YAML path, a mapping or a :class:`Recipe`."""
    if isinstance(ref, Recipe):
        return ref
    if isinstance(ref, Mapping):
        return Recipe.from_dict(ref)
    text = os.fspath(ref)
    shipped = resources.files("patsearch") / "recipes" / f"{text}.yaml"
    if "/" not in text and os.sep not in text and shipped.is_file():
        source, body = f"recipe {text}", shipped.read_text()
    else:
        path = Path(text)
        if not path.is_file():
            raise RecipeError(f"unknown recipe {text!r}: not a file; pass a YAML path or one of: "
                              f"{', '.join(recipe_names())}")
        source, body = str(path), None
    data = parse_yaml(body, RecipeError, source) if body is not None else read_yaml(path, RecipeError, "recipe file")
    data = dict(data) if isinstance(data, Mapping) else data
    if isinstance(data, dict):
        data.setdefault("name", Path(text).stem)
    return Recipe.from_dict(data, source=source)


_SIZE_ORDER = ("patnet_t0", "patnet_t1", "patnet_t2", "patnet_s", "patnet_m", "patnet_l")
_EMBED_DIMS = (32, 48, 64, 96, 128, 160)


def default_recipe_for(arch_name: str, embed_dim: int | None = None) -> str:
    """The shipped recipe that fits an architecture: its own for a variant, the same size for a FasterNet peer,
    and the variant of nearest width for a custom description (e.g. a search's best.yaml)."""
    if arch_name in _SIZE_ORDER:
        return arch_name
    if arch_name.startswith("fasternet_"):
        suffix = arch_name.split("_", 1)[1]
        if f"patnet_{suffix}" in _SIZE_ORDER:
            return f"patnet_{suffix}"
    if embed_dim is not None:
        best = min(range(len(_EMBED_DIMS)), key=lambda i: abs(_EMBED_DIMS[i] - embed_dim))
        return _SIZE_ORDER[best]
    return "patnet_t0"

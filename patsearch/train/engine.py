"""The pieces of one training step, shared by the training loop and the throughput benchmark.

Building the model (``patsearch.models.create_model``: PATNet variants, architecture YAMLs, timm peers), the
optimiser (timm's AdamW factory: no weight decay on norms and biases), the precision policy, and :class:`TrainStep`
(forward, loss, backward, clipping, optimiser step).
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from patsearch.arch import ArchConfig, resolve_arch
from patsearch.train.recipe import Recipe


def describe_arch(arch: ArchConfig | str | os.PathLike | Mapping[str, Any]) -> tuple[ArchConfig | None, str]:
    """``(config, name)`` for a PATNet reference, ``(None, timm name)`` for a timm peer such as ``fasternet_t0``."""
    from patsearch.models import is_patnet_ref

    if is_patnet_ref(arch):
        cfg = resolve_arch(arch)
        return cfg, cfg.name or (os.path.splitext(os.path.basename(os.fspath(arch)))[0]
                                 if isinstance(arch, (str, os.PathLike)) else "custom")
    return None, os.fspath(arch)


def build_model(arch: ArchConfig | str | os.PathLike | Mapping[str, Any], num_classes: int,
                drop_path: float | None = None) -> nn.Module:
    """The trainable network; ``drop_path`` (the recipe's stochastic depth) overrides the architecture's rate."""
    from patsearch.models import create_model

    extra = {"drop_path_rate": drop_path} if drop_path is not None else {}
    return create_model(arch, num_classes=num_classes, **extra)


def build_optimizer(model: nn.Module, recipe: Recipe, lr: float, device: torch.device) -> torch.optim.Optimizer:
    from timm.optim import create_optimizer_v2

    return create_optimizer_v2(model, "adamw", lr=lr, weight_decay=recipe.weight_decay, betas=tuple(recipe.betas),
                               eps=recipe.eps, fused=device.type == "cuda")


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """bf16 on GPUs that have it, fp16 (with a GradScaler) on older GPUs, full precision on CPUs."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@dataclass
class TrainStep:
    """One optimisation step: ``loss = step(images, targets)`` (targets may be Mixup's soft targets)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    device: torch.device
    dtype: torch.dtype | None = None
    clip_grad: float | None = None
    scaler: torch.amp.GradScaler | None = None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            loss = self.criterion(self.model(images), targets)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if self.clip_grad is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            if self.clip_grad is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad)
            self.optimizer.step()
        return loss.detach()


def build_criterion(recipe: Recipe, num_classes: int) -> tuple[Callable, Callable | None]:
    """``(criterion, mixup_fn)``: timm's Mixup/CutMix with soft-target CE, or label-smoothed CE without mixing."""
    if recipe.uses_mixup:
        from timm.data import Mixup
        from timm.loss import SoftTargetCrossEntropy

        mixup = Mixup(mixup_alpha=recipe.mixup_alpha, cutmix_alpha=recipe.cutmix_alpha, prob=recipe.mixup_prob,
                      switch_prob=recipe.mixup_switch_prob, mode="batch", label_smoothing=recipe.label_smoothing,
                      num_classes=num_classes)
        return SoftTargetCrossEntropy(), mixup
    return nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing), None

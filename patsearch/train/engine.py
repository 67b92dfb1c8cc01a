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
    from patsearch.models import check_timm_name, is_patnet_ref

    if is_patnet_ref(arch):
        cfg = resolve_arch(arch)
        return cfg, cfg.name or (os.path.splitext(os.path.basename(os.fspath(arch)))[0]
                                 if isinstance(arch, (str, os.PathLike)) else "custom")
    return None, check_timm_name(arch)


def build_model(arch: ArchConfig | str | os.PathLike | Mapping[str, Any], num_classes: int,
                drop_path: float | None = None, fused_kernels: bool = False) -> nn.Module:
    """The trainable network; ``drop_path`` (the recipe's stochastic depth) overrides the architecture's rate;
    ``fused_kernels`` runs PATNet's gates through :mod:`patsearch.kernels` (no effect on other networks)."""
    from patsearch.models import create_model, use_fused_kernels

    extra = {"drop_path_rate": drop_path} if drop_path is not None else {}
    model = create_model(arch, num_classes=num_classes, **extra)
    return use_fused_kernels(model) if fused_kernels else model


def build_optimizer(model: nn.Module, recipe: Recipe, lr: float, device: torch.device,
                    capturable: bool = False) -> torch.optim.Optimizer:
    """timm's AdamW (fused on GPUs); ``capturable`` keeps its step counts on the device so that a CUDA graph can
    replay the step (:class:`GraphedTrainStep`)."""
    from timm.optim import create_optimizer_v2

    extra = {"capturable": True} if capturable else {}
    return create_optimizer_v2(model, "adamw", lr=lr, weight_decay=recipe.weight_decay, betas=tuple(recipe.betas),
                               eps=recipe.eps, fused=device.type == "cuda", **extra)


def build_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe, peak_lr: float, steps_per_epoch: int) -> Any:
    """timm's cosine schedule, stepped per optimiser step: linear warm-up from ``warmup_lr`` to ``peak_lr``, then
    cosine to ``min_lr`` at the run's last step, from the peak (``warmup_prefix``) or from where one cosine over
    the whole run stands when warm-up ends."""
    from timm.scheduler import CosineLRScheduler

    total = recipe.epochs * steps_per_epoch
    warmup = int(round(recipe.warmup_epochs * steps_per_epoch))
    return CosineLRScheduler(
        optimizer, t_initial=max(1, total - warmup) if recipe.warmup_prefix else total,
        lr_min=min(recipe.min_lr, peak_lr), warmup_t=warmup, warmup_lr_init=min(recipe.warmup_lr, peak_lr),
        warmup_prefix=recipe.warmup_prefix, t_in_epochs=False)


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


class GraphedTrainStep:
    """A :class:`TrainStep` replayed from one CUDA graph: the same forward, loss, backward, clipping and AdamW
    update, launched as a single graph instead of thousands of kernels.

    Why: a small network at a low resolution (a search proxy: PATNet-T0 at 32 px) is bound by kernel launches, not
    arithmetic; its eager step costs ~50 ms on an H200 for a few GFLOPs. The first ``warmup`` calls run eagerly on
    a side stream (they are real steps: cuDNN picks its algorithms and the optimiser creates its state), the next
    call captures the whole step, and every call from then on copies its batch into the graph's static inputs,
    writes the scheduler's current lr into the optimiser's lr tensors and replays. Dropout and drop-path draw from
    the graph-safe CUDA generator, so each replay gets fresh masks.

    Needs: a CUDA device, a fixed batch shape (one graph; a different shape is an error), an optimiser built with
    ``capturable=True`` (:func:`build_optimizer`), no GradScaler (bf16 or float32) and no DDP. A torch.compile'd
    model works: it compiles during the eager warm-up steps, and the graph then holds the compiled kernels and the
    optimiser's together, so the step pays neither Python nor launch overhead (H200, PATNet-T2, 224 px: 21.4 ms
    a step against 38.8 graphed eager and 32.5-43.1 compiled alone; docs/BENCHMARKS.md, 2026-11-30 and 12-01).
    """

    def __init__(self, step: TrainStep, warmup: int = 3) -> None:
        if step.device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        if step.scaler is not None:
            raise ValueError("CUDA graphs need bf16 or float32 (the fp16 GradScaler syncs with the host)")
        if not all(group.get("capturable", False) for group in step.optimizer.param_groups):
            raise ValueError("CUDA graphs need an optimiser built with capturable=True")
        self.step, self.warmup = step, warmup
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: tuple[torch.Tensor, torch.Tensor] | None = None
        self.static_loss: torch.Tensor | None = None
        self.lr_tensors: list[torch.Tensor] = []

    @property
    def model(self) -> nn.Module:
        return self.step.model

    def _eager(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        import warnings

        side = torch.cuda.Stream(self.step.device)
        side.wait_stream(torch.cuda.current_stream(self.step.device))
        with torch.cuda.stream(side), warnings.catch_warnings():
            # a capturable optimiser stepping outside a graph warns that it is slower: these few steps only
            warnings.filterwarnings("ignore", message=".*capturable=True.*")
            loss = self.step(images, targets)
        torch.cuda.current_stream(self.step.device).wait_stream(side)
        return loss

    def _capture(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        opt = self.step.optimizer
        self.static = (images.clone(), targets.clone())
        # The graph reads the lr from device tensors, which replay() refreshes from the scheduler's floats.
        self.lr_tensors = [torch.tensor(float(g["lr"]), dtype=torch.float32, device=self.step.device)
                           for g in opt.param_groups]
        floats = [g["lr"] for g in opt.param_groups]
        for group, lr in zip(opt.param_groups, self.lr_tensors):
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)  # the gradients are allocated inside the graph's memory pool
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self.static_loss = self.step(*self.static)
        finally:
            for group, lr in zip(opt.param_groups, floats):
                group["lr"] = lr  # schedulers and checkpoints keep seeing plain floats
        self.graph = graph

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.graph is None and self.calls <= self.warmup:
            return self._eager(images, targets)
        if self.graph is None:
            self._capture(images, targets)
        static_images, static_targets = self.static
        if images.shape != static_images.shape or targets.shape != static_targets.shape:
            raise ValueError(f"a CUDA-graphed step takes one batch shape: captured {tuple(static_images.shape)}, "
                             f"got {tuple(images.shape)} (use a fixed resolution and drop the last partial batch)")
        static_images.copy_(images)
        static_targets.copy_(targets)
        for group, lr in zip(self.step.optimizer.param_groups, self.lr_tensors):
            lr.fill_(float(group["lr"]))
        self.graph.replay()
        return self.static_loss.clone()


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

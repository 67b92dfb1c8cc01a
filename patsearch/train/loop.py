"""The training loop: one library function, used by ``patsearch train`` and by the search's proxy training.

API (small on purpose)::

    from patsearch.train import train
    result = train("patnet_t2", "patnet_t2", data="/data/imagenet", out_dir="runs/t2", batch_size=1024)
    result["best_top1"], result["history"]          # per-epoch metrics dicts

- ``arch``: an ArchConfig, a variant name, an architecture YAML (a search's best.yaml), a mapping, or a timm peer
  name such as ``fasternet_t0``.
- ``recipe``: a shipped recipe name (``patnet_t0`` ... ``patnet_l``, ``proxy``), a YAML path, a Recipe, or None
  (the recipe that fits ``arch``). ``epochs``, ``batch_size`` (global), ``lr`` (absolute; default: the recipe's lr
  scaled linearly from its batch to yours), ``resolution`` and ``multi_scale`` override it.
- ``data``: None trains on the built-in synthetic set (``synthetic=(n_train, n_val)`` samples); otherwise an
  ImageNet-style folder.
- ``out_dir``: None writes nothing at all (in-process proxy training). With a folder: ``latest.pt``, ``best.pt``,
  ``metrics.json``, TensorBoard scalars under ``tb/`` and, with ``profile_steps``, a profiler trace under
  ``profile/``. Only rank 0 writes.
- ``on_epoch_end(epoch, metrics)`` is called after each evaluation (on every rank); raising from it stops the run
  (the exception propagates: this is how Optuna pruning stops a trial). ``on_step_end(step, loss)`` is called after
  each optimiser step with this rank's loss as a float (it syncs the device: tests and debugging only).
- ``device="cpu"``, a tiny ``synthetic`` set, ``resolution=32`` and ``workers=0`` make a quick CPU path.
- Recipes with ``crop: pad`` (the ``proxy`` recipe) take the fast path: the data is decoded once at the run's
  resolution into uint8 tensors (:mod:`patsearch.data.tensor_cache`; a file under ``tensor_cache_dir``, reused by
  later runs and other processes), held on the device, and augmented there (pad by resolution/8 + crop, flip, the
  recipe's Mixup). Same loop, optimiser, schedule, precision, checkpoints and resume; only where batches come from
  differs. The paper's recipes keep timm's file pipeline, which suits any data size.
- Under torchrun the same call runs DDP (NCCL on GPUs, gloo on CPUs) with the global batch split across ranks.

Exact resume: checkpoints hold model, optimiser, scheduler, scaler, epoch and step, every rank's RNG state and the
sampler position; augmentation is seeded per sample, so ``resume="auto"`` continues with the same next step an
uninterrupted run takes (bit-exact on CPU with ``deterministic=True``).
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from patsearch.arch import ArchConfig
from patsearch.data.datasets import DEFAULT_SYNTHETIC, SYNTHETIC_IMAGE_SIZE, make_datasets
from patsearch.data.device_augment import epoch_permutation, pad_crop_flip, step_generator
from patsearch.data.tensor_cache import TensorSource, TensorSplit, load_or_build
from patsearch.errors import UserError
from patsearch.train import checkpoint as ckpt
from patsearch.train.distributed import (
    DistContext,
    ShardedBatchSampler,
    all_gather_objects,
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    cleanup,
    init_distributed,
    shard_indices,
)
from patsearch.train.engine import TrainStep, amp_dtype, build_criterion, build_model, build_optimizer, describe_arch
from patsearch.train.evaluate import evaluate
from patsearch.train.recipe import MULTI_SCALE_MODES, Recipe, RecipeError, default_recipe_for, load_recipe

DEFAULT_BATCH = 256


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


def resolve_recipe(recipe: Any, arch: Any, *, epochs: int | None = None, resolution: int | None = None,
                   multi_scale: str | None = None, amp: bool | None = None) -> Recipe:
    """The recipe a run uses: the given or fitting one, with the run's overrides applied."""
    if recipe is None or recipe == "auto":
        cfg, name = describe_arch(arch)
        recipe = default_recipe_for(name, cfg.embed_dim if cfg is not None else None)
    rec = load_recipe(recipe)
    if epochs is not None:
        rec = rec.with_epochs(epochs)
    if resolution is not None:
        # An explicit resolution means "train and test at this size"; multi-scale only if asked for as well.
        rec = rec.replace(resolution=resolution, test_resolution=resolution, multi_scale="none")
    if multi_scale is not None:
        if multi_scale not in MULTI_SCALE_MODES:
            raise RecipeError(f"multi-scale must be one of {', '.join(MULTI_SCALE_MODES)}, got {multi_scale!r}")
        rec = rec.replace(multi_scale=multi_scale)
    if amp is not None:
        rec = rec.replace(amp=amp)
    return rec


def _step_resolution(recipe: Recipe, seed: int, epoch: int, step: int) -> int | None:
    """Table 7's multi-scale: each step's size drawn from the recipe's list, the same on every rank."""
    if recipe.multi_scale != "random":
        return None
    gen = torch.Generator().manual_seed(hash((seed, epoch, step)) & 0x7FFF_FFFF)
    sizes = recipe.multi_scale_sizes
    return sizes[int(torch.randint(len(sizes), (1,), generator=gen))]


class _Writer:
    """Rank-0 outputs: metrics JSON (atomic), TensorBoard scalars (if tensorboard is installed)."""

    def __init__(self, out_dir: Path | None, enabled: bool, tensorboard: bool) -> None:
        self.out_dir = out_dir if enabled else None
        self.tb = None
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self.tb = SummaryWriter(str(self.out_dir / "tb"))
                except ImportError:
                    print("note: tensorboard is not installed; no TensorBoard scalars are written")

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        if self.tb is not None:
            for key, value in values.items():
                self.tb.add_scalar(key, value, step)

    def metrics(self, payload: dict[str, Any]) -> None:
        if self.out_dir is None:
            return
        path = self.out_dir / "metrics.json"
        tmp = path.with_name(f".metrics.json.tmp{os.getpid()}")
        tmp.write_text(json.dumps(payload, indent=1))
        os.replace(tmp, path)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


class _Progress:
    """A rich progress bar with ETA and img/s on rank 0 (silent elsewhere or when disabled).

    When stdout is not a terminal (nohup, CI, a pipe) a live bar shows nothing, so ``plain`` mode prints one line
    per ``log_every`` steps (when the loop has metrics) or every ``interval_s`` seconds, with the run's ETA.
    """

    def __init__(self, enabled: bool, *, plain: bool | None = None, total_steps: int = 0,
                 interval_s: float = 30.0) -> None:
        self.bar = None
        self.plain = enabled and (plain if plain is not None else not sys.stdout.isatty())
        self.total_steps, self.interval_s = total_steps, interval_s
        self.done = self.epoch_done = self.epoch_total = 0
        self.description = ""
        self.started = self.last_print = time.perf_counter()
        self.start_done = 0
        if enabled and not self.plain:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                TimeRemainingColumn())
            self.bar.start()
        self.task = None

    def start_epoch(self, description: str, total: int, done: int = 0, global_done: int | None = None) -> None:
        self.description, self.epoch_total, self.epoch_done = description, total, done
        if global_done is not None and self.done == 0:
            self.done = self.start_done = global_done  # a resumed run: the rate counts this run's steps only
        if self.bar is not None:
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task(description, total=total, completed=done, info="")

    def advance(self, info: str | None = None) -> None:
        self.done += 1
        self.epoch_done += 1
        if self.bar is not None:
            self.bar.update(self.task, advance=1, **({"info": info} if info is not None else {}))
        elif self.plain:
            now = time.perf_counter()
            if info is not None or now - self.last_print >= self.interval_s:
                self.last_print = now
                print(self.plain_line(info, now), flush=True)

    def plain_line(self, info: str | None, now: float) -> str:
        rate = (self.done - self.start_done) / max(now - self.started, 1e-9)
        left = max(self.total_steps - self.done, 0)
        eta = time.strftime("%H:%M:%S", time.gmtime(left / rate)) if rate > 0 else "?"
        return (f"{self.description} step {self.epoch_done}/{self.epoch_total} ({self.done}/{self.total_steps} "
                f"total)" + (f" {info}" if info else "") + f" eta {eta}")

    def log(self, message: str) -> None:
        if self.bar is not None:
            self.bar.console.print(message)
        elif self.plain:
            print(message, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def train(arch: ArchConfig | str | os.PathLike | Mapping[str, Any], recipe: str | os.PathLike | Recipe | None = None,
          *, data: str | os.PathLike | None = None, out_dir: str | os.PathLike | None = None,
          epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
          resolution: int | None = None, multi_scale: str | None = None, amp: bool | None = None,
          device: str = "auto", workers: int | None = None, cache: str = "auto",
          synthetic: tuple[int, int] = DEFAULT_SYNTHETIC, seed: int = 0, resume: str | os.PathLike | None = None,
          checkpoint_every: int = 0, max_steps: int | None = None, eval_every: int = 1,
          channels_last: bool = True, compile: bool = False, sync_bn: bool = False, deterministic: bool = False,
          profile_steps: int = 0, log_every: int = 50, progress: bool = True, tensorboard: bool = True,
          tensor_cache_dir: str | os.PathLike | None = None,
          on_epoch_end: Callable[[int, dict], None] | None = None,
          on_step_end: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train ``arch`` with ``recipe``; returns ``{"history": [...], "best_top1": ..., "final": {...}, ...}``.

    See the module docstring for the arguments. ``checkpoint_every`` also saves ``latest.pt`` every that many
    steps (for runs killed mid-epoch); ``max_steps`` stops early after that many optimiser steps in total.
    ``tensor_cache_dir`` is where ``crop: pad`` recipes keep their decoded data (None: this process only).
    """
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise UserError(f"--batch-size must be a positive integer (the global batch), got {batch_size!r}")
    ctx = init_distributed(device)
    writer = progress_bar = None
    try:
        rec = resolve_recipe(recipe, arch, epochs=epochs, resolution=resolution, multi_scale=multi_scale, amp=amp)
        global_batch = batch_size if batch_size is not None else DEFAULT_BATCH
        if global_batch % ctx.world_size:
            raise UserError(f"--batch-size {global_batch} must be divisible by the number of processes "
                            f"({ctx.world_size})")
        local_batch = global_batch // ctx.world_size
        if (rec.uses_mixup and local_batch % 2) or local_batch < 1:
            raise UserError(f"per-process batch {local_batch} must be a positive even number (Mixup/CutMix pair "
                            "samples); change --batch-size")
        peak_lr = lr if lr is not None else rec.scaled_lr(global_batch)
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=ctx.device.type == "cuda")
        if ctx.device.type == "cuda":
            torch.backends.cudnn.benchmark = not deterministic
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        torch.manual_seed(seed + ctx.rank)
        import random

        import numpy as np

        random.seed(seed + ctx.rank)
        np.random.seed(seed + ctx.rank)
        num_workers = workers if workers is not None else (min(8, os.cpu_count() or 1) if ctx.device.type == "cuda" else 0)

        train_t = val_t = None
        if rec.uses_tensor_cache:
            source = TensorSource(root=os.fspath(data) if data is not None else None,
                                  synthetic=None if data is not None else tuple(synthetic),
                                  synthetic_image_size=SYNTHETIC_IMAGE_SIZE, seed=seed)
            train_t, val_t = load_or_build(source, rec.resolution, rec.test_resolution, rec.test_crop_pct,
                                           cache_dir=tensor_cache_dir, workers=max(num_workers, os.cpu_count() or 1))
            train_t, val_t = train_t.to(ctx.device), val_t.to(ctx.device)  # the whole set lives on the device
            n_train, n_val, classes = len(train_t), len(val_t), list(train_t.classes)
        else:
            train_base, val_base = make_datasets(data, cache=cache, synthetic=synthetic, seed=seed,
                                                 workers=max(num_workers, 4))
            n_train, n_val, classes = len(train_base), len(val_base), list(train_base.classes)
        num_classes = len(classes)
        arch_cfg, arch_name = describe_arch(arch)
        model = build_model(arch_cfg if arch_cfg is not None else arch_name, num_classes, rec.drop_path)
        model.to(ctx.device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        if sync_bn and ctx.enabled:
            if ctx.device.type != "cuda":
                raise UserError("--sync-bn needs GPUs (PyTorch's SyncBatchNorm has no CPU kernel); drop it on CPUs")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        optimizer = build_optimizer(model, rec, peak_lr, ctx.device)
        dtype = amp_dtype(ctx.device, rec.amp)
        scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None

        steps_per_epoch = n_train // global_batch
        if steps_per_epoch < 1:
            raise UserError(f"the training set ({n_train} images) is smaller than one global batch "
                            f"({global_batch}); lower --batch-size")
        from timm.scheduler import CosineLRScheduler

        total_steps = rec.epochs * steps_per_epoch
        scheduler = CosineLRScheduler(optimizer, t_initial=total_steps, lr_min=min(rec.min_lr, peak_lr),
                                      warmup_t=int(round(rec.warmup_epochs * steps_per_epoch)),
                                      warmup_lr_init=min(rec.warmup_lr, peak_lr), t_in_epochs=False)
        criterion, mixup = build_criterion(rec, num_classes)

        out_path = Path(out_dir) if out_dir is not None else None
        run_info = {"arch": arch_name, "recipe": rec.name, "data": os.fspath(data) if data is not None else None,
                    "synthetic": list(synthetic) if data is None else None, "global_batch": global_batch,
                    "world_size": ctx.world_size, "lr": peak_lr, "seed": seed, "amp_dtype": str(dtype),
                    "precision": describe_precision(dtype, rec.amp, ctx.device),
                    "data_path": "tensor-cache" if train_t is not None else "loader",
                    "device": str(ctx.device), "steps_per_epoch": steps_per_epoch, "epochs": rec.epochs,
                    "channels_last": channels_last, "compile": compile}

        # --- resume -----------------------------------------------------------------------------------------
        start_epoch, step_in_epoch, global_step, best_top1 = 0, 0, 0, -1.0
        history: list[dict[str, Any]] = []
        epoch_loss = torch.zeros(2, dtype=torch.float64, device=ctx.device)  # loss sum, steps (this epoch)
        resume_path = ckpt.find_resume(out_path, resume) if resume and (out_path or resume != "auto") else None
        if resume_path is not None:
            state = ckpt.load(resume_path)
            _check_resumable(state.get("run", {}), run_info, resume_path)
            model.load_state_dict(ckpt.model_state(state))
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            start_epoch, step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
            global_step, best_top1 = int(state["global_step"]), float(state["best_top1"])
            history = list(state.get("history", []))
            epoch_loss = state["epoch_loss"].to(ctx.device)
            rng = state.get("rng", [])
            if len(rng) == ctx.world_size:
                ckpt.set_rng_state(rng[ctx.rank])
            elif ctx.is_main:
                print(f"note: checkpoint has RNG states for {len(rng)} processes, this run has {ctx.world_size}; "
                      "resuming with fresh random streams")

        train_model: nn.Module = model
        if ctx.enabled:
            train_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
        if compile:
            train_model = torch.compile(train_model)
        step_fn = TrainStep(train_model, optimizer, criterion, ctx.device, dtype, rec.clip_grad, scaler)

        from patsearch.data.transforms import (
            DeviceNormalizer,
            TransformedDataset,
            collate_uint8,
            eval_transform,
            train_transform,
        )

        normalize = DeviceNormalizer(ctx.device, channels_last)
        if train_t is not None:
            def tensor_batches(epoch: int, first_step: int):
                yield from _tensor_batches(train_t, rec, seed, epoch, first_step, steps_per_epoch, global_batch,
                                           local_batch, ctx)

            val_loader: Any = _TensorEval(val_t, shard_indices(n_val, ctx),
                                          max(local_batch, 1024) if ctx.device.type == "cuda" else local_batch)
        else:
            pin = ctx.device.type == "cuda"
            loader_kw: dict[str, Any] = {"num_workers": num_workers, "collate_fn": collate_uint8, "pin_memory": pin}
            if num_workers > 0:
                loader_kw.update(persistent_workers=True, prefetch_factor=4)
            sampler = ShardedBatchSampler(n_train, local_batch, rank=ctx.rank, world_size=ctx.world_size,
                                          seed=seed)
            train_loaders: dict[int, torch.utils.data.DataLoader] = {}

            def train_loader(res: int) -> torch.utils.data.DataLoader:
                if res not in train_loaders:  # one loader per resolution phase (the released 192 -> 224 schedule)
                    train_loaders.clear()
                    train_loaders[res] = torch.utils.data.DataLoader(
                        TransformedDataset(train_base, train_transform(rec, res)), batch_sampler=sampler,
                        generator=torch.Generator().manual_seed(seed), **loader_kw)
                return train_loaders[res]

            val_loader = torch.utils.data.DataLoader(
                torch.utils.data.Subset(TransformedDataset(val_base, eval_transform(rec)),
                                        shard_indices(n_val, ctx)),
                batch_size=local_batch, generator=torch.Generator().manual_seed(seed), **loader_kw)

        writer = _Writer(out_path, ctx.is_main, tensorboard)
        progress_bar = _Progress(progress and ctx.is_main, total_steps=rec.epochs * steps_per_epoch)
        profiler = _make_profiler(profile_steps, out_path, ctx) if profile_steps > 0 and out_path else None
        if ctx.is_main and progress:
            progress_bar.log(f"training {arch_name} with recipe {rec.name or '(custom)'}: {rec.epochs} epochs x "
                             f"{steps_per_epoch} steps, global batch {global_batch} on {ctx.world_size} "
                             f"{ctx.device.type} process(es), lr {peak_lr:.3g}, {run_info['precision']}, "
                             f"{n_train} train / {n_val} val images, {num_classes} classes"
                             + (", data as device tensors" if train_t is not None else ""))

        bad = torch.zeros((), dtype=torch.bool, device=ctx.device)
        stop = False
        partial: dict[str, Any] = {}
        train_model.train()

        def check_finite(epoch: int) -> None:
            flag = all_reduce_sum(ctx, bad.to(torch.float32))
            if flag.item() > 0:
                last = out_path / ckpt.LATEST if out_path is not None and (out_path / ckpt.LATEST).exists() else None
                where = f"; the last good checkpoint {last} is intact" if last else ""
                raise TrainingDiverged(f"loss became NaN or infinite in epoch {epoch} (by step {global_step}); "
                                       f"stopped without saving{where}. Lower --lr, or set clip_grad in the recipe")

        def save(epoch: int, step: int, is_best: bool) -> None:
            rngs = all_gather_objects(ctx, ckpt.rng_state())
            if not ctx.is_main or out_path is None:
                return
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else {},
                     "epoch": epoch, "step_in_epoch": step, "global_step": global_step, "best_top1": best_top1,
                     "epoch_loss": epoch_loss.cpu(), "history": history, "rng": rngs,
                     "arch": arch_cfg.to_dict() if arch_cfg is not None else {"timm": arch_name},
                     "recipe": rec.to_dict(), "run": run_info, "classes": classes}
            ckpt.save_atomic(state, out_path / ckpt.LATEST)
            if is_best:
                ckpt.save_atomic(state, out_path / ckpt.BEST)

        for epoch in range(start_epoch, rec.epochs):
            res = rec.resolution_at(epoch)
            if train_t is not None:
                loader = tensor_batches(epoch, step_in_epoch)
            else:
                sampler.set_epoch(epoch, step_in_epoch)
                loader = train_loader(res)
            progress_bar.start_epoch(f"epoch {epoch + 1}/{rec.epochs} @{res}", steps_per_epoch, step_in_epoch,
                                     global_step)
            if ctx.device.type == "cuda":
                torch.cuda.synchronize(ctx.device)
            t0 = time.perf_counter()
            steps_this_run = 0
            for images, labels in loader:
                scheduler.step_update(global_step)
                x = normalize(images)
                y = labels.to(ctx.device, non_blocking=True)
                size = _step_resolution(rec, seed, epoch, step_in_epoch)
                if size is not None and size != x.shape[-1]:
                    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
                if mixup is not None:
                    x, y = mixup(x, y)
                loss = step_fn(x, y)
                bad |= ~torch.isfinite(loss)
                epoch_loss[0] += loss.double()
                epoch_loss[1] += 1
                step_in_epoch += 1
                global_step += 1
                steps_this_run += 1
                if profiler is not None:
                    profiler.step()
                if on_step_end is not None:
                    on_step_end(global_step, float(loss))
                info = None
                if global_step % log_every == 0 or step_in_epoch == steps_per_epoch:
                    check_finite(epoch)
                    lr_now = optimizer.param_groups[0]["lr"]
                    mean_loss = (epoch_loss[0] / epoch_loss[1].clamp(min=1)).item()
                    img_s = steps_this_run * global_batch / max(time.perf_counter() - t0, 1e-9)  # synced by .item()
                    info = f"loss {mean_loss:.4f} lr {lr_now:.2e} {img_s:.0f} img/s"
                    writer.scalars({"train/loss": mean_loss, "train/lr": lr_now, "train/img_s": img_s}, global_step)
                progress_bar.advance(info)
                if checkpoint_every and global_step % checkpoint_every == 0 and step_in_epoch < steps_per_epoch:
                    check_finite(epoch)
                    save(epoch, step_in_epoch, False)
                if max_steps is not None and global_step >= max_steps:
                    stop = True
                    break
            if ctx.device.type == "cuda":
                torch.cuda.synchronize(ctx.device)
            train_time = time.perf_counter() - t0
            check_finite(epoch)
            if stop and step_in_epoch < steps_per_epoch:  # max_steps mid-epoch: resumable, evaluated, not in history
                save(epoch, step_in_epoch, False)
                partial = {"epoch": epoch + step_in_epoch / steps_per_epoch, "global_step": global_step,
                           "partial": True, **evaluate(model, val_loader, normalize, ctx, dtype)}
                break
            reduced = all_reduce_sum(ctx, epoch_loss) / ctx.world_size
            metrics: dict[str, Any] = {
                "epoch": epoch + 1, "global_step": global_step,
                "train_loss": (reduced[0] / reduced[1].clamp(min=1)).item(),
                "lr": optimizer.param_groups[0]["lr"], "resolution": res,
                "img_s": steps_this_run * global_batch / max(train_time, 1e-9), "epoch_time_s": train_time,
            }
            if (epoch + 1) % eval_every == 0 or epoch + 1 == rec.epochs:
                broadcast_buffers(ctx, model)  # every rank evaluates (and rank 0 saves) the same BN statistics
                metrics.update(evaluate(model, val_loader, normalize, ctx, dtype))
            history.append(metrics)
            is_best = metrics.get("top1", -1.0) > best_top1
            best_top1 = max(best_top1, metrics.get("top1", -1.0))
            step_in_epoch = 0
            epoch_loss.zero_()
            save(epoch + 1, 0, is_best)
            writer.scalars({f"epoch/{k}": float(v) for k, v in metrics.items()
                            if k in ("train_loss", "top1", "top5", "val_loss", "img_s", "lr")}, global_step)
            writer.metrics({"run": run_info, "recipe": rec.to_dict(), "best_top1": best_top1, "history": history})
            progress_bar.log(_epoch_line(metrics, rec.epochs))
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, metrics)
            if stop:
                break
        if profiler is not None:
            profiler.stop()
        barrier(ctx)
        return {"history": history, "best_top1": best_top1 if best_top1 >= 0 else None, "final": partial or (history[-1] if history else {}),
                "global_step": global_step, "run": run_info, "recipe": rec.to_dict(), "is_main": ctx.is_main,
                "out_dir": str(out_path) if out_path is not None else None}
    finally:
        if progress_bar is not None:
            progress_bar.close()
        if writer is not None:
            writer.close()
        cleanup(ctx)


def describe_precision(dtype: torch.dtype | None, amp: bool, device: torch.device) -> str:
    """What the run really computes in, for the header and metrics (the recipe's ``amp`` is a request)."""
    if dtype == torch.bfloat16:
        return "bfloat16 autocast"
    if dtype == torch.float16:
        return "float16 autocast + GradScaler"
    if amp and device.type != "cuda":
        return f"float32 (amp off on {device.type.upper()})"
    return "float32 (amp off)"


def _tensor_batches(data: TensorSplit, rec: Recipe, seed: int, epoch: int, first_step: int, steps: int,
                    global_batch: int, local_batch: int, ctx: DistContext):
    """The epoch's batches from device tensors: this rank's share of each global batch, augmented on the device.

    Order and augmentation are functions of (seed, epoch, step), so a resumed run sees the same batches.
    """
    perm = epoch_permutation(len(data), seed, epoch, data.images.device)
    padding = rec.resolution // 8  # the classic CIFAR pad of 4 at 32 px
    for step in range(first_step, steps):
        start = step * global_batch + ctx.rank * local_batch
        idx = perm[start:start + local_batch]
        gen = step_generator(data.images.device, seed, epoch, step, ctx.rank)
        yield pad_crop_flip(data.images[idx], padding, gen, rec.hflip), data.labels[idx]


class _TensorEval:
    """Evaluation batches straight from the device tensors (this rank's shard)."""

    def __init__(self, data: TensorSplit, indices: list[int], batch: int) -> None:
        self.data, self.batch = data, batch
        self.indices = torch.tensor(indices, dtype=torch.int64, device=data.images.device)

    def __iter__(self):
        for i in range(0, len(self.indices), self.batch):
            idx = self.indices[i:i + self.batch]
            yield self.data.images[idx], self.data.labels[idx]


def _check_resumable(saved: Mapping[str, Any], current: Mapping[str, Any], path: Path) -> None:
    """An exact resume needs the same run: refuse one whose schedule or data would differ."""
    keys = ("arch", "recipe", "global_batch", "epochs", "steps_per_epoch", "seed")
    changed = [f"{k} {saved.get(k)!r} -> {current.get(k)!r}" for k in keys if k in saved and saved[k] != current[k]]
    if changed:
        raise UserError(f"cannot resume from {path}: the run's settings differ ({', '.join(changed)}); resume with "
                        "the same options, or train into a new --out")


def _epoch_line(m: Mapping[str, Any], epochs: int) -> str:
    parts = [f"epoch {m['epoch']}/{epochs}", f"train_loss {m['train_loss']:.4f}"]
    if "top1" in m:
        parts += [f"top1 {m['top1']:.2f}", f"top5 {m['top5']:.2f}", f"val_loss {m['val_loss']:.4f}"]
    parts += [f"{m['img_s']:.0f} img/s", f"lr {m['lr']:.2e}"]
    return "  ".join(parts)


def _make_profiler(steps: int, out_path: Path, ctx: DistContext) -> Any:
    """A torch.profiler trace of ``steps`` training steps (after 1 wait + 1 warm-up) for torch-tb-profiler."""
    from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if ctx.device.type == "cuda" else [])
    prof = profile(activities=activities, schedule=schedule(wait=1, warmup=1, active=steps, repeat=1),
                   on_trace_ready=tensorboard_trace_handler(str(out_path / "profile"), worker_name=f"rank{ctx.rank}"))
    prof.start()
    return prof

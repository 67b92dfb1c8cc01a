"""The training loop: :class:`Trainer` (setup / resume / run_epoch / evaluate / save) over a :class:`TrainOptions`,
used by ``patsearch train``; :func:`train` is its keyword front door, used by the search's proxy training.

API (small on purpose)::

    from patsearch.train import Trainer, TrainOptions, train
    result = Trainer(TrainOptions("patnet_t2", "patnet_t2", data="/data/imagenet", out_dir="runs/t2",
                                  batch_size=1024)).fit()
    result = train("patnet_t2", "patnet_t2", data="/data/imagenet", out_dir="runs/t2", batch_size=1024)  # same
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
  differs. The paper's recipes use timm's file pipeline, which suits any data size, or with
  ``data_loader="device"`` the same tensor cache (stored at most at the images' own size) with random-resized
  crop, flip and RandAugment on the device: no loader processes, so several GPUs are not held back by the host.
- Under torchrun the same call runs DDP (NCCL on GPUs, gloo on CPUs) with the global batch split across ranks.
- ``cuda_graph=True`` replays each optimiser step from one CUDA graph
  (:class:`~patsearch.train.engine.GraphedTrainStep`; one GPU process, one resolution, bf16 or float32): the same
  step for launch-bound runs such as the search's proxies, which take it by default on a GPU.
- ``fused_kernels=True`` runs PATNet's Gaussian SE statistics, gated BNs and PAT_sp gates as
  :mod:`patsearch.kernels`' fused ops (:func:`~patsearch.models.use_fused_kernels`; Triton on CUDA): same function.

Exact resume: checkpoints hold model, optimiser, scheduler, scaler, epoch and step, every rank's RNG state and the
sampler position; augmentation is seeded per sample, so ``resume="auto"`` continues with the same next step an
uninterrupted run takes (bit-exact on CPU with ``deterministic=True``).

Around the loop, one job each: :mod:`~patsearch.train.preflight` (checks and notes before a run starts),
:mod:`~patsearch.train.progress` (what it shows), :mod:`~patsearch.train.run_dir` (what it writes) and
:mod:`patsearch.data.device_loader` (batches from device tensors).
"""
from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from patsearch.arch import ArchConfig
from patsearch.compile_options import with_device_defaults
from patsearch.data.datasets import DEFAULT_SYNTHETIC, SYNTHETIC_IMAGE_SIZE, make_datasets
from patsearch.data.device_loader import TensorEval, tensor_batches, uses_device_data
from patsearch.data.folder import split_dir
from patsearch.data.tensor_cache import TensorSource, load_or_build
from patsearch.data.transforms import (
    DeviceNormalizer,
    TransformedDataset,
    collate_uint8,
    eval_transform,
    train_transform,
)
from patsearch.errors import UserError
from patsearch.io import ensure_writable, missing_folders
from patsearch.train import checkpoint as ckpt
from patsearch.train.collapse import find_collapse
from patsearch.train.distributed import (
    ShardedBatchSampler,
    all_gather_objects,
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    cleanup,
    init_distributed,
    shard_indices,
    wrap_ddp,
)
from patsearch.train.engine import (
    GraphedTrainStep,
    TrainStep,
    amp_dtype,
    build_criterion,
    build_model,
    build_optimizer,
    build_scheduler,
    describe_arch,
)
from patsearch.train.evaluate import evaluate
from patsearch.train.options import DEFAULT_BATCH, TrainOptions
from patsearch.train.preflight import check_cuda_graph, describe_precision, fused_kernels_note, run_notes
from patsearch.train.progress import TrainProgress, epoch_line, resumed_line
from patsearch.train.recipe import MULTI_SCALE_MODES, Recipe, RecipeError, default_recipe_for, load_recipe
from patsearch.train.run_dir import RunWriter, check_resumable, make_profiler, remove_unfinished
from patsearch.version import provenance

logger = logging.getLogger(__name__)

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


def train(arch: ArchConfig | str | os.PathLike | Mapping[str, Any], recipe: str | os.PathLike | Recipe | None = None,
          *, data: str | os.PathLike | None = None, out_dir: str | os.PathLike | None = None,
          epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
          resolution: int | None = None, multi_scale: str | None = None, amp: bool | None = None,
          device: str | torch.device = "auto", workers: int | None = None, cache: str = "auto",
          data_loader: str = "auto", synthetic: tuple[int, int] = DEFAULT_SYNTHETIC, seed: int = 0,
          resume: str | os.PathLike | None = None,
          checkpoint_every: int = 0, max_steps: int | None = None, eval_every: int = 1,
          channels_last: bool = True, compile: bool = False, cuda_graph: bool = False, fused_kernels: bool = False,
          sync_bn: bool = False, deterministic: bool = False,
          profile_steps: int = 0, log_every: int = 50, progress: bool | str = True, tensorboard: bool = True,
          tensor_cache_dir: str | os.PathLike | None = None,
          on_epoch_end: Callable[[int, dict], None] | None = None,
          on_step_end: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train ``arch`` with ``recipe``; returns ``{"history": [...], "best_top1": ..., "final": {...}, ...}``.

    The keyword front door of :class:`Trainer`: the arguments become a :class:`TrainOptions` (validated there; see
    the module docstring for their meaning). ``checkpoint_every`` also saves ``latest.pt`` every that many steps
    (for runs killed mid-epoch); ``max_steps`` stops early after that many optimiser steps in total.
    ``tensor_cache_dir`` is where ``crop: pad`` recipes keep their decoded data (None: this process only).
    """
    options = TrainOptions(
        arch=arch, recipe=recipe, data=data, out_dir=out_dir, epochs=epochs,
        batch_size=DEFAULT_BATCH if batch_size is None else batch_size, lr=lr, resolution=resolution,
        multi_scale=multi_scale, amp=amp, device=device, workers=workers, cache=cache, data_loader=data_loader,
        synthetic=tuple(synthetic),
        seed=seed, resume=resume, checkpoint_every=checkpoint_every, max_steps=max_steps, eval_every=eval_every,
        channels_last=channels_last, compile=compile, cuda_graph=cuda_graph, fused_kernels=fused_kernels,
        sync_bn=sync_bn, deterministic=deterministic,
        profile_steps=profile_steps, log_every=log_every, progress=progress, tensorboard=tensorboard,
        tensor_cache_dir=tensor_cache_dir)
    return Trainer(options, on_epoch_end=on_epoch_end, on_step_end=on_step_end).fit()


class Trainer:
    """One training run as a few steps: :meth:`setup` (data, model, optimiser, schedule), :meth:`resume`,
    :meth:`run` (one :meth:`run_epoch` after another, each ending in :meth:`evaluate` and :meth:`save`).

    :meth:`fit` runs them in order inside the process group and always releases it. ``on_epoch_end(epoch,
    metrics)`` runs after each evaluation on every rank (raising stops the run: Optuna pruning);
    ``on_step_end(step, loss)`` after each optimiser step (it syncs the device: tests and debugging only).
    """

    def __init__(self, options: TrainOptions, *, on_epoch_end: Callable[[int, dict], None] | None = None,
                 on_step_end: Callable[[int, float], None] | None = None) -> None:
        self.opts = options
        self.on_epoch_end, self.on_step_end = on_epoch_end, on_step_end
        self.writer: RunWriter | None = None
        self.progress: TrainProgress | None = None
        self.profiler: Any = None

    def fit(self) -> dict[str, Any]:
        """Set up, resume if asked, train to the end (or ``max_steps``); returns :meth:`result`."""
        self.ctx = init_distributed(self.opts.device)
        o = self.opts
        created = missing_folders(o.out_dir) if self.ctx.is_main else []
        # A run of its own that fails before its first checkpoint also takes back the tensor-cache folder it made
        # (a search's proxies, without out_dir, share theirs and never remove it).
        cache = missing_folders(o.tensor_cache_dir) if self.ctx.is_main and o.out_dir is not None else []
        try:
            self.setup()
            self.resume()
            # After the checks that make a run fail at once (data, batch, resume file): an error is then the
            # run's only line. A note: --quiet hides it, as it hides every note.
            if self.ctx.is_main and self.opts.out_dir is not None:  # a run of its own, not a search proxy
                for note in run_notes(self.opts, self.rec, self.ctx.device):
                    logger.info(note)
            return self.run()
        except BaseException:
            self.close()
            if cache and not (Path(o.out_dir) / ckpt.LATEST).exists():
                remove_unfinished(cache)
            remove_unfinished(created)
            raise
        finally:
            self.close()

    # --- setup ------------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Recipe, seeds, data, model, optimiser, schedule and loss; the run's fresh (not resumed) state."""
        o, ctx = self.opts, self.ctx
        if o.out_dir is not None:  # before any data is read
            ensure_writable(o.out_dir, "--out", folder=True, example=f"runs/{Path(o.out_dir).name}")
            ckpt.find_resume(o.out_dir, o.resume)  # a missing --resume file fails before any data is read
        # Cheap checks of the arch name and the data folder, before the data is read or decoded.
        self.arch_cfg, self.arch_name = describe_arch(o.arch)
        if o.data is not None:
            split_dir(o.data, "train")
        recipe = None if o.auto_recipe else o.recipe
        rec = self.rec = resolve_recipe(recipe, o.arch, epochs=o.epochs, resolution=o.resolution,
                                        multi_scale=o.multi_scale, amp=o.amp)
        global_batch = self.global_batch = o.batch_size
        if global_batch % ctx.world_size:
            raise UserError(f"--batch-size {global_batch} must be divisible by the number of processes "
                            f"({ctx.world_size})")
        local_batch = self.local_batch = global_batch // ctx.world_size
        if (rec.uses_mixup and local_batch % 2) or local_batch < 1:
            raise UserError(f"per-process batch {local_batch} must be a positive even number (Mixup/CutMix pair "
                            "samples); change --batch-size")
        self.peak_lr = o.lr if o.lr is not None else rec.scaled_lr(global_batch)
        if o.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=ctx.device.type == "cuda")
        if ctx.device.type == "cuda":
            torch.backends.cudnn.benchmark = not o.deterministic
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        torch.manual_seed(o.seed + ctx.rank)
        random.seed(o.seed + ctx.rank)
        np.random.seed(o.seed + ctx.rank)
        self.num_workers = (o.workers if o.workers is not None
                            else (min(8, os.cpu_count() or 1) if ctx.device.type == "cuda" else 0))
        self._setup_data()
        self.steps_per_epoch = self.n_train // global_batch
        if self.steps_per_epoch < 1:
            raise UserError(f"the training set ({self.n_train} images) is smaller than one global batch "
                            f"({global_batch}); lower --batch-size")
        num_classes = len(self.classes)
        model = build_model(self.arch_cfg if self.arch_cfg is not None else self.arch_name, num_classes,
                            rec.drop_path, fused_kernels=o.fused_kernels)
        model.to(ctx.device)
        if o.channels_last:
            model.to(memory_format=torch.channels_last)
        if o.sync_bn and ctx.enabled:
            if ctx.device.type != "cuda":
                raise UserError("--sync-bn needs GPUs (PyTorch's SyncBatchNorm has no CPU kernel); drop it on CPUs")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        self.dtype = amp_dtype(ctx.device, rec.amp)
        if o.cuda_graph:
            check_cuda_graph(o, ctx, rec, self.dtype)
        self.optimizer = build_optimizer(model, rec, self.peak_lr, ctx.device, capturable=o.cuda_graph)
        self.scaler = torch.amp.GradScaler("cuda") if self.dtype == torch.float16 else None

        self.scheduler = build_scheduler(self.optimizer, rec, self.peak_lr, self.steps_per_epoch)
        self.criterion, self.mixup = build_criterion(rec, num_classes)

        self.out_path = Path(o.out_dir) if o.out_dir is not None else None
        self.run_info = {
            **provenance(),
            "arch": self.arch_name, "recipe": rec.name, "data": o.data,
            "synthetic": list(o.synthetic) if o.data is None else None, "global_batch": global_batch,
            "world_size": ctx.world_size, "lr": self.peak_lr, "seed": o.seed, "amp_dtype": str(self.dtype),
            "precision": describe_precision(self.dtype, rec.amp, ctx.device),
            "data_path": "tensor-cache" if self.train_t is not None else "loader",
            "device": str(ctx.device), "steps_per_epoch": self.steps_per_epoch, "epochs": rec.epochs,
            "channels_last": o.channels_last, "compile": o.compile, "cuda_graph": o.cuda_graph,
            "fused_kernels": o.fused_kernels,
            "compile_options": with_device_defaults(o.compile_options, ctx.device.type) if o.compile else {}}
        if ctx.is_main:
            logger.debug("run settings: %s", self.run_info)
        self.start_epoch = self.step_in_epoch = self.global_step = 0
        self.resumed_from: Path | None = None
        self.best_top1 = -1.0
        self.history: list[dict[str, Any]] = []
        self.partial: dict[str, Any] = {}
        self.epoch_loss = torch.zeros(2, dtype=torch.float64, device=ctx.device)  # loss sum, steps (this epoch)

    def _setup_data(self) -> None:
        """The datasets: device tensors for ``crop: pad`` recipes, else timm-style file datasets."""
        o, ctx, rec = self.opts, self.ctx, self.rec
        self.train_t = self.val_t = None
        if uses_device_data(rec, o.data_loader):
            source = TensorSource(root=o.data, synthetic=None if o.data is not None else tuple(o.synthetic),
                                  synthetic_image_size=SYNTHETIC_IMAGE_SIZE, seed=o.seed)
            # Pad-and-crop needs the images at the training size; a random-resized crop resamples anyway, so the
            # set is stored at most at its own size (CIFAR: 32 px, 150 MB) and only ever upsampled on the device.
            # Stored images are squares (the centre square of a non-square image).
            store = rec.resolution if rec.uses_tensor_cache else min(rec.largest_resolution, source.native_size())
            train_t, val_t = load_or_build(source, store, rec.test_resolution, rec.test_crop_pct,
                                           cache_dir=o.tensor_cache_dir,
                                           workers=max(self.num_workers, os.cpu_count() or 1))
            self.train_t, self.val_t = train_t.to(ctx.device), val_t.to(ctx.device)  # the whole set on the device
            self.n_train, self.n_val, self.classes = len(train_t), len(val_t), list(train_t.classes)
        else:
            self.train_base, self.val_base = make_datasets(o.data, cache=o.cache, synthetic=o.synthetic, seed=o.seed,
                                                           workers=max(self.num_workers, 4))
            self.n_train, self.n_val = len(self.train_base), len(self.val_base)
            self.classes = list(self.train_base.classes)

    # --- resume -----------------------------------------------------------------------------------------------
    def resume(self) -> bool:
        """Continue from ``options.resume`` (``auto``: ``latest.pt`` in the run folder, if any); True if it did."""
        o, ctx = self.opts, self.ctx
        resume_path = (ckpt.find_resume(self.out_path, o.resume)
                       if o.resume and (self.out_path or o.resume != "auto") else None)
        if resume_path is None:
            return False
        state = ckpt.load(resume_path, fix=ckpt.resume_fix(resume_path))
        check_resumable(state.get("run", {}), self.run_info, resume_path)
        self.model.load_state_dict(ckpt.model_state(state))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.start_epoch, self.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
        self.global_step, self.best_top1 = int(state["global_step"]), float(state["best_top1"])
        self.history = list(state.get("history", []))
        self.resumed_from = resume_path
        self.epoch_loss = state["epoch_loss"].to(ctx.device)
        rng = state.get("rng", [])
        if len(rng) == ctx.world_size:
            ckpt.set_rng_state(rng[ctx.rank])
        elif ctx.is_main:
            logger.info(f"note: checkpoint has RNG states for {len(rng)} processes, this run has {ctx.world_size}; "
                        "resuming with fresh random streams")
        return True

    # --- the loop ---------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train from the current state to the recipe's last epoch (or ``max_steps``); returns :meth:`result`."""
        o, ctx, rec = self.opts, self.ctx, self.rec
        train_model: nn.Module = wrap_ddp(self.model, ctx)
        if o.compile:
            train_model = torch.compile(train_model, options=self.run_info["compile_options"] or None)
        self.train_model = train_model
        self.step_fn: TrainStep | GraphedTrainStep = TrainStep(train_model, self.optimizer, self.criterion, ctx.device,
                                                               self.dtype, rec.clip_grad, self.scaler)
        if o.cuda_graph:
            self.step_fn = GraphedTrainStep(self.step_fn)
        self.normalize = DeviceNormalizer(ctx.device, o.channels_last)
        self._setup_loaders()
        self.writer = RunWriter(self.out_path, ctx.is_main, o.tensorboard)
        self.progress = TrainProgress(bool(o.progress) and ctx.is_main, plain=True if o.progress == "plain" else None,
                                  total_steps=rec.epochs * self.steps_per_epoch)
        if o.profile_steps > 0 and self.out_path:
            self.profiler = make_profiler(o.profile_steps, self.out_path, ctx)
        if ctx.is_main and o.progress:
            self.progress.log(
                f"training {self.arch_name} with recipe {rec.name or '(custom)'}: {rec.epochs} epochs x "
                f"{self.steps_per_epoch} steps, global batch {self.global_batch} on {ctx.world_size} "
                f"{ctx.device.type} process(es), lr {self.peak_lr:.3g}, {self.run_info['precision']}, "
                f"{self.n_train} train / {self.n_val} val images, {len(self.classes)} classes"
                + (", data as device tensors" if self.train_t is not None else ""))
            if self.resumed_from is not None:
                self.progress.log(resumed_line(self.resumed_from, self.start_epoch, self.step_in_epoch,
                                               rec.epochs, self.steps_per_epoch))
            elif o.resume == "auto" and self.out_path is not None:
                self.progress.log(f"--resume auto: no {self.out_path / ckpt.LATEST} yet, starting from the beginning")
            note = fused_kernels_note(o, ctx.device)
            if note:
                self.progress.log(note)
        self.bad = torch.zeros((), dtype=torch.bool, device=ctx.device)
        train_model.train()
        for epoch in range(self.start_epoch, rec.epochs):
            if self.run_epoch(epoch):
                break
        if self.profiler is not None:
            self.profiler.stop()
        barrier(ctx)
        return self.result()

    def _setup_loaders(self) -> None:
        o, ctx, rec = self.opts, self.ctx, self.rec
        if self.train_t is not None:
            self.val_loader: Any = TensorEval(self.val_t, shard_indices(self.n_val, ctx),
                                              max(self.local_batch, 1024) if ctx.device.type == "cuda"
                                              else self.local_batch)
            return
        pin = ctx.device.type == "cuda"
        self.loader_kw: dict[str, Any] = {"num_workers": self.num_workers, "collate_fn": collate_uint8,
                                          "pin_memory": pin}
        if self.num_workers > 0:
            self.loader_kw.update(persistent_workers=True, prefetch_factor=4)
        self.sampler = ShardedBatchSampler(self.n_train, self.local_batch, rank=ctx.rank,
                                           world_size=ctx.world_size, seed=o.seed)
        self.train_loaders: dict[int, torch.utils.data.DataLoader] = {}
        self.val_loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(TransformedDataset(self.val_base, eval_transform(rec)),
                                    shard_indices(self.n_val, ctx)),
            batch_size=self.local_batch, generator=torch.Generator().manual_seed(o.seed), **self.loader_kw)

    def _train_batches(self, epoch: int, res: int) -> Any:
        """The epoch's (remaining) training batches, from the step the run is at."""
        if self.train_t is not None:
            return tensor_batches(self.train_t, self.rec, self.opts.seed, epoch, self.step_in_epoch,
                                  self.steps_per_epoch, self.global_batch, self.local_batch, self.ctx.rank)
        self.sampler.set_epoch(epoch, self.step_in_epoch)
        if res not in self.train_loaders:  # one loader per resolution phase (the released 192 -> 224 schedule)
            self.train_loaders.clear()
            self.train_loaders[res] = torch.utils.data.DataLoader(
                TransformedDataset(self.train_base, train_transform(self.rec, res)), batch_sampler=self.sampler,
                generator=torch.Generator().manual_seed(self.opts.seed), **self.loader_kw)
        return self.train_loaders[res]

    def run_epoch(self, epoch: int) -> bool:
        """Train (the rest of) ``epoch``, evaluate and save; True when the run stops here (``max_steps``)."""
        o, ctx, rec = self.opts, self.ctx, self.rec
        steps_per_epoch, global_batch = self.steps_per_epoch, self.global_batch
        res = rec.resolution_at(epoch)
        loader = self._train_batches(epoch, res)
        self.progress.start_epoch(f"epoch {epoch + 1}/{rec.epochs} @{res}", steps_per_epoch, self.step_in_epoch,
                                  self.global_step)
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        t0 = time.perf_counter()
        steps_this_run = 0
        stop = False
        for images, labels in loader:
            self.scheduler.step_update(self.global_step)
            x = self.normalize(images)
            y = labels.to(ctx.device, non_blocking=True)
            size = _step_resolution(rec, o.seed, epoch, self.step_in_epoch)
            if size is not None and size != x.shape[-1]:
                x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
            if self.mixup is not None:
                x, y = self.mixup(x, y)
            loss = self.step_fn(x, y)
            self.bad |= ~torch.isfinite(loss)
            self.epoch_loss[0] += loss.double()
            self.epoch_loss[1] += 1
            self.step_in_epoch += 1
            self.global_step += 1
            steps_this_run += 1
            if self.profiler is not None:
                self.profiler.step()
            if self.on_step_end is not None:
                self.on_step_end(self.global_step, float(loss))
            info = None
            if self.global_step % o.log_every == 0 or self.step_in_epoch == steps_per_epoch:
                self._check_finite(epoch)
                lr_now = self.optimizer.param_groups[0]["lr"]
                mean_loss = (self.epoch_loss[0] / self.epoch_loss[1].clamp(min=1)).item()
                img_s = steps_this_run * global_batch / max(time.perf_counter() - t0, 1e-9)  # synced by .item()
                info = f"loss {mean_loss:.4f} lr {lr_now:.2e} {img_s:.0f} img/s"
                self.writer.scalars({"train/loss": mean_loss, "train/lr": lr_now, "train/img_s": img_s},
                                    self.global_step)
            self.progress.advance(info)
            if (o.checkpoint_every and self.global_step % o.checkpoint_every == 0
                    and self.step_in_epoch < steps_per_epoch):
                self._check_finite(epoch)
                self.save(epoch, self.step_in_epoch, False)
            if o.max_steps is not None and self.global_step >= o.max_steps:
                stop = True
                break
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        train_time = time.perf_counter() - t0
        self._check_finite(epoch)
        if stop and self.step_in_epoch < steps_per_epoch:  # max_steps mid-epoch: resumable, evaluated, not in history
            broadcast_buffers(self.ctx, self.model)
            # evaluation draws from no global RNG stream, so saving after it still resumes exactly
            self.partial = {"epoch": epoch + self.step_in_epoch / steps_per_epoch, "global_step": self.global_step,
                            "partial": True, **self.evaluate()}
            is_best = self.partial["top1"] > self.best_top1  # a short run leaves a best.pt too, for eval and export
            self.best_top1 = max(self.best_top1, self.partial["top1"])
            self.save(epoch, self.step_in_epoch, is_best)
            self.writer.metrics(self._metrics_payload())
            return True
        reduced = all_reduce_sum(ctx, self.epoch_loss) / ctx.world_size
        metrics: dict[str, Any] = {
            "epoch": epoch + 1, "global_step": self.global_step,
            "train_loss": (reduced[0] / reduced[1].clamp(min=1)).item(),
            "lr": self.optimizer.param_groups[0]["lr"], "resolution": res,
            "img_s": steps_this_run * global_batch / max(train_time, 1e-9), "epoch_time_s": train_time,
        }
        if (epoch + 1) % o.eval_every == 0 or epoch + 1 == rec.epochs:
            broadcast_buffers(ctx, self.model)  # every rank evaluates (and rank 0 saves) the same BN statistics
            metrics.update(self.evaluate())
        self.history.append(metrics)
        is_best = metrics.get("top1", -1.0) > self.best_top1
        self.best_top1 = max(self.best_top1, metrics.get("top1", -1.0))
        self.step_in_epoch = 0
        self.epoch_loss.zero_()
        self.save(epoch + 1, 0, is_best)
        self.writer.scalars({f"epoch/{k}": float(v) for k, v in metrics.items()
                             if k in ("train_loss", "top1", "top5", "val_loss", "img_s", "lr")}, self.global_step)
        self.writer.metrics(self._metrics_payload())
        self.progress.log(epoch_line(metrics, rec.epochs))
        collapse = find_collapse(self.history, len(self.classes))
        if collapse is not None and collapse.epoch == epoch + 1:  # said once, when it happens
            self.progress.log(collapse.note(self.peak_lr))
        if self.on_epoch_end is not None:
            self.on_epoch_end(epoch + 1, metrics)
        return stop

    def _metrics_payload(self) -> dict[str, Any]:
        """metrics.json: the run, its recipe, the best top-1 and each epoch; ``partial`` when stopped mid-epoch."""
        collapse = find_collapse(self.history, len(self.classes))
        return {"run": self.run_info, "recipe": self.rec.to_dict(), "best_top1": self.best_top1,
                "history": self.history, **({"partial": self.partial} if self.partial else {}),
                **({"collapse": collapse.to_dict()} if collapse is not None else {})}

    def evaluate(self) -> dict[str, float]:
        """Top-1, top-5 and loss of the current weights on this rank's share of the validation set."""
        return evaluate(self.model, self.val_loader, self.normalize, self.ctx, self.dtype)

    def _check_finite(self, epoch: int) -> None:
        flag = all_reduce_sum(self.ctx, self.bad.to(torch.float32))
        if flag.item() > 0:
            out_path = self.out_path
            last = out_path / ckpt.LATEST if out_path is not None and (out_path / ckpt.LATEST).exists() else None
            where = f"; the last good checkpoint {last} is intact" if last else ""
            raise TrainingDiverged(f"loss became NaN or infinite in epoch {epoch} (by step {self.global_step}); "
                                   f"stopped without saving{where}. Lower --lr, or set clip_grad in the recipe")

    def save(self, epoch: int, step: int, is_best: bool) -> None:
        """``latest.pt`` (and ``best.pt``) at (epoch, step): everything an exact resume needs (rank 0 writes)."""
        rngs = all_gather_objects(self.ctx, ckpt.rng_state())
        if not self.ctx.is_main or self.out_path is None:
            return
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict() if self.scaler else {},
                 "epoch": epoch, "step_in_epoch": step, "global_step": self.global_step,
                 "best_top1": self.best_top1, "epoch_loss": self.epoch_loss.cpu(), "history": self.history,
                 "rng": rngs,
                 "arch": self.arch_cfg.to_dict() if self.arch_cfg is not None else {"timm": self.arch_name},
                 "recipe": self.rec.to_dict(), "run": self.run_info, "classes": self.classes}
        ckpt.save_atomic(state, self.out_path / ckpt.LATEST)
        if is_best:
            ckpt.save_atomic(state, self.out_path / ckpt.BEST)

    def result(self) -> dict[str, Any]:
        return {"history": self.history, "best_top1": self.best_top1 if self.best_top1 >= 0 else None,
                "final": self.partial or (self.history[-1] if self.history else {}),
                "global_step": self.global_step, "run": self.run_info, "recipe": self.rec.to_dict(),
                "is_main": self.ctx.is_main, "out_dir": str(self.out_path) if self.out_path is not None else None}

    def close(self) -> None:
        """Stop the progress bar, flush TensorBoard and leave the process group (idempotent)."""
        if self.progress is not None:
            self.progress.close()
            self.progress = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        cleanup(self.ctx)



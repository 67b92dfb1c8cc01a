"""Training throughput of an architecture: the trainer's own step (forward, loss, backward, AdamW) on device-resident
random images, so that models are compared on the same harness without the data pipeline in the way."""
from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn as nn

from patsearch.errors import UserError
from patsearch.train.distributed import resolve_device
from patsearch.train.engine import GraphedTrainStep, TrainStep, amp_dtype, build_model, build_optimizer
from patsearch.train.recipe import load_recipe

NORM_MODES = ("train", "frozen", "fixed")


def set_norm_mode(model: nn.Module, mode: str) -> int:
    """A diagnostic of what batch normalisation costs a training step, not a way to train: ``"train"`` leaves every
    BatchNorm as the recipe runs it; ``"frozen"`` makes them use their running statistics (no batch reductions
    forward or backward, but their affine parameters still get gradients); ``"fixed"`` also stops those gradients,
    so each BatchNorm is a constant per-channel scale and shift that the compiler fuses into its neighbours, as in
    the deployment form. Returns how many BatchNorms it changed."""
    if mode not in NORM_MODES:
        raise UserError(f"norms must be one of {', '.join(NORM_MODES)}, got {mode!r}")
    changed = 0
    if mode == "train":
        return changed
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            if mode == "fixed":
                for param in module.parameters(recurse=False):
                    param.requires_grad_(False)
            changed += 1
    return changed


def benchmark_step(arch: Any, *, batch_size: int = 256, resolution: int = 224, device: str = "auto",
                   amp: bool = True, channels_last: bool = True, compile: bool = False, cuda_graph: bool = False,
                   fused_kernels: bool = False, num_classes: int = 1000, recipe: str = "patnet_t0",
                   norms: str = "train") -> tuple[Any, torch.Tensor, torch.Tensor]:
    """The trainer's step for ``arch`` and one device-resident random batch: ``step(x, y)`` is one training step.
    ``compile`` and ``cuda_graph`` together capture the compiled step whole (compiled during the graph's eager
    warm-up steps): the two generic tricks at once, as ``patsearch train --compile --cuda-graph`` runs them.
    ``norms`` other than ``"train"`` is a diagnostic (:func:`set_norm_mode`)."""
    dev = resolve_device(device)
    if cuda_graph and dev.type != "cuda":
        raise UserError(f"cuda_graph needs a CUDA device (this run is on {dev.type}); drop it")
    torch.manual_seed(0)
    model = build_model(arch, num_classes, fused_kernels=fused_kernels).to(dev)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format).train()
    set_norm_mode(model, norms)
    rec = load_recipe(recipe)
    optimizer = build_optimizer(model, rec, rec.scaled_lr(batch_size), dev, capturable=cuda_graph)
    dtype = amp_dtype(dev, amp)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    net = torch.compile(model) if compile else model
    step: Any = TrainStep(net, optimizer, nn.CrossEntropyLoss(label_smoothing=0.1), dev, dtype, rec.clip_grad, scaler)
    if cuda_graph:
        step = GraphedTrainStep(step)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    x = torch.randn(batch_size, 3, resolution, resolution, device=dev).to(memory_format=memory_format)
    y = torch.randint(0, num_classes, (batch_size,), device=dev)
    return step, x, y


def measure_train_throughput(arch: Any, *, batch_size: int = 256, resolution: int = 224, steps: int = 30,
                             warmup: int = 10, device: str = "auto", amp: bool = True, channels_last: bool = True,
                             compile: bool = False, cuda_graph: bool = False, fused_kernels: bool = False,
                             num_classes: int = 1000, recipe: str = "patnet_t0", norms: str = "train"
                             ) -> dict[str, Any]:
    """Images per second of full training steps (median of per-step times after ``warmup`` steps); ``cuda_graph``
    replays each step from one CUDA graph (:class:`~patsearch.train.engine.GraphedTrainStep`). ``warmup_s`` is the
    wall time of the warm-up steps, which hold any compiling and graph capture."""
    step, x, y = benchmark_step(arch, batch_size=batch_size, resolution=resolution, device=device, amp=amp,
                                channels_last=channels_last, compile=compile, cuda_graph=cuda_graph,
                                fused_kernels=fused_kernels, num_classes=num_classes, recipe=recipe, norms=norms)
    dev = x.device
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    start = time.perf_counter()
    warmup_s = 0.0
    for i in range(warmup + steps):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        step(x, y)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
        elif i == warmup - 1:
            warmup_s = time.perf_counter() - start  # includes compiling and capturing: their one-off cost
    times.sort()
    median = times[len(times) // 2]
    dtype = amp_dtype(dev, amp)
    return {"arch": str(arch), "batch_size": batch_size, "resolution": resolution, "dtype": str(dtype or torch.float32),
            "channels_last": channels_last, "compile": compile, "cuda_graph": cuda_graph,
            "fused_kernels": fused_kernels, "norms": norms, "steps": steps,
            "step_ms": 1e3 * median, "warmup_s": warmup_s,
            "img_s": batch_size / median, "peak_mem_gib": (torch.cuda.max_memory_allocated(dev) / 2**30
                                                          if dev.type == "cuda" else None),
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "torch": torch.__version__}

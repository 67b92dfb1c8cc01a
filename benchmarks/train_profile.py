"""Where a training step's time goes: kernel-level profile, launches per step, GPU busy fraction, and
activation bytes per image against the device's measured copy bandwidth, for PATNet and its FasterNet peer.

    python benchmarks/train_profile.py --archs patnet_t2 fasternet_t2 [--fused-kernels both] --out prof.json
    python benchmarks/train_profile.py --archs patnet_t2 fasternet_t2 --compile --cuda-graph --out prof.json

Per model, on the trainer's own step (:func:`patsearch.train.throughput.benchmark_step`: bf16 autocast on GPUs,
channels_last, fused AdamW, device-resident random images):
- ``kernels_per_step``: device kernels one step launches; ``busy_fraction``: summed kernel time / step wall time
  (well below 1: the step waits on the CPU launching work, so fewer, larger kernels or CUDA graphs help; near 1:
  the kernels themselves are the cost).
- ``activation_bytes_per_image``: bytes every leaf module writes in the forward pass, per image. A training step
  moves at least about 4x this (written forward, read backward, gradient written and read), so
  ``traffic_bound_img_s`` = bandwidth / (4 x activation bytes) is an upper bound on img/s for a memory-bound step.
- ``top_kernels``: the kernels with the most device time per step.

``--compile`` and ``--cuda-graph`` profile the step as ``train_throughput.py`` times it with those tricks (both
together: the compiled step captured whole; the profiler still lists the graph's kernels one by one).
``--fused-kernels on|both`` profiles each PATNet with :mod:`patsearch.kernels`' fused ops (``<arch>+fused``), as
``train_throughput.py`` measures it. The bytes every op of the step moves are counted by ``op_count.py``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from device_ceilings import copy_bandwidth_gb_s  # noqa: E402
from inductor_settings import add_inductor_argument, apply_inductor_settings  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402
from train_throughput import measured_runs  # noqa: E402

from patsearch.io import atomic_write_json  # noqa: E402
from patsearch.train.distributed import resolve_device  # noqa: E402
from patsearch.train.throughput import NORM_MODES, benchmark_step  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def activation_bytes_per_image(step, x: torch.Tensor) -> int:
    """Bytes written by the forward outputs of every leaf module, per image, under the step's autocast."""
    model = getattr(step.model, "_orig_mod", step.model)  # a compiled model's hooks belong on the original
    dtype = getattr(step, "step", step).dtype  # a GraphedTrainStep wraps the TrainStep that holds the autocast dtype
    total = 0

    def hook(_module, _inputs, output):
        nonlocal total
        outs = output if isinstance(output, (tuple, list)) else (output,)
        total += sum(o.numel() * o.element_size() for o in outs if isinstance(o, torch.Tensor))

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad(), torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total // x.shape[0]


# Kernel families by name: the question the compiled profile answers is whether PATNet's extra time is in Inductor's
# generated pointwise/reduction kernels (triton_poi/red/per) or in library kernels (cuDNN/cuBLAS convolutions and
# GEMMs, aten copies, the fused optimiser). Checked in order: the first family whose key occurs in the lowered name.
_FAMILIES = (
    ("inductor_reduction", ("triton_red", "triton_per")),
    ("inductor_pointwise", ("triton_poi",)),
    ("inductor_other", ("triton_",)),
    ("patsearch_triton", ("_stats_", "_scale_", "_spatial_", "_gbn_affine_", "_fc2_gate_")),
    ("copy", ("direct_copy", "memcpy", "memset", "copy_kernel", "converttensor", "addpadding")),
    ("attention", ("flash", "fmha", "attention")),
    ("conv_gemm", ("conv", "gemm", "gemv", "cutlass", "xmma", "nvjet", "cudnn", "wgrad", "dgrad", "fprop",
                   "splitkreduce")),
    ("optimizer", ("multi_tensor_apply",)),
    ("aten_elementwise_reduce", ("elementwise_kernel", "reduce_kernel", "vectorized")),
)


def kernel_family(name: str) -> str:
    low = name.lower()
    for family, keys in _FAMILIES:
        if any(k in low for k in keys):
            return family
    return "other"


def family_table(per_kernel: dict[str, list[float]], steps: int) -> dict[str, dict]:
    """Per family: launches, device ms per step, and how many launches run under 5 and 10 us (small kernels are
    where a GPU of 132 SMs idles on ramp-up and tail)."""
    table: dict[str, dict] = {}
    for name, times in per_kernel.items():
        row = table.setdefault(kernel_family(name), {"calls_per_step": 0.0, "ms_per_step": 0.0,
                                                     "under_5us_per_step": 0.0, "under_10us_per_step": 0.0})
        row["calls_per_step"] += len(times) / steps
        row["ms_per_step"] += sum(times) / 1e3 / steps
        row["under_5us_per_step"] += sum(t < 5 for t in times) / steps
        row["under_10us_per_step"] += sum(t < 10 for t in times) / steps
    return dict(sorted(table.items(), key=lambda kv: -kv[1]["ms_per_step"]))


def timed_and_profiled(call, device: torch.device, warmup: int, steps: int) -> tuple[float, dict[str, list[float]]]:
    """Seconds per ``call()`` over ``steps`` calls after ``warmup`` (wall time, synchronised), then the device
    kernels of ``steps`` more calls under torch.profiler: name -> device microseconds of each launch (empty
    without a GPU)."""
    for _ in range(warmup):
        call()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        call()
    _sync(device)
    call_s = (time.perf_counter() - t0) / steps
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            call()
        _sync(device)
    per_kernel: dict[str, list[float]] = {}
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            per_kernel.setdefault(e.name, []).append(e.device_time)
    return call_s, per_kernel


def profile_arch(label: str, arch: str, fused: bool, args: argparse.Namespace) -> dict:
    step, x, y = benchmark_step(arch, batch_size=args.batch_size, resolution=args.resolution, device=args.device,
                                compile=args.compile, cuda_graph=args.cuda_graph, fused_kernels=fused,
                                norms=args.norms)
    dev = x.device
    step_s, per_kernel = timed_and_profiled(lambda: step(x, y), dev, args.warmup, args.steps)
    launches = sum(len(ts) for ts in per_kernel.values())
    kernel_us = sum(sum(ts) for ts in per_kernel.values())
    top = sorted(per_kernel.items(), key=lambda kv: -sum(kv[1]))[:args.top]
    act = activation_bytes_per_image(step, x)
    out = {"arch": label, "fused_kernels": fused, "norms": args.norms, "compile": args.compile,
           "cuda_graph": args.cuda_graph,
           "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
           "batch_size": args.batch_size, "resolution": args.resolution, "step_ms": 1e3 * step_s,
           "img_s": args.batch_size / step_s, "kernels_per_step": launches / args.steps,
           "kernel_ms_per_step": kernel_us / 1e3 / args.steps,
           "busy_fraction": (kernel_us / 1e6 / args.steps) / step_s if launches else None,
           "activation_bytes_per_image": act, "families": family_table(per_kernel, args.steps),
           "top_kernels": [{"name": name[:120], "ms_per_step": sum(ts) / 1e3 / args.steps,
                            "calls_per_step": len(ts) / args.steps} for name, ts in top]}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", nargs="+", default=["patnet_t2", "fasternet_t2"])
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--device", default="auto")
    p.add_argument("--fused-kernels", choices=["off", "on", "both"], default="off",
                   help="PATNet with patsearch.kernels' fused ops: off, on, or both (FasterNet: always plain)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (both networks)")
    p.add_argument("--cuda-graph", action="store_true", help="replay each step from one CUDA graph (both networks)")
    add_inductor_argument(p)
    p.add_argument("--norms", choices=NORM_MODES, default="train",
                   help="diagnostic for both networks (train_throughput.py's): BatchNorms frozen or fixed")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    inductor = apply_inductor_settings(args.inductor)
    results = [profile_arch(label, arch, fused, args) for label, arch, fused in
               measured_runs(args.archs, args.fused_kernels)]
    dev = resolve_device(args.device)
    bandwidth = copy_bandwidth_gb_s(dev)
    for r in results:
        r["copy_bandwidth_gb_s"] = bandwidth
        r["traffic_bound_img_s"] = bandwidth * 1e9 / (4 * r["activation_bytes_per_image"])
        print(f"{r['arch']}: {r['img_s']:.0f} img/s, {r['kernels_per_step']:.0f} kernels/step, busy "
              f"{r['busy_fraction'] if r['busy_fraction'] is None else round(r['busy_fraction'], 2)}, "
              f"{r['activation_bytes_per_image'] / 2**20:.1f} MiB activations/image, traffic bound "
              f"{r['traffic_bound_img_s']:.0f} img/s at {bandwidth:.0f} GB/s", flush=True)
        for fam, row in r["families"].items():
            print(f"   {fam:18s} {row['ms_per_step']:8.2f} ms {row['calls_per_step']:6.0f}x "
                  f"({row['under_5us_per_step']:.0f} under 5 us, {row['under_10us_per_step']:.0f} under 10 us)")
        for k in r["top_kernels"]:
            print(f"   {k['ms_per_step']:8.2f} ms {k['calls_per_step']:6.0f}x  {k['name']}")
    if args.out:
        atomic_write_json(args.out, {"bandwidth_gb_s": bandwidth, "inductor": inductor, "results": results}, indent=1)


if __name__ == "__main__":
    main()

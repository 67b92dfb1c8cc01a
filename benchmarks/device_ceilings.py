"""The device's practical ceilings that the GPU benchmarks compare against, measured one way for all of them:
the device-to-device copy bandwidth (a memory-bound op's ceiling) and the bf16 matmul rate (a GEMM's).

    from device_ceilings import copy_bandwidth_gb_s, bf16_matmul_tflops
"""
from __future__ import annotations

import time
from collections.abc import Callable

import torch


def _median_ms(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median milliseconds of ``fn`` after one warm-up call: CUDA events on a GPU, wall time elsewhere."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2]


def copy_bandwidth_gb_s(device: torch.device | str, mib: int | None = None, repeats: int = 10) -> float:
    """Device-to-device copy bandwidth in GB/s, read plus write bytes (median of ``repeats`` copies). The default
    size, 1 GiB on a GPU and 64 MiB elsewhere, is far beyond any cache of either."""
    device = torch.device(device)
    mib = mib or (1024 if device.type == "cuda" else 64)
    src = torch.empty(mib << 20, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    ms = _median_ms(lambda: dst.copy_(src), device, repeats)
    return 2 * src.numel() / ms / 1e6


def bf16_matmul_tflops(device: torch.device | str, n: int = 8192, repeats: int = 5) -> float:
    """Dense bf16 matmul rate in TFLOP/s on an ``n`` x ``n`` square product (median of ``repeats``)."""
    device = torch.device(device)
    m = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    ms = _median_ms(lambda: m @ m, device, repeats)
    return 2 * n ** 3 / ms / 1e9

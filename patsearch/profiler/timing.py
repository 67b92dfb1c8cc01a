"""The measurement harness: warm-up, many repetitions, medians and spread, synchronised timers.

CPU: ``time.perf_counter`` (or, with the ``cpu`` clock, the process's CPU time) around each call (inner loops
only for calls under ~0.5 ms), fixed thread count, denormals flushed. GPU: CUDA events around a loop of calls sized
to ~2 ms per sample, after a warm-up that also lets cuDNN's autotuner pick its kernels. Every result is a
:class:`Timing` with the median and the 10th/90th percentiles of per-call time.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from patsearch.profiler.devices import Device, DeviceError, Protocol


@dataclass(frozen=True)
class Budget:
    """How long to measure one item: warm-up seconds, then samples until both minimums are met."""

    warmup_s: float = 0.05
    min_samples: int = 9
    target_s: float = 0.2
    max_samples: int = 200
    sample_s: float = 0.0005          # CPU: a sample loops the call until it takes at least this long

    def scaled(self, factor: float) -> Budget:
        return Budget(self.warmup_s * factor, self.min_samples, self.target_s * factor, self.max_samples,
                      self.sample_s)


# CPU layers: ~0.16 s each (was 0.25 s of samples, min 15, max 200: 392 of a 748 s profile on the 2-core VM, over
# the 10-minute goal); on a shared host the noise is drift between layers, which more samples of one do not remove.
LAYER_BUDGET_CPU = Budget(warmup_s=0.02, min_samples=9, target_s=0.12, max_samples=100)
LAYER_BUDGET_GPU = Budget(warmup_s=0.05, min_samples=7, target_s=0.05, max_samples=50, sample_s=0.002)
NETWORK_BUDGET_CPU = Budget(warmup_s=0.1, min_samples=9, target_s=0.6, max_samples=100)
NETWORK_BUDGET_GPU = Budget(warmup_s=0.2, min_samples=9, target_s=0.3, max_samples=60, sample_s=0.005)


@dataclass(frozen=True)
class Timing:
    """Per-call time in milliseconds over ``samples`` samples of ``inner`` calls each."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    samples: int
    inner: int

    @property
    def spread(self) -> float:
        """Relative 10-90 percentile spread (0.05 = the middle 80% of samples lie within 5% of each other)."""
        return (self.p90_ms - self.p10_ms) / self.median_ms if self.median_ms > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"ms": round(self.median_ms, 6), "p10": round(self.p10_ms, 6), "p90": round(self.p90_ms, 6),
                "n": self.samples, "inner": self.inner}


def summarise(per_call_ms: Sequence[float], inner: int) -> Timing:
    values = sorted(per_call_ms)
    if len(values) >= 2:
        q = statistics.quantiles(values, n=10, method="inclusive")
        p10, p90 = q[0], q[-1]
    else:
        p10 = p90 = values[0]
    return Timing(statistics.median(values), p10, p90, len(values), inner)


def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def configure(device: Device, protocol: Protocol) -> None:
    """Fix threads and numerics for the whole process before anything is measured."""
    import torch

    if protocol.threads is not None:
        torch.set_num_threads(protocol.threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set (or parallel work already ran): harmless
            pass
    if device.backend == "cpu":
        # Random weights can drive activations into denormals, which real deployments rarely see and which
        # slow x86 FP units by orders of magnitude.
        torch.set_flush_denormal(True)
    else:
        torch.backends.cudnn.benchmark = True
        # One TF32 regime for convolutions and matmuls alike (Protocol.tf32), not PyTorch's mixed default.
        torch.backends.cudnn.allow_tf32 = protocol.tf32
        torch.backends.cuda.matmul.allow_tf32 = protocol.tf32


def prepare(module: Any, input_shape: Sequence[int], device: Device, protocol: Protocol) -> tuple[Any, Any]:
    """Move a module to the device, dtype and memory format of the protocol; make a random input batch."""
    import torch

    target = "cpu" if device.backend == "cpu" else "cuda"
    dtype = torch_dtype(protocol.dtype)
    module = module.eval().to(device=target, dtype=dtype)
    x = torch.randn(protocol.batch, *input_shape, device=target, dtype=dtype)
    if protocol.channels_last and x.dim() == 4:
        module = module.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return module, x


class _Runner:
    """One item under measurement: a callable plus its per-sample loop length, timed on CPU or GPU clocks."""

    def __init__(self, fn: Callable[[], Any], gpu: bool, clock: str = "wall") -> None:
        self.fn = fn
        self.gpu = gpu
        self.cpu_clock = clock == "cpu" and not gpu
        self.inner = 1
        self.samples: list[float] = []
        self.elapsed = 0.0

    def sync(self) -> None:
        if self.gpu:
            import torch

            torch.cuda.synchronize()

    def warmup(self, budget: Budget) -> None:
        self.fn()
        self.sync()
        start = time.perf_counter()
        calls = 0
        while True:
            self.fn()
            calls += 1
            if self.gpu and calls % 4:
                continue
            self.sync()
            if time.perf_counter() - start >= budget.warmup_s:  # a slow network: one call past the first is enough
                break
        per_call = (time.perf_counter() - start) / calls
        self.inner = max(1, min(1000, round(budget.sample_s / max(per_call, 1e-9))))

    def sample(self) -> None:
        import torch

        if self.gpu:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            for _ in range(self.inner):
                self.fn()
            end.record()
            end.synchronize()
            ms = begin.elapsed_time(end)
        elif self.cpu_clock:
            start, wall = time.process_time(), time.perf_counter()
            for _ in range(self.inner):
                self.fn()
            ms = (time.process_time() - start) * 1e3
            self.elapsed += time.perf_counter() - wall
            self.samples.append(ms / self.inner)
            return
        else:
            start = time.perf_counter()
            for _ in range(self.inner):
                self.fn()
            ms = (time.perf_counter() - start) * 1e3
        self.elapsed += ms / 1e3
        self.samples.append(ms / self.inner)

    def done(self, budget: Budget) -> bool:
        n = len(self.samples)
        return n >= budget.max_samples or (n >= budget.min_samples and self.elapsed >= budget.target_s)


def _no_grad_call(module: Any, x: Any) -> Callable[[], Any]:
    def call() -> Any:
        return module(x)
    return call


class GraphCaptureError(DeviceError):
    """A network could not be captured in a CUDA graph, so the ``cuda_graphs`` protocol cannot time it."""


def _graph_call(module: Any, x: Any) -> Callable[[], Any]:
    try:
        return capture_graph(module, x)
    except Exception as exc:  # noqa: BLE001 - re-raised with what to do about it
        cause = (str(exc).strip().splitlines() or [""])[0]   # CUDA errors run to several lines
        raise GraphCaptureError(f"{type(module).__name__} cannot be captured in a CUDA graph ({type(exc).__name__}: "
                                f"{cause}); measure it eagerly with --no-cuda-graphs") from exc


def time_call(fn: Callable[[], Any], *, gpu: bool, budget: Budget, clock: str = "wall") -> Timing:
    """Time one callable: warm up, then take samples until the budget is met."""
    runner = _Runner(fn, gpu, clock)
    runner.warmup(budget)
    while not runner.done(budget):
        runner.sample()
    return summarise(runner.samples, runner.inner)


def time_module(module: Any, x: Any, *, gpu: bool, budget: Budget, clock: str = "wall") -> Timing:
    import torch

    with torch.inference_mode():
        return time_call(_no_grad_call(module, x), gpu=gpu, budget=budget, clock=clock)


def capture_graph(module: Any, x: Any) -> Callable[[], Any]:
    """One inference forward of ``module`` on ``x`` captured in a CUDA graph; returns its replay.

    Warmed up on a side stream first (cuDNN picks its kernels and lazy buffers exist before capture), as torch's
    CUDA-graph notes require. Raises whatever capture raises; the graph lives as long as the returned callable.
    """
    import torch

    with torch.inference_mode():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                module(x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            module(x)
    return graph.replay


def time_graph(module: Any, x: Any, *, budget: Budget) -> Timing | None:
    """GPU execution time alone: capture one forward in a CUDA graph and time its replays.

    Eager timing of a small layer measures Python and kernel-launch overhead that, inside a network, overlaps
    with the GPU work of neighbouring layers; graph replay removes it. Returns None if the layer cannot be
    captured (the table then keeps only the eager time).
    """
    import torch

    try:
        replay = capture_graph(module, x)
        timing = time_call(replay, gpu=True, budget=budget)
        del replay
        return timing
    except Exception:  # noqa: BLE001 - capture is an optimisation of the measurement, not a requirement
        torch.cuda.synchronize()
        return None


def time_interleaved(items: Sequence[tuple[Any, Any]], *, gpu: bool, budget: Budget,
                     clock: str = "wall", graphs: bool = False) -> list[Timing]:
    """Time several (module, input) pairs round-robin, one sample each per round, so that a burst of
    background load hits all of them alike instead of skewing one. ``graphs``: time CUDA graph replays of each
    forward (the ``cuda_graphs`` protocol); a network that cannot be captured raises :class:`GraphCaptureError`."""
    import torch

    with torch.inference_mode():
        calls = [_graph_call(m, x) if graphs else _no_grad_call(m, x) for m, x in items]
        runners = [_Runner(call, gpu, clock) for call in calls]
        for runner in runners:
            runner.warmup(budget)
        while not all(r.done(budget) for r in runners):
            for runner in runners:
                if not runner.done(budget):
                    runner.sample()
        return [summarise(r.samples, r.inner) for r in runners]

"""Named devices, their measurement protocols, and the check that the hardware present is the one named.

The paper measures CPU latency on one core of an AMD EPYC at batch 1, and GPU throughput on V100 and MI250 at
batch 256. Each named device carries that protocol; ``--batch``, ``--dtype``, ``--channels-last``,
``--threads`` and ``--tf32`` override it, and the resulting protocol names the profile file, so different
protocols never mix.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import re
import sys
from dataclasses import dataclass
from typing import Any

from patsearch.errors import UserError
from patsearch.models.forms import LAYER_FORMS, FormError, canonical_form, get_form
from patsearch.version import provenance

DTYPES = ("float32", "bfloat16", "float16")
METRICS = ("latency_ms", "throughput")
CLOCKS = ("wall", "cpu")


class DeviceError(UserError):
    """An unknown device name, an impossible protocol, or hardware that is not the device named."""


@dataclass(frozen=True)
class Protocol:
    """How a device is measured. ``metric`` is ``latency_ms`` (lower is better; time of one batch) or
    ``throughput`` (images per second, higher is better)."""

    metric: str
    batch: int
    dtype: str = "float32"
    channels_last: bool = False
    threads: int | None = None       # CPU threads torch may use; None leaves torch's default
    form: str = "fused"              # "fused" = deployment form (BN folded, PAT_sp merged); "trained" as trained
    # "wall": elapsed time (CUDA events on GPUs). "cpu": the process's CPU time, for single-thread CPU latency on
    # a shared host: it leaves out the time other processes hold the core, and equals wall time on an idle one.
    clock: str = "wall"
    # GPUs: time every network (and read every layer) as a CUDA graph replay, as a fixed-shape deployment runs it.
    # Eager timing of a small network at batch 256 is bound by the host launching kernels, and on a shared host
    # that spreads by up to 80% between runs: no table can predict it.
    cuda_graphs: bool = False
    # GPUs: float32 matmuls and convolutions on TensorFloat-32 tensor cores (both, or neither). PyTorch's own default
    # allows TF32 in cuDNN's convolutions but not in matmuls, which times a network whose projections are GEMMs
    # (PAT_sf's self-attention) against one of 1x1 convolutions (FasterNet) under different arithmetic: on an
    # H200 that alone moved PATNet-T2 / FasterNet-T2 in float32 from 0.96 (TF32 in both) to 0.83 (docs/BENCHMARKS.md,
    # 2026-12-01). So a table names one regime: off (the paper's float32) unless asked.
    tf32: bool = False

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise DeviceError(f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if not isinstance(self.batch, int) or self.batch < 1:
            raise DeviceError(f"--batch must be a positive integer, got {self.batch!r}")
        if self.dtype not in DTYPES:
            raise DeviceError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise DeviceError(f"--threads must be a positive integer, got {self.threads!r}")
        object.__setattr__(self, "form", canonical_form(self.form))  # an alias names the same table
        try:
            get_form(self.form, among=LAYER_FORMS, what="--form")
        except FormError as exc:
            raise DeviceError(str(exc)) from None
        if self.clock not in CLOCKS:
            raise DeviceError(f"--clock must be one of {', '.join(CLOCKS)}, got {self.clock!r}")
        if not isinstance(self.cuda_graphs, bool):
            raise DeviceError(f"--cuda-graphs must be true or false, got {self.cuda_graphs!r}")
        if not isinstance(self.tf32, bool):
            raise DeviceError(f"--tf32 must be true or false, got {self.tf32!r}")

    def slug(self) -> str:
        """A file-name-safe summary, e.g. ``b1-float32-nchw-t1-fused``."""
        parts = [f"b{self.batch}", self.dtype, "cl" if self.channels_last else "nchw"]
        if self.threads is not None:
            parts.append(f"t{self.threads}")
        if self.clock == "cpu":
            parts.append("cputime")
        if self.cuda_graphs:
            parts.append("graphs")
        if self.tf32:
            parts.append("tf32")
        parts.append(self.form)
        return "-".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Protocol:
        return cls(**data)


@dataclass(frozen=True)
class Device:
    """A named device: which backend runs it, the paper's protocol for it, and how to recognise it."""

    name: str
    backend: str                     # "cpu" or "cuda" (ROCm builds of torch also answer to "cuda")
    description: str
    protocol: Protocol
    expect: str | None = None        # regex the hardware name must match (None: any hardware of the backend)
    expect_label: str = ""           # what the error message says was expected
    rocm: bool | None = None         # True: needs a ROCm build of torch; False: needs a CUDA build

    def protocol_with(self, *, batch: int | None = None, dtype: str | None = None,
                      channels_last: bool | None = None, threads: int | None = None,
                      form: str | None = None, clock: str | None = None,
                      cuda_graphs: bool | None = None, tf32: bool | None = None) -> Protocol:
        changes = {k: v for k, v in dict(batch=batch, dtype=dtype, channels_last=channels_last, threads=threads,
                                         form=form, clock=clock, cuda_graphs=cuda_graphs, tf32=tf32).items()
                   if v is not None}
        protocol = dataclasses.replace(self.protocol, **changes)
        if self.backend == "cpu" and protocol.dtype == "float16":
            raise DeviceError("--dtype float16 is not a CPU inference dtype; use float32 or bfloat16")
        if self.backend != "cpu" and protocol.clock == "cpu":
            raise DeviceError("--clock cpu measures CPU time; GPU devices are timed with CUDA events (wall)")
        if self.backend == "cpu" and protocol.cuda_graphs:
            raise DeviceError(f"--cuda-graphs needs a GPU device; {self.name} is a CPU (drop the flag, or use "
                              "--no-cuda-graphs)")
        if self.backend == "cpu" and protocol.tf32:
            raise DeviceError(f"--tf32 is a GPU setting (TensorFloat-32 tensor cores); {self.name} is a CPU (drop "
                              "the flag, or use --no-tf32)")
        return protocol


_CPU_LATENCY = Protocol(metric="latency_ms", batch=1, dtype="float32", channels_last=False, threads=1, clock="cpu")
_GPU_THROUGHPUT = Protocol(metric="throughput", batch=256, dtype="float32", channels_last=False)

DEVICES: dict[str, Device] = {
    "epyc": Device("epyc", "cpu", "AMD EPYC CPU, one core, batch 1 latency (the paper's CPU protocol)",
                   _CPU_LATENCY, expect=r"EPYC", expect_label="an AMD EPYC CPU"),
    "cpu": Device("cpu", "cpu", "any CPU, one core, batch 1 latency", _CPU_LATENCY),
    "v100": Device("v100", "cuda", "NVIDIA V100, batch 256 throughput (the paper's GPU protocol)",
                   _GPU_THROUGHPUT, expect=r"V100", expect_label="an NVIDIA V100 GPU", rocm=False),
    "mi250": Device("mi250", "cuda", "AMD Instinct MI250 through a ROCm build of torch, batch 256 throughput",
                    _GPU_THROUGHPUT, expect=r"MI250|gfx90a", expect_label="an AMD Instinct MI250 (ROCm) GPU",
                    rocm=True),
    # The paper does not state a GPU precision; on Hopper the deployment precision is bf16 with channels-last
    # tensors (tensor cores), so that is the h100 default. --dtype float32 gives the paper-style protocol.
    # h200 also times CUDA graph replays (--no-cuda-graphs: eager): its fresh eager validation missed +-10% only
    # on launch-bound networks whose own measurements spread 6.6-84% (docs/BENCHMARKS.md). The shipped h100
    # table predates the option and stays eager.
    "h100": Device("h100", "cuda", "NVIDIA H100, batch 256 throughput, bf16 + channels-last",
                   dataclasses.replace(_GPU_THROUGHPUT, dtype="bfloat16", channels_last=True),
                   expect=r"H100", expect_label="an NVIDIA H100 GPU", rocm=False),
    "h200": Device("h200", "cuda", "NVIDIA H200, batch 256 throughput, bf16 + channels-last, CUDA graphs",
                   dataclasses.replace(_GPU_THROUGHPUT, dtype="bfloat16", channels_last=True, cuda_graphs=True),
                   expect=r"H200", expect_label="an NVIDIA H200 GPU", rocm=False),
    "cuda": Device("cuda", "cuda", "any CUDA/ROCm GPU visible to torch, batch 256 throughput", _GPU_THROUGHPUT),
}


def get_device(name: str) -> Device:
    try:
        return DEVICES[name]
    except KeyError:
        raise DeviceError(f"unknown device {name!r}; choose from {', '.join(DEVICES)}") from None


# --- what is actually here ------------------------------------------------------------------------------------
def cpu_name() -> str:
    """The CPU model string (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def gpu_name() -> str | None:
    """Name of GPU 0 as torch sees it, or None without a usable GPU."""
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    if getattr(torch.version, "hip", None):
        arch = getattr(torch.cuda.get_device_properties(0), "gcnArchName", "")
        if arch and arch not in name:
            name = f"{name} ({arch})"
    return name


def hardware_name(backend: str) -> str | None:
    return cpu_name() if backend == "cpu" else gpu_name()


def software_versions() -> dict[str, Any]:
    import torch

    versions: dict[str, Any] = {"torch": torch.__version__, "python": sys.version.split()[0],
                                "cuda": torch.version.cuda, "rocm": getattr(torch.version, "hip", None),
                                "cudnn": None}
    versions.update(provenance())  # which patsearch measured it
    try:
        if torch.backends.cudnn.is_available():
            versions["cudnn"] = torch.backends.cudnn.version()
    except Exception:  # noqa: BLE001 - a broken cuDNN install should not stop a CPU profile
        pass
    try:
        import timm

        versions["timm"] = timm.__version__
    except ImportError:
        pass
    return versions


def environment(device: Device) -> dict[str, Any]:
    """Provenance of a measurement: the hardware named by the backend, the host's cores, frequency and load, plus
    software versions."""
    from patsearch.host import snapshot

    env = {"hardware": hardware_name(device.backend), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
           "platform": platform.platform(), "host": snapshot()}
    if device.backend != "cpu":
        env["gpu"] = env["hardware"]
    env.update(software_versions())
    return env


def device_for_host(backend: str, hardware: str | None) -> str:
    """The device name to profile ``hardware`` with: the named device that recognises it (``h200``, ``epyc``),
    else the generic one of its backend (``cpu`` / ``cuda``)."""
    generic = "cpu" if backend == "cpu" else "cuda"
    for device in DEVICES.values():
        if device.backend == backend and device.expect and hardware and re.search(device.expect, hardware,
                                                                                   re.IGNORECASE):
            return device.name
    return generic


def check_hardware(device: Device) -> str:
    """Stop with a clear message unless the hardware present is the one ``device`` names; return its name."""
    import torch

    if device.backend == "cpu":
        found = cpu_name()
        if device.expect and not re.search(device.expect, found, re.IGNORECASE):
            raise DeviceError(f"--device {device.name} expects {device.expect_label}, but this host's CPU is "
                              f"{found!r}; use --device cpu to profile this CPU")
        return found
    found = gpu_name()
    if found is None:
        build = (f"ROCm {torch.version.hip}" if getattr(torch.version, "hip", None) else
                 f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU only")
        raise DeviceError(f"--device {device.name} expects {device.expect_label or 'a GPU'}, but torch "
                          f"{torch.__version__} ({build}) sees no GPU on this host (CPU: {cpu_name()}); "
                          f"use --device cpu, or run on the {device.name} host")
    is_rocm = bool(getattr(torch.version, "hip", None))
    if device.rocm is True and not is_rocm:
        raise DeviceError(f"--device {device.name} needs a ROCm build of torch, but this torch "
                          f"({torch.__version__}) is a CUDA build and found {found!r}")
    if device.expect and not re.search(device.expect, found, re.IGNORECASE):
        raise DeviceError(f"--device {device.name} expects {device.expect_label}, but found {found!r}; "
                          f"use --device cuda for any GPU, or run on the {device.name} host")
    return found

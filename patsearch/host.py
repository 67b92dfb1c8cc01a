"""This host's CPU as a measurement sees it: cores, frequency, load, and how much of it other processes take.

The profiler records a snapshot in every table's provenance and watches other processes' load while it times
(on shared VMs that load, not the predictor, bounded the CPU tables' accuracy); the search sizes the proxy's
intra-op threads from the cores actually free, since threads beyond them oversubscribe a shared host.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import psutil

# Other processes may use up to this share of the cores a measurement leaves spare before the host counts as busy:
# on 2 cores timing one thread, half a core of other work; on 16 cores, 7.5.
BUSY_SHARE = 0.5


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's cpuset), else all logical CPUs."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, psutil.cpu_count() or 1)


def cpu_freq_mhz() -> dict[str, float] | None:
    """Current and maximum CPU frequency in MHz (None where the OS does not say, as on some VMs)."""
    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError, AttributeError):
        return None
    if freq is None or not freq.current:
        return None
    return {"current": round(float(freq.current), 1), "max": round(float(freq.max), 1) if freq.max else None}


def load_average() -> tuple[float, float, float] | None:
    """Run-queue length averaged over 1, 5 and 15 minutes (includes this process while it runs)."""
    try:
        return tuple(round(float(v), 2) for v in psutil.getloadavg())  # type: ignore[return-value]
    except (OSError, AttributeError):
        return None


def snapshot() -> dict[str, Any]:
    """Cores, frequency and load average now: the host part of a table's provenance."""
    return {"cores": usable_cores(), "logical_cpus": psutil.cpu_count(), "physical_cores":
            psutil.cpu_count(logical=False), "cpu_freq_mhz": cpu_freq_mhz(), "load_average": load_average()}


def busy(others_cores: float, *, cores: int, needed: int = 1) -> bool:
    """Whether other processes take more than :data:`BUSY_SHARE` of the cores a measurement of ``needed`` threads
    leaves spare (with none spare: more than a quarter core)."""
    spare = max(cores - needed, 0.5)
    return others_cores > BUSY_SHARE * spare


@dataclass(frozen=True)
class Load:
    """Other processes' CPU use over a window, in cores (1.0 = one core busy all the time)."""

    seconds: float
    others_cores: float   # every CPU's busy time, hypervisor steal included, less this process's own
    own_cores: float
    cores: int

    def busy(self, needed: int = 1) -> bool:
        return busy(self.others_cores, cores=self.cores, needed=needed)

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


def _busy_seconds() -> float:
    t = psutil.cpu_times()
    # idle and iowait are the only times no one ran; steal is other VMs on this host's physical cores
    return sum(float(getattr(t, f, 0.0)) for f in ("user", "nice", "system", "irq", "softirq", "steal"))


def _own_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


class LoadMonitor:
    """Measures other processes' load over a ``with`` block: ``with LoadMonitor() as m: ...; m.load.others_cores``.

    Whole-system CPU time less this process's own over the same wall time, so the measurement's own threads are
    not counted as load. Reading needs a window of about 0.2 s or more (the OS counts in 10 ms ticks).
    """

    def __init__(self) -> None:
        self.load: Load | None = None
        self._proc = psutil.Process()

    def __enter__(self) -> LoadMonitor:
        self._start = (time.perf_counter(), _busy_seconds(), _own_seconds(self._proc))
        return self

    def __exit__(self, *exc: Any) -> None:
        wall0, busy0, own0 = self._start
        wall = max(time.perf_counter() - wall0, 1e-6)
        own = max(_own_seconds(self._proc) - own0, 0.0)
        others = max(_busy_seconds() - busy0 - own, 0.0)
        self.load = Load(seconds=wall, others_cores=others / wall, own_cores=own / wall, cores=usable_cores())


def current_load(window_s: float = 0.5) -> Load:
    """Other processes' load over the next ``window_s`` seconds (this process idle meanwhile)."""
    with LoadMonitor() as monitor:
        time.sleep(window_s)
    assert monitor.load is not None
    return monitor.load


def wait_until_quiet(timeout_s: float, *, needed: int = 1, window_s: float = 1.0) -> Load | None:
    """Watch the load in ``window_s`` steps until other processes leave the host not :func:`busy` or
    ``timeout_s`` has passed; the last load seen (None with no time to watch)."""
    load = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        load = current_load(min(window_s, max(deadline - time.monotonic(), 0.05)))
        if not load.busy(needed):
            break
    return load


def free_cores(window_s: float = 0.5, *, load: Load | None = None) -> int:
    """Cores other processes leave free (at least 1): the cores to give this process's intra-op threads."""
    load = load or current_load(window_s)
    return max(1, min(load.cores, int(load.cores - load.others_cores + 0.5)))


def describe(load: Load) -> str:
    """``other processes used 1.8 of 2 cores; load average 5.2``: the figure a busy-host warning gives."""
    avg = load_average()
    return (f"other processes used {load.others_cores:.1f} of {load.cores} cores"
            + (f"; load average {avg[0]:g}" if avg else ""))

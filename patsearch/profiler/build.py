"""Building a lookup table: measure every layer of a space that the table lacks, in seeded random order, saving as
it goes (an interrupted build keeps what it measured, and a rebuild measures only what is missing).

The table format and lookup are :mod:`patsearch.profiler.table`; how one layer is timed is
:mod:`patsearch.profiler.timing`; :mod:`patsearch.profiler.run` drives a whole ``patsearch profile``.
"""
from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from patsearch import host
from patsearch.models.forms import build_form
from patsearch.profiler.devices import Device, Protocol, environment
from patsearch.profiler.progress import MeasureProgress
from patsearch.profiler.table import Profile, _now

logger = logging.getLogger(__name__)

LayerFactory = Callable[[Any, str], Any]


def default_layer_factory(spec: Any, form: str) -> Any:
    """One layer of the PATNet family, in a form of :mod:`patsearch.models.forms` (deployment or trained)."""
    from patsearch.models import build_layer

    return build_form(build_layer(spec), form)


def open_for_build(path: Path, device: Device, protocol: Protocol, *, fresh: bool = False,
                   command: str | None = None) -> Profile:
    """The profile to add measurements to: the existing file (checked compatible) or a new one."""
    if path.exists() and not fresh:
        profile = Profile.load(path)
        if profile.provenance.get("adapted"):  # scaled copies of another device's entries: not measurements here
            return Profile.new(device, protocol, command=command, path=path)
        profile.check_compatible(device, protocol, environment(device))
        profile.provenance.setdefault("history", []).append(
            {"date": _now(), "command": command if command is not None else " ".join(sys.argv)})
        return profile
    return Profile.new(device, protocol, command=command, path=path)


def build_table(profile: Profile, layers: Mapping[str, tuple[Any, tuple[int, int, int]]], device: Device, *,
                layer_factory: LayerFactory | None = None, budget: Any = None, progress: bool = True,
                save_every_s: float = 2.0, space_info: Mapping[str, Any] | None = None,
                order_seed: int = 0, on_entry: Callable[[str], None] | None = None, passes: int = 1) -> Profile:
    """Measure every layer in ``layers`` that ``profile`` lacks, saving as it goes.

    ``layers`` maps keys to ``(LayerSpec, (C, H, W))`` (``SearchSpace.layer_inputs()``). Layers are measured in
    a seeded random order so that a burst of background load spreads over layer kinds instead of biasing one.
    ``passes`` > 1 measures every layer that many times, in separate passes over the table (minutes apart, so
    slow drifts of background load average out), and keeps the mean of the passes' statistics.
    """
    import random

    from patsearch.profiler.timing import (
        LAYER_BUDGET_CPU,
        LAYER_BUDGET_GPU,
        configure,
        prepare,
        time_graph,
        time_module,
    )

    protocol = profile.protocol
    factory = layer_factory or default_layer_factory
    budget = budget or (LAYER_BUDGET_CPU if device.backend == "cpu" else LAYER_BUDGET_GPU)
    gpu = device.backend != "cpu"

    def done_passes(entry: dict[str, Any] | None) -> int:
        return 0 if entry is None else len(entry.get("passes", [None]))

    def needs(key: str) -> bool:
        entry = profile.entries.get(key)
        return (done_passes(entry) < passes
                or (gpu and "graph_ms" not in entry and not entry.get("graph_failed")))

    # Pass by pass, each in its own shuffled order: a key that lacks two passes is listed twice.
    missing: list[str] = []
    for pass_index in range(passes):
        keys = [k for k in layers if done_passes(profile.entries.get(k)) <= pass_index]
        random.Random(order_seed + pass_index).shuffle(keys)
        missing += keys
    listed = set(missing)
    missing += [k for k in layers if k not in listed and needs(k)]  # GPU entries that lack only a graph time
    if space_info:
        profile.provenance.setdefault("spaces", {})[space_info["name"]] = dict(space_info)
    configure(device, protocol)
    started = time.perf_counter()
    last_save = started
    build_s = float(profile.provenance.get("build_seconds", 0.0))
    total = max(len(layers) * passes, len(missing))
    bar = MeasureProgress(progress, total=total, done=total - len(missing),
                    description=f"profiling {profile.device}")
    monitor = host.LoadMonitor()
    try:
        with bar as advance, monitor:
            for key in missing:
                spec, shape = layers[key]
                module, x = prepare(factory(spec, protocol.form), shape, device, protocol)
                entry = profile.entries.get(key)
                if done_passes(entry) < passes:
                    # under the cuda_graphs protocol a layer's time is its graph replay, the only time the
                    # predictor then uses: no eager timing; a layer that cannot be captured is timed eagerly, marked
                    graph = (time_graph(module, x, budget=budget)
                             if protocol.cuda_graphs and not (entry or {}).get("graph_failed") else None)
                    timing = graph or time_module(module, x, gpu=gpu, budget=budget, clock=protocol.clock)
                    entry = _add_pass(entry, timing.to_dict(), shape)
                    if graph is not None:
                        entry.update(graph_ms=entry["ms"], graph_p10=entry["p10"])
                    elif protocol.cuda_graphs:
                        entry["graph_failed"] = True
                if gpu and "graph_ms" not in entry and not entry.get("graph_failed"):
                    graph = time_graph(module, x, budget=budget)
                    if graph is None:
                        entry["graph_failed"] = True
                    else:
                        entry.update(graph_ms=round(graph.median_ms, 6), graph_p10=round(graph.p10_ms, 6))
                del module, x
                profile.entries[key] = entry
                advance()
                if on_entry is not None:
                    on_entry(key)
                now = time.perf_counter()
                if now - last_save >= save_every_s:
                    profile.provenance["build_seconds"] = round(build_s + now - started, 2)
                    profile.save()
                    last_save = now
    finally:
        if missing:
            profile.provenance["build_seconds"] = round(build_s + time.perf_counter() - started, 2)
            if monitor.load is not None:  # other processes' mean load over this run's layer timings
                needed = 1 if gpu else (protocol.threads or monitor.load.cores)
                profile.provenance["host_load_layers"] = {**monitor.load.to_dict(), "threads": needed,
                                                          "busy": monitor.load.busy(needed)}
                if monitor.load.busy(needed):
                    logger.warning(f"the layers of {profile.path.name if profile.path else profile.device} were "
                                   f"timed on a busy host: on average {host.describe(monitor.load)}, so their times "
                                   f"may be off; measure again with `patsearch profile --device {profile.device} "
                                   f"--fresh` when the host is quieter (see `uptime`)")
            profile.save()
    return profile


def _add_pass(entry: dict[str, Any] | None, timing: dict[str, Any], shape: Sequence[int]) -> dict[str, Any]:
    """A table entry with one more measurement pass; ms/p10/p90 are the means over its passes, min_p10 the
    smallest p10 of any pass."""
    if entry is None:
        return {**timing, "input": list(shape)}
    previous = entry.get("passes") or [{k: entry[k] for k in ("ms", "p10", "p90", "n", "inner")}]
    all_passes = previous + [timing]
    merged = dict(entry)
    for stat in ("ms", "p10", "p90"):
        merged[stat] = round(sum(p[stat] for p in all_passes) / len(all_passes), 6)
    merged["n"] = sum(p["n"] for p in all_passes)
    # The least-disturbed pass: on a shared host interference only ever adds time.
    merged["min_p10"] = round(min(p["p10"] for p in all_passes), 6)
    merged["passes"] = all_passes
    return merged

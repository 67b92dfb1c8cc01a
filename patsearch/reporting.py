"""Summaries of architectures (params, FLOPs, structure) as rich tables for the `models` and `info` commands."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from rich.console import Group
from rich.table import Table

from patsearch.arch import VARIANTS, ArchConfig, resolve_arch
from patsearch.paper import ABLATIONS, TABLE4, TABLE6

T = TypeVar("T")
# ``track(items, description)`` wraps the rows a table counts (e.g. rich.progress.track); default: no progress
Track = Callable[[Iterable[T], str], Iterable[T]]


def _no_progress(items: Iterable[T], description: str) -> Iterable[T]:
    return items


@dataclass(frozen=True)
class ArchSummary:
    arch: ArchConfig
    resolution: int
    params: int
    flops_trained: int
    flops_table6: int
    flops_fused: int


def summarize(arch: Any, resolution: int = 224, num_classes: int | None = None) -> ArchSummary:
    """Parameter and FLOP counts of one architecture (trained, Table 6 convention, and deployment form)."""
    from patsearch.arch import check_resolution

    # Validate before the heavy imports so that bad input fails fast.
    check_resolution((resolution, resolution))
    cfg = resolve_arch(arch, **({"num_classes": num_classes} if num_classes else {}))
    from patsearch.counting import count_flops, count_params
    from patsearch.models import create_model

    model = create_model(cfg)
    return ArchSummary(cfg, resolution, count_params(model), count_flops(model, resolution, form="trained"),
                       count_flops(model, resolution, form="table6"), count_flops(model, resolution, form="fused"))


def _m(n: int) -> str:
    return f"{n / 1e6:.3f}M"


def _g(n: int) -> str:
    return f"{n / 1e9:.3f}G"


def ablations_table(resolution: int = 224, track: Track = _no_progress) -> Table:
    """PATNet-T2 and the paper's ablations of it (Tables 3, 4, 5, 10), next to the paper's figures."""
    table = Table(title=f"PATNet-T2 ablations at {resolution}x{resolution} (fvcore, 1 MAC = 1 FLOP)")
    for col in ("row", "params", "FLOPs trained", "FLOPs Table 6 form", "FLOPs fused", "paper", "deviation"):
        table.add_column(col, justify="left" if col == "row" else "right")
    t2 = VARIANTS["patnet_t2"]
    rows = [(f"Table 4: {label}", changes, p, f) for label, changes, p, f in TABLE4] + list(ABLATIONS)
    for label, changes, paper_p, paper_f in track(rows, "counting ablations"):
        s = summarize(t2.replace(**changes), resolution)
        paper = "-" if paper_p is None else f"{paper_p}M / {paper_f}G"
        dev = "" if paper_p is None or resolution != 224 else (
            f"{(s.params / 1e6 / paper_p - 1) * 100:+.1f}% / {(s.flops_table6 / 1e9 / paper_f - 1) * 100:+.1f}%")
        table.add_row(label, _m(s.params), _g(s.flops_trained), _g(s.flops_table6), _g(s.flops_fused), paper, dev)
    return table


def variants_table(resolution: int = 224, track: Track = _no_progress) -> Table:
    table = Table(title=f"PATNet variants at {resolution}x{resolution} (fvcore, 1 MAC = 1 FLOP)")
    for col in ("variant", "params", "FLOPs trained", "FLOPs Table 6 form", "FLOPs fused", "paper (Table 6)",
                "depths", "widths", "act"):
        table.add_column(col, justify="left" if col in ("variant", "depths", "widths", "act") else "right")
    for name in track(list(VARIANTS), "counting variants"):
        s = summarize(name, resolution)
        paper = TABLE6[name]
        table.add_row(name, _m(s.params), _g(s.flops_trained), _g(s.flops_table6), _g(s.flops_fused),
                      f"{paper[0]}M / {paper[1]}G", "-".join(map(str, s.arch.depths)),
                      "-".join(map(str, s.arch.widths)), s.arch.act)
    return table


def arch_report(arch: Any, resolution: int = 224, num_classes: int | None = None) -> Group:
    """Counts of one architecture with a per-stage breakdown and thop's MACs as a cross-check."""
    s = summarize(arch, resolution, num_classes)
    from patsearch.counting import count_macs_thop, flops_by_stage, params_by_stage
    from patsearch.models import create_model

    model = create_model(s.arch)
    title = s.arch.name or "architecture"
    totals = Table(title=f"{title} at {resolution}x{resolution}")
    totals.add_column("quantity")
    totals.add_column("value", justify="right")
    totals.add_row("parameters", f"{s.params:,} ({_m(s.params)})")
    totals.add_row("FLOPs, trained form (fvcore)", _g(s.flops_trained))
    totals.add_row("FLOPs, PAT_sp merged (Table 6 convention)", _g(s.flops_table6))
    totals.add_row("FLOPs, deployment form", _g(s.flops_fused))
    totals.add_row("MACs, trained form (thop cross-check)", _g(count_macs_thop(model, resolution)))
    if s.arch.name in TABLE6:
        totals.add_row("paper (Table 6)", f"{TABLE6[s.arch.name][0]}M / {TABLE6[s.arch.name][1]}G")
    stages = Table(title="per stage (merging layer counted with the stage it feeds)")
    for col in ("part", "depth", "width", "mixer", "spatial", "params", "FLOPs (Table 6 form)"):
        stages.add_column(col, justify="right" if col in ("params", "FLOPs (Table 6 form)") else "left")
    flops = flops_by_stage(model, resolution, form="table6")
    params = params_by_stage(model)
    stages.add_row("stem", "", str(s.arch.embed_dim), "", "", _m(params["stem"]), _g(flops["stem"]))
    for i in range(len(s.arch.depths)):
        key = f"stage{i + 1}"
        stages.add_row(key, str(s.arch.depths[i]), str(s.arch.widths[i]), s.arch.mixers[i], s.arch.spatial[i],
                       _m(params[key]), _g(flops[key]))
    stages.add_row("head", "", str(s.arch.head_width), "", "", _m(params["head"]), _g(flops["head"]))
    return Group(totals, stages)

"""A search's winners as architecture files: ``best.yaml`` (the best network), ``ranked/rank<k>.yaml`` (the best few,
in the summary's order) and ``front.yaml`` (the Pareto front).

``runs/<study>/best.yaml`` wraps the winning architecture description (``arch:``, which ``patsearch train --arch``
and :meth:`ArchConfig.load` accept) with how it was found (``search:``); ``patsearch bench --arch best.yaml`` adds
what it measured (:func:`record_measured`). Every file is written to a temp name and renamed.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from patsearch.arch import ArchConfig
from patsearch.io import atomic_write_text
from patsearch.search.results import ConstraintInfo, Row


def write_best_yaml(path: str | os.PathLike, row: Row, *, study_name: str,
                    constraints: Sequence[ConstraintInfo]) -> Path:
    arch = ArchConfig.from_dict(row.arch or {})
    if not arch.name:
        arch = arch.replace(name=f"{study_name}-trial{row.number}")
    doc = {
        "arch": arch.to_dict(),
        "search": {
            "study": study_name,
            "trial": row.number,
            "resolution": row.resolution,
            "proxy_top1": None if row.top1 is None else round(float(row.top1), 4),
            **({"proxy_seed_scores": [round(float(v), 4) for v in row.scores],
                "proxy_mean_top1": round(float(row.score), 4)} if row.confirmed else {}),
            **({"rung_scores": {int(k): [round(float(v), 4) for v in vs] for k, vs in sorted(row.rung_scores.items())}}
               if row.rung_scores else {}),
            "predicted": {k: round(v, 4) for k, v in row.predicted.items()},
            "constraints": [c.describe() for c in constraints],
            "baseline": row.baseline,
            "params": row.params,
            "flops": row.flops,
        },
    }
    return atomic_write_text(path, yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))


RANKED_DIR = "ranked"


def write_ranked_yaml(out_dir: str | os.PathLike, ranked: Sequence[Row], *, study_name: str,
                      constraints: Sequence[ConstraintInfo], top: int = 3) -> list[Path]:
    """The first ``top`` of ``ranked`` (best first) as ``<out_dir>/ranked/rank<k>.yaml``, each like ``best.yaml``:
    the runners-up a regret check trains at full length beside the winner. Files of ranks no longer held go."""
    folder = Path(out_dir) / RANKED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    written = [write_best_yaml(folder / f"rank{k}.yaml", row, study_name=study_name, constraints=constraints)
               for k, row in enumerate(ranked[:top], 1)]
    for stale in folder.glob("rank*.yaml"):
        if stale not in written:
            stale.unlink()
    return written


def record_measured(path: str | os.PathLike, result: Any) -> dict[str, Any] | None:
    """Add what ``patsearch bench --arch best.yaml`` measured to that file's ``search:`` block (``measured``, keyed
    by device and protocol, next to the table's ``predicted``); None, and the file untouched, when it is a plain
    architecture file. ``result`` is a :class:`~patsearch.profiler.bench.BenchResult`."""
    p = Path(path)
    doc = yaml.safe_load(p.read_text())
    if not isinstance(doc, dict) or not isinstance(doc.get("search"), dict):
        return None
    entry = {"metric": result.metric, "resolution": result.resolution, "hardware": result.provenance.get("hardware"),
             "date": result.provenance.get("date"),
             **{row.form: None if row.value is None else round(float(row.value), 3) for row in result.rows}}
    measured = dict(doc["search"].get("measured") or {})
    measured[f"{result.device} ({result.protocol})"] = entry
    doc["search"]["measured"] = measured
    atomic_write_text(p, yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))
    return entry


def write_front_yaml(path: str | os.PathLike, front: Sequence[Row], *, study_name: str) -> Path:
    doc = {"study": study_name, "front": [
        {"trial": r.number, "proxy_top1": round(float(r.top1), 4), "predicted": r.predicted,
         "resolution": r.resolution, "baseline": r.baseline, "arch": r.arch} for r in front]}
    return atomic_write_text(path, yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))

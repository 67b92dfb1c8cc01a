"""A study's report files (best.yaml, ranked/, pareto.yaml, summary.md/.json, plots), the summary of an existing
study printed again (``patsearch search --show``), and the validation images each reported score is measured on."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patsearch.errors import UserError
from patsearch.search.best_yaml import write_best_yaml, write_front_yaml, write_ranked_yaml
from patsearch.search.plots import write_plots
from patsearch.search.proxy import ProxySettings, balanced_subset
from patsearch.search.redact import install_log_redaction
from patsearch.search.results import best_row, constraints_of, find_fidelity, finished, pareto_front, rows
from patsearch.search.storage import parse_storage
from patsearch.search.study import open_storage
from patsearch.search.summary import comparison, rung_table, summary_notes, summary_table, write_summary


@dataclass
class Written:
    """What :func:`write_results` wrote: best.yaml (None when no feasible candidate finished), every file, notes."""

    best_yaml: Path | None
    files: list[Path]
    notes: list[str]


def val_images(proxy: ProxySettings) -> int | None:
    """Validation images each proxy score is measured on (None when the folder cannot be read here)."""
    if proxy.data is None:
        return proxy.synthetic_sizes()[1]
    from patsearch.data.folder import scan_split, split_dir

    try:
        root = Path(proxy.data).expanduser()
        classes, samples = scan_split(split_dir(root, "train"))
        _, val = scan_split(split_dir(root, "val"), classes)
    except Exception:  # the trainer reports a bad folder with its own message
        return None
    if proxy.holdout is not None:  # held out of the training split
        return len(balanced_subset(samples, len(classes), proxy.holdout))
    return len(balanced_subset(val, len(classes), proxy.val_samples))  # what the class-balanced subset keeps


def write_results(study, out_dir: str | os.PathLike, *, plots: bool = True, fidelity=None) -> Written:
    """best.yaml and ranked/rank<k>.yaml (+ pareto.yaml for Pareto studies), summary.md / summary.json and the PNG
    plots."""
    out_dir = Path(out_dir)
    cons = constraints_of(study)
    rs = rows(study)
    files: list[Path] = []
    notes: list[str] = []
    best = best_row(rs)
    best_yaml = None
    if best is not None:
        best_yaml = write_best_yaml(out_dir / "best.yaml", best, study_name=study.study_name, constraints=cons)
        files.append(best_yaml)
        files += write_ranked_yaml(out_dir, [r for r in finished(rs) if r.duplicate_of is None],
                                   study_name=study.study_name, constraints=cons)
    else:
        notes.append("no feasible candidate finished: best.yaml not written")
    if len(study.directions) > 1 and cons:
        front = pareto_front(rs, cons[0].key, cons[0].kind)
        files.append(write_front_yaml(out_dir / "pareto.yaml", front, study_name=study.study_name))
    files += write_summary(study, out_dir, fidelity)
    if plots and finished(rs):
        written, plot_notes = write_plots(study, out_dir)
        files += written
        notes += plot_notes
    return Written(best_yaml, files, notes)


def show_study(study_name: str, *, storage: str | None = None, runs_dir: str = "runs", console=None,
               write: bool = False, fidelity: str | None = None) -> Any:
    """Print the summary of an existing study (and optionally rewrite its result files)."""
    import optuna
    from rich.console import Console

    console = console or Console()
    spec = parse_storage(storage, study_name, runs_dir)
    install_log_redaction(spec.url)
    if spec.kind == "sqlite" and spec.path is not None and not spec.path.exists():
        raise UserError(f"no study {study_name!r} under {runs_dir}/ ({spec.display} does not exist); "
                        "pass --storage for a study stored elsewhere")
    storage_obj = open_storage(spec)
    try:
        loaded = optuna.load_study(study_name=study_name, storage=storage_obj)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage_obj, include_best_trial=False)]
        raise UserError(f"no study {study_name!r} in {spec.display}; studies there: "
                        f"{', '.join(names) or 'none'}") from None
    found = find_fidelity(loaded, fidelity, runs_dir)
    console.print(summary_table(loaded, fidelity=found))
    if (loaded.user_attrs.get("patsearch_config") or {}).get("rungs"):
        console.print(rung_table(loaded))
    console.print(comparison(loaded, found))
    for line in summary_notes(loaded, found):
        console.print(line, style="yellow" if line.startswith("warning") else None, markup=False)
    if write:
        result = write_results(loaded, Path(runs_dir) / study_name, fidelity=found)
        for path in result.files:
            console.print(f"wrote {path}")
    return loaded

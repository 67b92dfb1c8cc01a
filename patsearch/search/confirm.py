"""Confirming a search's leaders on more proxy seeds (``patsearch search --confirm-top K --confirm-seeds S``).

The best of many single-seed proxy scores is biased upward: on CIFAR-10 one proxy score has a seed-to-seed std of
0.3-0.7 points (docs/BENCHMARKS.md), about the size of the gaps between the leaders, so the top trial is partly
the luckiest. After the study, the K best searched networks (by their single score) and every finished baseline
are trained again with S-1 more seeds (``proxy seed + 1`` ...), and the summary ranks them by their mean over all
S seeds, with the standard error of that mean (:class:`~patsearch.search.results.Noise`). Each finished run is
stored at once in the study's user attribute ``confirm``, so a rerun of the command continues where it stopped.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from patsearch.arch import ArchConfig
from patsearch.search.objective import ProxyDiverged
from patsearch.search.results import CONFIRM_ATTR, Row, finished, rows

logger = logging.getLogger(__name__)


def confirmation_rows(study, top: int) -> list[Row]:
    """The rows to confirm: the ``top`` best searched networks by their single proxy score, then every finished
    baseline (so the comparison with the hand-designed networks is mean against mean)."""
    done = finished(rows(study))
    searched = sorted((r for r in done if not r.baseline and r.duplicate_of is None), key=lambda r: (-r.top1, r.number))
    baselines = sorted((r for r in done if r.baseline), key=lambda r: r.number)
    return searched[:top] + baselines


def pending_runs(study, top: int, seeds: int, base_seed: int) -> list[tuple[Row, int]]:
    """(row, seed) pairs still to train: seeds ``base_seed + 1`` .. ``base_seed + seeds - 1`` of each row."""
    stored = study.user_attrs.get(CONFIRM_ATTR) or {}
    return [(r, seed) for r in confirmation_rows(study, top) for seed in range(base_seed + 1, base_seed + seeds)
            if str(seed) not in (stored.get(str(r.number)) or {})]


def run_confirmation(study, run_proxy: Callable[..., float], *, top: int, seeds: int, base_seed: int,
                     chance: float, console: Any = None) -> int:
    """Train the pending confirmation runs one after another; returns how many ran this call.

    ``run_proxy(arch, seed=...)`` is the search's proxy runner. A run that diverges scores ``chance``, as a
    candidate that learnt nothing.
    """
    from patsearch.progress import progress_bar

    todo = pending_runs(study, top, seeds, base_seed)
    if not todo:
        return 0
    with progress_bar(console=console, transient=False) as progress:
        task = progress.add_task(f"confirming {len({r.number for r, _ in todo})} networks on more seeds",
                                 total=len(todo))
        for row, seed in todo:
            arch = ArchConfig.from_dict(row.arch or {})
            try:
                top1 = float(run_proxy(arch, seed=seed))
            except ProxyDiverged:
                top1 = chance
            stored = dict(study.user_attrs.get(CONFIRM_ATTR) or {})
            stored[str(row.number)] = {**(stored.get(str(row.number)) or {}), str(seed): top1}
            study.set_user_attr(CONFIRM_ATTR, stored)  # after every run: a killed search resumes from here
            progress.update(task, advance=1)
            if console is not None:
                label = row.baseline or f"trial {row.number}"
                logger.info(f"confirm {label} seed {seed}: proxy top-1 {100 * top1:.2f}%")
    return len(todo)


__all__ = ["confirmation_rows", "pending_runs", "run_confirmation"]

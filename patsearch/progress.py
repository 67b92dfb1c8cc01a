"""The one progress bar of long jobs (search trials, proxy-check trainings, profiler layers, training steps).

Every long job shows the same columns: what it does, a bar, done/total, elapsed time and the ETA; a job may add
columns of its own (training shows loss and img/s). Imported lazily by its callers, so `import patsearch` stays
free of rich's progress machinery.
"""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from patsearch.log import progress_shown

# rich's ETA follows the pace of the last 30 s by default; work that finishes in bursts (trials of side-by-side
# workers) would show an ETA that swings with each burst, so such bars take the pace over the whole run.
WHOLE_RUN_S = 7 * 24 * 3600.0


def progress_bar(*extra_columns: ProgressColumn, console: Console | None = None, bursty: bool = False,
                 **kwargs: Any) -> Progress:
    """A rich Progress with the standard columns; ``extra_columns`` go between the count and the times. Hidden
    when the application turned notes off (``patsearch --quiet``). ``bursty``: the ETA from the pace over the whole
    run rather than the last 30 s."""
    kwargs.setdefault("disable", not progress_shown())
    if bursty:
        kwargs.setdefault("speed_estimate_period", WHOLE_RUN_S)
    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    *extra_columns, TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=console, **kwargs)

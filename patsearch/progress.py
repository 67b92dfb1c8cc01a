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


def progress_bar(*extra_columns: ProgressColumn, console: Console | None = None, **kwargs: Any) -> Progress:
    """A rich Progress with the standard columns; ``extra_columns`` go between the count and the times. Hidden
    when the application turned notes off (``patsearch --quiet``)."""
    kwargs.setdefault("disable", not progress_shown())
    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    *extra_columns, TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=console, **kwargs)

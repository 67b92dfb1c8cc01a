"""The one progress bar: standard columns (description, bar, done/total, elapsed, ETA) and a job's own columns."""
import io

from rich.console import Console
from rich.progress import TextColumn

from patsearch.progress import progress_bar


def render(*extra):
    out = io.StringIO()
    bar = progress_bar(*extra, console=Console(file=out, force_terminal=True, width=120))
    with bar:
        task = bar.add_task("layers", total=10, info="loss 1.23")
        bar.advance(task, 3)
    return out.getvalue()


def test_standard_columns():
    text = render()
    assert "layers" in text and "3/10" in text and "ETA" in text


def test_extra_columns_sit_between_the_count_and_the_times():
    text = render(TextColumn("{task.fields[info]}"))
    last = text[text.rindex("3/10"):]  # the final refresh of the line
    assert 0 < last.index("loss 1.23") < last.index("ETA")

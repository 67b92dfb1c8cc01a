"""The progress of the profiler's measuring loops (patsearch.profiler.progress) off a terminal: a plain line at
every tenth and at the end, with what is done of the total; nothing when disabled."""
import io
import logging

from patsearch.profiler.progress import MeasureProgress


def test_plain_lines_at_every_tenth_and_the_end(caplog, monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal: plain lines instead of a live bar
    caplog.set_level(logging.INFO, logger="patsearch")
    with MeasureProgress(True, total=20, done=4, description="profiling cpu") as advance:
        for _ in range(16):
            advance()
    done = [int(m.split(": ")[1].split("/")[0]) for m in caplog.messages]
    assert done == [5, 6, 8, 10, 12, 14, 16, 18, 20]  # a resumed build counts on from what it had
    assert all(m.startswith("profiling cpu: ") and m.split()[2].endswith("/20") for m in caplog.messages)


def test_disabled_progress_says_nothing(caplog):
    caplog.set_level(logging.INFO, logger="patsearch")
    with MeasureProgress(False, total=3) as advance:
        for _ in range(3):
            advance()
    assert caplog.messages == []

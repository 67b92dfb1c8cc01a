"""Opening one SQLite study file from several processes at once, and the WAL switch's retry."""
from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from patsearch.search import study as study_mod
from patsearch.search.storage import StorageError, parse_storage
from patsearch.search.study import open_storage


def _open_after_barrier(url: str, runs: str, barrier, errors) -> None:
    barrier.wait()  # every process reaches open_storage together: the race CI hit
    try:
        open_storage(parse_storage(url, "s", Path(runs)))
    except BaseException as exc:  # report to the parent instead of dying silently
        errors.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_processes_opening_a_new_file_at_once_all_succeed(tmp_path):
    url = f"sqlite:///{tmp_path}/race.db"
    ctx = multiprocessing.get_context("spawn")
    n = 6
    barrier, errors = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_open_after_barrier, args=(url, str(tmp_path / "runs"), barrier, errors))
             for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    reported = []
    while not errors.empty():
        reported.append(errors.get())
    assert not reported, reported
    assert [p.exitcode for p in procs] == [0] * n
    with sqlite3.connect(tmp_path / "race.db") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


class _LockedConnection:
    """A sqlite3 connection whose WAL switch answers 'database is locked' while the shared counter is positive."""

    def __init__(self, real: sqlite3.Connection, refusals: list[int]) -> None:
        self._real, self._refusals = real, refusals

    def execute(self, sql: str):
        if sql == "PRAGMA journal_mode=WAL" and self._refusals[0] > 0:
            self._refusals[0] -= 1
            raise sqlite3.OperationalError("database is locked")
        return self._real.execute(sql)

    def close(self) -> None:
        self._real.close()


def _refusing_connect(monkeypatch, refusals: int) -> list[int]:
    left = [refusals]
    real_connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: _LockedConnection(real_connect(*a, **k), left))
    monkeypatch.setattr(study_mod.time, "sleep", lambda s: None)
    return left


def test_wal_switch_retries_a_busy_answer(tmp_path, monkeypatch):
    left = _refusing_connect(monkeypatch, refusals=3)
    study_mod._sqlite_wal(tmp_path / "s.db")
    assert left == [0]
    monkeypatch.undo()
    with sqlite3.connect(tmp_path / "s.db") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_wal_switch_gives_up_with_one_line(tmp_path, monkeypatch):
    _refusing_connect(monkeypatch, refusals=10)
    with pytest.raises(StorageError) as info:
        study_mod._sqlite_wal(tmp_path / "s.db", attempts=4)
    message = str(info.value)
    assert "\n" not in message and "s.db" in message and "stayed locked" in message


def test_wal_switch_passes_on_other_errors(tmp_path):
    (tmp_path / "not-a-db").write_bytes(b"x" * 4096)
    with pytest.raises(sqlite3.DatabaseError):
        study_mod._sqlite_wal(tmp_path / "not-a-db")


@pytest.mark.parametrize("scheme", ["sqlite", "journal"])
def test_a_file_storage_in_an_unwritable_place_is_one_line_naming_the_flag(tmp_path, scheme):
    from patsearch.errors import UserError

    (tmp_path / "f").write_text("a file, not a folder")
    spec = parse_storage(f"{scheme}:///{tmp_path}/f/study.db", "s")
    with pytest.raises(UserError, match=rf"cannot write --storage .*f/study.db: .*f is a file, not a folder; pass "
                                        rf"a path in a writable folder, e.g. --storage {scheme}:///runs/study.db"):
        open_storage(spec)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # no lock file or folder left

"""Where a study lives: ``--storage`` (or its absence) parsed into a :class:`StorageSpec`, an embedded SQLite
file (the default, under ``runs/``), a journal file (``journal:///path`` or a path ending in ``.log``/``.journal``)
or any SQLAlchemy URL (``postgresql://``, ``mysql://``), and the heartbeat settings every storage gets.

:func:`patsearch.search.study.open_storage` opens one.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from patsearch.errors import UserError
from patsearch.search.redact import redact_url, scrub

DEFAULT_HEARTBEAT_INTERVAL = 10  # seconds between heartbeats of a running trial
GRACE_FACTOR = 3  # a trial is stale after this many missed heartbeats
MAX_RETRY = 3  # how often a trial whose worker died is re-run before it is given up


class StorageError(UserError):
    """A study storage could not be opened (bad URL, server down, missing driver)."""


@dataclass(frozen=True)
class StorageSpec:
    """Where a study lives. ``url`` may hold credentials: print :attr:`display`, never ``url``."""

    url: str
    kind: str  # "sqlite" | "journal" | "rdb" (a server database)
    path: Path | None = None  # the file for sqlite/journal storages
    given: str | None = None  # the URL as the user wrote it (before a driver was filled in)

    @property
    def display(self) -> str:
        return redact_url(self.given or self.url)

    @property
    def heartbeats(self) -> bool:
        return self.kind in ("sqlite", "journal", "rdb")


def default_storage_url(study_name: str, runs_dir: str | os.PathLike = "runs") -> str:
    """The embedded SQLite file of a study: ``runs/<study>/study.db``."""
    return f"sqlite:///{Path(runs_dir) / study_name / 'study.db'}"


def parse_storage(storage: str | None, study_name: str, runs_dir: str | os.PathLike = "runs") -> StorageSpec:
    """Turn ``--storage`` (or its absence) into a :class:`StorageSpec`."""
    url = (storage or "").strip() or default_storage_url(study_name, runs_dir)
    if url.startswith("journal://"):
        path = url[len("journal://"):]
        path = path[1:] if path.startswith("//") else path  # journal:///abs/path -> /abs/path
        if not path:
            raise StorageError("journal storage needs a file, e.g. --storage journal:///path/to/study.log")
        return StorageSpec(url=url, kind="journal", path=Path(path))
    if "://" not in url:
        if url.endswith((".log", ".journal", ".jsonl")):
            return StorageSpec(url=url, kind="journal", path=Path(url))
        if url.endswith((".db", ".sqlite", ".sqlite3")):
            return StorageSpec(url=f"sqlite:///{url}", kind="sqlite", path=Path(url))
        raise StorageError(f"storage {redact_url(url)!r}: not a URL; use sqlite:///runs/x.db, journal:///runs/x.log "
                           "or postgresql://user@host/db")
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
    if scheme == "sqlite":
        rest = url.split("://", 1)[1]
        if rest in ("", "/", "/:memory:"):
            raise StorageError("an in-memory SQLite study cannot be shared or resumed; give a file, "
                               "e.g. sqlite:///runs/study.db")
        return StorageSpec(url=url, kind="sqlite", path=Path(rest[1:] if rest.startswith("/") else rest))
    if scheme in ("postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql"):
        if scheme == "postgres":  # SQLAlchemy only knows the long name
            url = "postgresql" + url[len("postgres"):]
        given = url
        if url.startswith("postgresql://"):
            url = "postgresql+" + _postgres_driver() + url[len("postgresql"):]
        return StorageSpec(url=url, kind="rdb", given=given)
    raise StorageError(f"storage {redact_url(url)!r}: unsupported scheme {scheme!r}; use sqlite:///, journal:/// "
                       "or postgresql://")


def _postgres_driver() -> str:
    """SQLAlchemy 2.1 defaults to psycopg 3; use whichever driver is installed (psycopg2-binary is our extra)."""
    import importlib.util

    if importlib.util.find_spec("psycopg") is not None:
        return "psycopg"
    return "psycopg2"


def first_line(exc: BaseException, spec: StorageSpec) -> str:
    """The first line of a storage error, credentials scrubbed (SQLAlchemy errors echo the URL)."""
    text = scrub(str(exc), spec.url).strip()
    return text.splitlines()[0] if text else type(exc).__name__

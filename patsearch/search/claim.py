"""The claim lock: one worker at a time claims a trial (or creates the schema, or joins the study), across
threads, processes and, for a PostgreSQL study, machines: a file lock next to a SQLite/journal file, a PostgreSQL
advisory lock, a thread lock in-process."""
from __future__ import annotations

import fcntl
import hashlib
import threading
from typing import Any

from patsearch.search.storage import StorageError, StorageSpec, first_line

_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


class ClaimLock:
    """Mutual exclusion for claiming trials, across threads, processes and (for server databases) machines.

    One instance per worker thread. ``acquire``/``release`` may be called repeatedly; ``release`` when not held is
    a no-op, so the objective can release early and the loop can release unconditionally afterwards.
    """

    def __init__(self, spec: StorageSpec, study_name: str) -> None:
        self.spec = spec
        self.study_name = study_name
        # File storages: one lock file per file (all its studies); server databases: one advisory lock per study.
        key = f"{spec.url}\0{study_name if spec.kind == 'rdb' else ''}"
        with _THREAD_LOCKS_GUARD:
            self._thread_lock = _THREAD_LOCKS.setdefault(key, threading.Lock())
        self._held = False
        self._file = None
        self._engine = None
        self._conn = None
        digest = hashlib.sha256(f"patsearch:{study_name}".encode()).digest()
        self._pg_key = int.from_bytes(digest[:8], "big", signed=True)

    @property
    def held(self) -> bool:
        return self._held

    def acquire(self) -> None:
        if self._held:
            return
        self._thread_lock.acquire()
        try:
            if self.spec.kind in ("sqlite", "journal"):
                assert self.spec.path is not None
                lock_path = self.spec.path.with_name(self.spec.path.name + ".claim.lock")
                lock_path.parent.mkdir(parents=True, exist_ok=True)
                if self._file is None:
                    self._file = open(lock_path, "a+")
                fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
            elif self.spec.url.startswith("postgresql"):  # postgresql+<driver>://
                self._pg_call("SELECT pg_advisory_lock(:k)")
            # Other server databases: in-process lock only (exact counts hold per machine).
        except BaseException:
            self._thread_lock.release()
            raise
        self._held = True

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        try:
            if self._file is not None:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            elif self._conn is not None:
                self._pg_call("SELECT pg_advisory_unlock(:k)")
        finally:
            self._thread_lock.release()

    def _pg_call(self, sql: str) -> None:
        import sqlalchemy

        if self._conn is None:
            self._engine = sqlalchemy.create_engine(self.spec.url, poolclass=sqlalchemy.pool.NullPool)
            try:
                self._conn = self._engine.connect()
            except Exception as exc:
                raise StorageError(f"cannot connect to {self.spec.display}: {first_line(exc, self.spec)}") from None
        self._conn.execute(sqlalchemy.text(sql), {"k": self._pg_key})
        self._conn.commit()

    def close(self) -> None:
        self.release()
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._conn is not None:
            self._conn.close()
            self._engine.dispose()
            self._conn = self._engine = None

    def __enter__(self) -> ClaimLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

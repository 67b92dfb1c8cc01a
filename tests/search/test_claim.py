"""The claim lock (patsearch.search.claim): for a file storage, an exclusive lock on a file beside the study that
every process of the study takes; acquire and release may repeat; other server databases lock in-process only."""
from __future__ import annotations

import fcntl

import pytest

from patsearch.search.claim import ClaimLock
from patsearch.search.storage import parse_storage


def _free(lock_file) -> bool:
    """Whether another process (another open file description) could take the lock now."""
    with open(lock_file, "a+") as other:
        try:
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(other.fileno(), fcntl.LOCK_UN)
        return True


@pytest.mark.parametrize("url", ["sqlite:///{d}/s.db", "journal:///{d}/s.log"])
def test_a_held_claim_lock_excludes_every_other_process(tmp_path, url):
    spec = parse_storage(url.format(d=tmp_path), "s")
    lock = ClaimLock(spec, "s")
    try:
        lock.acquire()
        lock.acquire()  # already held: no second acquire (which would deadlock on the thread lock)
        lock_file = spec.path.with_name(spec.path.name + ".claim.lock")
        assert lock.held and not _free(lock_file)
        lock.release()
        lock.release()  # not held: a no-op
        assert not lock.held and _free(lock_file)
        with lock:
            assert not _free(lock_file)
        assert _free(lock_file)
    finally:
        lock.close()


def test_other_server_databases_lock_in_process_without_connecting():
    lock = ClaimLock(parse_storage("mysql://u@127.0.0.1:9/nas", "s"), "s")  # nothing listens on port 9
    with lock:
        assert lock.held
    lock.close()
    assert not lock.held

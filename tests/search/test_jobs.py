"""Stopping a run of worker processes when one job fails leaves nothing half-written: a worker terminated in the
middle of an atomic write removes its temp file."""
import pytest
from search_helpers import killed_mid_write_executor

from patsearch.search.jobs import Job, RecordStore, run_jobs


def test_a_worker_terminated_mid_write_leaves_no_temp_file(tmp_path, monkeypatch):
    markers, records = tmp_path / "markers", tmp_path / "records"
    markers.mkdir()
    records.mkdir()
    monkeypatch.setenv("PATSEARCH_TEST_MARKERS", str(markers))
    monkeypatch.setenv("PATSEARCH_TEST_RECORDS", str(records))
    jobs = [Job("a", "x", "slow"), Job("b", "x", "bad")]
    with pytest.raises(RuntimeError, match=r"^job b failed: ValueError: boom$"):
        run_jobs(jobs, killed_mid_write_executor, RecordStore(records), devices=["cpu", "cpu"])
    assert (markers / "inside").exists()  # the slow job really was inside its write when the run stopped
    assert sorted(p.name for p in records.iterdir()) == []

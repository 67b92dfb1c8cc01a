"""The CPU proxy's intra-op threads: the cores other processes leave free, shared among the jobs (the load is
faked, so the test does not depend on this host's cores or load)."""
import pytest

from patsearch import host
from patsearch.host import Load
from patsearch.search.in_process import threads_per_job


@pytest.mark.parametrize("cores, others, jobs, threads", [
    (8, 0.0, 1, 8),      # an idle host: every core
    (8, 3.0, 1, 5),      # three cores busy elsewhere: the five left
    (8, 3.0, 2, 2),      # ... shared by two jobs
    (2, 1.9, 1, 1),      # a 2-core host beside a busy process: one thread, not two
    (2, 6.0, 4, 1),      # never fewer than one
])
def test_threads_come_from_the_free_cores(monkeypatch, cores, others, jobs, threads):
    monkeypatch.setattr(host, "current_load", lambda window_s=0.5: Load(window_s, others, 0.0, cores))
    assert threads_per_job(jobs) == threads

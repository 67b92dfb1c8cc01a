"""The host module: other processes' load from CPU-time counters (this process's own left out), when a host
counts as busy, the cores left free, and the snapshot a table's provenance records. Counters are faked where a
figure is asserted, so no test depends on this host's cores or load."""
from types import SimpleNamespace

import pytest

from patsearch import host
from patsearch.host import Load


def test_busy_leaves_the_measurement_its_threads_and_allows_half_the_spare_cores():
    assert not host.busy(0.4, cores=2, needed=1) and host.busy(0.6, cores=2, needed=1)
    assert not host.busy(7.4, cores=16, needed=1) and host.busy(7.6, cores=16, needed=1)
    # nothing spare (all cores timed): more than a quarter core of other work is busy
    assert not host.busy(0.2, cores=2, needed=2) and host.busy(0.3, cores=2, needed=2)


class _Counters:
    """Fake system and process CPU-time counters and a fake clock, advanced by the test."""

    def __init__(self, monkeypatch):
        self.system = dict(user=0.0, nice=0.0, system=0.0, idle=0.0, iowait=0.0, irq=0.0, softirq=0.0, steal=0.0)
        self.own = dict(user=0.0, system=0.0)
        self.now = 100.0
        monkeypatch.setattr(host.psutil, "cpu_times", lambda: SimpleNamespace(**self.system))
        monkeypatch.setattr(host.psutil, "Process", lambda: SimpleNamespace(
            cpu_times=lambda: SimpleNamespace(**self.own)))
        monkeypatch.setattr(host.time, "perf_counter", lambda: self.now)
        monkeypatch.setattr(host, "usable_cores", lambda: 4)


def test_monitor_counts_other_processes_and_steal_but_not_this_process_or_idle(monkeypatch):
    c = _Counters(monkeypatch)
    with host.LoadMonitor() as monitor:
        c.now += 2.0
        c.own["user"] += 1.5           # this process: 0.75 of a core
        c.own["system"] += 0.5
        c.system["user"] += 3.0        # includes the 1.5 s of ours
        c.system["system"] += 0.5      # ours
        c.system["steal"] += 1.0       # other VMs on our cores
        c.system["idle"] += 50.0
        c.system["iowait"] += 3.0
    load = monitor.load
    assert load.seconds == pytest.approx(2.0) and load.cores == 4
    assert load.own_cores == pytest.approx(1.0)
    assert load.others_cores == pytest.approx((3.0 + 0.5 + 1.0 - 2.0) / 2.0)
    assert not load.busy(needed=1)     # 1.25 of 4 cores: under half of the 3 spare
    assert host.free_cores(load=load) == 3


def test_free_cores_is_at_least_one_and_at_most_the_host():
    assert host.free_cores(load=Load(1.0, others_cores=0.0, own_cores=0.0, cores=8)) == 8
    assert host.free_cores(load=Load(1.0, others_cores=1.2, own_cores=0.0, cores=8)) == 7
    assert host.free_cores(load=Load(1.0, others_cores=5.0, own_cores=0.0, cores=2)) == 1


def test_wait_until_quiet_stops_at_the_first_quiet_window(monkeypatch):
    loads = iter([1.9, 1.5, 0.1, 0.0])
    seen = []

    def fake_load(window_s):
        seen.append(window_s)
        return Load(window_s, others_cores=next(loads), own_cores=0.0, cores=2)

    monkeypatch.setattr(host, "current_load", fake_load)
    load = host.wait_until_quiet(3600, needed=1)
    assert load.others_cores == 0.1 and len(seen) == 3
    assert host.wait_until_quiet(0) is None      # no time to watch: no window at all


def test_snapshot_has_cores_frequency_and_load(monkeypatch):
    monkeypatch.setattr(host.psutil, "cpu_freq", lambda: SimpleNamespace(current=2445.43, min=0.0, max=0.0))
    monkeypatch.setattr(host.psutil, "getloadavg", lambda: (5.21, 4.0, 3.0))
    monkeypatch.setattr(host, "usable_cores", lambda: 2)
    snap = host.snapshot()
    assert snap["cores"] == 2 and snap["cpu_freq_mhz"] == {"current": 2445.4, "max": None}
    assert snap["load_average"] == (5.21, 4.0, 3.0)
    monkeypatch.setattr(host.psutil, "cpu_freq", lambda: None)   # VMs that do not say
    assert host.snapshot()["cpu_freq_mhz"] is None
    text = host.describe(Load(1.0, others_cores=1.84, own_cores=1.0, cores=2))
    assert text == "other processes used 1.8 of 2 cores; load average 5.21"


def test_real_counters_give_a_sane_reading():
    # no figure asserted (that would be this host's load): only that the real psutil counters are read
    load = host.current_load(0.05)
    assert load.cores >= 1 and load.others_cores >= 0.0 and load.own_cores >= 0.0

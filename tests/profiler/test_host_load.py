"""Host load while measuring: recorded in a table's provenance, disturbed networks measured again (boundedly), and
a busy host said with its figure, never silently. The load is scripted (ScriptedMonitor), never the real host's."""
import logging

import pytest
import torch
from adapt_helpers import FakeMeasure, make_base
from profiler_helpers import QUICK, ScriptedMonitor

import patsearch.profiler.adapt as adapt_mod
from patsearch import host
from patsearch.profiler import table
from patsearch.profiler.adapt import adapt_profile, load_or_adapt
from patsearch.profiler.build import build_table, open_for_build
from patsearch.profiler.devices import get_device
from patsearch.profiler.table import Profile
from patsearch.profiler.validate import BUSY_RETRIES, busy_warning, load_summary, measure_networks, split_samples


@pytest.fixture
def fake_timer(monkeypatch):
    """Network timings of 7 ms while the scripted host is busy, 10 ms while it is quiet; counts timed networks."""
    from patsearch.profiler import timing

    timed = []

    def time_interleaved(prepared, **kw):
        busy = host.LoadMonitor.loads[min(host.LoadMonitor.windows, len(host.LoadMonitor.loads) - 1)] > 0.5
        timed.extend(prepared)
        ms = 7.0 if busy else 10.0
        return [timing.Timing(ms, ms, ms * 1.01, 9, 1) for _ in prepared]

    monkeypatch.setattr(timing, "time_interleaved", time_interleaved)
    return timed


def _measure(tmp_path, tiny_space, monkeypatch, loads, waited=None):
    monkeypatch.setattr(host, "LoadMonitor", ScriptedMonitor(loads))
    monkeypatch.setattr(host, "wait_until_quiet", lambda timeout_s, needed=1: waited)
    dev = get_device("cpu")
    profile = open_for_build(tmp_path / "p.json", dev, dev.protocol)
    items = split_samples(tiny_space, 3, 2, seed=0)
    summary = measure_networks(profile, items, dev, model_factory=lambda arch, form: torch.nn.Identity(),
                               budget=QUICK, progress=False)
    return profile, items, summary


def test_networks_timed_on_a_busy_host_are_measured_again_when_it_quietens(tmp_path, tiny_space, monkeypatch,
                                                                           fake_timer):
    # 5 networks in groups of 4: the first pass's 2 windows are busy, the retry's quiet
    profile, items, summary = _measure(tmp_path, tiny_space, monkeypatch, [1.8, 1.8, 0.0])
    assert len(fake_timer) == 2 * len(items)
    for key, *_ in items:
        entry = profile.networks[key]
        assert entry["ms"] == 10.0 and entry["host_others_cores"] == 0.0 and entry["retried"]
    assert summary == profile.provenance["host_load"]
    assert summary["busy_networks"] == 0 and summary["cores"] == 2 and summary["threads"] == 1
    assert busy_warning(summary, "x", "y") is None
    assert Profile.load(tmp_path / "p.json").provenance["host_load"] == summary   # saved with the table


def test_a_host_that_stays_busy_is_retried_boundedly_and_said_with_its_figure(tmp_path, tiny_space, monkeypatch,
                                                                              fake_timer):
    profile, items, summary = _measure(tmp_path, tiny_space, monkeypatch, [1.8])
    assert len(fake_timer) == (1 + BUSY_RETRIES) * len(items)
    assert summary["busy_networks"] == len(items) and summary["others_cores_median"] == 1.8
    line = busy_warning(summary, "the adapted table cpu.json", "patsearch profile --device cpu --adapt")
    assert line.startswith("the adapted table cpu.json was measured on a busy host: other processes used 1.8 of 2 "
                           "cores (up to 1.8) while 5 of its 5 networks were timed, even after retries")
    assert line.endswith("run `patsearch profile --device cpu --adapt` when the host is quieter (see `uptime`)")
    assert "\n" not in line


class BusyMeasure(FakeMeasure):
    """The fake other device, measured while other processes kept 1.8 of 2 cores busy."""

    def __call__(self, profile, items, device):
        super().__call__(profile, items, device)
        for key, *_ in items:
            profile.networks[key]["host_others_cores"] = 1.8
        profile.provenance["host_load"] = load_summary([profile.networks[k] for k, *_ in items], cores=2, needed=1)


def test_adapted_table_records_the_host_and_says_when_it_replaces_a_table_or_was_busy(tmp_path, tiny_space):
    base = make_base(tmp_path / "base.json", tiny_space)
    dev = get_device("cpu")
    out = tmp_path / "adapted.json"
    notes = []
    adapt_profile(base, tiny_space, dev, dev.protocol, out, n_adapt=6, n_evaluate=3, measure=FakeMeasure(base),
                  note=notes.append)
    assert notes == []                                 # a quiet host, no table there before: nothing to say
    first = Profile.load(out).provenance
    assert first["host"]["cores"] == 2 and "cpu_freq_mhz" in first["host"] and "load_average" in first["host"]
    adapt_profile(base, tiny_space, dev, dev.protocol, out, n_adapt=6, n_evaluate=3, measure=BusyMeasure(base),
                  note=notes.append)
    assert notes[0] == (f"{out} exists (an adapted table of {first['date'][:10]} from base.json): this adaptation "
                        "replaces it when it ends")
    assert len(notes) == 2 and notes[1].startswith("the adapted table adapted.json was measured on a busy host: "
                                                   "other processes used 1.8 of 2 cores")
    assert Profile.load(out).provenance["host_load"]["busy_networks"] == 9   # kept, with its load on record


@pytest.fixture
def busy_adapted(tmp_path, tiny_space, monkeypatch):
    """A search adapted the cpu table on a busy host: (the fake measurement, the notes so far)."""
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setattr(table, "PROFILES_DIR", shipped)
    monkeypatch.setattr(adapt_mod, "PROFILES_DIR", shipped)
    base = make_base(shipped / "epyc-b1-float32-nchw-t1-cputime-fused.json", tiny_space)
    measure = BusyMeasure(base)
    monkeypatch.setattr(adapt_mod, "default_measure", measure)
    notes = []
    load_or_adapt("cpu", space=tiny_space, note=notes.append)
    assert [n for n in notes if "measured on a busy host" in n]
    return measure, notes


def _host_now(monkeypatch, others):
    monkeypatch.setattr(host, "current_load", lambda window_s=0.5: host.Load(window_s, others, 0.0, 2))


def test_the_search_says_each_time_it_uses_a_table_adapted_on_a_busy_host(tiny_space, monkeypatch, busy_adapted):
    measure, notes = busy_adapted
    _host_now(monkeypatch, 1.5)                              # still busy
    count, before = len(measure.measured), len(notes)
    load_or_adapt("cpu", space=tiny_space, note=notes.append)
    assert len(measure.measured) == count                    # reused, not measured again ...
    assert len(notes) == before + 1 and "measured on a busy host: other processes used 1.8 of 2" in notes[-1]


def test_a_table_adapted_on_a_busy_host_is_adapted_again_once_the_host_is_quiet(tiny_space, monkeypatch,
                                                                                busy_adapted):
    measure, notes = busy_adapted
    _host_now(monkeypatch, 0.1)
    quiet = FakeMeasure(measure.base)
    monkeypatch.setattr(adapt_mod, "default_measure", quiet)
    before = len(notes)
    profile = load_or_adapt("cpu", space=tiny_space, note=notes.append)
    assert len(quiet.measured) == adapt_mod.N_ADAPT + adapt_mod.N_HELD_OUT
    new = notes[before:]
    assert new[0].startswith("cpu-b1-float32-nchw-t1-cputime-fused.json was adapted on a busy host (other processes "
                             "used 1.8 of 2 cores) and this host is quiet now: adapting epyc-")
    assert any("exists (an adapted table of" in n and "replaces it" in n for n in new)   # said, not silent
    assert not profile.provenance.get("host_load") and not [n for n in new if "busy host:" in n]
    load_or_adapt("cpu", space=tiny_space, note=notes.append)   # and now it is simply reused
    assert len(quiet.measured) == adapt_mod.N_ADAPT + adapt_mod.N_HELD_OUT


def test_layer_table_records_the_load_and_warns_when_busy(tmp_path, tiny_space, counting_factory, monkeypatch,
                                                          caplog):
    dev = get_device("cpu")
    quiet = open_for_build(tmp_path / "quiet.json", dev, dev.protocol)
    with caplog.at_level(logging.WARNING, logger="patsearch"):
        build_table(quiet, tiny_space.layer_inputs(), dev, layer_factory=counting_factory, budget=QUICK,
                    progress=False)
    prov = Profile.load(quiet.path).provenance
    assert prov["host_load_layers"]["busy"] is False and not caplog.records
    assert prov["host"]["cores"] == 2 and {"cpu_freq_mhz", "load_average", "logical_cpus"} <= set(prov["host"])
    monkeypatch.setattr(host, "LoadMonitor", ScriptedMonitor([1.6]))
    busy = open_for_build(tmp_path / "busy.json", dev, dev.protocol)
    with caplog.at_level(logging.WARNING, logger="patsearch"):
        build_table(busy, tiny_space.layer_inputs(), dev, layer_factory=counting_factory, budget=QUICK,
                    progress=False)
    load = Profile.load(busy.path).provenance["host_load_layers"]
    assert load["busy"] is True and load["others_cores"] == 1.6 and load["cores"] == 2
    [record] = caplog.records
    assert record.getMessage().startswith("the layers of busy.json were timed on a busy host: on average other "
                                          "processes used 1.6 of 2 cores")


def test_no_retry_while_the_host_stays_busy(tmp_path, tiny_space, monkeypatch, fake_timer, caplog):
    # the wait for a quiet host ends still busy: measuring again now would be as disturbed, so it is not done
    still = host.Load(1.0, others_cores=1.7, own_cores=0.0, cores=2)
    with caplog.at_level(logging.WARNING, logger="patsearch"):
        profile, items, summary = _measure(tmp_path, tiny_space, monkeypatch, [1.8], waited=still)
    assert len(fake_timer) == len(items) and summary["busy_networks"] == len(items)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("5 of 5 networks were timed while other processes used up to 1.8 of 2 cores: "
                                  "waiting up to 15 s for the host to quieten")
    assert messages[1].startswith("the host stayed busy (other processes used 1.7 of 2 cores")
    assert messages[1].endswith("): keeping these measurements") and len(messages) == 2

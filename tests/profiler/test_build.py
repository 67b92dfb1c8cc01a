"""Building a lookup table (patsearch.profiler.build): every layer with provenance, resume after an interruption or
a kill, no mixing of protocols, repeated passes, CUDA-graph timing."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from profiler_helpers import QUICK, CountingFactory, build_quick

from patsearch.profiler.build import build_table, open_for_build
from patsearch.profiler.devices import get_device
from patsearch.profiler.table import Profile, ProfileError

REPO = Path(__file__).resolve().parents[2]


def test_build_writes_every_layer_with_provenance(tmp_path, tiny_space, counting_factory):
    path = tmp_path / "cpu.json"
    build_quick(path, tiny_space, counting_factory)
    layers = tiny_space.layer_inputs()
    data = json.loads(path.read_text())
    assert set(data["entries"]) == set(layers)
    assert len(counting_factory.built) == len(layers)
    for key, entry in data["entries"].items():
        assert entry["ms"] > 0 and entry["p10"] <= entry["ms"] <= entry["p90"]
        assert tuple(entry["input"]) == layers[key][1]
    prov = data["provenance"]
    assert prov["torch"] == torch.__version__
    assert prov["hardware"] and prov["command"] == "pytest build" and prov["form"] == "fused"
    assert prov["date"].startswith("20") and "tiny" in prov["spaces"]
    assert data["protocol"] == {"metric": "latency_ms", "batch": 1, "dtype": "float32", "channels_last": False,
                                "threads": 1, "form": "fused", "clock": "cpu", "cuda_graphs": False,
                                "tf32": False}


def test_resume_measures_only_missing_entries(tmp_path, tiny_space):
    path = tmp_path / "cpu.json"
    first = CountingFactory()
    seen = []

    def interrupt(key):
        seen.append(key)
        if len(seen) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_quick(path, tiny_space, first, on_entry=interrupt)
    saved = json.loads(path.read_text())["entries"]
    assert set(saved) == set(seen)  # everything measured before the interruption was kept
    second = CountingFactory()
    build_quick(path, tiny_space, second)
    total = len(tiny_space.layer_inputs())
    assert len(second.built) == total - 5
    assert len(json.loads(path.read_text())["entries"]) == total


@pytest.mark.slow
def test_resume_after_kill_9(tmp_path, tiny_space):
    path = tmp_path / "killed.json"
    marker = tmp_path / "fourth-layer.started"
    script = textwrap.dedent(f"""
        import time, torch.nn as nn
        from patsearch.profiler.devices import get_device
        from patsearch.profiler.build import open_for_build, build_table
        from patsearch.profiler.timing import Budget
        from patsearch.space import load_space
        built = set()
        def slow(spec, form):  # after three layers are saved, the fourth never finishes: the kill lands mid-build
            built.add(spec)
            if len(built) > 3:
                open({str(marker)!r}, "w").close()
                time.sleep(3600)
            return nn.Identity()
        dev = get_device("cpu")
        prof = open_for_build(__import__("pathlib").Path({str(path)!r}), dev, dev.protocol)
        build_table(prof, load_space("tiny").layer_inputs(), dev, layer_factory=slow, progress=False,
                    budget=Budget(0.0, 2, 0.0, 2), save_every_s=0.0)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, start_new_session=True)
    try:
        deadline = time.time() + 60
        while not marker.exists():
            assert time.time() < deadline, "the build never reached its fourth layer"
            assert proc.poll() is None, "the build ended before it could be killed"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    kept = Profile.load(path).entries  # the file a kill leaves is complete, never half-written
    total = len(tiny_space.layer_inputs())
    assert len(kept) == 3 < total
    resumed = CountingFactory()
    build_quick(path, tiny_space, resumed)
    assert len(resumed.built) == total - len(kept)


def test_resume_refuses_to_mix_protocols(tmp_path, tiny_space, counting_factory):
    path = tmp_path / "cpu.json"
    build_quick(path, tiny_space, counting_factory)
    dev = get_device("cpu")
    with pytest.raises(ProfileError, match="protocol b1-float32-nchw-t1-cputime-fused, not b4-float32"):
        open_for_build(path, dev, dev.protocol_with(batch=4))
    data = json.loads(path.read_text())
    data["provenance"]["torch"] = "1.0.0"
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="torch '1.0.0'"):
        open_for_build(path, dev, dev.protocol)
    assert open_for_build(path, dev, dev.protocol, fresh=True).entries == {}


def test_repeated_passes_average_and_resume(tmp_path, tiny_space):
    path = tmp_path / "cpu.json"
    total = len(tiny_space.layer_inputs())
    first = CountingFactory()
    build_quick(path, tiny_space, first, passes=2)
    assert len(first.built) == 2 * total
    entries = json.loads(path.read_text())["entries"]
    for entry in entries.values():
        assert len(entry["passes"]) == 2
        assert entry["ms"] == pytest.approx(sum(p["ms"] for p in entry["passes"]) / 2, abs=1e-6)
        assert entry["min_p10"] == min(p["p10"] for p in entry["passes"])
    again = CountingFactory()
    build_quick(path, tiny_space, again, passes=2)
    assert again.built == []  # both passes done: nothing to measure
    third = CountingFactory()
    build_quick(path, tiny_space, third, passes=3)
    assert len(third.built) == total


def test_a_cuda_graph_protocol_times_layers_by_graph_replay_only(tmp_path, tiny_space, monkeypatch):
    # GPU timing faked (no GPU here): each layer's entry is its graph replay time, with no eager timing, except
    # a layer that cannot be captured, which is timed eagerly and marked.
    from patsearch.profiler import timing

    layers = tiny_space.layer_inputs()
    uncapturable = sorted(layers)[0]
    eager_calls = []
    monkeypatch.setattr(timing, "configure", lambda device, protocol: None)
    monkeypatch.setattr(timing, "prepare", lambda module, shape, device, protocol: (module, shape))
    monkeypatch.setattr(timing, "time_graph", lambda module, x, budget: (
        None if x == layers[uncapturable][1] else timing.Timing(2.0, 1.9, 2.1, 7, 1)))
    monkeypatch.setattr(timing, "time_module", lambda module, x, **kw: (
        eager_calls.append(x) or timing.Timing(5.0, 4.8, 5.2, 7, 1)))
    dev = get_device("h200")
    assert dev.protocol.cuda_graphs
    profile = open_for_build(tmp_path / "h200.json", dev, dev.protocol, command="pytest")
    build_table(profile, layers, dev, layer_factory=lambda spec, form: torch.nn.Identity(), budget=QUICK,
                progress=False)
    same_shape = [k for k in layers if layers[k][1] == layers[uncapturable][1]]
    assert len(eager_calls) == len(same_shape)   # only the uncapturable shape was timed eagerly
    for key, entry in profile.entries.items():
        if key in same_shape:
            assert entry["ms"] == 5.0 and entry["graph_failed"] and "graph_ms" not in entry
        else:
            assert entry["ms"] == entry["graph_ms"] == 2.0 and entry["graph_p10"] == 1.9

"""Lookup tables: build, provenance, resume after an interruption or a kill, corrupt files, staleness."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import torch
from profiler_helpers import QUICK, CountingFactory

from patsearch.profiler import load_profile
from patsearch.profiler.devices import DeviceError, check_hardware, get_device
from patsearch.profiler.table import (
    Profile,
    ProfileError,
    StaleProfileWarning,
    build_table,
    open_for_build,
    profile_path,
)

REPO = Path(__file__).resolve().parents[2]


def _build(path, space, factory, **kw):
    dev = get_device("cpu")
    profile = open_for_build(path, dev, dev.protocol, command="pytest build")
    return build_table(profile, space.layer_inputs(), dev, layer_factory=factory, budget=QUICK, progress=False,
                       space_info={"name": space.name}, **kw)


def test_build_writes_every_layer_with_provenance(tmp_path, tiny_space, counting_factory):
    path = tmp_path / "cpu.json"
    _build(path, tiny_space, counting_factory)
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
        _build(path, tiny_space, first, on_entry=interrupt)
    saved = json.loads(path.read_text())["entries"]
    assert set(saved) == set(seen)  # everything measured before the interruption was kept
    second = CountingFactory()
    _build(path, tiny_space, second)
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
        from patsearch.profiler.table import open_for_build, build_table
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
    _build(path, tiny_space, resumed)
    assert len(resumed.built) == total - len(kept)


def test_resume_refuses_to_mix_protocols(tmp_path, tiny_space, counting_factory):
    path = tmp_path / "cpu.json"
    _build(path, tiny_space, counting_factory)
    dev = get_device("cpu")
    with pytest.raises(ProfileError, match="protocol b1-float32-nchw-t1-cputime-fused, not b4-float32"):
        open_for_build(path, dev, dev.protocol_with(batch=4))
    data = json.loads(path.read_text())
    data["provenance"]["torch"] = "1.0.0"
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="torch '1.0.0'"):
        open_for_build(path, dev, dev.protocol)
    assert open_for_build(path, dev, dev.protocol, fresh=True).entries == {}


@pytest.mark.parametrize("content, message", [
    ("{not json", "corrupt (not valid JSON"),
    (json.dumps({"hello": 1}), "not a patsearch profile"),
    ("TRUNCATE", "corrupt (not valid JSON"),
    ("NOENTRIES", "field 'entries' is missing"),
    ("BADENTRY", "has no positive 'ms'"),
])
def test_corrupt_files_give_one_clear_error(tmp_path, tiny_space, counting_factory, content, message):
    good = tmp_path / "good.json"
    _build(good, tiny_space, counting_factory)
    text = good.read_text()
    data = json.loads(text)
    if content == "TRUNCATE":
        content = text[: len(text) // 2]
    elif content == "NOENTRIES":
        del data["entries"]
        content = json.dumps(data)
    elif content == "BADENTRY":
        data["entries"][next(iter(data["entries"]))]["ms"] = -1
        content = json.dumps(data)
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(ProfileError) as info:
        load_profile(bad)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert "--fresh" in str(info.value) or "patsearch profile" in str(info.value)


def test_missing_profile_names_the_command(tmp_path):
    with pytest.raises(ProfileError, match=r"run `patsearch profile --device v100 --adapt` \(a few minutes\) or "
                                           r"`patsearch profile --device v100 --validate 60` \(a full table\) first"):
        load_profile("v100", directory=tmp_path)
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        load_profile("tpu", directory=tmp_path)


def test_default_protocol_file_name(tmp_path, tiny_space, counting_factory):
    dev = get_device("cpu")
    path = profile_path("cpu", dev.protocol, tmp_path)
    assert path.name == "cpu-b1-float32-nchw-t1-cputime-fused.json"
    _build(path, tiny_space, counting_factory)
    assert load_profile("cpu", directory=tmp_path).path == path


def test_staleness_other_hardware_is_refused(tmp_path, tiny_space, counting_factory):
    path = tmp_path / "cpu.json"
    _build(path, tiny_space, counting_factory)
    data = json.loads(path.read_text())
    data["provenance"]["hardware"] = "Imaginary CPU 9000"
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="measured on 'Imaginary CPU 9000' but this host has"):
        load_profile(path)
    with pytest.warns(StaleProfileWarning, match="Imaginary CPU 9000"):
        load_profile(path, allow_stale=True)


def test_staleness_other_torch_release_is_flagged(tmp_path, tiny_space, counting_factory):
    path = tmp_path / "cpu.json"
    _build(path, tiny_space, counting_factory)
    data = json.loads(path.read_text())
    data["provenance"]["torch"] = "1.13.1+cpu"
    path.write_text(json.dumps(data))
    with pytest.warns(StaleProfileWarning, match="torch 1.13.1"):
        load_profile(path)
    with pytest.raises(ProfileError, match="torch 1.13.1"):
        Profile.load(path).check_fresh(strict_software=True)
    data["provenance"]["torch"] = torch.__version__
    path.write_text(json.dumps(data))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_profile(path)  # fresh: no warning at all


def test_gpu_profile_on_a_cpu_host_is_flagged(tmp_path, tiny_space, counting_factory, monkeypatch):
    path = tmp_path / "h100.json"
    _build(path, tiny_space, counting_factory)
    data = json.loads(path.read_text())
    data.update(device="h100", backend="cuda")
    data["provenance"]["hardware"] = "NVIDIA H100 80GB HBM3"
    path.write_text(json.dumps(data))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(StaleProfileWarning, match="no GPU to check it against"):
        load_profile(path)


def test_device_mismatch_stops_with_what_was_found(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match=r"--device mi250 expects an AMD Instinct MI250 \(ROCm\) GPU, but torch "
                                          r".* sees no GPU on this host \(CPU: "):
        check_hardware(get_device("mi250"))
    import patsearch.profiler.devices as devices

    monkeypatch.setattr(devices, "cpu_name", lambda: "Intel(R) Xeon(R) Platinum 8480+")
    with pytest.raises(DeviceError, match=r"expects an AMD EPYC CPU, but this host's CPU is 'Intel\(R\) Xeon"):
        check_hardware(get_device("epyc"))
    assert check_hardware(get_device("cpu")) == "Intel(R) Xeon(R) Platinum 8480+"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA A100-SXM4-80GB")
    monkeypatch.setattr(torch.version, "hip", None, raising=False)
    with pytest.raises(DeviceError, match="expects an NVIDIA H100 GPU, but found 'NVIDIA A100-SXM4-80GB'"):
        check_hardware(get_device("h100"))
    with pytest.raises(DeviceError, match="needs a ROCm build of torch"):
        check_hardware(get_device("mi250"))


def test_protocol_overrides_are_checked():
    dev = get_device("epyc")
    assert dev.protocol_with(batch=8, threads=2).slug() == "b8-float32-nchw-t2-cputime-fused"
    assert dev.protocol_with(clock="wall").slug() == "b1-float32-nchw-t1-fused"
    assert get_device("h100").protocol.slug() == "b256-bfloat16-cl-fused"
    with pytest.raises(DeviceError, match="--batch must be a positive integer"):
        dev.protocol_with(batch=0)
    with pytest.raises(DeviceError, match="--dtype must be one of"):
        dev.protocol_with(dtype="int8")
    with pytest.raises(DeviceError, match="float16 is not a CPU inference dtype"):
        dev.protocol_with(dtype="float16")


def test_cli_device_mismatch_is_one_line_and_exit_2(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "cli.py", "profile", "--device", "mi250", "--out",
                           str(tmp_path / "x.json")], cwd=REPO, capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --device mi250 expects an AMD Instinct MI250")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.json").exists()


def test_repeated_passes_average_and_resume(tmp_path, tiny_space):
    path = tmp_path / "cpu.json"
    total = len(tiny_space.layer_inputs())
    first = CountingFactory()
    _build(path, tiny_space, first, passes=2)
    assert len(first.built) == 2 * total
    entries = json.loads(path.read_text())["entries"]
    for entry in entries.values():
        assert len(entry["passes"]) == 2
        assert entry["ms"] == pytest.approx(sum(p["ms"] for p in entry["passes"]) / 2, abs=1e-6)
        assert entry["min_p10"] == min(p["p10"] for p in entry["passes"])
    again = CountingFactory()
    _build(path, tiny_space, again, passes=2)
    assert again.built == []  # both passes done: nothing to measure
    third = CountingFactory()
    _build(path, tiny_space, third, passes=3)
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

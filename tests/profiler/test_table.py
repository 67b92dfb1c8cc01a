"""Lookup tables (patsearch.profiler.table): file names, corrupt files, a missing profile, staleness and hardware
checks."""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from profiler_helpers import build_quick

from patsearch.profiler import load_profile
from patsearch.profiler.devices import DeviceError, check_hardware, get_device
from patsearch.profiler.table import Profile, ProfileError, StaleProfileWarning, profile_path

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("content, message", [
    ("{not json", "corrupt (not valid JSON"),
    (json.dumps({"hello": 1}), "not a patsearch profile"),
    ("TRUNCATE", "corrupt (not valid JSON"),
    ("NOENTRIES", "field 'entries' is missing"),
    ("BADENTRY", "has no positive 'ms'"),
])
def test_corrupt_files_give_one_clear_error(tmp_path, tiny_space, counting_factory, content, message):
    good = tmp_path / "good.json"
    build_quick(good, tiny_space, counting_factory)
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
    build_quick(path, tiny_space, counting_factory)
    assert load_profile("cpu", directory=tmp_path).path == path


def test_staleness_other_hardware_is_refused(tmp_path, tiny_space, counting_factory):
    path = tmp_path / "cpu.json"
    build_quick(path, tiny_space, counting_factory)
    data = json.loads(path.read_text())
    data["provenance"]["hardware"] = "Imaginary CPU 9000"
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="measured on 'Imaginary CPU 9000' but this host has"):
        load_profile(path)
    with pytest.warns(StaleProfileWarning, match="Imaginary CPU 9000"):
        load_profile(path, allow_stale=True)


def test_staleness_other_torch_release_is_flagged(tmp_path, tiny_space, counting_factory):
    path = tmp_path / "cpu.json"
    build_quick(path, tiny_space, counting_factory)
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
    build_quick(path, tiny_space, counting_factory)
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

"""benchmarks/infer_profile.py on the CPU: every form asked for is profiled (PATNet's first) at the precision
asked, and the JSON lands atomically; the CPU runs no device kernels, so no kernel families. Bad input is a usage
error with nothing written."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_cpu_profile_writes_each_form(tmp_path):
    out = tmp_path / "p.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "infer_profile.py"), "--size", "t0",
                           "--precision", "float32-strict", "--forms", "fasternet-fx,patnet-deploy", "--batch", "1",
                           "--resolution", "32", "--steps", "1", "--warmup", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(ROOT),
                                                                             "PATH": "/usr/bin:/bin",
                                                                             "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert (data["size"], data["precision"], data["batch"], data["device"]) == ("t0", "float32-strict", 1, "cpu")
    assert [r["form"] for r in data["results"]] == ["patnet-deploy", "fasternet-fx"]  # build_forms' family order
    for r in data["results"]:
        assert r["img_s"] > 0 and r["call_ms"] > 0
        assert r["families"] == {} and r["kernels_per_call"] == 0
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("args, message", [(("--precision", "fp8"), "invalid choice: 'fp8'"),
                                           (("--forms", "patnet-fast,nope"), "--forms: unknown form 'nope'")])
def test_bad_input_is_a_usage_error(tmp_path, args, message):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "infer_profile.py"), *args,
                           "--out", str(tmp_path / "p.json")], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2 and message in proc.stderr
    assert not list(tmp_path.iterdir())

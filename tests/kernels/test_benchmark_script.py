"""benchmarks/kernels_gpu.py's dry run on the CPU: every case of PATNet-T2 runs, is checked and lands in the JSON
(the timing itself needs the GPU)."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dry_run_writes_every_case(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # the reference ops: seconds, not minutes
    env["PYTHONPATH"] = str(ROOT)
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kernels_gpu.py"), "--device", "cpu", "--batch",
                           "2", "--resolution", "32", "--no-compile", "--out", str(tmp_path)],
                          check=False, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "kernels_gpu.json").read_text())
    # T2: pat_ch in stages 1-3 (channel_stats, scale_channels, pat_ch_branch each), PAT_sp in all four.
    ops = [(c["op"], c["stage"]) for c in result["cases"]]
    assert len(ops) == 13 and result["skipped"] == []
    assert ops.count(("spatial_gate", 4)) == 1 and ("channel_stats", 4) not in ops
    first = result["cases"][0]
    assert first["shape"] == [2, 48, 8, 8]  # the untouched 3/4 of stage 1's 64 channels at 32 px / 4
    for case in result["cases"]:
        assert "error" not in case, case.get("error")
        assert case["fwd/fused"]["ms"] > 0 and case["fwd+bwd/eager"]["ms"] > 0
        if "equivalence_fp32" in case:
            assert case["equivalence_fp32"]["forward"]["worst"]["max_rel"] < 1e-5
            assert case["equivalence_fp32"]["backward"]["worst"]["max_rel"] < 1e-4


def test_without_cuda_the_gpu_run_says_so(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kernels_gpu.py"), "--out", str(tmp_path)],
                          check=False, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr
    assert not (tmp_path / "kernels_gpu.json").exists()

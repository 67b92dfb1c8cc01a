"""The kernels' launch settings: ``_triton.tuned`` and benchmarks/kernels_tune.py's sweep (its dry run on the CPU;
the timing itself needs the GPU)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from patsearch.kernels import _triton

ROOT = Path(__file__).resolve().parents[2]


def test_tuned_replaces_settings_and_restores_them_even_after_an_error():
    before = dict(_triton.TUNING)
    with pytest.raises(RuntimeError, match="inside"):
        with _triton.tuned(max_tile=256, num_warps=2):
            assert _triton.TUNING["max_tile"] == 256 and _triton._warps(16, 16) == 2
            raise RuntimeError("inside")
    assert _triton.TUNING == before
    with pytest.raises(KeyError, match=r"unknown tuning keys \['tile'\]"):
        with _triton.tuned(tile=1):
            pass
    assert _triton.TUNING == before


def test_default_warps_grow_with_the_tile():
    with _triton.tuned(num_warps=None):
        assert _triton._warps(64, 16) == 4 and _triton._warps(64, 64) == 8


def test_sweep_dry_run_starts_from_the_defaults_and_summarises(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # the reference ops: seconds
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kernels_tune.py"), "--device", "cpu",
                           "--batch", "2", "--resolution", "32", "--budget-s", "1", "--out", str(tmp_path)],
                          check=False, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "kernels_tune.json").read_text())
    first = result["rows"][0]
    assert first["setting"] == {k: _triton.TUNING[k] for k in ("max_tile", "programs_per_sm", "num_warps")}
    # T2: channel_stats and scale_channels in stages 1-3, spatial_gate in all four
    assert len(first["cases"]) == 10 and all(c["fwd+bwd_ms"] > 0 for c in first["cases"].values())
    assert len(result["rows"]) + len(result["skipped"]) == 24
    best = result["summary"]["best_total_fwd+bwd"]
    assert best["ms"] <= best["default_ms"]


def test_without_cuda_the_sweep_says_so_and_writes_nothing(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kernels_tune.py"), "--out", str(tmp_path)],
                          check=False, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr
    assert list(tmp_path.iterdir()) == []

"""benchmarks/train_throughput.py: which runs a round measures, its Inductor options, and a CPU run that writes every
label."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import pytest  # noqa: E402
from inductor_settings import apply_inductor_settings  # noqa: E402
from train_throughput import measured_runs  # noqa: E402


def test_fused_variants_only_for_patnets():
    assert measured_runs(["patnet_t2", "fasternet_t2"], "off") == [
        ("patnet_t2", "patnet_t2", False), ("fasternet_t2", "fasternet_t2", False)]
    assert measured_runs(["patnet_t2", "fasternet_t2"], "on") == [
        ("patnet_t2+fused", "patnet_t2", True), ("fasternet_t2", "fasternet_t2", False)]
    assert [label for label, _, _ in measured_runs(["patnet_t2", "fasternet_t2"], "both")] == [
        "patnet_t2", "patnet_t2+fused", "fasternet_t2"]


def test_cpu_run_reports_plain_fused_and_peer(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "t.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--archs", "patnet_t0",
                           "fasternet_t0", "--resolution", "32", "--batch-size", "4", "--steps", "1", "--rounds", "1",
                           "--device", "cpu", "--fused-kernels", "both", "--out", str(out)],
                          check=False, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert list(summary["ratio_vs_fasternet_t0"]) == ["patnet_t0", "patnet_t0+fused", "fasternet_t0"]
    assert summary["best"]["patnet_t0+fused"]["fused_kernels"] is True
    assert summary["best"]["patnet_t0"]["fused_kernels"] is False
    assert summary["ratio_vs_fasternet_t0"]["fasternet_t0"] == 1.0
    assert summary["inductor"] == {}
    # the warm-up steps' wall time is recorded (it holds compiling when --compile is given)
    assert all(r["warmup_s"] > 0 for r in summary["best"].values())


def test_inductor_options_set_nested_keys_and_restore():
    import torch._inductor.config as inductor_config

    # Inductor's own patch restores them (pytest's monkeypatch deletes a config module's attribute on undo)
    with inductor_config.patch({"combo_kernels": False, "triton.cooperative_reductions": False}):
        applied = apply_inductor_settings(["combo_kernels=true", "triton.cooperative_reductions=True"])
        assert applied == {"combo_kernels": True, "triton.cooperative_reductions": True}
        assert inductor_config.combo_kernels is True and inductor_config.triton.cooperative_reductions is True
    assert inductor_config.combo_kernels is False


@pytest.mark.parametrize("pair,message", [("combo_kernels", "KEY=VALUE"), ("no_such_option=1", "no option"),
                                          ("triton.no_such=1", "no option")])
def test_inductor_options_reject_bad_input(pair, message):
    with pytest.raises(SystemExit, match=message):
        apply_inductor_settings([pair])

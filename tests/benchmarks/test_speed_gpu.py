"""benchmarks/speed_gpu.py: the graph and compile steps run each precision under its own TF32 regime (before
2026-12-01 they all ran under PyTorch's defaults) and restore the caller's flags; bad forms are refused up front."""
import argparse
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import speed_gpu  # noqa: E402


def test_each_precision_runs_under_its_tf32_flags_and_they_are_restored(tmp_path, monkeypatch):
    args = argparse.Namespace(out=str(tmp_path), batch=1, resolution=32, device="cpu", deadline=1e9,
                              compile_min_left=0.0, variant_precisions=["float32-tf32", "float32-strict", "float32"])
    run = speed_gpu.Run(args)
    seen = []
    monkeypatch.setattr(speed_gpu.Run, "_variant", lambda self, kind, size, precision, models, x: seen.append(
        (precision, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)))
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, False  # PyTorch's defaults
    try:
        run.variants("compile", ["t0"], ("patnet-deploy",))
        after = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
    assert seen == [("float32-tf32", True, True), ("float32-strict", False, False), ("float32", True, False)]
    assert after == (True, False)


def test_unknown_compile_form_is_a_one_line_usage_error(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "speed_gpu.py"), "--out", str(tmp_path),
                           "--compile-forms", "patnet-fast,nope"], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert "unknown form 'nope'" in proc.stderr and "patnet-deploy" in proc.stderr
    assert not any(tmp_path.iterdir())  # nothing written


def test_unknown_inductor_option_is_refused_before_anything_runs(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "speed_gpu.py"), "--out", str(tmp_path),
                           "--device", "cpu", "--inductor", "no_such_option=1"], capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode != 0
    assert "torch._inductor.config has no option 'no_such_option'" in proc.stderr
    assert not any(tmp_path.iterdir())


def test_markdown_has_a_table_per_step_that_ran_naming_its_mode_and_options(tmp_path):
    args = argparse.Namespace(out=str(tmp_path), batch=256, resolution=224, device="cpu", deadline=1e9,
                              compile_mode="max-autotune-no-cudagraphs", compile_graphs=True)
    run = speed_gpu.Run(args)
    run.results["environment"] = {"device": "NVIDIA H200", "inductor": {"combo_kernels": True}}
    run.results["compile"] = {"t2": {"bfloat16-cl": {"img_per_s": {"patnet-fast": 67816.7, "fasternet-fast": 71236.5},
                                                     "vs_fasternet": {"patnet-fast": 0.952}}}}
    text = run.markdown()
    assert "Inductor options {'combo_kernels': True}" in text
    assert "compile (torch.compile mode max-autotune-no-cudagraphs + CUDA graph)" in text
    assert "| size | precision | patnet-fast | fasternet-fast | patnet-fast / FN |" in text
    assert "| t2 | bfloat16-cl | 67816.7 | 71236.5 | 0.952 |" in text
    assert "table (eager)" not in text and "graphs (" not in text  # steps that did not run get no empty table

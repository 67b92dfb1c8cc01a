"""benchmarks/inference_traffic.py: bytes per image of the deployment forms, and the GPU-formulation rule."""
import json
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from speed_common import bytes_per_image  # noqa: E402


def test_every_form_and_precision_is_counted(tmp_path):
    out = tmp_path / "traffic.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "inference_traffic.py"), "--sizes", "t0",
                           "--resolution", "32", "--out", str(out)], capture_output=True, text=True, timeout=300,
                          check=False, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())["results"]
    assert [(r["size"], r["precision"]) for r in results] == [("t0", "bfloat16-cl"), ("t0", "float32")]
    bf16, fp32 = (r["mib_per_image"] for r in results)
    assert set(bf16) == {"patnet-deploy", "patnet-fast", "fasternet-fx", "fasternet-fast"}
    for form in bf16:  # half the bytes per element: about half the traffic (a few float32 statistics stay)
        assert 0.4 < bf16[form] / fp32[form] < 0.6, form
    assert bf16["patnet-fast"] < bf16["patnet-deploy"]  # the fast path exists to move less


def test_gpu_formulation_counts_relu_as_its_producers_epilogue():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(inplace=True)).eval()
    plain, by_op = bytes_per_image(model, resolution=8)
    fused, fused_by_op = bytes_per_image(model, resolution=8, gpu_formulation=True)
    assert by_op["aten::relu_"] == 2 * 4 * 8 * 8 * 4  # read and write of the conv output, per image
    assert "aten::relu_" not in fused_by_op and plain - fused == by_op["aten::relu_"]
    assert torch.is_inference_mode_enabled() is False

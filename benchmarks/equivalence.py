"""How closely the deployment forms reproduce the trained network: fused vs trained (float64, random BN/LN
statistics and position biases, two resolutions) for every variant, and ONNX Runtime vs PyTorch for the fused T0.

    .venv/bin/python benchmarks/equivalence.py
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from patsearch.arch import VARIANTS
from patsearch.export import export_onnx
from patsearch.models import create_model, fuse_model
from patsearch.models.statistics import randomize_statistics


def main() -> None:
    generator = torch.Generator().manual_seed(0)
    print("| variant | max relative error, fused vs trained (float64), 224 and 160x256 |")
    print("|---|---|")
    for name in VARIANTS:
        model = create_model(name).double().eval()
        randomize_statistics(model, generator)
        fused = fuse_model(model)
        worst = 0.0
        for size in ((224, 224), (160, 256)):
            x = torch.randn(2, 3, *size, generator=generator, dtype=torch.float64)
            with torch.no_grad():
                expected, actual = model(x), fused(x)
            worst = max(worst, ((expected - actual).abs().max() / expected.abs().max()).item())
        print(f"| {name} | {worst:.1e} |")
    import onnxruntime as ort

    model = create_model("patnet_t0").eval()
    randomize_statistics(model, generator)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "t0.pt"
        torch.save({"model": model.state_dict()}, ckpt)
        out = export_onnx("patnet_t0", Path(tmp) / "t0.onnx", checkpoint=ckpt, resolution=224)
        x = torch.randn(3, 3, 224, 224, generator=generator)
        onnx_out = ort.InferenceSession(str(out)).run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        torch_out = fuse_model(model)(x).numpy()
    print(f"\nONNX Runtime vs PyTorch, fused patnet_t0, batch 3, 224x224, float32: max abs difference "
          f"{np.abs(onnx_out - torch_out).max():.1e} (largest |logit| {np.abs(torch_out).max():.2f})")


if __name__ == "__main__":
    main()

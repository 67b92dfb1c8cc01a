"""Does a torch.compile'd (Inductor) PATNet training step compute what eager computes?

    python benchmarks/compile_equivalence.py [--models patnet_t0,fasternet_t0] [--out OUT] [--device cuda]

Comparing compiled float32 with eager float32 directly mixes two things: a compiler bug, and float32 rounding that
a training-mode network amplifies (BatchNorm over 4 images of 2x2 maps divides by a tiny std; a conv bias in
front of a BatchNorm has a true gradient of zero, so any rounding is an "infinite" relative error). This script
separates them. The ground truth is the eager step in float64; eager float32 and compiled float32 are both scored
against it, and compiled float64 is scored against it too (a real code-generation bug shows up there, rounding
does not). Per step: the output's max relative error and the gradients' global relative error
||g - g_ref|| / ||g_ref|| over all parameters, plus the worst single parameter (parameters whose reference
gradient is below 1e-6 of the largest are listed apart: their relative error is rounding noise over ~0).
Dropout and drop-path draw the same numbers on both sides (Inductor's ``fallback_random``, and a seed per step).
timm's FasterNet-T0 runs as a control. Writes OUT/compile_equivalence.json. ~1-3 min on a GPU, ~5 min on a CPU.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from patsearch.models import create_model  # noqa: E402

TINY = 1e-6  # a parameter whose reference gradient norm is below this fraction of the largest is "near zero"


def build(name: str, device: str, dtype: torch.dtype) -> torch.nn.Module:
    torch.manual_seed(0)
    if name.startswith("fasternet"):
        import timm

        model = timm.create_model(name, num_classes=10)
    else:
        model = create_model(name, num_classes=10)
    return model.to(device=device, dtype=dtype).train()


def step(model, x, y, seed: int):
    module = getattr(model, "_orig_mod", model)  # a compiled wrapper prefixes its parameter names
    module.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    out = model(x)
    F.cross_entropy(out.float(), y).backward()
    return out.detach().double(), {n: p.grad.detach().double() for n, p in module.named_parameters()
                                   if p.grad is not None}


def compare(ref, other) -> dict:
    out_ref, g_ref = ref
    out, g = other
    num = sum(float((g[n] - g_ref[n]).pow(2).sum()) for n in g_ref)
    den = sum(float(g_ref[n].pow(2).sum()) for n in g_ref)
    norms = {n: float(g_ref[n].norm()) for n in g_ref}
    top = max(norms.values())
    per = {n: float((g[n] - g_ref[n]).norm()) / max(norms[n], 1e-300) for n in g_ref}
    sized = {n: v for n, v in per.items() if norms[n] >= TINY * top}
    worst = max(sized, key=sized.get)
    return {"output_rel": float((out - out_ref).abs().max() / out_ref.abs().max()),
            "grad_global_rel": (num / den) ** 0.5,
            "grad_worst_param": worst, "grad_worst_rel": sized[worst],
            "near_zero_grads": sorted(n for n in per if n not in sized)}


def check(name: str, device: str, resolution: int, batch: int) -> dict:
    import torch._inductor.config as inductor_config

    inductor_config.fallback_random = True
    torch.manual_seed(123)
    x64 = torch.randn(batch, 3, resolution, resolution, device=device, dtype=torch.float64)
    y = torch.randint(0, 10, (batch,), device=device)
    result: dict = {}
    eager64 = build(name, device, torch.float64)
    eager32 = build(name, device, torch.float32)
    comp32_model = build(name, device, torch.float32)
    comp64_model = build(name, device, torch.float64)
    torch._dynamo.reset()
    comp32 = torch.compile(comp32_model)
    comp64 = torch.compile(comp64_model)
    for s in (1, 2):  # two steps: the second runs the compiled graph without tracing
        ref = step(eager64, x64, y, s)
        t = time.time()
        r32 = step(eager32, x64.float(), y, s)
        c32 = step(comp32, x64.float(), y, s)
        c64 = step(comp64, x64, y, s)
        result[f"step{s}"] = {"eager_fp32_vs_fp64": compare(ref, r32),
                              "compiled_fp32_vs_fp64": compare(ref, c32),
                              "compiled_fp64_vs_fp64": compare(ref, c64),
                              "compiled_fp32_vs_eager_fp32": compare(r32, c32),
                              "seconds": round(time.time() - t, 1)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="patnet_t0,fasternet_t0")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("compile_equivalence_out"))
    args = parser.parse_args()
    if args.device == "cuda":  # TF32 would make "float32" mean 10-bit mantissas in eager and compiled alike
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    report = {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu", "torch": torch.__version__,
              "resolution": args.resolution, "batch": args.batch, "date": time.strftime("%Y-%m-%d"), "models": {}}
    for name in args.models.split(","):
        try:
            report["models"][name] = check(name, args.device, args.resolution, args.batch)
        except Exception as exc:  # keep the other model's result
            report["models"][name] = {"error": f"{type(exc).__name__}: {exc}"[:1500]}
        r = report["models"][name]
        for key, value in (r.get("step2") or r).items():
            print(name, key, value, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / "compile_equivalence.json.tmp"
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(args.out / "compile_equivalence.json")


if __name__ == "__main__":
    main()

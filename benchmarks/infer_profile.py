"""Where a compiled, graphed inference forward's time goes: per kernel family (convolution/GEMM, Inductor
reductions and pointwise kernels, attention, ...) and the top kernels, for PATNet's and FasterNet's deployment forms
at one size and precision, each prepared as ``speed_gpu.py --steps compile --compile-graphs`` times it.

    python benchmarks/infer_profile.py --size t2 --precision float32 --out prof.json
    python benchmarks/infer_profile.py --size s --precision bfloat16-cl --forms patnet-fast,fasternet-fx

Precisions are ``speed_gpu.PRECISIONS`` (TF32 set as each names). Without a GPU it profiles the eager forward on
the CPU (no kernel families: the CPU runs no device kernels).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from speed_common import build_forms, unknown_form_error  # noqa: E402
from speed_gpu import PRECISIONS, example_input, tf32_regime  # noqa: E402
from train_profile import family_table, timed_and_profiled  # noqa: E402

from patsearch.io import atomic_write_json  # noqa: E402
from patsearch.models.inference import prepare_inference  # noqa: E402


def profile_form(name: str, model: torch.nn.Module, x: torch.Tensor, args: argparse.Namespace) -> dict:
    gpu = x.is_cuda
    fn, _ = prepare_inference(model, x, compile_mode="default" if gpu else None, cuda_graph=gpu)
    with torch.inference_mode():
        call_s, per_kernel = timed_and_profiled(lambda: fn(x), x.device, args.warmup, args.steps)
    kernel_us = sum(sum(v) for v in per_kernel.values())
    top = sorted(per_kernel.items(), key=lambda kv: -sum(kv[1]))[:args.top]
    return {"form": name, "call_ms": 1e3 * call_s, "img_s": x.shape[0] / call_s,
            "kernels_per_call": sum(len(v) for v in per_kernel.values()) / args.steps,
            "kernel_ms_per_call": kernel_us / 1e3 / args.steps,
            "families": family_table(per_kernel, args.steps),
            "top_kernels": [{"name": k[:120], "ms_per_call": sum(v) / 1e3 / args.steps,
                             "calls": len(v) / args.steps} for k, v in top]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="t2")
    p.add_argument("--precision", default="float32", choices=sorted(PRECISIONS))
    p.add_argument("--forms", default="patnet-deploy,patnet-fast,fasternet-fx,fasternet-fast")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    error = unknown_form_error(args.forms.split(","))
    if error:
        p.error(f"--forms: {error}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    x = example_input(args.precision, args.batch, args.resolution, device)
    with tf32_regime(PRECISIONS[args.precision][2]):
        results = [profile_form(name, model, x, args)
                   for name, model in build_forms(args.size, tuple(args.forms.split(","))).items()]
    for r in results:
        print(f"{args.size} {args.precision} {r['form']}: {r['img_s']:.0f} img/s, {r['call_ms']:.2f} ms, "
              f"{r['kernels_per_call']:.0f} kernels, {r['kernel_ms_per_call']:.2f} ms in kernels", flush=True)
        for fam, row in r["families"].items():
            print(f"   {fam:18s} {row['ms_per_step']:8.2f} ms {row['calls_per_step']:6.0f}x")
        for k in r["top_kernels"][:12]:
            print(f"   {k['ms_per_call']:8.3f} ms {k['calls']:5.0f}x  {k['name']}")
    if args.out:
        atomic_write_json(args.out, {"size": args.size, "precision": args.precision, "batch": args.batch,
                                     "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                                     "command": " ".join(sys.argv), "results": results}, indent=1)


if __name__ == "__main__":
    main()

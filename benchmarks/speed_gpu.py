"""The GPU: PATNet-X vs FasterNet-X throughput, deployment forms, side by side in one process.

    PYTHONPATH=$PWD python benchmarks/speed_gpu.py --out $OUT            # H100: the full run (~8 min)
    PYTHONPATH=$PWD python benchmarks/speed_gpu.py --device cpu --batch 2 --resolution 64 --sizes t0 \
        --compile-sizes t0 --out /tmp/dry                                 # dry run on a CPU

For each size T0..L and each precision (float32 NCHW; bfloat16 channels-last) it times, interleaved, the four
forms of :mod:`speed_common` (PATNet deploy / fast, FasterNet fx / slicing) at batch 256, then: which SDPA
backend runs PATNet's biased attention, a torch.profiler per-op summary of T2 and FasterNet-T2, CUDA graphs and
torch.compile for the sizes asked. Writes ``results.json``, ``table.md``, ``profile.txt`` under ``--out``
after every step, so a run cut short still returns what it measured.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from device_ceilings import bf16_matmul_tflops, copy_bandwidth_gb_s  # noqa: E402
from inductor_settings import add_inductor_argument, apply_inductor_settings  # noqa: E402
from speed_common import (  # noqa: E402
    COLUMN_NAMES,
    SIZES,
    ScriptRun,
    build_forms,
    bytes_per_image,
    ratios,
    unknown_form_error,
)

from patsearch.io import atomic_write_text  # noqa: E402
from patsearch.models.inference import prepare_inference  # noqa: E402
from patsearch.profiler.timing import Budget, time_interleaved  # noqa: E402

# name -> (dtype, channels-last, TF32 allowed). "float32" keeps PyTorch's defaults (cuDNN convolutions may use
# TF32, matmuls not: a network that computes its 1x1 convs or attention as GEMMs pays full float32 there while its
# peer's convolutions get TF32); "float32-tf32" allows TF32 everywhere and "float32-strict" nowhere (the
# V100-like regime the paper measured in), the two regimes where both networks' arithmetic is treated alike.
PRECISIONS = {"float32": (torch.float32, False, None), "bfloat16-cl": (torch.bfloat16, True, None),
              "float32-strict": (torch.float32, False, False), "float32-tf32": (torch.float32, False, True)}


@contextlib.contextmanager
def tf32_regime(allowed: bool | None) -> Iterator[None]:
    """TF32 in cuDNN and cuBLAS both allowed, both refused, or (None) left as they are; restored afterwards."""
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    if allowed is not None:
        torch.backends.cudnn.allow_tf32 = allowed
        torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def example_input(precision: str, batch: int, resolution: int, device: str) -> torch.Tensor:
    """A random (batch, 3, resolution, resolution) input in the precision's dtype and memory format."""
    dtype, channels_last, _ = PRECISIONS[precision]
    x = torch.randn(batch, 3, resolution, resolution, device=device, dtype=dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x

BUDGET = Budget(warmup_s=0.3, min_samples=10, target_s=0.5, max_samples=40, sample_s=0.005)


class Run(ScriptRun):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.gpu = args.device == "cuda"
        self.results: dict = {"command": " ".join(sys.argv), "batch": args.batch, "resolution": args.resolution,
                              "table": {}, "graphs": {}, "compile": {}, "sdpa": {}, "bytes_per_image": {},
                              "checks": {}}
        self.profile_text: list[str] = []

    def left(self) -> float:
        return self.args.deadline - self.elapsed()

    def log(self, *msg: object) -> None:
        print(f"[{self.elapsed():6.1f}s]", *msg, flush=True)

    def save(self) -> None:
        for name, text in (("results.json", json.dumps(self.results, indent=1)), ("table.md", self.markdown()),
                           ("profile.txt", "\n".join(self.profile_text))):
            atomic_write_text(self.out / name, text)

    # --- environment ---------------------------------------------------------------------------------------
    def environment(self) -> None:
        import platform

        import timm

        env = {"torch": torch.__version__, "timm": timm.__version__, "python": platform.python_version(),
               "device": torch.cuda.get_device_name(0) if self.gpu else platform.processor() or "cpu",
               "cudnn": torch.backends.cudnn.version() if self.gpu else None,
               "cudnn_tf32": torch.backends.cudnn.allow_tf32, "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
               "fast_path": "patsearch.models.forms.accelerate (patnet-fast rows); others: deployment form as built"}
        if self.gpu:
            torch.backends.cudnn.benchmark = True
            env["copy_bandwidth_GBps"] = round(copy_bandwidth_gb_s("cuda"), 1)
            env["bf16_matmul_TFLOPs"] = round(bf16_matmul_tflops("cuda"), 1)
            torch.cuda.empty_cache()
        self.results["environment"] = env
        self.log("environment", env)

    # --- the side-by-side table ----------------------------------------------------------------------------
    def example(self, precision: str) -> torch.Tensor:
        return example_input(precision, self.args.batch, self.args.resolution, self.args.device)

    def table(self) -> None:
        for size in self.args.sizes:
            if self.left() < self.args.reserve:
                self.log(f"skip table {size}: {self.left():.0f}s left")
                continue
            models = build_forms(size)
            # Bytes per image moved by eager kernels (device independent; counted on the CPU in float32).
            if self.args.count_bytes:
                self.results["bytes_per_image"][size] = {
                    k: round(bytes_per_image(m, self.args.resolution)[0] / 1e6, 2) for k, m in models.items()}
            for precision in self.args.precisions:
                if precision == "float32-strict" and size not in self.args.strict_sizes:
                    continue
                with tf32_regime(PRECISIONS[precision][2]):
                    x = self.example(precision)
                    prepared = {k: prepare_inference(m, x)[0] for k, m in models.items()}
                    with torch.inference_mode():
                        ref = prepared["patnet-deploy"](x).float()
                        err, err_k = (((prepared[f](x).float() - ref).norm() / ref.norm()).item()
                                      for f in ("patnet-fast", "patnet-fastk"))
                    self.results["checks"][f"{size}/{precision}"] = err
                    self.results["checks"][f"{size}/{precision}/fastk"] = err_k
                    timings = time_interleaved([(m, x) for m in prepared.values()], gpu=self.gpu, budget=BUDGET)
                    values = {k: round(self.args.batch * 1000.0 / t.median_ms, 1)
                              for k, t in zip(prepared, timings)}
                    spread = {k: round(t.spread * 100, 1) for k, t in zip(prepared, timings)}
                    self.results["table"].setdefault(size, {})[precision] = {
                        "img_per_s": values, "spread_pct": spread, "vs_fasternet": ratios(values, "throughput"),
                        "fast_vs_deploy_rel_err": err, "fastk_vs_deploy_rel_err": err_k}
                    self.log(size, precision, values, ratios(values, "throughput"),
                             f"err {err:.1e}, fastk {err_k:.1e}")
                    del prepared
                if self.gpu:
                    torch.cuda.empty_cache()
                self.save()

    # --- attention backend ---------------------------------------------------------------------------------
    def sdpa(self) -> None:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        b, heads, n, d = self.args.batch, 4, 49, 96  # T2 stage 4: Cu = 384, 4 heads, 7x7 tokens
        dtype = torch.bfloat16 if self.gpu else torch.float32
        q, k, v = (torch.randn(b, heads, n, d, device=self.args.device, dtype=dtype) for _ in range(3))
        bias = torch.randn(1, heads, n, n, device=self.args.device, dtype=dtype)
        out = {}
        for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION,
                        SDPBackend.MATH, None):
            name = "default" if backend is None else backend.name
            try:
                ctx = sdpa_kernel([backend]) if backend is not None else None
                fn = lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # noqa
                if ctx is not None:
                    with ctx:
                        t = time_interleaved([(lambda _: fn(), None)], gpu=self.gpu, budget=BUDGET)[0]
                else:
                    t = time_interleaved([(lambda _: fn(), None)], gpu=self.gpu, budget=BUDGET)[0]
                out[name] = round(t.median_ms * 1000, 1)
            except Exception as exc:  # noqa: BLE001 - a backend that refuses the float mask is the finding
                out[name] = f"unavailable: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
        self.results["sdpa"] = {"shape": [b, heads, n, d], "dtype": str(dtype), "us": out}
        self.log("sdpa", out)
        self.save()

    # --- single-op candidates for the fast path -----------------------------------------------------------
    def micro(self) -> None:
        """fc1 (1x1 + bias + ReLU) and the channel statistics at T2's stage-1 shapes, several ways."""
        import torch.nn.functional as F

        b, c, hw = self.args.batch, 64, self.args.resolution // 4
        out = {}
        for precision in self.args.precisions:
            if precision == "float32-strict":
                continue
            dtype, cl, _ = PRECISIONS[precision]
            x = torch.randn(b, c, hw, hw, device=self.args.device, dtype=dtype)
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            w = torch.randn(2 * c, c, 1, 1, device=x.device, dtype=dtype) * 0.1
            bias = torch.randn(2 * c, device=x.device, dtype=dtype)
            w2 = torch.randn(c, 2 * c, 1, 1, device=x.device, dtype=dtype) * 0.1
            h = F.relu(F.conv2d(x, w, bias))
            cands = {
                "fc1 conv+bias+relu_": lambda: torch.relu_(F.conv2d(x, w, bias)),
                "fc1 conv(no bias)": lambda: F.conv2d(x, w),
                "fc2 conv+add": lambda: F.conv2d(h, w2) + x,
                "std_mean x2": lambda: torch.std_mean(x[:, 16:], dim=(2, 3)),
                "mul into buf": lambda: torch.mul(x[:, 16:], x[:, :48, :1, :1], out=torch.empty_like(x)[:, 16:]),
                "x.clone (bandwidth yardstick)": lambda: x.clone(),
            }
            if self.gpu:
                cands["fc1 cudnn_convolution_relu"] = lambda: torch.cudnn_convolution_relu(
                    x, w, bias, (1, 1), (0, 0), (1, 1), 1)
            if cl:
                xf = x.permute(0, 2, 3, 1).reshape(-1, c)
                hf = h.permute(0, 2, 3, 1).reshape(-1, 2 * c)
                wt, w2t = w.view(2 * c, c).t(), w2.view(c, 2 * c).t()
                cands["fc1 _addmm_activation(relu)"] = lambda: torch._addmm_activation(bias, xf, wt)
                cands["fc2 addmm(residual, beta=1)"] = lambda: torch.addmm(xf, hf, w2t)
            res = {}
            for name, fn in cands.items():
                try:
                    t = time_interleaved([(lambda _, f=fn: f(), None)], gpu=self.gpu, budget=BUDGET)[0]
                    res[name] = round(t.median_ms * 1000, 1)
                except Exception as exc:  # noqa: BLE001
                    res[name] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
            out[precision] = res
            self.log("micro", precision, res)
        self.results["micro_us"] = {"shape": [b, c, hw, hw], **out}
        self.save()

    # --- torch.profiler per-op summary ---------------------------------------------------------------------
    def profile(self) -> None:
        from torch.profiler import ProfilerActivity, profile

        size = self.args.profile_size
        models = build_forms(size)
        for precision in self.args.precisions:
            if precision == "float32-strict":
                continue
            x = self.example(precision)
            for name in ("patnet-deploy", "patnet-fast", "fasternet-slicing", "fasternet-fast"):
                if self.left() < self.args.reserve / 2:
                    return
                fn, _ = prepare_inference(models[name], x)
                acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.gpu else [])
                with torch.inference_mode():
                    for _ in range(3):
                        fn(x)
                    if self.gpu:
                        torch.cuda.synchronize()
                    with profile(activities=acts) as prof:
                        for _ in range(5):
                            fn(x)
                        if self.gpu:
                            torch.cuda.synchronize()
                key = "self_cuda_time_total" if self.gpu else "self_cpu_time_total"
                table = prof.key_averages().table(sort_by=key, row_limit=30, max_name_column_width=60)
                self.profile_text.append(f"==== {size} {name} {precision} batch {self.args.batch} (5 calls) ====\n"
                                         f"{table}")
                del fn
                self.save()
            if self.gpu:
                torch.cuda.empty_cache()
        self.log("profile done")

    # --- CUDA graphs and torch.compile ---------------------------------------------------------------------
    def variants(self, kind: str, sizes: list[str], forms: tuple[str, ...]) -> None:
        for size in sizes:
            for precision in self.args.variant_precisions:
                if self.left() < (20 if kind == "graphs" else self.args.compile_min_left):
                    self.log(f"skip {kind} {size} {precision}: {self.left():.0f}s left")
                    return
                models = build_forms(size, forms)
                x = self.example(precision)
                with tf32_regime(PRECISIONS[precision][2]):
                    self._variant(kind, size, precision, models, x)

    def _variant(self, kind: str, size: str, precision: str, models: dict, x: torch.Tensor) -> None:
        items = {}
        for name, model in models.items():
            try:
                start = time.perf_counter()
                if kind == "graphs":
                    fn, _ = prepare_inference(model, x, cuda_graph=True)
                else:
                    fn, _ = prepare_inference(model, x, compile_mode=self.args.compile_mode,
                                              cuda_graph=self.args.compile_graphs and self.gpu)
                    with torch.inference_mode():
                        fn(x)
                items[name] = fn
                self.log(f"{kind} {size} {precision} {name}: ready in {time.perf_counter() - start:.0f}s")
            except Exception as exc:  # noqa: BLE001 - record and go on
                self.log(f"{kind} {size} {precision} {name} failed: {type(exc).__name__}: {exc}")
                traceback.print_exc()
        if not items:
            return
        timings = time_interleaved([(f, x) for f in items.values()], gpu=self.gpu, budget=BUDGET)
        values = {k: round(self.args.batch * 1000.0 / t.median_ms, 1) for k, t in zip(items, timings)}
        self.results[kind].setdefault(size, {})[precision] = {
            "img_per_s": values, "vs_fasternet": ratios(values, "throughput"),
            **({"mode": self.args.compile_mode, "cuda_graph": self.args.compile_graphs}
               if kind == "compile" else {})}
        self.log(kind, size, precision, values, ratios(values, "throughput"))
        del items
        if self.gpu:
            torch.cuda.empty_cache()
        self.save()

    # --- markdown ------------------------------------------------------------------------------------------
    def markdown(self) -> str:
        r = self.results
        env = r.get("environment", {})
        lines = [f"Device: {env.get('device')}, torch {env.get('torch')}, timm {env.get('timm')}, batch "
                 f"{r['batch']}, {r['resolution']}x{r['resolution']}; copy bandwidth "
                 f"{env.get('copy_bandwidth_GBps')} GB/s, bf16 matmul {env.get('bf16_matmul_TFLOPs')} TFLOP/s; "
                 f"cuDNN TF32 {env.get('cudnn_tf32')}; Inductor options {env.get('inductor') or 'none'}.",
                 f"Command: `{r['command']}`"]
        steps = [("table", "eager", r["table"])] + [
            (kind, self._variant_label(kind), r[kind]) for kind in ("graphs", "compile")]
        for kind, label, results in steps:
            rows = [(size, precision, row) for size, per in results.items() for precision, row in per.items()]
            if not rows:
                continue
            forms = [f for f in COLUMN_NAMES if any(f in row["img_per_s"] for _, _, row in rows)]
            patnets = [f for f in forms if f.startswith("patnet-")]
            lines += ["", f"{kind} ({label}), img/s; ratios: the PATNet form / the best FasterNet form", "",
                      "| size | precision | " + " | ".join(forms) + " | " + " | ".join(f"{f} / FN" for f in patnets)
                      + " |", "|---" * (2 + len(forms) + len(patnets)) + "|"]
            for size, precision, row in rows:
                v, q = row["img_per_s"], row["vs_fasternet"]
                lines.append(f"| {size} | {precision} | " + " | ".join(str(v.get(f, "-")) for f in forms) + " | "
                             + " | ".join(str(q.get(f, "-")) for f in patnets) + " |")
        if r["sdpa"]:
            lines.append(f"\nSDPA {r['sdpa']}")
        if r["bytes_per_image"]:
            lines.append(f"\nMB moved per image (eager kernels, float32): {r['bytes_per_image']}")
        return "\n".join(lines) + "\n"

    def _variant_label(self, kind: str) -> str:
        if kind == "graphs":
            return "eager forward captured in a CUDA graph"
        graphs = " + CUDA graph" if self.args.compile_graphs else ""
        return f"torch.compile mode {self.args.compile_mode}{graphs}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.environ.get("OUT", "speed_out"))
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--sizes", default=",".join(SIZES))
    p.add_argument("--precisions", default="float32,bfloat16-cl,float32-strict")
    p.add_argument("--strict-sizes", default="t0,t2,m", help="sizes also measured in float32-strict")
    p.add_argument("--variant-precisions", default="bfloat16-cl")
    p.add_argument("--profile-size", default="t2")
    p.add_argument("--graph-sizes", default=",".join(SIZES))
    p.add_argument("--compile-sizes", default="t2")
    p.add_argument("--compile-mode", default="default")
    p.add_argument("--compile-forms", default="patnet-fast,fasternet-fx,fasternet-fast",
                   help="forms the compile step compiles (speed_common.COLUMNS)")
    p.add_argument("--compile-min-left", type=float, default=150.0,
                   help="seconds before the deadline under which the compile step starts no further size")
    p.add_argument("--compile-graphs", action="store_true", help="also capture the compiled forward in a CUDA graph")
    add_inductor_argument(p)
    p.add_argument("--count-bytes", action="store_true", help="count bytes per image with a dispatch mode")
    p.add_argument("--deadline", type=float, default=540.0, help="seconds; later steps are skipped after it")
    p.add_argument("--reserve", type=float, default=200.0, help="seconds kept for the steps after the table")
    p.add_argument("--steps", default="table,profile,graphs")
    args = p.parse_args()
    error = unknown_form_error(f for f in args.compile_forms.split(",") if f)
    if error:
        p.error(f"--compile-forms: {error}")
    args.sizes = [s for s in args.sizes.split(",") if s]
    args.precisions = [s for s in args.precisions.split(",") if s]
    args.strict_sizes = [s for s in args.strict_sizes.split(",") if s]
    args.variant_precisions = [s for s in args.variant_precisions.split(",") if s]
    inductor = apply_inductor_settings(args.inductor)
    run = Run(args)
    run.environment()
    run.results["environment"]["inductor"] = inductor
    steps = args.steps.split(",")
    for step in steps:
        try:
            if step == "table":
                run.table()
            elif step == "micro":
                run.micro()
            elif step == "sdpa":
                run.sdpa()
            elif step == "profile":
                run.profile()
            elif step == "graphs" and run.gpu:
                run.variants("graphs", [s for s in args.graph_sizes.split(",") if s], COLUMN_NAMES)
            elif step == "compile":
                run.variants("compile", [s for s in args.compile_sizes.split(",") if s],
                             tuple(f for f in args.compile_forms.split(",") if f))
        except Exception:  # noqa: BLE001 - keep what the other steps measure
            run.log(f"step {step} failed")
            traceback.print_exc()
        run.save()
    print(run.markdown())


if __name__ == "__main__":
    main()

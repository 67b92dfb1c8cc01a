"""The fused PAT kernels (:mod:`patsearch.kernels`) against their PyTorch references on CUDA.

    PYTHONPATH=$PWD python benchmarks/kernels_gpu.py --out $OUT              # H200: < 2 min
    PYTHONPATH=$PWD python benchmarks/kernels_gpu.py --out $OUT --no-compile # skip the compiled references
    PYTHONPATH=$PWD python benchmarks/kernels_gpu.py --device cpu --batch 2 --resolution 32 --no-compile \
        --out /tmp/dry                                # dry run of the script's logic on a CPU (reference ops)

For every shape where PATNet-T2 (224 px, batch 256, bf16, channels-last; shapes from ``patsearch.arch``) runs an
op, it times the fused op, the same arithmetic in eager PyTorch, and that reference under ``torch.compile``;
forward alone (inference) and forward + backward (training). Inputs are what the blocks hand over: the untouched
3/4 of a stage's channels (Gaussian SE) or the first half (PAT_sp) as a channel *slice* of a (B, C, H, W)
channels-last tensor. One more case, ``pat_ch_branch``, is PAT_ch's whole untouched branch in training,
``BN(x2 * GaussianSE(x2))`` with the real :class:`~patsearch.models.channel_attention.GaussianSE` and a train-mode BN,
against channel_stats -> the SE's (1,2) conv + BN + Hard-Sigmoid -> :func:`~patsearch.kernels.gated_batch_norm`
(the outer BN folded into scale_channels from the (B, C) statistics). Each case is also checked for equivalence
(max abs / relative error of outputs
and gradients vs the float32 reference), in bf16 and, on one shape per op, in float32 (pat_ch_branch with its
BNs in eval mode there: batch statistics of (B, C, 1, 1) logits would amplify bf16 rounding, not kernel error).

Times: ``ms`` is ``triton.testing.do_bench`` (median, L2 flushed before each call, host launch cost included
where the host is slower than the GPU); ``graph_ms`` the same call replayed in a CUDA graph (device time only,
L2 warm: stage-3/4 tensors then sit in the 60 MB L2, so their GB/s can exceed HBM's). ``gbps`` divides the
*fused* byte count (the minimum any implementation must move) by each time, so the three implementations are
compared on one scale; ``copy_gbps`` is a measured device-to-device copy, the bandwidth ceiling.

What each should gain, written before the first GPU run (N = B*C*HW elements of the op's input, e bytes each;
per-(B, C) vectors are negligible; "passes" counts N-element reads + writes):

- channel_stats, forward: fused 1 pass (read x). Eager ``torch.std_mean`` is also one Welford pass, so no bytes
  are saved: expect ~1x, better only if PyTorch's reduction over (H, W) of a channels-last slice runs below
  bandwidth (a strided reduction; likely at 7x7/14x14). Compiled: ~1x.
  Forward + backward: fused 3 passes (read x; read x, write dx). Eager std_mean's backward is sub, mul, div,
  expand and add kernels (~8 passes): expect ~3x. Compiled (Inductor fuses the backward to one pointwise): ~1x.
- scale_channels with affine, forward: fused 2 passes; eager ``mul`` + ``addcmul`` 4: expect ~2x; compiled ~1x.
  Forward + backward: fused 5 passes (fwd 2; bwd read grad and x, write dx, per-(B, C) sums on the way); eager
  ~17 (mul and addcmul backward each write a product and reduce it): ~3x; compiled ~6-7 (separate reduction
  kernels for dgate and dscale/dshift): ~1.3x.
- spatial_gate with affine, forward: fused 2 passes; eager 1x1 conv to 1 channel (1 read) + hardsigmoid + mul
  (2) + addcmul (2) = 5: ~2.5x; compiled keeps the conv as a cuDNN call (1) + one fused pointwise (2) = 3: ~1.5x.
  Forward + backward: fused 5; eager ~20 (affine, mul and conv backwards, the channel reduction of the gate's
  gradient, the add of the two paths to dz): ~4x; compiled ~9-10 (conv backward extern, 2-3 fused kernels): ~2x.
- pat_ch_branch (train): the gate's small ops stay separate launches on both sides. Forward: fused 3 passes
  (statistics 1, gated BN 2); eager 6 (std_mean 1, mul 2, BN statistics 1 + normalise 2): ~2x; compiled ~4
  (two dependent reductions, then one pointwise): ~1.3x. Forward + backward: fused 11 (x feeds the statistics
  and the product, so autograd adds two x-sized gradients: 3 passes only a single fused backward for the whole
  branch would avoid); eager ~27 (BN, mul and std backwards, the add): ~2.5x; compiled ~10 (Inductor folds
  both gradient paths into one pointwise kernel after its reductions): ~0.9-1x, the fused ops may lose. If so,
  the next kernel is one custom op for the branch whose backward writes dx once.
At stage 3/4 (N of 2-7 M elements, a few microseconds of traffic) launch overhead dominates eager times; the
graph column is the fair one there.

Writes ``kernels_gpu.json`` under ``--out`` after every case (temp name + rename), so a run cut short keeps
what it measured.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from collections.abc import Callable

import torch
from device_ceilings import copy_bandwidth_gb_s
from speed_common import ScriptRun

from patsearch import kernels
from patsearch.arch import resolve_arch
from patsearch.kernels.reference import channel_stats as ref_stats
from patsearch.kernels.reference import spatially_gated
from patsearch.models.channel_attention import GaussianSE, gated_norm

# Passes over N (reads + writes of N-element tensors), fused kernels vs the eager and compiled references;
# the model of the docstring, reported next to the measurements.
PASSES = {
    ("channel_stats", "fwd"): (1, 1, 1), ("channel_stats", "fwd+bwd"): (3, 9, 3),
    ("scale_channels", "fwd"): (2, 4, 2), ("scale_channels", "fwd+bwd"): (5, 17, 7),
    ("spatial_gate", "fwd"): (2, 5, 3), ("spatial_gate", "fwd+bwd"): (5, 20, 10),
    # pat_ch_branch fwd+bwd: x feeds both the statistics and the product, so autograd adds two x-sized
    # gradients (3 more passes) on the fused side; Inductor folds both into one pointwise backward.
    ("pat_ch_branch", "fwd"): (3, 6, 4), ("pat_ch_branch", "fwd+bwd"): (11, 27, 10),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="directory for kernels_gpu.json")
    p.add_argument("--arch", default="patnet_t2", help="variant name or YAML (default patnet_t2)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile'd references")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                   help="cpu: a dry run of this script (wall-clock timing, the ops' CPU implementation)")
    p.add_argument("--ops", default="channel_stats,scale_channels,pat_ch_branch,spatial_gate",
                   help="comma-separated cases to run (default: all)")
    p.add_argument("--budget-s", type=float, default=100.0,
                   help="stop starting new cases after this many seconds (the JSON says which were skipped)")
    args = p.parse_args(argv)
    args.ops = [op.strip() for op in args.ops.split(",") if op.strip()]
    unknown = sorted(set(args.ops) - {"channel_stats", "scale_channels", "pat_ch_branch", "spatial_gate"})
    if unknown:
        p.error(f"unknown --ops {', '.join(unknown)}; choose from channel_stats, scale_channels, pat_ch_branch, "
                "spatial_gate")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.exit(2, "kernels_gpu.py: no CUDA device; this benchmark times GPU kernels (tests/kernels checks them "
                  "on the CPU)\n")
    return args


DEVICE = {"type": "cuda"}


def _wall_ms(fn: Callable[[], object], reps: int = 3) -> float:
    times = []
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times[1:])[reps // 2]


def bench(fn: Callable[[], object]) -> dict[str, float | str]:
    out: dict[str, float | str] = {}
    if DEVICE["type"] == "cpu":
        out["ms"] = _wall_ms(fn)
        return out
    import triton.testing
    try:
        out["ms"] = triton.testing.do_bench(fn, warmup=10, rep=40, return_mode="median")
    except Exception as exc:  # noqa: BLE001 -- one failing implementation must not lose the rest of the run
        out["error"] = f"{type(exc).__name__}: {exc}"[:300]
        return out
    try:
        out["graph_ms"] = triton.testing.do_bench_cudagraph(fn, rep=15, return_mode="median")
    except Exception as exc:  # noqa: BLE001 -- e.g. an op that cannot be captured in a graph
        out["graph_error"] = f"{type(exc).__name__}: {exc}"[:300]
    return out


def copy_bandwidth() -> float:
    return copy_bandwidth_gb_s(DEVICE["type"])


# --- the references: the blocks' own arithmetic, eager (ref_stats is the Gaussian SE's channel_stats) ------


def ref_scale(x: torch.Tensor, gate: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    return torch.addcmul(shift[:, None, None], x * gate[:, :, None, None], scale[:, None, None])


def ref_spatial(z: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    return torch.addcmul(shift[:, None, None], spatially_gated(z, weight), scale[:, None, None])


# --- cases -------------------------------------------------------------------------------------------------


def cases(args: argparse.Namespace) -> list[dict]:
    """(op, stage, shape of the full tensor, channel range of the op's input) for every op the arch runs."""
    arch = resolve_arch(args.arch)
    out = []
    hw = args.resolution // 4
    for stage, width in enumerate(arch.widths):
        spec = arch.block_spec(stage)
        full = (args.batch, width, hw, hw)
        if spec.mixer == "pat_ch":
            untouched = (width // spec.n_div, width)
            out += [{"op": op, "stage": stage + 1, "full": full, "channels": untouched}
                    for op in ("channel_stats", "scale_channels", "pat_ch_branch")]
        if spec.spatial == "partial":
            out.append({"op": "spatial_gate", "stage": stage + 1, "full": full, "channels": (0, width // 2)})
        hw //= 2
    return [case for case in out if case["op"] in args.ops]


def make_inputs(case: dict, dtype: torch.dtype, requires_grad: bool) -> dict:
    """Inputs of one case in ``dtype``; values are drawn in float32 and rounded to bf16 whatever the dtype, so
    the float32 reference of the equivalence check sees exactly the values the bf16 kernels see."""
    dev = DEVICE["type"]
    g = torch.Generator(device=dev).manual_seed(0)

    def draw(*shape: int, s: float = 1.0, m: float = 0.0, uniform: bool = False) -> torch.Tensor:
        v = torch.rand(*shape, device=dev, generator=g) if uniform else \
            torch.randn(*shape, device=dev, generator=g) * s + m
        return v.to(torch.bfloat16).to(dtype)

    full = draw(*case["full"]).contiguous(memory_format=torch.channels_last)
    lo, hi = case["channels"]
    # A slice, as the block hands it over, made a leaf so its gradient is its own (no slice-backward copy).
    x = full[:, lo:hi].detach().requires_grad_(requires_grad)
    b, c = x.shape[:2]
    inputs = {"x": x, "gate": draw(b, c, uniform=True).requires_grad_(requires_grad),
              "scale": draw(c, s=0.5, m=1.0).requires_grad_(requires_grad),
              "shift": draw(c, s=0.3).requires_grad_(requires_grad),
              "weight": draw(1, c, 1, 1, s=1.5 / math.sqrt(c)).requires_grad_(requires_grad)}
    if case["op"] == "pat_ch_branch":
        se = GaussianSE(c, "gauss").to(device=dev, dtype=dtype).train()
        with torch.no_grad():
            se.conv.weight.copy_(draw(*se.conv.weight.shape, s=0.3))
        se.requires_grad_(requires_grad)
        inputs["se"] = se
        inputs["bn"] = torch.nn.BatchNorm2d(c).to(device=dev, dtype=dtype).train().requires_grad_(requires_grad)
    return inputs


def implementations(case: dict, inp: dict) -> dict[str, Callable[[], object]]:
    """Forward functions (returning tuples of tensors) of the fused op and the eager reference."""
    x = inp["x"]
    op = case["op"]
    if op == "channel_stats":
        return {"fused": lambda: kernels.channel_stats(x), "eager": lambda: ref_stats(x)}
    if op == "scale_channels":
        args = (x, inp["gate"], inp["scale"], inp["shift"])
        return {"fused": lambda: (kernels.scale_channels(*args),), "eager": lambda: (ref_scale(*args),)}
    if op == "spatial_gate":
        args = (x, inp["weight"], inp["scale"], inp["shift"])
        return {"fused": lambda: (kernels.spatial_gate(*args),), "eager": lambda: (ref_spatial(*args),)}
    se, bn = inp["se"], inp["bn"]
    return {"fused": lambda: (gated_norm(x, se, bn, fused=True),),
            "eager": lambda: (gated_norm(x, se, bn, fused=False),)}


def named_leaves(inp: dict) -> dict[str, torch.Tensor]:
    out = {k: inp[k] for k in ("x", "gate", "scale", "shift", "weight")}
    if "se" in inp:
        out.update({f"se.{k}": v for k, v in inp["se"].named_parameters()})
        out.update({f"bn.{k}": v for k, v in inp["bn"].named_parameters()})
    return out


def leaves(inp: dict) -> list[torch.Tensor]:
    return list(named_leaves(inp).values())


def with_backward(fwd: Callable[[], tuple], grads: list[torch.Tensor], wrt: list[torch.Tensor]
                  ) -> Callable[[], None]:
    """Forward + backward; ``autograd.grad`` rather than ``backward`` so that no timed call pays for
    accumulating into ``.grad``."""
    def step() -> None:
        torch.autograd.grad(fwd(), wrt, grads, allow_unused=True)
    return step


def errors(got: dict[str, torch.Tensor | None], want: dict[str, torch.Tensor | None]) -> dict[str, dict]:
    """Max abs and max relative (to the reference's largest magnitude) error per tensor, and the worst."""
    out: dict[str, dict] = {}
    for name, a in got.items():
        b = want[name]
        if a is None or b is None:
            continue
        d = (a.float() - b.float()).abs().max().item()
        out[name] = {"max_abs": d, "max_rel": d / max(b.float().abs().max().item(), 1e-12)}
    out["worst"] = {k: max((v[k] for v in out.values()), default=0.0) for k in ("max_abs", "max_rel")}
    return out


def equivalence(case: dict, dtype: torch.dtype) -> dict[str, float]:
    """Fused op in ``dtype`` vs the eager reference in float32 on the same values: outputs and gradients."""
    results = {}
    for name, dt in (("fused", dtype), ("reference", torch.float32)):
        inp = make_inputs(case, dt, requires_grad=True)
        if "se" in inp:  # train-mode BN over (B, C, 1, 1) logits amplifies bf16 rounding; check the arithmetic
            inp["se"].eval()
            inp["bn"].eval()
        outs = implementations(case, inp)["fused" if name == "fused" else "eager"]()
        g = torch.Generator(device=DEVICE["type"]).manual_seed(1)
        grads = [torch.randn(o.shape, device=DEVICE["type"], generator=g).to(o.dtype) for o in outs]
        torch.autograd.backward(outs, grads)
        results[name] = ({f"out{i}": o.detach() for i, o in enumerate(outs)},
                         {k: t.grad for k, t in named_leaves(inp).items()})
    (fo, fg), (ro, rg) = results["fused"], results["reference"]
    return {"forward": errors(fo, ro), "backward": errors(fg, rg)}


class Run(ScriptRun):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.results: dict = {"command": " ".join(sys.argv), "arch": args.arch, "batch": args.batch,
                              "resolution": args.resolution, "dtype": "bfloat16", "layout": "channels_last slice",
                              "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu (dry run)",
                              "torch": torch.__version__,
                              "passes_model": {f"{k[0]}/{k[1]}": dict(zip(("fused", "eager", "compiled"), v))
                                               for k, v in PASSES.items()},
                              "cases": [], "skipped": []}

    def save(self) -> None:
        tmp = self.out / ".kernels_gpu.json.tmp"
        tmp.write_text(json.dumps(self.results, indent=1))
        tmp.replace(self.out / "kernels_gpu.json")

    def case(self, case: dict, compiled: dict[str, Callable]) -> dict:
        inp = make_inputs(case, torch.bfloat16, requires_grad=False)
        x = inp["x"]
        n = x.numel()
        elem = x.element_size()
        row = {"op": case["op"], "stage": case["stage"], "shape": list(x.shape), "elements": n,
               "input_mb": n * elem / 2**20}
        impls = implementations(case, inp)
        if not self.args.no_compile:
            ref = {"channel_stats": ref_stats, "scale_channels": ref_scale, "spatial_gate": ref_spatial}.get(
                case["op"])
            key = case["op"]
            if key not in compiled:
                compiled[key] = torch.compile(ref if ref else (lambda x, se, bn: (bn(x * se(x)),)), dynamic=True)
            fn = compiled[key]
            if case["op"] == "channel_stats":
                impls["compiled"] = lambda: fn(x)
            elif case["op"] == "scale_channels":
                impls["compiled"] = lambda: (fn(x, inp["gate"], inp["scale"], inp["shift"]),)
            elif case["op"] == "spatial_gate":
                impls["compiled"] = lambda: (fn(x, inp["weight"], inp["scale"], inp["shift"]),)
            else:
                impls["compiled"] = lambda: fn(x, inp["se"], inp["bn"])
        with torch.no_grad():
            for name, fwd in impls.items():
                row[f"fwd/{name}"] = bench(fwd)
        train_inp = make_inputs(case, torch.bfloat16, requires_grad=True)
        train_impls = implementations(case, train_inp)
        if "compiled" in impls:
            fn = compiled[case["op"]]
            xt = train_inp["x"]
            train_impls["compiled"] = {
                "channel_stats": lambda: fn(xt),
                "scale_channels": lambda: (fn(xt, train_inp["gate"], train_inp["scale"], train_inp["shift"]),),
                "spatial_gate": lambda: (fn(xt, train_inp["weight"], train_inp["scale"], train_inp["shift"]),),
                "pat_ch_branch": lambda: fn(xt, train_inp["se"], train_inp["bn"]),
            }[case["op"]]
        outs = train_impls["fused"]()
        grads = [torch.randn_like(o) for o in outs]
        del outs
        for name, fwd in train_impls.items():
            row[f"fwd+bwd/{name}"] = bench(with_backward(fwd, grads, leaves(train_inp)))
        for mode in ("fwd", "fwd+bwd"):
            fused_p, eager_p, compiled_p = PASSES[(case["op"], mode)]
            fused_bytes = fused_p * n * elem
            row[f"{mode}/bytes"] = {"fused": fused_bytes, "eager_model": eager_p * n * elem,
                                    "compiled_model": compiled_p * n * elem}
            for name in ("fused", "eager", "compiled"):
                timing = row.get(f"{mode}/{name}", {})
                for col in ("ms", "graph_ms"):
                    if col in timing:
                        timing[col.replace("ms", "gbps")] = fused_bytes / timing[col] / 1e6
            base = row[f"{mode}/fused"]
            for name in ("eager", "compiled"):
                other = row.get(f"{mode}/{name}", {})
                for col in ("ms", "graph_ms"):
                    if col in base and col in other:
                        row[f"{mode}/speedup_vs_{name}" + ("" if col == "ms" else "_graph")] = other[col] / base[col]
        row["equivalence_bf16_vs_fp32_ref"] = equivalence(case, torch.bfloat16)
        return row

    def run(self) -> None:
        self.results["copy_gbps"] = copy_bandwidth()
        self.save()
        compiled: dict[str, Callable] = {}
        fp32_checked: set[str] = set()
        for case in cases(self.args):
            label = f"{case['op']} stage {case['stage']}"
            if self.elapsed() > self.args.budget_s:
                self.results["skipped"].append(label)
                continue
            try:
                row = self.case(case, compiled)
                if case["op"] not in fp32_checked:  # one float32 check per op
                    row["equivalence_fp32"] = equivalence(case, torch.float32)
                    fp32_checked.add(case["op"])
            except Exception:  # noqa: BLE001 -- record the failure, keep measuring the other cases
                row = {"op": case["op"], "stage": case["stage"], "error": traceback.format_exc()[-2000:]}
            row["elapsed_s"] = round(self.elapsed(), 1)
            self.results["cases"].append(row)
            self.save()
            print(summary_line(row), flush=True)
        self.results["total_s"] = round(self.elapsed(), 1)
        self.save()


def summary_line(row: dict) -> str:
    if "error" in row:
        return f"{row['op']:15s} s{row['stage']} ERROR {row['error'].splitlines()[-1]}"
    parts = [f"{row['op']:15s} s{row['stage']} {row['input_mb']:7.1f} MB"]
    for mode in ("fwd", "fwd+bwd"):
        f = row[f"{mode}/fused"]
        parts.append(f"{mode}: fused {f.get('ms', float('nan')) * 1e3:7.1f} us ({f.get('gbps', 0):6.0f} GB/s)"
                     f" x{row.get(f'{mode}/speedup_vs_eager', float('nan')):.2f} eager"
                     f" x{row.get(f'{mode}/speedup_vs_compiled', float('nan')):.2f} compiled")
    eq = row["equivalence_bf16_vs_fp32_ref"]
    parts.append(f"rel err fwd {eq['forward']['worst']['max_rel']:.1e} bwd {eq['backward']['worst']['max_rel']:.1e}")
    return " | ".join(parts)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    DEVICE["type"] = args.device
    run = Run(args)
    print(f"{run.results['device']}: copy bandwidth ...", flush=True)
    run.run()
    print(f"copy {run.results['copy_gbps']:.0f} GB/s; wrote {run.out / 'kernels_gpu.json'} "
          f"in {run.results['total_s']} s", flush=True)


if __name__ == "__main__":
    main()

"""Sweep the fused kernels' launch settings (``patsearch.kernels._triton.TUNING``) on a GPU.

    PYTHONPATH=$PWD python benchmarks/kernels_tune.py --out $OUT/tune          # H200: about 2 minutes
    PYTHONPATH=$PWD python benchmarks/kernels_tune.py --device cpu --batch 2 --resolution 32 --out /tmp/dry

Why: on the H200 the kernels moved their bytes well below the copy bandwidth (docs/BENCHMARKS.md, "Kernels"). Each
reduction program holds a (BLOCK_HW, BLOCK_C) float32 tile per accumulator, so the tile budget, the number of
programs per SM and the warps per program set both the registers per thread and the loads in flight: the settings,
not the arithmetic, decide the bandwidth.

For every case of :func:`kernels_gpu.cases` but the composite ``pat_ch_branch`` it times the fused op's forward
and forward + backward, replayed in a CUDA graph (device time; ``triton.testing.do_bench_cudagraph``), under every
setting of the grid. The JSON (temp name + rename after every setting) gives each case's times per setting, the
best setting per case and the setting with the least total time; the grid's first row is the current defaults
(before the sweep they were max_tile 4096, programs_per_sm 4).
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernels_gpu as kg  # noqa: E402 -- the cases, inputs and implementations of the kernel benchmark

GRID = {"max_tile": (1024, 2048, 4096, 8192), "programs_per_sm": (16, 4), "num_warps": (None, 4, 8)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="directory for kernels_tune.json")
    p.add_argument("--arch", default="patnet_t2")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: a dry run of the script")
    p.add_argument("--budget-s", type=float, default=150.0, help="stop starting new settings after this long")
    args = p.parse_args(argv)
    args.ops = ["channel_stats", "scale_channels", "spatial_gate"]
    if args.device == "cuda" and not torch.cuda.is_available():
        p.exit(2, "kernels_tune.py: no CUDA device; this benchmark tunes GPU kernels\n")
    return args


def settings() -> list[dict]:
    """Every combination of the grid, the defaults first."""
    keys = list(GRID)
    return [dict(zip(keys, values)) for values in itertools.product(*(GRID[k] for k in keys))]


def time_ms(fn) -> float:
    if kg.DEVICE["type"] == "cpu":
        return kg._wall_ms(fn)
    import triton.testing
    return triton.testing.do_bench_cudagraph(fn, rep=10, return_mode="median")


def measure(case: dict) -> dict:
    """Forward and forward + backward device time of the fused op of ``case`` under the current TUNING."""
    inp = kg.make_inputs(case, torch.bfloat16, requires_grad=False)
    fwd = kg.implementations(case, inp)["fused"]
    with torch.no_grad():
        t_fwd = time_ms(fwd)
    train = kg.make_inputs(case, torch.bfloat16, requires_grad=True)
    fwd_train = kg.implementations(case, train)["fused"]
    grads = [torch.randn_like(o) for o in fwd_train()]
    t_step = time_ms(kg.with_backward(fwd_train, grads, kg.leaves(train)))
    n_bytes = inp["x"].numel() * inp["x"].element_size()
    fused_fwd, fused_step = (kg.PASSES[(case["op"], mode)][0] for mode in ("fwd", "fwd+bwd"))
    return {"fwd_ms": t_fwd, "fwd+bwd_ms": t_step, "fwd_gbps": fused_fwd * n_bytes / t_fwd / 1e6,
            "fwd+bwd_gbps": fused_step * n_bytes / t_step / 1e6}


def summarise(rows: list[dict]) -> dict:
    """Best setting per case (by forward + backward time) and the setting with the least total over all cases."""
    complete = [r for r in rows if "error" not in r]
    if not complete:
        return {}
    labels = list(complete[0]["cases"])
    best_case = {}
    for label in labels:
        best = min(complete, key=lambda r: r["cases"][label]["fwd+bwd_ms"])
        best_case[label] = {"setting": best["setting"], **best["cases"][label],
                            "default_fwd+bwd_ms": complete[0]["cases"][label]["fwd+bwd_ms"]}
    totals = {json.dumps(r["setting"]): (sum(c["fwd+bwd_ms"] for c in r["cases"].values()),
                                         sum(c["fwd_ms"] for c in r["cases"].values())) for r in complete}
    best_total = min(totals, key=lambda k: totals[k][0])
    best_fwd = min(totals, key=lambda k: totals[k][1])
    default = json.dumps(complete[0]["setting"])
    return {"best_per_case": best_case,
            "best_total_fwd+bwd": {"setting": json.loads(best_total), "ms": totals[best_total][0],
                                   "default_ms": totals[default][0]},
            "best_total_fwd": {"setting": json.loads(best_fwd), "ms": totals[best_fwd][1],
                               "default_ms": totals[default][1]}}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    kg.DEVICE["type"] = args.device
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result: dict = {"command": " ".join(sys.argv), "arch": args.arch, "batch": args.batch,
                    "resolution": args.resolution,
                    "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu (dry run)",
                    "torch": torch.__version__, "copy_gbps": kg.copy_bandwidth(), "grid": GRID, "rows": [],
                    "skipped": []}

    def save() -> None:
        result["summary"] = summarise(result["rows"])
        tmp = out / ".kernels_tune.json.tmp"
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(out / "kernels_tune.json")

    all_cases = kg.cases(args)
    for setting in settings():
        if time.perf_counter() - t0 > args.budget_s:
            result["skipped"].append(setting)
            continue
        row: dict = {"setting": setting, "cases": {}}
        try:
            from patsearch.kernels import _triton  # imports triton: only once the arguments are checked
            with _triton.tuned(**setting):
                for case in all_cases:
                    row["cases"][f"{case['op']} stage {case['stage']}"] = measure(case)
        except Exception as exc:  # noqa: BLE001 -- a setting that fails to compile must not end the sweep
            row["error"] = f"{type(exc).__name__}: {exc}"[:500]
        result["rows"].append(row)
        save()
        total = sum(c["fwd+bwd_ms"] for c in row["cases"].values()) if "error" not in row else float("nan")
        print(f"[{time.perf_counter() - t0:6.1f}s] {setting}: fwd+bwd total {total:.3f} ms"
              + (f" ERROR {row['error'][:120]}" if "error" in row else ""), flush=True)
    result["total_s"] = round(time.perf_counter() - t0, 1)
    save()
    best = result["summary"].get("best_total_fwd+bwd", {})
    print(f"best fwd+bwd setting {best.get('setting')}: {best.get('ms', float('nan')):.3f} ms "
          f"(defaults {best.get('default_ms', float('nan')):.3f} ms); wrote {out / 'kernels_tune.json'}", flush=True)


if __name__ == "__main__":
    main()

"""This CPU: PATNet-X vs FasterNet-X single-thread batch-1 latency, deployment forms, side by side.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/speed_cpu.py --sizes t0,t1,t2,s,m --out runs/speed_cpu
    PYTHONPATH=$PWD .venv/bin/python benchmarks/speed_cpu.py --sizes t0 --compile --out runs/speed_cpu_t0c

One thread, batch 1, 224x224, float32, denormals flushed. Per size, every form (the four of
:mod:`speed_common`, plus TorchScript-frozen copies with ``--jit`` and torch.compile'd copies with ``--compile``)
is timed round-robin in one process (the profiler's interleaved harness, medians), so background load on the
other core hits all forms alike. Ratios are PATNet's best form against FasterNet's best form.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed_common import SIZES, build_forms, ratios  # noqa: E402

from patsearch.io import atomic_write_json  # noqa: E402
from patsearch.profiler.timing import Budget, time_interleaved  # noqa: E402

BUDGET = Budget(warmup_s=0.3, min_samples=21, target_s=1.5, max_samples=150)


def frozen(model: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return torch.jit.freeze(torch.jit.trace(model, x))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="t0,t1,t2,s,m")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--channels-last", action="store_true", help="also time channels-last copies (+cl)")
    p.add_argument("--jit", action="store_true", help="also time TorchScript-frozen copies")
    p.add_argument("--clock", default="cpu", choices=("cpu", "wall"),
                   help="cpu: the process's CPU time per call (robust to load on the other core); wall: elapsed")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd copies (slow to build)")
    p.add_argument("--forms", default="patnet-deploy,patnet-fast,fasternet-fx,fasternet-slicing")
    p.add_argument("--out", default="runs/speed_cpu")
    args = p.parse_args()

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    x = torch.randn(1, 3, args.resolution, args.resolution)
    with open("/proc/loadavg") as fh:
        load_before = fh.read().split()[:3]
    results = {"command": " ".join(["python"] + sys.argv), "threads": 1, "clock": args.clock, "batch": 1,
               "resolution": args.resolution, "torch": torch.__version__, "cpu": _cpu(), "load_before": load_before,
               "sizes": {}}
    forms = tuple(f for f in args.forms.split(",") if f)
    for size in [s for s in args.sizes.split(",") if s in SIZES]:
        models = dict(build_forms(size, forms))
        inputs = {name: x for name in models}
        if args.channels_last:
            for name in list(models):
                models[f"{name}+cl"] = copy.deepcopy(models[name]).to(memory_format=torch.channels_last)
                inputs[f"{name}+cl"] = x.contiguous(memory_format=torch.channels_last)
        if args.jit:
            for name in list(models):
                if name != "patnet-deploy":
                    models[f"{name}+jit"] = frozen(models[name], inputs[name])
                    inputs[f"{name}+jit"] = inputs[name]
        if args.compile:
            for name in [n for n in list(models) if n.split("+")[0] in ("patnet-fast", "fasternet-fx",
                                                                        "fasternet-slicing") and "+jit" not in n]:
                start = time.perf_counter()
                compiled = torch.compile(models[name], dynamic=False)
                with torch.inference_mode():
                    compiled(inputs[name])
                print(f"compiled {size} {name} in {time.perf_counter() - start:.0f}s", flush=True)
                models[f"{name}+compile"] = compiled
                inputs[f"{name}+compile"] = inputs[name]
        with torch.inference_mode():
            ref = models["patnet-deploy"](x) if "patnet-deploy" in models else None
            errs = {k: round(((m(inputs[k]) - ref).norm() / ref.norm()).item(), 9) for k, m in models.items()
                    if k.startswith("patnet") and ref is not None}
        timings = time_interleaved([(m, inputs[k]) for k, m in models.items()], gpu=False, budget=BUDGET,
                                   clock=args.clock)
        ms = {k: round(t.median_ms, 3) for k, t in zip(models, timings)}
        spread = {k: round(t.spread * 100, 1) for k, t in zip(models, timings)}
        results["sizes"][size] = {"latency_ms": ms, "spread_pct": spread, "vs_fasternet": ratios(ms, "latency_ms"),
                                  "rel_err_vs_deploy": errs}
        print(size, ms, ratios(ms, "latency_ms"), flush=True)
        atomic_write_json(out_dir / "results.json", results, indent=1)  # a run cut short keeps what it measured
    with open("/proc/loadavg") as fh:
        results["load_after"] = fh.read().split()[:3]
    atomic_write_json(out_dir / "results.json", results, indent=1)
    print(markdown(results))


def _cpu() -> str:
    from patsearch.profiler.devices import cpu_name

    return cpu_name()


def markdown(results: dict) -> str:
    names = sorted({k for r in results["sizes"].values() for k in r["latency_ms"]},
                   key=lambda k: (not k.startswith("patnet"), k))
    lines = [f"CPU {results['cpu']}, 1 thread, batch 1, {results['resolution']}x{results['resolution']}, float32, "
             f"torch {results['torch']}, {results['clock']} clock; load average before {results['load_before']}, after "
             f"{results.get('load_after')}.", f"Command: `{results['command']}`", "",
             "| size | " + " | ".join(f"{n} (ms)" for n in names) + " | best PATNet / best FasterNet latency |",
             "|---" * (len(names) + 2) + "|"]
    for size, r in results["sizes"].items():
        best_p = min(v for k, v in r["latency_ms"].items() if k.startswith("patnet"))
        best_f = min(v for k, v in r["latency_ms"].items() if k.startswith("fasternet"))
        lines.append(f"| {size} | " + " | ".join(str(r["latency_ms"].get(n, "-")) for n in names)
                     + f" | {best_p / best_f:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

"""Speed of the search's proxy training: the exact path ``patsearch search`` runs per candidate.

Measures, on one device:
- the one-off decode of the data into the tensor cache (``runs/.proxy-data``) and a reload from the file;
- a 10-epoch proxy of PATNet-T0 and of timm's FasterNet-T0 on the full training split at 32 px (target on one
  H200: <= 20 s for PATNet-T0), each ``--repeats`` times (the first includes CUDA/cuDNN warm-up), in each of
  ``--step-modes``: ``eager`` (one launch per kernel) and ``graph`` (each step replayed from a CUDA graph, the
  GPU default), side by side in one run so that both networks get the same tricks;
- one proxy at the search's default settings (``ProxySettings`` defaults, the given data), as proxies per GPU-hour
  (target >= 150).
Every proxy's final top-1 is recorded too, so a fast proxy that does not learn is visible.

GPU (the lead's H200; CIFAR-10 as train/ + test/ class folders)::

    python benchmarks/proxy_speed.py --data .devcarry/cifar10 --out $OUT/proxy_speed

CPU check of the harness (tiny sizes, about a minute)::

    python benchmarks/proxy_speed.py --data /work/data/cifar10 --out /tmp/proxy_speed --tiny

Writes ``<out>/proxy_speed.json``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from patsearch.arch import resolve_arch
from patsearch.data import tensor_cache
from patsearch.io import atomic_write_json
from patsearch.search.proxy import ProxySettings, make_proxy_runner, prepare_folder


def timed_proxy(settings: ProxySettings, arch, label: str) -> dict:
    run = make_proxy_runner(settings)
    if run.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    top1 = run(arch)
    if run.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    print(f"{label}: {seconds:.2f} s, top-1 {100 * top1:.2f}%", flush=True)
    return {"seconds": round(seconds, 3), "top1": round(100 * top1, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="ImageFolder with train/ and val/ or test/ (CIFAR-10)")
    ap.add_argument("--out", required=True, help="folder for proxy_speed.json")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--models", default="patnet_t0,fasternet_t0")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=None, help="default: the proxy's (512 on a GPU)")
    ap.add_argument("--lr", type=float, default=None, help="default: the proxy recipe's, sqrt-scaled")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="torch.compile each candidate")
    ap.add_argument("--step-modes", default=None, help="eager,graph (default on a GPU) or eager (default on a CPU)")
    ap.add_argument("--no-amp", action="store_true", help="float32 instead of the recipe's bf16 autocast")
    ap.add_argument("--tiny", action="store_true", help="CPU check: 200 train / 100 val images, 1 epoch, batch 32")
    args = ap.parse_args()

    if args.tiny:
        torch.set_num_threads(1)  # a shared small CPU: extra intra-op threads only contend
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = out / "proxy-data"
    sizes = {"train_samples": 200, "val_samples": 100} if args.tiny else {}
    epochs = 1 if args.tiny else args.epochs
    batch = 32 if args.tiny and args.batch_size is None else args.batch_size
    base = ProxySettings(data=args.data, resolution=args.resolution, device=args.device, subset_dir=str(cache_dir),
                         compile=args.compile, amp=False if args.no_amp else None, **sizes)
    device = base.torch_device()
    result: dict = {"machine": {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else
                                platform.processor() or platform.machine(), "torch": torch.__version__,
                                "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M")},
                    "settings": {"data": args.data, "epochs": epochs, "resolution": args.resolution,
                                 "batch_size": batch or base.batch_for(device.type), "lr": args.lr,
                                 "compile": args.compile, "amp": not args.no_amp, "tiny": args.tiny,
                                 "device": str(device)}}
    modes = [m.strip() for m in (args.step_modes or ("eager,graph" if device.type == "cuda" else "eager")).split(",")
             if m.strip()]
    if not set(modes) <= {"eager", "graph"} or ("graph" in modes and device.type != "cuda"):
        ap.error(f"--step-modes takes eager and graph (graph on a GPU only), got {args.step_modes!r}")
    result["settings"]["step_modes"] = modes

    # 1. the one-off decode into the tensor cache, then a reload from the file (what every later process does)
    folder, _ = prepare_folder(base)
    source = tensor_cache.TensorSource(root=folder)
    tensor_cache.clear_memo()
    t0 = time.perf_counter()
    train, val = tensor_cache.load_or_build(source, args.resolution, args.resolution, cache_dir=cache_dir,
                                            workers=os.cpu_count() or 1)
    first = time.perf_counter() - t0
    tensor_cache.clear_memo()
    t0 = time.perf_counter()
    tensor_cache.load_or_build(source, args.resolution, args.resolution, cache_dir=cache_dir)
    reload = time.perf_counter() - t0
    result["cache"] = {"train_images": len(train), "val_images": len(val), "first_load_s": round(first, 2),
                       "reload_s": round(reload, 3)}
    print(f"tensor cache: {len(train)} train / {len(val)} val images, first load {first:.1f} s, "
          f"reload {reload:.2f} s", flush=True)

    # 2. fixed-length proxies (10 epochs) of each model
    result["models"] = {}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        arch = resolve_arch(name) if name.startswith("patnet") else name
        per_mode = result["models"][name] = {}
        for mode in modes:
            fixed = dataclasses.replace(base, epochs=epochs, batch_size=batch, lr=args.lr, cuda_graph=mode == "graph")
            runs = [timed_proxy(fixed, arch, f"{name} {mode} {epochs} epochs, run {i + 1}")
                    for i in range(args.repeats)]
            best = min(r["seconds"] for r in runs)
            per_mode[mode] = {"runs": runs, "best_s": best, "img_per_s": round(epochs * len(train) / best),
                              "meets_20s": best <= 20.0 if not args.tiny else None}
        if len(per_mode) == 2:
            per_mode["graph_speedup"] = round(per_mode["eager"]["best_s"] / per_mode["graph"]["best_s"], 2)

    # 3. the search's default proxy (default epochs and batch for this device), as proxies per GPU-hour
    default = base
    run = timed_proxy(default, resolve_arch("patnet_t0"), f"patnet_t0 at the search defaults ({default.epochs} epochs)")
    result["default_settings"] = {"epochs": default.epochs, "batch_size": default.batch_for(device.type), **run,
                                  "proxies_per_hour": round(3600 / run["seconds"], 1)}
    path = out / "proxy_speed.json"
    atomic_write_json(path, result, indent=1)
    print(json.dumps(result, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

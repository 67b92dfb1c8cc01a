"""TPE vs random search vs the enqueued PATNet baseline at a CPU latency budget, proxy-trained on CIFAR-10.

Phase ``search`` runs two ``patsearch search`` studies with the same options and the same number of trained
candidates, side by side, each pinned to one core (so they share the machine alike): TPE (with the PATNet
variants that fit the budget enqueued first) and random search (no baseline, so it gets one more searched
candidate than TPE). Phase ``measure`` times the deployment (fused) form of each study's best network and of the
baseline end to end, interleaved round-robin, with the profile's protocol (batch 1, one thread, float32), and
prints a markdown table for docs/BENCHMARKS.md.

    python benchmarks/search_cifar.py --data /tmp/search-cifar/cifar10 --device epyc --budget 35ms --trials 8
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def search_command(args, sampler: str, study: str, core: int) -> list[str]:
    cmd = ["taskset", "-c", str(core), sys.executable, str(ROOT / "cli.py"), "search",
           "--latency-budget", args.budget, "--profile", args.profile or args.device, "--data", args.data,
           "--proxy-epochs", str(args.epochs), "--proxy-resolution", str(args.resolution),
           "--proxy-train-samples", str(args.train_samples), "--proxy-val-samples", str(args.val_samples),
           "--trials", str(args.trials), "--sampler", sampler, "--seed", str(args.seed),
           "--runs-dir", args.runs_dir, "--study-name", study]
    if sampler == "random":
        cmd += ["--baselines", "none"]
    return cmd


def run_searches(args) -> None:
    procs = []
    for core, sampler in enumerate(("tpe", "random")):
        study = f"{args.prefix}-{sampler}"
        log = open(Path(args.runs_dir) / f"{study}.log", "w")
        cmd = search_command(args, sampler, study, core % (os.cpu_count() or 1))
        print(" ".join(cmd), flush=True)
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT), log))
    for proc, log in procs:
        proc.wait()
        log.close()
        if proc.returncode:
            raise SystemExit(f"search failed ({proc.returncode}); see {log.name}")


def measure(args) -> None:
    import optuna

    from patsearch.arch import ArchConfig
    from patsearch.counting import count_flops, count_params
    from patsearch.models import create_model
    from patsearch.profiler import get_device, load_profile
    from patsearch.profiler.timing import NETWORK_BUDGET_CPU, configure, prepare, time_interleaved
    from patsearch.search.results import best_row, rows

    profile = load_profile(args.profile or args.device, allow_stale=True)
    entries = []  # (label, row)
    for sampler in ("tpe", "random"):
        study = optuna.load_study(study_name=f"{args.prefix}-{sampler}",
                                  storage=f"sqlite:///{Path(args.runs_dir) / f'{args.prefix}-{sampler}' / 'study.db'}")
        rs = rows(study)
        trained = [r for r in rs if r.top1 is not None and r.feasible]
        proposals = len(rs)
        best = best_row([r for r in rs if not r.baseline])
        entries.append((f"{sampler.upper() if sampler == 'tpe' else 'random'} best (trial {best.number})", best,
                        len(trained), proposals))
        for r in rs:
            if r.baseline and r.top1 is not None:
                entries.append((f"{r.baseline} (enqueued in the TPE study)", r, None, None))
    device = get_device(profile.device)
    configure(device, profile.protocol)
    items = []
    for _, r, _, _ in entries:
        arch = ArchConfig.from_dict(r.arch)
        model = create_model(arch, fused=True).eval()
        items.append(prepare(model, (3, r.resolution, r.resolution), device, profile.protocol))
    timings = time_interleaved(items, gpu=False, budget=NETWORK_BUDGET_CPU)
    print(f"\n| network | proxy top-1 | predicted {args.device} latency | measured latency (median, p10-p90) "
          "| params | FLOPs | trained / proposed |")
    print("|---|---|---|---|---|---|---|")
    for (label, r, trained, proposals), timing in zip(entries, timings):
        arch = ArchConfig.from_dict(r.arch)
        model = create_model(arch)
        params, flops = count_params(model), count_flops(model, r.resolution)
        t = timing.to_dict()
        pred = r.predicted[f"{args.device}:latency_ms"]
        counts = f"{trained} / {proposals}" if trained is not None else "-"
        seeds = f" (mean of {len(r.scores)} seeds)" if r.confirmed else ""
        print(f"| {label}: embed {arch.embed_dim}, depths {list(arch.depths)}, mixers {'/'.join(arch.mixers)}, "
              f"PAT_sp {'/'.join(arch.spatial)}, {arch.act}, n_div {arch.n_div}, mlp {arch.mlp_ratio:g} "
              f"| {100 * r.score:.2f}%{seeds} | {pred:.1f} ms | {t['ms']:.1f} ms ({t['p10']:.1f}-{t['p90']:.1f}) "
              f"| {params / 1e6:.2f}M | {flops / 1e6:.0f}M | {counts} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--device", default="epyc")
    ap.add_argument("--profile", help="a profile JSON to use instead of the device's current one (a snapshot)")
    ap.add_argument("--budget", default="35ms")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--train-samples", type=int, default=3000)
    ap.add_argument("--val-samples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs-dir", default="runs/bench-search")
    ap.add_argument("--prefix", default="cifar-35ms")
    ap.add_argument("--phase", choices=("all", "search", "measure"), default="all")
    args = ap.parse_args()
    Path(args.runs_dir).mkdir(parents=True, exist_ok=True)
    start = time.time()
    if args.phase in ("all", "search"):
        run_searches(args)
        print(f"searches took {time.time() - start:.0f} s", flush=True)
    if args.phase in ("all", "measure"):
        measure(args)


if __name__ == "__main__":
    main()

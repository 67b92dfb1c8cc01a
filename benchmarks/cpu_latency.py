"""Single-thread CPU latency (batch 1) of PATNet T0-S against timm's FasterNet T0-S, trained and fused form.

All models are measured in one process, interleaved in small groups (warm-up, then the median of many runs), so
the PATNet/FasterNet ratios are side by side even on a machine whose other core is busy.

    .venv/bin/python benchmarks/cpu_latency.py --out docs/cpu_latency.md
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from patsearch.profiler import run_bench
from patsearch.profiler.bench import write_result

SIZES = ("t0", "t1", "t2", "s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated sizes (t0,t1,t2,s,m,l)")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--out", type=Path, default=None, help="also write the table (.md, .csv or .json)")
    args = parser.parse_args()
    sizes = args.sizes.split(",")
    models = [f"{family}_{size}" for size in sizes for family in ("patnet", "fasternet")]
    result = run_bench("cpu", models=models, forms=("trained", "fused"), resolution=args.resolution, threads=1,
                       batch=1, command=" ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]))
    print(result.to_markdown())
    if args.out:
        write_result(result, args.out)


if __name__ == "__main__":
    main()

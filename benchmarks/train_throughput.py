"""Training throughput (img/s) of PATNet vs its FasterNet peer in one harness.

    python benchmarks/train_throughput.py --archs patnet_t2 fasternet_t2 --resolution 224 --batch-size 256 --out t.json

Both models run the trainer's own step (bf16 autocast on GPUs, channels_last, fused AdamW) on device-resident random
images, alternating over several rounds; the median per round is reported and the best round per model is kept.
``--fused-kernels both`` measures each PATNet twice a round, plain and with patsearch.kernels' fused ops (reported
as ``<arch>+fused``), so the three columns come from one process on one GPU. ``--inductor KEY=VALUE`` sets a
``torch._inductor.config`` option for every model of the run (a generic compile trick, so both sides get it), e.g.
``--compile --inductor coordinate_descent_tuning=True``. ``--norms frozen|fixed`` is a diagnostic for both networks:
the step with every BatchNorm on its running statistics (and, ``fixed``, without gradients for its affine), which
shows what the training-mode normalisations cost (``patsearch.train.throughput.set_norm_mode``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from inductor_settings import add_inductor_argument, apply_inductor_settings  # noqa: E402

from patsearch.io import atomic_write_json  # noqa: E402
from patsearch.models import is_patnet_ref  # noqa: E402
from patsearch.train.throughput import NORM_MODES, measure_train_throughput  # noqa: E402


def measured_runs(archs: list[str], fused_kernels: str) -> list[tuple[str, str, bool]]:
    """(label, arch, fused) per measurement of a round; only PATNets have fused variants."""
    runs = []
    for arch in archs:
        patnet = is_patnet_ref(arch)
        if fused_kernels in ("off", "both") or not patnet:
            runs.append((arch, arch, False))
        if fused_kernels in ("on", "both") and patnet:
            runs.append((arch + "+fused", arch, True))
    return runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", nargs="+", default=["patnet_t2", "fasternet_t2"])
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--cuda-graph", action="store_true", help="replay each step from one CUDA graph (both models)")
    p.add_argument("--fused-kernels", choices=["off", "on", "both"], default="off",
                   help="PATNet's gates through patsearch.kernels (Triton): off, on, or both side by side "
                        "(FasterNet has no such parts: always plain)")
    add_inductor_argument(p)
    p.add_argument("--norms", choices=NORM_MODES, default="train",
                   help="diagnostic: BatchNorms on running statistics (frozen), also without affine gradients (fixed)")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    inductor = apply_inductor_settings(args.inductor)
    runs = measured_runs(args.archs, args.fused_kernels)
    rounds: dict[str, list[dict]] = {label: [] for label, _, _ in runs}
    for r in range(args.rounds):
        for label, arch, fused in runs:
            res = measure_train_throughput(arch, batch_size=args.batch_size, resolution=args.resolution,
                                           steps=args.steps, device=args.device, compile=args.compile,
                                           cuda_graph=args.cuda_graph, fused_kernels=fused, norms=args.norms)
            rounds[label].append(res)
            print(f"round {r + 1} {label}: {res['img_s']:.0f} img/s ({res['step_ms']:.1f} ms/step, "
                  f"{res['dtype']}, peak {res['peak_mem_gib'] or 0:.1f} GiB)", flush=True)
    best = {a: max(rs, key=lambda x: x["img_s"]) for a, rs in rounds.items()}
    ref = runs[-1][0]
    summary = {"inductor": inductor, "norms": args.norms, "best": best, "rounds": rounds,
               "ratio_vs_" + ref: {a: best[a]["img_s"] / best[ref]["img_s"] for a in rounds}}
    print(json.dumps(summary["ratio_vs_" + ref]))
    if args.out:
        atomic_write_json(args.out, summary, indent=1)


if __name__ == "__main__":
    main()

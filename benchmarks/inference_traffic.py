"""Bytes per image the deployment forms move in inference, PATNet against FasterNet given the same tricks, counted
on any device (what bounds PATNet's inference speed against FasterNet's).

    PYTHONPATH=$PWD python benchmarks/inference_traffic.py [--sizes t2,s,m,l] [--out F.json]

Every form of ``speed_common`` (PATNet deploy and fast, FasterNet fx and fast), in float32 and in bf16
channels-last as ``prepare_inference`` sets them up for the GPU, counted with the GPU formulation of the fast paths
(:func:`speed_common.bytes_per_image` with ``gpu_formulation``): each non-view op reads its inputs once and writes
its outputs once, per image (the difference of batch 4 and 2, so weights drop out). A lower bound of the traffic
of eager kernels; ``ratio`` is the bytes of the FasterNet form that moves less over PATNet-fast's (the speed
scripts likewise take the faster FasterNet form), the throughput ratio a purely memory-bound GPU would show.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speed_common import build_forms, bytes_per_image  # noqa: E402

from patsearch.io import atomic_write_json  # noqa: E402
from patsearch.models.inference import prepare_inference  # noqa: E402

PRECISIONS = {"float32": (torch.float32, False), "bfloat16-cl": (torch.bfloat16, True)}
COLUMN_NAMES = ("patnet-deploy", "patnet-fast", "fasternet-fx", "fasternet-fast")  # of speed_common.COLUMNS


def count(size: str, precision: str, resolution: int) -> dict:
    dtype, channels_last = PRECISIONS[precision]
    example = torch.randn(2, 3, resolution, resolution, dtype=dtype)
    if channels_last:
        example = example.contiguous(memory_format=torch.channels_last)
    mib, by_op = {}, {}
    for form, model in build_forms(size, COLUMN_NAMES).items():
        prepared, _ = prepare_inference(model, example, fast_path=form == "patnet-fast")
        total, ops = bytes_per_image(prepared, resolution, dtype, channels_last=channels_last, gpu_formulation=True)
        mib[form] = round(total / 2**20, 3)
        by_op[form] = {op: round(b / 2**20, 3) for op, b in ops.items() if b >= 0.05 * 2**20}
    return {"size": size, "precision": precision, "mib_per_image": mib,
            "ratio": round(min(mib["fasternet-fx"], mib["fasternet-fast"]) / mib["patnet-fast"], 3),
            "mib_per_image_by_op": by_op}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="t2,s,m,l")
    parser.add_argument("--precisions", default="bfloat16-cl,float32")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    results = []
    for size in args.sizes.split(","):
        for precision in args.precisions.split(","):
            r = count(size, precision, args.resolution)
            results.append(r)
            print(f"{size} {precision}: " + ", ".join(f"{k} {v:.2f}" for k, v in r["mib_per_image"].items())
                  + f" MiB/image; FasterNet (lesser form) / PATNet-fast {r['ratio']:.2f}",
                  flush=True)
    if args.out:
        atomic_write_json(args.out, {"resolution": args.resolution, "results": results}, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

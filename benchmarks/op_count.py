"""Where a training step's kernel launches come from, counted on any device: the aten ops one training step
dispatches (forward under bf16 autocast, backward; after one warm-up step), views left out, for PATNet and its
FasterNet peer.

    PYTHONPATH=$PWD python benchmarks/op_count.py --archs patnet_t2 fasternet_t2 [--resolution 64] [--out F.json]

On a GPU almost every non-view op is one kernel launch (a few launch two), so the counts say how launch-bound an
eager step is before any GPU is lent; the forward ops are also split by the module that dispatched them.
"""
from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from patsearch.io import atomic_write_json  # noqa: E402
from patsearch.models import create_model  # noqa: E402

VIEWS = {"view", "_unsafe_view", "t", "transpose", "permute", "expand", "unsqueeze", "squeeze", "split",
         "split_with_sizes", "slice", "select", "as_strided", "detach", "alias", "reshape", "flatten", "unbind",
         "view_as", "_reshape_alias"}
# Module classes whose forward ops are attributed to them (the innermost one that is running wins).
ATTRIBUTED = ("Mlp", "SelfAttention", "PartialSelfAttention", "PartialChannelAttention", "GaussianSE", "PartialConv",
              "Block", "MLPBlock", "Partial_conv3")


class _Counter(TorchDispatchMode):
    def __init__(self, owner: list[str]) -> None:
        super().__init__()
        self.owner = owner
        self.ops: collections.Counter[str] = collections.Counter()
        self.by_module: collections.Counter[str] = collections.Counter()
        self.phase = "forward"

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name not in VIEWS:
            self.ops[f"{self.phase}:{name}"] += 1
            if self.phase == "forward":
                self.by_module[self.owner[-1] if self.owner else "other"] += 1
        return func(*args, **(kwargs or {}))


def count(arch: str, resolution: int, batch: int) -> dict:
    model = create_model(arch, num_classes=10).train().to(memory_format=torch.channels_last)
    owner: list[str] = []
    for module in model.modules():
        kind = type(module).__name__
        if kind in ATTRIBUTED:
            module.register_forward_pre_hook(lambda _m, _i, kind=kind: owner.append(kind))
            module.register_forward_hook(lambda _m, _i, _o: owner.pop() and None)
    x = torch.randn(batch, 3, resolution, resolution).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a warm-up step: per-resolution caches filled, as in training
        warm = model(x)
    warm.float().logsumexp(1).mean().backward()
    model.zero_grad(set_to_none=True)  # as the optimiser step leaves it: no accumulation into old gradients
    owner.clear()
    with _Counter(owner) as counter:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        counter.phase = "backward"
        out.float().logsumexp(1).mean().backward()
    forward = sum(v for k, v in counter.ops.items() if k.startswith("forward:"))
    backward = sum(v for k, v in counter.ops.items() if k.startswith("backward:"))
    return {"arch": arch, "ops": forward + backward, "forward": forward, "backward": backward,
            "batch_norms": counter.ops["forward:native_batch_norm"], "convs": counter.ops["forward:convolution"],
            "forward_by_module": dict(counter.by_module.most_common()),
            "top_ops": dict(counter.ops.most_common(25))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["patnet_t2", "fasternet_t2"])
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    results = [count(a, args.resolution, args.batch) for a in args.archs]
    for r in results:
        print(f"{r['arch']}: {r['ops']} ops per training step ({r['forward']} forward, {r['backward']} backward), "
              f"{r['convs']} convolutions, {r['batch_norms']} batch norms; forward by module: "
              + ", ".join(f"{k} {v}" for k, v in r["forward_by_module"].items()))
    if args.out:
        atomic_write_json(args.out, {"resolution": args.resolution, "batch": args.batch, "results": results},
                          indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

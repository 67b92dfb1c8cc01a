"""Where a training step's kernel launches and memory traffic come from, counted on any device: the aten ops one
training step dispatches (forward under bf16 autocast, backward; after one warm-up step), views left out, and the
bytes each reads and writes, for PATNet and its FasterNet peer.

    PYTHONPATH=$PWD python benchmarks/op_count.py --archs patnet_t2 fasternet_t2 [--resolution 64] [--fused] \
        [--out F.json]

On a GPU almost every non-view op is one kernel launch (a few launch two), so the counts say how launch-bound an
eager step is before any GPU is lent; the forward ops are also split by the module that dispatched them.

Bytes: each op's tensor arguments count as read once and its outputs as written once (a broadcast argument by
its distinct elements). That is the traffic of the op sequence if every op streamed its operands exactly once: a
lower bound for unfused kernels (a train-mode BN reads its input twice, for example; caches are ignored). The
step is counted at ``--batch`` and twice that, and the difference gives the bytes per image, free of the
batch-independent traffic (weights, their casts and gradients). ``--fused`` adds each PATNet with
:func:`patsearch.models.use_fused_kernels` (label ``<arch>+fused``): the fused ops count as one op each, with
the traffic of their kernels.
"""
from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speed_common import op_traffic  # noqa: E402
from train_throughput import measured_runs  # noqa: E402

from patsearch.io import atomic_write_json  # noqa: E402
from patsearch.models import create_model, use_fused_kernels  # noqa: E402

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
        self.bytes: collections.Counter[str] = collections.Counter()  # "<phase>:read" / "<phase>:write"
        self.bytes_by_module: collections.Counter[str] = collections.Counter()
        self.bytes_by_op: collections.Counter[str] = collections.Counter()  # "<phase>:<op>": read + written
        self.phase = "forward"

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        if name not in VIEWS:
            read, written = op_traffic(args, kwargs, out)
            self.ops[f"{self.phase}:{name}"] += 1
            self.bytes[f"{self.phase}:read"] += read
            self.bytes[f"{self.phase}:write"] += written
            self.bytes_by_op[f"{self.phase}:{name}"] += read + written
            if self.phase == "forward":
                module = self.owner[-1] if self.owner else "other"
                self.by_module[module] += 1
                self.bytes_by_module[module] += read + written
        return out


def count(arch: str, resolution: int, batch: int, fused: bool = False) -> dict:
    torch.manual_seed(0)
    model = create_model(arch, num_classes=10).train().to(memory_format=torch.channels_last)
    if fused:
        use_fused_kernels(model)
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
    return {"arch": arch + ("+fused" if fused else ""), "ops": forward + backward, "forward": forward,
            "backward": backward,
            "batch_norms": counter.ops["forward:native_batch_norm"], "convs": counter.ops["forward:convolution"],
            "forward_by_module": dict(counter.by_module.most_common()),
            "top_ops": dict(counter.ops.most_common(25)), "op_counts": dict(sorted(counter.ops.items())),
            "bytes": dict(counter.bytes), "forward_bytes_by_module": dict(counter.bytes_by_module.most_common()),
            "bytes_by_op": dict(counter.bytes_by_op.most_common())}


def with_bytes_per_image(arch: str, resolution: int, batch: int, fused: bool = False) -> dict:
    """:func:`count` at ``batch``, plus the traffic per image from the difference to a step at twice the batch."""
    result = count(arch, resolution, batch, fused)
    double = count(arch, resolution, 2 * batch, fused)

    def per_image_of(field: str) -> dict[str, float]:
        return {key: (double[field].get(key, 0) - value) / batch for key, value in result[field].items()}

    per_image = per_image_of("bytes")
    result["bytes_per_image"] = per_image
    result["mib_per_image"] = {
        phase: (per_image[f"{phase}:read"] + per_image[f"{phase}:write"]) / 2**20 for phase in ("forward", "backward")}
    result["mib_per_image"]["step"] = result["mib_per_image"]["forward"] + result["mib_per_image"]["backward"]
    result["fixed_mib"] = (sum(result["bytes"].values()) - batch * sum(per_image.values())) / 2**20
    by_op = sorted(per_image_of("bytes_by_op").items(), key=lambda kv: -kv[1])
    result["mib_per_image_by_op"] = {  # ops with a per-image share of at least 0.1 MiB, largest first
        key: round(b / 2**20, 3) for key, b in by_op if b / 2**20 >= 0.1}
    result["forward_mib_per_image_by_module"] = {
        key: round(b / 2**20, 3) for key, b in per_image_of("forward_bytes_by_module").items()}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["patnet_t2", "fasternet_t2"])
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--fused", action="store_true", help="also each PATNet with the fused ops (<arch>+fused)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    runs = measured_runs(args.archs, "both" if args.fused else "off")
    results = [with_bytes_per_image(arch, args.resolution, args.batch, fused) for _, arch, fused in runs]
    for r in results:
        mib = r["mib_per_image"]
        print(f"{r['arch']}: {r['ops']} ops per training step ({r['forward']} forward, {r['backward']} backward), "
              f"{r['convs']} convolutions, {r['batch_norms']} batch norms; {mib['step']:.2f} MiB per image moved "
              f"({mib['forward']:.2f} forward, {mib['backward']:.2f} backward); forward by module: "
              + ", ".join(f"{k} {v}" for k, v in r["forward_by_module"].items()))
    if args.out:
        atomic_write_json(args.out, {"resolution": args.resolution, "batch": args.batch, "results": results},
                          indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

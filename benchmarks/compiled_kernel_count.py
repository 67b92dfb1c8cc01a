"""How many kernels Inductor generates for one compiled training step, PATNet against its FasterNet peer (what
is left of the training gap once compile has fused the elementwise work and a CUDA graph has removed the
launches).

    PYTHONPATH=$PWD python benchmarks/compiled_kernel_count.py --archs patnet_t2 fasternet_t2 [--device cuda]

Per architecture: the forward's FX op count and graph breaks (``torch._dynamo.explain``), then the kernels Inductor
generates for the forward and backward of one bf16 training step, channels-last, batch 2 at 64 px
(``torch._inductor.metrics.generated_kernel_count``; convolutions and GEMMs are library calls on top of these).
On a CPU the kernels are C++ loops and Inductor fuses somewhat differently than for a GPU, so treat the count as
the architecture's number of separately scheduled reductions and pointwise groups, not as a GPU kernel count.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torch._inductor.metrics as inductor_metrics  # noqa: E402

from patsearch.train.distributed import resolve_device  # noqa: E402
from patsearch.train.engine import build_model  # noqa: E402


def count(arch: str, device: torch.device, resolution: int, batch: int) -> dict:
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = build_model(arch, 10).to(device=device, memory_format=torch.channels_last).train()
    x = torch.randn(batch, 3, resolution, resolution, device=device).to(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        explained = torch._dynamo.explain(model)(x)
    torch._dynamo.reset()
    inductor_metrics.reset()
    compiled = torch.compile(model)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        loss = compiled(x).float().logsumexp(1).mean()
    loss.backward()
    return {"arch": arch, "device": device.type, "resolution": resolution, "batch": batch,
            "fx_ops_forward": explained.op_count, "graphs": explained.graph_count,
            "graph_breaks": explained.graph_break_count,
            "generated_kernels_step": inductor_metrics.generated_kernel_count}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", nargs="+", default=["patnet_t2", "fasternet_t2"])
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    rows = []
    for arch in args.archs:
        row = count(arch, device, args.resolution, args.batch)
        rows.append(row)
        print(f"{arch}: {row['fx_ops_forward']} FX ops forward, {row['graphs']} graph(s), {row['graph_breaks']} "
              f"breaks; {row['generated_kernels_step']} Inductor kernels for forward + backward", flush=True)
    if args.out:
        tmp = f"{args.out}.tmp"
        with open(tmp, "w") as fh:
            json.dump({"command": " ".join(sys.argv), "torch": torch.__version__, "rows": rows}, fh, indent=1)
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()

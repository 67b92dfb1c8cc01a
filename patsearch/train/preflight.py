"""What a run checks and says before it starts: the notes where it would otherwise surprise, the precision it
really computes in, and what a CUDA-graphed step needs."""
from __future__ import annotations

import torch

from patsearch.errors import UserError
from patsearch.train.distributed import DistContext
from patsearch.train.options import TrainOptions
from patsearch.train.recipe import Recipe

# A recipe this long is the paper's ImageNet schedule: days on a CPU, so a CPU run says how to shorten it.
LONG_RECIPE_EPOCHS = 50


def run_notes(o: TrainOptions, rec: Recipe, device: torch.device) -> list[str]:
    """Lines a run says before it starts where it would otherwise surprise: synthetic data (no ``--data``), and a
    full-length recipe on a CPU, with what to pass instead."""
    notes = []
    if o.data is None:
        notes.append(f"note: no --data given: training on the built-in synthetic set ({o.synthetic[0]} train / "
                     f"{o.synthetic[1]} val generated images of shapes), not a real dataset; pass --data DIR, an "
                     "ImageNet-style folder of train/ and val/ class folders")
    if device.type == "cpu" and rec.epochs >= LONG_RECIPE_EPOCHS and o.max_steps is None:
        notes.append(f"note: recipe {rec.name or '(custom)'} trains {rec.epochs} epochs (the paper's ImageNet "
                     "schedule), which takes many hours on a CPU; pass --epochs N or --max-steps N for a short run")
    return notes


def fused_kernels_note(o: TrainOptions, device: torch.device) -> str | None:
    """A line for the run header where --fused-kernels will slow the step down rather than speed it up (measured
    on an H200, see docs/BENCHMARKS.md): eager, each op's host cost outweighs its saved traffic; compiled, the
    opaque ops keep Inductor from fusing around them. They pay under --cuda-graph without --compile."""
    if not o.fused_kernels or device.type != "cuda":
        return None
    if o.compile:
        return ("note: --fused-kernels under --compile is slower than --compile alone (Inductor cannot fuse "
                "through the custom ops); drop --fused-kernels")
    if not o.cuda_graph:
        return ("note: --fused-kernels without --cuda-graph is host-bound and slower than plain eager steps; "
                "add --cuda-graph (or use --compile --cuda-graph without --fused-kernels)")
    return None


def check_cuda_graph(o: TrainOptions, ctx: DistContext, rec: Recipe, dtype: torch.dtype | None) -> None:
    """What a CUDA-graphed step needs, as one-line errors naming the option to drop."""
    if ctx.device.type != "cuda":
        raise UserError(f"--cuda-graph needs a CUDA GPU and this run is on {ctx.device.type}; drop --cuda-graph")
    if ctx.enabled:
        raise UserError("--cuda-graph runs a single process; drop it under torchrun")
    if dtype == torch.float16:
        raise UserError("--cuda-graph needs bf16 or float32 (this GPU has no bf16, and fp16's GradScaler syncs "
                        "with the host every step); drop --cuda-graph")
    sizes = {rec.resolution_at(epoch) for epoch in range(rec.epochs)}
    if rec.multi_scale != "none" or len(sizes) > 1:
        raise UserError(f"--cuda-graph needs one training resolution, and recipe {rec.name or '(custom)'} trains "
                        f"at several ({rec.multi_scale}); pass --multi-scale none or drop --cuda-graph")


def describe_precision(dtype: torch.dtype | None, amp: bool, device: torch.device) -> str:
    """What the run really computes in, for the header and metrics (the recipe's ``amp`` is a request)."""
    if dtype == torch.bfloat16:
        return "bfloat16 autocast"
    if dtype == torch.float16:
        return "float16 autocast + GradScaler"
    if amp and device.type != "cuda":
        return f"float32 (amp off on {device.type.upper()})"
    return "float32 (amp off)"

"""Shared pieces of the speed benchmarks (PATNet vs FasterNet, deployment forms, side by side).

Both scripts build, for each size X, the deployment forms being compared; each is a network and a form of
the registry :mod:`patsearch.models.forms`:

- ``patnet-deploy``: PATNet-X, form ``fused`` (the baseline deployment path);
- ``patnet-fast``: PATNet-X, form ``fast`` (same function, fewer memory passes);
- ``patnet-fastk``: PATNet-X, form ``fast_kernels`` (the fast form with PAT_sp's tail and the shortcut in fc2's
  GEMM epilogue, one Triton kernel per block; GPU and bf16/fp16 only, else the same as ``patnet-fast``);
- ``fasternet-fx``: FasterNet-X, form ``fused`` (torch.fx conv-BN folding, what ``patsearch bench`` deploys);
- ``fasternet-slicing``: FasterNet-X, form ``slicing`` (the same folding kept eager, with FasterNet's own
  inference mode for the partial conv);
- ``fasternet-fast``: FasterNet-X, form ``fast`` (that, plus the generic GEMM-epilogue tricks PATNet's fast
  path also uses).

Ratios are taken against the faster FasterNet form, so the peer is given its best eager deployment path.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn as nn

SIZES = ("t0", "t1", "t2", "s", "m", "l")
# Column name -> (network family, form of patsearch.models.forms, the one vocabulary of forms).
COLUMNS = {"patnet-deploy": ("patnet", "fused"), "patnet-fast": ("patnet", "fast"),
           "patnet-fastk": ("patnet", "fast_kernels"),
           "fasternet-fx": ("fasternet", "fused"), "fasternet-slicing": ("fasternet", "slicing"),
           "fasternet-fast": ("fasternet", "fast")}
COLUMN_NAMES = tuple(COLUMNS)


class ScriptRun:
    """One run of a device benchmark script: its arguments, its output folder (``--out``, made here) and its clock."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.t0


def trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` in eval mode with trained-like statistics (:func:`~patsearch.models.statistics.randomize_statistics`):
    freshly built BNs fold to scale 1 and shift 0, which would let a deployment path skip work a trained model
    needs."""
    from patsearch.models.statistics import randomize_statistics

    return randomize_statistics(model, torch.Generator().manual_seed(seed)).eval()


def unknown_form_error(forms) -> str | None:
    """The message for the first name in ``forms`` that is not a column of :data:`COLUMNS`, or None."""
    unknown = [f for f in forms if f not in COLUMNS]
    return f"unknown form {unknown[0]!r}; choose from {', '.join(COLUMNS)}" if unknown else None


def build_forms(size: str, forms: tuple[str, ...] = COLUMN_NAMES, num_classes: int = 1000) -> dict[str, nn.Module]:
    """Deployment-form models of PATNet-``size`` and FasterNet-``size`` on the CPU in float32, eval mode, with
    trained-like BN statistics (:func:`trained_like`)."""
    from patsearch.models import create_model
    from patsearch.models.forms import build_form

    error = unknown_form_error(forms)
    if error:
        raise ValueError(error)
    out: dict[str, nn.Module] = {}
    for family in ("patnet", "fasternet"):
        wanted = [f for f in forms if COLUMNS[f][0] == family]
        if wanted:
            base = trained_like(create_model(f"{family}_{size}", num_classes=num_classes))
            for f in wanted:
                out[f] = build_form(base, COLUMNS[f][1])
    return out


def ratios(values: dict[str, float], metric: str) -> dict[str, float]:
    """PATNet form / best FasterNet form, in the "faster" direction (>1: PATNet faster)."""
    peers = [v for k, v in values.items() if k.startswith("fasternet") and v]
    if not peers:
        return {}
    best = max(peers) if metric == "throughput" else min(peers)
    out = {}
    for k, v in values.items():
        if k.startswith("patnet") and v:
            out[k] = round(v / best if metric == "throughput" else best / v, 4)
    return out


def distinct_bytes(t: torch.Tensor) -> int:
    """Bytes of the distinct elements of ``t``: a broadcast (stride-0) dimension is stored once."""
    elements = 1
    for size, stride in zip(t.shape, t.stride()):
        if stride != 0:
            elements *= size
    return elements * t.element_size()


def op_traffic(args: tuple, kwargs: dict, out) -> tuple[int, int]:
    """(bytes read, bytes written) by one op streaming each operand once: its tensor inputs are read (an ``out=``
    target only if it is also an input), its outputs written; a broadcast operand counts its distinct elements."""
    leaves = torch.utils._pytree.tree_leaves
    out_kw = {id(t) for t in leaves(kwargs.get("out")) if isinstance(t, torch.Tensor)}
    read = sum(distinct_bytes(t) for t in leaves((args, kwargs)) if isinstance(t, torch.Tensor) and id(t) not in out_kw)
    written = sum(distinct_bytes(t) for t in leaves(out) if isinstance(t, torch.Tensor))
    return read, written


class BytesCounter(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts bytes read and written (:func:`op_traffic`) by every non-view aten op (each op a separate kernel, as
    in eager mode). Views, metadata ops and empty allocations move nothing and are skipped.
    """

    SKIP = ("aten::empty", "aten::empty_like", "aten::empty_strided", "aten::detach", "aten::lift_fresh",
            "aten::_to_copy")

    def __init__(self, also_skip: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.by_op: dict[str, int] = {}
        self.skip = self.SKIP + also_skip

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func._schema.name
        if getattr(func, "is_view", False) or name in self.skip or name.startswith("aten::_local_scalar"):
            return out
        self.by_op[name] = self.by_op.get(name, 0) + sum(op_traffic(args, kwargs, out))
        return out


def bytes_per_image(model: nn.Module, resolution: int = 224, dtype: torch.dtype = torch.float32,
                    device: str = "cpu", channels_last: bool = False, gpu_formulation: bool = False
                    ) -> tuple[float, dict[str, float]]:
    """Activation bytes moved per image by eager kernels: the difference between batch 4 and batch 2, halved,
    so that weights (read once per batch) drop out.

    ``gpu_formulation`` counts what a GPU runs, on any device: the fast paths' GPU formulation
    (:func:`patsearch.models.fast_ops.gpu_path`), and an in-place ReLU as part of its producer (on a GPU it
    is cuDNN's or cuBLASLt's epilogue of the conv or GEMM before it; off the GPU it falls back to ``relu_``)."""
    from patsearch.models.fast_ops import gpu_path

    per_batch = {}
    for batch in (2, 4):
        x = torch.randn(batch, 3, resolution, resolution, dtype=dtype, device=device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        counter = BytesCounter(also_skip=("aten::relu_",) if gpu_formulation else ())
        with torch.inference_mode(), gpu_path(gpu_formulation), counter:
            model(x)
        per_batch[batch] = counter.by_op
    ops = set(per_batch[2]) | set(per_batch[4])
    by_op = {op: (per_batch[4].get(op, 0) - per_batch[2].get(op, 0)) / 2 for op in ops}
    return sum(by_op.values()), dict(sorted(by_op.items(), key=lambda kv: -kv[1]))

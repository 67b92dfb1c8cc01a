"""The ONNX file of the deployment (fused) form, optionally with a trained checkpoint's weights."""
from __future__ import annotations

import importlib.util
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from patsearch.errors import UserError
from patsearch.export.options import DYNAMO_MIN_OPSET, ExportOptions
from patsearch.io import atomic_write_bytes, ensure_writable

logger = logging.getLogger("patsearch.export")


def read_checkpoint(checkpoint: str | os.PathLike) -> dict:
    """A checkpoint written by ``patsearch train`` (or a bare state dict), loaded with ``weights_only=True``."""
    from patsearch.train import checkpoint as ckpt

    state = ckpt.load(checkpoint, fix="pass the .pt file written by `patsearch train` (e.g. runs/<name>/best.pt)")
    if not isinstance(state.get("model"), dict):
        state = {"model": state}
    return state


def load_weights(model: torch.nn.Module, checkpoint: str | os.PathLike | dict) -> torch.nn.Module:
    """Load a checkpoint (a path, or what :func:`read_checkpoint` returned) into ``model``."""
    label = "the checkpoint" if isinstance(checkpoint, dict) else f"checkpoint {Path(checkpoint)}"
    ckpt = checkpoint if isinstance(checkpoint, dict) else read_checkpoint(checkpoint)
    state = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError:  # tensors of the wrong shape
        raise UserError(f"{label} does not match the architecture (tensor shapes differ); pass the --arch "
                        "it was trained with") from None
    if missing or unexpected:
        raise UserError(f"{label} does not match the architecture: {len(missing)} missing and "
                        f"{len(unexpected)} unexpected tensors (e.g. {(missing or unexpected)[0]}); pass the --arch "
                        "it was trained with")
    return model


def export_onnx(arch: Any | ExportOptions, out: str | os.PathLike | None = None, **options: Any) -> Path:
    """Write the fused model as ONNX (atomically) and return the path: ``arch`` is an :class:`ExportOptions`, or
    the architecture with ``out`` (its ``onnx`` file) and the other fields as keywords.

    torch's dynamo exporter (``torch.export`` + onnxscript) writes the graph, with a dynamic batch axis traced from
    an example batch of 2 (batch 1 would be specialised into the graph). An opset below its
    :data:`DYNAMO_MIN_OPSET`, or no onnxscript, falls back to the deprecated TorchScript exporter, and says so.
    """
    from patsearch.models import create_model
    from patsearch.models.forms import build_form

    if isinstance(arch, ExportOptions):
        opts = arch.replace(**options, **({} if out is None else {"onnx": out}))
    else:
        opts = ExportOptions(arch, out, **options)
    out = Path(opts.onnx)
    ensure_writable(out, "--onnx", example=f"./{out.name}")
    checkpoint, num_classes, resolution, opset = opts.checkpoint, opts.num_classes, opts.resolution, opts.opset
    ckpt = read_checkpoint(checkpoint) if checkpoint is not None else None
    if ckpt is not None and num_classes is None and isinstance(ckpt.get("classes"), list):
        num_classes = len(ckpt["classes"])  # trained checkpoints record their classes
    model = create_model(opts.arch, num_classes=num_classes)
    if ckpt is not None:
        load_weights(model, ckpt)
    else:
        logger.warning("note: no --checkpoint: the exported weights are a random initialisation (the graph and its "
                       "cost, not a trained model); pass --checkpoint runs/<name>/best.pt for trained weights")
    fused = build_form(model, "fused")  # the registry's deployment form
    x = torch.randn(2, 3, resolution, resolution)
    reason = _legacy_reason(opset)
    if reason is None:
        data = _dynamo_onnx(fused, x, opset, opts.dynamic_batch)
    else:
        logger.warning(f"note: {reason}; using torch's deprecated TorchScript exporter")
        data = _torchscript_onnx(fused, x, opset, opts.dynamic_batch)
    atomic_write_bytes(out, data)
    return out


def _legacy_reason(opset: int) -> str | None:
    """Why the dynamo exporter cannot write this graph (None: it can)."""
    if opset < DYNAMO_MIN_OPSET:
        return f"--opset {opset} is older than the {DYNAMO_MIN_OPSET} the dynamo exporter writes"
    if importlib.util.find_spec("onnxscript") is None:
        return "onnxscript is not installed (pip install onnxscript, or the [onnx] extra)"
    return None


def _dynamo_onnx(model: torch.nn.Module, x: torch.Tensor, opset: int, dynamic_batch: bool) -> bytes:
    shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    program = torch.onnx.export(model, (x,), None, dynamo=True, opset_version=opset, input_names=["image"],
                                output_names=["logits"], dynamic_shapes=shapes, verbose=False)
    return program.model_proto.SerializeToString()


def _torchscript_onnx(model: torch.nn.Module, x: torch.Tensor, opset: int, dynamic_batch: bool) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # GaussianSE picks the std correction from the map size (1x1 maps have no unbiased std). The graph's
        # resolution is fixed (only the batch is dynamic), so the branch traced is right for every input it takes;
        # the tracer's "treated as a constant" warning is exactly that and nothing to act on.
        warnings.filterwarnings("ignore", message="Converting a tensor to a Python boolean",
                                category=torch.jit.TracerWarning, module=r"patsearch\.(models|kernels)\..*")
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        torch.onnx.export(model, (x,), buffer, opset_version=opset, input_names=["image"],
                          output_names=["logits"], dynamo=False,
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None)
    return buffer.getvalue()

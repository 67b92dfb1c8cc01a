"""ONNX export of the deployment (fused) form, optionally from a trained checkpoint."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from patsearch.errors import UserError
from patsearch.io import atomic_open

MIN_OPSET = 17


def read_checkpoint(checkpoint: str | os.PathLike) -> dict:
    """A checkpoint written by ``patsearch train`` (or a bare state dict), loaded with ``weights_only=True``."""
    path = Path(checkpoint)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; pass the .pt file written by `patsearch train`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or not a torch file
        raise UserError(f"checkpoint {path} could not be read ({type(exc).__name__}); "
                        "is it a patsearch checkpoint?") from None
    if not isinstance(state, dict):
        raise UserError(f"checkpoint {path} holds no state dict")
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


def export_onnx(arch: Any, out: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None,
                resolution: int = 224, opset: int = MIN_OPSET, num_classes: int | None = None,
                dynamic_batch: bool = True) -> Path:
    """Write the fused model as ONNX to ``out`` (atomically) and return the path."""
    from patsearch.arch import check_resolution
    from patsearch.models import create_model
    from patsearch.models.forms import build_form

    if opset < MIN_OPSET:
        raise UserError(f"--opset {opset} is too old; use {MIN_OPSET} or newer")
    check_resolution((resolution, resolution))
    out = Path(out)
    if out.suffix != ".onnx":
        raise UserError(f"output {out} should end in .onnx")
    ckpt = read_checkpoint(checkpoint) if checkpoint is not None else None
    if ckpt is not None and num_classes is None and isinstance(ckpt.get("classes"), list):
        num_classes = len(ckpt["classes"])  # trained checkpoints record their classes
    model = create_model(arch, num_classes=num_classes)
    if ckpt is not None:
        load_weights(model, ckpt)
    fused = build_form(model, "fused")  # the registry's deployment form
    x = torch.randn(1, 3, resolution, resolution)
    with atomic_open(out, "wb") as fh, warnings.catch_warnings():
        # GaussianSE picks the std correction from the map size (1x1 maps have no unbiased std). The graph's
        # resolution is fixed (only the batch is dynamic), so the branch traced is right for every input it takes;
        # the tracer's "treated as a constant" warning is exactly that and nothing to act on.
        warnings.filterwarnings("ignore", message="Converting a tensor to a Python boolean",
                                category=torch.jit.TracerWarning, module=r"patsearch\.kernels\.reference")
        torch.onnx.export(fused, (x,), fh, opset_version=opset, input_names=["image"],
                          output_names=["logits"], dynamo=False,
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None)
    return out

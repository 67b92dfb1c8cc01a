"""``ExportOptions``: what ``patsearch export`` writes, validated once, frozen, loadable from YAML.

The library API of the export (``export_onnx(ExportOptions("patnet_t2", "t2.onnx", checkpoint="runs/t2/best.pt"))``,
or the same fields as arguments) and what ``patsearch export --options export.yaml`` reads (flags given override
it)::

    arch: runs/search/best.yaml
    onnx: best.onnx
    checkpoint: runs/best/best.pt
    resolution: 256
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patsearch.arch import ArchConfig, ArchError, check_resolution, is_int
from patsearch.config import OptionsMixin
from patsearch.errors import UserError

MIN_OPSET = 17  # the oldest opset export accepts
DYNAMO_MIN_OPSET = 18  # the oldest opset torch's dynamo exporter writes; older ones take the TorchScript exporter
DEFAULT_OPSET = DYNAMO_MIN_OPSET


class ExportOptionsError(UserError, ValueError):
    """An export option (flag, keyword or options-file field) is invalid."""


@dataclass(frozen=True)
class ExportOptions(OptionsMixin):
    """One ONNX file: the architecture (``arch``) and its weights (``checkpoint``; None: a random initialisation),
    written to ``onnx`` for inputs of ``resolution`` and any batch."""

    options_error = ExportOptionsError
    options_what = "export options"

    arch: ArchConfig | str | Mapping[str, Any]
    onnx: str
    checkpoint: str | None = None
    resolution: int = 224
    opset: int = DEFAULT_OPSET
    num_classes: int | None = None  # None: the checkpoint's classes, else the architecture's
    dynamic_batch: bool = True

    def __post_init__(self) -> None:
        for name in ("arch", "onnx", "checkpoint"):  # PathLike -> str: YAML-safe, comparable
            if isinstance(getattr(self, name), os.PathLike):
                object.__setattr__(self, name, os.fspath(getattr(self, name)))
        _validate(self)


def _validate(o: ExportOptions) -> None:
    need = o.need
    need(isinstance(o.arch, (ArchConfig, str, Mapping)) and bool(o.arch), "arch",
         "a variant name, an architecture YAML path or a mapping of ArchConfig fields")
    need(isinstance(o.onnx, str) and bool(o.onnx), "onnx", "an output file path ending in .onnx")
    if Path(o.onnx).suffix != ".onnx":
        raise ExportOptionsError(f"output {o.onnx} should end in .onnx")
    need(o.checkpoint is None or (isinstance(o.checkpoint, str) and bool(o.checkpoint)), "checkpoint",
         "a checkpoint path or unset")
    need(is_int(o.opset), "opset", f"an integer ({MIN_OPSET} or newer)")
    if o.opset < MIN_OPSET:
        raise ExportOptionsError(f"--opset {o.opset} is too old; use {MIN_OPSET} or newer")
    need(is_int(o.resolution), "resolution", "a multiple of 32 (at least 32), e.g. 224")
    try:
        check_resolution((o.resolution, o.resolution))
    except ArchError as exc:
        raise ExportOptionsError(str(exc)) from None
    need(o.num_classes is None or (is_int(o.num_classes) and o.num_classes >= 1), "num_classes",
         "a positive integer or unset")
    need(isinstance(o.dynamic_batch, bool), "dynamic_batch", "true or false")


__all__ = ["DEFAULT_OPSET", "DYNAMO_MIN_OPSET", "MIN_OPSET", "ExportOptions", "ExportOptionsError"]

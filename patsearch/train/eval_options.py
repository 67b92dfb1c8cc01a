"""``EvalOptions``: what ``patsearch eval`` measures, validated once, frozen, loadable from YAML.

The library API of checkpoint evaluation (``evaluate_checkpoint(EvalOptions("runs/t2/best.pt", form="fused"))``, or
the same fields as keywords) and what ``patsearch eval --options eval.yaml`` reads (flags given override it)::

    checkpoint: runs/t2/best.pt
    data: /data/imagenet
    form: fused
    batch_size: 128
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from patsearch.arch import ArchConfig, is_int
from patsearch.config import OptionsMixin
from patsearch.errors import UserError
from patsearch.models.forms import FormError, form_names, get_form
from patsearch.train.options import CACHE_MODES, DEFAULT_BATCH


class EvalOptionsError(UserError, ValueError):
    """An evaluation option (flag, keyword or options-file field) is invalid."""


@dataclass(frozen=True)
class EvalOptions(OptionsMixin):
    """One evaluation of a trained checkpoint: which (``checkpoint``, ``arch``: default the checkpoint's own), on
    what (``data``'s val split, or the synthetic set the run trained with) and in which ``form``."""

    options_error = EvalOptionsError
    options_what = "eval options"

    checkpoint: str
    arch: ArchConfig | str | Mapping[str, Any] | None = None
    data: str | None = None
    resolution: int | None = None  # None: the recipe's test resolution
    batch_size: int = DEFAULT_BATCH  # accuracy does not depend on it
    device: str | torch.device = "auto"
    workers: int | None = None
    fused: bool = False  # the same as form: fused
    form: str | None = None  # None: fused if ``fused`` else trained
    amp: bool = True
    synthetic_val: int | None = None  # None: the size the run validated on (recorded in the checkpoint)
    cache: str = "auto"

    def __post_init__(self) -> None:
        for name in ("checkpoint", "data", "arch"):  # PathLike -> str: YAML-safe, comparable
            if isinstance(getattr(self, name), os.PathLike):
                object.__setattr__(self, name, os.fspath(getattr(self, name)))
        self.need(isinstance(self.fused, bool), "fused", "true or false")
        if self.form is None:
            object.__setattr__(self, "form", "fused" if self.fused else "trained")
        elif self.fused and self.form != "fused":
            raise EvalOptionsError(f"--fused is --form fused; give one of them, not --fused with --form {self.form}")
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "device": str(self.device)}  # a resolved torch.device is no YAML


def _validate(o: EvalOptions) -> None:
    need = o.need

    def optional(name: str, ok: bool, what: str) -> None:
        need(getattr(o, name) is None or ok, name, what)

    need(isinstance(o.checkpoint, str) and bool(o.checkpoint), "checkpoint", "a checkpoint path (best.pt, latest.pt)")
    optional("arch", isinstance(o.arch, (ArchConfig, str, Mapping)) and bool(o.arch),
             "a variant name, an architecture YAML path or unset (the checkpoint's)")
    optional("data", isinstance(o.data, str) and bool(o.data), "a folder path or unset")
    optional("resolution", is_int(o.resolution) and o.resolution >= 32 and o.resolution % 32 == 0,
             "a multiple of 32 (at least 32), e.g. 224")
    need(is_int(o.batch_size) and o.batch_size >= 1, "batch_size", "a positive integer")
    need(isinstance(o.device, torch.device) or (isinstance(o.device, str) and bool(o.device)), "device",
         "auto, cpu, cuda or cuda:N")
    optional("workers", is_int(o.workers) and o.workers >= 0, "a non-negative integer or unset")
    need(isinstance(o.amp, bool), "amp", "true or false")
    optional("synthetic_val", is_int(o.synthetic_val) and o.synthetic_val >= 1, "a positive integer or unset")
    need(o.cache in CACHE_MODES, "cache", f"one of {', '.join(CACHE_MODES)}")
    need(isinstance(o.form, str), "form", f"one of {', '.join(form_names(measurable_only=True))}")
    try:
        get_form(o.form, among=form_names(measurable_only=True), what="--form")
    except FormError as exc:
        raise EvalOptionsError(str(exc)) from None


__all__ = ["EvalOptions", "EvalOptionsError"]

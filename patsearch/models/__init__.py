"""PATNet models. Importing this package registers ``patnet_t0`` ... ``patnet_l`` in timm's model registry.

``layers`` (stem, merging, head and the block), the block families each with its trained, deployment and fast
forms (``channel_attention``: PAT_ch; ``attention``: PAT_sf; ``conv_mixers``; ``mlp``: the MLP with PAT_sp),
``common`` (BN folding), ``fast_ops`` (the fast path's device switch and GEMM helpers), ``patnet`` (the network,
:func:`fuse_model`), ``forms`` (the one vocabulary of forms: trained, table6, fused, fast, fast_kernels,
slicing; :func:`~patsearch.models.forms.accelerate`), ``peers`` (FasterNet surgery), ``inference``
(channels-last, compile, CUDA graphs), ``statistics`` (trained-like statistics for checks of the forms).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch.nn as nn

from patsearch.arch import VARIANTS, ArchConfig, ArchError, resolve_arch
from patsearch.arch import is_arch_ref as is_patnet_ref  # one definition of "is a PATNet": patsearch.arch
from patsearch.models.layers import build_layer, use_fused_kernels
from patsearch.models.patnet import PATNet, fuse_model

__all__ = ["PATNet", "build_layer", "check_timm_name", "create_model", "fuse_model", "is_patnet_ref",
           "use_fused_kernels"]


def check_timm_name(arch: str | os.PathLike) -> str:
    """The timm model name ``arch``, or a one-line :class:`ArchError` where timm knows no such model (checked before
    a run does any work, so a typo is not reported after its data is read)."""
    import timm

    name = os.fspath(arch)
    if not timm.is_model(name):
        raise ArchError(f"unknown architecture {name!r}; known PATNet variants: {', '.join(VARIANTS)} "
                        "(or a YAML path, or a timm model name such as fasternet_t0)")
    return name


def create_model(arch: ArchConfig | str | os.PathLike | Mapping[str, Any], *, num_classes: int | None = None,
                 fused: bool = False, **kwargs: Any) -> nn.Module:
    """Build a network from an architecture description, a variant name or a YAML path.

    Any other name that timm knows (``fasternet_t0``, ``resnet50``, ...) builds that timm model, so peers go
    through the same path for training and benchmarking. ``fused=True`` returns the deployment form.
    """
    if is_patnet_ref(arch):
        model: nn.Module = PATNet(resolve_arch(arch), num_classes=num_classes, **kwargs)
    else:
        import timm

        name = check_timm_name(arch)
        extra = {"num_classes": num_classes} if num_classes is not None else {}
        model = timm.create_model(name, **extra, **kwargs)
    return fuse_model(model) if fused else model

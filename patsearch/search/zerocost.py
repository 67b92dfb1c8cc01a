"""A zero-cost score: synflow (Tanaka et al. 2020, used as a NAS score by Abdelfattah et al. 2021).

Synflow needs no data and no training: with every weight replaced by its absolute value and an all-ones input,
the score is ``sum |theta * d(sum of outputs)/d theta|`` over the convolution and linear weights. It is one of
the free baselines the proxy's ranking must beat (:mod:`patsearch.proxycheck`).

Computed in float64 so that deep networks do not overflow, in eval mode so that BatchNorm uses its (fresh) running
statistics instead of normalising a batch of one constant image to zero. The model is a private copy: the caller's
weights are untouched.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn


def synflow(model: nn.Module, resolution: int, *, in_chans: int = 3) -> float:
    """The synflow score of ``model`` (at initialisation, as built) for one ``resolution`` x ``resolution`` input.

    Returns ``inf`` when the score overflows float64 (it still ranks above every finite score).
    """
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for tensor in net.state_dict().values():
            if tensor.is_floating_point():
                tensor.abs_()
    net.zero_grad(set_to_none=True)
    x = torch.ones(1, in_chans, resolution, resolution, dtype=torch.float64)
    net(x).sum().backward()
    total = 0.0
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)) and module.weight.grad is not None:
                total += float((module.weight * module.weight.grad).abs().sum())
    return total if math.isfinite(total) else math.inf


def arch_synflow(arch, resolution: int, *, num_classes: int | None = None, seed: int = 0) -> float:
    """:func:`synflow` of a freshly initialised network built from an architecture description (seeded)."""
    from patsearch.models import create_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_model(arch, num_classes=num_classes)
    return synflow(model, resolution)


__all__ = ["synflow", "arch_synflow"]

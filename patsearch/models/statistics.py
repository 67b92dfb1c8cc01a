"""Trained-like statistics for a freshly built network, so that checks and timings of the deployment forms see
what a trained one has: fresh BNs fold to scale 1 and shift 0, which would hide a wrong fold or let a form skip
work a trained model needs."""
from __future__ import annotations

import torch
import torch.nn as nn


def randomize_statistics(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Non-trivial BN/LN statistics and affines and position biases (in place, drawn from ``generator``), so that
    every fold is exercised; returns ``model``."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.randn(n, generator=generator) * 0.5 + 1.0)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.2)
            elif isinstance(module, nn.LayerNorm):
                module.weight.copy_(torch.randn(module.normalized_shape, generator=generator) * 0.5 + 1.0)
                module.bias.copy_(torch.randn(module.normalized_shape, generator=generator) * 0.2)
        for name, param in model.named_parameters():
            if name.endswith("rel_pos.table"):
                param.copy_(torch.randn(param.shape, generator=generator))
    return model


__all__ = ["randomize_statistics"]

"""What every PATNet block family shares: BN folding (each module knows which of its BNs fold into which conv,
so no generic "last conv before a BN" walker is needed; that walker pairs PAT_ch's 3x3 with the untouched branch's
BN and breaks), the per-channel affine a BN becomes where it cannot fold, the channels-last gradient guard of the
trained BNs, and the activation by name.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from timm.layers import get_act_layer

__all__ = ["Affine", "BatchNorm2d", "act_layer", "bn_scale_shift", "conv_like", "dense_format", "fold_bn_into_conv"]


def bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The eval-mode BN as y = x * scale + shift."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def fold_bn_into_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv with bias computing bn(conv(x))."""
    scale, shift = bn_scale_shift(bn)
    weight = conv.weight * scale.reshape(-1, 1, 1, 1)
    bias = shift if conv.bias is None else conv.bias * scale + shift
    return conv_like(conv, weight, bias)


def conv_like(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Conv2d:
    """A new conv with ``conv``'s geometry and the given weight and bias (on the weight's device and dtype)."""
    out = nn.Conv2d(conv.in_channels, weight.shape[0], conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, bias=bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        out.weight.copy_(weight)
        if bias is not None:
            out.bias.copy_(bias)
    return out


class Affine(nn.Module):
    """Per-channel y = x * scale + shift: what an eval-mode BN becomes when it cannot fold into a conv."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale.detach().reshape(1, -1, 1, 1).clone())
        self.register_buffer("shift", shift.detach().reshape(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, x, self.scale)


def act_layer(name: str) -> nn.Module:
    """A new activation module from its timm name (``relu``, ``gelu``, ...)."""
    return get_act_layer(name)()


def dense_format(x: torch.Tensor) -> torch.memory_format:
    """The memory format a dense copy of a slice of ``x`` should keep: channels-last when ``x`` is."""
    channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


class _ChannelsLastGradient(torch.autograd.Function):
    """Identity whose backward hands on its gradient as a dense channels-last tensor."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous(memory_format=torch.channels_last)


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose gradient arrives dense channels-last when its output is channels-last.

    CUDA's BN backward runs its channels-last kernels only when the gradient is dense channels-last too. In PATNet
    25 of T2's 66 BNs got a slice of ``torch.cat``'s gradient or an NCHW gradient from the attention's token
    reshape, and ran the generic kernels: 7 ms of a 46 ms eager training step on an H200 (docs/BENCHMARKS.md). The guard
    copies such a gradient once. Under torch.compile, inductor lays BN out itself: no guard.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if (self.training and out.requires_grad and not torch.compiler.is_compiling()
                and dense_format(out) is torch.channels_last):
            return _ChannelsLastGradient.apply(out)
        return out

"""PAT_ch's untouched branch ``BN(x * gate)`` with the BN, in training too, folded into one :func:`scale_channels`.

A BatchNorm in train mode normally reads its input once for the batch statistics and again to normalise it, and
its backward reads it twice more. Here the input of the BN is ``y = x * gate[b, c]``, and the Gaussian SE has
already computed every per-(sample, channel) mean and std of ``x``: the batch statistics of ``y`` follow from
those (B, C) numbers alone, by the law of total variance,

    mean_y[c] = mean_b(g m),   var_y[c] = mean_b(g^2 var_x[b, c]) + var_b(g m)   (biased, over B*H*W),

so BN(x * gate) is ``scale_channels(x, gate, w / sqrt(var_y + eps), b - mean_y * that)``: one read and one write
of x. :func:`~patsearch.kernels.gated_bn_affine` computes those (C,) numbers from the (B, C) ones in one kernel and
their gradient in one more (written out, exactly BatchNorm's gradient). Running statistics are updated as
:class:`torch.nn.BatchNorm2d` updates them.
"""
from __future__ import annotations

import torch
from torch import nn

from patsearch.kernels.ops import gated_bn_affine, scale_channels

__all__ = ["gated_batch_norm"]


def gated_batch_norm(x: torch.Tensor, gate: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                     bn: nn.BatchNorm2d) -> torch.Tensor:
    """``bn(x * gate[:, :, None, None])``, given ``mean, std = channel_stats(x, float32=True)`` (each (B, C)) and
    ``gate`` (B, C). (Statistics in bf16 work too, but their rounding then shifts the batch mean by up to 2^-9 of
    |mean|, which a BN of activations with |mean| >> std would feel.)

    Train mode (or no running statistics): batch statistics from (mean, std), running statistics updated.
    Eval mode: the running statistics, i.e. a per-channel affine.
    """
    b, c, h, w = x.shape
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32  # the (B, C) arithmetic's dtype
    weight = bn.weight.to(acc) if bn.weight is not None else torch.ones(c, dtype=acc, device=x.device)
    bias = bn.bias.to(acc) if bn.bias is not None else torch.zeros(c, dtype=acc, device=x.device)
    if not bn.training and bn.running_mean is not None:
        scale = weight * torch.rsqrt(bn.running_var.to(acc) + bn.eps)
        return scale_channels(x, gate, scale, torch.addcmul(bias, bn.running_mean.to(acc), scale, value=-1))
    n = h * w
    scale, shift, mean_y, var_y = gated_bn_affine(gate, mean, std, weight, bias, n, bn.eps)
    if bn.training and bn.track_running_stats:
        _update_running_stats(bn, mean_y.detach(), var_y.detach(), b * n)
    return scale_channels(x, gate, scale, shift)


def _update_running_stats(bn: nn.BatchNorm2d, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
    """What BatchNorm2d does in train mode: the unbiased batch variance into an exponential (or, with
    ``momentum=None``, cumulative) average."""
    with torch.no_grad():
        bn.num_batches_tracked.add_(1)
        momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
        unbiased = var * (count / max(count - 1, 1))
        bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), momentum)
        bn.running_var.lerp_(unbiased.to(bn.running_var.dtype), momentum)

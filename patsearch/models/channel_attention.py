"""PAT_ch and Table 3's full channel attention, in all their forms: trained (optionally on the fused kernels),
deployment (``deploy()``: BNs folded) and fast (:meth:`PartialChannelAttentionDeploy.fast_mix`).

The Gaussian SE's statistics are :func:`patsearch.kernels.reference.channel_stats` in every form (the fused
kernels compute the same function); its gate is :meth:`GaussianSE.gate_from_stats` in every form.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from patsearch import kernels
from patsearch.kernels.reference import channel_stats
from patsearch.models.common import Affine, BatchNorm2d, bn_scale_shift, fold_bn_into_conv
from patsearch.models.conv_mixers import PartialConv
from patsearch.models.fast_ops import gpu_formulation, on_gpu_path

__all__ = ["FullChannelAttention", "FullChannelAttentionDeploy", "GaussianSE", "PartialChannelAttention",
           "PartialChannelAttentionDeploy", "gated_norm"]


class GaussianSE(nn.Module):
    """Channel gate from per-channel spatial statistics.

    ``gauss``: dense (1, 2) conv over (mean, std) + BN + Hard-Sigmoid (the enhanced Gaussian SE);
    ``srm``: the same map applied channel-wise (SRM); ``se``: mean -> FC/4 -> ReLU -> FC -> Hard-Sigmoid (SE).
    """

    STATISTICS_KINDS = ("gauss", "srm")  # the kinds whose gate is :meth:`gate_from_stats` of (mean, std)

    @property
    def from_statistics(self) -> bool:
        return self.kind in self.STATISTICS_KINDS

    def __init__(self, dim: int, kind: str = "gauss") -> None:
        super().__init__()
        self.kind = kind
        if kind in self.STATISTICS_KINDS:
            self.conv = nn.Conv2d(dim, dim, (1, 2), groups=1 if kind == "gauss" else dim, bias=False)
            self.bn = BatchNorm2d(dim)
        elif kind == "se":
            hidden = max(dim // 4, 1)
            self.fc1 = nn.Conv2d(dim, hidden, 1)
            self.fc2 = nn.Conv2d(hidden, dim, 1)
        else:
            raise ValueError(f"unknown channel attention {kind!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "se":
            return F.hardsigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        return self.gate_from_stats(*channel_stats(x))[:, :, None, None]

    def gate_from_stats(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """The (B, C) gate of the ``gauss``/``srm`` kinds from :func:`channel_stats` (every form calls it)."""
        logits = self.conv(torch.stack([mean, std], dim=2)[:, :, None, :])  # (B, C, 1, 2) -> (B, C, 1, 1)
        return F.hardsigmoid(self.bn(logits) if hasattr(self, "bn") else logits).flatten(1)

    def deploy(self) -> GaussianSE:
        fused = GaussianSE.__new__(GaussianSE)
        nn.Module.__init__(fused)
        fused.kind = self.kind
        if self.kind == "se":
            fused.fc1, fused.fc2 = self.fc1, self.fc2
        else:
            fused.conv = fold_bn_into_conv(self.conv, self.bn)
        return fused


def gated_norm(x: torch.Tensor, attn: GaussianSE, norm: nn.BatchNorm2d, fused: bool) -> torch.Tensor:
    """``norm(x * attn(x))``, the gated part of PAT_ch and of the full channel attention.

    ``fused``: through :mod:`patsearch.kernels` (Triton on CUDA): one read of ``x`` for the statistics, one
    read and one write for the gate with the BN folded in (its batch statistics follow from the gate and the
    per-channel statistics), and one kernel each back. Only the statistics kinds (``gauss``, ``srm``) and a
    local BN: a SyncBatchNorm needs its statistics reduced across processes, which the fused form does not do.
    """
    if not (fused and attn.from_statistics and not isinstance(norm, nn.SyncBatchNorm)):
        return norm(x * attn(x))
    mean, std = kernels.channel_stats(x, float32=True)
    # The gate from statistics in x's dtype, as the unfused form computes them; BN's statistics stay float32.
    gate = attn.gate_from_stats(mean.to(x.dtype), std.to(x.dtype))
    return kernels.gated_batch_norm(x, gate, mean, std, norm)


class PartialChannelAttention(nn.Module):
    """PAT_ch: concat[3x3 conv(x1), BN(x2 * gate(x2))], convolved part first."""

    fused_kernels = False  # set by use_fused_kernels()

    def __init__(self, dim: int, n_div: int, kind: str = "gauss") -> None:
        super().__init__()
        self.dim_conv = dim // n_div
        self.dim_untouched = dim - self.dim_conv
        self.conv = nn.Conv2d(self.dim_conv, self.dim_conv, 3, 1, 1, bias=False)
        self.attn = GaussianSE(self.dim_untouched, kind)
        self.norm = BatchNorm2d(self.dim_untouched)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = torch.split(x, [self.dim_conv, self.dim_untouched], dim=1)
        return torch.cat([self.conv(x1), gated_norm(x2, self.attn, self.norm, self.fused_kernels)], dim=1)

    def output_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The post-gate BN as an affine over all output channels (identity on the convolved part)."""
        scale, shift = bn_scale_shift(self.norm)
        ones = torch.ones(self.dim_conv, dtype=scale.dtype, device=scale.device)
        return torch.cat([ones, scale]), torch.cat([torch.zeros_like(ones), shift])

    def deploy(self, keep_output_affine: bool = True) -> nn.Module:
        """Without ``keep_output_affine`` the post-gate BN is left out (the caller folds :meth:`output_affine`)."""
        affine = Affine(*bn_scale_shift(self.norm)) if keep_output_affine else None
        return PartialChannelAttentionDeploy(self.conv, self.attn.deploy(), affine)


class PartialChannelAttentionDeploy(nn.Module):
    """Deployment PAT_ch: ``[conv(x1), x2 * g]``, then the post-gate BN's affine on the gated part unless it has
    moved into the next 1x1 conv (``affine=None``)."""

    def __init__(self, conv: nn.Conv2d, attn: GaussianSE, affine: Affine | None = None) -> None:
        super().__init__()
        self.dim_conv = conv.in_channels
        self.conv = conv
        self.attn = attn
        self.affine = affine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = torch.split(x, [self.dim_conv, x.shape[1] - self.dim_conv], dim=1)
        gated = x2 * self.attn(x2)
        return torch.cat([self.conv(x1), gated if self.affine is None else self.affine(gated)], dim=1)

    def fast_mix_applies(self, v2: bool) -> bool:
        """Whether :meth:`fast_mix` can stand for this mixer in its block: a block v1, the post-gate affine folded
        into the MLP (``Block.deploy``) and a gate from statistics."""
        return not v2 and self.affine is None and self.attn.from_statistics

    def fast_mix(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The fast form's (MLP input, residual) of a block v1: ``[conv3x3(x1), x2 * g(x2)]`` and ``x``. On the GPU
        path the gated part goes straight into the buffer that feeds the MLP, next to the 3x3 output, instead of
        ``mul`` + ``cat``; on the CPU the statistics take two vectorised passes."""
        cp = self.dim_conv
        x1, x2 = x[:, :cp], x[:, cp:]
        # One Welford pass on the GPU (also inside gpu_path(), which stands for it); two vectorised passes on the CPU.
        gate = self.attn.gate_from_stats(*channel_stats(x2, two_pass=not gpu_formulation(x2)))[:, :, None, None]
        if not on_gpu_path(x):  # fewer ops beat fewer passes on small CPU tensors
            return torch.cat([self.conv(x1), x2 * gate], dim=1), x
        buf = torch.empty_like(x)
        buf[:, :cp] = self.conv(x1)
        torch.mul(x2, gate, out=buf[:, cp:])
        return buf, x


class FullChannelAttention(nn.Module):
    """Table 3's full channel attention: PConv, then BN(y * gate(y)) over all channels."""

    fused_kernels = False  # set by use_fused_kernels()

    def __init__(self, dim: int, n_div: int) -> None:
        super().__init__()
        self.pconv = PartialConv(dim, n_div)
        self.attn = GaussianSE(dim, "gauss")
        self.norm = BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gated_norm(self.pconv(x), self.attn, self.norm, self.fused_kernels)

    def output_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        return bn_scale_shift(self.norm)

    def deploy(self, keep_output_affine: bool = True) -> nn.Module:
        affine = Affine(*bn_scale_shift(self.norm)) if keep_output_affine else None
        return FullChannelAttentionDeploy(self.pconv, self.attn.deploy(), affine)


class FullChannelAttentionDeploy(nn.Module):
    """Deployment full channel attention: ``pconv(x) * g``, then the post-gate BN's affine unless it has moved
    into the next 1x1 conv (``affine=None``)."""

    def __init__(self, pconv: PartialConv, attn: GaussianSE, affine: Affine | None = None) -> None:
        super().__init__()
        self.pconv = pconv
        self.attn = attn
        self.affine = affine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pconv(x)
        y = y * self.attn(y)
        return y if self.affine is None else self.affine(y)

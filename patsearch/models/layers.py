"""PATNet building blocks in their trained form, each with ``deploy() -> nn.Module``: its deployment form, a
module computing the same function as the trained layer in eval mode (BNs folded, PAT_sp merged).

Fusion is done by structure: every module knows which of its BNs fold into which conv, so no generic "last conv
before a BN" walker is needed (that walker pairs PAT_ch's 3x3 with the untouched branch's BN and breaks).
A mixer whose output ends in a BN (PAT_ch, full channel attention) also reports that BN as an affine through
``output_affine()``; a block deploys such a mixer with ``deploy(keep_output_affine=False)`` and folds the affine
into its MLP's first 1x1 instead. Deployment modules share parameters with the trained module; use
:func:`patsearch.models.fuse_model` for a frozen, independent copy.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, get_act_layer, trunc_normal_

from patsearch import kernels
from patsearch.arch import ATTENTION_MIXERS, LayerSpec

# --- BN folding ---------------------------------------------------------------------------------------------


def bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The eval-mode BN as y = x * scale + shift."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def fold_bn_into_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv with bias computing bn(conv(x))."""
    scale, shift = bn_scale_shift(bn)
    weight = conv.weight * scale.reshape(-1, 1, 1, 1)
    bias = shift if conv.bias is None else conv.bias * scale + shift
    return _conv_like(conv, weight, bias)


def _conv_like(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Conv2d:
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


def _act(name: str) -> nn.Module:
    return get_act_layer(name)()


# --- stem, merging, head ------------------------------------------------------------------------------------


class ConvBN(nn.Sequential):
    """Conv (no bias) + BN: the embedding (4x4/4) and merging (2x2/2) layers."""

    def __init__(self, in_dim: int, out_dim: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_dim, out_dim, kernel, stride, bias=False)
        self.bn = BatchNorm2d(out_dim)

    def deploy(self) -> nn.Module:
        return fold_bn_into_conv(self.conv, self.bn)


class Head(nn.Module):
    """Global average pool, 1x1 conv to ``head_width`` (no bias), activation, flatten, linear classifier."""

    def __init__(self, in_dim: int, head_width: int, num_classes: int, act: str) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_dim, head_width, 1, bias=False)
        self.act = _act(act)
        self.fc = nn.Linear(head_width, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.act(self.proj(x.mean((2, 3), keepdim=True))).flatten(1)
        return x if pre_logits else self.fc(x)

    def deploy(self) -> nn.Module:
        return self


# --- channel attention for the untouched part ---------------------------------------------------------------


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


def channel_stats(x: torch.Tensor, two_pass: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel spatial mean and unbiased standard deviation of (B, C, H, W), each (B, C).

    A 1x1 map (stage 4 of a 32 px input) has no spread: it counts as 0 instead of NaN. ``two_pass`` takes the
    mean, then the norm of the centred values: on the CPU that vectorises over a (C, H*W) slice where
    ``torch.std_mean``'s Welford loop does not (~15x faster there), with the textbook two-pass accuracy.
    """
    n = x.shape[2] * x.shape[3]
    if not two_pass:
        std, mean = torch.std_mean(x, dim=(2, 3), correction=1 if n > 1 else 0)
        return mean, std
    mean = x.mean((2, 3), keepdim=True)
    std = torch.linalg.vector_norm(x - mean, dim=(2, 3)) / math.sqrt(max(n - 1, 1))
    return mean.flatten(1), std


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
        """The (B, C) gate of the ``gauss``/``srm`` kinds from :func:`channel_stats` (the fast path reuses it)."""
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


# --- token mixers -------------------------------------------------------------------------------------------


class PartialConv(nn.Module):
    """FasterNet's PConv: 3x3 conv on the first C/n_div channels, the rest passed through."""

    def __init__(self, dim: int, n_div: int) -> None:
        super().__init__()
        self.dim_conv = dim // n_div
        self.dim_untouched = dim - self.dim_conv
        self.conv = nn.Conv2d(self.dim_conv, self.dim_conv, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = torch.split(x, [self.dim_conv, self.dim_untouched], dim=1)
        return torch.cat([self.conv(x1), x2], dim=1)

    def deploy(self, keep_output_affine: bool = True) -> nn.Module:
        return self

    def output_affine(self) -> tuple[None, None]:
        """The per-channel affine of a trailing BN that a block may fold forward; None: this mixer has none."""
        return None, None


class DenseConv(nn.Module):
    """A full 3x3 conv (``groups=1``) or depthwise 3x3 conv (``groups=dim``) mixer (Table 5)."""

    def __init__(self, dim: int, depthwise: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim if depthwise else 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)

    def deploy(self, keep_output_affine: bool = True) -> nn.Module:
        return self

    def output_affine(self) -> tuple[None, None]:
        return None, None


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
    def __init__(self, pconv: PartialConv, attn: GaussianSE, affine: Affine | None = None) -> None:
        super().__init__()
        self.pconv = pconv
        self.attn = attn
        self.affine = affine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pconv(x)
        y = y * self.attn(y)
        return y if self.affine is None else self.affine(y)


# --- self-attention with iRPE relative position bias --------------------------------------------------------

IRPE_ALPHA, IRPE_BETA, IRPE_GAMMA = 20.0, 40.0, 160.0
IRPE_BUCKETS = 2 * int(IRPE_BETA) + 1


def irpe_index(height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor:
    """iRPE "euc" bucket of every token pair on an ``height x width`` grid, offset into [0, 81), as (N, N) int64.

    Plain tensor ops only, so that under ``torch.compile`` it traces with symbolic ``height``/``width``: one
    dynamic graph serves every resolution of a multi-scale schedule instead of one recompile per size.
    """
    rows = torch.arange(height, device=device, dtype=torch.float64).repeat_interleave(width)
    cols = torch.arange(width, device=device, dtype=torch.float64).repeat(height)
    dist = ((rows[:, None] - rows[None, :]).square() + (cols[:, None] - cols[None, :]).square()).sqrt().round()
    # Piecewise index: exact up to alpha, then logarithmic up to gamma, clipped at beta.
    log_part = IRPE_ALPHA + torch.log(dist.clamp(min=1) / IRPE_ALPHA) / math.log(IRPE_GAMMA / IRPE_ALPHA) * (
        IRPE_BETA - IRPE_ALPHA)
    index = torch.where(dist > IRPE_ALPHA, log_part.round().clamp(max=IRPE_BETA), dist)
    return (index + IRPE_BETA).long()


@lru_cache(maxsize=64)
def irpe_buckets(height: int, width: int) -> torch.Tensor:
    """:func:`irpe_index` on the CPU, cached per grid size for eager use. Built outside inference mode: a cached
    inference tensor would break a later training forward at the same grid size ("Inference tensors cannot be
    saved for backward")."""
    with torch.inference_mode(False):
        return irpe_index(height, width)


def _bucket_index(height: int, width: int, device: torch.device) -> torch.Tensor:
    # Under torch.compile the index is computed inside the graph (Dynamo would otherwise specialise on the
    # lru_cache's integer arguments and recompile for every resolution); eager code reads the cache.
    if torch.compiler.is_compiling():
        return irpe_index(height, width, device)
    return _device_buckets(height, width, torch.device(device))


@lru_cache(maxsize=64)
def _device_buckets(height: int, width: int, device: torch.device) -> torch.Tensor:
    # Kept on the device: a host-to-device copy every forward costs a launch and cannot be captured in a CUDA graph.
    with torch.inference_mode(False):  # cached: see irpe_buckets
        return irpe_buckets(height, width).to(device)


class RelativePositionBias(nn.Module):
    """Per-head learnt bias indexed by the iRPE bucket of each (query, key) pair; works at any grid size."""

    def __init__(self, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.table = nn.Parameter(torch.zeros(num_heads, IRPE_BUCKETS))

    def forward(self, height: int, width: int) -> torch.Tensor:
        return self.table[:, _bucket_index(height, width, self.table.device)].unsqueeze(0)  # (1, heads, N, N)


def biased_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
                     dropout_p: float = 0.0) -> torch.Tensor:
    """``dropout(softmax(q @ k^T + bias)) @ v`` (q already scaled), computed in float32 and returned in v's dtype.

    Why not ``F.scaled_dot_product_attention`` with ``attn_mask=bias``: under bf16 autocast on CUDA it runs the
    memory-efficient kernel with a bf16 bias that requires grad and dropout; PATNet-T0/T1 trained that way stay
    at chance on an H200 while float32 learns, and the compiled backward of that kernel rejects the bias
    layout Inductor produces ("(*bias): last dimension must be contiguous"). Here the logits,
    the learnt bias and the softmax are float32 whatever the autocast state, which is what attention
    implementations commonly do; the weighted sum is float32 too and is cast back once. Stage 4 has few tokens
    (49 at 224 px), so the explicit (B, heads, N, N) scores cost little, and Inductor fuses bias + softmax +
    dropout into one kernel.
    """
    acc = torch.promote_types(q.dtype, torch.float32)  # float32, or float64 for float64 inputs
    with torch.autocast(q.device.type, enabled=False):
        scores = torch.matmul(q.to(acc), k.to(acc).transpose(-2, -1)) + bias.to(acc)
        weights = scores.softmax(dim=-1)
        if dropout_p > 0.0:
            weights = F.dropout(weights, dropout_p, training=True)
        out = torch.matmul(weights, v.to(acc))
    return out.to(v.dtype)


class SelfAttention(nn.Module):
    """LayerNorm + multi-head self-attention over the H*W tokens, with the relative position bias.

    Dropout rates are the spec's (attention 0.1, projection 0.1).
    """

    def __init__(self, dim: int, num_heads: int, attn_drop: float = 0.1, proj_drop: float = 0.1) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.rel_pos = RelativePositionBias(num_heads)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.q_scale = self.head_dim ** -0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x.flatten(2).transpose(1, 2))  # (B, N, C)
        q, k, v = self.qkv(tokens).reshape(b, h * w, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        out = biased_attention(q * self.q_scale, k, v, self.rel_pos(h, w),
                               dropout_p=self.attn_drop if self.training else 0.0)
        out = self.proj(out.transpose(1, 2).reshape(b, h * w, c))
        # Dropout after the layout change back to (B, C, H, W): on the transposed tokens, eager's dropout backward
        # returns a transposed gradient that Inductor/AOTAutograd traced as contiguous, and the compiled
        # backward's view of it fails ("view size is not compatible"). Elementwise, so the same function.
        return self.proj_drop(out.transpose(1, 2).reshape(b, c, h, w))

    def deploy(self) -> SelfAttentionDeploy:
        return SelfAttentionDeploy(self)


class SelfAttentionDeploy(nn.Module):
    """Deployment attention: LayerNorm's affine and the query scale live in the qkv projection; the position
    bias of each grid size is gathered once and cached. Same :func:`biased_attention` as the trained form."""

    def __init__(self, trained: SelfAttention) -> None:
        super().__init__()
        dim = trained.qkv.in_features
        self.dim, self.num_heads, self.head_dim = dim, trained.num_heads, trained.head_dim
        self.eps = trained.norm.eps
        gamma, beta = trained.norm.weight, trained.norm.bias
        weight = trained.qkv.weight * gamma  # fold LN scale into the input columns
        bias = trained.qkv.weight @ beta
        q_rows = slice(0, dim)
        weight = weight.clone()
        weight[q_rows] *= trained.q_scale
        bias = bias.clone()
        bias[q_rows] *= trained.q_scale
        self.qkv = nn.Linear(dim, 3 * dim, device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            self.qkv.weight.copy_(weight)
            self.qkv.bias.copy_(bias)
        self.proj = trained.proj
        self.table = nn.Parameter(trained.rel_pos.table.detach().clone(), requires_grad=False)
        self._bias_cache: dict[tuple[int, int, torch.dtype, torch.device], torch.Tensor] = {}

    def position_bias(self, h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
            return self.table[:, _bucket_index(h, w, self.table.device)].unsqueeze(0).to(dtype)
        key = (h, w, dtype, self.table.device)
        if key not in self._bias_cache:
            self._bias_cache[key] = self.table[:, irpe_buckets(h, w).to(self.table.device)].unsqueeze(0).to(dtype)
        return self._bias_cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return self.attend_tokens(x.flatten(2).transpose(1, 2), h, w).transpose(1, 2).reshape(b, c, h, w)

    def attend_tokens(self, tokens: torch.Tensor, h: int, w: int,
                      attend: Callable[..., torch.Tensor] = biased_attention) -> torch.Tensor:
        """The attention on (B, H*W, C) tokens (any strides, e.g. a channels-last slice), as (B, H*W, C).
        ``attend`` computes :func:`biased_attention`'s function; the fast path passes a fused kernel."""
        b, n, c = tokens.shape
        a = F.layer_norm(tokens, (self.dim,), eps=self.eps)
        q, k, v = self.qkv(a).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        out = attend(q, k, v, self.position_bias(h, w, self.table.dtype))
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class PartialSelfAttention(nn.Module):
    """PAT_sf: concat[3x3 conv(x1), attention(x2)] (``full=False``), or Table 3's full version: PConv, then
    attention over all channels (``full=True``)."""

    def __init__(self, dim: int, n_div: int, num_heads: int, full: bool = False) -> None:
        super().__init__()
        self.full = full
        self.dim_conv = dim // n_div
        self.dim_untouched = dim - self.dim_conv
        self.conv = nn.Conv2d(self.dim_conv, self.dim_conv, 3, 1, 1, bias=False)
        self.attn = SelfAttention(dim if full else self.dim_untouched, num_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = torch.split(x, [self.dim_conv, self.dim_untouched], dim=1)
        if self.full:
            return self.attn(torch.cat([self.conv(x1), x2], dim=1))
        return torch.cat([self.conv(x1), self.attn(x2)], dim=1)

    def deploy(self, keep_output_affine: bool = True) -> nn.Module:
        fused = PartialSelfAttention.__new__(PartialSelfAttention)
        nn.Module.__init__(fused)
        fused.full, fused.dim_conv, fused.dim_untouched = self.full, self.dim_conv, self.dim_untouched
        fused.conv, fused.attn = self.conv, self.attn.deploy()
        return fused

    def output_affine(self) -> tuple[None, None]:
        return None, None


def build_mixer(dim: int, mixer: str, n_div: int, num_heads: int) -> nn.Module:
    if mixer == "pconv":
        return PartialConv(dim, n_div)
    if mixer in ("pat_ch", "pat_ch_se", "pat_ch_srm"):
        return PartialChannelAttention(dim, n_div, {"pat_ch": "gauss", "pat_ch_se": "se", "pat_ch_srm": "srm"}[mixer])
    if mixer == "pat_ch_full":
        return FullChannelAttention(dim, n_div)
    if mixer in ("pat_sf", "pat_sf_full"):
        return PartialSelfAttention(dim, n_div, num_heads, full=mixer == "pat_sf_full")
    if mixer in ("conv", "dwconv"):
        return DenseConv(dim, depthwise=mixer == "dwconv")
    raise ValueError(f"unknown mixer {mixer!r}")


# --- the MLP with PAT_sp ------------------------------------------------------------------------------------


class Mlp(nn.Module):
    """1x1 conv C->hC, BN, act, 1x1 conv hC->C, then spatial attention (PAT_sp, its full version, or none).

    PAT_sp (``partial``): z1 (first C/2, gated) -> BN(z1 * hsig(conv(z1))); z2 (last C/2) -> conv1x1(BN(z2)).
    ``full``: z2 as above, then the gate is computed from and applied to all C channels, with BN after.
    """

    fused_kernels = False  # set by use_fused_kernels(): the gate as one kernel (patsearch.kernels.spatial_gate)

    def __init__(self, dim: int, hidden: int, act: str, spatial: str) -> None:
        super().__init__()
        self.spatial = spatial
        self.fc1 = nn.Conv2d(dim, hidden, 1, bias=False)
        self.norm = BatchNorm2d(hidden)
        self.act = _act(act)
        self.fc2 = nn.Conv2d(hidden, dim, 1, bias=False)
        if spatial != "none":
            half = dim // 2
            self.half = half
            self.sp_norm = BatchNorm2d(dim - half)  # BN of z2, before its 1x1
            self.sp_conv = nn.Conv2d(dim - half, dim - half, 1, bias=False)
            gate_in = half if spatial == "partial" else dim
            self.gate = nn.Conv2d(gate_in, 1, 1, bias=False)
            self.gate_norm = BatchNorm2d(gate_in)  # BN after gating

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.fc2(self.act(self.norm(self.fc1(x))))
        if self.spatial == "none":
            return z
        z1, z2 = torch.split(z, [self.half, z.shape[1] - self.half], dim=1)
        # A channel slice is strided; BatchNorm's training kernels for strided input are its generic ones, which
        # took ~12 of the 64 ms of a PATNet-T2 step on the H200 (docs/BENCHMARKS.md). One dense copy costs far less.
        z2 = self.sp_conv(self.sp_norm(z2.contiguous(memory_format=dense_format(z))))
        if self.spatial == "partial":
            return torch.cat([self.gate_norm(self._spatially_gated(z1)), z2], dim=1)
        return self.gate_norm(self._spatially_gated(torch.cat([z1, z2], dim=1)))

    def _spatially_gated(self, z: torch.Tensor) -> torch.Tensor:
        """``z * hardsigmoid(conv1x1(z))`` with a one-channel 1x1 conv: one pass over z, fused."""
        if self.fused_kernels:
            return kernels.spatial_gate(z, self.gate.weight)
        return z * F.hardsigmoid(self.gate(z))

    def deploy(self, in_scale: torch.Tensor | None = None, in_shift: torch.Tensor | None = None) -> MlpDeploy:
        """Deployment MLP. ``in_scale``/``in_shift`` is an affine on the MLP's input (the mixer's trailing BN),
        folded into fc1's input columns and bias."""
        w1 = self.fc1.weight
        b1 = torch.zeros(w1.shape[0], dtype=w1.dtype, device=w1.device)
        if in_scale is not None:
            b1 = w1[:, :, 0, 0] @ in_shift
            w1 = w1 * in_scale.reshape(1, -1, 1, 1)
        fc1 = fold_bn_into_conv(_conv_like(self.fc1, w1, b1), self.norm)
        if self.spatial == "none":
            return MlpDeploy(fc1, self.act, self.fc2, None, None, None)
        # Merge z2's BN and 1x1 into fc2's last rows: W_sp diag(s) W2[z2], bias W_sp t.
        w2 = self.fc2.weight[:, :, 0, 0]
        w_sp = self.sp_conv.weight[:, :, 0, 0]
        s, t = bn_scale_shift(self.sp_norm)
        rows_z2 = w_sp @ (s[:, None] * w2[self.half:])
        weight = torch.cat([w2[:self.half], rows_z2])[:, :, None, None]
        bias = torch.cat([torch.zeros(self.half, dtype=w2.dtype, device=w2.device), w_sp @ t])
        fc2 = _conv_like(self.fc2, weight, bias)
        g_scale, g_shift = bn_scale_shift(self.gate_norm)
        return MlpDeploy(fc1, self.act, fc2, self.gate, Affine(g_scale, g_shift),
                         self.half if self.spatial == "partial" else None)


class MlpDeploy(nn.Module):
    """Deployment MLP: conv+bias, act, one merged conv, then (if any) the spatial gate and its affine."""

    def __init__(self, fc1: nn.Conv2d, act: nn.Module, fc2: nn.Conv2d, gate: nn.Conv2d | None,
                 gate_affine: Affine | None, half: int | None) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = fc1, act, fc2
        self.gate, self.gate_affine, self.half = gate, gate_affine, half

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.fc2(self.act(self.fc1(x)))
        if self.gate is None:
            return z
        if self.half is None:  # full spatial attention
            return self.gate_affine(z * F.hardsigmoid(self.gate(z)))
        z1, z2 = torch.split(z, [self.half, z.shape[1] - self.half], dim=1)
        return torch.cat([self.gate_affine(z1 * F.hardsigmoid(self.gate(z1))), z2], dim=1)


# --- blocks -------------------------------------------------------------------------------------------------


class Block(nn.Module):
    """A PATNet block.

    Block v1 (convolutional mixers): ``x + DropPath(MLP(mixer(x)))``.
    Block v2 (self-attention mixers): ``x = x + mixer(x); x = x + DropPath(MLP(x))``.
    """

    def __init__(self, dim: int, mixer: str, spatial: str, n_div: int, mlp_ratio: float, act: str,
                 num_heads: int, drop_path: float = 0.0) -> None:
        super().__init__()
        self.v2 = mixer in ATTENTION_MIXERS
        self.mixer = build_mixer(dim, mixer, n_div, num_heads)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act, spatial)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.v2:
            x = x + self.mixer(x)
            return x + self.drop_path(self.mlp(x))
        return x + self.drop_path(self.mlp(self.mixer(x)))

    def deploy(self) -> BlockDeploy:
        # The mixer's trailing BN (if any) folds into the MLP's first 1x1 conv instead of staying an affine.
        return BlockDeploy(self.mixer.deploy(keep_output_affine=False), self.mlp.deploy(*self.mixer.output_affine()),
                           self.v2)


class BlockDeploy(nn.Module):
    def __init__(self, mixer: nn.Module, mlp: nn.Module, v2: bool) -> None:
        super().__init__()
        self.mixer, self.mlp, self.v2 = mixer, mlp, v2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.v2:
            x = x + self.mixer(x)
            return x + self.mlp(x)
        return x + self.mlp(self.mixer(x))


def use_fused_kernels(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Run the trained form's memory-bound parts (Gaussian SE statistics, gate and BN of PAT_ch and the full
    channel attention; PAT_sp's gate) as :mod:`patsearch.kernels`' fused ops, or (``enabled=False``) as plain
    PyTorch again. Same function, in train and eval mode; Triton on CUDA, the ops' reference elsewhere. Returns
    ``model``. Deployment forms are unaffected (they fuse differently: :mod:`patsearch.models.fast_blocks`)."""
    for module in model.modules():
        if isinstance(module, (PartialChannelAttention, FullChannelAttention, Mlp)):
            module.fused_kernels = enabled
    return model


def build_layer(spec: LayerSpec, *, drop_path: float = 0.0) -> nn.Module:
    """One layer of a PATNet-family network, in trained form, from its :class:`LayerSpec`."""
    if spec.kind == "stem":
        return ConvBN(spec.in_dim, spec.out_dim, 4, 4)
    if spec.kind == "merge":
        return ConvBN(spec.in_dim, spec.out_dim, 2, 2)
    if spec.kind == "block":
        return Block(spec.in_dim, spec.mixer, spec.spatial, spec.n_div, spec.mlp_ratio, spec.act, spec.num_heads,
                     drop_path)
    if spec.kind == "head":
        return Head(spec.in_dim, spec.head_width, spec.num_classes, spec.act)
    raise ValueError(f"unknown layer kind {spec.kind!r}")


def init_weights(module: nn.Module) -> None:
    """Truncated normal (std 0.02) for conv and linear weights, zero biases."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)

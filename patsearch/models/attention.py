"""PAT_sf, self-attention with the iRPE relative position bias, in all its forms: trained, deployment
(``deploy()``: LayerNorm's affine and the query scale in the qkv projection, position bias cached) and fast
(:meth:`PartialSelfAttention.fast_mix`). The attention itself is :func:`biased_attention` in every form; the fast
form's GPU path runs the same function as :func:`sdpa_attention`.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from patsearch.models.fast_ops import gpu_formulation, on_gpu_path, tokens, untokens

__all__ = ["IRPE_BUCKETS", "PartialSelfAttention", "RelativePositionBias", "SelfAttention", "SelfAttentionDeploy",
           "biased_attention", "irpe_buckets", "irpe_index", "sdpa_attention"]

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
    at chance on an H200 while float32 learns, and the compiled backward of that kernel rejects the
    bias layout Inductor produces ("(*bias): last dimension must be contiguous"). Here the logits,
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


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """:func:`biased_attention`'s function (inference, q pre-scaled) as SDPA pinned to
    the memory-efficient kernel: with a float mask cuDNN attention is picked by default and is ~1.6x slower.
    Under torch.compile the kernel choice is left to Inductor (Dynamo would break the graph at the context)."""
    if torch.compiler.is_compiling():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=1.0)
    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=1.0)


def _heads(qkv: torch.Tensor, num_heads: int, head_dim: int) -> tuple[torch.Tensor, ...]:
    """(B, N, 3C) projections as q, k, v, each (B, heads, N, head_dim)."""
    b, n, _ = qkv.shape
    return qkv.reshape(b, n, 3, num_heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)


def _merge_heads(out: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, head_dim) back to (B, N, C)."""
    b, _, n, _ = out.shape
    return out.transpose(1, 2).reshape(b, n, -1)


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
        q, k, v = _heads(self.qkv(tokens), self.num_heads, self.head_dim)
        out = biased_attention(q * self.q_scale, k, v, self.rel_pos(h, w),
                               dropout_p=self.attn_drop if self.training else 0.0)
        out = self.proj(_merge_heads(out))
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
        a = F.layer_norm(tokens, (self.dim,), eps=self.eps)
        q, k, v = _heads(self.qkv(a), self.num_heads, self.head_dim)
        out = attend(q, k, v, self.position_bias(h, w, self.table.dtype))
        return self.proj(_merge_heads(out))


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

    def fast_mix_applies(self, v2: bool) -> bool:
        """Whether :meth:`fast_mix` can stand for this mixer in its block: a deployed PAT_sf (not the full
        version) in a block v2."""
        return v2 and not self.full and isinstance(self.attn, SelfAttentionDeploy)

    def fast_mix(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The fast form's (MLP input, residual) of a block v2: ``y = x + [conv3x3(x1), attn(x2)]`` written part
        by part into the output, twice (the MLP reads y and adds it back)."""
        cp = self.dim_conv
        t = tokens(x)
        if t is not None:
            y = self._fast_mix_tokens(x, t)
            return y, y
        x1, x2 = x[:, :cp], x[:, cp:]
        if not on_gpu_path(x):
            y = x + torch.cat([self.conv(x1), self.attn(x2)], dim=1)
            return y, y
        y = torch.empty_like(x)
        torch.add(x1, self.conv(x1), out=y[:, :cp])
        torch.add(x2, self.attn(x2), out=y[:, cp:])
        return y, y

    def _fast_mix_tokens(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Channels-last: the attention reads its tokens in place (no flatten/transpose copies of x2)."""
        cp = self.dim_conv
        b, _, h, w = x.shape
        y1 = self.conv(x[:, :cp]).permute(0, 2, 3, 1).reshape(-1, cp)
        t2 = t[:, cp:]
        # GPU (compiled or not) and gpu_path(): SDPA; CPU: the reference's own biased_attention.
        attend = sdpa_attention if gpu_formulation(x) else biased_attention
        o = self.attn.attend_tokens(t2.view(b, h * w, -1), h, w, attend).reshape(b * h * w, -1)
        if not on_gpu_path(x):
            y = t + torch.cat([y1, o], dim=1)
        else:
            y = torch.empty_like(t)
            torch.add(t[:, :cp], y1, out=y[:, :cp])
            torch.add(t2, o, out=y[:, cp:])
        return untokens(y, x)

"""A faster inference path for PATNet's deployment form, computing the same function with fewer memory passes.

:func:`accelerate` rewrites the blocks of a deployment-form PATNet (:func:`patsearch.models.fuse_model`) into
:class:`FastChannelBlock` / :class:`FastAttentionBlock`. What changes, and why (issue 6):

- PAT_ch: the gated untouched part ``x2 * g`` is written straight into the buffer that feeds the MLP's first 1x1,
  next to the 3x3 output, instead of ``mul`` + ``cat`` (one pass over 3/4 of the channels instead of three).
- Gaussian SE: the (1, 2) conv over stacked (mean, std) is a :func:`~torch.nn.functional.linear` on
  ``cat(mean, std)``. On CPU the statistics are taken in two vectorised passes (mean, then the norm of the
  centred values), which is ~15x faster there than ``torch.std_mean``'s Welford kernel and as stable; on GPU
  ``std_mean`` (one pass) is kept.
- PAT_sp: the affine left from the BN after gating moves its scale into the z1 rows of the MLP's merged second
  1x1 (the gate conv's weights are divided by it, so the gate reads the same values), and the residual add writes
  the block output directly: ``x + [z1 * w + t, z2]`` in two elementwise kernels instead of gate-mul, affine,
  cat and add.
- Block v2 (PAT_sf): the mixer's residual add writes each part into the output instead of ``x + cat(...)``;
  on channels-last tensors the attention reads its tokens in place, and on CUDA the biased SDPA is pinned to the
  memory-efficient kernel (the default, cuDNN attention, is ~1.6x slower with a float mask on the H100).
- CUDA: fc1 + bias + ReLU is one cuDNN kernel (``torch.cudnn_convolution_relu``); on channels-last tensors the
  other 1x1s are GEMMs on (B*H*W, C) token matrices with the bias in cuBLASLt's epilogue, and the 4x4/4 stem is
  one GEMM over gathered patches.
- On CPU (small tensors, per-op overhead dominates) and under ``torch.compile`` (Dynamo breaks the graph at
  every non-contiguous ``out=``) the same arithmetic runs in a plain formulation with fewer ops.

Everything else (3x3 convolutions, the head) is the deployment module itself. :func:`prepare_inference` adds the
generic options that apply to any network, PATNet or peer: dtype, channels-last, ``torch.compile`` and CUDA
graphs. :func:`fuse_fasternet` gives timm's FasterNet the same eager deployment form as torch.fx folding but keeps
it an ordinary module, so that its own inference mode (``pconv_fw_type="slicing"``) can run too;
:func:`fasternet_fast` gives it the generic tricks above; :func:`deployment_fast` picks the fast form of any
model (``patsearch bench --forms fast``). Measurements: docs/BENCHMARKS.md, "Inference speed" (issue 6).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from patsearch.models.layers import (
    BlockDeploy,
    GaussianSE,
    MlpDeploy,
    PartialChannelAttentionDeploy,
    PartialSelfAttention,
    SelfAttentionDeploy,
)

__all__ = ["FastAttentionBlock", "FastChannelBlock", "accelerate", "channel_stats", "deployment_fast", "fasternet_fast", "fuse_fasternet",
           "is_accelerated", "prepare_inference"]

# A gate-affine scale smaller than this (relative to the largest) is not divided into the gate weights.
_MIN_RELATIVE_SCALE = 1e-6
# Where 1x1 convolutions run as GEMMs on (B*H*W, C) token matrices: channels-last inputs on these device types.
# On CUDA this puts bias (and ReLU) into cuBLASLt's epilogue instead of separate passes; on CPU oneDNN/THNN
# convolutions are as fast, so it is off there (tests switch it on to check the arithmetic).
GEMM_DEVICES = {"cuda"}


def _functional() -> bool:
    """Whether to use the formulation without ``out=`` writes into slices: on the CPU (fewer ops win on small
    tensors) and under torch.compile (Dynamo breaks the graph at every non-contiguous ``out=``; Inductor fuses
    the plain formulation itself)."""
    return torch.compiler.is_compiling()


def tokens(x: torch.Tensor) -> torch.Tensor | None:
    """A channels-last (B, C, H, W) tensor as its (B*H*W, C) token matrix (a view), or None where it is not
    channels-last on a device in :data:`GEMM_DEVICES`."""
    if x.dim() != 4 or x.device.type not in GEMM_DEVICES:
        return None
    t = x.permute(0, 2, 3, 1)
    return t.reshape(-1, x.shape[1]) if t.is_contiguous() else None


def untokens(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The (B*H*W, C') token matrix back as a channels-last (B, C', H, W) view, spatial shape from ``like``."""
    b, _, h, w = like.shape
    return t.view(b, h, w, t.shape[1]).permute(0, 3, 1, 2)


def linear_act(t: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, act: nn.Module | None
               ) -> torch.Tensor:
    """``act(t @ weight.T + bias)`` with bias and ReLU in the GEMM's epilogue where the backend has one."""
    if isinstance(act, nn.ReLU) and bias is not None:
        return torch._addmm_activation(bias, t, weight.t())
    out = F.linear(t, weight, bias)
    return out if act is None else act(out)


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel spatial mean and unbiased standard deviation, each (B, C); a 1x1 map's spread is 0,
    as in :class:`~patsearch.models.layers.GaussianSE`."""
    n = x.shape[2] * x.shape[3]
    if x.is_cuda:
        std, mean = torch.std_mean(x, dim=(2, 3), correction=1 if n > 1 else 0)
        return mean, std
    # CPU: std_mean's Welford loop does not vectorise over a (C, H*W) slice; two passes do, and the centred
    # second pass keeps the textbook two-pass accuracy.
    mean = x.mean((2, 3), keepdim=True)
    std = torch.linalg.vector_norm(x - mean, dim=(2, 3)) / math.sqrt(max(n - 1, 1))
    return mean.flatten(1), std


_CUDNN_CONV_RELU = {"ok": True}


def conv1x1_act(x: torch.Tensor, conv: nn.Conv2d, act: nn.Module) -> torch.Tensor:
    """``act(conv(x))`` for a 1x1 conv with bias; on CUDA with ReLU, cuDNN's fused conv + bias + ReLU (one
    kernel instead of conv, bias add and ReLU: ~4x less time at T2's stage-1 fc1 shape on the H100)."""
    if x.is_cuda and isinstance(act, nn.ReLU) and conv.bias is not None and _CUDNN_CONV_RELU["ok"]:
        try:
            return torch.cudnn_convolution_relu(x, conv.weight, conv.bias, conv.stride, conv.padding,
                                                conv.dilation, conv.groups)
        except RuntimeError:  # a cuDNN build without the fused path: fall back for good
            _CUDNN_CONV_RELU["ok"] = False
    out = conv(x)
    return torch.relu_(out) if isinstance(act, nn.ReLU) else act(out)


class PatchifyConv(nn.Module):
    """A stride-equals-kernel conv (the 4x4/4 stem) as one GEMM over gathered patches on channels-last CUDA
    tensors; cuDNN's NHWC kernel for 3 input channels is slow (~0.3-0.5 ms per batch of 256 on the H100)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if conv.stride != conv.kernel_size or conv.padding != (0, 0) or conv.groups != 1:
            raise ValueError("PatchifyConv needs a conv with stride == kernel, no padding, groups 1")
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        kh, kw = self.conv.kernel_size
        if tokens(x) is None or h % kh or w % kw:  # the conv drops a ragged border; keep its own kernel there
            return self.conv(x)
        patches = x.permute(0, 2, 3, 1).reshape(b, h // kh, kh, w // kw, kw, c).permute(0, 1, 3, 2, 4, 5) \
            .reshape(-1, kh * kw * c)
        weight = self.conv.weight.permute(0, 2, 3, 1).reshape(self.conv.out_channels, -1)
        out = F.linear(patches, weight, self.conv.bias)
        return out.view(b, h // kh, w // kw, -1).permute(0, 3, 1, 2)


def _act_inplace(act: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    if isinstance(act, nn.ReLU):
        return torch.relu_
    return act


class _FastMlpTail(nn.Module):
    """MLP (fc1, act, merged fc2) plus PAT_sp and the residual add, writing the block output in place."""

    def __init__(self, mlp: MlpDeploy) -> None:
        super().__init__()
        self.fc1, self.act = mlp.fc1, mlp.act
        self._act = _act_inplace(mlp.act)
        self.half = mlp.half
        self.spatial = "none" if mlp.gate is None else ("partial" if mlp.half is not None else "full")
        if self.spatial != "partial":
            self.fc2, self.gate, self.gate_affine = mlp.fc2, mlp.gate, mlp.gate_affine
            return
        scale = mlp.gate_affine.scale.flatten()
        shift = mlp.gate_affine.shift.flatten()
        w2 = mlp.fc2.weight.detach().clone()
        b2 = mlp.fc2.bias.detach().clone()
        gate_w = mlp.gate.weight.detach().clone()
        self.scaled = bool(scale.abs().min() > _MIN_RELATIVE_SCALE * scale.abs().max())
        if self.scaled:
            # z1 rows come out already multiplied by the BN scale; the gate divides it back out.
            w2[:self.half] *= scale.reshape(-1, 1, 1, 1)
            b2[:self.half] *= scale
            gate_w = gate_w / scale.reshape(1, -1, 1, 1)
        self.fc2 = nn.Conv2d(w2.shape[1], w2.shape[0], 1, device=w2.device, dtype=w2.dtype)
        self.gate = nn.Conv2d(self.half, 1, 1, bias=False, device=w2.device, dtype=w2.dtype)
        with torch.no_grad():
            self.fc2.weight.copy_(w2)
            self.fc2.bias.copy_(b2)
            self.gate.weight.copy_(gate_w)
        self.register_buffer("scale", scale.reshape(1, -1, 1, 1).clone())
        self.register_buffer("shift", shift.reshape(1, -1, 1, 1).clone())
        self.has_shift = bool(shift.abs().max() > 0)

    def forward(self, mlp_in: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        t_in, t_res = tokens(mlp_in), tokens(residual)
        if t_in is not None and t_res is not None and self.spatial == "partial":
            return untokens(self._forward_tokens(t_in, t_res, residual), residual)
        z = self.fc2(conv1x1_act(mlp_in, self.fc1, self.act))
        if self.spatial == "partial" and (not z.is_cuda or _functional()):
            # Small CPU tensors: per-op overhead outweighs memory passes, so gate z1 in place and add once.
            z1 = z[:, :self.half]
            z1.mul_(F.hardsigmoid(self.gate(z1)))
            if not self.scaled:
                z1.mul_(self.scale)
            if self.has_shift:
                z1.add_(self.shift)
            return residual + z
        if self.spatial == "none":
            return residual + z
        if self.spatial == "full":
            return residual + self.gate_affine(z * F.hardsigmoid(self.gate(z)))
        half = self.half
        z1 = z[:, :half]
        w = F.hardsigmoid(self.gate(z1))  # (B, 1, H, W)
        out = torch.empty_like(residual)
        torch.add(residual[:, half:], z[:, half:], out=out[:, half:])
        top = out[:, :half]
        if self.scaled:
            torch.addcmul(residual[:, :half], z1, w, out=top)
        else:
            torch.addcmul(residual[:, :half], z1 * w, self.scale, out=top)
        if self.has_shift:
            top.add_(self.shift)
        return out

    def _forward_tokens(self, t_in: torch.Tensor, t_res: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The same on (B*H*W, C) token matrices: every 1x1 is a GEMM with its bias (and ReLU) in the epilogue."""
        half = self.half
        if t_in.is_cuda and isinstance(self.act, nn.ReLU):  # cuDNN's fused conv+bias+ReLU beats the GEMM here
            h = tokens(conv1x1_act(untokens(t_in, like), self.fc1, self.act))
        else:
            h = linear_act(t_in, self.fc1.weight.flatten(1), self.fc1.bias, self.act)
        z = F.linear(h, self.fc2.weight.flatten(1), self.fc2.bias)
        z1 = z[:, :half]
        w = F.hardsigmoid(F.linear(z1, self.gate.weight.flatten(1)))  # (B*H*W, 1)
        if not z.is_cuda or _functional():  # as in forward(): fewer ops on small CPU tensors
            z1.mul_(w)
            if not self.scaled:
                z1.mul_(self.scale.flatten())
            if self.has_shift:
                z1.add_(self.shift.flatten())
            return t_res + z
        out = torch.empty_like(t_res)
        torch.add(t_res[:, half:], z[:, half:], out=out[:, half:])
        top = out[:, :half]
        if self.scaled:
            torch.addcmul(t_res[:, :half], z1, w, out=top)
        else:
            torch.addcmul(t_res[:, :half], z1 * w, self.scale.flatten(), out=top)
        if self.has_shift:
            top.add_(self.shift.flatten())
        return out


def _se_linear(attn: GaussianSE) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The fused (1, 2) conv of a Gaussian/SRM gate as a dense linear map on cat(mean, std); None for SE."""
    if attn.kind not in ("gauss", "srm"):
        return None
    conv = attn.conv
    w = conv.weight.detach()  # (C, C/groups, 1, 2)
    if conv.groups == 1:
        weight = torch.cat([w[:, :, 0, 0], w[:, :, 0, 1]], dim=1)
    else:  # channel-wise (SRM): diagonal blocks
        weight = torch.cat([torch.diag(w[:, 0, 0, 0]), torch.diag(w[:, 0, 0, 1])], dim=1)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
    return weight.clone(), bias.clone()


class FastChannelBlock(nn.Module):
    """Block v1 with PAT_ch: ``x + MLP([conv3x3(x1), x2 * g(x2)])``, see the module docstring."""

    def __init__(self, block: BlockDeploy) -> None:
        super().__init__()
        mixer: PartialChannelAttentionDeploy = block.mixer
        self.dim_conv = mixer.dim_conv
        self.conv = mixer.conv
        weight, bias = _se_linear(mixer.attn)
        self.se_weight = nn.Parameter(weight, requires_grad=False)
        self.se_bias = nn.Parameter(bias, requires_grad=False)
        self.tail = _FastMlpTail(block.mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cp = self.dim_conv
        x1, x2 = x[:, :cp], x[:, cp:]
        mean, std = channel_stats(x2)
        gate = F.hardsigmoid(F.linear(torch.cat([mean, std], dim=1), self.se_weight, self.se_bias))
        if not x.is_cuda or _functional():  # fewer ops beat fewer passes on small CPU tensors
            return self.tail(torch.cat([self.conv(x1), x2 * gate[:, :, None, None]], dim=1), x)
        buf = torch.empty_like(x)
        buf[:, :cp] = self.conv(x1)
        torch.mul(x2, gate[:, :, None, None], out=buf[:, cp:])
        return self.tail(buf, x)


class FastAttentionBlock(nn.Module):
    """Block v2 with PAT_sf: ``x = x + [conv3x3(x1), attn(x2)]`` written part by part, then the fast MLP."""

    def __init__(self, block: BlockDeploy) -> None:
        super().__init__()
        mixer: PartialSelfAttention = block.mixer
        self.dim_conv = mixer.dim_conv
        self.conv, self.attn = mixer.conv, mixer.attn
        self.tail = _FastMlpTail(block.mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cp = self.dim_conv
        t = tokens(x)
        if t is not None:
            return self._forward_tokens(x, t)
        x1, x2 = x[:, :cp], x[:, cp:]
        if _functional():
            y = x + torch.cat([self.conv(x1), self.attn(x2)], dim=1)
            return self.tail(y, y)
        y = torch.empty_like(x)
        torch.add(x1, self.conv(x1), out=y[:, :cp])
        torch.add(x2, self.attn(x2), out=y[:, cp:])
        return self.tail(y, y)

    def _forward_tokens(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Channels-last: the attention reads its tokens in place (no flatten/transpose copies of x2)."""
        cp, attn = self.dim_conv, self.attn
        b, _, h, w = x.shape
        y1 = self.conv(x[:, :cp]).permute(0, 2, 3, 1).reshape(-1, cp)
        t2 = t[:, cp:]
        a = F.layer_norm(t2, (attn.dim,), eps=attn.eps)
        q, k, v = F.linear(a, attn.qkv.weight, attn.qkv.bias).view(b, h * w, 3, attn.num_heads, attn.head_dim) \
            .permute(2, 0, 3, 1, 4).unbind(0)
        bias = attn.position_bias(h, w, q.dtype)
        if q.is_cuda and not _functional():  # with a float mask cuDNN attention is picked by default; memory-efficient is ~1.6x faster
            from torch.nn.attention import SDPBackend, sdpa_kernel

            with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
                o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)
        else:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)
        o = F.linear(o.transpose(1, 2).reshape(b * h * w, attn.dim), attn.proj.weight, attn.proj.bias)
        if _functional():
            y = t + torch.cat([y1, o], dim=1)
        else:
            y = torch.empty_like(t)
            torch.add(t[:, :cp], y1, out=y[:, :cp])
            torch.add(t2, o, out=y[:, cp:])
        y4 = untokens(y, x)
        return self.tail(y4, y4)


def _fast_block(layer: nn.Module) -> nn.Module:
    """The fast form of one deployment layer, or the layer itself where no fast form applies."""
    if not isinstance(layer, BlockDeploy) or not isinstance(layer.mlp, MlpDeploy):
        return layer
    mixer = layer.mixer
    if isinstance(mixer, PartialChannelAttentionDeploy) and not layer.v2 and _se_linear(mixer.attn) is not None:
        return FastChannelBlock(layer)
    if (isinstance(mixer, PartialSelfAttention) and layer.v2 and not mixer.full
            and isinstance(mixer.attn, SelfAttentionDeploy)):
        return FastAttentionBlock(layer)
    return layer


@torch.no_grad()
def accelerate(model: nn.Module) -> nn.Module:
    """A fast-path copy of a PATNet (trained or deployment form; the original is untouched), in eval mode.

    The result computes the same function as :func:`patsearch.models.fuse_model` (and so as the trained model in
    eval mode) up to floating-point rounding; it carries ``fast_path = True`` for provenance.
    """
    from patsearch.models.patnet import PATNet, fuse_model

    if not isinstance(model, PATNet):
        raise TypeError(f"accelerate() takes a PATNet, got {type(model).__name__}; use prepare_inference() for "
                        "other networks")
    model = copy.deepcopy(model).eval() if model.deployed else fuse_model(model)
    for stage in model.stages:
        for i, layer in enumerate(stage):
            stage[i] = _fast_block(layer)
    if isinstance(model.stem, nn.Conv2d):
        model.stem = PatchifyConv(model.stem)
    model.requires_grad_(False)  # an inference form, like fuse(); also lets tracers run the out= kernels
    model.fast_path = True
    return model


def is_accelerated(model: nn.Module) -> bool:
    return bool(getattr(model, "fast_path", False))


# --- FasterNet's eager deployment form ----------------------------------------------------------------------


@torch.no_grad()
def fuse_fasternet(model: nn.Module, pconv_forward: str | None = None) -> nn.Module:
    """An eval-mode copy of a timm FasterNet with every conv-BN pair folded (what torch.fx folding gives), kept
    as eager modules. ``pconv_forward`` switches the partial conv to ``"slicing"`` (FasterNet's inference mode:
    clone, then overwrite the first channels) or ``"split_cat"``."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).eval()
    for module in model.modules():
        for conv_name, bn_name in (("proj", "norm"), ("reduction", "norm")):
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(module, bn_name, nn.Identity())
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if isinstance(module[i], nn.Conv2d) and isinstance(module[i + 1], nn.BatchNorm2d):
                    module[i] = fuse_conv_bn_eval(module[i], module[i + 1])
                    module[i + 1] = nn.Identity()
        if pconv_forward is not None and hasattr(module, "forward_slicing") and hasattr(module, "forward_split_cat"):
            module.forward = getattr(module, f"forward_{pconv_forward}")
    if any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        raise ValueError("fuse_fasternet: a BatchNorm was left unfolded; is this a timm FasterNet?")
    return model


class _FasterNetMlpFast(nn.Module):
    """FasterNet's MLP block (deployment form) with the generic GEMM tricks PATNet's fast path uses: on
    channels-last CUDA tensors fc1 carries bias + ReLU in its epilogue and fc2 adds the shortcut in its own
    epilogue (``addmm`` with beta 1), so the block is conv3x3, the partial-conv copy and two GEMMs."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.spatial_mixing = block.spatial_mixing
        fc1, _, act, fc2 = block.mlp
        self.fc1, self.act, self.fc2 = fc1, act, fc2
        self.mlp = block.mlp
        if getattr(block, "layer_scale", None) is not None:
            raise ValueError("fasternet_fast: layer scale is not supported")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.spatial_mixing(x)
        t_y, t_x = tokens(y), tokens(x)
        if t_y is None or t_x is None:
            return x + self.fc2(conv1x1_act(y, self.fc1, self.act))
        if t_y.is_cuda and isinstance(self.act, nn.ReLU):
            h = tokens(conv1x1_act(y, self.fc1, self.act))
        else:
            h = linear_act(t_y, self.fc1.weight.flatten(1), self.fc1.bias, self.act)
        w2 = self.fc2.weight.flatten(1)
        out = torch.addmm(t_x, h, w2.t()) if self.fc2.bias is None else torch.addmm(t_x + self.fc2.bias, h, w2.t())
        return untokens(out, x)


@torch.no_grad()
def fasternet_fast(model: nn.Module, pconv_forward: str = "slicing") -> nn.Module:
    """:func:`fuse_fasternet` plus :class:`_FasterNetMlpFast` in every block: FasterNet given the same generic
    GEMM-epilogue tricks as PATNet's fast path, so that comparisons stay fair."""
    model = fuse_fasternet(model, pconv_forward)
    for module in model.modules():
        blocks = getattr(module, "blocks", None)
        if isinstance(blocks, nn.Sequential):
            for i, block in enumerate(blocks):
                if hasattr(block, "spatial_mixing") and hasattr(block, "mlp"):
                    blocks[i] = _FasterNetMlpFast(block)
    embed = getattr(model, "patch_embed", None)
    if embed is not None and isinstance(getattr(embed, "proj", None), nn.Conv2d):
        embed.proj = PatchifyConv(embed.proj)
    model.requires_grad_(False)
    model.fast_path = True
    return model


def deployment_fast(model: nn.Module) -> nn.Module:
    """The fast deployment form of any model ``patsearch bench`` measures: :func:`accelerate` for a PATNet,
    :func:`fasternet_fast` for a timm FasterNet (the same generic tricks, so ratios stay fair), and
    :func:`patsearch.models.fuse_model` for anything else. The original is untouched."""
    from patsearch.models.patnet import PATNet, fuse_model

    if isinstance(model, PATNet):
        return accelerate(model)
    if type(model).__name__ == "FasterNet":
        return fasternet_fast(model)
    return fuse_model(model)


# --- generic options: dtype, memory format, torch.compile, CUDA graphs ---------------------------------------


class _CudaGraphRunner:
    """Replays one captured forward on a static input buffer (inputs must keep shape, dtype and layout)."""

    def __init__(self, model: nn.Module, example: torch.Tensor, warmup: int = 3) -> None:
        self.static_in = example.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(warmup):
                model(self.static_in)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.inference_mode():
            self.static_out = model(self.static_in)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.data_ptr() != self.static_in.data_ptr():
            self.static_in.copy_(x)
        self.graph.replay()
        return self.static_out


def prepare_inference(model: nn.Module, example: torch.Tensor, *, fast_path: bool = False,
                      compile_mode: str | None = None, cuda_graph: bool = False) -> tuple[Callable[[torch.Tensor],
                                                                                              Any], torch.Tensor]:
    """Turn a deployment-form model into the callable a benchmark times, plus the input to time it on.

    ``example`` already has the device, dtype and memory format wanted (the model is moved to match).
    ``fast_path`` applies :func:`accelerate` (PATNet only; ignored for other networks). ``compile_mode``:
    None (eager) or a ``torch.compile`` mode ("default", "max-autotune-no-cudagraphs", "reduce-overhead", ...).
    ``cuda_graph`` captures the (possibly compiled) forward in a CUDA graph (GPU only).
    """
    from patsearch.models.patnet import PATNet

    if fast_path and isinstance(model, PATNet):
        model = accelerate(model)
    model = model.eval().to(device=example.device, dtype=example.dtype)
    if example.dim() == 4 and example.is_contiguous(memory_format=torch.channels_last) \
            and not example.is_contiguous():
        model = model.to(memory_format=torch.channels_last)
    fn: Callable[[torch.Tensor], Any] = model
    if compile_mode is not None:
        with torch.inference_mode():  # fill the position-bias caches eagerly, so Dynamo reads them as constants
            model(example)
        fn = torch.compile(model, mode=None if compile_mode == "default" else compile_mode, dynamic=False,
                           fullgraph=False)
    if cuda_graph:
        if not example.is_cuda:
            raise ValueError("cuda_graph=True needs a CUDA input")
        fn = _CudaGraphRunner(fn, example)
    return fn, example

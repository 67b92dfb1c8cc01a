"""PATNet's fast blocks: the deployment form's function with fewer memory passes.

:func:`accelerate` rewrites the blocks of a deployment-form PATNet (:func:`patsearch.models.fuse_model`) into
:class:`FastChannelBlock` / :class:`FastAttentionBlock`. They hold the deployment modules themselves and call
their definitions (:meth:`GaussianSE.gate_from_stats` on :func:`channel_stats`,
:meth:`SelfAttentionDeploy.attend_tokens`); what changes is only where results are written:

- PAT_ch: the gated untouched part ``x2 * g`` goes straight into the buffer that feeds the MLP's first 1x1,
  next to the 3x3 output, instead of ``mul`` + ``cat``. On the CPU the SE statistics take two vectorised passes.
- PAT_sp: the gate's BN scale moves into the z1 rows of the MLP's merged second 1x1 (the gate conv's weights
  are divided by it, so the gate reads the same values) and the residual add writes the block output directly.
- Block v2 (PAT_sf): the mixer's residual add writes each part into the output; on channels-last tensors the
  attention reads its tokens in place, and on CUDA the biased attention runs as SDPA pinned to the
  memory-efficient kernel (cuDNN attention, the default with a float mask, is ~1.6x slower on the H100).
- GPU path: fc1 + bias + ReLU is one cuDNN kernel; on channels-last tensors the other 1x1s are GEMMs on
  (B*H*W, C) token matrices with the bias in cuBLASLt's epilogue, and the 4x4/4 stem is one GEMM over patches.
- CPU and ``torch.compile`` (Dynamo breaks the graph at every non-contiguous ``out=``): the same arithmetic in
  a plain formulation with fewer ops.

:func:`gpu_path` forces the GPU path's formulation on any device, so CPU tests check its arithmetic.
"""
from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from patsearch import kernels
from patsearch.models.layers import (
    BlockDeploy,
    MlpDeploy,
    PartialChannelAttentionDeploy,
    PartialSelfAttention,
    SelfAttentionDeploy,
    biased_attention,
    channel_stats,
)
from patsearch.models.patnet import PATNet, fuse_model

__all__ = ["FastAttentionBlock", "FastChannelBlock", "PatchifyConv", "accelerate", "gpu_path", "is_accelerated",
           "on_gpu_path", "tokens", "untokens"]

# A gate-affine scale smaller than this (relative to the largest) is not divided into the gate weights.
_MIN_RELATIVE_SCALE = 1e-6
_FORCE_GPU_PATH = {"on": False}


@contextlib.contextmanager
def gpu_path(enabled: bool = True) -> Iterator[None]:
    """Run the GPU path's formulation (token GEMMs on channels-last inputs, ``out=`` writes, the pinned SDPA)
    on whatever device the tensors are on, so that CPU tests exercise it. CUDA-only kernels (cuDNN's fused
    conv + ReLU) fall back to their plain equivalents off the GPU."""
    before = _FORCE_GPU_PATH["on"]
    _FORCE_GPU_PATH["on"] = enabled
    try:
        yield
    finally:
        _FORCE_GPU_PATH["on"] = before


def _gpu_formulation(x: torch.Tensor) -> bool:
    """Whether ``x`` is computed as the GPU would: a CUDA tensor, or any tensor inside :func:`gpu_path`."""
    return x.is_cuda or _FORCE_GPU_PATH["on"]


def on_gpu_path(x: torch.Tensor) -> bool:
    """Whether ``x`` takes the GPU path: a CUDA tensor, or any tensor inside :func:`gpu_path`; never while
    compiling (Inductor fuses the plain formulation itself)."""
    return _gpu_formulation(x) and not torch.compiler.is_compiling()


def tokens(x: torch.Tensor) -> torch.Tensor | None:
    """A channels-last (B, C, H, W) tensor on the GPU path as its (B*H*W, C) token matrix (a view), else None."""
    if x.dim() != 4 or not _gpu_formulation(x):
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
    """A stride-equals-kernel conv (the 4x4/4 stem) as one GEMM over gathered patches on channels-last GPU-path
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


class _FastMlpTail(nn.Module):
    """:class:`MlpDeploy` plus the block's residual add, writing the block output in place (PAT_sp partial);
    other MLPs run as the deployment module itself. ``epilogue_kernel`` (set by ``accelerate(...,
    epilogue_kernels=True)``): on the GPU path fc2, the gate, its affine and the shortcut run as one kernel
    (:func:`patsearch.kernels.fc2_gate_residual`) where it applies."""

    epilogue_kernel = False

    def __init__(self, mlp: MlpDeploy) -> None:
        super().__init__()
        self.half = mlp.half
        self.partial = mlp.gate is not None and mlp.half is not None
        # PAT_sp partial: fc1 and act are the deployment module's; fc2 and the gate are rescaled copies below.
        self.mlp = None if self.partial else mlp
        self.fc1, self.act = mlp.fc1, mlp.act
        if not self.partial:
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
        if self.mlp is not None:
            return residual + self.mlp(mlp_in)
        t_in, t_res = tokens(mlp_in), tokens(residual)
        if t_in is not None and t_res is not None:
            return untokens(self._forward_tokens(t_in, t_res, residual), residual)
        z = self.fc2(conv1x1_act(mlp_in, self.fc1, self.act))
        return self._gate_add(z, residual, lambda z1: self.gate(z1), self.scale, self.shift)

    def _forward_tokens(self, t_in: torch.Tensor, t_res: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The same on (B*H*W, C) token matrices: every 1x1 is a GEMM with its bias (and ReLU) in the epilogue."""
        fc1, act = self.fc1, self.act
        if t_in.is_cuda and isinstance(act, nn.ReLU):  # cuDNN's fused conv+bias+ReLU beats the GEMM here
            h = tokens(conv1x1_act(untokens(t_in, like), fc1, act))
        else:
            h = linear_act(t_in, fc1.weight.flatten(1), fc1.bias, act)
        gate_w = self.gate.weight.flatten(1)
        if self.epilogue_kernel and kernels.fc2_gate_kernel_applies(h, t_res, t_res.shape[1]):
            return kernels.fc2_gate_residual(h, self.fc2.weight.flatten(1), self.fc2.bias, gate_w,
                                             None if self.scaled else self.scale.flatten(),
                                             self.shift.flatten() if self.has_shift else None, t_res, self.half)
        z = F.linear(h, self.fc2.weight.flatten(1), self.fc2.bias)
        return self._gate_add(z, t_res, lambda z1: F.linear(z1, gate_w), self.scale.flatten(), self.shift.flatten())

    def _gate_add(self, z: torch.Tensor, residual: torch.Tensor, gate: Callable[[torch.Tensor], torch.Tensor],
                  scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """``residual + [affine(z1 * hsig(gate(z1))), z2]`` with the affine's scale already in z1 when scaled;
        channels are dim 1 of ``z`` (NCHW or token matrix alike)."""
        half = self.half
        z1 = z[:, :half]
        w = F.hardsigmoid(gate(z1))
        if not on_gpu_path(z):  # small CPU tensors: per-op overhead outweighs memory passes; gate in place
            z1.mul_(w)
            if not self.scaled:
                z1.mul_(scale)
            if self.has_shift:
                z1.add_(shift)
            return residual + z
        out = torch.empty_like(residual)
        torch.add(residual[:, half:], z[:, half:], out=out[:, half:])
        top = out[:, :half]
        if self.scaled:
            torch.addcmul(residual[:, :half], z1, w, out=top)
        else:
            torch.addcmul(residual[:, :half], z1 * w, scale, out=top)
        if self.has_shift:
            top.add_(shift)
        return out


class FastChannelBlock(nn.Module):
    """Block v1 with PAT_ch: ``x + MLP([conv3x3(x1), x2 * g(x2)])``, the gate from the deployment SE itself."""

    def __init__(self, block: BlockDeploy) -> None:
        super().__init__()
        mixer: PartialChannelAttentionDeploy = block.mixer
        if mixer.affine is not None:
            raise ValueError("FastChannelBlock needs the post-gate affine folded into the MLP (Block.deploy)")
        self.dim_conv = mixer.dim_conv
        self.conv, self.attn = mixer.conv, mixer.attn
        self.tail = _FastMlpTail(block.mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cp = self.dim_conv
        x1, x2 = x[:, :cp], x[:, cp:]
        # One Welford pass on the GPU (also inside gpu_path(), which stands for it); two vectorised passes on the CPU.
        gate = self.attn.gate_from_stats(*channel_stats(x2, two_pass=not _gpu_formulation(x2)))[:, :, None, None]
        if not on_gpu_path(x):  # fewer ops beat fewer passes on small CPU tensors
            return self.tail(torch.cat([self.conv(x1), x2 * gate], dim=1), x)
        buf = torch.empty_like(x)
        buf[:, :cp] = self.conv(x1)
        torch.mul(x2, gate, out=buf[:, cp:])
        return self.tail(buf, x)


def _sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """:func:`~patsearch.models.layers.biased_attention`'s function (inference, q pre-scaled) as SDPA pinned to
    the memory-efficient kernel: with a float mask cuDNN attention is picked by default and is ~1.6x slower.
    Under torch.compile the kernel choice is left to Inductor (Dynamo would break the graph at the context)."""
    if torch.compiler.is_compiling():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=1.0)
    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=1.0)


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
        if not on_gpu_path(x):
            y = x + torch.cat([self.conv(x1), self.attn(x2)], dim=1)
            return self.tail(y, y)
        y = torch.empty_like(x)
        torch.add(x1, self.conv(x1), out=y[:, :cp])
        torch.add(x2, self.attn(x2), out=y[:, cp:])
        return self.tail(y, y)

    def _forward_tokens(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Channels-last: the attention reads its tokens in place (no flatten/transpose copies of x2)."""
        cp = self.dim_conv
        b, _, h, w = x.shape
        y1 = self.conv(x[:, :cp]).permute(0, 2, 3, 1).reshape(-1, cp)
        t2 = t[:, cp:]
        # GPU (compiled or not) and gpu_path(): SDPA; CPU: the reference's own biased_attention.
        attend = _sdpa_attention if _gpu_formulation(x) else biased_attention
        o = self.attn.attend_tokens(t2.view(b, h * w, -1), h, w, attend).reshape(b * h * w, -1)
        if not on_gpu_path(x):
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
    if (isinstance(mixer, PartialChannelAttentionDeploy) and not layer.v2 and mixer.affine is None
            and mixer.attn.from_statistics):
        return FastChannelBlock(layer)
    if (isinstance(mixer, PartialSelfAttention) and layer.v2 and not mixer.full
            and isinstance(mixer.attn, SelfAttentionDeploy)):
        return FastAttentionBlock(layer)
    return layer


@torch.no_grad()
def accelerate(model: nn.Module, epilogue_kernels: bool = False) -> nn.Module:
    """A fast-path copy of a PATNet (trained or deployment form; the original is untouched), in eval mode.

    The result computes the same function as :func:`patsearch.models.fuse_model` (and so as the trained model in
    eval mode) up to floating-point rounding; it carries ``fast_path = True`` for provenance.
    ``epilogue_kernels``: PAT_sp blocks end in one Triton kernel (fc2 with the gate, its affine and the shortcut
    in the GEMM's epilogue; bf16/fp16, rows up to :data:`patsearch.kernels.FC2_GATE_MAX_CHANNELS` channels).
    """
    if not isinstance(model, PATNet):
        raise TypeError(f"accelerate() takes a PATNet, got {type(model).__name__}; use prepare_inference() for "
                        "other networks")
    model = copy.deepcopy(model).eval() if model.deployed else fuse_model(model)
    for stage in model.stages:
        for i, layer in enumerate(stage):
            stage[i] = _fast_block(layer)
    for module in model.modules():
        if isinstance(module, _FastMlpTail):
            module.epilogue_kernel = epilogue_kernels
    if isinstance(model.stem, nn.Conv2d):
        model.stem = PatchifyConv(model.stem)
    model.requires_grad_(False)  # an inference form, like fuse(); also lets tracers run the out= kernels
    model.fast_path = True
    return model


def is_accelerated(model: nn.Module) -> bool:
    return bool(getattr(model, "fast_path", False))

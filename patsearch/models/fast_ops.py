"""The fast path's device switch and layout helpers, shared by PATNet's block families and FasterNet's surgery.

The fast forms compute the deployment form's function with fewer memory passes. They have two formulations: the
GPU path (channels-last tensors as (B*H*W, C) token matrices, every 1x1 a GEMM with its bias and ReLU in the
epilogue, ``out=`` writes instead of ``cat``) and, on the CPU and under ``torch.compile`` (Dynamo breaks the graph
at every non-contiguous ``out=``), the same arithmetic in a plain formulation with fewer ops. :func:`gpu_path`
forces the GPU path's formulation on any device, so CPU tests check its arithmetic.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["PatchifyConv", "conv1x1_act", "gpu_formulation", "gpu_path", "linear_act", "on_gpu_path", "tokens",
           "untokens"]

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


def gpu_formulation(x: torch.Tensor) -> bool:
    """Whether ``x`` is computed as the GPU would: a CUDA tensor, or any tensor inside :func:`gpu_path`."""
    return x.is_cuda or _FORCE_GPU_PATH["on"]


def on_gpu_path(x: torch.Tensor) -> bool:
    """Whether ``x`` takes the GPU path: a CUDA tensor, or any tensor inside :func:`gpu_path`; never while
    compiling (Inductor fuses the plain formulation itself)."""
    return gpu_formulation(x) and not torch.compiler.is_compiling()


def tokens(x: torch.Tensor) -> torch.Tensor | None:
    """A channels-last (B, C, H, W) tensor on the GPU path as its (B*H*W, C) token matrix (a view), else None."""
    if x.dim() != 4 or not gpu_formulation(x):
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

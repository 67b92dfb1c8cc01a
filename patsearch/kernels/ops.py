"""The fused ops as ``torch.library`` custom ops (``patsearch::*``), with fake (meta) kernels and autograd.

Each op runs its Triton kernel on CUDA and its :mod:`~patsearch.kernels.reference` form elsewhere; both sides
register the same backward op, so torch.compile (the ops are opaque nodes in the graph, fake kernels give the
shapes), AOTAutograd, DDP and ``torch.export`` see one op with one gradient. Outputs are dense tensors in the
layout of the main input (channels-last where its channels are innermost, else contiguous); the main input may
also be a channel slice of a larger NCHW or channels-last tensor, read in place. Double backward is not
supported.

Which implementation runs (:func:`backend`): ``"auto"`` takes Triton on CUDA and the reference on the CPU,
except that with ``TRITON_INTERPRET=1`` in the environment the CPU also runs the Triton kernels (through
Triton's interpreter; how the tests check them without a GPU). float64 always takes the reference.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from torch import Tensor

from patsearch.kernels import reference

__all__ = ["FC2_GATE_MAX_CHANNELS", "backend", "channel_stats", "fc2_gate_kernel_applies", "fc2_gate_residual",
           "gated_bn_affine", "scale_channels", "spatial_gate", "uses_triton"]

BACKENDS = ("auto", "triton", "reference")
_STATE = {"backend": "auto"}
_TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@contextlib.contextmanager
def backend(name: str) -> Iterator[None]:
    """Run the ops with ``name`` ("auto", "triton" or "reference") inside the block."""
    if name not in BACKENDS:
        raise ValueError(f"unknown kernel backend {name!r}; choose one of {', '.join(BACKENDS)}")
    before = _STATE["backend"]
    _STATE["backend"] = name
    try:
        yield
    finally:
        _STATE["backend"] = before


def uses_triton(t: Tensor) -> bool:
    """Whether an op on ``t`` runs its Triton kernel under the current backend."""
    name = _STATE["backend"]
    if name == "reference" or t.dtype not in _TRITON_DTYPES:
        return False
    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    if name == "auto" and not (t.is_cuda or (t.device.type == "cpu" and interpret)):
        return False
    if not (t.is_cuda or interpret):
        raise RuntimeError(f"the Triton kernels need a CUDA tensor (got one on {t.device}) or TRITON_INTERPRET=1 "
                           "set before triton is imported; use backend('reference') on this device")
    return True


def _triton():  # the kernels import triton: only when one is about to run
    from patsearch.kernels import _triton as kernels
    return kernels


def _check_4d(name: str, x: Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"{name} expects a 4-D (B, C, H, W) tensor, got shape {tuple(x.shape)}")


def _check_vector(name: str, what: str, v: Tensor | None, n: int) -> None:
    if v is not None and v.numel() != n:
        raise ValueError(f"{name}: {what} must have {n} elements (one per channel), got shape {tuple(v.shape)}")


def _readable(x: Tensor) -> Tensor:
    """``x`` itself where the kernels can address it (H and W merge into one pixel axis), else a dense copy."""
    if _triton().flat_strides(x) is not None:
        return x
    return x.contiguous(memory_format=torch.channels_last if x.stride(1) == 1 else torch.contiguous_format)


def _dense_like(out: Tensor, like: Tensor) -> Tensor:
    """``out`` in the layout the fake kernels promise for an input ``like`` (a no-op when it already is)."""
    inner = like.stride(1) == 1 and like.shape[1] > 1
    return out.contiguous(memory_format=torch.channels_last if inner else torch.contiguous_format)


def _empty_dense_like(like: Tensor) -> Tensor:
    return _dense_like(torch.empty_like(like, memory_format=torch.contiguous_format), like)


# --- channel_stats ------------------------------------------------------------------------------------------


@torch.library.custom_op("patsearch::channel_stats", mutates_args=())
def channel_stats(x: Tensor, float32: bool = False) -> tuple[Tensor, Tensor]:
    """Per-(sample, channel) spatial mean and unbiased std of ``x`` (B, C, H, W), each (B, C), in one read of
    ``x``; a 1x1 map's std is 0. In ``x.dtype``, or with ``float32=True`` in float32 (float64 stays float64):
    what a bf16 network should use where the statistics feed a BatchNorm (:func:`gated_batch_norm`)."""
    _check_4d("channel_stats", x)
    if uses_triton(x):
        return _triton().channel_stats(_readable(x), float32)
    return reference.channel_stats(x, float32)


@channel_stats.register_fake
def _(x: Tensor, float32: bool = False) -> tuple[Tensor, Tensor]:
    _check_4d("channel_stats", x)
    dtype = x.dtype if not float32 or x.dtype == torch.float64 else torch.float32
    return x.new_empty(x.shape[:2], dtype=dtype), x.new_empty(x.shape[:2], dtype=dtype)


@torch.library.custom_op("patsearch::channel_stats_backward", mutates_args=())
def channel_stats_backward(grad_mean: Tensor, grad_std: Tensor, x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    if uses_triton(x):
        return _triton().channel_stats_backward(grad_mean, grad_std, _readable(x), mean, std)
    return _dense_like(reference.channel_stats_backward(grad_mean, grad_std, x, mean, std), x)


@channel_stats_backward.register_fake
def _(grad_mean: Tensor, grad_std: Tensor, x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    return _empty_dense_like(x)


def _channel_stats_setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[0], *output)


def _channel_stats_grad(ctx, grad_mean: Tensor, grad_std: Tensor) -> tuple[Tensor, None]:
    x, mean, std = ctx.saved_tensors
    return channel_stats_backward(grad_mean, grad_std, x, mean, std), None


channel_stats.register_autograd(_channel_stats_grad, setup_context=_channel_stats_setup)


# --- gated_bn_affine ----------------------------------------------------------------------------------------


def _check_gated_bn_args(gate: Tensor, mean: Tensor, std: Tensor, weight: Tensor, bias: Tensor, pixels: int) -> None:
    if gate.dim() != 2 or mean.shape != gate.shape or std.shape != gate.shape:
        raise ValueError(f"gated_bn_affine: gate, mean and std must all be (B, C); got {tuple(gate.shape)}, "
                         f"{tuple(mean.shape)}, {tuple(std.shape)}")
    _check_vector("gated_bn_affine", "weight", weight, gate.shape[1])
    _check_vector("gated_bn_affine", "bias", bias, gate.shape[1])
    if pixels < 1:
        raise ValueError(f"gated_bn_affine: pixels must be at least 1, got {pixels}")


def _acc_dtype(*tensors: Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


@torch.library.custom_op("patsearch::gated_bn_affine", mutates_args=())
def gated_bn_affine(gate: Tensor, mean: Tensor, std: Tensor, weight: Tensor, bias: Tensor, pixels: int,
                    eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A train-mode BN of ``x * gate`` as a per-channel affine, from the (B, C) gate and ``x``'s per-(sample,
    channel) mean and unbiased std over ``pixels``: (scale, shift, batch mean, biased batch variance), each (C,)
    in float32 (float64 for float64 inputs). One small kernel each way instead of a dozen (B, C) ops."""
    _check_gated_bn_args(gate, mean, std, weight, bias, pixels)
    if _acc_dtype(gate, mean, std, weight, bias) == torch.float32 and uses_triton(gate):
        return _triton().gated_bn_affine(gate, mean, std, weight, bias, pixels, eps)
    return reference.gated_bn_affine(gate, mean, std, weight, bias, pixels, eps)


@gated_bn_affine.register_fake
def _(gate: Tensor, mean: Tensor, std: Tensor, weight: Tensor, bias: Tensor, pixels: int, eps: float
      ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    _check_gated_bn_args(gate, mean, std, weight, bias, pixels)
    dtype = _acc_dtype(gate, mean, std, weight, bias)
    return tuple(gate.new_empty((gate.shape[1],), dtype=dtype) for _ in range(4))


@torch.library.custom_op("patsearch::gated_bn_affine_backward", mutates_args=())
def gated_bn_affine_backward(grad_scale: Tensor, grad_shift: Tensor, gate: Tensor, mean: Tensor, std: Tensor,
                             weight: Tensor, mean_y: Tensor, var_y: Tensor, pixels: int, eps: float
                             ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    if mean_y.dtype == torch.float32 and uses_triton(gate):
        return _triton().gated_bn_affine_backward(grad_scale, grad_shift, gate, mean, std, weight, mean_y, var_y,
                                                  pixels, eps)
    return reference.gated_bn_affine_backward(grad_scale, grad_shift, gate, mean, std, weight, mean_y, var_y,
                                              pixels, eps)


@gated_bn_affine_backward.register_fake
def _(grad_scale: Tensor, grad_shift: Tensor, gate: Tensor, mean: Tensor, std: Tensor, weight: Tensor,
      mean_y: Tensor, var_y: Tensor, pixels: int, eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    return (torch.empty_like(gate, memory_format=torch.contiguous_format),
            torch.empty_like(mean, memory_format=torch.contiguous_format),
            torch.empty_like(std, memory_format=torch.contiguous_format), torch.empty_like(weight),
            torch.empty_like(weight))


def _gated_bn_setup(ctx, inputs, output) -> None:
    gate, mean, std, weight, _bias, pixels, eps = inputs
    ctx.pixels, ctx.eps = pixels, eps
    ctx.set_materialize_grads(False)  # the batch statistics' gradients stay None instead of zero-filled tensors
    ctx.save_for_backward(gate, mean, std, weight, output[2], output[3])


def _gated_bn_grad(ctx, grad_scale: Tensor | None, grad_shift: Tensor | None, _grad_mean: Tensor | None,
                   _grad_var: Tensor | None):
    # The batch mean and variance feed the running averages only; no gradient flows back through them.
    gate, mean, std, weight, mean_y, var_y = ctx.saved_tensors
    grad_scale = torch.zeros_like(mean_y) if grad_scale is None else grad_scale
    grad_shift = torch.zeros_like(mean_y) if grad_shift is None else grad_shift
    grads = gated_bn_affine_backward(grad_scale, grad_shift, gate, mean, std, weight, mean_y, var_y, ctx.pixels,
                                     ctx.eps)
    return (*grads, None, None)


gated_bn_affine.register_autograd(_gated_bn_grad, setup_context=_gated_bn_setup)


# --- scale_channels -----------------------------------------------------------------------------------------


def _check_scale_args(x: Tensor, gate: Tensor, scale: Tensor | None, shift: Tensor | None) -> None:
    _check_4d("scale_channels", x)
    if gate.shape != x.shape[:2]:
        raise ValueError(f"scale_channels: gate must be (B, C) = {tuple(x.shape[:2])}, got {tuple(gate.shape)}; "
                         "flatten a (B, C, 1, 1) gate first")
    _check_vector("scale_channels", "scale", scale, x.shape[1])
    _check_vector("scale_channels", "shift", shift, x.shape[1])


@torch.library.custom_op("patsearch::scale_channels", mutates_args=())
def scale_channels(x: Tensor, gate: Tensor, scale: Tensor | None = None, shift: Tensor | None = None
                   ) -> Tensor:
    """``(x * gate[b, c]) * scale[c] + shift[c]`` in one pass over ``x``; ``gate`` is (B, C), ``scale`` and
    ``shift`` (C,) or None (an eval-mode BN after the gate, as an affine)."""
    _check_scale_args(x, gate, scale, shift)
    if uses_triton(x):
        return _triton().scale_channels(_readable(x), gate, scale, shift)
    return _dense_like(reference.scale_channels(x, gate, scale, shift), x)


@scale_channels.register_fake
def _(x: Tensor, gate: Tensor, scale: Tensor | None = None, shift: Tensor | None = None) -> Tensor:
    _check_scale_args(x, gate, scale, shift)
    return _empty_dense_like(x)


@torch.library.custom_op("patsearch::scale_channels_backward", mutates_args=())
def scale_channels_backward(grad: Tensor, x: Tensor, gate: Tensor, scale: Tensor | None
                            ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(dx, dgate, dscale, dshift); dscale and dshift are computed as if the affine were present."""
    return _gated_affine_backward("scale_channels_backward", grad, x, gate, scale)


@scale_channels_backward.register_fake
def _(grad: Tensor, x: Tensor, gate: Tensor, scale: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return _empty_gated_affine_grads(x, gate, scale)


def _gated_affine_backward(name: str, grad: Tensor, x: Tensor, gate: Tensor, scale: Tensor | None
                           ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The backward of a gate-times-input-then-affine op (``scale_channels``, ``spatial_gate``): the kernel or
    reference function of that ``name``, the input's gradient dense in the input's layout."""
    if uses_triton(x):
        return getattr(_triton(), name)(grad, _readable(x), gate, scale)
    dx, dgate, dscale, dshift = getattr(reference, name)(grad, x, gate, scale)
    return _dense_like(dx, x), dgate, dscale, dshift


def _empty_gated_affine_grads(x: Tensor, gate: Tensor, scale: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    wdtype = scale.dtype if scale is not None else x.dtype
    c = x.shape[1]
    return (_empty_dense_like(x), torch.empty_like(gate, memory_format=torch.contiguous_format),
            x.new_empty((c,), dtype=wdtype), x.new_empty((c,), dtype=wdtype))


def _affine_setup(ctx, inputs, output) -> None:
    x, weight, scale, shift = inputs
    ctx.has_scale, ctx.has_shift = scale is not None, shift is not None
    ctx.shift_dtype = shift.dtype if shift is not None else None
    ctx.save_for_backward(x, weight, scale)


def _affine_grads(ctx, dscale: Tensor, dshift: Tensor) -> tuple[Tensor | None, Tensor | None]:
    return (dscale if ctx.has_scale else None,
            dshift.to(ctx.shift_dtype) if ctx.has_shift else None)


def _scale_channels_grad(ctx, grad: Tensor):
    x, gate, scale = ctx.saved_tensors
    dx, dgate, dscale, dshift = scale_channels_backward(grad, x, gate, scale)
    return (dx, dgate, *_affine_grads(ctx, dscale, dshift))


scale_channels.register_autograd(_scale_channels_grad, setup_context=_affine_setup)


# --- spatial_gate -------------------------------------------------------------------------------------------


def _check_spatial_args(z: Tensor, weight: Tensor, scale: Tensor | None, shift: Tensor | None,
                        residual: Tensor | None) -> None:
    _check_4d("spatial_gate", z)
    _check_vector("spatial_gate", "weight", weight, z.shape[1])
    _check_vector("spatial_gate", "scale", scale, z.shape[1])
    _check_vector("spatial_gate", "shift", shift, z.shape[1])
    if residual is not None and residual.shape != z.shape:
        raise ValueError(f"spatial_gate: residual must be shaped like z {tuple(z.shape)}, got {tuple(residual.shape)}")


@torch.library.custom_op("patsearch::spatial_gate", mutates_args=())
def spatial_gate(z: Tensor, weight: Tensor, scale: Tensor | None = None, shift: Tensor | None = None,
                 residual: Tensor | None = None) -> Tensor:
    """PAT_sp's gate in one pass over ``z``:
    ``(z * hardsigmoid(sum_c weight[c] * z[:, c])) * scale + shift + residual``. ``weight`` is the 1-output 1x1
    conv's weight (C elements, any shape, e.g. (1, C, 1, 1)); ``residual`` (shaped like ``z``, e.g. the block
    input's matching channels) lets a deployment block add its shortcut in the same pass."""
    _check_spatial_args(z, weight, scale, shift, residual)
    if uses_triton(z):
        return _triton().spatial_gate(_readable(z), weight, scale, shift,
                                      None if residual is None else _readable(residual))
    return _dense_like(reference.spatial_gate(z, weight, scale, shift, residual), z)


@spatial_gate.register_fake
def _(z: Tensor, weight: Tensor, scale: Tensor | None = None, shift: Tensor | None = None,
      residual: Tensor | None = None) -> Tensor:
    _check_spatial_args(z, weight, scale, shift, residual)
    return _empty_dense_like(z)


@torch.library.custom_op("patsearch::spatial_gate_backward", mutates_args=())
def spatial_gate_backward(grad: Tensor, z: Tensor, weight: Tensor, scale: Tensor | None
                          ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(dz, dweight, dscale, dshift); dscale and dshift are computed as if the affine were present."""
    return _gated_affine_backward("spatial_gate_backward", grad, z, weight, scale)


@spatial_gate_backward.register_fake
def _(grad: Tensor, z: Tensor, weight: Tensor, scale: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return _empty_gated_affine_grads(z, weight, scale)


def _spatial_gate_setup(ctx, inputs, output) -> None:
    _affine_setup(ctx, inputs[:4], output)
    ctx.has_residual = inputs[4] is not None


def _spatial_gate_grad(ctx, grad: Tensor):
    z, weight, scale = ctx.saved_tensors
    dz, dweight, dscale, dshift = spatial_gate_backward(grad, z, weight, scale)
    return (dz, dweight, *_affine_grads(ctx, dscale, dshift), grad if ctx.has_residual else None)


spatial_gate.register_autograd(_spatial_gate_grad, setup_context=_spatial_gate_setup)


# --- inference: fc2 + PAT_sp gate + affine + residual, one kernel ------------------------------------------------

# The widest row one program holds (the gate is a dot product over the first half of the row): its float32
# accumulator of 32 x 512 stays in registers. Wider stages (PATNet-S stage 4 and up) take the separate kernels.
FC2_GATE_MAX_CHANNELS = 512


def fc2_gate_kernel_applies(h: Tensor, residual: Tensor, channels: int) -> bool:
    """Whether :func:`fc2_gate_residual` runs its Triton kernel: bf16/fp16 token matrices with contiguous rows on
    a device the kernels run on, at most :data:`FC2_GATE_MAX_CHANNELS` output channels."""
    return (h.dtype in (torch.bfloat16, torch.float16) and h.dim() == 2 and h.stride(1) == 1
            and residual.stride(1) == 1 and channels <= FC2_GATE_MAX_CHANNELS and uses_triton(h))


def fc2_gate_residual(h: Tensor, weight: Tensor, bias: Tensor, gate_weight: Tensor, scale: Tensor | None,
                      shift: Tensor | None, residual: Tensor, half: int) -> Tensor:
    """PAT_sp's deployment tail with the block's shortcut, on (tokens, channels) matrices, for inference:
    ``residual + [(z1 * hardsigmoid(z1 @ gate_weight)) * scale + shift, z2]`` with ``z = h @ weight.T + bias``.
    One Triton kernel (the GEMM with everything after it in its epilogue) where
    :func:`fc2_gate_kernel_applies`, else the reference. No autograd: the fast path is an inference form."""
    m, n = h.shape[0], weight.shape[0]
    if weight.shape[1] != h.shape[1] or bias.shape != (n,) or residual.shape != (m, n):
        raise ValueError(f"fc2_gate_residual: h {tuple(h.shape)}, weight {tuple(weight.shape)}, bias "
                         f"{tuple(bias.shape)} and residual {tuple(residual.shape)} do not fit (M, K), (N, K), (N,), "
                         "(M, N)")
    if not 0 < half < n or gate_weight.numel() != half:
        raise ValueError(f"fc2_gate_residual: the gate covers the first half = {half} of {n} channels and needs "
                         f"that many weights, got {gate_weight.numel()}")
    _check_vector("fc2_gate_residual", "scale", scale, half)
    _check_vector("fc2_gate_residual", "shift", shift, half)
    if fc2_gate_kernel_applies(h, residual, n):
        return _triton().fc2_gate_residual(h, weight, bias, gate_weight, scale, shift, residual, half)
    return reference.fc2_gate_residual(h, weight, bias, gate_weight, scale, shift, residual, half)

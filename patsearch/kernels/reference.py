"""Pure-PyTorch forms of the fused ops: what runs on the CPU, the definition the Triton kernels are tested
against, forward and backward, and the math the model's blocks call (:func:`channel_stats`,
:func:`spatially_gated`, :func:`spatial_gate_weights`), so that each piece of block math exists once in PyTorch.

Every function takes and returns plain tensors; statistics and gates are (B, C). The ops' forms compute
low-precision inputs (bfloat16, float16) in float32 and cast the result back to the input's dtype, which is what
the kernels do (they accumulate in float32); the block math runs in its input's dtype, as the unfused layers do.
float64 stays float64 so that ``gradcheck`` can run on these. The backward functions are written out by hand (not
left to autograd) because they are the registered backward of the custom ops on the CPU.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["channel_stats", "channel_stats_backward", "fc2_gate_residual", "gated_bn_affine",
           "gated_bn_affine_backward", "scale_channels", "scale_channels_backward", "spatial_gate",
           "spatial_gate_backward", "spatial_gate_weights", "spatially_gated"]


def _acc(t: torch.Tensor) -> torch.Tensor:
    """The tensor in its accumulation dtype: float64 stays, everything else becomes float32."""
    return t if t.dtype == torch.float64 else t.float()


def _bc(v: torch.Tensor) -> torch.Tensor:
    """A (B, C) or (C,) tensor broadcast over (B, C, H, W)."""
    return v[..., None, None]


def _affine(y: torch.Tensor, scale: torch.Tensor | None, shift: torch.Tensor | None) -> torch.Tensor:
    """``y * scale + shift`` over the channels (dim 1) of ``y``, (B, C, H, W) or (tokens, C); each (C,) or None."""
    shape = (-1,) + (1,) * (y.dim() - 2)
    if scale is not None:
        y = y * _acc(scale).reshape(shape)
    if shift is not None:
        y = y + _acc(shift).reshape(shape)
    return y


def channel_stats(x: torch.Tensor, float32: bool = False, two_pass: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-(sample, channel) spatial mean and unbiased std of (B, C, H, W), each (B, C): the Gaussian SE's
    statistics, what every PATNet form computes. A 1x1 map (stage 4 of a 32 px input) has no unbiased spread: it
    counts as 0 instead of NaN.

    In ``x.dtype`` (torch's reductions accumulate low precision in float32 already), or with ``float32=True`` from
    a float32 copy, returned in float32 (float64 stays float64). ``two_pass`` takes the mean, then the norm of the
    centred values: on the CPU that vectorises over a (C, H*W) slice where ``torch.std_mean``'s Welford loop does
    not (~15x faster there), with the textbook two-pass accuracy.
    """
    n = x.shape[2] * x.shape[3]
    x = _acc(x) if float32 else x
    if not two_pass:
        std, mean = torch.std_mean(x, dim=(2, 3), correction=1 if n > 1 else 0)
        return mean, std  # std_mean allocates both: never aliases x
    mean = x.mean((2, 3), keepdim=True)
    std = torch.linalg.vector_norm(x - mean, dim=(2, 3)) / math.sqrt(max(n - 1, 1))
    return mean.flatten(1), std


def channel_stats_backward(grad_mean: torch.Tensor, grad_std: torch.Tensor, x: torch.Tensor, mean: torch.Tensor,
                           std: torch.Tensor) -> torch.Tensor:
    """dL/dx from dL/dmean and dL/dstd: ``gm / n + gs * (x - mean) / ((n - 1) * std)``. Where std is 0 (a 1x1
    map or a constant channel) the std term is 0, the subgradient; autograd of ``torch.std`` gives NaN there."""
    n = x.shape[2] * x.shape[3]
    std = _acc(std)
    coef = torch.where(std > 0, _acc(grad_std) / (std.clamp_min(torch.finfo(std.dtype).tiny) * max(n - 1, 1)), 0.0)
    dx = _bc(_acc(grad_mean) / n) + _bc(coef) * (_acc(x) - _bc(_acc(mean)))
    return dx.to(x.dtype)


def scale_channels(x: torch.Tensor, gate: torch.Tensor, scale: torch.Tensor | None = None,
                   shift: torch.Tensor | None = None) -> torch.Tensor:
    """``(x * gate) * scale + shift`` with ``gate`` (B, C) and the optional per-channel affine (C,)."""
    return _affine(_acc(x) * _bc(_acc(gate)), scale, shift).to(x.dtype)


def scale_channels_backward(grad: torch.Tensor, x: torch.Tensor, gate: torch.Tensor, scale: torch.Tensor | None
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dgate, dscale, dshift), each in its input's dtype; dscale/dshift as if the affine were present."""
    g, xf, gate_f = _acc(grad), _acc(x), _acc(gate)
    s = _acc(scale) if scale is not None else torch.ones(x.shape[1], dtype=g.dtype, device=g.device)
    dx = g * _bc(gate_f * s)
    gx = (g * xf).sum((2, 3))  # (B, C)
    dgate = gx * s
    dscale = (gx * gate_f).sum(0)
    dshift = g.sum((0, 2, 3))
    wdtype = scale.dtype if scale is not None else x.dtype
    return dx.to(x.dtype), dgate.to(gate.dtype), dscale.to(wdtype), dshift.to(wdtype)


def _gate_logits(z: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``sum_c weight[c] * z[:, c]``: the one-output 1x1 conv on (B, C, H, W), a GEMV on a (tokens, C) matrix."""
    w = weight.reshape(1, -1)
    return F.linear(z, w) if z.dim() == 2 else F.conv2d(z, w[:, :, None, None])


def spatial_gate_weights(z: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """PAT_sp's per-pixel gate ``hardsigmoid(conv1x1(z) -> 1 channel)`` in ``z``'s dtype, (B, 1, H, W) or
    (tokens, 1); ``weight`` has C elements (any shape, e.g. the conv's (1, C, 1, 1))."""
    return F.hardsigmoid(_gate_logits(z, weight))


def spatially_gated(z: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``z * hardsigmoid(conv1x1(z) -> 1 channel)``: PAT_sp's gate, in ``z``'s dtype (every form's definition)."""
    return z * spatial_gate_weights(z, weight)


def spatial_gate(z: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor | None = None,
                 shift: torch.Tensor | None = None, residual: torch.Tensor | None = None) -> torch.Tensor:
    """``(z * hardsigmoid(conv1x1(z) -> 1 channel)) * scale + shift + residual``; ``weight`` has C elements (any
    shape, e.g. the conv's (1, C, 1, 1)); ``residual`` is shaped like ``z``."""
    y = _affine(spatially_gated(_acc(z), _acc(weight)), scale, shift)
    if residual is not None:
        y = y + _acc(residual)
    return y.to(z.dtype)


def spatial_gate_backward(grad: torch.Tensor, z: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor | None
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dz, dweight, dscale, dshift). Hard-Sigmoid's derivative is 1/6 strictly inside (-3, 3), else 0 (as
    PyTorch's)."""
    g_out, zf, wf = _acc(grad), _acc(z), _acc(weight).reshape(-1)
    logits = _gate_logits(zf, wf)
    gate = F.hardsigmoid(logits)
    u = g_out * _bc(_acc(scale)) if scale is not None else g_out
    dlogits = torch.where((logits > -3) & (logits < 3), (u * zf).sum(1, keepdim=True) / 6, 0.0)
    dz = u * gate + dlogits * _bc(wf)
    dweight = (dlogits * zf).sum((0, 2, 3))
    dscale = (g_out * zf * gate).sum((0, 2, 3))
    dshift = g_out.sum((0, 2, 3))
    wdtype = scale.dtype if scale is not None else z.dtype
    return dz.to(z.dtype), dweight.reshape(weight.shape).to(weight.dtype), dscale.to(wdtype), dshift.to(wdtype)


def gated_bn_affine(gate: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, weight: torch.Tensor,
                    bias: torch.Tensor, pixels: int, eps: float
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A train-mode BN of ``y = x * gate`` as the per-channel affine ``y * scale + shift``, from the (B, C) gate and
    the per-(sample, channel) mean and unbiased std of ``x`` over its ``pixels``: (scale, shift, batch mean of y,
    biased batch variance of y), each (C,) in the accumulation dtype. By the law of total variance,
    ``var_y = mean_b((g m - mean_y)^2) + mean_b(g^2 std^2) (pixels - 1) / pixels``."""
    g, m, s = _acc(gate), _acc(mean), _acc(std)
    gm = g * m
    mean_y = gm.mean(0)
    var_y = (gm - mean_y).square().mean(0) + (g * s).square().mean(0) * ((pixels - 1) / pixels)
    scale = _acc(weight) * torch.rsqrt(var_y + eps)
    return scale, _acc(bias) - mean_y * scale, mean_y, var_y


def gated_bn_affine_backward(grad_scale: torch.Tensor, grad_shift: torch.Tensor, gate: torch.Tensor,
                             mean: torch.Tensor, std: torch.Tensor, weight: torch.Tensor, mean_y: torch.Tensor,
                             var_y: torch.Tensor, pixels: int, eps: float
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dgate, dmean, dstd, dweight, dbias) from the gradients of scale and shift (the batch statistics are
    outputs for the running averages only: no gradient flows back through them)."""
    g, m, s, w = _acc(gate), _acc(mean), _acc(std), _acc(weight)
    r = torch.rsqrt(var_y + eps)
    ds, dt = _acc(grad_scale), _acc(grad_shift)
    ds_total = ds - dt * mean_y  # scale also reaches the loss through shift = bias - mean_y * scale
    dvar = -0.5 * ds_total * w * r ** 3
    dmean_y = -dt * w * r
    batch, within = g.shape[0], (pixels - 1) / pixels
    # d/d(g m)[b]: the mean's 1/B, and the between-sample variance's 2 (g m - mean_y) / B (its mean_y term sums
    # to zero over b); the within-sample part depends on g and std only.
    dgm = (dmean_y + 2 * dvar * (g * m - mean_y)) / batch
    within_coef = 2 * within / batch * dvar
    dgate = dgm * m + within_coef * g * s * s
    dmean = dgm * g
    dstd = within_coef * g * g * s
    return (dgate.to(gate.dtype), dmean.to(mean.dtype), dstd.to(std.dtype), (ds_total * r).to(weight.dtype),
            dt.to(weight.dtype, copy=True))  # a copy: an op's output must not alias its input grad_shift


def fc2_gate_residual(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, gate_weight: torch.Tensor,
                      scale: torch.Tensor | None, shift: torch.Tensor | None, residual: torch.Tensor, half: int
                      ) -> torch.Tensor:
    """``residual + [(z1 * hardsigmoid(z1 @ gate_weight)) * scale + shift, z2]`` with ``z = h @ weight.T + bias``
    split after ``half`` channels, on (tokens, channels) matrices: PAT_sp's deployment tail and the block's
    shortcut. In ``residual``'s dtype."""
    z = _acc(h) @ _acc(weight).t() + _acc(bias)
    y1 = _affine(spatially_gated(z[:, :half], _acc(gate_weight)), scale, shift)
    return (_acc(residual) + torch.cat([y1, z[:, half:]], dim=1)).to(residual.dtype)

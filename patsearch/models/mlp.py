"""The MLP with PAT_sp (spatial attention), in all its forms: trained (optionally with the gate on the fused
kernel), deployment (:class:`MlpDeploy`: BNs folded, z2's BN and 1x1 merged into fc2) and fast (:class:`MlpFast`:
the deployment MLP with the block's residual add written in place).

The gate is :func:`patsearch.kernels.reference.spatially_gated` (its weights :func:`spatial_gate_weights`) in
every form; the fused kernels compute the same function.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from patsearch import kernels
from patsearch.kernels.reference import spatial_gate_weights, spatially_gated
from patsearch.models.common import (
    Affine,
    BatchNorm2d,
    act_layer,
    bn_scale_shift,
    conv_like,
    dense_format,
    fold_bn_into_conv,
)
from patsearch.models.fast_ops import conv1x1_act, linear_act, on_gpu_path, tokens, untokens

__all__ = ["Mlp", "MlpDeploy", "MlpFast"]

# A gate-affine scale smaller than this (relative to the largest) is not divided into the gate weights.
_MIN_RELATIVE_SCALE = 1e-6


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
        self.act = act_layer(act)
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
        # took ~12 of the 64 ms of a PATNet-T2 step on the H200. One dense copy costs far less.
        z2 = self.sp_conv(self.sp_norm(z2.contiguous(memory_format=dense_format(z))))
        if self.spatial == "partial":
            return torch.cat([self.gate_norm(self._spatially_gated(z1)), z2], dim=1)
        return self.gate_norm(self._spatially_gated(torch.cat([z1, z2], dim=1)))

    def _spatially_gated(self, z: torch.Tensor) -> torch.Tensor:
        """``z * hardsigmoid(conv1x1(z))`` with a one-channel 1x1 conv: one pass over z, fused."""
        if self.fused_kernels:
            return kernels.spatial_gate(z, self.gate.weight)
        return spatially_gated(z, self.gate.weight)

    def deploy(self, in_scale: torch.Tensor | None = None, in_shift: torch.Tensor | None = None) -> MlpDeploy:
        """Deployment MLP. ``in_scale``/``in_shift`` is an affine on the MLP's input (the mixer's trailing BN),
        folded into fc1's input columns and bias."""
        w1 = self.fc1.weight
        b1 = torch.zeros(w1.shape[0], dtype=w1.dtype, device=w1.device)
        if in_scale is not None:
            b1 = w1[:, :, 0, 0] @ in_shift
            w1 = w1 * in_scale.reshape(1, -1, 1, 1)
        fc1 = fold_bn_into_conv(conv_like(self.fc1, w1, b1), self.norm)
        if self.spatial == "none":
            return MlpDeploy(fc1, self.act, self.fc2, None, None, None)
        # Merge z2's BN and 1x1 into fc2's last rows: W_sp diag(s) W2[z2], bias W_sp t.
        w2 = self.fc2.weight[:, :, 0, 0]
        w_sp = self.sp_conv.weight[:, :, 0, 0]
        s, t = bn_scale_shift(self.sp_norm)
        rows_z2 = w_sp @ (s[:, None] * w2[self.half:])
        weight = torch.cat([w2[:self.half], rows_z2])[:, :, None, None]
        bias = torch.cat([torch.zeros(self.half, dtype=w2.dtype, device=w2.device), w_sp @ t])
        fc2 = conv_like(self.fc2, weight, bias)
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
            return self.gate_affine(spatially_gated(z, self.gate.weight))
        z1, z2 = torch.split(z, [self.half, z.shape[1] - self.half], dim=1)
        return torch.cat([self.gate_affine(spatially_gated(z1, self.gate.weight)), z2], dim=1)


class MlpFast(nn.Module):
    """:class:`MlpDeploy` plus the block's residual add, writing the block output in place (PAT_sp partial);
    other MLPs run as the deployment module itself. ``epilogue_kernel`` (set by ``accelerate(...,
    epilogue_kernels=True)``): on the GPU path fc2, the gate, its affine and the shortcut run as one kernel
    (:func:`patsearch.kernels.fc2_gate_residual`) where it applies."""

    epilogue_kernel = False

    def __init__(self, mlp: MlpDeploy) -> None:
        super().__init__()
        # PAT_sp: the gate's BN scale moves into the z1 rows of the merged fc2 (the gate conv's weights are divided
        # by it, so the gate reads the same values) and the residual add writes the block output directly.
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
        return self._gate_add(z, residual, self.scale, self.shift)

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
        return self._gate_add(z, t_res, self.scale.flatten(), self.shift.flatten())

    def _gate_add(self, z: torch.Tensor, residual: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor
                  ) -> torch.Tensor:
        """``residual + [affine(z1 * hsig(gate(z1))), z2]`` with the affine's scale already in z1 when scaled;
        channels are dim 1 of ``z`` (NCHW or token matrix alike)."""
        half = self.half
        z1 = z[:, :half]
        w = spatial_gate_weights(z1, self.gate.weight)
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

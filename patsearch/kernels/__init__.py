"""Fused GPU kernels for PATNet's memory-bound parts, as ``torch.library`` custom ops (``patsearch::*``).

- :func:`channel_stats`: the Gaussian SE's per-channel spatial mean and unbiased std, one read of the input.
- :func:`scale_channels`: the SE gate applied to its input with the BN after it (as an affine), one pass.
- :func:`gated_batch_norm`: ``BN(x * gate)`` with a train-mode BN folded into scale_channels, its batch
  statistics derived from channel_stats' (B, C) output (no extra pass over x) by :func:`gated_bn_affine`.
- :func:`spatial_gate`: PAT_sp's Hard-Sigmoid spatial gate (1-channel 1x1 conv + gating + affine), one pass.
- :func:`fc2_gate_residual` (inference): the MLP's second 1x1 as a GEMM with PAT_sp's gate, its affine and the
  block's shortcut in the epilogue, writing the block output in one kernel (the ``fast_kernels`` form).

Triton on CUDA, the pure-PyTorch :mod:`~patsearch.kernels.reference` elsewhere; see :mod:`~patsearch.kernels.ops`.
Importing this package does not import triton.

How the blocks use them (trained form; ``x2``/``z1`` are channel slices, passed as they are, no copy):

    # PAT_ch, untouched part: BN(x2 * gate(x2)) in train and eval mode
    mean, std = channel_stats(x2, float32=True)
    gate = <GaussianSE's (1, 2) conv + BN + Hard-Sigmoid on (mean, std) in x2's dtype>.flatten(1)   # (B, C)
    y2 = gated_batch_norm(x2, gate, mean, std, self.norm)
    # PAT_sp: BN(z1 * hsig(conv1x1(z1))); train: the BN stays, eval/deploy: the BN is the affine
    y1 = self.gate_norm(spatial_gate(z1, self.gate.weight))            # train
    y1 = spatial_gate(z1, self.gate.weight, scale, shift)              # eval, deployment (MlpDeploy)
"""
from patsearch.kernels import reference
from patsearch.kernels.gated_bn import gated_batch_norm
from patsearch.kernels.ops import (
    FC2_GATE_MAX_CHANNELS,
    backend,
    channel_stats,
    fc2_gate_kernel_applies,
    fc2_gate_residual,
    gated_bn_affine,
    scale_channels,
    spatial_gate,
    uses_triton,
)

__all__ = ["FC2_GATE_MAX_CHANNELS", "backend", "channel_stats", "fc2_gate_kernel_applies", "fc2_gate_residual",
           "gated_batch_norm", "gated_bn_affine", "reference", "scale_channels", "spatial_gate", "uses_triton"]

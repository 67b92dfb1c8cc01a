"""Fused GPU kernels for PATNet's memory-bound parts, as ``torch.library`` custom ops (``patsearch::*``).

- :func:`channel_stats`: the Gaussian SE's per-channel spatial mean and unbiased std, one read of the input.
- :func:`scale_channels`: the SE gate applied to its input with the BN after it (as an affine), one pass.
- :func:`gated_batch_norm`: ``BN(x * gate)`` with a train-mode BN folded into scale_channels, its batch
  statistics derived from channel_stats' (B, C) output (no extra pass over x) by :func:`gated_bn_affine`.
- :func:`spatial_gate`: PAT_sp's Hard-Sigmoid spatial gate (1-channel 1x1 conv + gating + affine), one pass.
- :func:`fc2_gate_residual` (inference): the MLP's second 1x1 as a GEMM with PAT_sp's gate, its affine and the
  block's shortcut in the epilogue, writing the block output in one kernel (the ``fast_kernels`` form).

Triton on CUDA, the pure-PyTorch :mod:`~patsearch.kernels.reference` elsewhere; see :mod:`~patsearch.kernels.ops`.
The reference is also the block math the models call in every form (:func:`reference.channel_stats`,
:func:`reference.spatially_gated`); the blocks that switch to these ops are
:func:`patsearch.models.channel_attention.gated_norm` (PAT_ch) and :class:`patsearch.models.mlp.Mlp` (PAT_sp).
Importing this package does not import triton.
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

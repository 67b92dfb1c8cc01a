"""Fused GPU kernels for PATNet's memory-bound parts, as ``torch.library`` custom ops (``patsearch::*``).

- :func:`channel_stats`: the Gaussian SE's per-channel spatial mean and unbiased std, one read of the input.
- :func:`scale_channels`: the SE gate applied to its input with the BN after it (as an affine), one pass.
- :func:`gated_batch_norm`: ``BN(x * gate)`` with a train-mode BN folded into scale_channels, its batch
  statistics derived from channel_stats' (B, C) output (no extra pass over x).
- :func:`spatial_gate`: PAT_sp's Hard-Sigmoid spatial gate (1-channel 1x1 conv + gating + affine), one pass.

Triton on CUDA, the pure-PyTorch :mod:`~patsearch.kernels.reference` elsewhere; see :mod:`~patsearch.kernels.ops`.
Importing this package does not import triton.
"""
from patsearch.kernels import reference
from patsearch.kernels.gated_bn import gated_batch_norm
from patsearch.kernels.ops import (
    backend,
    channel_stats,
    scale_channels,
    spatial_gate,
    uses_triton,
)

__all__ = ["backend", "channel_stats", "gated_batch_norm", "reference", "scale_channels", "spatial_gate",
           "uses_triton"]

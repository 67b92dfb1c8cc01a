"""Compatibility names for the fast inference path, which now lives in three modules with one job each:
:mod:`patsearch.models.fast_blocks` (PATNet's fast blocks, :func:`accelerate`, the :func:`gpu_path` switch),
:mod:`patsearch.models.peers` (FasterNet surgery) and :mod:`patsearch.models.inference` (channels-last,
torch.compile, CUDA graphs); :func:`deployment_fast` is the ``fast`` entry of :mod:`patsearch.models.forms`.
"""
from __future__ import annotations

from patsearch.models.fast_blocks import (
    FastAttentionBlock,
    FastChannelBlock,
    PatchifyConv,
    accelerate,
    gpu_path,
    is_accelerated,
    tokens,
)
from patsearch.models.forms import deployment_fast
from patsearch.models.inference import prepare_inference
from patsearch.models.layers import channel_stats
from patsearch.models.peers import fasternet_fast, fuse_fasternet

__all__ = ["FastAttentionBlock", "FastChannelBlock", "PatchifyConv", "accelerate", "channel_stats",
           "deployment_fast", "fasternet_fast", "fuse_fasternet", "gpu_path", "is_accelerated",
           "prepare_inference", "tokens"]

"""PATNet's layers: stem, merging and head, and the block, each in its trained form with ``deploy() -> nn.Module``
(its deployment form: a module computing the same function as the trained layer in eval mode, BNs folded, PAT_sp
merged); a deployed block's ``fast()`` gives its fast form (:class:`FastBlock`).

The block families own their forms, each in one module: :mod:`~patsearch.models.channel_attention` (PAT_ch),
:mod:`~patsearch.models.attention` (PAT_sf), :mod:`~patsearch.models.conv_mixers` (PConv, dense convs) and
:mod:`~patsearch.models.mlp` (the MLP with PAT_sp). A mixer whose output ends in a BN (PAT_ch, full channel
attention) also reports that BN as an affine through ``output_affine()``; a block deploys such a mixer with
``deploy(keep_output_affine=False)`` and folds the affine into its MLP's first 1x1 instead. Deployment modules
share parameters with the trained module; use :func:`patsearch.models.fuse_model` for a frozen, independent copy.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import DropPath, trunc_normal_

from patsearch.arch import ATTENTION_MIXERS, LayerSpec
from patsearch.models.attention import PartialSelfAttention
from patsearch.models.channel_attention import FullChannelAttention, PartialChannelAttention
from patsearch.models.common import BatchNorm2d, act_layer, fold_bn_into_conv
from patsearch.models.conv_mixers import DenseConv, PartialConv
from patsearch.models.mlp import Mlp, MlpDeploy, MlpFast

__all__ = ["Block", "BlockDeploy", "ConvBN", "FastBlock", "Head", "build_layer", "build_mixer", "init_weights",
           "use_fused_kernels"]

# --- stem, merging, head ------------------------------------------------------------------------------------


class ConvBN(nn.Sequential):
    """Conv (no bias) + BN: the embedding (4x4/4) and merging (2x2/2) layers."""

    def __init__(self, in_dim: int, out_dim: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_dim, out_dim, kernel, stride, bias=False)
        self.bn = BatchNorm2d(out_dim)

    def deploy(self) -> nn.Module:
        return fold_bn_into_conv(self.conv, self.bn)


class Head(nn.Module):
    """Global average pool, 1x1 conv to ``head_width`` (no bias), activation, flatten, linear classifier."""

    def __init__(self, in_dim: int, head_width: int, num_classes: int, act: str) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_dim, head_width, 1, bias=False)
        self.act = act_layer(act)
        self.fc = nn.Linear(head_width, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.act(self.proj(x.mean((2, 3), keepdim=True))).flatten(1)
        return x if pre_logits else self.fc(x)

    def deploy(self) -> nn.Module:
        return self


# --- blocks -------------------------------------------------------------------------------------------------


def build_mixer(dim: int, mixer: str, n_div: int, num_heads: int) -> nn.Module:
    if mixer == "pconv":
        return PartialConv(dim, n_div)
    if mixer in ("pat_ch", "pat_ch_se", "pat_ch_srm"):
        return PartialChannelAttention(dim, n_div, {"pat_ch": "gauss", "pat_ch_se": "se", "pat_ch_srm": "srm"}[mixer])
    if mixer == "pat_ch_full":
        return FullChannelAttention(dim, n_div)
    if mixer in ("pat_sf", "pat_sf_full"):
        return PartialSelfAttention(dim, n_div, num_heads, full=mixer == "pat_sf_full")
    if mixer in ("conv", "dwconv"):
        return DenseConv(dim, depthwise=mixer == "dwconv")
    raise ValueError(f"unknown mixer {mixer!r}")


class Block(nn.Module):
    """A PATNet block.

    Block v1 (convolutional mixers): ``x + DropPath(MLP(mixer(x)))``.
    Block v2 (self-attention mixers): ``x = x + mixer(x); x = x + DropPath(MLP(x))``.
    """

    def __init__(self, dim: int, mixer: str, spatial: str, n_div: int, mlp_ratio: float, act: str,
                 num_heads: int, drop_path: float = 0.0) -> None:
        super().__init__()
        self.v2 = mixer in ATTENTION_MIXERS
        self.mixer = build_mixer(dim, mixer, n_div, num_heads)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act, spatial)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.v2:
            x = x + self.mixer(x)
            return x + self.drop_path(self.mlp(x))
        return x + self.drop_path(self.mlp(self.mixer(x)))

    def deploy(self) -> BlockDeploy:
        # The mixer's trailing BN (if any) folds into the MLP's first 1x1 conv instead of staying an affine.
        return BlockDeploy(self.mixer.deploy(keep_output_affine=False), self.mlp.deploy(*self.mixer.output_affine()),
                           self.v2)


class BlockDeploy(nn.Module):
    def __init__(self, mixer: nn.Module, mlp: nn.Module, v2: bool) -> None:
        super().__init__()
        self.mixer, self.mlp, self.v2 = mixer, mlp, v2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.v2:
            x = x + self.mixer(x)
            return x + self.mlp(x)
        return x + self.mlp(self.mixer(x))

    def fast(self) -> nn.Module:
        """The fast form of this block (:class:`FastBlock`) where its mixer has one, else the block itself."""
        applies = getattr(self.mixer, "fast_mix_applies", None)
        if isinstance(self.mlp, MlpDeploy) and applies is not None and applies(self.v2):
            return FastBlock(self)
        return self


class FastBlock(nn.Module):
    """A deployed block with fewer memory passes, same function: the mixer's ``fast_mix`` gives the MLP's input
    and the residual (PAT_ch: ``[conv3x3(x1), x2 * g]`` and ``x``; PAT_sf: ``y = x + mixer(x)`` twice), and
    :class:`~patsearch.models.mlp.MlpFast` adds the MLP's output to the residual as it writes it."""

    def __init__(self, block: BlockDeploy) -> None:
        super().__init__()
        self.mixer = block.mixer
        self.tail = MlpFast(block.mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(*self.mixer.fast_mix(x))


def use_fused_kernels(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Run the trained form's memory-bound parts (Gaussian SE statistics, gate and BN of PAT_ch and the full
    channel attention; PAT_sp's gate) as :mod:`patsearch.kernels`' fused ops, or (``enabled=False``) as plain
    PyTorch again. Same function, in train and eval mode; Triton on CUDA, the ops' reference elsewhere. Returns
    ``model``. Deployment forms are unaffected (their fast form fuses differently: :class:`FastBlock`)."""
    for module in model.modules():
        if isinstance(module, (PartialChannelAttention, FullChannelAttention, Mlp)):
            module.fused_kernels = enabled
    return model


def build_layer(spec: LayerSpec, *, drop_path: float = 0.0) -> nn.Module:
    """One layer of a PATNet-family network, in trained form, from its :class:`LayerSpec`."""
    if spec.kind == "stem":
        return ConvBN(spec.in_dim, spec.out_dim, 4, 4)
    if spec.kind == "merge":
        return ConvBN(spec.in_dim, spec.out_dim, 2, 2)
    if spec.kind == "block":
        return Block(spec.in_dim, spec.mixer, spec.spatial, spec.n_div, spec.mlp_ratio, spec.act, spec.num_heads,
                     drop_path)
    if spec.kind == "head":
        return Head(spec.in_dim, spec.head_width, spec.num_classes, spec.act)
    raise ValueError(f"unknown layer kind {spec.kind!r}")


def init_weights(module: nn.Module) -> None:
    """Truncated normal (std 0.02) for conv and linear weights, zero biases."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)

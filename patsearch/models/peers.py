"""timm's FasterNet, the paper's main peer: its weights in our network, and its deployment forms, by surgery on
the timm module.

:func:`load_timm_fasternet_weights` copies a timm FasterNet's weights into its point of the PATNet family
(:data:`patsearch.arch.FASTERNET_POINTS`). :func:`fuse_fasternet` gives FasterNet the same eager deployment form
as torch.fx folding but keeps it an ordinary module, so that its own inference mode (``pconv_fw_type="slicing"``)
can run too; :func:`fasternet_fast` adds the generic GEMM-epilogue tricks PATNet's fast path uses
(:mod:`patsearch.models.fast_ops`), so that speed ratios stay fair.
"""
from __future__ import annotations

import copy
import re

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from patsearch.models.fast_ops import PatchifyConv, conv1x1_act, linear_act, tokens, untokens

__all__ = ["fasternet_fast", "fuse_fasternet", "is_fasternet", "load_timm_fasternet_weights"]


def is_fasternet(model: nn.Module) -> bool:
    return type(model).__name__ == "FasterNet"


# timm FasterNet state-dict key -> the PATNet module's key. Stage i > 0 of ours starts with its merging layer, so
# block j of timm's stage i is layer j + 1 there.
_BLOCK = r"stages\.(?P<stage>\d+)\.blocks\.(?P<block>\d+)\."
_FASTERNET_KEYS: tuple[tuple[str, str], ...] = (
    (r"patch_embed\.proj\.(?P<rest>.+)", "stem.conv.{rest}"),
    (r"patch_embed\.norm\.(?P<rest>.+)", "stem.bn.{rest}"),
    (r"stages\.(?P<stage>\d+)\.downsample\.reduction\.(?P<rest>.+)", "stages.{stage}.0.conv.{rest}"),
    (r"stages\.(?P<stage>\d+)\.downsample\.norm\.(?P<rest>.+)", "stages.{stage}.0.bn.{rest}"),
    (_BLOCK + r"spatial_mixing\.partial_conv3\.(?P<rest>.+)", "stages.{stage}.{layer}.mixer.conv.{rest}"),
    (_BLOCK + r"mlp\.0\.(?P<rest>.+)", "stages.{stage}.{layer}.mlp.fc1.{rest}"),
    (_BLOCK + r"mlp\.1\.(?P<rest>.+)", "stages.{stage}.{layer}.mlp.norm.{rest}"),
    (_BLOCK + r"mlp\.3\.(?P<rest>.+)", "stages.{stage}.{layer}.mlp.fc2.{rest}"),
    (r"conv_head\.(?P<rest>.+)", "head.proj.{rest}"),
    (r"classifier\.(?P<rest>.+)", "head.fc.{rest}"),
)


def _our_key(key: str) -> str:
    for pattern, target in _FASTERNET_KEYS:
        match = re.fullmatch(pattern, key)
        if match:
            groups = match.groupdict()
            if "block" in groups:
                groups["layer"] = str(int(groups["block"]) + (groups["stage"] != "0"))
            return target.format(**groups)
    raise ValueError(f"timm FasterNet key {key!r} has no counterpart in a PATNet-family network (layer scale "
                     "is not supported); build the timm model with its defaults, "
                     "e.g. timm.create_model('fasternet_t0')")


@torch.no_grad()
def load_timm_fasternet_weights(our_model: nn.Module, timm_model: nn.Module) -> nn.Module:
    """Copy a timm FasterNet's parameters and BN statistics into ``our_model``, the network built from its
    point of the family (``create_model(FASTERNET_POINTS[name])``, trained form), which then computes what the
    timm model computes. Raises ValueError if the two differ in structure or activation. Returns ``our_model``."""
    if not is_fasternet(timm_model):
        raise ValueError(f"expected a timm FasterNet, got {type(timm_model).__name__}")
    arch = getattr(our_model, "arch", None)
    if arch is None or getattr(our_model, "deployed", False):
        raise ValueError("expected a PATNet-family network in trained form, e.g. "
                         "create_model(FASTERNET_POINTS['fasternet_t0'])")
    # The activation is not in the state dict: compare it by name (nn.GELU / timm GELU, nn.ReLU, ...).
    timm_act = type(timm_model.act).__name__.lower()
    if timm_act != arch.act:
        raise ValueError(f"activation differs: timm FasterNet uses {timm_act}, the architecture {arch.act}")
    state = {_our_key(k): v for k, v in timm_model.state_dict().items()}
    ours = our_model.state_dict()
    missing, extra = sorted(set(ours) - set(state)), sorted(set(state) - set(ours))
    wrong = [k for k in state.keys() & ours.keys() if state[k].shape != ours[k].shape]
    if missing or extra or wrong:
        raise ValueError(f"structure differs from the timm FasterNet: missing {missing[:3]}, unexpected "
                         f"{extra[:3]}, shape mismatch {sorted(wrong)[:3]}; build ours from the matching "
                         "FASTERNET_POINTS entry (same num_classes)")
    our_model.load_state_dict(state)
    return our_model


@torch.no_grad()
def fuse_fasternet(model: nn.Module, pconv_forward: str | None = None) -> nn.Module:
    """An eval-mode copy of a timm FasterNet with every conv-BN pair folded (what torch.fx folding gives), kept
    as eager modules. ``pconv_forward`` switches the partial conv to ``"slicing"`` (FasterNet's inference mode:
    clone, then overwrite the first channels) or ``"split_cat"``."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        for conv_name, bn_name in (("proj", "norm"), ("reduction", "norm")):
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(module, bn_name, nn.Identity())
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if isinstance(module[i], nn.Conv2d) and isinstance(module[i + 1], nn.BatchNorm2d):
                    module[i] = fuse_conv_bn_eval(module[i], module[i + 1])
                    module[i + 1] = nn.Identity()
        if pconv_forward is not None and hasattr(module, "forward_slicing") and hasattr(module, "forward_split_cat"):
            module.forward = getattr(module, f"forward_{pconv_forward}")
    if any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        raise ValueError("fuse_fasternet: a BatchNorm was left unfolded; is this a timm FasterNet?")
    return model


class _FasterNetMlpFast(nn.Module):
    """FasterNet's MLP block (deployment form) with the generic GEMM tricks PATNet's fast path uses: on
    channels-last GPU-path tensors fc1 carries bias + ReLU in its epilogue and fc2 adds the shortcut in its own
    epilogue (``addmm`` with beta 1), so the block is conv3x3, the partial-conv copy and two GEMMs."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.spatial_mixing = block.spatial_mixing
        fc1, _, act, fc2 = block.mlp
        self.fc1, self.act, self.fc2 = fc1, act, fc2
        self.mlp = block.mlp
        if getattr(block, "layer_scale", None) is not None:
            raise ValueError("fasternet_fast: layer scale is not supported")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.spatial_mixing(x)
        t_y, t_x = tokens(y), tokens(x)
        if t_y is None or t_x is None:
            return x + self.fc2(conv1x1_act(y, self.fc1, self.act))
        if t_y.is_cuda and isinstance(self.act, nn.ReLU):
            h = tokens(conv1x1_act(y, self.fc1, self.act))
        else:
            h = linear_act(t_y, self.fc1.weight.flatten(1), self.fc1.bias, self.act)
        w2 = self.fc2.weight.flatten(1)
        out = torch.addmm(t_x, h, w2.t()) if self.fc2.bias is None else torch.addmm(t_x + self.fc2.bias, h, w2.t())
        return untokens(out, x)


@torch.no_grad()
def fasternet_fast(model: nn.Module, pconv_forward: str = "slicing") -> nn.Module:
    """:func:`fuse_fasternet` plus :class:`_FasterNetMlpFast` in every block: FasterNet given the same generic
    GEMM-epilogue tricks as PATNet's fast path, so that comparisons stay fair."""
    model = fuse_fasternet(model, pconv_forward)
    for module in model.modules():
        blocks = getattr(module, "blocks", None)
        if isinstance(blocks, nn.Sequential):
            for i, block in enumerate(blocks):
                if hasattr(block, "spatial_mixing") and hasattr(block, "mlp"):
                    blocks[i] = _FasterNetMlpFast(block)
    embed = getattr(model, "patch_embed", None)
    if embed is not None and isinstance(getattr(embed, "proj", None), nn.Conv2d):
        embed.proj = PatchifyConv(embed.proj)
    model.requires_grad_(False)
    model.fast_path = True
    return model

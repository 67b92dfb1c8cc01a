"""PATNet: the network built from an :class:`~patsearch.arch.ArchConfig`, its deployment form, and the timm
registry entries ``patnet_t0`` ... ``patnet_l``.

Paper: "Partial Convolution Meets Visual Attention" (Huang et al.). The exact reading of the architecture that
reproduces Table 6 is in the project's architecture spec; the blocks are in :mod:`patsearch.models.layers`.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from patsearch.arch import VARIANTS, ArchConfig, resolve_arch
from patsearch.models.layers import build_layer, init_weights

__all__ = ["PATNet"]


class PATNet(nn.Module):
    """A PATNet-family network: stem, four stages (merging before stages 2-4), classifier head."""

    def __init__(self, arch: ArchConfig | str, num_classes: int | None = None, in_chans: int = 3,
                 drop_path_rate: float | None = None, **kwargs: Any) -> None:
        super().__init__()
        overrides = {k: v for k, v in (("num_classes", num_classes), ("drop_path_rate", drop_path_rate))
                     if v is not None}
        arch = resolve_arch(arch, **overrides)
        self.arch = arch
        self.num_classes = arch.num_classes
        self.num_features = arch.widths[-1]
        self.head_hidden_size = arch.head_width
        self.deployed = False
        # Build from the layer list the profiler also keys on, so the two can never disagree.
        specs = arch.layers()
        stem_spec, head_spec = specs[0], specs[-1]
        if in_chans != stem_spec.in_dim:
            stem_spec = dataclasses.replace(stem_spec, in_dim=in_chans)
        self.stem = build_layer(stem_spec)
        rates = iter(arch.drop_path_rates())
        stages: list[list[nn.Module]] = [[]]
        for spec in specs[1:-1]:
            if spec.kind == "merge":
                stages.append([])
            stages[-1].append(build_layer(spec, drop_path=next(rates) if spec.kind == "block" else 0.0))
        self.stages = nn.Sequential(*(nn.Sequential(*layers) for layers in stages))
        self.head = build_layer(head_spec)
        self.apply(init_weights)

    # timm conventions
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.arch = self.arch.replace(num_classes=max(num_classes, 1))
        self.head.fc = nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.no_grad()
    def fuse(self) -> PATNet:
        """Switch to the deployment form in place: every BN folded, PAT_sp merged. Returns ``self``."""
        if self.deployed:
            return self
        self.eval()
        self.stem = self.stem.fuse()
        for stage in self.stages:
            for i, layer in enumerate(stage):
                stage[i] = layer.fuse()
        self.head = self.head.fuse()
        for p in self.parameters():
            p.requires_grad_(False)
        self.deployed = True
        return self

    reparameterize = fuse


def fuse_model(model: nn.Module) -> nn.Module:
    """A deployment copy of ``model`` in eval mode (the original is untouched).

    PATNet networks and single PATNet layers fuse by structure; other models (timm peers such as FasterNet) get
    torch.fx's conv-BN folding, so that comparisons are between deployment forms.
    """
    model = copy.deepcopy(model).eval()
    if isinstance(model, PATNet):
        return model.fuse()
    if hasattr(model, "fuse") and callable(model.fuse):
        fused = model.fuse()
        return fused[0] if isinstance(fused, tuple) else fused
    from torch.fx.experimental.optimization import fuse as fx_fuse

    return fx_fuse(model)


# --- timm registry ------------------------------------------------------------------------------------------


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7),
        "crop_pct": 0.9, "interpolation": "bicubic", "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stem.conv", "classifier": "head.fc", "paper_name": "Partial Convolution Meets Visual Attention",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({f"{name}.untrained": _cfg() for name in VARIANTS})


def _create_patnet(variant: str, pretrained: bool = False, **kwargs: Any) -> PATNet:
    if pretrained:
        raise ValueError(f"no pretrained weights are published for {variant}; train one with `patsearch train`")
    return build_model_with_cfg(PATNet, variant, pretrained, arch=VARIANTS[variant], **kwargs)


@register_model
def patnet_t0(pretrained: bool = False, **kwargs: Any) -> PATNet:
    return _create_patnet("patnet_t0", pretrained, **kwargs)


@register_model
def patnet_t1(pretrained: bool = False, **kwargs: Any) -> PATNet:
    return _create_patnet("patnet_t1", pretrained, **kwargs)


@register_model
def patnet_t2(pretrained: bool = False, **kwargs: Any) -> PATNet:
    return _create_patnet("patnet_t2", pretrained, **kwargs)


@register_model
def patnet_s(pretrained: bool = False, **kwargs: Any) -> PATNet:
    return _create_patnet("patnet_s", pretrained, **kwargs)


@register_model
def patnet_m(pretrained: bool = False, **kwargs: Any) -> PATNet:
    return _create_patnet("patnet_m", pretrained, **kwargs)


@register_model
def patnet_l(pretrained: bool = False, **kwargs: Any) -> PATNet:
    return _create_patnet("patnet_l", pretrained, **kwargs)

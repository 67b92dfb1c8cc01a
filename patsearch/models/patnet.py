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
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices

from patsearch.arch import VARIANTS, ArchConfig, resolve_arch
from patsearch.models.layers import build_layer, init_weights

__all__ = ["PATNet"]


class PATNet(nn.Module):
    """A PATNet-family network: stem, four stages (merging before stages 2-4), classifier head."""

    def __init__(self, arch: ArchConfig | str, num_classes: int | None = None, in_chans: int = 3,
                 drop_path_rate: float | None = None, **kwargs: Any) -> None:
        super().__init__()
        # timm's num_classes=0: no classifier, the model returns pooled (pre-logits) features
        overrides = {k: v for k, v in (("num_classes", num_classes or None), ("drop_path_rate", drop_path_rate))
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
        self.grad_checkpointing = False
        # timm's feature machinery (features_only=True, out_indices) taps each stage's output.
        self.feature_info = [dict(num_chs=width, reduction=2 ** (i + 2), module=f"stages.{i}")
                             for i, width in enumerate(arch.widths)]
        self.apply(init_weights)
        if num_classes == 0:
            self.reset_classifier(0)

    # timm conventions
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.arch = self.arch.replace(num_classes=max(num_classes, 1))
        self.head.fc = nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups for layer-wise lr decay: the stem, then each stage (coarse) or each layer of it."""
        return dict(stem=r"^stem", blocks=r"^stages\.(\d+)" if coarse else [
            (r"^stages\.(\d+)\.(\d+)", None),
            (r"^head", (99999,)),
        ])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def forward_intermediates(self, x: torch.Tensor, indices: int | list[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False
                              ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's backbone API: the outputs of the stages named by ``indices`` (the last n if an int, all if
        None), and unless ``intermediates_only`` the final feature map too. ``norm`` is accepted for timm
        compatibility (PATNet has no final norm)."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt {output_fmt!r} is not supported; PATNet's features are NCHW")
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        stages = self.stages[:max_index + 1] if stop_early else self.stages
        intermediates = []
        x = self.stem(x)
        for i, stage in enumerate(stages):
            x = self._run_stage(stage, x)
            if i in take_indices:
                intermediates.append(x)
        return intermediates if intermediates_only else (x, intermediates)

    def prune_intermediate_layers(self, indices: int | list[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop the stages after the last one ``indices`` takes (and the head); timm's feature getter calls it."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        self.stages = self.stages[:max_index + 1]
        if prune_head or max_index < len(self.feature_info) - 1:
            self.head = nn.Identity()
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
            self.num_classes = 0
        return take_indices

    def _run_stage(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(stage, x)
        return stage(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            for stage in self.stages:
                x = checkpoint_seq(stage, x)
            return x
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if isinstance(self.head, nn.Identity):  # pruned by prune_intermediate_layers: pooled features only
            return x.mean((2, 3))
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.no_grad()
    def deploy(self) -> PATNet:
        """Switch to the deployment form in place: every BN folded, PAT_sp merged. Returns ``self``."""
        if self.deployed:
            return self
        self.eval()
        self.stem = self.stem.deploy()
        for stage in self.stages:
            for i, layer in enumerate(stage):
                stage[i] = layer.deploy()
        self.head = self.head.deploy()
        for p in self.parameters():
            p.requires_grad_(False)
        self.deployed = True
        return self

    fuse = reparameterize = deploy


def _deploy_children(module: nn.Module) -> bool:
    """Replace, in place, every outermost submodule that has ``deploy()`` by its deployment form; whether any did."""
    found = False
    for name, child in module.named_children():
        if callable(getattr(child, "deploy", None)):
            setattr(module, name, child.deploy())
            found = True
        else:
            found = _deploy_children(child) or found
    return found


@torch.no_grad()
def fuse_model(model: nn.Module) -> nn.Module:
    """A frozen deployment copy of ``model`` in eval mode (the original is untouched), computing what ``model``
    computes in eval mode.

    Anything with ``deploy()`` (a PATNet, any PATNet layer) deploys by structure, as does any container of such
    layers (an ``nn.Sequential`` of blocks, a wrapper); other models (timm peers such as FasterNet) get
    torch.fx's conv-BN folding, so that comparisons are between deployment forms.
    """
    model = copy.deepcopy(model).eval()
    if callable(getattr(model, "deploy", None)):
        model = model.deploy()
    elif not _deploy_children(model):
        from torch.fx.experimental.optimization import fuse as fx_fuse

        model = fx_fuse(model)
    return model.eval().requires_grad_(False)


# --- timm registry ------------------------------------------------------------------------------------------


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7),
        "crop_pct": 0.9, "interpolation": "bicubic", "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stem.conv", "classifier": "head.fc", "paper_name": "Partial Convolution Meets Visual Attention",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({f"{name}.untrained": _cfg() for name in VARIANTS})


# Where timm's pretrained_cfg can point at weights (timm.models._builder's list, plus an in-memory state dict).
_WEIGHT_SOURCES = ("file", "url", "hf_hub_id", "hf_hub_filename", "state_dict")


def _create_patnet(variant: str, pretrained: bool = False, **kwargs: Any) -> PATNet:
    if pretrained:
        # No weights are published, but as for any timm model the caller may name some: pretrained_cfg_overlay=
        # dict(file="runs/t2/best.pt") (timm loads it with weights_only=True and takes a checkpoint's "model").
        given = {**dict(kwargs.get("pretrained_cfg") or {}), **dict(kwargs.get("pretrained_cfg_overlay") or {})}
        if not any(given.get(key) for key in _WEIGHT_SOURCES):
            raise ValueError(f"no pretrained weights are published for {variant}; train one with `patsearch train` "
                             "and pass pretrained_cfg_overlay=dict(file='runs/<name>/best.pt')")
    return build_model_with_cfg(PATNet, variant, pretrained, arch=VARIANTS[variant],
                                feature_cfg=dict(out_indices=(0, 1, 2, 3), flatten_sequential=True), **kwargs)


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

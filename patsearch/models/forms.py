"""The one vocabulary of model forms: what "form" means to counting, the profiler, bench, eval, export and the
speed scripts, and the builders of the fast form.

Each :class:`Form` is a name, a one-line description and a builder that turns a model (PATNet, one of its
layers, or a timm peer; trained form, the original untouched) into that form: ``trained``, ``table6`` (counting
only), ``fused`` (the deployment form; ``deploy`` is accepted for it, see :data:`ALIASES`), ``fast``,
``fast_kernels`` and ``slicing``. Users of a subset of the forms (counting knows ``table6``, the per-layer
profiler only :data:`LAYER_FORMS`) check names with :func:`get_form`, whose error lists the registry's names.

Not a form: the *fused kernels* (``use_fused_kernels``, ``patsearch train --fused-kernels``) run the trained form's
gates on :mod:`patsearch.kernels`' fused ops; the network and its function stay the trained form's.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from patsearch.errors import UserError
from patsearch.models.fast_ops import PatchifyConv
from patsearch.models.layers import BlockDeploy
from patsearch.models.mlp import MlpFast
from patsearch.models.patnet import PATNet, fuse_model
from patsearch.models.peers import fasternet_fast, fuse_fasternet, is_fasternet

__all__ = ["ALIASES", "BENCH_FORMS", "FORMS", "Form", "FormError", "LAYER_FORMS", "accelerate", "build_form",
           "canonical_form", "deployment_fast", "deployment_fast_kernels", "form_names", "get_form",
           "is_accelerated"]


class FormError(UserError, ValueError):
    """An unknown form name, or one the caller does not support."""


@dataclass(frozen=True)
class Form:
    name: str
    description: str
    build: Callable[[nn.Module], nn.Module]
    measurable: bool = True   # False: a counting convention, not a network to time


def _trained(model: nn.Module) -> nn.Module:
    return model.eval()


@torch.no_grad()
def accelerate(model: nn.Module, epilogue_kernels: bool = False) -> nn.Module:
    """A fast-path copy of a PATNet (trained or deployment form; the original is untouched), in eval mode: every
    block that has a fast form (:meth:`~patsearch.models.layers.BlockDeploy.fast`) in it, the stem as one GEMM.

    The result computes the same function as :func:`patsearch.models.fuse_model` (and so as the trained model in
    eval mode) up to floating-point rounding; it carries ``fast_path = True`` for provenance.
    ``epilogue_kernels``: PAT_sp blocks end in one Triton kernel (fc2 with the gate, its affine and the shortcut
    in the GEMM's epilogue; bf16/fp16, rows up to :data:`patsearch.kernels.FC2_GATE_MAX_CHANNELS` channels).
    """
    if not isinstance(model, PATNet):
        raise TypeError(f"accelerate() takes a PATNet, got {type(model).__name__}; use prepare_inference() for "
                        "other networks")
    model = copy.deepcopy(model).eval() if model.deployed else fuse_model(model)
    for stage in model.stages:
        for i, layer in enumerate(stage):
            if isinstance(layer, BlockDeploy):
                stage[i] = layer.fast()
    for module in model.modules():
        if isinstance(module, MlpFast):
            module.epilogue_kernel = epilogue_kernels
    if isinstance(model.stem, nn.Conv2d):
        model.stem = PatchifyConv(model.stem)
    model.requires_grad_(False)  # an inference form, like fuse(); also lets tracers run the out= kernels
    model.fast_path = True
    return model


def is_accelerated(model: nn.Module) -> bool:
    """Whether ``model`` is a fast form (:func:`accelerate`, :func:`~patsearch.models.peers.fasternet_fast`)."""
    return bool(getattr(model, "fast_path", False))


def deployment_fast(model: nn.Module) -> nn.Module:
    """The fast deployment form of any model: :func:`accelerate` for a PATNet,
    :func:`~patsearch.models.peers.fasternet_fast` for a timm FasterNet (the same generic tricks, so ratios
    stay fair), :func:`~patsearch.models.fuse_model` for anything else. The original is untouched."""
    if isinstance(model, PATNet):
        return accelerate(model)
    if is_fasternet(model):
        return fasternet_fast(model)
    return fuse_model(model)


def deployment_fast_kernels(model: nn.Module) -> nn.Module:
    """:func:`deployment_fast` with PATNet's PAT_sp blocks ending in one Triton kernel each
    (``accelerate(..., epilogue_kernels=True)``). FasterNet's fast form already adds its shortcut in fc2's GEMM
    epilogue and has no gate, so it is unchanged: the comparison stays fair."""
    if isinstance(model, PATNet):
        return accelerate(model, epilogue_kernels=True)
    return deployment_fast(model)


def _slicing(model: nn.Module) -> nn.Module:
    return fuse_fasternet(model, "slicing") if is_fasternet(model) else fuse_model(model)


_ALL = (
    Form("trained", "as built or trained, in eval mode (BNs and PAT_sp's z2 branch as separate layers)", _trained),
    Form("table6", "the trained form counted with the paper's Table 6 convention (PAT_sp's 1x1 conv and its BN "
         "merged into the MLP's second 1x1); counting only", _trained, measurable=False),
    Form("fused", "deployment form: every BN folded, PAT_sp merged (patsearch.models.fuse_model; torch.fx "
         "conv-BN folding for timm peers)", fuse_model),
    Form("fast", "the fused form's function with fewer memory passes: accelerate() for PATNet, the "
         "same generic tricks for FasterNet, fused for other peers", deployment_fast),
    Form("fast_kernels", "the fast form with PAT_sp's gate, its affine and the shortcut in fc2's GEMM epilogue "
         "(one Triton kernel per block; bf16/fp16 on GPUs); FasterNet: its fast form", deployment_fast_kernels),
    Form("slicing", "FasterNet's eager deployment form with its own inference-mode partial conv "
         "(peers.fuse_fasternet); fused for other networks", _slicing),
)
FORMS: dict[str, Form] = {f.name: f for f in _ALL}
# Other names for a form, accepted wherever a form is named (results and file names use the form's own name).
ALIASES = {"deploy": "fused"}
LAYER_FORMS = ("fused", "trained")  # the forms one layer is built in: what per-layer profile tables time
BENCH_FORMS = ("trained", "fused")  # what `patsearch bench` measures unless told


def form_names(measurable_only: bool = False) -> tuple[str, ...]:
    return tuple(name for name, f in FORMS.items() if f.measurable or not measurable_only)


def canonical_form(name: str) -> str:
    """The registry's own name for ``name`` (an alias of :data:`ALIASES` resolved; anything else as it is)."""
    return ALIASES.get(name, name) if isinstance(name, str) else name


def get_form(name: str, among: Sequence[str] | None = None, what: str = "form") -> Form:
    """The registered form ``name`` (or its alias); ``among`` restricts it to the forms a caller supports. The error
    names the choices (``what`` is how the caller spells the option, e.g. ``--forms``)."""
    allowed = tuple(among) if among is not None else tuple(FORMS)
    name = canonical_form(name)
    if name not in FORMS:
        raise FormError(f"{what}: unknown form {name!r}; choose from {', '.join(allowed)}")
    if name not in allowed:
        raise FormError(f"{what}: form {name!r} is not available here; choose from {', '.join(allowed)}")
    return FORMS[name]


def build_form(model: nn.Module, name: str) -> nn.Module:
    """``model`` in form ``name`` (a copy wherever the form changes anything)."""
    return get_form(name).build(model)

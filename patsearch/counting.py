"""Parameter and FLOP counts (fvcore; one multiply-add = one FLOP, batch 1), with thop as a cross-check.

Any form of :mod:`patsearch.models.forms` is counted; the ones reports use:

- ``trained``: the network as trained, in eval mode (BN and LayerNorm counted as fvcore counts them).
- ``table6``: the paper's convention for Table 6: the trained form with PAT_sp's 1x1 conv and its BN merged into
  the MLP's second 1x1 (which then costs nothing extra).
- ``fused``: the deployment form (:func:`patsearch.models.fuse_model`): every BN folded, PAT_sp merged.
"""
from __future__ import annotations

import logging
import warnings
from typing import Any

import torch
import torch.nn as nn

from patsearch.models.forms import build_form, form_names, get_form

FORMS = form_names()  # every registered form can be counted
# Modules that the PAT_sp merge removes (their rows already exist in the MLP's second 1x1 conv).
_SP_MERGED_SUFFIXES = (".mlp.sp_conv", ".mlp.sp_norm")


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def _sdpa_flops(inputs: list[Any], outputs: list[Any]) -> int:
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(t) for t in inputs[:3])
    batch_heads = 1
    for dim in q[:-2]:
        batch_heads *= dim
    n, d, m, dv = q[-2], q[-1], k[-2], v[-1]
    return batch_heads * n * m * (d + dv)  # QK^T and (attention)V


def flop_analysis(model: nn.Module, resolution: int | tuple[int, int] = 224):
    """An fvcore ``FlopCountAnalysis`` of ``model`` at batch 1, with fused attention counted as its two matmuls."""
    with warnings.catch_warnings():  # fvcore's import touches deprecated torch.jit APIs
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = torch.zeros(1, 3, h, w, device=device, dtype=dtype)
    analysis = FlopCountAnalysis(model, x)
    analysis.set_op_handle("aten::scaled_dot_product_attention", _sdpa_flops)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return analysis


def _quiet_total(analysis) -> int:
    # fvcore traces with torch.jit, which warns loudly on every call; the counts are what we want.
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return int(analysis.total())


def _in_form(model: nn.Module, form: str) -> nn.Module:
    """``model`` in ``form`` for counting; a model that is already deployed counts as its fused form."""
    if form == "fused" and getattr(model, "deployed", False):
        return model
    return build_form(model, form)


def count_flops(model: nn.Module, resolution: int | tuple[int, int] = 224, *, form: str = "trained") -> int:
    """fvcore FLOPs of one image at ``resolution`` for ``form`` in :data:`FORMS`.

    ``form="fused"`` counts a deployment copy (the model itself is not changed); a model that is already fused is
    counted as it is.
    """
    get_form(form)
    was_training = model.training
    model.eval()
    try:
        model = _in_form(model, form)
        analysis = flop_analysis(model, resolution)
        total = _quiet_total(analysis)
        if form == "table6":
            by_module = analysis.by_module()
            total -= sum(v for k, v in by_module.items() if k.endswith(_SP_MERGED_SUFFIXES))
        return total
    finally:
        model.train(was_training)


def flops_by_stage(model: nn.Module, resolution: int | tuple[int, int] = 224, *,
                   form: str = "trained") -> dict[str, int]:
    """FLOPs of the stem, each stage (merging layer included) and the head."""
    get_form(form)
    model = _in_form(model.eval(), form)
    analysis = flop_analysis(model, resolution)
    _quiet_total(analysis)
    by_module = analysis.by_module()
    out = {"stem": by_module.get("stem", 0)}
    for i in range(len(model.stages)):
        stage_total = by_module.get(f"stages.{i}", 0)
        if form == "table6":
            stage_total -= sum(v for k, v in by_module.items()
                               if k.startswith(f"stages.{i}.") and k.endswith(_SP_MERGED_SUFFIXES))
        out[f"stage{i + 1}"] = stage_total
    out["head"] = by_module.get("head", 0)
    return out


def params_by_stage(model: nn.Module) -> dict[str, int]:
    out = {"stem": count_params(model.stem)}
    for i, stage in enumerate(model.stages):
        out[f"stage{i + 1}"] = count_params(stage)
    out["head"] = count_params(model.head)
    return out


def count_macs_thop(model: nn.Module, resolution: int | tuple[int, int] = 224) -> int:
    """thop's MAC count, as an independent cross-check of fvcore (thop also counts BN and activations)."""
    import copy

    from thop import profile

    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    model = copy.deepcopy(model).eval()  # thop attaches counters to modules; keep the caller's model clean
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        macs, _ = profile(model, inputs=(torch.zeros(1, 3, h, w),), verbose=False)
    return int(macs)


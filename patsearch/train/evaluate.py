"""Evaluation: top-1 / top-5 / loss over a validation set, exact across DDP ranks; and ``patsearch eval``."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from patsearch.train.distributed import DistContext, all_reduce_sum
from patsearch.train.eval_options import EvalOptions


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, normalize: Any, ctx: DistContext,
             dtype: torch.dtype | None = None) -> dict[str, float]:
    """Top-1, top-5 (top-k for k = min(5, classes)) and mean cross-entropy, summed over all ranks' shards."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=ctx.device)  # correct1, correct5, loss sum, samples
    autocast = torch.autocast(ctx.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    for images, labels in loader:
        x = normalize(images)
        y = labels.to(ctx.device, non_blocking=True)
        with autocast:
            logits = model(x)
        logits = logits.float()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hit = top.eq(y[:, None])
        totals[0] += hit[:, 0].sum()
        totals[1] += hit.any(dim=1).sum()
        totals[2] += F.cross_entropy(logits, y, reduction="sum").double()
        totals[3] += y.numel()
    totals = all_reduce_sum(ctx, totals).cpu()
    model.train(was_training)
    n = max(totals[3].item(), 1.0)
    return {"top1": 100.0 * totals[0].item() / n, "top5": 100.0 * totals[1].item() / n,
            "val_loss": totals[2].item() / n, "val_samples": int(totals[3].item())}


def evaluate_checkpoint(checkpoint: str | os.PathLike | EvalOptions, **options: Any) -> dict[str, Any]:
    """Accuracy of a trained checkpoint on ``data``'s val split (or the built-in synthetic val split).

    ``checkpoint`` is an :class:`EvalOptions`, or its path with the other fields as keywords. ``arch`` defaults to
    the one stored in the checkpoint; ``form`` is any form of the registry (:mod:`patsearch.models.forms`:
    ``trained``, ``fused``, ``fast``, ...), ``fused=True`` is ``form="fused"``. Without ``data``, the synthetic
    validation split the run trained with (its size and seed are in the checkpoint).
    """
    from patsearch.data.datasets import make_datasets
    from patsearch.data.transforms import DeviceNormalizer, TransformedDataset, collate_uint8, eval_transform
    from patsearch.models.forms import build_form
    from patsearch.train import checkpoint as ckpt
    from patsearch.train.distributed import init_distributed, shard_indices
    from patsearch.train.engine import amp_dtype, build_model
    from patsearch.train.recipe import Recipe

    # validated before any data is read
    opts = checkpoint.replace(**options) if isinstance(checkpoint, EvalOptions) else EvalOptions(checkpoint, **options)
    checkpoint, arch, data, form, workers = opts.checkpoint, opts.arch, opts.data, opts.form, opts.workers
    state = ckpt.load(checkpoint)
    stored_arch = state.get("arch")
    if arch is None:
        if stored_arch is None:
            raise ckpt.CheckpointError(f"checkpoint {checkpoint} does not record its architecture; pass --arch")
        arch = stored_arch.get("timm") if "timm" in stored_arch else stored_arch
    recipe = Recipe.from_dict(state["recipe"]) if isinstance(state.get("recipe"), dict) else Recipe()
    if opts.resolution is not None:
        recipe = recipe.replace(test_resolution=opts.resolution)
    ctx = init_distributed(opts.device)
    run = state.get("run", {}) if isinstance(state.get("run"), dict) else {}
    if data is None:
        stored = run.get("synthetic") or [0, 2000]
        n_val = opts.synthetic_val if opts.synthetic_val is not None else int(stored[1])
        _, val_base = make_datasets(None, synthetic=(1, n_val), seed=int(run.get("seed", 0)))
    else:  # only the val split: no need to read (or decode) the training set
        from patsearch.data.folder import ImageFolderDataset, class_folders, scan_split, split_dir

        classes = state.get("classes")
        if classes:  # the folder must hold the classes the checkpoint was trained on
            val_dir = split_dir(data, "val")
            unknown = sorted(set(class_folders(val_dir)) - set(classes))
            if unknown:
                raise ckpt.CheckpointError(
                    f"checkpoint {checkpoint} and --data {data} do not match: {val_dir} has class folder(s) "
                    f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''} the checkpoint was not trained "
                    f"on (it knows {len(classes)}: {', '.join(list(classes)[:5])}{' ...' if len(classes) > 5 else ''}"
                    "); evaluate it on the data it was trained with, or pass the checkpoint trained on this folder")
        else:
            classes = scan_split(split_dir(data, "train"))[0]
        val_base = ImageFolderDataset(data, "val", classes=list(classes), cache=opts.cache, workers=workers or 4)
    num_classes = len(val_base.classes)
    model = build_model(arch, num_classes)
    ckpt.load_model_weights(model, checkpoint)
    model = build_form(model.eval(), form).to(ctx.device).eval()
    val = TransformedDataset(val_base, eval_transform(recipe))
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(val, shard_indices(len(val), ctx)),
                                         batch_size=opts.batch_size, num_workers=workers or 0,
                                         collate_fn=collate_uint8,
                                         pin_memory=ctx.device.type == "cuda")
    metrics = evaluate(model, loader, DeviceNormalizer(ctx.device), ctx, amp_dtype(ctx.device, opts.amp))
    metrics.update(checkpoint=str(checkpoint), form=form, fused=form == "fused", resolution=recipe.test_resolution,
                   epoch=state.get("epoch"))
    return metrics

"""Run under torchrun: one DDP step of the tiny model on this rank's shard; rank 0 saves the averaged gradients.

Used by test_train_ddp.py. The model is put in eval mode: BatchNorm's batch statistics are per process (SyncBN needs
GPUs) and the attention's dropout draws per process; gradients still flow, and everything under test (sampler
sharding, DDP gradient averaging, the training step) is the trainer's own code.
"""
import sys

import torch
from train_helpers import TINY_ARCH

from patsearch.data.datasets import make_datasets
from patsearch.data.transforms import DeviceNormalizer, TransformedDataset, collate_uint8, train_transform
from patsearch.train.distributed import ShardedBatchSampler, cleanup, init_distributed, wrap_ddp
from patsearch.train.engine import TrainStep, build_criterion, build_model
from patsearch.train.recipe import load_recipe

GLOBAL_BATCH = 16


def one_step_gradients(ctx) -> dict[str, torch.Tensor]:
    recipe = load_recipe("proxy")
    train_base, _ = make_datasets(None, synthetic=(64, 16))
    data = TransformedDataset(train_base, train_transform(recipe, 32))
    sampler = ShardedBatchSampler(len(data), GLOBAL_BATCH // ctx.world_size, rank=ctx.rank,
                                  world_size=ctx.world_size, seed=3)
    images, labels = collate_uint8([data[item] for item in next(iter(sampler))])
    torch.manual_seed(0)
    model = build_model(TINY_ARCH, 10)
    model.eval()
    wrapped = wrap_ddp(model, ctx)   # the trainer's own wrapping
    criterion, _ = build_criterion(recipe, 10)
    step = TrainStep(wrapped, torch.optim.SGD(model.parameters(), lr=0.0), criterion, ctx.device)
    step(DeviceNormalizer(ctx.device)(images), labels)
    return {name: p.grad.clone() for name, p in model.named_parameters()}


if __name__ == "__main__":
    ctx = init_distributed("cpu")
    grads = one_step_gradients(ctx)
    if ctx.is_main:
        torch.save(grads, sys.argv[1])
    cleanup(ctx)

"""Distributed data parallel plumbing: process group from torchrun's environment, sharded deterministic sampling,
metric reduction.

Launch with ``torchrun --nproc_per_node N -m patsearch train ...``: each process reads RANK, WORLD_SIZE and
LOCAL_RANK, joins a NCCL group on GPUs or a gloo group on CPUs, and takes ``batch_size / N`` of every global batch.
Multi-node runs use torchrun's rendezvous (``--nnodes``, ``--rdzv-endpoint``) and need nothing else here.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from patsearch.errors import UserError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


DEVICE_CHOICES = ("auto", "cpu", "cuda")


def visible_gpu(index: int | str) -> str:
    """What GPU ``index`` (counted among the GPUs this process sees) is under an inherited ``CUDA_VISIBLE_DEVICES``:
    under ``CUDA_VISIBLE_DEVICES=1``, index 0 is GPU 1, not GPU 0 (the index itself when nothing is inherited)."""
    inherited = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    i = int(index)
    return inherited[i] if i < len(inherited) else str(i)


def pin_visible_gpu(index: int | str) -> str:
    """Make GPU ``index`` (see :func:`visible_gpu`) the only one this process sees, before CUDA starts. Returns
    the value set."""
    value = visible_gpu(index)
    os.environ["CUDA_VISIBLE_DEVICES"] = value
    return value


def check_device_name(device: str, flag: str = "--device") -> str:
    """The normalised name (``auto``, ``cpu``, ``cuda`` or ``cuda:N``), or a one-line error for anything else."""
    text = str(device).strip().lower()
    if text in DEVICE_CHOICES or re.fullmatch(r"cuda:\d+", text):
        return text
    raise UserError(f"{flag} must be auto, cpu, cuda or cuda:N, got {device!r}")


def resolve_device(device: str | torch.device = "auto", local_rank: int = 0, *, flag: str = "--device") -> torch.device:
    """The one place a device name becomes a device: ``auto`` is this process's GPU when there is one, else the
    CPU; ``cuda`` without a visible GPU is a one-line error, not a crash at the first tensor."""
    if isinstance(device, torch.device):
        return device
    text = check_device_name(device, flag)
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError(f"{flag} {text}: no CUDA GPU is visible to PyTorch on this machine; use {flag} auto "
                        f"(the GPU when there is one) or {flag} cpu")
    index = local_rank if text == "cuda" else int(text.split(":")[1])
    if index >= torch.cuda.device_count():
        raise UserError(f"{flag} {text}: this machine shows {torch.cuda.device_count()} GPU(s) (cuda:0 .. "
                        f"cuda:{torch.cuda.device_count() - 1}); pick one of those")
    return torch.device("cuda", index)


def init_distributed(device: str | torch.device = "auto") -> DistContext:
    """Join the process group torchrun set up (NCCL on GPUs, gloo on CPUs); a plain process gets world size 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world_size > 1:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            backend = "nccl" if dev.type == "cuda" else "gloo"
            kwargs = {"device_id": dev} if dev.type == "cuda" else {}
            dist.init_process_group(backend=backend, **kwargs)
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def wrap_ddp(model: torch.nn.Module, ctx: DistContext) -> torch.nn.Module:
    """``model`` under DistributedDataParallel when ``ctx`` runs several processes, else ``model`` itself.

    DDP may warn once that "grad strides do not match bucket view strides" for a channels-last 1x1 conv weight:
    autograd's gradient is contiguous, the same bytes with other strides in the size-1 dims. It costs nothing here:
    without ``gradient_as_bucket_view`` every gradient is copied into its bucket each step anyway, and with it the
    ``set_to_none`` zeroing of the step would make the gradient anew each step all the same.
    """
    if not ctx.enabled:
        return model
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)


def cleanup(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(ctx: DistContext, values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (a no-op in one process)."""
    if ctx.enabled:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_gather_objects(ctx: DistContext, obj: object) -> list:
    if not ctx.enabled:
        return [obj]
    out: list = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(ctx: DistContext, obj: object) -> object:
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_buffers(ctx: DistContext, model: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank; each rank's own batches drift them."""
    if ctx.enabled:
        for buf in model.buffers():
            dist.broadcast(buf, src=0)


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one sample's augmentation in one epoch, identical on every rank and worker."""
    digest = hashlib.blake2b(f"{seed}/{epoch}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class ShardedBatchSampler:
    """Deterministic, resumable batches for one rank of a data-parallel run.

    Each epoch draws one permutation (from ``seed`` and the epoch) and cuts it into global batches of
    ``batch_size * world_size``; rank ``r`` takes the ``r``-th slice of every global batch, so N ranks together see
    exactly the batches one process with the whole batch would. The incomplete last global batch is dropped.
    Items are ``(index, sample_seed)`` so augmentation does not depend on worker state. ``start_batch`` skips the
    batches a resumed run has already trained on.
    """

    def __init__(self, num_samples: int, batch_size: int, *, rank: int = 0, world_size: int = 1, seed: int = 0,
                 shuffle: bool = True) -> None:
        if batch_size * world_size > num_samples:
            raise ValueError(f"global batch {batch_size * world_size} is larger than the dataset "
                             f"({num_samples} samples)")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def __len__(self) -> int:
        return self.num_samples // (self.batch_size * self.world_size) - self.start_batch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.num_samples, generator=gen).tolist()
        else:
            order = list(range(self.num_samples))
        global_batch = self.batch_size * self.world_size
        for b in range(self.start_batch, self.num_samples // global_batch):
            first = b * global_batch + self.rank * self.batch_size
            yield [(i, sample_seed(self.seed, self.epoch, i)) for i in order[first:first + self.batch_size]]


def shard_indices(num_samples: int, ctx: DistContext) -> list[int]:
    """Evaluation shard: every sample exactly once over all ranks (no padding, so reduced metrics are exact)."""
    return list(range(ctx.rank, num_samples, ctx.world_size))

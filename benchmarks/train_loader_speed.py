"""Images per second the trainer's data pipeline delivers (no model): is a training run loader-bound?

    python benchmarks/train_loader_speed.py --data CIFAR10_DIR --recipe patnet_t0 --resolution 64 --batch-size 512 --workers 12

Builds the training loader exactly as `patsearch.train.train` does (timm transforms, per-sample seeds, uint8
collation, pinned memory) and times batches after a warm-up, including the host-to-device copy when a GPU is present.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from patsearch.data.transforms import DeviceNormalizer, TransformedDataset, collate_uint8, train_transform  # noqa: E402
from patsearch.train.distributed import ShardedBatchSampler, resolve_device  # noqa: E402
from patsearch.train.loop import make_datasets  # noqa: E402
from patsearch.train.recipe import load_recipe  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--recipe", default="patnet_t0")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--workers", type=int, default=12)
    p.add_argument("--batches", type=int, default=60)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    recipe = load_recipe(args.recipe)
    t0 = time.perf_counter()
    train_base, _ = make_datasets(args.data, workers=args.workers)
    setup_s = time.perf_counter() - t0
    device = resolve_device("auto")
    sampler = ShardedBatchSampler(len(train_base), args.batch_size)
    loader = torch.utils.data.DataLoader(TransformedDataset(train_base, train_transform(recipe, args.resolution)),
                                         batch_sampler=sampler, num_workers=args.workers, collate_fn=collate_uint8,
                                         pin_memory=device.type == "cuda", persistent_workers=True, prefetch_factor=4)
    normalize = DeviceNormalizer(device, channels_last=True)
    warm = 10
    for i, (images, _) in enumerate(loader):
        normalize(images)
        if i == warm - 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        if i == warm + args.batches - 1:
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    img_s = args.batches * args.batch_size / (time.perf_counter() - start)
    result = {**vars(args), "img_s": img_s, "decode_setup_s": setup_s, "in_memory": getattr(train_base, "in_memory", None),
              "cpus": os.cpu_count()}
    print(json.dumps(result))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()

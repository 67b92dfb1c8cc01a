"""GPU check: PATNet-T0/T1 learn under bf16 autocast as in float32, and a compiled training step
equals the eager one.

    python benchmarks/bf16_check.py --data DIR --out OUT [--train-images 10000 --epochs 2]

DIR is an ImageFolder root with train/ and test/ (CIFAR-10 JPEGs). Writes OUT/bf16_check.json:
``learning``: per (model, precision) train loss per epoch and test top-1; ``compile``: max relative error of a
compiled (Inductor, fallback_random) vs eager train-mode step (output and gradients, float32, batch 4, 64 px),
the number of Dynamo compiles over three resolutions, and whether a compiled bf16 step ran. Expected: bf16 top-1
within a few points of float32 and well above 10%; compile errors <= 1e-4; compiles <= 2. About 1-2 min on an H200.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from patsearch.models import create_model  # noqa: E402

MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)


def load_split(root: Path, limit: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A class-balanced subset of an ImageFolder split as uint8 (N, 3, 32, 32) and labels, on ``device``."""
    from torchvision.datasets import ImageFolder
    from torchvision.transforms.functional import pil_to_tensor

    folder = ImageFolder(str(root))
    per_class = math.ceil(limit / len(folder.classes))
    seen: dict[int, int] = {}
    keep = []
    for i, (_, label) in enumerate(folder.samples):
        if seen.get(label, 0) < per_class:
            seen[label] = seen.get(label, 0) + 1
            keep.append(i)
    subset = torch.utils.data.Subset(folder, keep)
    loader = torch.utils.data.DataLoader(subset, batch_size=500, num_workers=min(8, os.cpu_count() or 1),
                                         collate_fn=lambda b: (torch.stack([pil_to_tensor(im.resize((32, 32)))
                                                                            for im, _ in b]),
                                                               torch.tensor([y for _, y in b])))
    xs, ys = zip(*loader)
    return torch.cat(xs).to(device), torch.cat(ys).to(device)


def normalise(x: torch.Tensor) -> torch.Tensor:
    return (x.float() / 255 - MEAN.to(x.device)) / STD.to(x.device)


def train_one(name: str, bf16: bool, data: dict, epochs: int, batch: int, device: str) -> dict:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10).to(device).to(memory_format=torch.channels_last)
    steps = epochs * (len(data["train_y"]) // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3 * batch / 256, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=opt.param_groups[0]["lr"], total_steps=steps,
                                                pct_start=0.15)
    losses = []
    start = time.time()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(data["train_y"]), device=device)
        total, count = 0.0, 0
        for i in range(0, len(perm) - batch + 1, batch):
            idx = perm[i:i + batch]
            x = normalise(data["train_x"][idx]).contiguous(memory_format=torch.channels_last)
            flip = torch.rand(len(idx), device=device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x), data["train_y"][idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, count = total + loss.item(), count + 1
        losses.append(total / count)
    model.eval()
    correct = 0
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, len(data["test_y"]), 1000):
            x = normalise(data["test_x"][i:i + 1000]).contiguous(memory_format=torch.channels_last)
            correct += (model(x).argmax(1) == data["test_y"][i:i + 1000]).sum().item()
    return {"train_loss": losses, "top1": 100.0 * correct / len(data["test_y"]), "seconds": time.time() - start,
            "finite": all(math.isfinite(v) for v in losses)}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / a.float().abs().max().clamp_min(1e-30)).item()


def compile_check(device: str) -> dict:
    import torch._inductor.config as inductor_config

    inductor_config.fallback_random = True  # Inductor's own RNG differs from eager's: make dropout comparable
    torch.manual_seed(0)
    eager = create_model("patnet_t0", num_classes=10).to(device).train()
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model)
    x = torch.randn(4, 3, 64, 64, device=device)
    out = {}
    for step in range(2):
        torch.manual_seed(1 + step)
        a = eager(x)
        a.square().mean().backward()
        torch.manual_seed(1 + step)
        b = compiled(x)
        b.square().mean().backward()
        out[f"step{step}_output_rel"] = rel(a, b)
        out[f"step{step}_grad_rel_max"] = max(rel(p.grad, q.grad) for p, q in zip(eager.parameters(),
                                                                                  compiled_model.parameters())
                                              if p.grad is not None and p.grad.abs().max() > 0)
    # Multi-scale: three resolutions, counted compiles (automatic dynamic shapes after the first change).
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("inductor")
    model = create_model("patnet_t0", num_classes=10).to(device).train()
    fn = torch.compile(model, backend=counter)
    for res in (128, 160, 192):
        with torch.autocast(device, dtype=torch.bfloat16):
            fn(torch.randn(8, 3, res, res, device=device)).float().mean().backward()
    out["compiles_over_3_resolutions"] = counter.frame_count
    out["compiled_bf16_train_step_ok"] = True
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="ImageFolder root with train/ and test/")
    parser.add_argument("--out", type=Path, required=True, help="directory for bf16_check.json")
    parser.add_argument("--train-images", type=int, default=10000)
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--models", default="patnet_t0,patnet_t1")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile check (CPU smoke runs)")
    args = parser.parse_args()
    for split in ("train", "test"):
        if not (args.data / split).is_dir():
            sys.exit(f"error: {args.data / split} is not a directory; pass --data with train/ and test/ inside")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    train_x, train_y = load_split(args.data / "train", args.train_images, device)
    test_x, test_y = load_split(args.data / "test", args.test_images, device)
    data = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
    result: dict = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                    "torch": torch.__version__, "load_seconds": time.time() - t0, "args": {
                        k: str(v) for k, v in vars(args).items()}, "learning": {}}
    for name in args.models.split(","):
        for precision in ("bf16", "float32"):
            r = train_one(name, precision == "bf16", data, args.epochs, args.batch, device)
            result["learning"][f"{name}/{precision}"] = r
            print(name, precision, r, flush=True)
    try:
        result["compile"] = {"skipped": True} if args.no_compile else compile_check(device)
    except Exception as exc:  # record the failure instead of losing the learning results
        result["compile"] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
    print(result["compile"], flush=True)
    tmp = args.out / "bf16_check.json.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(args.out / "bf16_check.json")


if __name__ == "__main__":
    main()

"""Like-for-like CIFAR-10 training of several architectures with one recipe, resolution and epoch count (issue 4):
the paper's PATNet-vs-FasterNet claim in miniature. Writes a JSON of every epoch's metrics and one PNG of the curves.

    python benchmarks/train_cifar.py --data CIFAR10_DIR --archs patnet_t0 fasternet_t0 --recipe patnet_t0 \
        --resolution 64 --epochs 30 --batch-size 512 --out-json cifar.json --out-png cifar.png
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from patsearch.train import train  # noqa: E402


def plot(results: dict[str, dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_top1) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (arch, res) in enumerate(results.items()):
        epochs = [m["epoch"] for m in res["history"]]
        color = f"C{i}"
        ax_loss.plot(epochs, [m["train_loss"] for m in res["history"]], color=color, label=f"{arch} train")
        ax_loss.plot(epochs, [m["val_loss"] for m in res["history"]], "--", color=color, label=f"{arch} val")
        ax_top1.plot(epochs, [m["top1"] for m in res["history"]], color=color,
                     label=f"{arch} ({res['best_top1']:.2f}% best)")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_top1.set(xlabel="epoch", ylabel="top-1 (%)", title="validation top-1")
    for ax in (ax_loss, ax_top1):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def fit_epochs(args: argparse.Namespace, probe_steps: int = 40) -> int:
    """Time ``probe_steps`` steps of the first model (same settings) and pick the epoch count that fits the budget."""
    stamps: list[float] = []
    t0 = time.perf_counter()
    res = train(args.archs[0], args.recipe, data=args.data, epochs=args.epochs, batch_size=args.batch_size,
                resolution=args.resolution, device=args.device, workers=args.workers, max_steps=probe_steps,
                progress=False, tensorboard=False, on_step_end=lambda s, loss: stamps.append(time.perf_counter()))
    probe_wall = time.perf_counter() - t0
    step_s = (stamps[-1] - stamps[9]) / (len(stamps) - 10)
    steps_per_epoch = res["run"]["steps_per_epoch"]
    setup_s = probe_wall - (stamps[-1] - stamps[0])  # data decode, workers, evaluation of the probe
    epoch_s = 1.15 * steps_per_epoch * step_s + 0.25 * steps_per_epoch * step_s  # + evaluation (~1/4 of a train epoch)
    per_model = (args.time_budget - probe_wall) / len(args.archs) - setup_s
    epochs = max(1, min(args.epochs, int(per_model / epoch_s)))
    print(f"probe: {step_s * 1e3:.1f} ms/step, ~{epoch_s:.1f} s/epoch, setup {setup_s:.0f} s -> {epochs} epochs "
          f"per model", flush=True)
    return epochs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--archs", nargs="+", default=["patnet_t0", "fasternet_t0"])
    p.add_argument("--recipe", default="patnet_t0")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--max-steps", type=int, default=None, help="(dry runs) stop after this many steps")
    p.add_argument("--time-budget", type=float, default=None,
                   help="seconds for all models together: a short probe of the first model sets one epoch count "
                        "for all of them (at most --epochs) that fits")
    p.add_argument("--out-json", required=True)
    p.add_argument("--out-png", required=True)
    args = p.parse_args()
    results: dict[str, dict] = {}
    if args.time_budget:
        args.epochs = fit_epochs(args)
    for arch in args.archs:
        t0 = time.perf_counter()
        res = train(arch, args.recipe, data=args.data, epochs=args.epochs, batch_size=args.batch_size,
                    resolution=args.resolution, device=args.device, workers=args.workers, max_steps=args.max_steps,
                    progress=False, tensorboard=False,
                    on_epoch_end=lambda e, m, a=arch: print(f"{a} epoch {e}: loss {m['train_loss']:.3f} "
                                                            f"top1 {m.get('top1', float('nan')):.2f} "
                                                            f"{m['img_s']:.0f} img/s", flush=True))
        res["wall_s"] = time.perf_counter() - t0
        results[arch] = res
        with open(args.out_json, "w") as fh:  # after every model, so a cut-off run still reports
            json.dump({"args": vars(args), "results": results}, fh, indent=1)
        plot(results, args.out_png, f"CIFAR-10, recipe {args.recipe}, {args.resolution}px, {args.epochs} epochs, "
                                    f"batch {args.batch_size}")
    for arch, res in results.items():
        print(f"{arch}: best top-1 {res['best_top1']:.2f}%, final {res['final'].get('top1', float('nan')):.2f}%, "
              f"{res['wall_s']:.0f} s")


if __name__ == "__main__":
    main()

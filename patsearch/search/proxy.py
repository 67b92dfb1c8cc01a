"""Proxy training of search candidates: the full trainer (:func:`patsearch.train.train`) with a short recipe.

There is no second training loop: :func:`make_proxy_runner` returns ``run_proxy(arch, on_epoch_end)`` which calls
the trainer in-process (writing nothing but a re-training's checkpoints) with the ``proxy`` recipe, a few epochs
at a low resolution, on the built-in synthetic set or a class-balanced subset of an ImageFolder (``--data``), and
forwards each epoch's validation top-1 (as a fraction) to ``on_epoch_end(epoch, top1)``, which may raise to stop
the run (pruning).

The ``proxy`` recipe takes the trainer's fast path: the data is decoded once into a uint8 tensor file under
``subset_dir`` (``runs/.proxy-data``), shared by every candidate and worker process, and lives on the device.
``device="auto"`` trains on the GPU when there is one; :func:`parse_gpus` turns ``--gpus`` into the GPUs that
get one worker process each (see :func:`patsearch.search.gpu_workers.worker_gpus`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patsearch.arch import ArchConfig
from patsearch.config import check_fields
from patsearch.errors import UserError

# The proxy recipes (patsearch/recipes/): ``proxy`` on a GPU, ``proxy_cpu`` on a CPU, each stating its epochs,
# resolution, batch and lr; their measurements are in docs/BENCHMARKS.md.
PROXY_RECIPES = {"cuda": "proxy", "cpu": "proxy_cpu"}
DEFAULT_SYNTHETIC = (2000, 400)


@dataclass(frozen=True)
class ProxySettings:
    """How candidates are scored. ``data=None`` uses the trainer's built-in synthetic set."""

    data: str | None = None
    epochs: int = 4
    resolution: int = 32
    recipe: str | None = None  # None: the device's proxy recipe (PROXY_RECIPES)
    batch_size: int | None = None  # None: the recipe's
    lr: float | None = None  # None: the recipe's, scaled from its batch to batch_size
    train_samples: int | None = None  # synthetic: set size; folder: class-balanced subset (None: all)
    val_samples: int | None = None
    # Folder data: validate on this many images held out of the training split (class-balanced), so that choosing
    # networks never looks at the val/test split a final training reports on. The training subset is drawn from
    # the rest. Replaces val_samples.
    holdout: int | None = None
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N (auto: the GPU when there is one)
    workers: int = 0
    subset_dir: str | None = None  # folder subsets and tensor caches (default: runs/.proxy-data)
    compile: bool = False  # torch.compile each candidate (pays off only for long proxies: compiling takes ~1 min)
    amp: bool | None = None  # None: the recipe's (bf16 autocast on GPUs); False: float32
    # None: on a GPU without torch.compile, replay each step from a CUDA graph (a 32 px proxy is launch-bound)
    cuda_graph: bool | None = None

    @classmethod
    def for_device(cls, *, epochs: int | None = None, resolution: int | None = None, **fields: Any) -> ProxySettings:
        """Settings whose recipe, epochs and resolution, where not given, are the proxy recipe's of the device the
        proxies will train on (``device`` resolved as :meth:`torch_device` does)."""
        from patsearch.train.recipe import load_recipe

        recipe_name = fields.pop("recipe", None) or cls(device=fields.get("device", "auto")).recipe_for()
        recipe = load_recipe(recipe_name)
        return cls(epochs=recipe.epochs if epochs is None else epochs,
                   resolution=recipe.resolution if resolution is None else resolution, recipe=recipe_name, **fields)

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise UserError(f"--proxy-epochs must be a positive integer, got {self.epochs!r}")
        if not isinstance(self.resolution, int) or self.resolution < 32 or self.resolution % 32:
            raise UserError(f"--proxy-resolution must be a multiple of 32 (at least 32), got {self.resolution!r}")
        for name in ("train_samples", "val_samples", "holdout"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise UserError(f"--proxy-{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.holdout is not None and self.data is None:
            raise UserError("--proxy-holdout needs --data (the built-in synthetic set has its own validation images)")
        if self.holdout is not None and self.val_samples is not None:
            raise UserError("--proxy-holdout replaces --proxy-val-samples (validation comes from the training split); "
                            "give one of them")
        if self.lr is not None and (isinstance(self.lr, bool) or not isinstance(self.lr, (int, float))
                                    or not 0 < self.lr < float("inf")):
            raise UserError(f"--proxy-lr must be a positive number, got {self.lr!r}")
        if self.cuda_graph is not None and not isinstance(self.cuda_graph, bool):
            raise UserError(f"--proxy-cuda-graph must be true or false, got {self.cuda_graph!r}")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 2):
            raise UserError(f"--proxy-batch-size must be an integer of at least 2, got {self.batch_size!r}")
        from patsearch.train.distributed import check_device_name

        object.__setattr__(self, "device", check_device_name(self.device, "--proxy-device"))

    def data_id(self) -> str:
        """How the data is named in a study's stored options (a folder's name, not its path on this machine)."""
        if self.data is None:
            n_train, n_val = self.synthetic_sizes()
            return f"synthetic:{n_train}/{n_val}"
        val = f"holdout{self.holdout}" if self.holdout else (self.val_samples or "all")
        tail = f":{self.train_samples or 'all'}/{val}"
        return f"folder:{Path(self.data).resolve().name}{tail}"

    def synthetic_sizes(self) -> tuple[int, int]:
        return (self.train_samples or DEFAULT_SYNTHETIC[0], self.val_samples or DEFAULT_SYNTHETIC[1])

    def train_images(self) -> int:
        """Images in one epoch: the subset size, the synthetic set's, or the folder's whole train split (counted)."""
        if self.data is None:
            return self.synthetic_sizes()[0]
        from patsearch.data.folder import scan_split, split_dir

        total = len(scan_split(split_dir(Path(self.data).expanduser(), "train"))[1]) - (self.holdout or 0)
        return total if self.train_samples is None else min(self.train_samples, total)

    def check_batch(self, device_type: str) -> None:
        """A one-line error, before any study work, where the training set is smaller than one proxy batch (every
        candidate's training would fail the same way)."""
        batch, images = self.batch_for(device_type), self.train_images()
        if images < batch:
            raise UserError(f"the proxy's training set ({images} images) is smaller than one proxy batch ({batch}); "
                            f"pass --proxy-batch-size {max(2, images // 2 * 2)} or --proxy-train-samples {batch} "
                            "or more")

    def torch_device(self):
        """The device proxies train on (``auto`` resolved here, the one place); a one-line error for ``cuda``
        without a GPU."""
        from patsearch.train.distributed import resolve_device

        return resolve_device(self.device, flag="--proxy-device")

    def recipe_for(self, device_type: str | None = None) -> str:
        """The recipe proxies train with: the one given, else the proxy recipe of the device."""
        if self.recipe is not None:
            return self.recipe
        device_type = device_type or self.torch_device().type
        return PROXY_RECIPES.get(device_type, PROXY_RECIPES["cpu"])

    def batch_for(self, device_type: str) -> int:
        if self.batch_size is not None:
            return self.batch_size
        from patsearch.train.recipe import load_recipe

        return load_recipe(self.recipe_for(device_type)).batch_size

    def cuda_graph_for(self, device_type: str) -> bool:
        """Whether proxies replay their steps from a CUDA graph: asked for, or by default on a GPU with bf16 (or
        amp off), compiled or not (a compiled step is captured whole: 0.53 vs 0.74 s a proxy epoch of PATNet-T0 on
        an H200 with graphs, docs/BENCHMARKS.md 2026-12-01)."""
        if self.cuda_graph is not None:
            return self.cuda_graph
        if device_type != "cuda":
            return False
        import torch

        return self.amp is False or torch.cuda.is_bf16_supported()

    def lr_for(self, device_type: str) -> float | None:
        """The absolute lr given, or None for the recipe's (stated at its batch, scaled to another)."""
        return self.lr

    def cache_dir(self) -> str:
        return self.subset_dir or str(Path("runs") / ".proxy-data")


def fold_proxy_flags(data: Mapping[str, Any], **defaults: Any) -> dict[str, Any]:
    """``data`` (a command's options) with the proxy's flags, ``data`` and ``proxy_<field>``, moved into its
    ``proxy`` mapping of :class:`ProxySettings` fields, over a ``proxy`` mapping (or settings) given beside them;
    ``defaults`` fill fields that neither gives (the command's seed and subset folder)."""
    out = dict(data)
    base = out.pop("proxy", None)
    if not isinstance(base, ProxySettings) and base is not None:
        check_fields(ProxySettings, base, error=UserError, source="proxy", what="proxy settings")
    proxy = dataclasses.asdict(base) if isinstance(base, ProxySettings) else dict(base or {})
    names = {f.name for f in dataclasses.fields(ProxySettings)}
    for key in list(out):
        name = key if key == "data" else key.removeprefix("proxy_") if key.startswith("proxy_") else None
        if name in names:
            proxy[name] = out.pop(key)
    for name, value in defaults.items():
        if proxy.get(name) is None and value is not None:
            proxy[name] = value
    out["proxy"] = proxy
    return out


def proxy_settings(value: ProxySettings | Mapping[str, Any]) -> ProxySettings:
    """Settings from settings, or from a mapping of their fields (unset epochs, resolution and recipe: the
    device's proxy recipe's, as :meth:`ProxySettings.for_device`)."""
    if isinstance(value, ProxySettings):
        return value
    check_fields(ProxySettings, value, error=UserError, source="proxy", what="proxy settings")
    data = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in value.items()}
    return ProxySettings.for_device(**data)


def parse_gpus(spec: str | None, available: int) -> list[int] | None:
    """``--gpus``: ``all``, a count ``N`` (the first N) or a list ``0,1``; None when not given (one worker).

    ``available`` is the number of visible GPUs (``torch.cuda.device_count()``); asking for GPUs that are not
    there is a one-line error.
    """
    if spec is None or str(spec).strip() == "":
        return None
    text = str(spec).strip().lower()
    if available < 1:
        raise UserError(f"--gpus {spec}: no CUDA GPU is visible on this machine; drop --gpus to train proxies on "
                        "the CPU")
    if text == "all":
        return list(range(available))
    if text.isdigit():
        n = int(text)
        if not 1 <= n <= available:
            raise UserError(f"--gpus {spec}: this machine shows {available} GPU(s); pass 1..{available}, all, "
                            "or a list such as 0,1")
        return list(range(n))
    try:
        ids = [int(part) for part in text.split(",") if part.strip() != ""]
    except ValueError:
        raise UserError(f"--gpus must be all, a count (2) or a list of GPU indices (0,1), got {spec!r}") from None
    bad = [i for i in ids if not 0 <= i < available]
    if not ids or bad or len(set(ids)) != len(ids):
        raise UserError(f"--gpus {spec}: pass distinct indices from 0 to {available - 1} (this machine shows "
                        f"{available} GPU(s)), all, or a count")
    return ids


def make_proxy_runner(settings: ProxySettings, *, device: Any = None, num_classes_hint: int | None = None,
                      threads: int | None = None, progress: bool = False) -> Callable[..., float]:
    """``run_proxy(arch, on_epoch_end=None, seed=None, epochs=None, run_dir=None) -> final top-1 in [0, 1]`` for
    :class:`~patsearch.search.objective.Objective`; ``seed`` and ``epochs`` override the settings' (confirmation
    runs, and a multi-fidelity search's re-trainings, each with the full schedule of its length). ``run_dir``:
    the training checkpoints there each epoch and resumes from the checkpoint it finds there (a re-training cut by
    a kill); without it nothing is written.

    ``arch`` is an ArchConfig (a candidate) or a timm peer name (``fasternet_t0``, for benchmarks). The runner's
    ``device`` and ``num_classes`` attributes say where and on what it trains. ``progress``: each training logs
    plain lines (epoch, step, ETA) every 30 s, under the caller's own progress display. ``device``: the
    settings' device as the caller resolved it (a ``torch.device``; None: resolved here), passed on as is.
    """
    device = device or settings.torch_device()  # fails here, before any study work, on a bad or absent device
    batch = settings.batch_for(device.type)
    data = settings.data
    num_classes = num_classes_hint or 10
    if data is not None:
        data, num_classes = prepare_folder(settings)

    def run_proxy(arch: ArchConfig | str, on_epoch_end: Callable[[int, float], None] | None = None,
                  seed: int | None = None, epochs: int | None = None,
                  run_dir: str | os.PathLike | None = None) -> float:
        import torch

        from patsearch.search.objective import ProxyDiverged
        from patsearch.train import TrainingDiverged, train

        if threads and device.type == "cpu":
            torch.set_num_threads(threads)
        run_proxy.last_history = []  # type: ignore[attr-defined]  # never the previous training's

        def forward(epoch: int, metrics: dict[str, Any]) -> None:
            if on_epoch_end is not None and metrics.get("top1") is not None:
                on_epoch_end(epoch, float(metrics["top1"]) / 100.0)

        try:
            # a timm peer name (fasternet_t0) trains in the same harness, with the data's class count
            target = arch.replace(num_classes=num_classes) if isinstance(arch, ArchConfig) else arch
            result = train(target, settings.recipe_for(device.type), data=data, out_dir=run_dir,
                           resume="auto" if run_dir is not None else None,
                           epochs=settings.epochs if epochs is None else epochs, batch_size=batch,
                           lr=settings.lr_for(device.type),
                           resolution=settings.resolution, device=device, workers=settings.workers,
                           synthetic=settings.synthetic_sizes(), seed=settings.seed if seed is None else seed,
                           progress="plain" if progress else False,
                           tensorboard=False, on_epoch_end=forward, compile=settings.compile, amp=settings.amp,
                           cuda_graph=settings.cuda_graph_for(device.type),
                           tensor_cache_dir=settings.cache_dir())
        except TrainingDiverged as exc:
            raise ProxyDiverged(str(exc).split(";")[0]) from None
        final = result.get("final") or {}
        if final.get("top1") is None:
            raise RuntimeError("proxy training returned no validation top-1")
        # the last training's per-epoch metrics, for studies of other scores than the final top-1 (proxy-check)
        run_proxy.last_history = list(result.get("history") or [])  # type: ignore[attr-defined]
        return float(final["top1"]) / 100.0

    run_proxy.resumable = True  # type: ignore[attr-defined]  # run_dir: checkpoints there, resumed from there
    run_proxy.num_classes = num_classes  # type: ignore[attr-defined]
    run_proxy.device = device  # type: ignore[attr-defined]
    return run_proxy


def prepare_folder(settings: ProxySettings) -> tuple[str, int]:
    """The folder to train on (a linked class-balanced subset when sizes are given) and its class count.

    Subsets are deterministic (sorted files, every k-th per class) and built once, under a name derived from the
    source path and sizes, by linking files into ``train/`` and ``val/``: the trainer reads them unchanged.
    """
    from patsearch.data.folder import scan_split, split_dir

    root = Path(settings.data).expanduser()
    train_dir = split_dir(root, "train")
    val_dir = split_dir(root, "val")
    classes, train_samples = scan_split(train_dir)
    _, val_samples = scan_split(val_dir, classes)
    if settings.train_samples is None and settings.val_samples is None and settings.holdout is None:
        return str(root), len(classes)
    val_n = settings.val_samples
    if settings.holdout is not None:
        if settings.holdout >= len(train_samples):
            raise UserError(f"--proxy-holdout {settings.holdout} leaves no training images ({root} has "
                            f"{len(train_samples)}); hold out fewer")
        val_samples = balanced_subset(train_samples, len(classes), settings.holdout)
        val_n = None
        held = set(val_samples)
        train_samples = [s for s in train_samples if s not in held]
    key = hashlib.sha256(f"{root.resolve()}|{settings.train_samples}|{settings.val_samples}|"
                         f"{settings.holdout}".encode()).hexdigest()[:12]
    base = Path(settings.cache_dir())
    target = base / f"{root.resolve().name}-{key}"
    if (target / ".complete").exists():
        return str(target), len(classes)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    for split, samples, n in (("train", train_samples, settings.train_samples), ("val", val_samples, val_n)):
        for path, label in balanced_subset(samples, len(classes), n):
            dest = tmp / split / classes[label] / Path(path).name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.abspath(path), dest)
    (tmp / ".complete").write_text("ok\n")
    try:
        os.replace(tmp, target)
    except OSError:  # another worker built it first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return str(target), len(classes)


def balanced_subset(samples: list[tuple[str, int]], num_classes: int, n: int | None) -> list[tuple[str, int]]:
    """About ``n`` of ``samples`` (``(path, label)``), the same share of each class, every k-th in order (all of
    them for ``n=None``): the deterministic subset the proxy trains and validates on."""
    if n is None or n >= len(samples):
        return samples
    per_class: dict[int, list[tuple[str, int]]] = {}
    for item in samples:
        per_class.setdefault(item[1], []).append(item)
    quota = max(1, n // num_classes)
    out: list[tuple[str, int]] = []
    for label in sorted(per_class):
        items = per_class[label]
        step = max(1, len(items) // quota)
        out.extend(items[::step][:quota])
    return out


__all__ = ["PROXY_RECIPES", "ProxySettings", "balanced_subset", "fold_proxy_flags", "make_proxy_runner", "parse_gpus",
           "prepare_folder", "proxy_settings"]

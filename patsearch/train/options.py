"""``TrainOptions``: everything one training run takes, validated once, frozen, and loadable from YAML.

The library API of the trainer (``Trainer(TrainOptions(...)).fit()``; :func:`patsearch.train.train` builds one from
keyword arguments) and what ``patsearch train --options run.yaml`` reads (``yaml.safe_load``; flags override it).
Fields may also be named like the flags (``out``, ``synthetic_train``, ``compile_option``, ``batch-size``)::

    arch: patnet_t2
    recipe: patnet_t2
    data: /data/imagenet
    out_dir: runs/t2
    batch_size: 1024

Callbacks (``on_epoch_end``, ``on_step_end``) are not options: they are code, passed to the :class:`Trainer`.
Validation errors are one line naming the CLI flag (``--batch-size must be a positive integer ...``).
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from patsearch.arch import ArchConfig, is_int, is_number
from patsearch.compile_options import check_compile_options, parse_compile_option
from patsearch.config import OptionsMixin, read_yaml
from patsearch.data.datasets import DEFAULT_SYNTHETIC
from patsearch.errors import UserError
from patsearch.train.recipe import MULTI_SCALE_MODES, Recipe

DEFAULT_BATCH = 256
DATA_LOADERS = ("auto", "files", "device")
CACHE_MODES = ("auto", "memory", "none")


class TrainOptionsError(UserError, ValueError):
    """A training option (flag, keyword or options-file field) is invalid."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class TrainOptions(OptionsMixin):
    """One training run. ``arch`` and ``recipe`` say what and how (see :mod:`patsearch.train.loop`); the rest is
    where, how long and how the run behaves. Paths are kept as strings so that :meth:`to_yaml` round-trips."""

    options_error = TrainOptionsError
    options_what = "train options"

    arch: ArchConfig | str | Mapping[str, Any]
    recipe: str | Recipe | Mapping[str, Any] | None = None  # None or "auto": the recipe that fits ``arch``
    data: str | None = None  # None: the built-in synthetic set
    out_dir: str | None = None  # None: write nothing (in-process proxy training)
    # recipe overrides
    epochs: int | None = None
    batch_size: int = DEFAULT_BATCH  # global, split across processes
    lr: float | None = None  # None: the recipe's, scaled from its batch to ``batch_size``
    resolution: int | None = None
    multi_scale: str | None = None
    amp: bool | None = None
    # where and how
    device: str | torch.device = "auto"  # a name, or a device resolved by the caller (the search's proxy) kept as is
    workers: int | None = None
    cache: str = "auto"
    synthetic: tuple[int, int] = DEFAULT_SYNTHETIC  # (train, val) images of the synthetic set
    seed: int = 0
    resume: str | None = None  # "auto" or a checkpoint path
    checkpoint_every: int = 0
    max_steps: int | None = None
    eval_every: int = 1
    channels_last: bool = True
    compile: bool = False
    # Inductor options for this run's torch.compile (e.g. {"combo_kernels": True}); only with ``compile``
    compile_options: Mapping[str, Any] = field(default_factory=dict)
    cuda_graph: bool = False  # replay each training step from one CUDA graph (GPU, fixed resolution, no DDP)
    fused_kernels: bool = False  # PATNet's gates and gated BNs as patsearch.kernels' fused ops (Triton on CUDA)
    sync_bn: bool = False
    deterministic: bool = False
    profile_steps: int = 0
    log_every: int = 50
    # True: a live bar on a terminal, plain lines every 30 s elsewhere; "plain": plain lines always (a run under
    # another live display, e.g. a search's proxy trainings); False: silent.
    progress: bool | str = True
    tensorboard: bool = True
    tensor_cache_dir: str | None = None  # where device-loaded data is kept decoded (None: this process only)
    # files: timm's pipeline in loader processes; device: the set decoded once into uint8 tensors on the device and
    # augmented there (sets that fit; needed for several GPUs to scale); auto: device for ``crop: pad`` recipes
    data_loader: str = "auto"

    def __post_init__(self) -> None:
        for name in ("data", "out_dir", "resume", "tensor_cache_dir"):  # PathLike -> str: YAML-safe, comparable
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, os.fspath(value))
        if isinstance(self.arch, os.PathLike):
            object.__setattr__(self, "arch", os.fspath(self.arch))
        if isinstance(self.recipe, os.PathLike):
            object.__setattr__(self, "recipe", os.fspath(self.recipe))
        if isinstance(self.synthetic, list):
            object.__setattr__(self, "synthetic", tuple(self.synthetic))
        _validate(self)

    @property
    def auto_recipe(self) -> bool:
        return self.recipe is None or self.recipe == "auto"

    # --- construction and serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain data (what :meth:`from_dict` takes back): ArchConfig and Recipe become mappings."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if isinstance(self.arch, ArchConfig):
            out["arch"] = self.arch.to_dict()
        elif isinstance(self.arch, Mapping):
            out["arch"] = dict(self.arch)
        if isinstance(self.recipe, Recipe):
            out["recipe"] = self.recipe.to_dict()
        elif isinstance(self.recipe, Mapping):
            out["recipe"] = dict(self.recipe)
        out["synthetic"] = list(self.synthetic)
        out["device"] = str(self.device)
        out["compile_options"] = dict(self.compile_options)
        return out

    @classmethod
    def fields_from(cls, data: Mapping[str, Any], source: str) -> dict[str, Any]:
        """Field names from fields or the CLI's flag names (see :func:`flag_names`)."""
        return flag_names(data, source)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **overrides: Any) -> TrainOptions:
        """Options from a YAML file (fields or flag names; ``safe_load``); ``overrides`` (either names) win. One
        half of the synthetic set given (``synthetic_train``) keeps the file's other half."""
        data = read_yaml(path, cls.options_error, f"{cls.options_what} file")
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise cls.options_error(f"{path}: expected a mapping of {cls.options_what}, got {type(data).__name__}")
        base = flag_names(data, os.fspath(path))
        overrides = flag_names(_with_base_synthetic(overrides, base.get("synthetic")), "")
        return cls.from_dict({**base, **overrides}, source=os.fspath(path))

    def with_run_folders(self) -> TrainOptions:
        """These options with the folders the CLI always writes: the run folder (``runs/<arch>``) and, beside it,
        the decoded data that proxy-style runs share (``.proxy-data``)."""
        opts = self
        if opts.out_dir is None:
            name = Path(opts.arch).stem if isinstance(opts.arch, str) else (dict(opts.arch).get("name") or "custom")
            opts = opts.replace(out_dir=str(Path("runs") / name))
        if opts.tensor_cache_dir is None:  # crop: pad recipes (proxy) only: decoded data shared by the runs
            opts = opts.replace(tensor_cache_dir=str(Path(opts.out_dir).parent / ".proxy-data"))
        return opts


def _with_base_synthetic(overrides: Mapping[str, Any], base: Any) -> dict[str, Any]:
    """``overrides`` where one half of the synthetic set is given: both halves, the other one from ``base``."""
    out = dict(overrides)
    halves = [name for name in _SYNTHETIC_FLAGS if name in out]
    if len(halves) == 1 and "synthetic" not in out and base is not None:
        out["synthetic"] = tuple(out.pop(name) if name in out else value
                                 for name, value in zip(_SYNTHETIC_FLAGS, base))
    return out


# The flags of `patsearch train` whose field has another name; synthetic_train/_val are the two halves of synthetic.
_FLAG_FIELDS = {"out": "out_dir", "compile_option": "compile_options"}
_SYNTHETIC_FLAGS = ("synthetic_train", "synthetic_val")


def flag_names(data: Any, source: str) -> Any:
    """``data`` with the CLI's names turned into field names: ``out`` -> ``out_dir``, ``compile_option``
    (``KEY=VALUE`` strings, or a mapping) -> ``compile_options``, ``synthetic_train``/``synthetic_val`` ->
    ``synthetic``; dashes read as underscores (``batch-size``). Giving a flag and its field both is an error."""
    if not isinstance(data, Mapping):
        return data  # from_dict reports it
    at = f"{source}: " if source else ""  # flags name themselves
    out: dict[str, Any] = {}
    given_as: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_") if isinstance(key, str) else key
        name = _FLAG_FIELDS.get(name, name)
        if name in out:
            raise TrainOptionsError(f"{at}{given_as[name]} and {key} are the same option; give one of them")
        out[name], given_as[name] = value, key
    if isinstance(out.get("compile_options"), (list, tuple)):
        try:
            out["compile_options"] = dict(parse_compile_option(str(item)) for item in out["compile_options"])
        except ValueError as exc:
            raise TrainOptionsError(f"{at}--compile-option: {exc}") from None
    halves = [name for name in _SYNTHETIC_FLAGS if name in out]
    if halves:
        if "synthetic" in out:
            raise TrainOptionsError(f"{at}give synthetic or {' and '.join(halves)}, not both")
        train_n, val_n = (out.pop(name, default) for name, default in zip(_SYNTHETIC_FLAGS, DEFAULT_SYNTHETIC))
        out["synthetic"] = (train_n, val_n)
    return out


def _validate(o: TrainOptions) -> None:
    def need(ok: bool, name: str, what: str) -> None:
        if not ok:
            raise TrainOptionsError(f"{_flag(name)} must be {what}, got {getattr(o, name)!r}")

    def optional(name: str, ok: bool, what: str) -> None:
        need(getattr(o, name) is None or ok, name, what)

    need(isinstance(o.arch, (ArchConfig, str, Mapping)) and bool(o.arch), "arch",
         "a variant name, an architecture YAML path, a mapping of ArchConfig fields or a timm peer name")
    need(o.recipe is None or isinstance(o.recipe, (str, Recipe, Mapping)), "recipe",
         "a recipe name, a YAML path, a mapping of recipe fields, 'auto' or null")
    need(is_int(o.batch_size) and o.batch_size >= 1, "batch_size", "a positive integer (the global batch)")
    optional("epochs", is_int(o.epochs) and o.epochs >= 1, "a positive integer or unset")
    optional("lr", is_number(o.lr) and o.lr > 0, "a positive number or unset")
    optional("resolution", is_int(o.resolution) and o.resolution >= 32 and o.resolution % 32 == 0,
             "a multiple of 32 (at least 32), e.g. 224")
    optional("multi_scale", o.multi_scale in MULTI_SCALE_MODES, f"one of {', '.join(MULTI_SCALE_MODES)}")
    optional("amp", isinstance(o.amp, bool), "true, false or unset")
    need(isinstance(o.device, torch.device) or (isinstance(o.device, str) and bool(o.device)), "device",
         "auto, cpu, cuda or cuda:N")
    optional("workers", is_int(o.workers) and o.workers >= 0, "a non-negative integer or unset")
    need(o.cache in CACHE_MODES, "cache", f"one of {', '.join(CACHE_MODES)}")
    need(o.data_loader in DATA_LOADERS, "data_loader", f"one of {', '.join(DATA_LOADERS)}")
    need(isinstance(o.synthetic, tuple) and len(o.synthetic) == 2 and all(is_int(n) and n >= 1 for n in o.synthetic),
         "synthetic", "two positive integers (training and validation images)")
    need(is_int(o.seed), "seed", "an integer")
    optional("resume", isinstance(o.resume, str) and bool(o.resume), "'auto' or a checkpoint path")
    need(is_int(o.checkpoint_every) and o.checkpoint_every >= 0, "checkpoint_every",
         "a non-negative integer (0: save at epoch ends only)")
    optional("max_steps", is_int(o.max_steps) and o.max_steps >= 1, "a positive integer or unset")
    need(is_int(o.eval_every) and o.eval_every >= 1, "eval_every", "a positive integer")
    need(is_int(o.profile_steps) and o.profile_steps >= 0, "profile_steps", "a non-negative integer")
    need(is_int(o.log_every) and o.log_every >= 1, "log_every", "a positive integer")
    for name in ("channels_last", "compile", "cuda_graph", "fused_kernels", "sync_bn", "deterministic",
                 "tensorboard"):
        need(isinstance(getattr(o, name), bool), name, "true or false")
    need(o.progress in (True, False, "plain"), "progress", "true, false or 'plain'")
    try:
        checked = check_compile_options(o.compile_options if o.compile_options is not None else {})
    except ValueError as exc:
        raise TrainOptionsError(f"--compile-option: {exc}") from None
    object.__setattr__(o, "compile_options", checked)  # a plain dict: YAML-safe, comparable
    if checked and not o.compile:
        raise TrainOptionsError(f"--compile-option {next(iter(checked))} needs --compile (it configures "
                                "torch.compile); add --compile or drop the option")
    for name in ("data", "out_dir", "tensor_cache_dir"):
        optional(name, isinstance(getattr(o, name), str) and bool(getattr(o, name)), "a folder path or unset")

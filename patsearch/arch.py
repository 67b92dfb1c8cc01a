"""The architecture description: one validated, YAML-serialisable config for a PATNet-family network.

Everything in patsearch speaks this type: the named variants are instances of it, the search space samples it,
the profiler keys its lookup tables on the layers it enumerates (:meth:`ArchConfig.layers`), the search exports
it and the trainer builds from it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from patsearch.config import dataclass_from_mapping, read_yaml
from patsearch.errors import UserError
from patsearch.io import atomic_write_text

NUM_STAGES = 4

# Token mixers. Partial mixers split channels into a convolved part (C / n_div) and an untouched part.
MIXERS: dict[str, str] = {
    "pconv": "partial 3x3 conv, untouched channels passed through (FasterNet)",
    "pat_ch": "partial 3x3 conv + enhanced Gaussian SE on the untouched channels (PATNet)",
    "pat_ch_se": "partial 3x3 conv + SE (mean only, reduction 4) on the untouched channels (Table 10)",
    "pat_ch_srm": "partial 3x3 conv + SRM (channel-wise mean/std map) on the untouched channels (Table 10)",
    "pat_ch_full": "partial 3x3 conv, then Gaussian SE over all channels (Table 3, full channel attention)",
    "pat_sf": "partial 3x3 conv + self-attention with relative position bias on the untouched channels (PATNet)",
    "pat_sf_full": "partial 3x3 conv, then self-attention over all channels (Table 3, full self-attention)",
    "conv": "dense 3x3 conv over all channels (Table 5)",
    "dwconv": "depthwise 3x3 conv over all channels (Table 5)",
}
ATTENTION_MIXERS = frozenset({"pat_sf", "pat_sf_full"})  # these use Block v2 (two shortcuts)
SPATIAL_ATTENTION: dict[str, str] = {
    "partial": "PAT_sp: gate half the MLP output, 1x1 conv the other half (PATNet)",
    "full": "1x1 conv on half, then a spatial gate over all channels (Table 3)",
    "none": "plain MLP output (FasterNet)",
}
ACTIVATIONS = ("gelu", "relu", "silu", "hardswish")


class ArchError(UserError, ValueError):
    """An architecture description (or a reference to one) is invalid."""


@dataclass(frozen=True)
class LayerSpec:
    """One layer of a network, described by everything that changes its cost.

    ``kind`` is ``stem``, ``merge``, ``block`` or ``head``. Blocks carry their mixer and spatial attention; the
    stem and merges carry their widths; the head its feature width and class count. Resolution is not part of
    the spec: the same layer runs at whatever size the input has (see :meth:`ArchConfig.layer_inputs`).
    """

    kind: str
    in_dim: int
    out_dim: int
    mixer: str = ""
    spatial: str = ""
    n_div: int = 0
    mlp_ratio: float = 0.0
    act: str = ""
    num_heads: int = 0
    head_width: int = 0
    num_classes: int = 0

    def key(self, resolution: tuple[int, int] | int | None = None) -> str:
        """A stable string that identifies this layer (at an input resolution) in lookup tables."""
        parts = [self.kind, f"c{self.in_dim}"]
        if self.kind in ("stem", "merge"):
            parts.append(f"o{self.out_dim}")
        elif self.kind == "block":
            parts += [self.mixer, f"sp-{self.spatial}", f"div{self.n_div}", f"mlp{_fmt(self.mlp_ratio)}", self.act]
            if self.mixer in ATTENTION_MIXERS:
                parts.append(f"h{self.num_heads}")
        elif self.kind == "head":
            parts += [f"f{self.head_width}", self.act, f"k{self.num_classes}"]
        if resolution is not None:
            h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
            parts.append(f"r{h}x{w}")
        return "|".join(parts)


def _fmt(value: float) -> str:
    return f"{value:g}"


# --- field declarations --------------------------------------------------------------------------------------
# Each ArchConfig field says once how it is checked, whether it is per stage, whether it changes the network's
# structure (and so its speed) and what role it plays in a search space. Validation, YAML parsing, the search
# space (patsearch.space) and structural identity are generic loops over these declarations, so adding a field
# touches this file only.
def is_int(value: Any) -> bool:
    """An integer that is not a bool (YAML's ``true`` must not pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


Check = Callable[[Any], "str | None"]  # one value -> what is wrong with it, or None


def _int_at_least(low: int, why: str = "") -> Check:
    def check(x: Any) -> str | None:
        if is_int(x) and x >= low:
            return None
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        return f"must be {what}{why}, got {x!r}"
    return check


def _positive_number(x: Any) -> str | None:
    return None if is_number(x) and x > 0 else f"must be a positive number, got {x!r}"


def _rate(x: Any) -> str | None:
    return None if is_number(x) and 0 <= x < 1 else f"must be in [0, 1), got {x!r}"


def _string(x: Any) -> str | None:
    return None if isinstance(x, str) else f"must be a string, got {x!r}"


def _one_of(options: Mapping[str, str] | tuple[str, ...], what: str) -> Check:
    def check(x: Any) -> str | None:
        return None if x in options else f"unknown {what} {x!r}; choose from {', '.join(options)}"
    return check


def n_div_from_ratio(ratio: Any) -> int:
    """``partial_ratio`` (1/n) as ``n_div``; raises ValueError saying what is wrong."""
    if not is_number(ratio) or not 0 < ratio < 1:
        raise ValueError(f"must be a number in (0, 1) such as 0.25, got {ratio!r}")
    n_div = round(1 / ratio)
    if not math.isclose(1 / n_div, ratio, rel_tol=1e-6):
        raise ValueError(f"must be 1/n for an integer n (e.g. 0.25), got {ratio!r}")
    return n_div


SEARCH, FIXED, OTHER = "search", "fixed", "other"  # a field's role in a search space


@dataclass(frozen=True)
class FieldSpec:
    """What patsearch knows about one :class:`ArchConfig` field (declared with :func:`arch_field`).

    - ``check``: one value (one stage's value for a per-stage field) -> problem or None.
    - ``per_stage``: the field holds one value per stage (``NUM_STAGES`` of them).
    - ``structural``: changes the network's structure and cost; name and drop-path rate do not.
    - ``role``: ``search`` (a search-space dimension), ``fixed`` (only a space's ``fixed:`` may set it) or ``other``.
    - ``optional``: a space may omit the dimension; the field's default is then the only choice.
    - ``param``: Optuna parameter stem of a per-stage field (``depths`` -> ``depth1`` ... ``depth4``).
    - ``relevant``: for a conditional dimension, whether it matters given the values of the fields named in
      ``depends`` (heads only matter with attention); an irrelevant dimension is not suggested and is pinned to
      its first choice.
    - ``alias``: another name the field may be given as in YAML, with its conversion (``partial_ratio``).
    """

    check: Check
    per_stage: bool = False
    structural: bool = True
    role: str = SEARCH
    optional: bool = False
    param: str = ""
    relevant: Callable[[Mapping[str, Any]], bool] | None = None
    depends: tuple[str, ...] = ()
    alias: tuple[str, Callable[[Any], Any]] | None = None

    def params(self, name: str) -> list[str]:
        """The Optuna parameter names of the field."""
        if self.per_stage:
            return [f"{self.param or name}{i + 1}" for i in range(NUM_STAGES)]
        return [name]


def arch_field(default: Any, check: Check, **spec: Any) -> Any:
    return field(default=default, metadata={"arch": FieldSpec(check, **spec)})


def _uses_attention(values: Mapping[str, Any]) -> bool:
    return any(m in ATTENTION_MIXERS for m in values["mixers"])


@dataclass(frozen=True)
class ArchConfig:
    """A complete description of a PATNet-family network.

    Stage widths are ``embed_dim * (1, 2, 4, 8)``. The partial ratio is ``1 / n_div``: a mixer convolves the first
    ``C // n_div`` channels of a stage of width ``C``. The field order is the search space's suggestion order.
    """

    embed_dim: int = arch_field(64, _int_at_least(1))
    depths: tuple[int, ...] = arch_field((2, 2, 6, 4), _int_at_least(1), per_stage=True, param="depth")
    n_div: int = arch_field(4, _int_at_least(2, " (partial ratio 1/n_div in (0, 1))"), optional=True,
                            alias=("partial_ratio", n_div_from_ratio))
    mlp_ratio: float = arch_field(2.0, _positive_number)
    mixers: tuple[str, ...] = arch_field(("pat_ch", "pat_ch", "pat_ch", "pat_sf"), _one_of(MIXERS, "mixer"),
                                         per_stage=True, param="mixer")
    spatial: tuple[str, ...] = arch_field(("partial",) * 4, _one_of(SPATIAL_ATTENTION, "spatial attention"),
                                          per_stage=True)
    act: str = arch_field("relu", _one_of(ACTIVATIONS, "activation"))
    num_heads: int = arch_field(4, _int_at_least(1), optional=True, relevant=_uses_attention,
                             depends=("mixers",))
    drop_path_rate: float = arch_field(0.0, _rate, structural=False, role=FIXED)
    num_classes: int = arch_field(1000, _int_at_least(1), role=FIXED)
    head_width: int = arch_field(1280, _int_at_least(1), role=FIXED)
    name: str = arch_field("", _string, structural=False, role=OTHER)

    def __post_init__(self) -> None:
        # Normalise sequences so that configs built from lists and tuples compare and hash equal.
        for name, spec in FIELDS.items():
            value = getattr(self, name)
            if spec.per_stage and isinstance(value, (list, tuple)):
                object.__setattr__(self, name, tuple(value))
        _validate(self)

    # --- derived quantities -------------------------------------------------------------------------------
    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.embed_dim * 2**i for i in range(NUM_STAGES))

    @property
    def partial_ratio(self) -> float:
        return 1.0 / self.n_div

    @property
    def num_blocks(self) -> int:
        return sum(self.depths)

    def layers(self) -> list[LayerSpec]:
        """The network as an ordered list of layers: stem, blocks of stage 1, merge, blocks of stage 2, ..."""
        specs: list[LayerSpec] = [LayerSpec("stem", 3, self.embed_dim)]
        for stage, (width, depth) in enumerate(zip(self.widths, self.depths)):
            if stage > 0:
                specs.append(LayerSpec("merge", width // 2, width))
            block = self.block_spec(stage)
            specs.extend([block] * depth)
        specs.append(LayerSpec("head", self.widths[-1], self.widths[-1], act=self.act,
                               head_width=self.head_width, num_classes=self.num_classes))
        return specs

    def block_spec(self, stage: int) -> LayerSpec:
        width = self.widths[stage]
        return LayerSpec("block", width, width, mixer=self.mixers[stage], spatial=self.spatial[stage],
                         n_div=self.n_div, mlp_ratio=self.mlp_ratio, act=self.act, num_heads=self.num_heads)

    def layer_inputs(self, resolution: int | tuple[int, int]) -> Iterator[tuple[LayerSpec, tuple[int, int, int]]]:
        """Each layer with the (channels, height, width) of its input at an image resolution."""
        h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
        check_resolution((h, w))
        for spec in self.layers():
            yield spec, (spec.in_dim, h, w)
            if spec.kind == "stem":
                h, w = h // 4, w // 4
            elif spec.kind == "merge":
                h, w = h // 2, w // 2

    def drop_path_rates(self) -> list[float]:
        """Per-block drop-path rates, rising linearly from 0 to ``drop_path_rate`` over all blocks."""
        n = self.num_blocks
        if n == 1:
            return [0.0]
        return [self.drop_path_rate * i / (n - 1) for i in range(n)]

    # --- identity -----------------------------------------------------------------------------------------
    def structure(self) -> dict[str, Any]:
        """The structural fields (what the network computes and costs), as plain YAML values."""
        return {k: v for k, v in self.to_dict().items() if FIELDS[k].structural}

    def structure_key(self, resolution: int) -> str:
        """A short stable id of the network at a resolution; equal for networks differing only in name or
        drop-path rate (the profiler keys end-to-end measurements on it)."""
        text = json.dumps(self.structure(), sort_keys=True) + f"@{resolution}"
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    # --- serialisation ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        if not out["name"]:
            del out["name"]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "architecture") -> ArchConfig:
        if not isinstance(data, Mapping):
            raise ArchError(f"{source}: expected a mapping of architecture fields, got {type(data).__name__}")
        data = dict(data)
        for name, spec in FIELDS.items():
            if spec.alias and spec.alias[0] in data:
                alias, convert = spec.alias
                if name in data:
                    raise ArchError(f"{source}: give either {name} or {alias}, not both")
                try:
                    data[name] = convert(data.pop(alias))
                except ValueError as exc:
                    raise ArchError(f"{source}: {alias} {exc}") from None
            if spec.per_stage and name in data and not isinstance(data[name], (list, tuple)):
                data[name] = [data[name]] * NUM_STAGES  # one value for all stages
        return dataclass_from_mapping(cls, data, error=ArchError, source=source, what="architecture")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the description as YAML, atomically (temp file + fsync + rename)."""
        return atomic_write_text(path, self.to_yaml())

    @classmethod
    def load(cls, path: str | os.PathLike) -> ArchConfig:
        data = read_yaml(path, ArchError, "architecture file")
        if isinstance(data, Mapping) and "arch" in data and isinstance(data["arch"], Mapping):
            data = data["arch"]  # accept files that wrap the description with metadata
        return cls.from_dict(data, source=str(path))

    def replace(self, **changes: Any) -> ArchConfig:
        return dataclasses.replace(self, **changes)


FIELDS: Mapping[str, FieldSpec] = MappingProxyType({f.name: f.metadata["arch"] for f in dataclasses.fields(ArchConfig)})


def field_problem(name: str, value: Any) -> tuple[str, str] | None:
    """The first problem of one field's value on its own, as ``(where, what)`` (``("depths[1]", "must be ...")``)."""
    spec = FIELDS[name]
    if not spec.per_stage:
        problem = spec.check(value)
        return (name, problem) if problem else None
    if not isinstance(value, tuple) or len(value) != NUM_STAGES:
        return name, f"must list {NUM_STAGES} stages, got {value!r}"
    for i, item in enumerate(value):
        problem = spec.check(item)
        if problem:
            return f"{name}[{i}]", problem
    return None


def _validate(cfg: ArchConfig) -> None:
    for name in FIELDS:
        problem = field_problem(name, getattr(cfg, name))
        if problem:
            raise ArchError(f"{problem[0]}: {problem[1]}")
    # Constraints between fields, stage by stage.
    for stage, width in enumerate(cfg.widths):
        if width % cfg.n_div:
            raise ArchError(f"embed_dim: stage {stage + 1} width {width} is not divisible by n_div={cfg.n_div}")
        hidden = width * cfg.mlp_ratio
        if hidden != int(hidden):
            raise ArchError(f"mlp_ratio: stage {stage + 1} hidden width {width} x {cfg.mlp_ratio} is not an integer")
        if cfg.spatial[stage] != "none" and width % 2:
            raise ArchError(f"embed_dim: stage {stage + 1} width {width} is odd; spatial attention splits it in half")
        mixer = cfg.mixers[stage]
        if mixer in ATTENTION_MIXERS:
            attn_dim = width - width // cfg.n_div if mixer == "pat_sf" else width
            if attn_dim % cfg.num_heads:
                raise ArchError(f"num_heads: stage {stage + 1} attention width {attn_dim} is not divisible by "
                                f"num_heads={cfg.num_heads}")
        if mixer == "pat_ch_se" and (width - width // cfg.n_div) < 4:
            raise ArchError(f"mixers[{stage}]: pat_ch_se needs at least 4 untouched channels at stage {stage + 1}")


def check_resolution(resolution: tuple[int, int]) -> None:
    """Inputs must shrink evenly through the stem (4x) and three merges (2x each)."""
    for side in resolution:
        if not is_int(side) or side < 32 or side % 32:
            raise ArchError(f"input resolution {resolution[0]}x{resolution[1]}: each side must be a multiple of 32 "
                            "and at least 32 (e.g. 224)")


# --- the named variants (Table 6 of the paper, as pinned down in the architecture spec) -----------------------
def _variant(name: str, embed_dim: int, depths: tuple[int, ...], act: str, drop_path_rate: float) -> ArchConfig:
    return ArchConfig(embed_dim=embed_dim, depths=depths, act=act, drop_path_rate=drop_path_rate, name=name)


VARIANTS: dict[str, ArchConfig] = {
    "patnet_t0": _variant("patnet_t0", 32, (1, 2, 6, 4), "gelu", 0.0),
    "patnet_t1": _variant("patnet_t1", 48, (1, 2, 6, 4), "gelu", 0.02),
    "patnet_t2": _variant("patnet_t2", 64, (2, 2, 6, 4), "relu", 0.05),
    "patnet_s": _variant("patnet_s", 96, (2, 2, 9, 4), "relu", 0.1),
    "patnet_m": _variant("patnet_m", 128, (2, 3, 16, 4), "relu", 0.2),
    "patnet_l": _variant("patnet_l", 160, (2, 3, 20, 4), "relu", 0.3),
}


# --- FasterNet as points of the same family ------------------------------------------------------------------
def _fasternet(name: str, embed_dim: int, depths: tuple[int, ...], act: str, drop_path_rate: float) -> ArchConfig:
    return ArchConfig(embed_dim=embed_dim, depths=depths, n_div=4, mlp_ratio=2.0, mixers=("pconv",) * NUM_STAGES,
                      spatial=("none",) * NUM_STAGES, act=act, drop_path_rate=drop_path_rate, head_width=1280,
                      name=name)


# timm's fasternet_t0 ... fasternet_l (widths, depths, activation and drop-path rate of its registry entries) as
# ArchConfigs: same stem, merging, block (x + DropPath(MLP(PConv(x)))), head and per-block drop-path schedule, so
# they compute what timm's FasterNet computes (patsearch.models.peers.load_timm_fasternet_weights copies the
# weights). Kept apart from VARIANTS, which means "PATNet's Table 6". The names equal timm's model names, so
# create_model("fasternet_t0") still builds timm's module; pass FASTERNET_POINTS["fasternet_t0"] for ours.
FASTERNET_POINTS: dict[str, ArchConfig] = {
    "fasternet_t0": _fasternet("fasternet_t0", 40, (1, 2, 8, 2), "gelu", 0.0),
    "fasternet_t1": _fasternet("fasternet_t1", 64, (1, 2, 8, 2), "gelu", 0.02),
    "fasternet_t2": _fasternet("fasternet_t2", 96, (1, 2, 8, 2), "relu", 0.05),
    "fasternet_s": _fasternet("fasternet_s", 128, (1, 2, 13, 2), "relu", 0.1),
    "fasternet_m": _fasternet("fasternet_m", 144, (3, 4, 18, 3), "relu", 0.2),
    "fasternet_l": _fasternet("fasternet_l", 192, (3, 4, 18, 3), "relu", 0.3),
}


# Every hand-designed network by name: what a search compares with (baselines) and what a constraint can be
# relative to ("as fast as fasternet_t2"), at the ImageNet resolution they were designed for.
NAMED_NETWORKS: dict[str, ArchConfig] = {**VARIANTS, **FASTERNET_POINTS}
NAMED_RESOLUTION = 224


def is_arch_ref(ref: Any) -> bool:
    """Whether ``ref`` names a PATNet-family network (config, mapping, variant name or YAML path) rather than
    another timm model. The one definition of "is a PATNet" for the model factory, trainer and CLI."""
    if isinstance(ref, (ArchConfig, Mapping)):
        return True
    text = os.fspath(ref)
    return text in VARIANTS or text.endswith((".yaml", ".yml")) or os.path.exists(text)


def resolve_arch(ref: str | os.PathLike | ArchConfig | Mapping[str, Any], **overrides: Any) -> ArchConfig:
    """Turn what a user passed as ``--arch`` into an :class:`ArchConfig`.

    Accepts a config, a mapping, a registered variant name (``patnet_t2``) or a path to a YAML file.
    ``overrides`` replace fields afterwards (e.g. ``num_classes=10``) and are validated too.
    """
    if isinstance(ref, ArchConfig):
        cfg = ref
    elif isinstance(ref, Mapping):
        cfg = ArchConfig.from_dict(ref)
    else:
        text = os.fspath(ref)
        if text in VARIANTS:
            cfg = VARIANTS[text]
        elif is_arch_ref(text) or os.sep in text:
            if not Path(text).exists():
                raise ArchError(f"architecture file {text} does not exist; pass a YAML path or one of: "
                                f"{', '.join(VARIANTS)}")
            cfg = ArchConfig.load(text)
        else:
            raise ArchError(f"unknown architecture {text!r}; known: {', '.join(VARIANTS)} (or a path to a YAML file)")
    if overrides:
        try:
            cfg = dataclasses.replace(cfg, **overrides)
        except TypeError as exc:
            raise ArchError(str(exc)) from None
    return cfg

"""The architecture description: one validated, YAML-serialisable config for a PATNet-family network.

Everything in patsearch speaks this type: the named variants are instances of it, the search space samples it,
the profiler keys its lookup tables on the layers it enumerates (:meth:`ArchConfig.layers`), the search exports
it and the trainer builds from it.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

from patsearch.config import dataclass_from_mapping, read_yaml
from patsearch.errors import UserError

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


@dataclass(frozen=True)
class ArchConfig:
    """A complete description of a PATNet-family network.

    Stage widths are ``embed_dim * (1, 2, 4, 8)``. The partial ratio is ``1 / n_div``: a mixer convolves the first
    ``C // n_div`` channels of a stage of width ``C``.
    """

    embed_dim: int = 64
    depths: tuple[int, ...] = (2, 2, 6, 4)
    mlp_ratio: float = 2.0
    n_div: int = 4
    mixers: tuple[str, ...] = ("pat_ch", "pat_ch", "pat_ch", "pat_sf")
    spatial: tuple[str, ...] = ("partial", "partial", "partial", "partial")
    act: str = "relu"
    num_heads: int = 4
    drop_path_rate: float = 0.0
    num_classes: int = 1000
    head_width: int = 1280
    name: str = ""

    def __post_init__(self) -> None:
        # Normalise sequences so that configs built from lists and tuples compare and hash equal.
        for name in ("depths", "mixers", "spatial"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
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
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "architecture") -> "ArchConfig":
        if not isinstance(data, Mapping):
            raise ArchError(f"{source}: expected a mapping of architecture fields, got {type(data).__name__}")
        data = dict(data)
        if "partial_ratio" in data:
            if "n_div" in data:
                raise ArchError(f"{source}: give either n_div or partial_ratio, not both")
            data["n_div"] = _n_div_from_ratio(data.pop("partial_ratio"), source)
        for name in ("mixers", "spatial"):
            if isinstance(data.get(name), str):  # one value for all stages
                data[name] = [data[name]] * NUM_STAGES
        return dataclass_from_mapping(cls, data, error=ArchError, source=source, what="architecture")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the description as YAML, atomically (temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(self.to_yaml())
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ArchConfig":
        data = read_yaml(path, ArchError, "architecture file")
        if isinstance(data, Mapping) and "arch" in data and isinstance(data["arch"], Mapping):
            data = data["arch"]  # accept files that wrap the description with metadata
        return cls.from_dict(data, source=str(path))

    def replace(self, **changes: Any) -> "ArchConfig":
        return dataclasses.replace(self, **changes)


def _n_div_from_ratio(ratio: Any, source: str) -> int:
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 < ratio < 1:
        raise ArchError(f"{source}: partial_ratio must be a number in (0, 1), got {ratio!r}")
    n_div = round(1 / ratio)
    if not math.isclose(1 / n_div, ratio, rel_tol=1e-6):
        raise ArchError(f"{source}: partial_ratio must be 1/n for an integer n (e.g. 0.25), got {ratio!r}")
    return n_div


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate(cfg: ArchConfig) -> None:
    def fail(msg: str) -> None:
        raise ArchError(msg)

    if not _is_int(cfg.embed_dim) or cfg.embed_dim < 1:
        fail(f"embed_dim must be a positive integer, got {cfg.embed_dim!r}")
    for name in ("depths", "mixers", "spatial"):
        value = getattr(cfg, name)
        if not isinstance(value, tuple) or len(value) != NUM_STAGES:
            fail(f"{name} must list {NUM_STAGES} stages, got {value!r}")
    for i, depth in enumerate(cfg.depths):
        if not _is_int(depth) or depth < 1:
            fail(f"depths[{i}] must be an integer >= 1, got {depth!r}")
    if not _is_int(cfg.n_div) or cfg.n_div < 2:
        fail(f"n_div must be an integer >= 2 (partial ratio 1/n_div in (0, 1)), got {cfg.n_div!r}")
    if not isinstance(cfg.mlp_ratio, (int, float)) or isinstance(cfg.mlp_ratio, bool) or cfg.mlp_ratio <= 0:
        fail(f"mlp_ratio must be a positive number, got {cfg.mlp_ratio!r}")
    for i, mixer in enumerate(cfg.mixers):
        if mixer not in MIXERS:
            fail(f"mixers[{i}]: unknown mixer {mixer!r}; choose from {', '.join(MIXERS)}")
    for i, spatial in enumerate(cfg.spatial):
        if spatial not in SPATIAL_ATTENTION:
            fail(f"spatial[{i}]: unknown spatial attention {spatial!r}; choose from {', '.join(SPATIAL_ATTENTION)}")
    if cfg.act not in ACTIVATIONS:
        fail(f"act: unknown activation {cfg.act!r}; choose from {', '.join(ACTIVATIONS)}")
    if not _is_int(cfg.num_heads) or cfg.num_heads < 1:
        fail(f"num_heads must be a positive integer, got {cfg.num_heads!r}")
    if not isinstance(cfg.drop_path_rate, (int, float)) or not 0 <= cfg.drop_path_rate < 1:
        fail(f"drop_path_rate must be in [0, 1), got {cfg.drop_path_rate!r}")
    if not _is_int(cfg.num_classes) or cfg.num_classes < 1:
        fail(f"num_classes must be a positive integer, got {cfg.num_classes!r}")
    if not _is_int(cfg.head_width) or cfg.head_width < 1:
        fail(f"head_width must be a positive integer, got {cfg.head_width!r}")
    if not isinstance(cfg.name, str):
        fail(f"name must be a string, got {cfg.name!r}")
    for stage, width in enumerate(cfg.widths):
        if width % cfg.n_div:
            fail(f"embed_dim: stage {stage + 1} width {width} is not divisible by n_div={cfg.n_div}")
        hidden = width * cfg.mlp_ratio
        if hidden != int(hidden):
            fail(f"mlp_ratio: stage {stage + 1} hidden width {width} x {cfg.mlp_ratio} is not an integer")
        if cfg.spatial[stage] != "none" and width % 2:
            fail(f"embed_dim: stage {stage + 1} width {width} is odd; spatial attention splits it in half")
        mixer = cfg.mixers[stage]
        if mixer in ATTENTION_MIXERS:
            attn_dim = width - width // cfg.n_div if mixer == "pat_sf" else width
            if attn_dim % cfg.num_heads:
                fail(f"num_heads: stage {stage + 1} attention width {attn_dim} is not divisible by "
                     f"num_heads={cfg.num_heads}")
        if mixer == "pat_ch_se" and (width - width // cfg.n_div) < 4:
            fail(f"mixers[{stage}]: pat_ch_se needs at least 4 untouched channels at stage {stage + 1}")


def check_resolution(resolution: tuple[int, int]) -> None:
    """Inputs must shrink evenly through the stem (4x) and three merges (2x each)."""
    for side in resolution:
        if not _is_int(side) or side < 32 or side % 32:
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


def resolve_arch(ref: "str | os.PathLike | ArchConfig | Mapping[str, Any]", **overrides: Any) -> ArchConfig:
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
        elif text.endswith((".yaml", ".yml")) or os.sep in text or Path(text).exists():
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

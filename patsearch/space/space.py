"""Search spaces: a YAML file of choices per architecture field, validated on load.

A space is a product of independent choices (embed width, four depths, partial ratio, mlp ratio, four mixers,
four PAT_sp settings, activation, heads, input resolution). Loading checks every field and also that *every*
combination of choices is a valid :class:`~patsearch.arch.ArchConfig`, so sampling, Optuna suggestions and the
size count never meet an invalid point.
"""
from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

import numpy as np

from patsearch.arch import (ACTIVATIONS, ATTENTION_MIXERS, MIXERS, NUM_STAGES, SPATIAL_ATTENTION, ArchConfig,
                            ArchError, LayerSpec, check_resolution)
from patsearch.config import read_yaml
from patsearch.errors import UserError
from patsearch.resources import bundled_dir

SPACES_DIR = bundled_dir("spaces")  # the checkout's spaces/, or the installed copy
DEFAULT_SPACE = SPACES_DIR / "patnet.yaml"

_TOP_FIELDS = ("name", "description", "embed_dim", "depths", "partial_ratio", "n_div", "mlp_ratio", "mixers",
               "spatial", "act", "num_heads", "resolution", "fixed")
_FIXED_FIELDS = ("num_classes", "head_width", "drop_path_rate")
# Fields of ArchConfig that do not describe the network's structure (ignored by `contains`).
_NON_STRUCTURAL = ("name", "drop_path_rate")


class SpaceError(UserError, ValueError):
    """A search-space file (or a sample handed to a space) is invalid."""


class Candidate(NamedTuple):
    """One point of a space: the architecture and the input resolution it runs at."""

    arch: ArchConfig
    resolution: int


@dataclass(frozen=True)
class IntRange:
    """An inclusive integer range ``{min, max, step}`` (depths); Optuna gets it as ``suggest_int``."""

    low: int
    high: int
    step: int = 1

    @property
    def choices(self) -> tuple[int, ...]:
        return tuple(range(self.low, self.high + 1, self.step))



@dataclass(frozen=True)
class SearchSpace:
    """A validated search space. Build it with :func:`load_space` or :meth:`from_dict`."""

    name: str
    embed_dim: tuple[int, ...]
    depths: tuple[Any, ...]            # per stage: tuple of ints or IntRange
    n_div: tuple[int, ...]
    mlp_ratio: tuple[float, ...]
    mixers: tuple[tuple[str, ...], ...]
    spatial: tuple[tuple[str, ...], ...]
    act: tuple[str, ...]
    num_heads: tuple[int, ...]
    resolution: tuple[int, ...]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = "<dict>"

    # --- parameters ----------------------------------------------------------------------------------------
    def params(self) -> list[tuple[str, Any]]:
        """The space's dimensions in a fixed order, as ``(name, choices)``; names are Optuna parameter names."""
        out: list[tuple[str, Any]] = [("embed_dim", self.embed_dim)]
        out += [(f"depth{i + 1}", d) for i, d in enumerate(self.depths)]
        out += [("n_div", self.n_div), ("mlp_ratio", self.mlp_ratio)]
        out += [(f"mixer{i + 1}", m) for i, m in enumerate(self.mixers)]
        out += [(f"spatial{i + 1}", s) for i, s in enumerate(self.spatial)]
        out += [("act", self.act), ("num_heads", self.num_heads), ("resolution", self.resolution)]
        return out

    def _choices(self, value: Any) -> tuple[Any, ...]:
        return value.choices if isinstance(value, IntRange) else value

    def size(self) -> int:
        """Number of distinct networks x resolutions. Heads count only where some stage uses attention."""
        rest = 1
        for name, choices in self.params():
            if name.startswith("mixer") or name == "num_heads":
                continue
            rest *= len(self._choices(choices))
        all_mixers = math.prod(len(m) for m in self.mixers)
        no_attention = math.prod(sum(1 for x in m if x not in ATTENTION_MIXERS) for m in self.mixers)
        return rest * ((all_mixers - no_attention) * len(self.num_heads) + no_attention)

    # --- sampling ------------------------------------------------------------------------------------------
    def sample_params(self, rng: "int | np.random.Generator | None" = None) -> dict[str, Any]:
        """Uniform random choices for every dimension (seeded by an int or a numpy Generator)."""
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        params: dict[str, Any] = {}
        for name, choices in self.params():
            options = self._choices(choices)
            value = options[int(rng.integers(len(options)))]
            params[name] = value.item() if isinstance(value, np.generic) else value
        return self._canonical(params)

    def sample(self, rng: "int | np.random.Generator | None" = None) -> Candidate:
        """One uniformly random point of the space, as ``Candidate(arch, resolution)``."""
        return self.to_candidate(self.sample_params(rng))

    def samples(self, n: int, seed: int = 0, *, unique: bool = True) -> list[Candidate]:
        """``n`` random points from one seeded stream; ``unique`` drops repeats (bounded by the space size)."""
        rng = np.random.default_rng(seed)
        out: list[Candidate] = []
        seen: set = set()
        target = min(n, self.size()) if unique else n
        while len(out) < target:
            cand = self.sample(rng)
            if unique:
                if cand in seen:
                    continue
                seen.add(cand)
            out.append(cand)
        return out

    def suggest(self, trial: Any) -> Candidate:
        """Ask an Optuna trial for a point: categorical choices, ``suggest_int`` for depth ranges.

        Dimensions with a single choice are not suggested (they are constants); ``num_heads`` is suggested only
        when a stage picked an attention mixer, so the trial's parameters name exactly the network it built.
        Returns ``Candidate(arch, resolution)``; ``space.to_candidate(trial.params)`` rebuilds it later.
        """
        params: dict[str, Any] = {}
        for name, choices in self.params():
            if name == "num_heads":
                continue
            params[name] = self._suggest_one(trial, name, choices)
        if any(params[f"mixer{i + 1}"] in ATTENTION_MIXERS for i in range(NUM_STAGES)):
            params["num_heads"] = self._suggest_one(trial, "num_heads", self.num_heads)
        return self.to_candidate(params)

    @staticmethod
    def _suggest_one(trial: Any, name: str, choices: Any) -> Any:
        if isinstance(choices, IntRange):
            if choices.low == choices.high:
                return choices.low
            return trial.suggest_int(name, choices.low, choices.high, step=choices.step)
        if len(choices) == 1:
            return choices[0]
        return trial.suggest_categorical(name, list(choices))

    # --- turning samples into architectures ----------------------------------------------------------------
    def _canonical(self, params: dict[str, Any]) -> dict[str, Any]:
        # Heads do not change a network without attention: pin them so distinct samples are distinct networks.
        if not any(params.get(f"mixer{i + 1}") in ATTENTION_MIXERS for i in range(NUM_STAGES)):
            params["num_heads"] = self.num_heads[0]
        return params

    def to_arch(self, params: Mapping[str, Any]) -> ArchConfig:
        """The architecture description of a sample (``sample_params`` output or Optuna ``trial.params``)."""
        return self.to_candidate(params).arch

    def to_candidate(self, params: Mapping[str, Any]) -> Candidate:
        """Validate a sample against the space and build ``Candidate(arch, resolution)``.

        Missing dimensions with one choice take that choice; anything else missing, unknown or outside the
        space is a :class:`SpaceError`.
        """
        known = dict(self.params())
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise SpaceError(f"space {self.name!r}: unknown parameter(s) {', '.join(unknown)}; "
                             f"known: {', '.join(known)}")
        values: dict[str, Any] = {}
        for name, choices in known.items():
            options = self._choices(choices)
            if name in params:
                value = params[name]
            elif len(options) == 1 or name == "num_heads":
                value = options[0]
            else:
                raise SpaceError(f"space {self.name!r}: sample is missing parameter {name!r}")
            if value not in options:
                raise SpaceError(f"space {self.name!r}: {name}={value!r} is not in the space; "
                                 f"choices: {_describe(choices)}")
            values[name] = value
        arch = ArchConfig(
            embed_dim=values["embed_dim"],
            depths=tuple(values[f"depth{i + 1}"] for i in range(NUM_STAGES)),
            n_div=values["n_div"], mlp_ratio=values["mlp_ratio"],
            mixers=tuple(values[f"mixer{i + 1}"] for i in range(NUM_STAGES)),
            spatial=tuple(values[f"spatial{i + 1}"] for i in range(NUM_STAGES)),
            act=values["act"], num_heads=values["num_heads"], **dict(self.fixed))
        return Candidate(arch, int(values["resolution"]))

    def params_of(self, arch: ArchConfig, resolution: int | None = None) -> dict[str, Any]:
        """The inverse of :meth:`to_candidate` for a point of the space (raises if it is not one)."""
        params: dict[str, Any] = {"embed_dim": arch.embed_dim}
        params.update({f"depth{i + 1}": d for i, d in enumerate(arch.depths)})
        params.update(n_div=arch.n_div, mlp_ratio=arch.mlp_ratio, act=arch.act, num_heads=arch.num_heads,
                      resolution=self.resolution[0] if resolution is None else resolution)
        params.update({f"mixer{i + 1}": m for i, m in enumerate(arch.mixers)})
        params.update({f"spatial{i + 1}": s for i, s in enumerate(arch.spatial)})
        cand = self.to_candidate(params)
        mismatch = [k for k in _FIXED_FIELDS if k in self.fixed and k not in _NON_STRUCTURAL
                    and getattr(arch, k) != self.fixed[k]]
        if mismatch:
            raise SpaceError(f"space {self.name!r}: {', '.join(f'{k}={getattr(arch, k)!r}' for k in mismatch)} "
                             f"differs from the space's fixed value(s)")
        del cand
        return params

    def contains(self, arch: ArchConfig, resolution: int | None = None) -> bool:
        """Whether the network (ignoring its name and drop-path rate) is a point of this space."""
        try:
            self.params_of(arch, resolution)
        except SpaceError:
            return False
        return True

    # --- what the profiler measures ------------------------------------------------------------------------
    def layer_inputs(self) -> dict[str, tuple[LayerSpec, tuple[int, int, int]]]:
        """Every distinct layer any point of the space contains, keyed by ``LayerSpec.key(resolution)``.

        Values are ``(spec, (C, H, W))`` of the layer's input. Depths do not change which layers exist, so they
        are held at 1; each stage's (mixer, PAT_sp) choice is varied with the other stages at their first choice.
        """
        out: dict[str, tuple[LayerSpec, tuple[int, int, int]]] = {}
        for embed, n_div, mlp, act, heads, res in itertools.product(
                self.embed_dim, self.n_div, self.mlp_ratio, self.act, self.num_heads, self.resolution):
            for stage in range(NUM_STAGES):
                for mixer, spatial in itertools.product(self.mixers[stage], self.spatial[stage]):
                    mixers = [m[0] for m in self.mixers]
                    spatials = [s[0] for s in self.spatial]
                    mixers[stage], spatials[stage] = mixer, spatial
                    arch = ArchConfig(embed_dim=embed, depths=(1,) * NUM_STAGES, n_div=n_div, mlp_ratio=mlp,
                                      mixers=tuple(mixers), spatial=tuple(spatials), act=act, num_heads=heads,
                                      **{k: v for k, v in self.fixed.items() if k != "drop_path_rate"})
                    for spec, (c, h, w) in arch.layer_inputs(res):
                        out.setdefault(spec.key((h, w)), (spec, (c, h, w)))
        return out

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "size": self.size(),
                "layers": len(self.layer_inputs()),
                "params": {n: _describe(c) for n, c in self.params()}}

    # --- loading -------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<dict>") -> "SearchSpace":
        return _parse(data, source)


def _describe(choices: Any) -> str:
    if isinstance(choices, IntRange):
        return f"{choices.low}..{choices.high}" + (f" step {choices.step}" if choices.step != 1 else "")
    return ", ".join(str(c) for c in choices)


# --- parsing and validation -----------------------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse(data: Any, source: str) -> SearchSpace:
    def fail(field_name: str, message: str) -> None:
        raise SpaceError(f"{source}: field '{field_name}': {message}")

    if not isinstance(data, Mapping):
        raise SpaceError(f"{source}: a search space is a mapping of fields, got {type(data).__name__}")
    unknown = sorted(set(data) - set(_TOP_FIELDS))
    if unknown:
        raise SpaceError(f"{source}: unknown field(s) {', '.join(map(str, unknown))}; "
                         f"known fields: {', '.join(_TOP_FIELDS)}")

    def choice_list(name: str, check, what: str, *, required: bool = True, default: Any = None) -> tuple:
        if name not in data:
            if required:
                raise SpaceError(f"{source}: missing field '{name}' (a list of {what})")
            return default
        value = data[name]
        if not isinstance(value, list) or not value:
            fail(name, f"must be a non-empty list of {what}, got {value!r}")
        for i, item in enumerate(value):
            problem = check(item)
            if problem:
                fail(f"{name}[{i}]", problem)
        if len(set(value)) != len(value):
            fail(name, f"lists a choice twice: {value!r}")
        return tuple(value)

    def positive_int(x: Any) -> str | None:
        return None if _is_int(x) and x >= 1 else f"must be a positive integer, got {x!r}"

    def one_of(options: Sequence[str], what: str):
        def check(x: Any) -> str | None:
            return None if x in options else f"unknown {what} {x!r}; choose from {', '.join(options)}"
        return check

    name = data.get("name", Path(source).stem)
    if not isinstance(name, str) or not name:
        fail("name", f"must be a non-empty string, got {name!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        fail("description", "must be a string")

    embed_dim = choice_list("embed_dim", positive_int, "positive integers")

    if "n_div" in data and "partial_ratio" in data:
        raise SpaceError(f"{source}: give either 'partial_ratio' or 'n_div', not both")
    if "partial_ratio" in data:
        def ratio_ok(x: Any) -> str | None:
            if not _is_number(x) or not 0 < x < 1:
                return f"must be a number in (0, 1) such as 0.25, got {x!r}"
            n = round(1 / x)
            return None if math.isclose(1 / n, x, rel_tol=1e-6) else f"must be 1/n for an integer n, got {x!r}"
        ratios = choice_list("partial_ratio", ratio_ok, "ratios 1/n")
        n_div = tuple(round(1 / r) for r in ratios)
    else:
        n_div = choice_list("n_div", lambda x: None if _is_int(x) and x >= 2 else
                            f"must be an integer >= 2, got {x!r}", "integers >= 2", required=False, default=(4,))

    mlp_ratio = choice_list("mlp_ratio", lambda x: None if _is_number(x) and x > 0 else
                            f"must be a positive number, got {x!r}", "positive numbers")
    act = choice_list("act", one_of(ACTIVATIONS, "activation"), "activations")
    num_heads = choice_list("num_heads", positive_int, "positive integers", required=False, default=(4,))

    def resolution_ok(x: Any) -> str | None:
        if not _is_int(x):
            return f"must be an integer, got {x!r}"
        try:
            check_resolution((x, x))
        except ArchError as exc:
            return str(exc)
        return None
    resolution = choice_list("resolution", resolution_ok, "input resolutions", required=False, default=(224,))

    # depths: a list of 4 entries, each a list of choices or a {min, max, step} range.
    if "depths" not in data:
        raise SpaceError(f"{source}: missing field 'depths' (four per-stage lists or {{min, max}} ranges)")
    raw_depths = data["depths"]
    if not isinstance(raw_depths, list) or len(raw_depths) != NUM_STAGES:
        fail("depths", f"must list {NUM_STAGES} stages, got {raw_depths!r}")
    depths: list[Any] = []
    for i, entry in enumerate(raw_depths):
        where = f"depths[{i}]"
        if isinstance(entry, Mapping):
            extra = sorted(set(entry) - {"min", "max", "step"})
            if extra:
                fail(where, f"unknown key(s) {', '.join(map(str, extra))}; a range has min, max and optional step")
            lo, hi, step = entry.get("min"), entry.get("max"), entry.get("step", 1)
            for key, value in (("min", lo), ("max", hi), ("step", step)):
                if not _is_int(value) or value < 1:
                    fail(f"{where}.{key}", f"must be a positive integer, got {value!r}")
            if hi < lo:
                fail(where, f"max {hi} is below min {lo}")
            depths.append(IntRange(lo, hi, step))
        elif isinstance(entry, list) and entry:
            for j, d in enumerate(entry):
                if not _is_int(d) or d < 1:
                    fail(f"{where}[{j}]", f"must be an integer >= 1, got {d!r}")
            if len(set(entry)) != len(entry):
                fail(where, f"lists a depth twice: {entry!r}")
            depths.append(tuple(entry))
        else:
            fail(where, f"must be a non-empty list of depths or a {{min, max}} range, got {entry!r}")

    def per_stage(field_name: str, options: Sequence[str], what: str) -> tuple[tuple[str, ...], ...]:
        if field_name not in data:
            raise SpaceError(f"{source}: missing field '{field_name}' (per-stage lists of {what}s)")
        value = data[field_name]
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            value = [value] * NUM_STAGES  # one list for all stages
        if not isinstance(value, list) or len(value) != NUM_STAGES:
            fail(field_name, f"must be one list of {what}s or {NUM_STAGES} per-stage lists, got {value!r}")
        stages = []
        for i, entry in enumerate(value):
            where = f"{field_name}[{i}]"
            if not isinstance(entry, list) or not entry:
                fail(where, f"must be a non-empty list of {what}s, got {entry!r}")
            for j, item in enumerate(entry):
                if item not in options:
                    fail(f"{where}[{j}]", f"unknown {what} {item!r}; choose from {', '.join(options)}")
            if len(set(entry)) != len(entry):
                fail(where, f"lists a {what} twice: {entry!r}")
            stages.append(tuple(entry))
        return tuple(stages)

    mixers = per_stage("mixers", list(MIXERS), "mixer")
    spatial = per_stage("spatial", list(SPATIAL_ATTENTION), "spatial attention")

    fixed = data.get("fixed", {}) or {}
    if not isinstance(fixed, Mapping):
        fail("fixed", f"must be a mapping of {', '.join(_FIXED_FIELDS)}, got {fixed!r}")
    for key in fixed:
        if key not in _FIXED_FIELDS:
            fail(f"fixed.{key}", f"unknown field; fixed may set {', '.join(_FIXED_FIELDS)}")

    space = SearchSpace(name=name, embed_dim=embed_dim, depths=tuple(depths), n_div=n_div, mlp_ratio=mlp_ratio,
                        mixers=mixers, spatial=spatial, act=act, num_heads=num_heads, resolution=resolution,
                        fixed=dict(fixed), description=description, source=source)
    _check_all_points_valid(space, fail)
    return space


def _check_all_points_valid(space: SearchSpace, fail) -> None:
    """Every combination must be a valid ArchConfig. Validity is decided per stage, so checking each stage's
    (mixer, PAT_sp) against every global combination, with the other stages at a known-good setting, covers
    the product without enumerating it."""
    fixed = dict(space.fixed)
    try:
        ArchConfig(**fixed)
    except ArchError as exc:
        fail("fixed", str(exc))
    for embed, n_div, mlp, act, heads in itertools.product(space.embed_dim, space.n_div, space.mlp_ratio,
                                                           space.act, space.num_heads):
        base = dict(embed_dim=embed, n_div=n_div, mlp_ratio=mlp, act=act, num_heads=heads, **fixed)
        try:
            ArchConfig(mixers=("pconv",) * NUM_STAGES, spatial=("none",) * NUM_STAGES, **base)
        except ArchError as exc:
            fail("embed_dim/partial_ratio/mlp_ratio",
                 f"embed_dim={embed}, n_div={n_div}, mlp_ratio={mlp}: {exc}")
        for stage in range(NUM_STAGES):
            for mixer, spatial in itertools.product(space.mixers[stage], space.spatial[stage]):
                mixers = ["pconv"] * NUM_STAGES
                spatials = ["none"] * NUM_STAGES
                mixers[stage], spatials[stage] = mixer, spatial
                try:
                    ArchConfig(mixers=tuple(mixers), spatial=tuple(spatials), **base)
                except ArchError as exc:
                    fail(f"mixers[{stage}]", f"{mixer} with spatial={spatial}, embed_dim={embed}, n_div={n_div}, "
                                             f"num_heads={heads} is not a valid architecture: {exc}")


def load_space(path: "str | os.PathLike | None" = None) -> SearchSpace:
    """Load and validate a search-space YAML file; ``None`` loads the default ``spaces/patnet.yaml``.

    A bare name (``tiny``) resolves to ``spaces/<name>.yaml``. Errors name the file and field.
    """
    if path is None:
        path = DEFAULT_SPACE
    text_path = os.fspath(path)
    candidate = Path(text_path)
    if not candidate.exists() and not text_path.endswith((".yaml", ".yml")) and os.sep not in text_path:
        candidate = SPACES_DIR / f"{text_path}.yaml"
    if not candidate.exists():
        known = ", ".join(sorted(p.stem for p in SPACES_DIR.glob("*.yaml")))
        raise SpaceError(f"search space {text_path} does not exist; pass a YAML path or one of: {known}")
    data = read_yaml(candidate, SpaceError, "search space")
    return _parse(data, str(candidate))


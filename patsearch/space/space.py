"""Search spaces: a YAML file of choices per architecture field, validated on load.

A space maps every searchable :class:`~patsearch.arch.ArchConfig` field (declared in ``patsearch.arch``) to a
dimension of choices, one per stage for per-stage fields, plus the input resolution; Optuna parameters are
named after them (``embed_dim``, ``depth1`` ... ``depth4``, ``mixer3``, ...). Sampling, Optuna suggestions,
parsing, validation and the inverse mapping are loops over those declarations. Loading also checks that
*every* combination of choices is a valid architecture, so sampling, suggestions and the size count never meet
an invalid point.
"""
from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from patsearch.arch import (
    FIELDS,
    FIXED,
    NUM_STAGES,
    SEARCH,
    ArchConfig,
    ArchError,
    FieldSpec,
    LayerSpec,
    check_resolution,
    field_problem,
    is_int,
)
from patsearch.config import read_yaml
from patsearch.errors import UserError
from patsearch.resources import bundled_dir

SPACES_DIR = bundled_dir("spaces")  # the checkout's spaces/, or the installed copy
DEFAULT_SPACE = SPACES_DIR / "patnet-wide.yaml"
DEFAULT_SPACE_NAME = "patnet-wide"  # the ``name:`` in that file
# The first space's tables sit at the top of a profile folder (where they were shipped before there were others);
# every other space's, the default's included, in a sub-folder of its name.
TOP_FOLDER_SPACE_NAME = "patnet"

RESOLUTION = "resolution"  # the one dimension that is not an ArchConfig field
DEFAULT_RESOLUTION = 224
_SEARCHED = tuple(name for name, spec in FIELDS.items() if spec.role == SEARCH)
_FIXED_FIELDS = tuple(name for name, spec in FIELDS.items() if spec.role == FIXED)
_ALIASES = {spec.alias[0]: name for name, spec in FIELDS.items() if spec.alias}
_TOP_FIELDS = ("name", "description", *_SEARCHED, *_ALIASES, RESOLUTION, "fixed")


class SpaceError(UserError, ValueError):
    """A search-space file (or a sample handed to a space) is invalid."""


class Candidate(NamedTuple):
    """One point of a space: the architecture and the input resolution it runs at."""

    arch: ArchConfig
    resolution: int


# --- dimensions (in the manner of Optuna's distributions) ------------------------------------------------------
@dataclass(frozen=True)
class Categorical:
    """A list of choices; Optuna gets it as ``suggest_categorical``."""

    choices: tuple[Any, ...]

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.choices))

    def describe(self) -> str:
        return ", ".join(str(c) for c in self.choices)


@dataclass(frozen=True)
class IntRange:
    """An inclusive integer range ``{min, max, step}``; Optuna gets it as ``suggest_int``."""

    low: int
    high: int
    step: int = 1

    @property
    def choices(self) -> tuple[int, ...]:
        return tuple(range(self.low, self.high + 1, self.step))

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_int(name, self.low, self.high, step=self.step)

    def describe(self) -> str:
        return f"{self.low}..{self.high}" + (f" step {self.step}" if self.step != 1 else "")


Dimension = Categorical | IntRange


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space. Build it with :func:`load_space` or :meth:`from_dict`.

    ``dims`` maps each Optuna parameter name to its dimension, in suggestion order. The choices of an
    architecture field are also attributes: ``space.embed_dim`` (a tuple of choices), ``space.mixers`` (one
    tuple of choices per stage), ``space.resolution``.
    """

    name: str
    dims: Mapping[str, Dimension]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = "<dict>"

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are not dataclass fields: the choices of an architecture field.
        if name == RESOLUTION:
            return self.dims[RESOLUTION].choices
        spec = FIELDS.get(name)
        if spec is None or spec.role != SEARCH:
            raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")
        if spec.per_stage:
            return tuple(self.dims[p].choices for p in spec.params(name))
        return self.dims[name].choices

    # --- parameters ----------------------------------------------------------------------------------------
    def params(self) -> list[tuple[str, Dimension]]:
        """The space's dimensions in a fixed order, as ``(name, dimension)``; names are Optuna parameter names."""
        return list(self.dims.items())

    def size(self) -> int:
        """Number of distinct networks x resolutions. A conditional dimension counts only where it matters."""
        conditional = [n for n in _SEARCHED if FIELDS[n].relevant]
        read = [p for n in conditional for d in FIELDS[n].depends for p in FIELDS[d].params(d)]
        rest = math.prod(len(d.choices) for p, d in self.dims.items() if p not in conditional and p not in read)
        # Enumerate only the dimensions the conditions read (the four per-stage mixers, today).
        total = 0
        for combo in itertools.product(*(self.dims[p].choices for p in read)):
            values = _field_values(dict(zip(read, combo)), partial=True)
            total += math.prod(len(self.dims[n].choices) for n in conditional if FIELDS[n].relevant(values))
        return rest * total

    # --- sampling ------------------------------------------------------------------------------------------
    def sample_params(self, rng: int | np.random.Generator | None = None) -> dict[str, Any]:
        """Uniform random choices for every dimension (seeded by an int or a numpy Generator)."""
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        params: dict[str, Any] = {}
        for name, dim in self.dims.items():
            options = dim.choices
            value = options[int(rng.integers(len(options)))]
            params[name] = value.item() if isinstance(value, np.generic) else value
        return self._canonical(params)

    def sample(self, rng: int | np.random.Generator | None = None) -> Candidate:
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
        """Ask an Optuna trial for a point: categorical choices, ``suggest_int`` for integer ranges.

        Dimensions with a single choice are not suggested (they are constants); a conditional dimension
        (``num_heads``) is suggested only where it matters (a stage picked an attention mixer), so the trial's
        parameters name exactly the network it built. Returns ``Candidate(arch, resolution)``;
        ``space.to_candidate(trial.params)`` rebuilds it later.
        """
        params: dict[str, Any] = {}
        deferred = []
        for name, dim in self.dims.items():
            if name in FIELDS and FIELDS[name].relevant:
                deferred.append(name)  # decided once the fields it depends on are known
                continue
            params[name] = _suggest_one(trial, name, dim)
        values = _field_values(params, partial=True)
        for name in deferred:
            if FIELDS[name].relevant(values):
                params[name] = _suggest_one(trial, name, self.dims[name])
        return self.to_candidate(params)

    # --- turning samples into architectures ----------------------------------------------------------------
    def _canonical(self, params: dict[str, Any]) -> dict[str, Any]:
        # A dimension that does not change the network is pinned, so distinct samples are distinct networks.
        values = _field_values(params, partial=True)
        for name, dim in self.dims.items():
            if name in FIELDS and FIELDS[name].relevant and not FIELDS[name].relevant(values):
                params[name] = dim.choices[0]
        return params

    def to_arch(self, params: Mapping[str, Any]) -> ArchConfig:
        """The architecture description of a sample (``sample_params`` output or Optuna ``trial.params``)."""
        return self.to_candidate(params).arch

    def to_candidate(self, params: Mapping[str, Any]) -> Candidate:
        """Validate a sample against the space and build ``Candidate(arch, resolution)``.

        Missing dimensions with one choice (or that are conditional) take their first choice; anything else
        missing, unknown or outside the space is a :class:`SpaceError`.
        """
        unknown = sorted(set(params) - set(self.dims))
        if unknown:
            raise SpaceError(f"space {self.name!r}: unknown parameter(s) {', '.join(unknown)}; "
                             f"known: {', '.join(self.dims)}")
        values: dict[str, Any] = {}
        for name, dim in self.dims.items():
            options = dim.choices
            if name in params:
                value = params[name]
            elif len(options) == 1 or (name in FIELDS and FIELDS[name].relevant):
                value = options[0]
            else:
                raise SpaceError(f"space {self.name!r}: sample is missing parameter {name!r}")
            if value not in options:
                raise SpaceError(f"space {self.name!r}: {name}={value!r} is not in the space; "
                                 f"choices: {dim.describe()}")
            values[name] = value
        arch = ArchConfig(**_field_values(values), **dict(self.fixed))
        return Candidate(arch, int(values[RESOLUTION]))

    def params_of(self, arch: ArchConfig, resolution: int | None = None) -> dict[str, Any]:
        """The inverse of :meth:`to_candidate` for a point of the space (raises if it is not one)."""
        params: dict[str, Any] = {}
        for name in _SEARCHED:
            value = getattr(arch, name)
            if FIELDS[name].per_stage:
                params.update(zip(FIELDS[name].params(name), value))
            else:
                params[name] = value
        params[RESOLUTION] = self.resolution[0] if resolution is None else resolution
        self.to_candidate(params)
        mismatch = [k for k, v in self.fixed.items() if FIELDS[k].structural and getattr(arch, k) != v]
        if mismatch:
            raise SpaceError(f"space {self.name!r}: {', '.join(f'{k}={getattr(arch, k)!r}' for k in mismatch)} "
                             f"differs from the space's fixed value(s)")
        return params

    def contains(self, arch: ArchConfig, resolution: int | None = None) -> bool:
        """Whether the network (ignoring non-structural fields: name, drop-path rate) is a point of this space."""
        try:
            self.params_of(arch, resolution)
        except SpaceError:
            return False
        return True

    # --- what the profiler measures ------------------------------------------------------------------------
    def _stage_points(self, depths: tuple[int, ...]) -> Iterator[tuple[int, dict[str, Any], dict[str, Any], int]]:
        """Points that together contain every distinct block of the space: for every combination of the global
        choices, each stage's per-stage choices are varied with the other stages at their first choice. Block
        structure (and validity) depends on a stage's own choices and the global ones only, so this covers the
        product without enumerating it. Yields ``(stage, that stage's choices, ArchConfig kwargs, resolution)``.
        """
        per_stage = [n for n in _SEARCHED if FIELDS[n].per_stage and n != "depths"]
        global_ = [n for n in _SEARCHED if not FIELDS[n].per_stage]
        for combo in itertools.product(*(getattr(self, n) for n in global_), self.resolution):
            base = dict(zip(global_, combo[:-1]), depths=depths, **self.fixed)
            for stage in range(NUM_STAGES):
                for choice in itertools.product(*(getattr(self, n)[stage] for n in per_stage)):
                    stages = {n: [c[0] for c in getattr(self, n)] for n in per_stage}
                    for n, value in zip(per_stage, choice):
                        stages[n][stage] = value
                    yield stage, dict(zip(per_stage, choice)), {**base, **{n: tuple(v) for n, v in stages.items()}}, \
                        combo[-1]

    def layer_inputs(self) -> dict[str, tuple[LayerSpec, tuple[int, int, int]]]:
        """Every distinct layer any point of the space contains, keyed by ``LayerSpec.key(resolution)``.

        Values are ``(spec, (C, H, W))`` of the layer's input. Depths do not change which layers exist, so they
        are held at 1 (see :meth:`_stage_points` for why this covers the whole space).
        """
        out: dict[str, tuple[LayerSpec, tuple[int, int, int]]] = {}
        for _, _, kwargs, res in self._stage_points(depths=(1,) * NUM_STAGES):
            for spec, (c, h, w) in ArchConfig(**kwargs).layer_inputs(res):
                out.setdefault(spec.key((h, w)), (spec, (c, h, w)))
        return out

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "size": self.size(),
                "layers": len(self.layer_inputs()),
                "params": {n: d.describe() for n, d in self.dims.items()}}

    # --- loading -------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<dict>") -> SearchSpace:
        return _parse(data, source)


def _suggest_one(trial: Any, name: str, dim: Dimension) -> Any:
    if len(dim.choices) == 1:
        return dim.choices[0]  # a constant, not a search dimension
    return dim.suggest(trial, name)


def _field_values(params: Mapping[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """Optuna parameters (``depth1`` ... ``depth4``) -> ArchConfig field values (``depths``); ``partial``
    skips fields not all of whose parameters are present."""
    out: dict[str, Any] = {}
    for name in _SEARCHED:
        keys = FIELDS[name].params(name)
        if not all(k in params for k in keys):
            if partial:
                continue
            raise KeyError(name)
        out[name] = tuple(params[k] for k in keys) if FIELDS[name].per_stage else params[name]
    return out


# --- parsing and validation -----------------------------------------------------------------------------------
def _resolution_problem(x: Any) -> str | None:
    if not is_int(x):
        return f"must be an integer, got {x!r}"
    try:
        check_resolution((x, x))
    except ArchError as exc:
        return str(exc)
    return None


def _parse(data: Any, source: str) -> SearchSpace:
    def fail(field_name: str, message: str) -> None:
        raise SpaceError(f"{source}: field '{field_name}': {message}")

    if not isinstance(data, Mapping):
        raise SpaceError(f"{source}: a search space is a mapping of fields, got {type(data).__name__}")
    unknown = sorted(set(data) - set(_TOP_FIELDS), key=str)
    if unknown:
        raise SpaceError(f"{source}: unknown field(s) {', '.join(map(str, unknown))}; "
                         f"known fields: {', '.join(_TOP_FIELDS)}")
    data = dict(data)

    name = data.get("name", Path(source).stem)
    if not isinstance(name, str) or not name:
        fail("name", f"must be a non-empty string, got {name!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        fail("description", "must be a string")

    for alias, target in _ALIASES.items():
        if alias in data:
            if target in data:
                raise SpaceError(f"{source}: give either '{alias}' or '{target}', not both")
            convert = FIELDS[target].alias[1]
            entries = _dimension(data[alias], alias, lambda x: None, fail)  # shape only; values below
            converted = []
            for i, x in enumerate(entries.choices):
                try:
                    converted.append(convert(x))
                except ValueError as exc:
                    fail(f"{alias}[{i}]", str(exc))
            data[target] = converted

    dims: dict[str, Dimension] = {}
    defaults = ArchConfig()
    for field_name in _SEARCHED:
        spec = FIELDS[field_name]
        if field_name not in data:
            if not spec.optional:
                raise SpaceError(f"{source}: missing field '{field_name}' ("
                                 + (f"{NUM_STAGES} per-stage lists or one list for all stages)" if spec.per_stage
                                    else "a list of choices)"))
            default = getattr(defaults, field_name)
            data[field_name] = [list(default)] if spec.per_stage else [default]
        dims.update(_field_dimensions(field_name, spec, data[field_name], fail))
    dims[RESOLUTION] = _dimension(data.get(RESOLUTION, [DEFAULT_RESOLUTION]), RESOLUTION, _resolution_problem, fail)

    fixed = data.get("fixed", {}) or {}
    if not isinstance(fixed, Mapping):
        fail("fixed", f"must be a mapping of {', '.join(_FIXED_FIELDS)}, got {fixed!r}")
    for key, value in fixed.items():
        if key not in _FIXED_FIELDS:
            fail(f"fixed.{key}", f"unknown field; fixed may set {', '.join(_FIXED_FIELDS)}")
        problem = field_problem(key, value)
        if problem:
            fail(f"fixed.{problem[0]}", problem[1])

    space = SearchSpace(name=name, dims=dims, fixed=dict(fixed), description=description, source=source)
    _check_all_points_valid(space, fail)
    return space


def _field_dimensions(name: str, spec: FieldSpec, value: Any,
                      fail: Callable[[str, str], None]) -> dict[str, Dimension]:
    if not spec.per_stage:
        return {name: _dimension(value, name, spec.check, fail)}
    if isinstance(value, list) and value and not any(isinstance(v, (list, Mapping)) for v in value):
        value = [value] * NUM_STAGES  # one list of choices for all stages
    if not isinstance(value, list) or len(value) != NUM_STAGES:
        fail(name, f"must list {NUM_STAGES} stages (each a list of choices), or be one list for all stages; "
                   f"got {value!r}")
    return {param: _dimension(entry, f"{name}[{i}]", spec.check, fail)
            for i, (param, entry) in enumerate(zip(spec.params(name), value))}


def _dimension(value: Any, where: str, check: Callable[[Any], str | None],
               fail: Callable[[str, str], None]) -> Dimension:
    """A YAML entry as a dimension: a non-empty list of distinct valid choices, or an integer range."""
    if isinstance(value, Mapping):
        extra = sorted(set(value) - {"min", "max", "step"}, key=str)
        if extra:
            fail(where, f"unknown key(s) {', '.join(map(str, extra))}; a range has min, max and optional step")
        lo, hi, step = value.get("min"), value.get("max"), value.get("step", 1)
        for key, bound in (("min", lo), ("max", hi), ("step", step)):
            if not is_int(bound) or bound < 1:
                fail(f"{where}.{key}", f"must be a positive integer, got {bound!r}")
        if hi < lo:
            fail(where, f"max {hi} is below min {lo}")
        dim = IntRange(lo, hi, step)
        for x in (dim.low, dim.high):
            problem = check(x)
            if problem:
                fail(where, problem)
        return dim
    if not isinstance(value, list) or not value:
        fail(where, f"must be a non-empty list of choices or a {{min, max}} range, got {value!r}")
    for i, item in enumerate(value):
        problem = check(item)
        if problem:
            fail(f"{where}[{i}]", problem)
    if len(set(value)) != len(value):
        fail(where, f"lists a choice twice: {value!r}")
    return Categorical(tuple(value))


def _check_all_points_valid(space: SearchSpace, fail: Callable[[str, str], None]) -> None:
    """Every combination must be a valid ArchConfig; validity, like block structure, is decided per stage, so
    the points of :meth:`SearchSpace._stage_points` cover the product without enumerating it."""
    try:
        ArchConfig(**dict(space.fixed))
    except ArchError as exc:
        fail("fixed", str(exc))
    checked: set = set()
    for stage, choice, kwargs, _ in space._stage_points(depths=ArchConfig().depths):
        key = tuple(sorted((k, v) for k, v in kwargs.items()))
        if key in checked:  # one point per resolution: validity does not depend on it
            continue
        checked.add(key)
        try:
            ArchConfig(**kwargs)
        except ArchError as exc:
            (first, value), *others = choice.items()
            fail(f"{first}[{stage}]",
                 f"{value}{''.join(f' with {n}={v}' for n, v in others)}, "
                 + ", ".join(f"{n}={kwargs[n]}" for n in _SEARCHED if not FIELDS[n].per_stage)
                 + f" is not a valid architecture: {exc}")


def load_space(path: str | os.PathLike | None = None) -> SearchSpace:
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

"""Hardware constraints from lookup tables: ``cpu latency <= 35 ms``, ``h100 throughput >= 4000 img/s``, ...

Each constraint names a profile (a device name or a table path, see :func:`patsearch.profiler.load_profile`), a
kind (latency or throughput) and a limit. A candidate's predicted value is recorded on its trial and its
normalised violation is handed to Optuna (:func:`record_violations`): ``<= 0`` is feasible, and the size of a
positive value tells the sampler how far outside the feasible region a point is.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from patsearch.arch import NAMED_NETWORKS, NAMED_RESOLUTION, NUM_STAGES, ArchConfig
from patsearch.errors import UserError
from patsearch.search.budget import (
    BudgetError,
    describe_limit,
    format_latency,
    format_throughput,
    parse_latency,
    parse_throughput,
)

LATENCY = "latency"
THROUGHPUT = "throughput"
_PROFILE_METRIC = {LATENCY: "latency_ms", THROUGHPUT: "throughput"}


def lower_is_better(key: str) -> bool:
    """Whether the metric a constraint key names (``device:metric``, see :attr:`Constraint.key`) improves as it
    falls: latency does, throughput does not."""
    return key.rpartition(":")[2] == _PROFILE_METRIC[LATENCY]


# The trial system attribute every reader of constraints understands: Optuna 5's samplers (as trial.constraints
# {"0": ..., "1": ...}) and optuna-dashboard 0.21, which ignores the per-name attributes of trial.set_constraint
# and would show an over-budget trial as an ordinary complete one.
CONSTRAINTS_ATTR = "constraints"


def record_violations(trial, violations: Sequence[float]) -> None:
    """Hand a trial's violations to Optuna, in the order of the study's constraints (``patsearch_config``).

    One list, not ``trial.set_constraint`` per name as well: both would count every violation twice (the GP
    sampler would model each constraint twice). Setting it again (a retried trial carries its first attempt's)
    overwrites it with the same values.
    """
    trial.storage.set_trial_system_attr(trial._trial_id, CONSTRAINTS_ATTR, [float(v) for v in violations])


class ConstraintError(UserError):
    """A constraint cannot be set up (unknown profile, wrong metric, budget nothing in the space can meet)."""


@dataclass(frozen=True)
class ConstraintSpec:
    """What the user asked for, before any table is loaded: ``(device or None, kind, limit)``."""

    device: str | None  # None: the default device (--device)
    kind: str
    limit: float | None  # ms for latency, img/s for throughput; None: that of ``relative_to``
    relative_to: str | None = None  # a named network: the limit is its prediction on the same table

    @classmethod
    def parse(cls, text: str, kind: str) -> ConstraintSpec:
        """``"35ms"`` or ``"cpu=35ms"`` / ``"profiles/h100.json=4000fps"`` (device before the last ``=``), or a
        named network instead of the number (``"h200=fasternet_t2"``: at least as fast as it, as the table predicts
        both, so the table's bias cancels)."""
        device, _, value = text.rpartition("=")
        device = device.strip() or None
        if (name := value.strip().lower()) in NAMED_NETWORKS:
            return cls(device, kind, None, name)
        if name[:1].isalpha():  # a word, not an amount: most likely a misspelt network
            example = "35ms" if kind == LATENCY else "4000fps"
            raise BudgetError(f"{kind} {value.strip()!r}: neither an amount like {example} nor a named network "
                              f"({', '.join(NAMED_NETWORKS)})")
        parse = parse_latency if kind == LATENCY else parse_throughput
        return cls(device, kind, parse(value))


@dataclass(frozen=True)
class Constraint:
    """A loaded constraint: a profile that predicts one metric and the limit it must meet."""

    device: str
    kind: str
    limit: float
    profile: Any = field(compare=False, repr=False)
    relative_to: str | None = None  # the named network whose predicted value the limit is

    @property
    def key(self) -> str:
        """Name of the constraint's predicted value in trial user attrs (``pred:<key>``) and in summaries."""
        return f"{self.device}:{_PROFILE_METRIC[self.kind]}"

    @property
    def unit(self) -> str:
        return "ms" if self.kind == LATENCY else "img/s"

    def predict(self, arch: ArchConfig, resolution: int) -> float:
        return float(self.profile.predict(arch, resolution))

    def violation(self, value: float) -> float:
        """Normalised distance outside the limit (``<= 0`` is feasible), comparable between constraints."""
        if self.kind == LATENCY:
            return (value - self.limit) / self.limit
        return (self.limit - value) / self.limit

    def feasible(self, value: float) -> bool:
        return self.violation(value) <= 0

    def format(self, value: float) -> str:
        return format_latency(value) if self.kind == LATENCY else format_throughput(value)

    def describe(self) -> str:
        return describe_limit(self.device, self.kind, self.limit, self.relative_to)

    def to_dict(self) -> dict[str, Any]:
        out = {"device": self.device, "kind": self.kind, "limit": self.limit}
        return {**out, "relative_to": self.relative_to} if self.relative_to else out


def parse_constraints(latency_budgets: Sequence[str] = (), min_throughputs: Sequence[str] = ()) -> list[ConstraintSpec]:
    specs = [ConstraintSpec.parse(t, LATENCY) for t in latency_budgets]
    specs += [ConstraintSpec.parse(t, THROUGHPUT) for t in min_throughputs]
    if not specs:
        raise ConstraintError("give at least one constraint: --latency-budget 35ms (or --min-throughput 4000fps)")
    return specs


def load_constraints(specs: Iterable[ConstraintSpec], default_device: str | None = None,
                     loader=None) -> list[Constraint]:
    """Load each constraint's profile (``loader(device)``, default :func:`patsearch.profiler.load_profile`)."""
    if loader is None:
        from patsearch.profiler import load_profile as loader
    loaded: dict[str, Any] = {}
    out: list[Constraint] = []
    for spec in specs:
        device = spec.device or default_device or "cpu"
        if device not in loaded:
            loaded[device] = loader(device)
        profile = loaded[device]
        metric = getattr(profile, "metric", None)
        wanted = _PROFILE_METRIC[spec.kind]
        if metric is not None and metric != wanted:
            other = "--min-throughput" if metric == "throughput" else "--latency-budget"
            raise ConstraintError(f"profile {device!r} measures {metric}, not {wanted}; use {other} with it, "
                                  f"or profile the device for {spec.kind}")
        name = getattr(profile, "device", None) or device
        limit = spec.limit
        if spec.relative_to is not None:
            try:
                limit = float(profile.predict(NAMED_NETWORKS[spec.relative_to], NAMED_RESOLUTION))
            except UserError as exc:  # e.g. a table of another space that lacks the network's layers
                raise ConstraintError(f"{spec.relative_to} cannot set the {device} limit: {exc}") from None
        constraint = Constraint(str(name) if isinstance(name, str) else device, spec.kind, limit, profile,
                                spec.relative_to)
        if any(c.key == constraint.key for c in out):
            raise ConstraintError(f"two {spec.kind} constraints on {constraint.device}; give one limit per device")
        out.append(constraint)
    return out


def best_achievable(space: Any, constraint: Constraint) -> tuple[float, Any]:
    """The best value of ``constraint``'s metric over the space (lowest latency / highest throughput).

    Exact for tables that add per-layer costs: for every combination of the global choices (width, ratios,
    activation, heads, resolution) take each stage's shallowest depth and, stage by stage, its cheapest
    (mixer, PAT_sp) pair. Returns ``(value, Candidate)``.
    """
    sign = 1.0 if constraint.kind == LATENCY else -1.0
    best: tuple[float, Any] | None = None
    depths = tuple(min(choices) for choices in space.depths)
    for embed, n_div, mlp, act, heads, res in itertools.product(space.embed_dim, space.n_div, space.mlp_ratio,
                                                                space.act, space.num_heads, space.resolution):
        mixers = [m[0] for m in space.mixers]
        spatial = [s[0] for s in space.spatial]
        base = dict(embed_dim=embed, depths=depths, n_div=n_div, mlp_ratio=mlp, act=act, num_heads=heads,
                    **dict(space.fixed))
        for stage in range(NUM_STAGES):
            scored = []
            for mixer, sp in itertools.product(space.mixers[stage], space.spatial[stage]):
                mixers[stage], spatial[stage] = mixer, sp
                arch = ArchConfig(mixers=tuple(mixers), spatial=tuple(spatial), **base)
                scored.append((sign * constraint.predict(arch, res), mixer, sp))
            _, mixers[stage], spatial[stage] = min(scored, key=lambda x: x[0])
        arch = ArchConfig(mixers=tuple(mixers), spatial=tuple(spatial), **base)
        value = constraint.predict(arch, res)
        if best is None or sign * value < sign * best[0]:
            best = (value, (arch, res))
    assert best is not None
    return best


SHARE_SAMPLES = 2000  # random networks behind a feasible share: +-1 point at a 20% share (binomial, 1 sd)


def feasible_share(space: Any, constraints: Sequence[Constraint], samples: int = SHARE_SAMPLES,
                   seed: int = 0) -> float:
    """The share of the space's networks that meet every constraint, estimated on ``samples`` uniformly random
    distinct points (all of them when the space is smaller): how tight the budget is, and how many of a sampler's
    proposals will be over it."""
    points = space.samples(samples, seed=seed)
    if not points:
        return 0.0
    ok = sum(all(c.feasible(c.predict(arch, res)) for c in constraints) for arch, res in points)
    return ok / len(points)


def check_achievable(space: Any, constraints: Sequence[Constraint]) -> dict[str, float]:
    """Fail at once, with the best achievable value, if some constraint excludes the whole space."""
    best: dict[str, float] = {}
    for c in constraints:
        value, (arch, res) = best_achievable(space, c)
        best[c.key] = value
        if not c.feasible(value):
            what = "fastest" if c.kind == LATENCY else "highest-throughput"
            verb = "raise the budget to at least" if c.kind == LATENCY else "lower the floor to at most"
            raise ConstraintError(
                f"{c.describe()} is out of reach: the {what} architecture in space {getattr(space, 'name', '?')!r} "
                f"is predicted at {c.format(value)} on {c.device} (embed_dim {arch.embed_dim}, depths "
                f"{list(arch.depths)}, {res}px); {verb} {c.format(value)} or use a smaller space")
    return best

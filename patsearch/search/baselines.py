"""The hand-designed networks a search must beat: named PATNet variants and FasterNet points (FasterNet as an
architecture description of this family: pconv mixers, no PAT_sp) that meet every constraint.

They are enqueued as the study's first trials (so every search reports how it compares with PATNet at the same
budget) and are proxy-trained exactly like search candidates. A variant that is a point of the space is enqueued
by its parameters (so samplers learn from it too); otherwise it carries its own description and the space's
fixed fields (class count, head width) and is scored outside the space.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from patsearch.arch import FASTERNET_POINTS, NAMED_NETWORKS, VARIANTS, ArchConfig
from patsearch.errors import UserError
from patsearch.search.constraints import Constraint
from patsearch.search.objective import ATTR_ARCH, ATTR_BASELINE, ATTR_OUTSIDE_SPACE, ATTR_RESOLUTION

logger = logging.getLogger("patsearch.search")


@dataclass(frozen=True)
class Baseline:
    name: str
    arch: ArchConfig
    resolution: int
    params: dict[str, Any] | None  # Optuna parameters, or None when the space cannot express the variant
    predicted: dict[str, float]


def select_baselines(space: Any, constraints: Sequence[Constraint], names: str | Sequence[str] = "auto",
                     max_count: int | None = None) -> tuple[list[Baseline], list[str]]:
    """The variants to enqueue and a note for each variant left out (and why).

    ``names``: ``"auto"`` (every named network that fits, the largest of each family first, at most
    ``max_count``), ``"none"``, or a list of names (each must fit). Resolutions are tried from the space's largest
    down.
    """
    if isinstance(names, str):
        names = names.strip().lower()
        if names == "none":
            return [], []
        wanted = list(NAMED_NETWORKS) if names == "auto" else [n.strip() for n in names.split(",") if n.strip()]
        explicit = names != "auto"
    else:
        wanted, explicit = list(names), True
    unknown = [n for n in wanted if n not in NAMED_NETWORKS]
    if unknown:
        raise UserError(f"unknown baseline(s) {', '.join(unknown)}; choose from {', '.join(NAMED_NETWORKS)}, "
                        "'auto' or 'none'")
    chosen: list[Baseline] = []
    notes: list[str] = []
    for name in wanted:
        baseline, why = _fit(space, constraints, name)
        if baseline is None:
            notes.append(f"{name}: {why}")
            if explicit:
                raise UserError(f"baseline {name} cannot be used: {why}")
        else:
            chosen.append(baseline)
    # Largest first, the two families taking turns: the strongest hand design of each within the budget matters most.
    chosen.sort(key=_strength_order)
    if max_count is not None and len(chosen) > max_count:
        for b in chosen[max_count:]:
            notes.append(f"{b.name}: fits, but only {max_count} baseline(s) are run in a search this short "
                         "(--baselines NAME to choose)")
        chosen = chosen[:max_count]
    return chosen, notes


def _strength_order(b: Baseline) -> tuple[int, int]:
    family = VARIANTS if b.name in VARIANTS else FASTERNET_POINTS
    return -list(family).index(b.name), 0 if family is VARIANTS else 1


def _fit(space: Any, constraints: Sequence[Constraint], name: str) -> tuple[Baseline | None, str]:
    variant = NAMED_NETWORKS[name]
    fixed = {k: v for k, v in dict(getattr(space, "fixed", {})).items() if k != "drop_path_rate"}
    last_why = "no resolution of the space fits"
    for resolution in sorted(space.resolution, reverse=True):
        params = None
        arch = variant
        try:
            params = _suggested_params(space, space.params_of(variant, resolution))
        except Exception:  # not a point of the space: keep the variant, adopt the space's fixed fields
            arch = variant.replace(**fixed)
        try:
            predicted = {c.key: c.predict(arch, resolution) for c in constraints}
        except Exception as exc:  # e.g. the table has no entry for the variant's layers
            if "no entry for layer" in str(exc):
                return None, "its layers are not in the lookup table (outside the profiled space)"
            return None, f"cannot be predicted ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        bad = [c for c in constraints if not c.feasible(predicted[c.key])]
        if not bad:
            return Baseline(name, arch, resolution, params, predicted), ""
        last_why = "; ".join(f"predicted {c.format(predicted[c.key])} at {resolution}px misses {c.describe()}"
                             for c in bad)
    return None, last_why


def _suggested_params(space: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Only the parameters the space's ``suggest`` actually asks for (constants are not Optuna parameters)."""
    import optuna

    trial = optuna.trial.FixedTrial(params)
    space.suggest(trial)
    return dict(trial.params)


def enqueue_baselines(study, baselines: Sequence[Baseline]) -> None:
    for b in baselines:
        attrs: dict[str, Any] = {ATTR_BASELINE: b.name}
        if b.params is None:
            attrs.update({ATTR_OUTSIDE_SPACE: True, ATTR_ARCH: b.arch.to_dict(), ATTR_RESOLUTION: b.resolution})
        study.enqueue_trial(b.params or {}, user_attrs=attrs)

"""``BenchOptions``: what ``patsearch bench`` measures and how, validated once, frozen, loadable from YAML.

The library API of the benchmark (``build_bench(BenchOptions("h200", forms=("fused", "fast")))``;
:func:`patsearch.profiler.bench.run_bench` builds one from keyword arguments). The protocol overrides (``batch``,
``dtype``, ``channels_last``, ``threads``, ``clock``, ``cuda_graphs``, ``tf32``) are checked by the device's
:class:`~patsearch.profiler.devices.Protocol`, their one definition, when the options are made; the forms by the
form registry. The measurement budget is a test hook (code, not an option): :func:`build_bench` takes it.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from patsearch.arch import is_int
from patsearch.models.forms import BENCH_FORMS, FormError, canonical_form, form_names, get_form
from patsearch.profiler.devices import DeviceError
from patsearch.profiler.options import DeviceOptions

# Any measurable form may be asked for; BENCH_FORMS (the default) first in the choices.
CHOICES = BENCH_FORMS + tuple(f for f in form_names(measurable_only=True) if f not in BENCH_FORMS)
FORMATS = ("md", "csv", "json")


class BenchOptionsError(DeviceError, ValueError):
    """A bench option (flag, keyword or options-file field) is invalid."""


@dataclass(frozen=True)
class BenchOptions(DeviceOptions):
    """One ``patsearch bench`` run: the device and its protocol overrides, the models and forms side by side,
    and how the table is printed (``format``) and saved (``out``, format from its suffix)."""

    options_error = BenchOptionsError
    options_what = "bench options"

    models: tuple[str, ...] | None = None  # None: PATNet T0-L, FasterNet T0-L and the paper's timm peers
    # one architecture file measured instead of ``models``; a search's best.yaml gets the measurement recorded
    arch: str | None = None
    forms: tuple[str, ...] = BENCH_FORMS
    resolution: int = 224
    group: int = 4  # models measured interleaved in one group
    # each group timed this many times over; a row's value is the median of its rounds' medians, so a noisy host's
    # drift (a shared VM) shows as the rounds' range instead of moving one model's figure
    rounds: int = 1
    format: str = "md"
    out: str | None = None
    progress: bool = True
    command: str | None = None  # recorded in the table (None: this process's command line)

    def __post_init__(self) -> None:
        for name in ("out", "arch"):  # PathLike -> str: YAML-safe, comparable
            if isinstance(getattr(self, name), os.PathLike):
                object.__setattr__(self, name, os.fspath(getattr(self, name)))
        if self.arch is not None:
            if self.models is not None and tuple(self.models) != (self.arch,):
                raise BenchOptionsError("give --arch FILE or --models, not both")
            if not (isinstance(self.arch, str) and os.path.isfile(self.arch)):
                raise BenchOptionsError(f"--arch {self.arch}: no such file; pass a search's best.yaml or an "
                                        "architecture YAML")
            object.__setattr__(self, "models", (self.arch,))
        for name in ("models", "forms"):  # a list (YAML, keywords) or "a,b" (a flag) -> a tuple: frozen, hashable
            value = getattr(self, name)
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",")]
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, name, tuple(value))
        if isinstance(self.forms, tuple):  # an alias names the same form: one row, under the registry's name
            object.__setattr__(self, "forms", tuple(canonical_form(f) for f in self.forms))
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for name in ("models", "forms"):  # safe_dump writes lists, not tuples
            if data[name] is not None:
                data[name] = list(data[name])
        return data


def _validate(o: BenchOptions) -> None:
    need = o.need

    def names(value: Any) -> bool:
        return isinstance(value, tuple) and bool(value) and all(isinstance(v, str) and v for v in value)

    need(o.models is None or names(o.models), "models", "a non-empty list of model names (or unset)")
    need(names(o.forms), "forms", f"a non-empty list of forms from {', '.join(CHOICES)}")
    # the networks downsample 32x: a smaller input has no last stage
    need(is_int(o.resolution) and o.resolution >= 32, "resolution", "an integer of at least 32")
    need(is_int(o.group) and o.group >= 1, "group", "at least 1")
    need(is_int(o.rounds) and o.rounds >= 1, "rounds", "a positive integer")
    need(o.format in FORMATS, "format", ", ".join(FORMATS[:-1]) + f" or {FORMATS[-1]}")
    need(isinstance(o.progress, bool), "progress", "true or false")
    for name in ("out", "command"):
        value = getattr(o, name)
        need(value is None or (isinstance(value, str) and bool(value)), name, "a non-empty string or unset")
    for form in o.forms:
        try:
            get_form(form, among=CHOICES, what="--forms")
        except FormError as exc:
            raise BenchOptionsError(str(exc)) from None
    o.check_device(BenchOptionsError)  # the device name and the protocol overrides


__all__ = ["CHOICES", "BenchOptions", "BenchOptionsError", "FORMATS"]

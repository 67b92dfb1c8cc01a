"""``ProfileOptions``: what ``patsearch profile`` measures and how, validated once, frozen, loadable from YAML.

The library API of the profiler (``build_profile(ProfileOptions("h200", validate=20))``;
:func:`patsearch.profiler.profile_device` builds one from keyword arguments). The protocol overrides (``batch``,
``dtype``, ``channels_last``, ``threads``, ``form``, ``clock``, ``cuda_graphs``, ``tf32``) are checked by the device's
:class:`~patsearch.profiler.devices.Protocol`, their one definition, when the options are made. Test hooks (layer
and model factories, measurement budgets) are code, not options: :func:`build_profile` takes them as keywords.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from patsearch.arch import is_int
from patsearch.config import OptionsMixin
from patsearch.profiler.devices import DeviceError, Protocol, get_device


class ProfileOptionsError(DeviceError, ValueError):
    """A profiling option (flag, keyword or options-file field) is invalid."""


@dataclass(frozen=True)
class DeviceOptions(OptionsMixin):
    """The device a command measures on and the overrides of its protocol (None: the device's own), the fields
    ``ProfileOptions`` and ``BenchOptions`` share; the overrides are checked by the device's protocol."""

    device: str
    batch: int | None = None
    dtype: str | None = None
    channels_last: bool | None = None
    threads: int | None = None
    clock: str | None = None
    cuda_graphs: bool | None = None
    tf32: bool | None = None

    overrides = ("batch", "dtype", "channels_last", "threads", "clock", "cuda_graphs", "tf32")

    def protocol(self) -> Protocol:
        """The device's protocol with this run's overrides (validated there)."""
        return get_device(self.device).protocol_with(**{name: getattr(self, name) for name in self.overrides})

    def check_device(self, error: type[DeviceError]) -> None:
        """One-line ``error`` for a device that is no name or a switch that is no bool, then the protocol's own
        checks of the overrides."""
        if not (isinstance(self.device, str) and self.device):
            raise error(f"--device must be a device name such as cpu, epyc or h200, got {self.device!r}")
        for name in ("channels_last", "cuda_graphs", "tf32"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool):
                raise error(f"--{name.replace('_', '-')} must be true, false or unset, got {getattr(self, name)!r}")
        self.protocol()


@dataclass(frozen=True)
class ProfileOptions(DeviceOptions):
    """One ``patsearch profile`` run: the device and its protocol overrides, the space, where the table goes,
    and the optional trace / validation / adaptation steps (see :func:`patsearch.profiler.run.build_profile`)."""

    options_error = ProfileOptionsError
    options_what = "profile options"
    overrides = (*DeviceOptions.overrides, "form")

    space: str | None = None  # search-space YAML or name (None: patnet)
    out: str | None = None  # profile JSON (None: the user's profile folder)
    form: str | None = None  # a protocol override too (bench measures several forms instead)
    # steps after the layer table
    validate: int = 0
    calibrate: int | None = None
    adapt: bool = False
    adapt_from: str | None = None
    seed: int = 0
    trace: str | None = None
    plot: str | None = None
    fresh: bool = False
    passes: int = 1
    # measure nothing: refit the calibration and fidelity of the networks the profile holds (``partial``: of a
    # validation cut short, over the networks it measured)
    refit: bool = False
    partial: bool = False
    progress: bool = True
    command: str | None = None  # recorded in the profile (None: this process's command line)

    def __post_init__(self) -> None:
        for name in ("space", "out", "adapt_from", "trace", "plot"):  # PathLike -> str: YAML-safe, comparable
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, os.fspath(value))
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _validate(o: ProfileOptions) -> None:
    need = o.need

    need(is_int(o.validate) and o.validate >= 0, "validate", "a non-negative number of networks")
    need(o.calibrate is None or (is_int(o.calibrate) and o.calibrate >= 0), "calibrate",
         "a non-negative number of networks (or unset)")
    need(is_int(o.passes) and o.passes >= 1, "passes", "at least 1")
    need(is_int(o.seed), "seed", "an integer")
    for name in ("adapt", "fresh", "progress", "refit", "partial"):
        need(isinstance(getattr(o, name), bool), name, "true or false")
    for name in ("space", "out", "adapt_from", "trace", "plot", "command"):
        value = getattr(o, name)
        need(value is None or (isinstance(value, str) and bool(value)), name, "a non-empty string or unset")
    if o.partial and not o.refit:
        raise ProfileOptionsError("--partial goes with --refit (scoring a validation that was cut short)")
    if o.refit and (o.validate < 1 or (o.calibrate is not None and o.calibrate < 1)):
        raise ProfileOptionsError("--refit needs --validate N and --calibrate N (> 0): the held-out and calibration "
                                  "networks the profile was validated with")
    if o.adapt_from is not None and not o.adapt:
        raise ProfileOptionsError(f"--adapt-from {o.adapt_from} needs --adapt (it names the table to adapt)")
    o.check_device(ProfileOptionsError)  # the device name and the protocol overrides

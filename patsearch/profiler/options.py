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

import yaml

from patsearch.arch import is_int
from patsearch.config import OptionsMixin
from patsearch.profiler.devices import DeviceError, Protocol, get_device


class ProfileOptionsError(DeviceError, ValueError):
    """A profiling option (flag, keyword or options-file field) is invalid."""


@dataclass(frozen=True)
class ProfileOptions(OptionsMixin):
    """One ``patsearch profile`` run: the device and its protocol overrides, the space, where the table goes,
    and the optional trace / validation / adaptation steps (see :func:`patsearch.profiler.run.build_profile`)."""

    options_error = ProfileOptionsError
    options_what = "profile options"

    device: str
    space: str | None = None  # search-space YAML or name (None: patnet)
    out: str | None = None  # profile JSON (None: the user's profile folder)
    # protocol overrides (None: the device's own)
    batch: int | None = None
    dtype: str | None = None
    channels_last: bool | None = None
    threads: int | None = None
    form: str | None = None
    clock: str | None = None
    cuda_graphs: bool | None = None
    tf32: bool | None = None
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
    progress: bool = True
    command: str | None = None  # recorded in the profile (None: this process's command line)

    def __post_init__(self) -> None:
        for name in ("space", "out", "adapt_from", "trace", "plot"):  # PathLike -> str: YAML-safe, comparable
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, os.fspath(value))
        _validate(self)

    def protocol(self) -> Protocol:
        """The device's protocol with this run's overrides (validated there)."""
        return get_device(self.device).protocol_with(batch=self.batch, dtype=self.dtype,
                                                     channels_last=self.channels_last, threads=self.threads,
                                                     form=self.form, clock=self.clock,
                                                     cuda_graphs=self.cuda_graphs, tf32=self.tf32)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _validate(o: ProfileOptions) -> None:
    def need(ok: bool, name: str, what: str) -> None:
        if not ok:
            raise ProfileOptionsError(f"--{name.replace('_', '-')} must be {what}, got {getattr(o, name)!r}")

    need(isinstance(o.device, str) and bool(o.device), "device", "a device name such as cpu, epyc or h200")
    need(is_int(o.validate) and o.validate >= 0, "validate", "a non-negative number of networks")
    need(o.calibrate is None or (is_int(o.calibrate) and o.calibrate >= 0), "calibrate",
         "a non-negative number of networks (or unset)")
    need(is_int(o.passes) and o.passes >= 1, "passes", "at least 1")
    need(is_int(o.seed), "seed", "an integer")
    need(o.channels_last is None or isinstance(o.channels_last, bool), "channels_last", "true, false or unset")
    need(o.cuda_graphs is None or isinstance(o.cuda_graphs, bool), "cuda_graphs", "true, false or unset")
    need(o.tf32 is None or isinstance(o.tf32, bool), "tf32", "true, false or unset")
    for name in ("adapt", "fresh", "progress"):
        need(isinstance(getattr(o, name), bool), name, "true or false")
    for name in ("space", "out", "adapt_from", "trace", "plot", "command"):
        value = getattr(o, name)
        need(value is None or (isinstance(value, str) and bool(value)), name, "a non-empty string or unset")
    if o.adapt_from is not None and not o.adapt:
        raise ProfileOptionsError(f"--adapt-from {o.adapt_from} needs --adapt (it names the table to adapt)")
    o.protocol()  # the device name and the protocol overrides, checked by their one definition

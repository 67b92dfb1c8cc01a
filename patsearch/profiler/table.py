"""Lookup tables: per-layer timings of one device under one protocol, with provenance, in one JSON file.

A profile file holds ``entries`` (one per distinct layer, keyed by ``LayerSpec.key(resolution)``), end-to-end
``networks`` measured for calibration and validation, the fitted ``calibration``, the ``fidelity`` report and
``provenance`` (hardware, torch/CUDA/ROCm versions, protocol, form, date, command). Writes are atomic (temp
file + rename), so an interrupted build leaves the last saved state, and a rebuild measures only what is missing.

This module is the format and its lookup (load, find by device name, hardware and software checks); building a
table (the measuring loop) is :mod:`patsearch.profiler.build`.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from patsearch.errors import UserError
from patsearch.io import atomic_open
from patsearch.profiler.devices import Device, Protocol, device_for_host, environment, get_device, hardware_name
from patsearch.profiler.errors import ProfileError
from patsearch.resources import bundled_dir, shipped_profiles_ignored, user_profiles_dir
from patsearch.space import DEFAULT_SPACE_NAME, SPACES_DIR, TOP_FOLDER_SPACE_NAME

logger = logging.getLogger(__name__)

FORMAT = "patsearch-profile"
FORMAT_VERSION = 1
PROFILES_DIR = bundled_dir("profiles")  # the shipped, read-only tables: the checkout's profiles/ or the installed copy


class StaleProfileWarning(UserWarning):
    """A profile was made with other software (or for hardware this host cannot check)."""


def _space_name(space: Any | None) -> str:
    """``space``'s name, ``None`` standing for the default space."""
    return getattr(space, "name", None) or DEFAULT_SPACE_NAME


# Each space's tables sit in a sub-folder of its name (the first space's at the top), so a device has one table per
# space (a table extended with another space's layers would mix two days' measurements).
def space_folder(space: Any | None) -> str | None:
    """The sub-folder of a profile folder that holds the tables of ``space`` (``None``: the default space);
    ``None`` where they sit in the folder itself."""
    name = _space_name(space)
    return None if name == TOP_FOLDER_SPACE_NAME else name


def space_flag(space: Any | None) -> str:
    """`` --space NAME`` for commands suggested about a space other than the default, else nothing."""
    if _space_name(space) == DEFAULT_SPACE_NAME:
        return ""
    return f" --space {space.name if (SPACES_DIR / f'{space.name}.yaml').exists() else space.source}"


def profile_path(device: str, protocol: Protocol, directory: str | os.PathLike | None = None, *,
                 space: Any | None = None) -> Path:
    """Where a profile of ``device`` under ``protocol`` is written: ``directory``, by default the user's profile
    folder (in ``space``'s sub-folder for a space other than the default)."""
    if directory is None:
        sub = space_folder(space)
        directory = user_profiles_dir() / sub if sub else user_profiles_dir()
    return Path(directory) / f"{device}-{protocol.slug()}.json"


def profile_dirs() -> list[Path]:
    """Where device names are looked up, first match wins: the user's profiles, then the shipped ones (unless
    ``PATSEARCH_IGNORE_SHIPPED_PROFILES`` is set)."""
    dirs = [user_profiles_dir()]
    if not shipped_profiles_ignored():
        dirs.append(PROFILES_DIR)
    return dirs


def space_dirs(dirs: Iterable[Path], space: Any | None) -> list[Path]:
    """``dirs`` with ``space``'s sub-folder of each before it (a table of the space itself is preferred)."""
    sub = space_folder(space)
    return [folder for d in dirs for folder in ([Path(d) / sub] if sub else []) + [Path(d)]]


def layer_keys(space: Any) -> frozenset[str]:
    """The keys of every layer of ``space``: what a table must hold to predict it (a fraction of a second to list,
    so a caller checking several tables lists them once)."""
    return frozenset(space.layer_inputs())


def covers(profile: Profile, keys: frozenset[str]) -> bool:
    """Whether ``profile`` has an entry for every layer in ``keys`` (:func:`layer_keys`)."""
    return keys <= profile.entries.keys()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _torch_release(version: str | None) -> str:
    """``2.11.0+cu130`` -> ``2.11``: minor releases change kernels, local tags and patches rarely do."""
    if not version:
        return ""
    return ".".join(version.split("+")[0].split(".")[:2])


class Profile:
    """A device's lookup table plus its calibration and fidelity report.

    Use :func:`patsearch.profiler.load_profile` to open one. ``metric`` is ``latency_ms`` (lower is better) or
    ``throughput`` (images/s, higher is better); :meth:`predict` returns that metric for an architecture.
    """

    def __init__(self, data: dict[str, Any], path: Path | None = None) -> None:
        self.data = data
        self.path = path
        self._predictor = None

    # --- construction and files ----------------------------------------------------------------------------
    @classmethod
    def new(cls, device: Device, protocol: Protocol, *, command: str | None = None,
            path: Path | None = None) -> Profile:
        env = environment(device)
        data = {
            "format": FORMAT, "version": FORMAT_VERSION, "device": device.name, "backend": device.backend,
            "protocol": protocol.to_dict(),
            "provenance": {**env, "form": protocol.form, "date": _now(), "updated": _now(),
                           "command": command if command is not None else " ".join(sys.argv),
                           "spaces": {}, "build_seconds": 0.0},
            "entries": {}, "networks": {}, "calibration": None, "fidelity": None,
        }
        return cls(data, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Profile:
        path = Path(path)
        hint = "delete it or rebuild it with `patsearch profile --device DEVICE --fresh`"
        try:
            text = path.read_text()
        except OSError as exc:
            raise ProfileError(f"cannot read profile {path}: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProfileError(f"profile {path} is corrupt (not valid JSON: {exc.msg} at line {exc.lineno}); "
                               f"{hint}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ProfileError(f"{path} is not a patsearch profile (no format: {FORMAT!r} marker); {hint}")
        if data.get("version") != FORMAT_VERSION:
            raise ProfileError(f"profile {path} has format version {data.get('version')!r}; this patsearch reads "
                               f"version {FORMAT_VERSION}; {hint}")
        required = {"device": str, "backend": str, "protocol": dict, "provenance": dict, "entries": dict,
                    "networks": dict}
        for key, kind in required.items():
            if not isinstance(data.get(key), kind):
                raise ProfileError(f"profile {path} is corrupt: field {key!r} is missing or not a "
                                   f"{kind.__name__}; {hint}")
        for key, entry in data["entries"].items():
            if not isinstance(entry, dict) or not isinstance(entry.get("ms"), (int, float)) or entry["ms"] <= 0:
                raise ProfileError(f"profile {path} is corrupt: entry {key!r} has no positive 'ms' time; {hint}")
        try:
            Protocol.from_dict(data["protocol"])
        except (TypeError, UserError) as exc:
            raise ProfileError(f"profile {path} is corrupt: bad protocol ({exc}); {hint}") from None
        return cls(data, path)

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write atomically: a reader (or a kill) never sees half a file."""
        path = Path(path or self.path)
        self.path = path
        self.data["provenance"]["updated"] = _now()
        with atomic_open(path, "w") as fh:
            json.dump(self.data, fh, indent=1, sort_keys=False)
            fh.write("\n")
        return path

    # --- accessors -----------------------------------------------------------------------------------------
    @property
    def device(self) -> str:
        return self.data["device"]

    @property
    def backend(self) -> str:
        return self.data["backend"]

    @property
    def protocol(self) -> Protocol:
        return Protocol.from_dict(self.data["protocol"])

    @property
    def metric(self) -> str:
        """``latency_ms`` (lower is better) or ``throughput`` (images per second, higher is better)."""
        return self.data["protocol"]["metric"]

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "throughput"

    @property
    def provenance(self) -> dict[str, Any]:
        return self.data["provenance"]

    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        return self.data["entries"]

    @property
    def networks(self) -> dict[str, dict[str, Any]]:
        return self.data["networks"]

    @property
    def calibration(self) -> dict[str, Any] | None:
        return self.data.get("calibration")

    @property
    def fidelity(self) -> dict[str, Any] | None:
        return self.data.get("fidelity")

    # --- staleness -----------------------------------------------------------------------------------------
    def check_fresh(self, *, allow_stale: bool = False, strict_software: bool = False) -> list[str]:
        """Check this profile against the host it is used on.

        Raises :class:`ProfileError` if the profile's kind of device is present here but is other hardware
        (unless ``allow_stale``, which turns that into a warning). Warns (:class:`StaleProfileWarning`) if torch's
        release differs (raises with ``strict_software``) and if the device cannot be checked on this host (a GPU
        profile used on a CPU-only machine). Returns the notes it issued.
        """
        notes: list[str] = []
        prov = self.provenance
        made_on = prov.get("hardware") or "unknown hardware"
        here = _hardware_here(self.backend)
        name = self.path.name if self.path else self.device
        if here is None:
            notes.append(f"profile {name} was measured on {made_on}; this host has no GPU to check it against, "
                         "so predictions assume that hardware")
        elif here != made_on:
            fits = device_for_host(self.backend, here)  # `epyc` refuses an Intel host: name a device that fits
            message = (f"profile {name} was measured on {made_on!r} but this host has {here!r}; run "
                       f"`patsearch profile --device {fits} --adapt` (a few minutes) or `patsearch profile "
                       f"--device {fits} --validate 60` (a full table) here to measure this hardware")
            if not allow_stale:
                raise ProfileError(message + " (or allow a stale profile explicitly)")
            notes.append(message)
        import torch

        made_with, here_with = _torch_release(prov.get("torch")), _torch_release(torch.__version__)
        # Only where the device itself is here does this host's torch run the kernels the profile predicts.
        if here is not None and made_with != here_with:
            message = (f"profile {name} was measured with torch {prov.get('torch')} but this host runs torch "
                       f"{torch.__version__}; kernels differ between releases, re-run `patsearch profile "
                       f"--device {self.device}` for exact figures")
            if strict_software:
                raise ProfileError(message)
            notes.append(message)
        for note in notes:
            warnings.warn(note, StaleProfileWarning, stacklevel=2)
        return notes

    def check_compatible(self, device: Device, protocol: Protocol, env: Mapping[str, Any]) -> None:
        """Before adding measurements: same device, protocol, hardware and torch, or refuse to mix."""
        name = self.path or self.device
        fresh = "pass --fresh to start a new table, or --out for another file"
        if self.device != device.name:
            raise ProfileError(f"{name} is a profile of device {self.device!r}, not {device.name!r}; {fresh}")
        if self.protocol != protocol:
            raise ProfileError(f"{name} was measured with protocol {self.protocol.slug()}, not "
                               f"{protocol.slug()}; {fresh}")
        for key in ("hardware", "torch"):
            if self.provenance.get(key) != env.get(key):
                raise ProfileError(f"{name} was measured with {key} {self.provenance.get(key)!r}, this host has "
                                   f"{env.get(key)!r}; measurements would not mix; {fresh}")

    # --- prediction ----------------------------------------------------------------------------------------
    @property
    def predictor(self):
        if self._predictor is None:
            from patsearch.profiler.predictor import Predictor

            self._predictor = Predictor(self)
        return self._predictor

    def predict(self, arch: Any, resolution: int | tuple[int, int] | None = None) -> float:
        """Predicted ``metric`` of one architecture (ArchConfig, variant name, path or Candidate)."""
        return self.predictor.predict(arch, resolution)

    def predict_many(self, archs: Iterable[Any], resolution: int | None = None):
        """Vectorised :meth:`predict`: a numpy array, one value per architecture or Candidate."""
        return self.predictor.predict_many(archs, resolution)

    def predict_ms(self, arch: Any, resolution: int | tuple[int, int] | None = None) -> float:
        """Predicted time of one batch in milliseconds (calibrated)."""
        return self.predictor.predict_ms(arch, resolution)

    def summary(self) -> dict[str, Any]:
        prov = self.provenance
        return {"path": str(self.path), "device": self.device, "metric": self.metric,
                "protocol": self.protocol.slug(), "hardware": prov.get("hardware"), "torch": prov.get("torch"),
                "entries": len(self.entries), "networks": len(self.networks), "date": prov.get("date"),
                "calibration": (self.calibration or {}).get("model"), "fidelity": self.fidelity}


def _hardware_here(backend: str) -> str | None:
    try:
        return hardware_name(backend)
    except Exception:  # noqa: BLE001 - a broken GPU stack means we cannot check, not that the profile is bad
        return None


# --- finding profiles ------------------------------------------------------------------------------------------
def find_profile(device_or_path: str | os.PathLike, directory: str | os.PathLike | None = None, *,
                 space: Any | None = None) -> Path:
    """A profile path from a path or a device name (its default protocol first, else its only profile).

    Names are looked up in ``directory`` alone if given, else in :func:`profile_dirs` in order; with ``space``,
    each folder's sub-folder for that space comes first and a table that lacks some of its layers is passed over.
    """
    text = os.fspath(device_or_path)
    if text.endswith(".json") or os.sep in text:
        if not Path(text).exists():
            raise ProfileError(f"profile {text} does not exist; build one with `patsearch profile --device NAME`")
        return Path(text)
    device = get_device(text)
    dirs = space_dirs([Path(directory)] if directory is not None else profile_dirs(), space)
    have: list[str] = []
    partial: list[str] = []
    keys: frozenset[str] | None = None  # the space's layers, listed at the first table found
    for folder in dirs:
        default = profile_path(device.name, device.protocol, folder)
        others = sorted(folder.glob(f"{device.name}-*.json"))
        found = [default] if default.exists() else others
        if len(found) > 1:
            raise ProfileError(f"several profiles for device {device.name!r} in {folder}: "
                               f"{', '.join(p.name for p in others)}; pass one by path")
        if found and space is not None and keys is None:
            keys = layer_keys(space)
        if found and (keys is None or _covers_path(found[0], keys)):
            return found[0]
        partial += [str(p) for p in found]
        have += sorted(p.name for p in folder.glob("*.json"))
    flag = space_flag(space)
    lacking = (f"; {', '.join(partial)} {'lacks' if len(partial) == 1 else 'lack'} layers of space {space.name!r}"
               if partial and space is not None else "")
    where = " or ".join(str(d) for d in dirs if d.exists() or space_folder(space) not in d.parts)
    raise ProfileError(f"no profile for device {device.name!r} in {where}"
                       + (f" (have: {', '.join(have)})" if have and not lacking else "") + lacking
                       + f"; run `patsearch profile --device {device.name}{flag} --adapt` (a few minutes) or "
                         f"`patsearch profile --device {device.name}{flag} --validate 60` (a full table) first")


def _covers_path(path: Path, keys: frozenset[str]) -> bool:
    try:
        return covers(Profile.load(path), keys)
    except ProfileError:
        return True  # a broken table is reported by the caller's load, with its own message


def load_profile(device_or_path: str | os.PathLike, *, check: bool = True, allow_stale: bool = False,
                 directory: str | os.PathLike | None = None) -> Profile:
    """Open a profile by device name (``epyc``, ``h100``, ...) or path, and check it is fresh for this host."""
    profile = Profile.load(find_profile(device_or_path, directory))
    if check:
        profile.check_fresh(allow_stale=allow_stale)
    return profile

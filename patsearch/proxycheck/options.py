"""``FidelityOptions``: what one ``patsearch proxy-check`` measures (the proxy, its reference, the alternatives,
the networks and seeds), validated once; and the settings dictionaries a check stores and compares on resume."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from patsearch.config import OptionsMixin, take_alias
from patsearch.errors import UserError
from patsearch.search.proxy import ProxySettings, fold_proxy_flags, proxy_settings
from patsearch.search.results import PROXY_CHECK_DIR

REFERENCE_FACTOR = 5  # the reference trains on at least this many times the proxy's images (epochs x set size)
MAX_REFERENCE_RESOLUTION = 64  # the default reference doubles the proxy's resolution up to this
PROXY, REFERENCE, FREE = "proxy", "reference", "free"
ALTERNATIVE = "alt"  # job kind prefix of the alternative proxies: alt1, alt2, ...
DEFAULT_FIDELITY_OUT = f"{PROXY_CHECK_DIR}/proxy-fidelity.json"  # under the runs folder (--runs-dir)


def default_reference(proxy: ProxySettings) -> ProxySettings:
    """``REFERENCE_FACTOR`` x the proxy's epochs at twice its resolution (at most 64 px, never lower)."""
    resolution = max(proxy.resolution, min(MAX_REFERENCE_RESOLUTION, 2 * proxy.resolution))
    return dataclasses.replace(proxy, epochs=REFERENCE_FACTOR * proxy.epochs, resolution=resolution)


class FidelityOptionsError(UserError, ValueError):
    """A proxy-check option (flag, keyword or options-file field) is invalid."""


@dataclass(frozen=True)
class FidelityOptions(OptionsMixin):
    """What ``patsearch proxy-check`` accepts (see the CLI for the flags), validated when made. From flags or a
    YAML file, the proxy's flags (``data``, ``proxy_epochs`` ...) fill ``proxy`` (its seed: the first of ``seeds``,
    its subset folder: ``<runs_dir>/.proxy-data``), ``reference_epochs``, ``reference_resolution`` and
    ``reference`` (``key=value`` pairs) change the default reference, and ``also_proxy`` lists alternatives."""

    options_error = FidelityOptionsError
    options_what = "proxy-check options"

    proxy: ProxySettings = field(default_factory=ProxySettings.for_device)  # the measured default for the device
    # None: default_reference(proxy); a mapping or "key=value,..." text: changes to that default
    reference: ProxySettings | Mapping[str, Any] | str | None = None
    # Other proxies measured against the same reference in the same run (their seeds are ``seeds`` too), so that
    # the default proxy can be picked from one report: each gets its own tau, rho, seed std and cost. Each is
    # settings, or changes to the proxy's (a mapping or "key=value,..." text).
    alternatives: tuple[ProxySettings | Mapping[str, Any] | str, ...] = ()
    n: int = 24  # random networks (the variants within budget come on top)
    seeds: tuple[int, ...] | str = (0, 1)  # proxy seeds ("0,1" too); the reference runs with the first ...
    # ... and, with reference_seeds > 1, also with the next seeds (first + 1, ...), averaged: one reference
    # training's own seed noise (about 0.6 points on CIFAR-10) caps the tau any proxy can show against it
    reference_seeds: int = 1
    budget: str = "35ms"
    profile: str | None = None  # lookup table of the budget (default: the search's, this machine's CPU table)
    space: str | None = None
    variants: str = "auto"  # auto (every named variant within budget) | none | names
    sample_seed: int = 0
    runs_dir: str = "runs"
    out: str | None = None  # None: <runs_dir>/proxy-check/proxy-fidelity.json, a run's output, never the source tree
    gpus: str | None = "none"  # none (or None) | all | N | 0,1 | cpu:N (jobs.parse_devices: the search's meaning)
    workers_per_gpu: int = 1  # launch-bound proxies: several worker processes share each GPU
    stop_after: float | None = None  # seconds: start no new training after this (the report covers what is done)
    allow_stale_profile: bool = False
    # Alternatives may train on more than 1/REFERENCE_FACTOR of the reference's images (e.g. a 10-epoch proxy
    # against a 25-epoch reference): a cheap look at whether a longer proxy is worth a longer reference. The
    # report gives each alternative its ``reference_factor`` and ``meets_reference_rule``; the proxy itself
    # always keeps the rule.
    exploratory_alternatives: bool = False
    # The records folder of another check: its trainings whose settings (and network) match one of this check's
    # jobs are copied in instead of retrained, e.g. the proxies of a check when only the reference grows longer.
    reuse_records: str | None = None

    def __post_init__(self) -> None:
        for name in ("runs_dir", "out", "space", "profile", "reuse_records"):  # PathLike -> str: YAML-safe
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, os.fspath(value))
        if self.out is None:
            object.__setattr__(self, "out", str(Path(self.runs_dir) / DEFAULT_FIDELITY_OUT))
        object.__setattr__(self, "seeds", parse_seeds(self.seeds))
        proxy = proxy_settings(self.proxy)
        object.__setattr__(self, "proxy", proxy)
        object.__setattr__(self, "reference", _changed(default_reference(proxy), self.reference, "--reference"))
        alternatives = self.alternatives if isinstance(self.alternatives, (list, tuple)) else [self.alternatives]
        object.__setattr__(self, "alternatives", tuple(_changed(proxy, alt, "--also-proxy") for alt in alternatives))
        ref = self.reference
        if not _same_data(ref, proxy):
            raise UserError("the proxy and the reference must train on the same --data")
        if ref.resolution < proxy.resolution:
            raise UserError(f"--reference-resolution {ref.resolution} is below the proxy's {proxy.resolution}; the "
                            "reference must train at the same or a higher resolution")
        for i, alt in enumerate(self.alternatives, 1):
            if not _same_data(alt, proxy):
                raise UserError("--also-proxy must train on the proxy's --data")
            if settings_dict(alt) == settings_dict(proxy):
                raise UserError(f"--also-proxy {i} is the same as the proxy; change at least one setting")
            if alt.resolution > ref.resolution:
                raise UserError(f"--also-proxy {i} trains at {alt.resolution} px, above the reference's "
                                f"{ref.resolution} px; the reference must train at the same or a higher resolution")
        ref_per_epoch = ref.train_images()  # each call counts a folder's files: once per settings
        ref_images = ref.epochs * ref_per_epoch
        factors = []
        for i, p in enumerate((proxy, *self.alternatives)):
            per_epoch = p.train_images()
            images = p.epochs * per_epoch
            factors.append(ref_images / max(1, images))
            if ref_images < REFERENCE_FACTOR * images and (i == 0 or not self.exploratory_alternatives):
                need = math.ceil(REFERENCE_FACTOR * images / ref_per_epoch)
                name = "the proxy" if i == 0 else f"--also-proxy {i}"
                raise UserError(f"the reference trains on {ref_images:,} images ({ref.epochs} epochs x "
                                f"{ref_per_epoch:,}), less than {REFERENCE_FACTOR}x {name}'s {images:,} "
                                f"({p.epochs} x {per_epoch:,}); give --reference-epochs {need} or more"
                                + ("" if i == 0 else ", or --exploratory-alternatives to measure it anyway (the "
                                   "report marks it)"))
        # How many times each alternative's training images the reference trains on: counted here once (each
        # count lists a folder), reported by build_report.
        object.__setattr__(self, "_alternative_factors", tuple(factors[1:]))
        if not isinstance(self.workers_per_gpu, int) or self.workers_per_gpu < 1:
            raise UserError(f"--workers-per-gpu must be a positive integer, got {self.workers_per_gpu!r}")
        if not isinstance(self.n, int) or self.n < 3:
            raise UserError(f"--n must be at least 3 networks (a rank correlation needs them), got {self.n!r}")
        if not isinstance(self.reference_seeds, int) or self.reference_seeds < 1:
            raise UserError(f"--reference-seeds must be a positive integer, got {self.reference_seeds!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"--seeds must list distinct integers, got {list(self.seeds)}")
        if self.stop_after is not None and self.stop_after <= 0:
            raise UserError(f"--stop-after must be a positive number of seconds, got {self.stop_after}")
        if self.reuse_records is not None and not (Path(str(self.reuse_records)) / "plan.json").is_file():
            raise UserError(f"--reuse-records {self.reuse_records}: no plan.json there; give the .records folder of "
                            "an earlier proxy-check (it sits beside that check's report)")
        if not str(self.out).endswith(".json"):
            raise UserError(f"--out must name a .json file (the PNG goes beside it), got {self.out!r}")

    @classmethod
    def fields_from(cls, data: Mapping[str, Any], source: str) -> dict[str, Any]:
        """Fields from fields or the command's flags (see the class)."""
        out = take_alias(super().fields_from(data, source), "profile_alias", "profile", spelling="--device-table",
                         error=cls.options_error)
        changes = {k: out.pop(f"reference_{k}") for k in ("epochs", "resolution") if f"reference_{k}" in out}
        changes = {k: v for k, v in changes.items() if v is not None}
        reference = out.get("reference")
        if changes and not isinstance(reference, (str, Mapping, type(None))):
            raise cls.options_error("reference: give changes to the default reference (a mapping or key=value "
                                    "pairs) together with --reference-epochs/--reference-resolution")
        if changes:  # --reference key=value pairs apply after these
            pairs = parse_overrides(reference, "--reference") if isinstance(reference, str) else dict(reference or {})
            out["reference"] = {**changes, **pairs}
        if "also_proxy" in out:
            out["alternatives"] = tuple(out.pop("also_proxy") or ())
        seeds = parse_seeds(out["seeds"]) if "seeds" in out else None
        runs_dir = out.get("runs_dir")
        return fold_proxy_flags(out, seed=seeds[0] if seeds else None,
                                subset_dir=None if runs_dir is None else str(Path(runs_dir) / ".proxy-data"))

    @property
    def alternative_reference_factors(self) -> tuple[float, ...]:
        """How many times each alternative's training images (epochs x set size) the reference trains on."""
        return self._alternative_factors

    @property
    def records_dir(self) -> Path:
        out = Path(self.out)
        return out.with_name(out.stem + ".records")

    @property
    def png(self) -> Path:
        return Path(self.out).with_suffix(".png")

    def settings(self) -> dict[str, Any]:
        """What defines the measurement (stored in the report and compared when a run resumes)."""
        out = {"proxy": settings_dict(self.proxy), "reference": settings_dict(self.reference),
                "seeds": list(self.seeds), "n": self.n, "budget": self.budget, "device_table": self.profile,
                "space": self.space, "variants": self.variants, "sample_seed": self.sample_seed}
        if self.alternatives:  # absent when there are none: reports and records of earlier runs stay resumable
            out["alternatives"] = [settings_dict(a) for a in self.alternatives]
        if self.reference_seeds > 1:  # likewise
            out["reference_seeds"] = self.reference_seeds
        return out

    def reference_seed_list(self) -> list[int]:
        return [self.seeds[0] + k for k in range(self.reference_seeds)]

    def proxy_for(self, kind: str) -> ProxySettings:
        """The settings a job kind trains with: the proxy, an alternative (``alt1``...) or the reference."""
        if kind == PROXY:
            return self.proxy
        if kind == REFERENCE:
            return self.reference
        if kind.startswith(ALTERNATIVE) and kind[len(ALTERNATIVE):].isdigit():
            return self.alternatives[int(kind[len(ALTERNATIVE):]) - 1]
        raise ValueError(f"no proxy settings for job kind {kind!r}")


def _same_data(a: ProxySettings, b: ProxySettings) -> bool:
    """Both on the synthetic set, or both on the same folder."""
    if a.data is None or b.data is None:
        return a.data is None and b.data is None
    return Path(a.data).resolve() == Path(b.data).resolve()


def settings_dict(s: ProxySettings) -> dict[str, Any]:
    # Where and how fast it runs (device, loader workers, subset folder, CUDA graphs) does not change what is
    # measured.
    d = {k: v for k, v in dataclasses.asdict(s).items()
         if k not in ("device", "workers", "subset_dir", "data", "cuda_graph")}
    d["data_id"] = s.data_id()
    d["recipe"] = s.recipe_for()
    return d


def job_settings(settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The training settings of each job kind of a check's stored settings, without the seed (each job has its own)."""
    kinds = {PROXY: settings["proxy"], REFERENCE: settings["reference"]}
    kinds.update({f"{ALTERNATIVE}{i}": alt for i, alt in enumerate(settings.get("alternatives", []), 1)})
    return {kind: {k: v for k, v in d.items() if k != "seed"} for kind, d in kinds.items()}


def fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


OVERRIDABLE = {"epochs": int, "resolution": int, "train_samples": int, "val_samples": int, "holdout": int,
               "batch_size": int, "lr": float}


def apply_overrides(base: ProxySettings, text: str, what: str = "--also-proxy") -> ProxySettings:
    """``base`` with ``key=value`` pairs applied, e.g. ``epochs=2,resolution=64,train_samples=all``."""
    return dataclasses.replace(base, **parse_overrides(text, what))


def _changed(base: ProxySettings, changes: ProxySettings | Mapping[str, Any] | str | None,
             what: str) -> ProxySettings:
    """``changes`` if they are settings, else ``base`` with them (``key=value`` text or a mapping of fields)."""
    if isinstance(changes, ProxySettings):
        return changes
    if changes is None:
        return base
    if isinstance(changes, str):
        return apply_overrides(base, changes, what)
    if not isinstance(changes, Mapping):
        raise FidelityOptionsError(f"{what}: expected proxy settings, a mapping of changes or key=value pairs, "
                                   f"got {type(changes).__name__}")
    try:
        return dataclasses.replace(base, **changes)
    except TypeError:
        known = ", ".join(f.name for f in dataclasses.fields(ProxySettings))
        raise FidelityOptionsError(f"{what}: unknown setting(s) {', '.join(sorted(changes))}; known: {known}") \
            from None


def parse_seeds(seeds: Any) -> tuple[int, ...]:
    """Proxy seeds from a list or ``"0,1"`` (the ``--seeds`` flag)."""
    items = [s for s in seeds.split(",") if s.strip()] if isinstance(seeds, str) else seeds
    try:
        return tuple(int(s) for s in items)
    except (TypeError, ValueError):
        raise FidelityOptionsError(f"--seeds {seeds!r}: give comma-separated integers, e.g. 0,1") from None


def parse_overrides(text: str, what: str = "--also-proxy") -> dict[str, Any]:
    """``key=value`` pairs of proxy settings, e.g. ``epochs=2,resolution=64,train_samples=all``, as a mapping.

    Keys are the fields of :data:`OVERRIDABLE`; ``all`` (sample counts) and ``default`` (batch, lr) clear a field.
    """
    changes: dict[str, Any] = {}
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip().replace("-", "_"), value.strip()
        if not sep or key not in OVERRIDABLE:
            raise UserError(f"{what} {text!r}: write key=value pairs separated by commas, keys "
                            f"{', '.join(OVERRIDABLE)} (e.g. epochs=2,resolution=64)")
        if value.lower() in ("all", "default", "none"):
            if key in ("epochs", "resolution"):
                raise UserError(f"{what} {text!r}: {key} needs a number")
            changes[key] = None
            continue
        try:
            changes[key] = OVERRIDABLE[key](value)
        except ValueError:
            kind = "an integer" if OVERRIDABLE[key] is int else "a number"
            raise UserError(f"{what} {text!r}: {key}={value} is not {kind}") from None
    if not changes:
        raise UserError(f"{what} {text!r}: give at least one key=value pair (e.g. epochs=2,resolution=64)")
    return changes


def proxy_kinds(n_alternatives: int) -> list[str]:
    """The job kinds of the proxies: the proxy, then ``alt1`` ... ``altN``."""
    return [PROXY] + [f"{ALTERNATIVE}{i}" for i in range(1, n_alternatives + 1)]


__all__ = ["ALTERNATIVE", "DEFAULT_FIDELITY_OUT", "FREE", "OVERRIDABLE", "PROXY", "REFERENCE", "REFERENCE_FACTOR",
           "FidelityOptions", "FidelityOptionsError", "apply_overrides", "default_reference", "fingerprint",
           "job_settings", "parse_overrides", "parse_seeds", "proxy_kinds", "settings_dict"]

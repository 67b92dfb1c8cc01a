"""Few-shot adaptation: a lookup table for hardware nobody profiled, from a shipped table and ~15 measurements.

A full table measures every layer of the space (minutes on a CPU). Across devices of one kind, though, what
changes is mostly how fast each *type* of layer runs (a convolution, a channel attention, a GELU), not the
structure of the network, so the nearest shipped table with one scale per layer type and a fixed overhead,
fitted on a few networks measured end to end here, predicts this device well (the idea of HELP and MAPLE: few
measurements on the target, the rest transferred). The scales are fitted by ridge regression towards one common
scale (with a dozen networks, a type seen in few of them must not run off), its strength chosen by leave-one-out
error. The result is an ordinary profile (scaled entries + calibration) flagged ``adapted`` in its provenance and
scored on networks that took no part in the fit.
"""
from __future__ import annotations

import logging
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from patsearch.profiler.devices import (
    Device,
    Protocol,
    check_hardware,
    get_device,
    hardware_name,
)
from patsearch.profiler.predictor import layer_groups, layer_kind
from patsearch.profiler.table import (
    PROFILES_DIR,
    Profile,
    ProfileError,
    _now,
    covers,
    find_profile,
    layer_keys,
    load_profile,
    profile_dirs,
    profile_path,
    space_dirs,
    space_flag,
    space_folder,
)

logger = logging.getLogger(__name__)

N_ADAPT = 14          # networks the scales are fitted on
N_HELD_OUT = 8        # networks only used to score the adapted table
RIDGE_GRID = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 1e6)   # relative ridge strengths tried (1e6 = one common scale)
SCALED_STATS = ("ms", "p10", "p90", "min_p10", "graph_ms", "graph_p10")
SPOT_CHECK_NETWORKS = 3    # networks measured to check a table made with another torch release
SPOT_CHECK_TOLERANCE = 0.15  # their median time may differ this much from the table's predictions
SPOT_CHECK_FILE = ".spot-checks.json"  # verdicts in the user's profile folder: each table is checked once per host
FULL_TABLE_HINT = {"cpu": "about 9 minutes on one core", "cuda": "about 5 minutes"}
ADAPT_HINT = {"cpu": "about a minute of one idle core, 3-4 beside other work", "cuda": "about a minute"}


def layer_type(key: str) -> str:
    """The type a table entry's scale is shared by: ``stem``, ``merge``, ``head`` or ``block|MIXER|ACT``."""
    parts = layer_kind(key).split("|")
    if parts[0] != "block":
        return parts[0]
    return f"block|{parts[1]}|{parts[5]}"


def is_adapted(profile: Profile) -> bool:
    return bool(profile.provenance.get("adapted"))


# --- choosing the table to adapt --------------------------------------------------------------------------------
def candidate_bases(backend: str, metric: str, space: Any, *, exclude: Path | None = None) -> list[Profile]:
    """Every measured (not adapted) table of this backend and metric whose entries cover ``space``."""
    # shipped tables are bases even when ignored; each folder's sub-folder for the space holds its own tables
    folders = list(dict.fromkeys(space_dirs([*profile_dirs(), PROFILES_DIR], space)))
    needed = layer_keys(space)
    found: list[Profile] = []
    seen: set[Path] = set()
    for folder in folders:
        for path in sorted(Path(folder).glob("*.json")):
            real = path.resolve()
            if real in seen or (exclude is not None and real == Path(exclude).resolve()):
                continue
            seen.add(real)
            try:
                profile = Profile.load(path)
            except ProfileError:
                continue
            if (profile.backend == backend and profile.metric == metric and not is_adapted(profile)
                    and covers(profile, needed)):
                found.append(profile)
    return found


def nearest_base(device: Device, protocol: Protocol, space: Any, *, exclude: Path | None = None) -> Profile:
    """The table closest to this device: same protocol fields first, then one of the space's own (its sub-folder),
    then the same device name (a table of this GPU model from another host or release), then the most end-to-end
    networks."""
    bases = candidate_bases(device.backend, protocol.metric, space, exclude=exclude)
    if not bases:
        raise ProfileError(f"no {device.backend.upper()} {protocol.metric} table covering space {space.name!r} to "
                           f"adapt from; build a full one with `patsearch profile --device {device.name}"
                           f"{space_flag(space)} --validate 60`")
    wanted = protocol.to_dict()

    def distance(profile: Profile) -> tuple[int, bool, bool, int, str]:
        have = profile.protocol.to_dict()
        own = space_folder(space) is not None and profile.path.parent.name == space_folder(space)
        return (sum(have[k] != wanted[k] for k in wanted), not own, profile.device != device.name,
                -len(profile.networks), str(profile.path))

    return min(bases, key=distance)


# --- the fit -------------------------------------------------------------------------------------------------
def type_features(base: Profile, types: Sequence[str], arch: Any, resolution: int, statistic: str) -> np.ndarray:
    """Summed base-table ms of each layer type in one network."""
    index = {t: i for i, t in enumerate(types)}
    out = np.zeros(len(types))
    for _, spec, hw, count in layer_groups(arch, resolution):
        key = spec.key(hw)
        entry = base.entries[key]
        out[index[layer_type(key)]] += count * float(entry.get(statistic, entry["ms"]))
    return out


def _ridge_fit(features: np.ndarray, y: np.ndarray, strength: float) -> tuple[float, np.ndarray]:
    """``y ~ a + sum_t s_t F_t`` on relative error, with ``s_t`` pulled towards one common scale ``s``.

    Solved as ``s_t = s + e_t``: fit ``a, s`` and the deviations ``e`` together, penalising ``strength * |e|^2``
    (relative to the size of the weighted features, so the grid means the same on any device)."""
    n, k = features.shape
    w = 1.0 / y
    total = features.sum(axis=1)
    x = np.column_stack([np.ones(n), total, features]) * w[:, None]
    target = y * w
    scale = float((x[:, 2:] ** 2).sum() / max(k, 1))
    penalty = np.zeros((k, k + 2))
    penalty[:, 2:] = np.eye(k) * np.sqrt(strength * scale)
    # a tiny pull on the sum of deviations keeps (s, e) identifiable: only s + e_t matters.
    anchor = np.zeros((1, k + 2))
    anchor[0, 2:] = np.sqrt(1e-9 * scale + 1e-12)
    coef, *_ = np.linalg.lstsq(np.vstack([x, penalty, anchor]), np.concatenate([target, np.zeros(k + 1)]),
                               rcond=None)
    return float(coef[0]), coef[1] + coef[2:]


def fit_type_scales(features: np.ndarray, y: np.ndarray,
                    grid: Sequence[float] = RIDGE_GRID) -> dict[str, Any]:
    """Pick the ridge strength by leave-one-out relative error; return the offset, scales and every LOO score."""
    features, y = np.asarray(features, dtype=float), np.asarray(y, dtype=float)
    n = len(y)
    loo: dict[float, float] = {}
    for strength in grid:
        errors = []
        for i in range(n):
            keep = np.arange(n) != i
            a, s = _ridge_fit(features[keep], y[keep], strength)
            errors.append(abs(a + features[i] @ s - y[i]) / y[i])
        loo[strength] = float(np.mean(errors)) * 100
    best = min(loo, key=lambda g: (round(loo[g], 6), -g))   # ties: the stronger pull (fewer free scales)
    offset, scales = _ridge_fit(features, y, best)
    return {"offset_ms": offset, "scales": scales, "ridge": best, "loo_mape": {f"{g:g}": round(v, 3)
                                                                              for g, v in loo.items()}}


def adapted_entries(base: Profile, scales: dict[str, float]) -> dict[str, dict[str, Any]]:
    """The base table with every statistic of each entry multiplied by its type's scale."""
    entries = {}
    for key, entry in base.entries.items():
        factor = scales.get(layer_type(key))
        if factor is None:
            continue
        new = {k: v for k, v in entry.items() if k != "passes"}
        for stat in SCALED_STATS:
            if isinstance(new.get(stat), (int, float)):
                new[stat] = round(float(new[stat]) * factor, 6)
        new["ms"] = max(new["ms"], 1e-6)  # a negative scale (possible under a weak pull) must not break the table
        entries[key] = new
    return entries


# --- measuring ------------------------------------------------------------------------------------------------
Measure = Callable[[Profile, list, Device], None]


def default_measure(profile: Profile, items: list, device: Device, *, model_factory: Any = None,
                    budget: Any = None, progress: bool = True) -> None:
    """Measure the networks end to end on this host (stored in ``profile.networks``)."""
    from patsearch.profiler.validate import measure_networks

    measure_networks(profile, items, device, model_factory=model_factory, budget=budget, progress=progress)


def adapt_profile(base: Profile, space: Any, device: Device, protocol: Protocol, path: str | os.PathLike, *,
                  n_adapt: int = N_ADAPT, n_evaluate: int = N_HELD_OUT, seed: int = 0,
                  measure: Measure | None = None, command: str | None = None, plot: str | Path | None = None,
                  progress: bool = True, note: Callable[[str], None] = logger.warning) -> Profile:
    """Measure ``n_adapt + n_evaluate`` networks of ``space`` here, fit per-type scales of ``base`` on the first
    set, score the adapted table on the second, and save it (flagged ``adapted``) at ``path``.

    ``note`` gets one line before a table already at ``path`` is replaced, and one with the load figures when
    the host stayed busy while the networks were timed (the table is kept: see :func:`busy_note`)."""
    from patsearch.profiler.validate import fit_and_score, plot_fidelity, split_samples

    if n_adapt < 4:
        raise ProfileError(f"--calibrate must be at least 4 networks to adapt a table, got {n_adapt}")
    if n_evaluate < 2:
        raise ProfileError(f"--validate must be at least 2 held-out networks to score an adapted table, "
                           f"got {n_evaluate}")
    started = time.perf_counter()
    path = Path(path)
    if path.exists():
        note(f"{path} exists ({_describe_table(path)}): this adaptation replaces it when it ends")
    # Measurements go to a hidden partial file first: an interrupted adaptation resumes from it, and nothing that
    # looks like a finished table (a name lookups would find) exists until the fit is done.
    partial = path.with_name(f".{path.name}.partial")
    profile = Profile.new(device, protocol, command=command if command is not None else " ".join(sys.argv),
                          path=partial)
    if partial.exists():
        try:
            earlier = Profile.load(partial)
            if earlier.protocol == protocol and earlier.provenance.get("hardware") == profile.provenance["hardware"]:
                profile.data["networks"] = earlier.networks
        except ProfileError:
            pass  # unreadable leftovers: measure again
    items = split_samples(space, n_adapt, n_evaluate, seed)
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)  # background load hits both sets alike
    (measure or default_measure)(profile, shuffled, device)
    profile.path = path

    statistic = (base.calibration or {}).get("statistic", "ms")
    types = sorted({layer_type(k) for k in base.entries})
    calib = [i for i in items if i[3] == "calibration"]
    feats = np.vstack([type_features(base, types, arch, res, statistic) for _, arch, res, _ in calib])
    y = np.array([profile.networks[key]["ms"] for key, *_ in calib])
    used = feats.sum(axis=0) > 0                  # types the space never uses keep no scale
    fit = fit_type_scales(feats[:, used], y)
    scales = dict(zip([t for t, u in zip(types, used) if u], (float(s) for s in fit["scales"])))
    base_stat = {k: {**v, "ms": float(v.get(statistic, v["ms"]))} for k, v in base.entries.items()}
    profile.data["entries"] = adapted_entries(Profile({**base.data, "entries": base_stat}), scales)
    profile.provenance["spaces"] = {space.name: {"name": space.name, "layers": len(space.layer_inputs())}}
    profile.provenance["adapted"] = {
        "from": base.path.name if base.path else base.device, "from_device": base.device,
        "from_hardware": base.provenance.get("hardware"), "from_protocol": base.protocol.slug(),
        "from_statistic": statistic, "method": "per-layer-type scales + offset, ridge towards one scale",
        "networks": n_adapt, "held_out": n_evaluate, "seed": seed, "offset_ms": round(fit["offset_ms"], 6),
        "scales": {t: round(s, 5) for t, s in scales.items()}, "ridge": fit["ridge"], "ridge_loo_mape": fit["loo_mape"],
    }
    report = fit_and_score(profile, items)
    report.update(space=space.name, seed=seed, date=_now(), adapted=True)
    if plot is not None:
        report["plot"] = Path(plot).name
        plot_fidelity(profile, items, plot)
    profile.data["fidelity"] = report
    profile.provenance["build_seconds"] = round(time.perf_counter() - started, 2)
    profile.save()
    partial.unlink(missing_ok=True)
    busy_note(profile, note)
    return profile


def _describe_table(path: Path) -> str:
    """``an adapted table of YYYY-MM-DD from epyc-....json`` / ``a measured table of ...``: what a replace loses."""
    try:
        old = Profile.load(path)
    except ProfileError:
        return "not a readable table"
    when = str(old.provenance.get("date", "an unknown date"))[:10]
    if is_adapted(old):
        return f"an adapted table of {when} from {old.provenance['adapted'].get('from')}"
    return f"a measured table of {when}"


def busy_note(profile: Profile, note: Callable[[str], None]) -> None:
    """Say, with the figures, that ``profile`` was measured on a busy host, and the command to measure again.

    The table is kept rather than refused: on a shared VM the host may never be quiet, and a refusal would stop
    the search itself; the load is in the table's provenance, and this line comes with every use of it."""
    from patsearch.profiler.validate import busy_warning

    kind = "adapted" if is_adapted(profile) else "measured"
    name = profile.path.name if profile.path else profile.device
    rerun = (f"patsearch profile --device {profile.device} --adapt" if is_adapted(profile) else
             f"patsearch profile --device {profile.device} --fresh --validate 60")
    line = busy_warning(profile.provenance.get("host_load"), f"the {kind} table {name}", rerun)
    if line:
        note(line)


# --- the search's entry point ------------------------------------------------------------------------------------
def _fits_here(profile: Profile) -> bool:
    """Measured on this host's hardware (or not checkable here: a GPU table on a host without that GPU)."""
    from patsearch.profiler.table import _hardware_here

    here = _hardware_here(profile.backend)
    return here is None or profile.provenance.get("hardware") == here


def load_or_adapt(device: str, *, space: Any, allow_stale: bool = False, adapt: bool = True,
                  note: Callable[[str], None] | None = None, measure: Measure | None = None) -> Profile:
    """The profile a search should use for ``device``, adapting one to this host if none fits it.

    ``cpu`` means this host's CPU: a ``cpu`` table, else any other CPU table (``epyc``) measured on this very
    hardware. When none fits (a fresh clone on a CPU nobody profiled), the nearest shipped table is adapted here
    (:data:`ADAPT_HINT`), saved in the user's profile folder (so the next search reuses it)
    and ``note`` says so with the command for a full table. A table that fits by hardware name but was measured
    with another torch release is spot-checked first (:func:`spot_check`, once per host) and adapted the same way
    when its predictions are off here; an adapted table that was measured on a busy host is adapted again once a
    search finds the host quiet. A device that is not this host (``h100`` on a host without one) is
    predicted by its table as it is, with one ``note`` saying so: nothing is measured or spot-checked. Other
    names and paths load as :func:`load_profile` does.
    """
    note = note or (lambda text: logger.info("note: %s", text))  # the library's default: a logged note
    text = os.fspath(device)
    if text.endswith(".json") or os.sep in text:
        return load_profile(text, allow_stale=allow_stale)
    dev = get_device(text)
    if not _host_is(dev):  # a table of another device predicts it; nothing can be measured or checked here
        return _prediction(dev, space, note)
    names = [text] + ([n for n, d in _cpu_devices().items() if n != text] if text == "cpu" else [])
    first_error: ProfileError | None = None
    for name in names:
        try:
            path = find_profile(name, space=space)
        except ProfileError as exc:
            first_error = first_error or exc
            continue
        profile = Profile.load(path)
        logger.debug("%s: candidate table %s (measured on %s)", device, path, profile.provenance.get("hardware"))
        if _fits_here(profile) or allow_stale:
            if not (adapt and _fits_here(profile) and needs_spot_check(profile)):
                loaded = load_profile(path, allow_stale=allow_stale)
                target = profile_path(dev.name, dev.protocol, space=space)
                if adapt and is_adapted(loaded) and path == target and _busy_then_quiet_now(loaded):
                    load = loaded.provenance["host_load"]
                    reason = (f"{path.name} was adapted on a busy host (other processes used "
                              f"{load['others_cores_median']:.1f} of {load['cores']} cores) and this host is quiet "
                              f"now")
                    base = nearest_base(dev, dev.protocol, space, exclude=target)
                    return _adapt_here(base, dev, space, target, measure, note, reason)
                busy_note(loaded, note)
                return loaded
            import warnings

            from patsearch.profiler.table import StaleProfileWarning

            with warnings.catch_warnings():  # the spot check's note says which release, and what it measured
                warnings.simplefilter("ignore", StaleProfileWarning)
                loaded = load_profile(path, allow_stale=allow_stale)
            ratio, fresh = _checked_ratio(loaded, space, dev, measure)
            if abs(ratio - 1.0) <= SPOT_CHECK_TOLERANCE:
                if fresh:
                    note(f"spot check: {path.name} was measured with torch {loaded.provenance.get('torch')}; "
                         f"{SPOT_CHECK_NETWORKS} networks measured here run {ratio:.2f}x its predictions, within "
                         f"+-{100 * SPOT_CHECK_TOLERANCE:.0f}%: using it")
                busy_note(loaded, note)
                return loaded
            target = profile_path(dev.name, dev.protocol, space=space)
            if target.exists() and not is_adapted(Profile.load(target)):
                return loaded  # never overwrite a full table; the stale-release warning has been given
            import torch

            reason = (f"{path.name} fits this host by name but was measured with torch "
                      f"{loaded.provenance.get('torch')}; here (torch {torch.__version__}) {SPOT_CHECK_NETWORKS} "
                      f"networks run {ratio:.2f}x its predictions")
            return _adapt_here(loaded, dev, space, target, measure, note, reason)
        if first_error is None:
            try:
                profile.check_fresh()
            except ProfileError as exc:
                first_error = exc
    assert first_error is not None
    if not adapt:
        raise first_error
    protocol = dev.protocol
    target = profile_path(dev.name, protocol, space=space)
    if target.exists() and not is_adapted(Profile.load(target)):
        raise first_error  # a full table measured elsewhere: the user decides, adaptation never overwrites it
    base = nearest_base(dev, protocol, space)
    reason = f"no {dev.name} table fits this host ({hardware_name(dev.backend)})"
    return _adapt_here(base, dev, space, target, measure, note, reason)


def _busy_then_quiet_now(profile: Profile) -> bool:
    """``profile`` was measured on a busy host, and this host is quiet now: measuring again would do better."""
    from patsearch import host

    load = profile.provenance.get("host_load") or {}
    if not load.get("busy_networks"):
        return False
    return not host.current_load(1.0).busy(load.get("threads") or 1)


def _prediction(dev: Device, space: Any, note: Callable[[str], None]) -> Profile:
    """``dev``'s table, used as it is: ``dev`` is not this host (no GPU here, or another model)."""
    from patsearch.profiler.devices import gpu_name

    here = hardware_name(dev.backend) if dev.backend == "cpu" else gpu_name()
    try:
        profile = Profile.load(find_profile(dev.name, space=space))
    except ProfileError:
        raise ProfileError(f"no {dev.name} table{f' of space {space.name!r}' if space_flag(space) else ''}, and "
                           f"{dev.name} is not this host, so none can be measured here: run `patsearch profile "
                           f"--device {dev.name}{space_flag(space)} --adapt` on {dev.expect_label or 'a GPU'} host "
                           f"and copy the table into {profile_path(dev.name, dev.protocol, space=space).parent}"
                           ) from None
    prov = profile.provenance
    note(f"{dev.name} is not this host ({f'this host has {here}' if here else 'no GPU here'}): its table "
         f"{profile.path.name} (measured on {prov.get('hardware')} with torch {prov.get('torch')}) is used as a "
         f"prediction, without a spot check")
    return profile


def _adapt_here(base: Profile, dev: Device, space: Any, target: Path, measure: Measure | None,
                note: Callable[[str], None], reason: str) -> Profile:
    kind = "CPU" if dev.backend == "cpu" else "GPU"
    note(f"{reason}: adapting {base.path.name} to it from {N_ADAPT + N_HELD_OUT} networks measured here "
         f"({ADAPT_HINT[dev.backend]}), saved to {target}; for a full {kind} table run `patsearch profile --device "
         f"{dev.name}{space_flag(space)} --validate 60` ({FULL_TABLE_HINT[dev.backend]})")
    profile = adapt_profile(base, space, dev, dev.protocol, target, measure=measure,
                            command=f"(automatic) patsearch profile --device {dev.name}{space_flag(space)} --adapt",
                            note=note)
    cal = profile.fidelity["calibrated"]
    note(f"adapted {dev.name} table: {cal['within_10pct']:.0f}% of {cal['n']} held-out networks within +-10%, "
         f"Kendall tau {cal['kendall_tau']:.2f}")
    return profile


def needs_spot_check(profile: Profile) -> bool:
    """Measured with another torch release than this host's (kernels, and so speeds, change between releases)."""
    import torch

    made_with = profile.provenance.get("torch")
    return made_with is not None and made_with != torch.__version__


def spot_check(profile: Profile, space: Any, device: Device, *, measure: Measure | None = None,
               k: int = SPOT_CHECK_NETWORKS, seed: int = 7) -> dict[str, Any]:
    """Measure ``k`` random networks of ``space`` here and compare them with ``profile``'s predictions.

    Returns the median ratio measured / predicted (1.0: the table holds here) and the per-network ratios. Takes
    seconds on a CPU (batch 1).
    """
    import tempfile

    from patsearch.profiler.validate import split_samples

    check_hardware(device)  # one line, not a driver's traceback, where the device is not this host
    items = split_samples(space, k, 0, seed)
    with tempfile.TemporaryDirectory(prefix="patsearch-spot-") as folder:
        scratch = Profile.new(device, profile.protocol, command="spot check", path=Path(folder) / "spot.json")
        (measure or _quiet_measure)(scratch, items, device)
        ratios = [float(scratch.networks[key]["ms"]) / profile.predict_ms(arch, res) for key, arch, res, _ in items]
    return {"ratio": float(np.median(ratios)), "ratios": [round(r, 4) for r in ratios]}


def _quiet_measure(profile: Profile, items: list, device: Device) -> None:
    default_measure(profile, items, device, progress=False)


def _checked_ratio(profile: Profile, space: Any, device: Device, measure: Measure | None) -> tuple[float, bool]:
    """The spot check's ratio for this table on this host, and whether it was measured just now: remembered in the
    user's profile folder (keyed by the table's content, this hardware and torch release), so each host checks a
    table once."""
    import hashlib
    import json

    import torch

    from patsearch.io import atomic_write_json
    from patsearch.resources import user_profiles_dir

    digest = hashlib.sha1(Path(profile.path).read_bytes()).hexdigest()[:12] if profile.path else profile.device
    key = f"{Path(profile.path).name if profile.path else profile.device}|{digest}|" \
          f"{hardware_name(profile.backend)}|{torch.__version__}"
    store = user_profiles_dir() / SPOT_CHECK_FILE
    try:
        verdicts = json.loads(store.read_text())
    except (OSError, ValueError):
        verdicts = {}
    if key in verdicts and isinstance(verdicts[key], dict) and "ratio" in verdicts[key]:
        return float(verdicts[key]["ratio"]), False
    result = spot_check(profile, space, device, measure=measure)
    verdicts[key] = {**result, "date": _now()}
    store.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(store, verdicts, indent=1)
    return result["ratio"], True


def _cpu_devices() -> dict[str, Device]:
    from patsearch.profiler.devices import DEVICES

    return {n: d for n, d in DEVICES.items() if d.backend == "cpu"}


def _host_is(dev: Device) -> bool:
    try:
        check_hardware(dev)
        return True
    except Exception:  # noqa: BLE001 - any refusal means this host is not that device
        return False


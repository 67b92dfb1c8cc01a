"""Latency / throughput prediction from a lookup table, with a fitted calibration.

The raw prediction of a network is the sum of its layers' table times. That sum misses what happens between
layers: per-network overhead (Python dispatch, the first and last copies), launch gaps, cache effects of chaining
layers, and fusion. A calibration, fitted on end-to-end measurements of random architectures, maps the sum to the
measured time. Several small linear models are candidates; the one with the lowest leave-one-out error on the
calibration set wins, so the choice itself is measured rather than assumed.
"""
from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from patsearch.arch import NUM_STAGES, ArchConfig, LayerSpec, check_resolution, resolve_arch
from patsearch.profiler.errors import ProfileError
from patsearch.ranking import kendall_tau  # shared with the proxy fidelity check

GROUPS = ("fixed", "stage1", "stage2", "stage3", "stage4")   # fixed = stem + merges + head
LAYERS, LAUNCH = len(GROUPS), len(GROUPS) + 1                 # feature columns after the group sums
N_FEATURES = len(GROUPS) + 2    # + number of layers, + launch floor (sum of each layer kind's smallest eager time)

# Candidate calibration models: the columns of the design matrix, built from the feature vector
# [S_fixed, S_stage1..4, n_layers] (S_* = summed table milliseconds of the group).
MODELS: dict[str, str] = {
    "sum": "plain sum of the table's layer times (no calibration)",
    "scale": "a x sum",
    "affine": "a + b x sum",
    "affine+layers": "a + b x sum + c x number of layers",
    "per-stage": "a + per-group scales (stem/merges/head, stage 1..4)",
    "per-stage+layers": "a + per-group scales + c x number of layers",
    "max-launch": "a + b x max(sum, k x launch floor): GPU work or kernel launches, whichever bounds the network",
    # What a plain sum misses on fast networks is per-layer overhead that does not scale with the layer's work
    # (dispatch, launches, small-tensor setup): the launch floor and the layer count measure it directly.
    "affine+launch": "a + b x sum + c x launch floor + d x number of layers",
}
MIN_LAUNCH_FIT = 12   # calibration networks needed before "affine+launch" is a candidate
_MAX_GRID = np.round(np.arange(0.5, 3.01, 0.05), 3)


def design(model: str, features: np.ndarray) -> np.ndarray:
    """Design matrix of a calibration model for an (n, N_FEATURES) feature array."""
    f = np.atleast_2d(np.asarray(features, dtype=float))
    total = f[:, :len(GROUPS)].sum(axis=1, keepdims=True)
    ones = np.ones((f.shape[0], 1))
    layers = f[:, LAYERS:LAYERS + 1]
    groups = f[:, :len(GROUPS)]
    return {
        "sum": total,
        "scale": total,
        "affine": np.hstack([ones, total]),
        "affine+layers": np.hstack([ones, total, layers]),
        "per-stage": np.hstack([ones, groups]),
        "per-stage+layers": np.hstack([ones, groups, layers]),
        "max-launch": _max_design(f, 1.0),
        "affine+launch": np.hstack([ones, total, f[:, LAUNCH:LAUNCH + 1], layers]),
    }[model]


def _max_design(features: np.ndarray, k: float) -> np.ndarray:
    f = np.atleast_2d(np.asarray(features, dtype=float))
    bound = np.maximum(f[:, :len(GROUPS)].sum(axis=1), k * f[:, LAUNCH])
    return np.column_stack([np.ones(len(f)), bound])


def _wls(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    w = 1.0 / y
    coef, *_ = np.linalg.lstsq(x * w[:, None], y * w, rcond=None)
    return coef


def fit_model(model: str, features: np.ndarray, measured_ms: np.ndarray) -> np.ndarray:
    """Least squares on relative error (rows weighted by 1 / measured), so small and large nets count alike.
    ``max-launch`` also picks its launch scale ``k`` from a grid (coefficients ``[a, b, k]``)."""
    y = np.asarray(measured_ms, dtype=float)
    if model == "sum":
        return np.array([1.0])
    if model == "max-launch":
        best = None
        for k in _MAX_GRID:
            coef = _wls(_max_design(features, k), y)
            err = float(np.mean(np.abs(_max_design(features, k) @ coef - y) / y))
            if best is None or err < best[0]:
                best = (err, np.append(coef, k))
        return best[1]
    return _wls(design(model, features), y)


def apply_model(model: str, coef: Sequence[float], features: np.ndarray) -> np.ndarray:
    coef = np.asarray(coef, dtype=float)
    if model == "max-launch":
        return _max_design(features, coef[2]) @ coef[:2]
    return design(model, features) @ coef


def fit_calibration(features: np.ndarray, measured_ms: np.ndarray,
                    models: Sequence[str] | None = None) -> dict[str, Any]:
    """Fit every candidate model, score each by leave-one-out MAPE, keep the best.

    Returns a JSON-ready dict: chosen ``model``, its ``coef`` (fitted on all points), ``n`` and every candidate's
    ``loo_mape``. A model needs at least two more points than coefficients to be considered.
    """
    features = np.asarray(features, dtype=float)
    y = np.asarray(measured_ms, dtype=float)
    n = len(y)
    scores: dict[str, float] = {}
    for model in models or MODELS:
        if model in ("max-launch", "affine+launch") and not np.any(features[:, LAUNCH] > 0):
            continue
        # The launch floor and the layer count move together; on a handful of networks a fit trades one against
        # the other (negative coefficients) and extrapolates badly, so this candidate needs a real sample.
        if model == "affine+launch" and n < MIN_LAUNCH_FIT:
            continue
        if model == "max-launch":
            k = 3
        else:
            k = design(model, features[:1]).shape[1]
        if model != "sum" and n < k + 2:
            continue
        errors = []
        for i in range(n):
            keep = np.arange(n) != i
            coef = fit_model(model, features[keep], y[keep])
            pred = apply_model(model, coef, features[i:i + 1])[0]
            errors.append(abs(pred - y[i]) / y[i])
        scores[model] = float(np.mean(errors)) * 100
    best = min(scores, key=scores.get)
    coef = fit_model(best, features, y)
    return {"model": best, "description": MODELS[best], "coef": [float(c) for c in coef], "n": n,
            "loo_mape": {m: round(s, 3) for m, s in scores.items()}}


def layer_groups(arch: ArchConfig,
                 resolution: int | tuple[int, int]) -> list[tuple[int, LayerSpec, tuple[int, int], int]]:
    """The network as ``(group, spec, (H, W), count)``: the same layers as ``ArchConfig.layer_inputs`` with
    each stage's repeated block collapsed into one row (what makes prediction cheap)."""
    h, w = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    rows: list[tuple[int, LayerSpec, tuple[int, int], int]] = [(0, _stem(arch), (h, w), 1)]
    h, w = h // 4, w // 4
    widths = arch.widths
    for stage in range(NUM_STAGES):
        if stage:
            rows.append((0, _merge(widths[stage] // 2, widths[stage]), (h, w), 1))
            h, w = h // 2, w // 2
        rows.append((stage + 1, arch.block_spec(stage), (h, w), arch.depths[stage]))
    rows.append((0, arch.layers()[-1], (h, w), 1))
    return rows


@functools.cache
def _merge(in_dim: int, out_dim: int) -> LayerSpec:
    return LayerSpec("merge", in_dim, out_dim)


def _stem(arch: ArchConfig) -> LayerSpec:
    return LayerSpec("stem", 3, arch.embed_dim)


_SIZE_PART = re.compile(r"^(c|o|r)\d")


def layer_kind(key: str) -> str:
    """A table key without its sizes (``block|c64|pat_ch|...|r56x56`` -> ``block|pat_ch|...``)."""
    return "|".join(p for p in key.split("|") if not _SIZE_PART.match(p))


class Predictor:
    """Predicts a profile's metric for architectures. Features are cached per distinct architecture."""

    def __init__(self, profile: Any, statistic: str | None = None) -> None:
        self.profile = profile
        self.batch = profile.protocol.batch
        self.metric = profile.metric
        calibration = profile.calibration
        # Which per-layer statistic the sums use: the eager median ("ms"), its 10th percentile ("p10", less
        # sensitive to background load on a shared host) or, on GPUs, the CUDA-graph time ("graph_ms", without
        # the launch overhead that overlaps with neighbours' GPU work inside a network) or, for tables measured in
        # several passes, the smallest pass p10 ("min_p10"). The calibration records the one it chose.
        self.statistic = statistic or (calibration or {}).get("statistic", "ms")
        self._ms = {k: float(v.get(self.statistic, v["ms"])) for k, v in profile.entries.items()}
        # Launch floor of each layer kind: its smallest eager time at any width or resolution, i.e. what issuing
        # its kernels costs when the GPU has almost nothing to do. Summed over a network it bounds eager time from
        # below on a launch-bound GPU; on CPUs it is just another (unused) feature.
        self._floor: dict[str, float] = {}
        for key, entry in profile.entries.items():
            kind = layer_kind(key)
            self._floor[kind] = min(self._floor.get(kind, math.inf), float(entry["ms"]))
        self._key_cache: dict[tuple, float] = {}
        self._tuple_cache: dict[tuple, float] = {}
        self._feature_cache: dict[tuple, np.ndarray] = {}
        self.model = calibration["model"] if calibration else "sum"
        self.coef = np.asarray(calibration["coef"] if calibration else [1.0], dtype=float)

    # --- features --------------------------------------------------------------------------------------------
    def _layer_ms(self, spec: LayerSpec, hw: tuple[int, int]) -> float:
        cache_key = (spec, hw)
        value = self._key_cache.get(cache_key)
        if value is None:
            key = spec.key(hw)
            try:
                value = self._ms[key]
            except KeyError:
                raise ProfileError(
                    f"profile {self.profile.path.name if self.profile.path else self.profile.device} has no entry "
                    f"for layer {key}: the architecture is outside the space its table was built for; build that "
                    f"space's table with `patsearch profile --device {self.profile.device} --space YOUR_SPACE.yaml`"
                ) from None
            self._key_cache[cache_key] = value
        return value

    def features(self, arch: ArchConfig, resolution: int | tuple[int, int]) -> np.ndarray:
        """``[S_fixed, S_stage1..4, n_layers]``: summed table ms per group and the layer count."""
        cache_key = (arch, resolution)
        cached = self._feature_cache.get(cache_key)
        if cached is not None:
            return cached
        # Fast path: plain tuples index the fixed layers (stem + merges + head, summed) and each stage's block, so
        # no LayerSpec or key string is built per architecture; a tuple seen for the first time is resolved once
        # through layer_groups / LayerSpec.key.
        act, mix, spa = arch.act, arch.mixers, arch.spatial
        common = (arch.embed_dim, arch.n_div, arch.mlp_ratio, act, arch.num_heads, resolution)
        tuples = (("fixed", arch.embed_dim, act, arch.head_width, arch.num_classes, resolution),
                  (0, mix[0], spa[0], common), (1, mix[1], spa[1], common), (2, mix[2], spa[2], common),
                  (3, mix[3], spa[3], common))
        cache = self._tuple_cache
        get = cache.get
        values = [get(t) for t in tuples]
        if None in values:
            values = [[0.0, 0.0] for _ in range(5)]
            for group, spec, hw, _ in layer_groups(arch, resolution):
                values[group][0] += self._layer_ms(spec, hw)
                values[group][1] += self._floor.get(layer_kind(spec.key(hw)), 0.0)
            for t, v in zip(tuples, values):
                cache[t] = v
        d = arch.depths
        out = np.array([values[0][0], values[1][0] * d[0], values[2][0] * d[1], values[3][0] * d[2],
                        values[4][0] * d[3], 5 + d[0] + d[1] + d[2] + d[3],
                        values[0][1] + values[1][1] * d[0] + values[2][1] * d[1] + values[3][1] * d[2]
                        + values[4][1] * d[3]], dtype=float)
        self._feature_cache[cache_key] = out
        return out

    # --- prediction ------------------------------------------------------------------------------------------
    def _resolve(self, arch: Any, resolution: Any) -> tuple[ArchConfig, Any]:
        if isinstance(arch, tuple) and len(arch) == 2 and isinstance(arch[0], ArchConfig):  # a Candidate
            arch, res = arch
            resolution = res if resolution is None else resolution
        if not isinstance(arch, ArchConfig):
            arch = resolve_arch(arch)
        if resolution is None:
            resolution = 224
        if isinstance(resolution, int):
            check_resolution((resolution, resolution))
        return arch, resolution

    def raw_ms(self, arch: Any, resolution: Any = None) -> float:
        """The plain sum of the table's layer times (ms per batch)."""
        arch, resolution = self._resolve(arch, resolution)
        return float(self.features(arch, resolution)[:len(GROUPS)].sum())

    def predict_ms(self, arch: Any, resolution: Any = None) -> float:
        arch, resolution = self._resolve(arch, resolution)
        return float(apply_model(self.model, self.coef, self.features(arch, resolution))[0])

    def to_metric(self, ms: Any) -> Any:
        if self.metric == "throughput":
            return self.batch * 1000.0 / np.asarray(ms)
        return ms

    def predict(self, arch: Any, resolution: Any = None) -> float:
        return float(self.to_metric(self.predict_ms(arch, resolution)))

    def predict_many(self, archs: Iterable[Any], resolution: Any = None) -> np.ndarray:
        features = self.features
        if isinstance(resolution, int):
            check_resolution((resolution, resolution))
        feats = []
        for item in archs:
            if type(item) is ArchConfig:
                item = (item, 224 if resolution is None else resolution)
            elif not (isinstance(item, tuple) and type(item[0]) is ArchConfig) or resolution is not None:
                item = self._resolve(item, resolution)
            feats.append(features(item[0], item[1]))
        if not feats:
            return np.zeros(0)
        return np.asarray(self.to_metric(apply_model(self.model, self.coef, np.vstack(feats))), dtype=float)


# --- fidelity metrics ------------------------------------------------------------------------------------------
def fidelity(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """Share within +-5% and +-10%, MAPE, max error (all in %) and Kendall tau of predicted vs measured."""
    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    rel = np.abs(p - m) / m
    return {"n": int(len(m)), "within_5pct": round(float((rel <= 0.05).mean()) * 100, 2),
            "within_10pct": round(float((rel <= 0.10).mean()) * 100, 2),
            "mape": round(float(rel.mean()) * 100, 3), "max_error_pct": round(float(rel.max()) * 100, 2),
            "kendall_tau": round(kendall_tau(p, m), 4)}

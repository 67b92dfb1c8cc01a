"""A synthetic "other device" for adaptation tests: a base table, and a truth that scales it by known factors."""
from __future__ import annotations

import numpy as np

from patsearch.profiler.adapt import layer_type
from patsearch.profiler.devices import get_device
from patsearch.profiler.predictor import layer_groups
from patsearch.profiler.table import Profile

# The other device: blocks of each mixer run at their own speed relative to the base; stem, merges and head
# (present once in every network, so not separable from each other) share one factor; plus a fixed overhead.
FACTORS = {"stem": 1.3, "merge": 1.3, "head": 1.3, "block|pconv|relu": 1.8, "block|pat_ch|relu": 0.9,
           "block|pat_sf|relu": 2.5}
OFFSET_MS = 0.05
NOISE = 0.015   # +-1.5% measurement noise on every network
# The base table's hardware: a name no real host has, so that the base never fits the host running the tests
# (a real CPU name, such as a cloud Xeon's, made the adaptation tests pass or fail by the host they ran on).
OTHER_HARDWARE = "Stand-in CPU of the tests (no such host)"


def make_base(path, space, *, device="epyc", hardware=OTHER_HARDWARE, seed=0) -> Profile:
    """A measured-looking table of ``space`` (random per-layer times) made on ``hardware``."""
    rng = np.random.default_rng(seed)
    dev = get_device(device)
    profile = Profile.new(dev, dev.protocol, command="synthetic base", path=path)
    profile.provenance["hardware"] = hardware
    for key, (_spec, chw) in space.layer_inputs().items():
        ms = float(np.exp(rng.normal(np.log(0.2), 0.6)))
        profile.entries[key] = {"ms": ms, "p10": ms * 0.97, "p90": ms * 1.04, "n": 15, "inner": 10,
                                "input": list(chw)}
    profile.save()
    return profile


def true_ms(base: Profile, arch, resolution) -> float:
    total = OFFSET_MS
    for _, spec, hw, count in layer_groups(arch, resolution):
        key = spec.key(hw)
        total += count * FACTORS[layer_type(key)] * base.entries[key]["ms"]
    return total


class FakeMeasure:
    """Stands in for end-to-end measurement: the truth of the other device with seeded noise; counts calls."""

    def __init__(self, base: Profile, seed: int = 0) -> None:
        self.base, self.rng, self.measured = base, np.random.default_rng(seed), []

    def __call__(self, profile, items, device) -> None:
        for key, arch, res, role in items:
            ms = true_ms(self.base, arch, res) * (1 + self.rng.uniform(-NOISE, NOISE))
            profile.networks[key] = {"arch": arch.to_dict(), "resolution": res, "role": role, "ms": ms,
                                     "p10": ms * 0.98, "p90": ms * 1.02, "n": 9, "inner": 1}
            self.measured.append(key)

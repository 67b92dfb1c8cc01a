"""Time the predictor on 10,000 random architectures of the default space (a search predicts thousands:
it must take well under a second).

Usage: .venv/bin/python benchmarks/predict_speed.py [PROFILE]   (default: every profile in profiles/)
Sampling the architectures is not timed; predicting them (table lookups + calibration) is, cold caches first.
Wall and process CPU time are both printed: on a shared host the CPU time is the cost itself.
"""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

from patsearch.profiler import PROFILES_DIR, load_profile
from patsearch.space import load_space


def main() -> None:
    paths = [Path(p) for p in sys.argv[1:]] or sorted(PROFILES_DIR.glob("*.json"))
    space = load_space()
    cands = space.samples(10_000, seed=123)
    for path in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            profile = load_profile(path, allow_stale=True)
        start, cpu = time.perf_counter(), time.process_time()
        values = profile.predict_many(cands)
        cold, cold_cpu = time.perf_counter() - start, time.process_time() - cpu
        start = time.perf_counter()
        single = [profile.predict(c) for c in cands[:1000]]
        per_call = (time.perf_counter() - start) / len(single)
        print(f"{path.name}: predict_many(10,000) {cold * 1e3:.0f} ms wall, {cold_cpu * 1e3:.0f} ms CPU (cold caches); "
              f"predict() {per_call * 1e6:.1f} us per call (warm); "
              f"{profile.metric} range {values.min():.4g}..{values.max():.4g}")


if __name__ == "__main__":
    main()

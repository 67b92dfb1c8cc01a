"""Why CPU devices use the process CPU-time clock: the same 40 layers timed with both clocks, side by side.

Usage: .venv/bin/python benchmarks/clock_check.py
On an idle core the two clocks agree; on a shared host wall time absorbs other processes' slices. Prints the
median p10-p90 spread of each clock and the ratio of wall to CPU time (median and 10th percentile).
"""
from __future__ import annotations

import random
import statistics
import tempfile
from pathlib import Path

from patsearch.profiler.devices import get_device
from patsearch.profiler.table import Profile, build_table
from patsearch.space import load_space


def main(n: int = 40) -> None:
    dev = get_device("cpu")
    layers = load_space().layer_inputs()
    keys = sorted(layers)
    random.Random(1).shuffle(keys)
    subset = {k: layers[k] for k in keys[:n]}
    entries = {}
    with tempfile.TemporaryDirectory() as tmp:
        for clock in ("cpu", "wall"):
            profile = Profile.new(dev, dev.protocol_with(clock=clock), path=Path(tmp) / f"{clock}.json")
            build_table(profile, subset, dev, progress=False)
            entries[clock] = profile.entries
            spread = statistics.median(e["p90"] / e["p10"] - 1 for e in profile.entries.values())
            print(f"clock={clock}: median p10-p90 spread {spread * 100:.1f}% over {n} layers")
    cpu, wall = entries["cpu"], entries["wall"]
    print(f"wall median / cpu median: {statistics.median(wall[k]['ms'] / cpu[k]['ms'] for k in cpu):.3f}; "
          f"wall p10 / cpu median: {statistics.median(wall[k]['p10'] / cpu[k]['ms'] for k in cpu):.3f}")


if __name__ == "__main__":
    main()

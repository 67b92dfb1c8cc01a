"""Refit a profile's calibration and fidelity report from the networks it already holds (no measuring).

Usage: .venv/bin/python benchmarks/refit_profile.py PROFILE N_CALIBRATE N_EVALUATE [SEED]
Used after the predictor's candidate models change, and for profiles of hardware this host does not have.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from patsearch.profiler.table import Profile
from patsearch.profiler.validate import refit
from patsearch.space import load_space


def main() -> None:
    path, n_cal, n_eval = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    profile = Profile.load(path)
    report = refit(profile, load_space(), n_evaluate=n_eval, n_calibrate=n_cal, seed=seed,
                   plot=path.with_suffix(".fidelity.png"))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

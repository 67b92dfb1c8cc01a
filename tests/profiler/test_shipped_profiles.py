"""The committed profiles/ tables: readable, complete for the default space, with provenance and fidelity."""
import warnings

import pytest

from patsearch.arch import VARIANTS
from patsearch.profiler import PROFILES_DIR
from patsearch.profiler.table import Profile
from patsearch.space import load_space

SHIPPED = sorted(PROFILES_DIR.glob("*.json"))


def test_tables_ship_for_this_cpu_and_the_h100():
    devices = {Profile.load(p).device for p in SHIPPED}
    assert {"epyc", "h100"} <= devices


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_profile_is_complete(path):
    profile = Profile.load(path)
    prov = profile.provenance
    for key in ("hardware", "torch", "date", "command", "form", "platform"):
        assert prov.get(key), key
    assert set(load_space().layer_inputs()) <= set(profile.entries)
    report = profile.fidelity
    assert report["n_evaluation"] >= 50 and report["n_calibration"] >= 20
    assert (PROFILES_DIR / report["plot"]).exists()
    calib = {k for k, n in profile.networks.items() if n["role"] == "calibration"}
    evaluation = {k for k, n in profile.networks.items() if n["role"] == "evaluation"}
    assert len(evaluation) == report["n_evaluation"] and not calib & evaluation
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = [profile.predict(VARIANTS[v], 224) for v in ("patnet_t0", "patnet_t2", "patnet_m")]
    assert all(v > 0 for v in values)
    if profile.higher_is_better:
        assert values[0] > values[1] > values[2]
    else:
        assert values[0] < values[1] < values[2]

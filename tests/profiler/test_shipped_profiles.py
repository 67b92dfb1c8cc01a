"""The committed profiles/ tables: readable, complete for their space (the first space, ``patnet``, for
profiles/*.json, space NAME for profiles/NAME/*.json), with provenance and fidelity."""
import warnings

import pytest

from patsearch.arch import VARIANTS
from patsearch.profiler import PROFILES_DIR
from patsearch.profiler.table import Profile
from patsearch.space import DEFAULT_SPACE_NAME, SPACES_DIR, TOP_FOLDER_SPACE_NAME, load_space

SHIPPED = sorted(PROFILES_DIR.glob("*.json"))
# Tables of another space live in a folder named after it (found by path, never by device name)
FOR_SPACES = sorted(p for p in PROFILES_DIR.glob("*/*.json") if (SPACES_DIR / f"{p.parent.name}.yaml").exists())


def test_tables_ship_for_this_cpu_and_the_h100_in_the_default_space_and_the_first():
    for tables in (SHIPPED, [p for p in FOR_SPACES if p.parent.name == DEFAULT_SPACE_NAME]):
        assert {"epyc", "h100"} <= {Profile.load(p).device for p in tables}


@pytest.mark.parametrize("path", SHIPPED + FOR_SPACES, ids=lambda p: str(p.relative_to(PROFILES_DIR)))
def test_shipped_profile_is_complete(path):
    profile = Profile.load(path)
    prov = profile.provenance
    for key in ("hardware", "torch", "date", "command", "form", "platform"):
        assert prov.get(key), key
    space = load_space(TOP_FOLDER_SPACE_NAME if path.parent == PROFILES_DIR else path.parent.name)
    assert set(space.layer_inputs()) <= set(profile.entries)
    report = profile.fidelity
    assert report["n_evaluation"] >= 50 and report["n_calibration"] >= 20
    assert (path.parent / report["plot"]).exists()
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

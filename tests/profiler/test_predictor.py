"""Predictor arithmetic, calibration fitting, fidelity metrics and the fast path matching ArchConfig's layers."""
import math

import numpy as np
import pytest

from patsearch.arch import ArchConfig
from patsearch.profiler.devices import get_device
from patsearch.profiler.predictor import GROUPS, fidelity, fit_calibration, layer_groups
from patsearch.profiler.table import Profile, ProfileError
from patsearch.ranking import kendall_tau
from patsearch.space import load_space


def _synthetic_profile(space, device="cpu", batch=None, calibration=None):
    """A profile whose entry for each layer is a distinct, known number (no measuring)."""
    dev = get_device(device)
    protocol = dev.protocol_with(batch=batch)
    profile = Profile.new(dev, protocol)
    for i, key in enumerate(sorted(space.layer_inputs())):
        profile.entries[key] = {"ms": 1.0 + i, "p10": 0.5 + i, "p90": 2.0 + i}
    profile.data["calibration"] = calibration
    return profile


def _sum_by_hand(profile, arch, resolution, stat="ms"):
    return sum(profile.entries[spec.key((h, w))][stat] for spec, (_, h, w) in arch.layer_inputs(resolution))


def test_raw_prediction_is_the_sum_over_every_layer():
    space = load_space("tiny")
    profile = _synthetic_profile(space)
    for cand in space.samples(12, seed=0):
        expected = _sum_by_hand(profile, cand.arch, cand.resolution)
        assert profile.predict(cand) == pytest.approx(expected)
        assert profile.predict(cand.arch, cand.resolution) == pytest.approx(expected)
        assert profile.predictor.raw_ms(cand) == pytest.approx(expected)


def test_calibration_and_throughput_arithmetic():
    space = load_space("tiny")
    cal = {"model": "affine+layers", "coef": [0.5, 1.25, 0.01], "statistic": "p10"}
    profile = _synthetic_profile(space, device="cuda", batch=256, calibration=cal)
    assert profile.metric == "throughput" and profile.higher_is_better
    cand = space.sample(3)
    p10_sum = _sum_by_hand(profile, cand.arch, cand.resolution, "p10")
    n_layers = len(cand.arch.layers())
    ms = 0.5 + 1.25 * p10_sum + 0.01 * n_layers
    assert profile.predict_ms(cand) == pytest.approx(ms)
    assert profile.predict(cand) == pytest.approx(256 * 1000 / ms)


def test_per_stage_calibration_weights_each_group():
    space = load_space("tiny")
    coef = [0.1, 2.0, 3.0, 5.0, 7.0, 11.0]
    profile = _synthetic_profile(space, calibration={"model": "per-stage", "coef": coef})
    cand = space.sample(5)
    groups = [0.0] * len(GROUPS)
    stage = 0
    for spec, (_, h, w) in cand.arch.layer_inputs(cand.resolution):
        ms = profile.entries[spec.key((h, w))]["ms"]
        if spec.kind == "block":
            stage = cand.arch.widths.index(spec.in_dim) + 1
            groups[stage] += ms
        else:
            groups[0] += ms
    expected = coef[0] + sum(c * g for c, g in zip(coef[1:], groups))
    assert profile.predict(cand) == pytest.approx(expected)


def test_predict_many_matches_predict_and_accepts_candidates():
    space = load_space("tiny")
    profile = _synthetic_profile(space, calibration={"model": "affine", "coef": [0.2, 0.9]})
    cands = space.samples(20, seed=2)
    many = profile.predict_many(cands)
    assert many.shape == (20,)
    assert np.allclose(many, [profile.predict(c) for c in cands])


def test_layer_groups_match_the_architecture_layers():
    space = load_space()
    for cand in space.samples(25, seed=4):
        expanded = []
        for _, spec, hw, count in layer_groups(cand.arch, cand.resolution):
            expanded += [spec.key(hw)] * count
        assert expanded == [s.key((h, w)) for s, (_, h, w) in cand.arch.layer_inputs(cand.resolution)]


def test_architecture_outside_the_table_is_a_clear_error():
    profile = _synthetic_profile(load_space("tiny"))
    wide = ArchConfig(embed_dim=48, depths=(1, 1, 1, 1), num_classes=10, head_width=64)
    with pytest.raises(ProfileError, match=r"no entry for layer stem\|c3\|o48\|r64x64.*--space"):
        profile.predict(wide, 64)


def test_calibration_recovers_a_known_affine_relation():
    rng = np.random.default_rng(0)
    feats = np.column_stack([rng.uniform(0.5, 2, 30), *[rng.uniform(1, 10, 30) for _ in range(4)],
                             rng.integers(10, 40, 30), rng.uniform(1, 5, 30)])
    total = feats[:, :5].sum(axis=1)
    measured = 0.7 + 1.15 * total
    result = fit_calibration(feats, measured)
    assert result["model"] in ("affine", "affine+layers", "per-stage", "per-stage+layers", "max-launch")
    assert result["loo_mape"][result["model"]] < 1e-6
    assert result["loo_mape"]["sum"] > 5  # the plain sum is off by ~15%
    if result["model"] == "affine":
        assert result["coef"] == pytest.approx([0.7, 1.15])


def test_kendall_tau_known_values():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    # tau-b with a tie in y: concordant 2, discordant 0, pairs untied in y = 2 of 3
    assert kendall_tau([1, 2, 3], [1, 2, 2]) == pytest.approx(2 / math.sqrt(3 * 2))


def test_fidelity_report_numbers():
    report = fidelity(predicted=[104, 93, 120, 50], measured=[100, 100, 100, 50])
    assert report["n"] == 4
    assert report["within_5pct"] == 50.0       # 4% and 0%
    assert report["within_10pct"] == 75.0      # + 7%
    assert report["mape"] == pytest.approx((4 + 7 + 20 + 0) / 4)
    assert report["max_error_pct"] == 20.0


def test_spearman_known_values():
    from patsearch.ranking import spearman as spearman_rho

    assert spearman_rho([1, 2, 3, 4], [10, 20, 30, 400]) == pytest.approx(1.0)
    assert spearman_rho([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks (1,2,3) vs (1,3,2): 1 - 6 * 2 / (3 * 8) = 0.5
    assert spearman_rho([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    # a tie gets its average rank: (1, 2.5, 2.5) vs (1, 2, 3)
    assert spearman_rho([5, 7, 7], [1, 2, 3]) == pytest.approx(np.corrcoef([1, 2.5, 2.5], [1, 2, 3])[0, 1])


def test_launch_overhead_model_recovers_a_per_layer_overhead():
    # networks whose time is work + 0.3 ms per layer + 0.5 x launch floor: the launch-aware model finds it
    rng = np.random.default_rng(0)
    n = 30
    feats = np.zeros((n, len(GROUPS) + 2))
    feats[:, :len(GROUPS)] = rng.uniform(0.5, 5.0, size=(n, len(GROUPS)))
    feats[:, len(GROUPS)] = rng.integers(8, 30, size=n)
    feats[:, len(GROUPS) + 1] = feats[:, len(GROUPS)] * rng.uniform(0.05, 0.2, size=n)
    measured = 0.2 + feats[:, :len(GROUPS)].sum(1) + 0.3 * feats[:, len(GROUPS)] + 0.5 * feats[:, -1]
    result = fit_calibration(feats, measured)
    assert result["model"] == "affine+launch"
    assert result["coef"] == pytest.approx([0.2, 1.0, 0.5, 0.3], abs=1e-6)

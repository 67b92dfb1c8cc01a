"""Baselines from both hand-designed families: PATNet's variants and FasterNet as points of the space, and the
GPU throughput floor they are measured against."""
from __future__ import annotations

import pytest

from patsearch.arch import NAMED_NETWORKS
from patsearch.errors import UserError
from patsearch.profiler import load_profile
from patsearch.search.baselines import select_baselines
from patsearch.search.budget import BudgetError
from patsearch.search.constraints import (
    ConstraintError,
    check_achievable,
    feasible_share,
    load_constraints,
    parse_constraints,
)
from patsearch.space import load_space

H200 = "profiles/h200-b256-bfloat16-cl-graphs-fused.json"


@pytest.fixture(scope="module")
def space():
    return load_space("patnet")  # the space of the shipped H200 table


def _load(device: str):
    return load_profile(device, check=False)


def _h200(floor: str):
    from search_helpers import ROOT

    return load_constraints(parse_constraints(min_throughputs=[f"{ROOT / H200}={floor}"]), loader=_load)


def test_fasternet_points_of_the_space_are_baselines_by_name_and_by_auto(space):
    constraints = _h200("1000fps")
    chosen, notes = select_baselines(space, constraints, "fasternet_t2,fasternet_t1,patnet_t2")
    assert [b.name for b in chosen] == ["patnet_t2", "fasternet_t2", "fasternet_t1"]  # largest first
    assert all(b.params is not None for b in chosen)  # points of the space: the sampler learns from them too
    auto, notes = select_baselines(space, constraints, "auto")
    names = [b.name for b in auto]
    assert {"fasternet_t1", "fasternet_t2", "patnet_t1", "patnet_t2"} <= set(names)
    assert any(n.startswith("fasternet_t0: its layers are not in the lookup table") for n in notes)  # width 40


def test_a_throughput_floor_keeps_only_the_networks_fast_enough(space):
    profile = _load(str(__import__("search_helpers").ROOT / H200))
    t2 = profile.predict(NAMED_NETWORKS["fasternet_t2"], 224)
    chosen, notes = select_baselines(space, _h200(f"{t2 * 0.999:.0f}fps"), "auto")
    assert "fasternet_t2" in {b.name for b in chosen}
    slower = [b for b in chosen if b.predicted[next(iter(b.predicted))] < t2 * 0.999]
    assert not slower
    with pytest.raises(UserError, match="baseline patnet_l cannot be used: predicted"):
        select_baselines(space, _h200(f"{t2:.0f}fps"), "patnet_l")
    with pytest.raises(UserError, match="unknown baseline"):
        select_baselines(space, _h200("1000fps"), "fasternet_xl")



def test_a_floor_named_by_a_network_is_its_prediction_on_the_same_table_and_that_network_meets_it(space):
    [spec] = parse_constraints(min_throughputs=["h200=FasterNet_T2"])
    assert (spec.device, spec.limit, spec.relative_to) == ("h200", None, "fasternet_t2")
    with pytest.raises(BudgetError, match="'fasternet_t9': neither an amount like 4000fps nor a named network "
                                          r"\(patnet_t0, .*fasternet_t2"):
        parse_constraints(min_throughputs=["h200=fasternet_t9"])
    [constraint] = _h200("fasternet_t2")
    t2 = _load(str(__import__("search_helpers").ROOT / H200)).predict(NAMED_NETWORKS["fasternet_t2"], 224)
    assert constraint.limit == pytest.approx(t2, rel=1e-12)
    assert constraint.describe().endswith("img/s (fasternet_t2)")
    assert constraint.to_dict()["relative_to"] == "fasternet_t2"
    # the network that sets the floor is a baseline of its own search, not one rounding error outside it
    [chosen], _ = select_baselines(space, [constraint], "fasternet_t2")
    assert chosen.name == "fasternet_t2"
    with pytest.raises(UserError, match="baseline patnet_t2 cannot be used: predicted"):  # slower on the H200
        select_baselines(space, [constraint], "patnet_t2")
    [latency] = load_constraints(parse_constraints(latency_budgets=["epyc=patnet_t1"]), loader=_load)
    assert latency.limit == pytest.approx(_load("epyc").predict(NAMED_NETWORKS["patnet_t1"], 224), rel=1e-12)


def test_a_named_network_outside_the_table_cannot_set_a_limit():
    with pytest.raises(ConstraintError, match="fasternet_t0 cannot set the .* limit: .*no entry for layer"):
        _h200("fasternet_t0")  # width 40 is not in the space's tables

def test_the_throughput_floor_parses_and_an_unreachable_floor_says_what_is_possible(space):
    from search_helpers import ROOT

    with pytest.raises(BudgetError, match="missing unit"):
        parse_constraints(min_throughputs=["h200=20000"])
    with pytest.raises(BudgetError, match="unknown unit"):
        parse_constraints(min_throughputs=["h200=20000ms"])
    [spec] = parse_constraints(min_throughputs=["h200=20kfps"])
    assert spec.device == "h200" and spec.limit == 20000
    constraints = _h200("10000000fps")
    with pytest.raises(ConstraintError, match="img/s") as info:
        check_achievable(space, constraints)
    assert "out of reach" in str(info.value) and "lower the floor to at most" in str(info.value)
    assert (ROOT / H200).exists()


def test_the_feasible_share_counts_the_sampled_networks_that_meet_every_constraint(space):
    points = space.samples(300, seed=3)
    profile = _load(str(__import__("search_helpers").ROOT / H200))
    speeds = sorted(profile.predict(arch, res) for arch, res in points)
    # A floor at the 100th-fastest of the 300 sampled networks admits exactly those 100 (the same sample).
    floor = speeds[-100]
    assert feasible_share(space, _h200(f"{floor:.6f}fps"), samples=300, seed=3) == pytest.approx(
        sum(s >= float(f"{floor:.6f}") for s in speeds) / 300)
    assert feasible_share(space, _h200("1fps"), samples=300, seed=3) == 1.0
    assert feasible_share(space, _h200("1fps") + _h200("10000000fps"), samples=300, seed=3) == 0.0  # every one

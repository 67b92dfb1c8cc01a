"""A search's result rows (patsearch.search.results): params and FLOPs counted once and stored as they go, and
the proxy-check reports the noise is read from."""
from __future__ import annotations

import json

import pytest
from search_helpers import fake_proxy, load_unchecked

from patsearch.search.api import SearchOptions, run_search
from patsearch.search.results import (
    COSTS_ATTR,
    ConstraintInfo,
    Noise,
    Row,
    best_row,
    budget_use,
    fidelity_reports,
    fill_costs,
    finished,
    missing_costs,
    pareto_front,
    rows,
)


def test_costs_are_counted_once_stored_as_they_go_and_never_recounted(tmp_path, tiny_profile, monkeypatch):
    from rich.console import Console

    from patsearch.search import api

    counted = []

    def count(arch, resolution):
        counted.append(arch.to_dict())
        return 1000 + len(counted), 10_000 + len(counted)

    monkeypatch.setattr(api, "_count_costs", count)
    log = tmp_path / "out.txt"
    with log.open("w") as fh:  # not a terminal: a plain line per network
        out = run_search(SearchOptions(latency_budgets=[f"{tiny_profile}=5ms"], space="tiny", trials=4, seed=1,
                                       runs_dir=str(tmp_path / "runs"), plots=False, baselines="none",
                                       heartbeat_interval=1, study_name="s"),
                         run_proxy=fake_proxy(), load_profile=load_unchecked, console=Console(file=fh, width=200))
    text = log.read_text()
    stored = out.study.user_attrs[COSTS_ATTR]
    assert len(counted) == len(stored) >= 1  # each trial once, though the best is also a shown row
    assert f"counting params and FLOPs of {len(counted)} network(s)" in text
    assert f"params/FLOPs {len(counted)}/{len(counted)}" in text
    assert all(r.params is not None for r in rows(out.study) if str(r.number) in stored)
    assert missing_costs(out.study) == []

    # The rerun finds the study complete: it counts nothing and says nothing about counting.
    with log.open("w") as fh:
        run_search(SearchOptions(latency_budgets=[f"{tiny_profile}=5ms"], space="tiny", trials=4, seed=1,
                                 runs_dir=str(tmp_path / "runs"), plots=False, baselines="none",
                                 heartbeat_interval=1, study_name="s"),
                   run_proxy=fake_proxy(), load_profile=load_unchecked, console=Console(file=fh, width=200))
    assert len(counted) == len(stored) and "counting params" not in log.read_text()

    # A count interrupted half-way keeps what it did: the next one counts only the rest.
    out.study.set_user_attr(COSTS_ATTR, {})
    todo = len(missing_costs(out.study))

    def interrupted(arch, resolution):
        if len(counted) > len(stored):
            raise KeyboardInterrupt
        return count(arch, resolution)

    assert todo >= 2
    with pytest.raises(KeyboardInterrupt):
        fill_costs(out.study, interrupted)
    assert len(out.study.user_attrs[COSTS_ATTR]) == 1
    assert fill_costs(out.study, count) == todo - 1
    assert missing_costs(out.study) == []


def test_the_shipped_fidelity_reports_are_data_next_to_the_tables():
    import tomllib
    from search_helpers import ROOT as root

    shipped = fidelity_reports("no-such-runs-dir")
    names = {p.name for p in shipped}
    assert {"proxy-fidelity-cifar10.json", "proxy-fidelity-cifar10-reference50.json"} <= names
    assert all(p.parent == (root / "profiles" / "fidelity").resolve() for p in shipped)
    for p in shipped:  # each a proxy-check report the summary can state
        report = json.loads(p.read_text())
        assert report["settings"]["proxy"]["data_id"] and report["kendall_tau"] is not None
    data_files = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    assert data_files["share/patsearch/profiles/fidelity"] == ["profiles/fidelity/*.json"]


def _row(number, top1, ms, *, state="COMPLETE", feasible=True, baseline=None, seeds=(), rungs=None):
    return Row(number, state, baseline, top1, {"cpu:latency_ms": ms}, feasible, None, None, {}, 64,
               seed_scores=tuple(seeds), rung_scores=rungs or {})


def test_finished_rows_rank_longer_rungs_then_confirmed_means_ahead_of_single_scores():
    rs = [_row(0, 0.90, 1.0), _row(1, 0.60, 1.0, seeds=(0.62,)), _row(2, 0.99, 1.0, state="PRUNED"),
          _row(3, 0.95, 9.0, feasible=False), _row(4, 0.50, 2.0, rungs={1: (0.55, 0.57)}),
          _row(5, 0.97, 1.0, baseline="fasternet_t0")]
    assert [r.number for r in finished(rs)] == [4, 1, 5, 0]  # pruned and infeasible rows are never chosen
    assert rs[1].score == pytest.approx(0.61) and rs[4].score == pytest.approx(0.56)
    assert best_row(rs).number == 4
    assert best_row([rs[0], rs[5]]).number == 5
    assert best_row([rs[0], rs[5]], include_baselines=False).number == 0
    assert best_row([rs[2], rs[3]]) is None


def test_the_pareto_front_keeps_rows_no_other_beats_on_both_axes():
    rs = [_row(0, 0.70, 3.0), _row(1, 0.60, 1.0), _row(2, 0.65, 3.5), _row(3, 0.80, 5.0), _row(4, 0.60, 2.0)]
    assert [r.number for r in pareto_front(rs, "cpu:latency_ms", "latency")] == [1, 0, 3]
    # a throughput floor: higher is better, so the order and the front turn around
    assert [r.number for r in pareto_front(rs, "cpu:latency_ms", "throughput")] == [3]


def test_budget_use_and_the_noise_of_a_score():
    row = _row(0, 0.5, 4.0)
    assert budget_use(row, ConstraintInfo("cpu", "latency", 5.0)) == pytest.approx(0.8)
    fast = Row(1, "COMPLETE", None, 0.5, {"gpu:throughput": 4000.0}, True, None, None, {}, 64)
    assert budget_use(fast, ConstraintInfo("gpu", "throughput", 2000.0)) == pytest.approx(0.5)  # floor / predicted
    assert budget_use(row, ConstraintInfo("gpu", "latency", 5.0)) is None  # not predicted for that device
    binomial = Noise(n_val=400, seed_std=None)
    assert binomial.of(0.5) == pytest.approx(2.5) and binomial.of(None) is None
    assert Noise(n_val=400, seed_std=1.5).of(0.5) == 1.5  # a measured seed std wins over the binomial
    confirmed = _row(2, 0.5, 1.0, seeds=(0.52, 0.54, 0.56))
    assert Noise(n_val=400, seed_std=None, confirm_std=2.0).of_row(confirmed) == pytest.approx(1.0)


def test_of_two_networks_that_score_the_same_the_faster_one_ranks_first():
    # latency: the lower first; trial number breaks only an exact tie in speed too
    rs = [_row(0, 0.80, 3.0), _row(1, 0.80, 2.0), _row(2, 0.80, 2.0), _row(3, 0.81, 9.0)]
    assert [r.number for r in finished(rs)] == [3, 1, 2, 0]
    # throughput: the higher first
    fast = Row(5, "COMPLETE", None, 0.80, {"h200:throughput": 4e4}, True, None, None, {}, 64)
    slow = Row(4, "COMPLETE", None, 0.80, {"h200:throughput": 3e4}, True, None, None, {}, 64)
    assert [r.number for r in finished([slow, fast])] == [5, 4]

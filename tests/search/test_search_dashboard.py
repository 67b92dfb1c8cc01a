"""The study as optuna-dashboard reads it: over-budget trials show their constraints, and the dashboard's
parameter importances are computed on trained networks only."""
from __future__ import annotations

import math
import warnings

import optuna
import pytest
from search_helpers import fake_proxy

from patsearch.profiler import load_profile
from patsearch.search.api import SearchOptions, run_search
from patsearch.search.plots import trained_study
from patsearch.search.trial_counts import is_infeasible

serializer = pytest.importorskip("optuna_dashboard._serializer")
importance = pytest.importorskip("optuna_dashboard._importance")


@pytest.fixture(scope="module")
def searched(tmp_path_factory, tiny_profile):
    runs = tmp_path_factory.mktemp("dash") / "runs"
    opts = SearchOptions(latency_budgets=[f"{tiny_profile}=1ms"], space="tiny", trials=6, runs_dir=str(runs),
                         count_costs=False, plots=False, baselines="none", heartbeat_interval=1, study_name="d",
                         seed=3)
    run_search(opts, run_proxy=fake_proxy(), load_profile=lambda p: load_profile(p, check=False))
    # What `optuna-dashboard sqlite:///runs/d/study.db` opens: the storage, read afresh.
    storage = optuna.storages.RDBStorage(f"sqlite:///{runs}/d/study.db")
    return optuna.load_study(study_name="d", storage=storage)


def test_the_dashboard_shows_each_trials_constraints(searched):
    study_id = searched._study_id
    system_attrs = searched._storage.get_study_system_attrs(study_id)
    shown = {t.number: serializer.serialize_frozen_trial(study_id, t, system_attrs) for t in searched.trials}
    infeasible = [t for t in searched.trials if is_infeasible(t)]
    assert infeasible, "the 1 ms budget should make some proposals miss it"
    for t in searched.trials:
        constraints = shown[t.number]["constraints"]
        predicted = t.user_attrs["pred:cpu:latency_ms"]
        assert constraints == [pytest.approx((predicted - 1.0) / 1.0)]
        assert (constraints[0] > 0) == (t in infeasible)  # the dashboard's own test of feasibility
    for t in infeasible:  # not an ordinary complete trial with a top-1 of 0
        assert shown[t.number]["values"] == ["-inf"]


def test_the_dashboards_importances_see_trained_networks_only(searched):
    trials = searched.get_trials(deepcopy=False)
    assert sum(is_infeasible(t) for t in trials) >= 1
    importance.param_importance_cache.clear()  # the dashboard caches by study id across tests
    got = importance.get_param_importance_from_trials_cache(None, searched._storage, searched._study_id, 0, trials)
    by_name = {entry["name"]: entry["importance"] for entry in got}
    trained = trained_study(searched)  # the complete, trained trials (pruned ones are out of importances anyway)
    assert len(trained.trials) >= 3
    with warnings.catch_warnings():  # PED-ANOVA's note that it minimises: the dashboard's target negates
        warnings.simplefilter("ignore")
        expected = optuna.importance.get_param_importances(
            trained, target=lambda t: -t.values[0], evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    assert by_name.keys() == expected.keys()
    for name, value in expected.items():
        assert math.isclose(by_name[name], value, abs_tol=1e-9), (name, by_name, expected)

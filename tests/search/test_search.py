"""The search end to end on a tiny space and table, with a stand-in proxy trainer (the real one: test_resume)."""
from __future__ import annotations

import itertools

import pytest
import torch
import yaml
from optuna.trial import TrialState
from search_helpers import HEARTBEAT_S, fake_proxy, variant_space

from patsearch.arch import VARIANTS, ArchConfig, resolve_arch
from patsearch.profiler import load_profile
from patsearch.search.api import SearchOptions, run_search
from patsearch.search.constraints import ConstraintError
from patsearch.search.objective import ATTR_BASELINE, ATTR_FEASIBLE, ATTR_TOP1
from patsearch.search.report import show_study
from patsearch.search.trial_counts import is_infeasible


def _load(path):
    return load_profile(path, check=False)


def _run(tmp_path, profile, budget="1ms", *, proxy=None, **kw):
    kw.setdefault("trials", 4)
    kw.setdefault("space", "tiny")
    kw.setdefault("count_costs", False)
    kw.setdefault("plots", False)
    kw.setdefault("baselines", "none")
    opts = SearchOptions(latency_budgets=[f"{profile}={budget}"] if budget else [], runs_dir=str(tmp_path / "runs"),
                         heartbeat_interval=HEARTBEAT_S, **kw)
    return run_search(opts, run_proxy=proxy or fake_proxy(), load_profile=_load)


def _all_points(space):
    return space.samples(space.size(), seed=0)


def test_infeasible_candidates_are_recorded_but_never_trained(tmp_path, tiny_profile, tiny_space):
    calls = []
    out = _run(tmp_path, tiny_profile, "1ms", proxy=fake_proxy(calls=calls), trials=4, seed=3)
    trials = out.study.get_trials()
    profile = _load(tiny_profile)
    feasible = [t for t in trials if not is_infeasible(t) and "duplicate_of" not in t.user_attrs]
    assert len(feasible) == 4  # the count is of distinct trained candidates (repeats reuse a score, uncounted)
    assert len(calls) == len({(a.embed_dim, a.depths, a.mixers, a.spatial) for a in calls}) == 4
    for arch in calls:  # only candidates within the budget reach the trainer
        assert profile.predict(arch.replace(name=""), 64) <= 1.0
    for t in trials:
        value = t.user_attrs["pred:cpu:latency_ms"]
        assert t.constraints == {"0": pytest.approx(value - 1.0)}  # the study's constraints, in order
        assert t.user_attrs[ATTR_FEASIBLE] == (value <= 1.0)
        trained = ATTR_TOP1 in t.user_attrs or (t.state.name == "PRUNED" and bool(t.intermediate_values))
        assert trained == (value <= 1.0)
    assert any(is_infeasible(t) for t in trials)  # the budget is tight enough that some proposals miss it


def test_budget_below_the_fastest_network_stops_at_once(tmp_path, tiny_profile, tiny_space):
    profile = _load(tiny_profile)
    fastest = min(profile.predict(c.arch, c.resolution) for c in _all_points(tiny_space))
    with pytest.raises(ConstraintError) as info:
        _run(tmp_path, tiny_profile, f"{fastest * 0.9:.4f}ms")
    assert f"{fastest:.3g} ms" in str(info.value)
    assert "raise the budget" in str(info.value)
    assert not (tmp_path / "runs").exists()  # nothing was created
    # Just above the fastest network the search runs, and finds exactly that one.
    out = _run(tmp_path, tiny_profile, f"{fastest * 1.0001:.6f}ms", trials=1)
    best = yaml.safe_load((out.out_dir / "best.yaml").read_text())
    assert best["search"]["predicted"]["cpu:latency_ms"] == pytest.approx(fastest, rel=1e-3)


def test_best_yaml_round_trips_into_the_model_builder(tmp_path, tiny_profile):
    from patsearch.models import create_model

    out = _run(tmp_path, tiny_profile, "5ms", trials=3, seed=1)
    # the best score; of two that tie, the faster by its prediction, then the earlier trial
    best = max((t for t in out.study.trials if t.state == TrialState.COMPLETE),
               key=lambda t: (t.value, -t.user_attrs["pred:cpu:latency_ms"], -t.number))
    loaded = ArchConfig.load(out.best_yaml)
    assert loaded.replace(name="") == ArchConfig.from_dict(best.user_attrs["arch"]).replace(name="")
    arch = resolve_arch(str(out.best_yaml))  # what `patsearch train --arch runs/<study>/best.yaml` does
    assert arch == loaded
    ranked = sorted((out.out_dir / "ranked").glob("rank*.yaml"))  # the runners-up, best first, rank1 = best.yaml
    scores = [t.value for t in sorted((t for t in out.study.trials if t.state == TrialState.COMPLETE
                                       and "duplicate_of" not in t.user_attrs),
                                      key=lambda t: -t.value)]
    assert len(ranked) == min(3, len(scores)) and ArchConfig.load(ranked[0]) == loaded
    assert [yaml.safe_load(p.read_text())["search"]["proxy_top1"] for p in ranked] == [round(v, 4) for v in
                                                                                      scores[:len(ranked)]]
    model = create_model(arch).eval()
    res = best.user_attrs["resolution"]
    with torch.no_grad():
        assert model(torch.randn(1, 3, res, res)).shape == (1, arch.num_classes)


def test_baselines_within_budget_are_enqueued_first(tmp_path, capsys):
    space_path, space, profile_path = variant_space(tmp_path)
    t0 = _load(profile_path).predict(VARIANTS["patnet_t0"], 64)
    out = _run(tmp_path, profile_path, f"{t0 * 1.2:.4f}ms", space=str(space_path), trials=4, baselines="auto")
    first = out.study.trials[0]
    assert first.user_attrs[ATTR_BASELINE] == "patnet_t0"
    assert ArchConfig.from_dict(first.user_attrs["arch"]) == VARIANTS["patnet_t0"]  # the exact variant
    assert first.params  # enqueued as a point of the space, so the sampler learns from it
    assert first.state == TrialState.COMPLETE
    printed = capsys.readouterr().out
    assert "patnet_t0" in printed and "vs patnet_t0" in printed  # summary row and the comparison line
    # Below T0's prediction (but above the fastest network) no variant fits, and the search says so.
    out2 = _run(tmp_path, profile_path, f"{t0 * 0.95:.4f}ms", space=str(space_path), trials=1, baselines="auto",
                study_name="tight")
    assert not any(t.user_attrs.get(ATTR_BASELINE) for t in out2.study.trials)
    assert any("patnet_t0: predicted" in n and "misses" in n for n in out2.notes)


def test_pruning_stops_weak_candidates_early(tmp_path, tiny_profile):
    epochs_run = []

    def run_proxy(arch, on_epoch_end=None):
        final = 0.1 + 0.01 * arch.embed_dim + 0.05 * arch.depths[2]
        done = 0
        try:
            for epoch in range(1, 5):
                done = epoch
                on_epoch_end(epoch, final * epoch / 4)
        finally:
            epochs_run.append(done)
        return final

    run_proxy.num_classes = 10
    out = _run(tmp_path, tiny_profile, "5ms", proxy=run_proxy, trials=10, seed=0, sampler="random")
    states = [t.state for t in out.study.trials]
    assert TrialState.PRUNED in states
    assert min(epochs_run) < 4  # a pruned candidate really stopped training
    pruned = [t for t in out.study.trials if t.state == TrialState.PRUNED]
    completed = [t for t in out.study.trials if t.state == TrialState.COMPLETE]
    assert max(max(t.intermediate_values.values()) for t in pruned) < max(t.value for t in completed)


def test_pareto_mode_returns_a_feasible_front(tmp_path, tiny_profile):
    out = _run(tmp_path, tiny_profile, "1.2ms", objective="pareto", trials=6, seed=2)
    study = out.study
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    front = study.best_trials
    assert front and all(not is_infeasible(t) for t in front)
    assert not any(t.state == TrialState.PRUNED for t in study.trials)
    for a, b in itertools.permutations(front, 2):  # nobody on the front dominates anybody else on it
        assert not (a.values[0] >= b.values[0] and a.values[1] <= b.values[1] and a.values != b.values)
    doc = yaml.safe_load((out.out_dir / "pareto.yaml").read_text())
    # pareto.yaml lists the same front as Optuna's (as value pairs: duplicated networks share their values).
    ours = {(round(r["proxy_top1"], 4), round(r["predicted"]["cpu:latency_ms"], 6)) for r in doc["front"]}
    assert ours == {(round(t.values[0], 4), round(t.values[1], 6)) for t in front}


def test_multi_device_constraints_each_recorded(tmp_path, tiny_profile, tiny_gpu_profile, tiny_space):
    gpu = _load(tiny_gpu_profile)
    rates = sorted(gpu.predict(c.arch, c.resolution) for c in _all_points(tiny_space))
    floor = rates[len(rates) // 2]  # half the space is too slow on the "GPU"
    opts = SearchOptions(latency_budgets=[f"{tiny_profile}=5ms"], min_throughputs=[f"{tiny_gpu_profile}={floor}fps"],
                         space="tiny", trials=4, runs_dir=str(tmp_path / "runs"), count_costs=False, plots=False,
                         baselines="none", seed=5)
    out = run_search(opts, run_proxy=fake_proxy(), load_profile=_load)
    for t in out.study.trials:
        latency, rate = t.user_attrs["pred:cpu:latency_ms"], t.user_attrs["pred:cuda:throughput"]
        assert t.constraints == {"0": pytest.approx((latency - 5) / 5), "1": pytest.approx((floor - rate) / floor)}
        ok = rate >= floor and latency <= 5
        assert t.user_attrs[ATTR_FEASIBLE] == ok
    assert "cuda-fps" in out.study_name


def test_rerun_resumes_and_refuses_changed_options(tmp_path, tiny_profile, capsys):
    def distinct(trials) -> int:  # trained networks; a repeated proposal reuses a score and is not counted
        return sum(not is_infeasible(t) and "duplicate_of" not in t.user_attrs for t in trials)

    first = _run(tmp_path, tiny_profile, "5ms", trials=2, study_name="s")
    assert distinct(first.study.trials) == 2
    before = len(first.study.trials)
    second = _run(tmp_path, tiny_profile, "5ms", trials=4, study_name="s")
    assert distinct(second.study.trials) == 4
    assert second.ran == len(second.study.trials) - before  # only the missing trials ran
    from patsearch.errors import UserError

    with pytest.raises(UserError, match="was created with constraints"):
        _run(tmp_path, tiny_profile, "4ms", trials=4, study_name="s")
    from patsearch.search.proxy import ProxySettings

    other_lr = SearchOptions(latency_budgets=[f"{tiny_profile}=5ms"], runs_dir=str(tmp_path / "runs"), trials=4,
                             space="tiny", count_costs=False, plots=False, baselines="none", study_name="s",
                             heartbeat_interval=HEARTBEAT_S, proxy=ProxySettings(lr=1e-3))
    with pytest.raises(UserError, match="was created with proxy_lr=None, not 0.001"):  # scores of two lrs unmixed
        run_search(other_lr, run_proxy=fake_proxy(), load_profile=_load)
    capsys.readouterr()
    show_study("s", runs_dir=str(tmp_path / "runs"))
    shown = capsys.readouterr().out
    assert "study s" in shown and "search" in shown
    with pytest.raises(UserError, match="no study 'nope'"):
        show_study("nope", runs_dir=str(tmp_path / "runs"))


@pytest.mark.slow
def test_results_files_and_plots(tmp_path, tiny_profile):
    out = _run(tmp_path, tiny_profile, "5ms", trials=3, plots=True, count_costs=True, seed=4)
    names = {p.name for p in out.files}
    assert {"best.yaml", "pareto.png", "history.png", "importances.png"} <= names
    for name in ("pareto.png", "history.png", "importances.png"):
        assert (out.out_dir / name).read_bytes()[:4] == b"\x89PNG"
    best = yaml.safe_load(out.best_yaml.read_text())["search"]
    assert best["params"] > 0 and best["flops"] > 0

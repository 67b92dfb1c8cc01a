"""Multi-fidelity search: rung promotion, per-rung training lengths and seeds, resume after a kill at a rung, and
workers that share one study training distinct networks."""
from __future__ import annotations

import math
import os
import signal

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from search_helpers import start_worker, wait_for_marker

from patsearch.arch import ArchConfig
from patsearch.errors import UserError
from patsearch.profiler import load_profile
from patsearch.search.api import SearchOptions, run_search
from patsearch.search.objective import RETRAINING_DIR
from patsearch.search.options import resolve_rungs
from patsearch.search.proxy import ProxySettings, make_proxy_runner
from patsearch.search.rungs import PROMOTED_ATTR, Rungs, busy_seconds, rung_of, rung_report
from patsearch.search.trial_counts import is_infeasible


def epoch_aware_proxy(calls: list):
    """A stand-in trainer whose ranking changes with training length: at 2 epochs deep-and-narrow networks lead,
    at 8 epochs wide ones (the pattern that makes a short proxy pick the wrong network)."""

    def score(arch, epochs: int, seed: int) -> float:
        depth, width = sum(arch.depths), arch.embed_dim
        return round(0.3 + 0.01 * depth + 0.0004 * width * epochs + 0.001 * seed, 6)

    def run_proxy(arch, on_epoch_end=None, seed=None, epochs=None):
        e = 2 if epochs is None else epochs
        calls.append((e, seed or 0, arch.embed_dim, tuple(arch.depths)))
        top1 = score(arch, e, seed or 0)
        if on_epoch_end is not None:
            for epoch in range(1, e + 1):
                on_epoch_end(epoch, top1)
        return top1

    run_proxy.num_classes = 10
    run_proxy.score = score
    return run_proxy


def _search(tmp_path, tiny_profile, proxy, **kw):
    opts = SearchOptions(latency_budgets=[f"{tiny_profile}=5ms"], space="tiny", runs_dir=str(tmp_path / "runs"),
                         count_costs=False, plots=False, pruner="none",
                         proxy=ProxySettings(epochs=2, resolution=64, device="cpu"), **kw)
    return run_search(opts, run_proxy=proxy, load_profile=lambda d: load_profile(d, check=False))


def test_rungs_parse_and_bad_input():
    assert Rungs.parse("5,15,45").epochs == (5, 15, 45)
    assert Rungs.parse("none") is None
    assert Rungs.scaled(5).epochs == (5, 15, 45)
    for bad, match in (("5", "at least two"), ("15,5", "increasing"), ("5,5,9", "increasing"), ("a,b", "epoch counts"),
                       ("0,3", "increasing positive")):
        with pytest.raises(UserError, match=match):
            Rungs.parse(bad)
    with pytest.raises(UserError, match="--rung-keep"):
        Rungs((2, 4), keep=1.0)
    with pytest.raises(UserError, match="--rung-seeds"):
        Rungs((2, 4), top_seeds=0)
    # 60 candidates keep 20, then 7 (2 seeds): the default plan in epochs, with two baselines carried along.
    plan = Rungs.scaled(5)
    assert [plan.kept(60), plan.kept(20)] == [20, 7]
    assert plan.planned_epochs(60, 2) == 60 * 5 + 22 * 15 + 9 * 45 * 2


def test_rungs_default_on_a_gpu_only_and_conflicts_are_one_line():
    cpu = SearchOptions(proxy=ProxySettings(epochs=5, resolution=64, device="cpu"))
    assert resolve_rungs(cpu, "cpu") is None
    assert resolve_rungs(cpu, "cuda").epochs == (5, 15, 45)
    assert resolve_rungs(SearchOptions(proxy=cpu.proxy, rungs="none"), "cuda") is None
    assert resolve_rungs(SearchOptions(proxy=cpu.proxy, objective="pareto"), "cuda") is None
    assert resolve_rungs(SearchOptions(proxy=cpu.proxy, confirm_top=3), "cuda") is None  # confirmation asked for
    with pytest.raises(UserError, match="drop --confirm-top"):
        resolve_rungs(SearchOptions(proxy=cpu.proxy, confirm_top=3, rungs="5,15"), "cpu")
    with pytest.raises(UserError, match="objective pareto"):
        resolve_rungs(SearchOptions(proxy=cpu.proxy, objective="pareto", rungs="5,15"), "cpu")


def test_each_rung_retrains_the_best_third_with_its_own_length_and_the_winner_comes_from_the_last(
        tmp_path, tiny_profile):
    calls: list = []
    proxy = epoch_aware_proxy(calls)
    out = _search(tmp_path, tiny_profile, proxy, trials=9, rungs="2,4,8", rung_seeds=2, baselines="none", seed=1)
    trials = out.study.get_trials()
    first = [t for t in trials if rung_of(t) == 0 and not is_infeasible(t) and "duplicate_of" not in t.user_attrs]
    assert len(first) == 9
    by_epochs = {e: [c for c in calls if c[0] == e] for e in (2, 4, 8)}
    assert len(by_epochs[2]) == 9  # each distinct candidate trained once at the first rung
    assert len(by_epochs[4]) == 3  # ceil(9 / 3)
    assert len(by_epochs[8]) == 2 and {c[1] for c in by_epochs[8]} == {0, 1}  # one network, two seeds
    # Rung 1 trained rung 0's best three; rung 2 trained rung 1's best, whatever rung 0 said of it.
    rung0 = sorted(first, key=lambda t: (-t.values[0], t.number))
    promoted = out.study.user_attrs[PROMOTED_ATTR]
    assert promoted["1"] == [t.number for t in rung0[:3]]
    rung1 = [t for t in trials if rung_of(t) == 1]
    best1 = max(rung1, key=lambda t: (t.values[0], -t.user_attrs["rung_parent"]))
    assert promoted["2"] == [best1.user_attrs["rung_parent"]]
    best = yaml.safe_load((out.out_dir / "best.yaml").read_text())["search"]
    assert best["trial"] == best1.user_attrs["rung_parent"]
    assert sorted(best["rung_scores"]) == [1, 2] and len(best["rung_scores"][2]) == 2
    assert best["proxy_mean_top1"] == pytest.approx(sum(best["rung_scores"][2]) / 2, abs=1e-4)
    # The per-rung report: lengths, networks, seeds, and the order's agreement with the rung before.
    report = rung_report(out.study)
    assert [(r["epochs"], r["networks"], r["seeds"]) for r in report] == [(2, 9, 1), (4, 3, 1), (8, 1, 2)]
    assert report[1]["tau_networks"] == 3 and report[1]["tau_vs_previous"] is not None
    summary = (out.out_dir / "summary.md").read_text()
    assert "| rung | epochs |" in summary and "re-trainings at longer rungs" in summary


def test_baselines_go_on_to_every_rung(tmp_path):
    from search_helpers import variant_space

    space_path, _, table = variant_space(tmp_path)
    calls: list = []
    opts = SearchOptions(latency_budgets=[f"{table}=50ms"], space=str(space_path), runs_dir=str(tmp_path / "runs"),
                         count_costs=False, plots=False, pruner="none", trials=4, rungs="2,4", rung_seeds=2,
                         baselines="patnet_t0", proxy=ProxySettings(epochs=2, resolution=64, device="cpu"))
    out = run_search(opts, run_proxy=epoch_aware_proxy(calls), load_profile=lambda d: load_profile(d, check=False))
    retrained = [t for t in out.study.get_trials() if rung_of(t) == 1]
    assert sum(t.user_attrs.get("baseline") == "patnet_t0" for t in retrained) == 2  # both last-rung seeds
    assert len(retrained) == 2 * (math.ceil((4 - 1) / 3) + 1)


def test_a_rerun_after_an_interruption_at_a_rung_trains_only_what_is_missing(tmp_path, tiny_profile):
    calls: list = []
    inner = epoch_aware_proxy(calls)

    def interrupted(arch, on_epoch_end=None, seed=None, epochs=None):
        if epochs == 8 and seed == 1:
            raise KeyboardInterrupt  # Ctrl-C during the last rung's second seed
        return inner(arch, on_epoch_end=on_epoch_end, seed=seed, epochs=epochs)

    interrupted.num_classes = 10
    with pytest.raises(KeyboardInterrupt):
        _search(tmp_path, tiny_profile, interrupted, trials=6, rungs="2,4,8", baselines="none", study_name="k")
    done_before = list(calls)
    calls.clear()
    out = _search(tmp_path, tiny_profile, inner, trials=6, rungs="2,4,8", baselines="none", study_name="k")
    assert calls == [c for c in calls if c[0] == 8 and c[1] == 1] and len(calls) == 1  # only the missing training
    assert len([c for c in done_before if c[0] == 4]) == 2
    trials = out.study.get_trials()
    assert sum(rung_of(t) == 2 and t.state == TrialState.COMPLETE for t in trials) == 2
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_a_retraining_killed_mid_way_resumes_from_its_checkpoint_and_its_folder_goes_once_scored(tmp_path,
                                                                                                 tiny_profile):
    """A resumable runner gets one folder per re-training (the same after the kill, when the rerun queues it
    again), a folder per seed, and each folder is removed once its training is scored."""
    calls: list = []
    inner = epoch_aware_proxy(calls)
    folders: list = []
    kill = {"at": (8, 1)}

    def resumable(arch, on_epoch_end=None, seed=None, epochs=None, run_dir=None):
        if epochs is not None:
            folders.append((epochs, seed, run_dir))
            os.makedirs(run_dir)  # what the trainer's first checkpoint does; a folder given twice fails here
            if (epochs, seed) == kill["at"]:
                raise KeyboardInterrupt
        return inner(arch, on_epoch_end=on_epoch_end, seed=seed, epochs=epochs)

    resumable.num_classes, resumable.resumable = 10, True
    with pytest.raises(KeyboardInterrupt):
        _search(tmp_path, tiny_profile, resumable, trials=6, rungs="2,4,8", baselines="none", study_name="k")
    retrainings = tmp_path / "runs" / "k" / RETRAINING_DIR
    cut = folders[-1][2]
    assert [p.name for p in retrainings.iterdir()] == [os.path.basename(cut)]  # only the cut one is left
    os.rmdir(cut)  # the real trainer resumes in it; this stand-in only records which folder it was given
    kill["at"] = None
    _search(tmp_path, tiny_profile, resumable, trials=6, rungs="2,4,8", baselines="none", study_name="k")
    assert folders[-1][:2] == (8, 1) and folders[-1][2] == cut  # the rerun trains it in the same folder
    by_training = {(e, s): d for e, s, d in folders}
    assert len(set(by_training.values())) == len(by_training)  # one folder per network, rung and seed
    assert list(retrainings.iterdir()) == []


def test_the_proxy_runner_resumes_a_cut_training_where_it_stopped(tmp_path):
    """The real trainer: cut after epoch 2 of 3, the same call with the same folder trains epoch 3 only and ends
    with the top-1 of a training never cut."""
    settings = ProxySettings(epochs=3, resolution=32, device="cpu", train_samples=64, val_samples=32, batch_size=16)
    run = make_proxy_runner(settings)
    arch = ArchConfig(embed_dim=8, depths=(1, 1, 1, 1), num_heads=1, num_classes=10)
    whole = run(arch, seed=3, epochs=3)
    seen: list = []

    def cut_after_two(epoch, top1):
        seen.append(epoch)
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(arch, on_epoch_end=cut_after_two, seed=3, epochs=3, run_dir=tmp_path / "r")
    assert (tmp_path / "r" / "latest.pt").exists()
    seen.clear()
    resumed = run(arch, on_epoch_end=lambda epoch, top1: seen.append(epoch), seed=3, epochs=3,
                  run_dir=tmp_path / "r")
    assert seen == [3]
    assert resumed == whole


def _load(url: str, name: str):
    return optuna.load_study(study_name=name, storage=optuna.storages.RDBStorage(url))


@pytest.mark.slow
def test_kill_9_at_a_rung_then_rerun_loses_nothing_and_retrains_no_finished_rung(tmp_path, tiny_profile):
    url = f"sqlite:///{tmp_path}/mf.db"
    marker, log = tmp_path / "training-rung1", tmp_path / "calls.log"
    victim = start_worker(url, tiny_profile, tmp_path / "runs", "mf", 6, sleep=0.01, rungs="2,4,8", seed=0,
                          marker=marker, marker_epochs=4, calls=log)
    try:  # the marker is written when the first rung-1 training starts
        wait_for_marker(victim, marker, "a rung-1 training started")
    finally:
        os.kill(victim.pid, signal.SIGKILL)
        victim.communicate(timeout=30)
    first_calls = log.read_text().splitlines()
    assert sum(line.startswith("2 ") for line in first_calls) == 6
    log.unlink()
    rerun = start_worker(url, tiny_profile, tmp_path / "runs", "mf", 6, sleep=0.01, rungs="2,4,8", seed=0, calls=log)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    again = log.read_text().splitlines()
    assert not [line for line in again if line.startswith("2 ")]  # the finished rung is not trained again
    assert sum(line.startswith("4 ") for line in again) == 2 and sum(line.startswith("8 ") for line in again) == 2
    trials = _load(url, "mf").get_trials()
    assert [rung_of(t) for t in trials if t.state == TrialState.FAIL] == [1]  # the killed re-training
    assert sum(rung_of(t) == 1 and t.state == TrialState.COMPLETE for t in trials) == 2
    assert sum(rung_of(t) == 2 and t.state == TrialState.COMPLETE for t in trials) == 2
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def distinct_networks(trials) -> set:
    return {tuple(sorted(t.params.items())) for t in trials
            if t.state == TrialState.COMPLETE and not is_infeasible(t) and "duplicate_of" not in t.user_attrs
            and rung_of(t) == 0}


@pytest.mark.slow
def test_processes_with_one_seed_on_one_study_train_distinct_networks(tmp_path, tiny_profile):
    url = f"sqlite:///{tmp_path}/k4.db"
    procs = [start_worker(url, tiny_profile, tmp_path / "runs", "k4", 6, sleep=0.02, seed=0) for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    trials = _load(url, "k4").get_trials()
    assert len(distinct_networks(trials)) == 6  # same seed, three processes: six different networks
    assert sum(t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs and not is_infeasible(t)
               for t in trials) == 6
    assert _load(url, "k4").user_attrs["workers_joined"] == 3


def test_a_rungs_wall_time_counts_only_while_a_training_ran():
    from datetime import datetime, timedelta

    t0 = datetime(2026, 12, 7, 9, 0, 0)

    def at(seconds: float) -> datetime:
        return t0 + timedelta(seconds=seconds)

    # Two overlapping trainings (0-100 s and 50-120 s), then the rung resumed a day later (one of 30 s, and one
    # inside it): 120 + 30 seconds, not the day between.
    day = 86_400
    spans = [(at(50), at(120)), (at(0), at(100)), (at(day), at(day + 30)), (at(day + 5), at(day + 10))]
    assert busy_seconds(spans) == pytest.approx(150.0)
    assert busy_seconds([]) == 0.0


def test_a_tie_at_a_rung_goes_to_the_faster_network_then_the_earlier_trial():
    from optuna.distributions import IntDistribution
    from optuna.trial import create_trial

    from patsearch.search.objective import ATTR_RUNG, ATTR_RUNG_PARENT, ATTR_TOP1, PRED_PREFIX
    from patsearch.search.rungs import rung_ranking

    def trial(number, top1, ms, **attrs):
        t = create_trial(params={"x": 1}, distributions={"x": IntDistribution(0, 2)}, value=top1,
                         user_attrs={ATTR_TOP1: top1, PRED_PREFIX + "cpu:latency_ms": ms, **attrs})
        t.number = number
        return t

    rung0 = [trial(0, 0.7, 3.0), trial(1, 0.7, 2.0), trial(2, 0.7, 2.0), trial(3, 0.6, 1.0)]
    assert [r.parent for r in rung_ranking(rung0, 0)] == [1, 2, 0, 3]
    rung1 = [trial(4 + i, 0.8, 9.0, **{ATTR_RUNG: 1, ATTR_RUNG_PARENT: p}) for i, p in enumerate((0, 2, 1))]
    assert [r.parent for r in rung_ranking(rung0 + rung1, 1)] == [1, 2, 0]  # the parent's prediction counts

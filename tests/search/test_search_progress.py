"""A search is never silent: its plan first, each proxy training's epochs as plain lines (no terminal needed),
and after each trained candidate the planned epochs trained so far and an estimate of the time left."""
from __future__ import annotations

import logging
import re

import pytest
from search_helpers import fake_proxy, load_unchecked

from patsearch.profiler import load_profile
from patsearch.search.api import SearchOptions, run_search
from patsearch.search.proxy import ProxySettings
from patsearch.train.options import TrainOptions, TrainOptionsError


def test_a_search_logs_its_plan_each_trainings_epochs_and_the_time_left(tmp_path, tiny_profile, caplog,
                                                                        single_thread):
    proxy = ProxySettings(epochs=2, resolution=32, batch_size=16, train_samples=32, val_samples=16, device="cpu",
                          subset_dir=str(tmp_path / "cache"))
    opts = SearchOptions(latency_budgets=[f"{tiny_profile}=5ms"], space="tiny", trials=2, proxy=proxy,
                         runs_dir=str(tmp_path / "runs"), count_costs=False, plots=False, baselines="none",
                         pruner="none")
    with caplog.at_level(logging.INFO, logger="patsearch"):
        run_search(opts, load_profile=lambda d: load_profile(d, check=False))
    lines = [r.getMessage() for r in caplog.records]
    assert any("plan: 2 candidate(s) to train (0 done) x 2 epochs at 32 px: roughly " in line for line in lines), lines
    epoch_lines = [line for line in lines if line.startswith("epoch ") and "top1" in line]
    assert len(epoch_lines) >= 4  # two epochs of each of the two trained candidates, as they finish
    first_trial = next(i for i, line in enumerate(lines) if line.startswith("trial ") and "complete" in line)
    # after the first trained candidate: how far the plan is (2 candidates x 2 epochs) and the time left
    assert "; 2/4 planned epochs, about " in lines[first_trial] and lines[first_trial].endswith(" left")
    last_trial = max(i for i, line in enumerate(lines) if line.startswith("trial ") and "complete" in line)
    assert lines[last_trial].endswith("; 4/4 planned epochs")  # nothing left: no estimate
    assert any(line.startswith("epoch 1/2") for line in lines[:first_trial])  # progress within the first trial


def test_plain_progress_is_a_train_option_and_other_values_are_refused():
    assert TrainOptions(arch="patnet_t0", progress="plain").progress == "plain"
    with pytest.raises(TrainOptionsError, match="progress"):
        TrainOptions(arch="patnet_t0", progress="fancy")


def test_the_rough_estimate_scales_with_the_budget_the_set_and_the_epochs(tiny_profile):
    from patsearch.search.constraints import load_constraints, parse_constraints
    from patsearch.search.in_process import rough_seconds_per_candidate

    def guess(budget: str, **proxy) -> float:
        constraints = load_constraints(parse_constraints([f"{tiny_profile}={budget}"]),
                                       loader=lambda d: load_profile(d, check=False))
        opts = SearchOptions(proxy=ProxySettings(**{"epochs": 4, "resolution": 32, "device": "cpu", **proxy}))
        return rough_seconds_per_candidate(opts, constraints)

    base = guess("35ms")
    assert base == pytest.approx(4 * 0.7 * 0.035 * (32 / 224) ** 2 * (3 * 2000 + 400))
    assert guess("70ms") == pytest.approx(2 * base) and guess("35ms", epochs=8) == pytest.approx(2 * base)
    assert guess("35ms", resolution=64) == pytest.approx(4 * base)
    assert guess("35ms", data="/some/folder") is None  # a folder's size is only known once it is read


def test_the_bar_counts_planned_epochs_and_paces_its_eta_over_the_whole_run(tmp_path, tiny_profile):
    import io

    from rich.console import Console

    from patsearch.progress import WHOLE_RUN_S, progress_bar

    screen = io.StringIO()
    out = run_search(SearchOptions(latency_budgets=[f"{tiny_profile}=5ms"], space="tiny", trials=3, seed=1,
                                   runs_dir=str(tmp_path / "runs"), plots=False, baselines="none", count_costs=False,
                                   proxy=ProxySettings(epochs=2, resolution=32, device="cpu")),
                     run_proxy=fake_proxy(), load_profile=load_unchecked,
                     console=Console(file=screen, force_terminal=True, width=160))
    trained = sum(t.state.name == "COMPLETE" and t.user_attrs.get("proxy_seconds") is not None
                  for t in out.study.get_trials())
    assert trained >= 1
    assert re.search(rf"epochs .*{2 * trained}/6", screen.getvalue())  # 3 candidates x 2 epochs planned
    assert progress_bar(bursty=True).speed_estimate_period == WHOLE_RUN_S
    assert progress_bar().speed_estimate_period == 30  # rich's default for steady work (training steps)

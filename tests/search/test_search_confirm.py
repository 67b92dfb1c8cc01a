"""Confirming a search's leaders on more proxy seeds (--confirm-top): ranking by the mean, the mean's standard
error, resume after a kill, and bad options."""
from __future__ import annotations

import hashlib
import json
import math

import pytest
import yaml
from search_helpers import variant_space

from patsearch.arch import VARIANTS, ArchConfig
from patsearch.errors import UserError
from patsearch.profiler import load_profile
from patsearch.search.api import SearchOptions, run_search
from patsearch.search.results import CONFIRM_ATTR, Noise, Row, lead, pooled_seed_std, rows


def _load(path):
    return load_profile(path, check=False)


def _jitter(arch: ArchConfig, seed: int) -> float:
    digest = hashlib.sha256(f"{json.dumps(arch.to_dict(), sort_keys=True)}|{seed}".encode()).digest()
    return digest[0] / 255.0


def seeded_proxy(calls: list, kill_after_confirmations: int | None = None):
    """Seed 0 (the search's own) ranks small networks first; every other seed ranks large ones first, more
    strongly. So the single-seed leaders are the small networks, and among them the mean prefers the largest."""

    def run_proxy(arch: ArchConfig, on_epoch_end=None, seed: int | None = None) -> float:
        seed = 0 if seed is None else seed
        if (kill_after_confirmations is not None and seed != 0
                and sum(s != 0 for _, s in calls) >= kill_after_confirmations):
            raise KeyboardInterrupt
        calls.append((arch.to_dict(), seed))
        size = math.log2(arch.embed_dim) * sum(arch.depths)
        tiny = 1e-4 * _jitter(arch, seed)  # breaks ties between networks of one size
        return (0.5 - 0.004 * size if seed == 0 else 0.3 + 0.01 * size) + tiny

    run_proxy.num_classes = 10
    return run_proxy


def _opts(tmp_path, profile, **kw):
    base = dict(latency_budgets=[f"{profile}=5ms"], space="tiny", trials=8, runs_dir=str(tmp_path / "runs"),
                count_costs=False, plots=False, baselines="none", heartbeat_interval=1, study_name="c",
                confirm_top=3, confirm_seeds=3, seed=1)
    base.update(kw)
    return SearchOptions(**base)


def test_leaders_are_retrained_on_more_seeds_and_the_winner_is_the_best_mean(tmp_path, tiny_profile):
    calls: list = []
    out = run_search(_opts(tmp_path, tiny_profile), run_proxy=seeded_proxy(calls), load_profile=_load)
    confirm = out.study.user_attrs[CONFIRM_ATTR]
    assert len(confirm) == 3 and all(sorted(v) == ["1", "2"] for v in confirm.values())
    rs = [r for r in rows(out.study) if r.state == "COMPLETE" and r.feasible and r.top1 is not None]
    trained = [r for r in rs if r.duplicate_of is None]  # a repeated proposal reuses its first score
    assert [seed for _, seed in calls].count(0) == len(trained) and len(calls) == len(trained) + 3 * 2
    single_best = max(rs, key=lambda r: (r.top1, -r.number))
    confirmed = [r for r in rs if r.confirmed]
    mean_best = max(confirmed, key=lambda r: sum(r.scores) / 3)
    # the three confirmed are the top three distinct networks by single score, each now scored on three seeds
    assert sorted(r.number for r in confirmed) == sorted(r.number for r in sorted(trained, key=lambda r: -r.top1)[:3])
    assert mean_best.number != single_best.number, "fixture: luck should have picked another single-seed winner"
    best = yaml.safe_load((out.out_dir / "best.yaml").read_text())["search"]
    assert best["trial"] == mean_best.number
    assert best["proxy_mean_top1"] == pytest.approx(sum(mean_best.scores) / 3, abs=1e-4)
    assert len(best["proxy_seed_scores"]) == 3
    summary = json.loads((out.out_dir / "summary.json").read_text())
    assert summary["top"][0]["trial"] == mean_best.number and len(summary["top"][0]["seed_scores"]) == 3
    assert "(3 seeds)" in (out.out_dir / "summary.md").read_text()


def test_confirmation_resumes_after_a_kill_without_retraining(tmp_path, tiny_profile):
    calls: list = []
    with pytest.raises(KeyboardInterrupt):
        run_search(_opts(tmp_path, tiny_profile), run_proxy=seeded_proxy(calls, kill_after_confirmations=2),
                   load_profile=_load)
    trained = [seed for _, seed in calls].count(0)
    assert [seed for _, seed in calls] == [0] * trained + [1, 2]  # the study, then 2 confirmation runs; killed
    again: list = []
    out = run_search(_opts(tmp_path, tiny_profile), run_proxy=seeded_proxy(again), load_profile=_load)
    assert len(again) == 4 and all(seed in (1, 2) for _, seed in again)  # the 4 missing runs only
    assert not any(c in calls[trained:] for c in again)
    assert sum(len(v) for v in out.study.user_attrs[CONFIRM_ATTR].values()) == 6


def test_baselines_are_confirmed_too_and_the_lead_compares_means(tmp_path):
    space_path, _, profile = variant_space(tmp_path)  # a space that holds PATNet-T0's layers
    budget = _load(profile).predict(VARIANTS["patnet_t0"], 64) * 1.2
    calls: list = []
    opts = _opts(tmp_path, profile, latency_budgets=[f"{profile}={budget:.4f}ms"], space=str(space_path),
                 baselines="auto", confirm_top=1, trials=4)
    out = run_search(opts, run_proxy=seeded_proxy(calls), load_profile=_load)
    rs = rows(out.study)
    base_rows = [r for r in rs if r.baseline and r.state == "COMPLETE"]
    assert base_rows and all(r.confirmed for r in base_rows)
    info = lead(out.study)
    assert info["seeds"] == 3 and info["baseline_seeds"] == 3
    search = next(r for r in rs if r.number == info["trial"])
    base = max(base_rows, key=lambda r: r.score)
    assert info["delta_points"] == pytest.approx(100 * (search.score - base.score), abs=1e-3)
    pooled = pooled_seed_std(rs)
    assert info["se_points"] == pytest.approx(math.sqrt(2) * pooled / math.sqrt(3), abs=1e-3)


def test_pooled_seed_std_and_the_standard_error_of_a_mean():
    def row(n, scores):
        return Row(n, "COMPLETE", None, scores[0], {}, True, None, None, None, 64, seed_scores=tuple(scores[1:]))

    a, b = row(0, (0.70, 0.72, 0.74)), row(1, (0.60, 0.60, 0.66))
    # within-row sums of squares 0.0008 and 0.0024 over 4 degrees of freedom: sqrt(0.0008) = 2.828 points
    assert pooled_seed_std([a, b, row(2, (0.5,))]) == pytest.approx(2.8284, abs=1e-4)
    assert pooled_seed_std([row(2, (0.5,))]) is None
    noise = Noise(n_val=1000, seed_std=None, confirm_std=2.8284)
    assert noise.of_row(a) == pytest.approx(2.8284 / math.sqrt(3))
    assert noise.of_row(row(2, (0.5,))) == pytest.approx(100 * math.sqrt(0.25 / 1000))  # binomial, one seed
    assert a.score == pytest.approx(0.72) and b.score == pytest.approx(0.62)


@pytest.mark.parametrize("change, message", [
    ({"confirm_top": -1}, "--confirm-top must be a non-negative integer"),
    ({"confirm_seeds": 1}, "--confirm-seeds must be an integer of at least 2"),
    ({"objective": "pareto"}, "--confirm-top ranks one score by its mean over seeds; drop it for --objective pareto"),
])
def test_bad_confirmation_options_are_one_line_errors(tmp_path, tiny_profile, change, message):
    with pytest.raises(UserError, match=message):
        run_search(_opts(tmp_path, tiny_profile, **change), run_proxy=seeded_proxy([]), load_profile=_load)


def test_confirmation_is_on_by_default_for_gpu_proxies_only(tmp_path, tiny_profile):
    import torch

    from patsearch.search.api import _confirm_top

    def runner(device):
        run = seeded_proxy([])
        run.device = torch.device(device)
        return run

    assert _confirm_top(_opts(tmp_path, tiny_profile, confirm_top=None), runner("cuda")) == 3
    assert _confirm_top(_opts(tmp_path, tiny_profile, confirm_top=None), runner("cpu")) == 0
    assert _confirm_top(_opts(tmp_path, tiny_profile, confirm_top=None, objective="pareto"), runner("cuda")) == 0
    assert _confirm_top(_opts(tmp_path, tiny_profile, confirm_top=0), runner("cuda")) == 0
    calls: list = []
    run_search(_opts(tmp_path, tiny_profile, confirm_top=None), run_proxy=seeded_proxy(calls), load_profile=_load)
    assert all(seed == 0 for _, seed in calls)  # a stand-in without a device: treated as a CPU, no confirmation

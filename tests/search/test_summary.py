"""The search summary (patsearch.search.summary): honest state counts, standard errors and the lead's verdict,
fidelity, files."""
from __future__ import annotations

import json
import math

import pytest
from optuna.trial import TrialState
from search_helpers import fake_proxy, load_unchecked, tiny_search, variant_space

from patsearch.arch import VARIANTS
from patsearch.search.plots import trained_study
from patsearch.search.results import find_fidelity, lead, state_counts
from patsearch.search.summary import comparison, describe_counts, summary_dict, summary_notes
from patsearch.search.trial_counts import is_infeasible


def test_infeasible_trials_are_counted_apart_and_kept_out_of_importances(tmp_path, tiny_profile):
    out = tiny_search(tmp_path, tiny_profile, "1ms", seed=3)
    trials = out.study.get_trials()
    infeasible = sum(is_infeasible(t) for t in trials)
    trained = sum(t.state == TrialState.COMPLETE and not is_infeasible(t) for t in trials)
    repeats = sum("duplicate_of" in t.user_attrs for t in trials)  # reuse a score; counted as complete, not trained
    assert infeasible >= 1 and trained == 4 + repeats
    assert state_counts(out.study) == {"complete": 4 + repeats, "infeasible": infeasible}
    assert describe_counts(state_counts(out.study)) == \
        f"{4 + repeats + infeasible} candidates: {4 + repeats} complete, {infeasible} infeasible (not trained)"
    # Optuna itself calls the infeasible ones COMPLETE (scored -inf); importances must not see them.
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4 + repeats + infeasible
    assert all(t.value == -math.inf for t in trials if is_infeasible(t))
    copy = trained_study(out.study)
    assert len(copy.get_trials()) == 4 + repeats and all(t.value > 0 for t in copy.get_trials())
    saved = json.loads((out.out_dir / "summary.json").read_text())
    assert saved["counts"] == {"complete": 4 + repeats, "infeasible": infeasible}


def test_summary_files_are_written_with_budget_use(tmp_path, tiny_profile):
    out = tiny_search(tmp_path, tiny_profile, "5ms", seed=1)
    assert {"summary.json", "summary.md"} <= {p.name for p in out.files}
    summary = json.loads((out.out_dir / "summary.json").read_text())
    assert summary["study"] == "s" and summary["validation_images"] == 400  # the default synthetic set: 2000/400
    assert len(summary["top"]) == 4 and summary["baselines"] == []  # four distinct networks; a repeat is listed once
    for r in summary["top"]:
        predicted = r["predicted"]["cpu:latency_ms"]
        assert r["budget_use"]["cpu:latency_ms"] == pytest.approx(predicted / 5.0)
        assert r["se_points"] == pytest.approx(100 * math.sqrt(r["proxy_top1"] * (1 - r["proxy_top1"]) / 400))
    md = (out.out_dir / "summary.md").read_text()
    assert md.startswith("# Search s\n") and "| trial | source | proxy top-1 (%) |" in md
    assert md.count("| search |") == len(summary["top"]) and summary["comparison"] in md
    uses = [100 * r["budget_use"]["cpu:latency_ms"] for r in summary["top"]]
    assert f"- budget use: the top {len(uses)} use {min(uses):.0f}-{max(uses):.0f}% of cpu latency <= 5 ms" in md


def test_synthetic_data_is_warned_about_and_real_data_is_not(tmp_path, tiny_profile, capsys):
    out = tiny_search(tmp_path, tiny_profile, "5ms")
    warning = "warning: the proxy trained on the built-in synthetic set"
    assert warning in capsys.readouterr().out
    assert json.loads((out.out_dir / "summary.json").read_text())["synthetic"] is True
    config = dict(out.study.user_attrs["patsearch_config"], data="folder:cifar10:all/all", val_images=10000)
    out.study.set_user_attr("patsearch_config", config)
    notes = summary_notes(out.study)
    assert not any(n.startswith("warning") for n in notes)
    assert any(n.startswith("proxy fidelity: not measured for these settings (folder:cifar10:all/all") for n in notes)


def _with_baseline(tmp_path, searched_top1, **kw):
    space_path, _, profile = variant_space(tmp_path)
    budget = load_unchecked(profile).predict(VARIANTS["patnet_t0"], 64) * 1.2
    proxy = fake_proxy(score=lambda a: 0.50 if a.name == "patnet_t0" else searched_top1)
    return tiny_search(tmp_path, profile, f"{budget:.4f}ms", space=str(space_path), trials=3, baselines="auto",
                proxy=proxy, **kw)


def test_a_lead_inside_the_binomial_noise_is_called_so(tmp_path):
    out = _with_baseline(tmp_path, 0.51)
    info = lead(out.study)
    se = 100 * math.sqrt(0.5 * 0.5 / 400 + 0.51 * 0.49 / 400)
    assert info["delta_points"] == pytest.approx(1.0) and info["se_points"] == pytest.approx(se, abs=1e-3)
    assert info["inside_noise"] is True
    line = comparison(out.study)
    assert f"+1.00 points, standard error of the difference {se:.2f} points (binomial, 400 validation images)" in line
    assert line.endswith("inside the noise: not evidence that either is better")


def test_a_clear_lead_is_stated_in_standard_errors(tmp_path):
    out = _with_baseline(tmp_path, 0.70)
    info = lead(out.study)
    assert info["inside_noise"] is False
    assert comparison(out.study).endswith(f"{20.0 / info['se_points']:.1f} standard errors")


def _fidelity_report(config, **changes):
    proxy = {"data_id": config["data"], "epochs": config["proxy_epochs"], "resolution": config["proxy_resolution"],
             "recipe": config["recipe"]}
    proxy.update(changes)
    return {"n": 24, "kendall_tau": 0.71, "spearman": 0.86, "seed_std": 1.5,
            "baselines": {"params": 0.4, "flops": 0.41, "synflow": 0.3},
            "settings": {"proxy": proxy, "reference": {"epochs": 20, "resolution": 64}}}


def test_a_matching_fidelity_report_is_found_stated_and_sets_the_noise(tmp_path, monkeypatch):
    out = _with_baseline(tmp_path, 0.51)
    config = out.study.user_attrs["patsearch_config"]
    runs = tmp_path / "runs"
    checks = runs / "proxy-check"  # where `patsearch proxy-check` writes by default
    checks.mkdir(parents=True)
    (checks / "proxy-fidelity-other.json").write_text(json.dumps(_fidelity_report(config, epochs=99)))
    monkeypatch.chdir(tmp_path)
    assert find_fidelity(out.study, runs_dir=runs) is None  # other proxy settings: not this proxy's fidelity
    docs = tmp_path / "docs" / "search"  # documentation is never read at run time
    docs.mkdir(parents=True)
    (docs / "proxy-fidelity-cifar10.json").write_text(json.dumps(_fidelity_report(config)))
    assert find_fidelity(out.study, runs_dir=runs) is None
    (checks / "proxy-fidelity-cifar10.json").write_text(json.dumps(_fidelity_report(config)))
    found = find_fidelity(out.study, runs_dir=runs)
    assert found is not None and found[0] == (checks / "proxy-fidelity-cifar10.json").resolve()
    info = lead(out.study, found)
    assert info["se_points"] == pytest.approx(math.sqrt(2) * 1.5, abs=1e-3)  # two scores, each with the seed std
    assert info["noise"] == "the proxy's measured seed-to-seed std"
    notes = summary_notes(out.study, found)
    assert any(n.startswith("proxy fidelity (proxy-fidelity-cifar10.json): Kendall tau 0.71, Spearman 0.86 "
                            "against 20 epochs at 64 px over 24 networks; seed-to-seed std 1.50 points") for n in notes)
    assert summary_dict(out.study, found)["fidelity"]["kendall_tau"] == 0.71
    from patsearch.errors import UserError

    with pytest.raises(UserError, match="no such file"):
        find_fidelity(out.study, tmp_path / "missing.json")


def test_a_report_whose_alternative_proxy_is_the_studys_states_that_proxys_figures(tmp_path, monkeypatch):
    out = _with_baseline(tmp_path, 0.51)
    config = out.study.user_attrs["patsearch_config"]
    checks = tmp_path / "runs" / "proxy-check"
    checks.mkdir(parents=True)
    report = _fidelity_report(config, epochs=99)  # the main proxy is another one
    alt_settings = _fidelity_report(config)["settings"]["proxy"]
    report["alternatives"] = [{"kind": "alt1", "settings": alt_settings, "n": 20, "kendall_tau": 0.75,
                               "kendall_tau_ci95": [0.52, 0.89], "spearman": 0.9, "seed_std": 0.8}]
    (checks / "proxy-fidelity-cifar10.json").write_text(json.dumps(report))
    monkeypatch.chdir(tmp_path)
    found = find_fidelity(out.study, runs_dir="runs")
    assert found is not None and found[1]["proxy_kind"] == "alt1"
    assert (found[1]["n"], found[1]["kendall_tau"], found[1]["seed_std"]) == (20, 0.75, 0.8)
    assert found[1]["baselines"] == report["baselines"]
    notes = summary_notes(out.study, found)  # the alternative's interval, not the main proxy's (it has none)
    assert any(n.startswith("proxy fidelity (proxy-fidelity-cifar10.json): Kendall tau 0.75 (95% interval 0.52 "
                            "to 0.89), Spearman 0.90 ") for n in notes)


def test_validation_size_recorded_for_the_standard_error(tmp_path):
    from patsearch.search.proxy import ProxySettings
    from patsearch.search.report import val_images

    for split, sizes in (("train", (4, 4)), ("val", (3, 5))):
        for name, count in zip(("a", "b"), sizes):
            folder = tmp_path / "data" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                (folder / f"{i}.jpg").write_bytes(b"")  # only listed, never decoded
    data = str(tmp_path / "data")
    assert val_images(ProxySettings()) == 400
    assert val_images(ProxySettings(val_samples=123)) == 123
    assert val_images(ProxySettings(data=data)) == 8
    assert val_images(ProxySettings(data=data, val_samples=4)) == 2 + 2  # class-balanced: 2 per class
    assert val_images(ProxySettings(data=data, val_samples=100)) == 8
    assert val_images(ProxySettings(data=str(tmp_path / "missing"))) is None


def test_show_only_shows_and_rewrite_writes(tmp_path, tiny_profile):
    import subprocess
    import sys

    from search_helpers import ROOT

    runs = tmp_path / "runs"
    out = tiny_search(tmp_path, tiny_profile, "5ms", seed=1)
    files = sorted(p for p in out.out_dir.iterdir() if p.is_file() and p.suffix in (".yaml", ".json", ".md"))
    assert {"best.yaml", "summary.json", "summary.md"} <= {p.name for p in files}
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    (out.out_dir / "best.yaml").unlink()  # what --rewrite must bring back and --show must not
    cmd = [sys.executable, str(ROOT / "cli.py"), "search", "--show", "s", "--runs-dir", str(runs)]
    shown = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "study s" in shown.stdout and "wrote" not in shown.stdout
    assert not (out.out_dir / "best.yaml").exists()
    for p, (mtime, data) in before.items():
        if p.name != "best.yaml":
            assert (p.stat().st_mtime_ns, p.read_bytes()) == (mtime, data), p
    results = {q.name for q in out.out_dir.iterdir() if q.suffix in (".yaml", ".json", ".md", ".png")}
    assert results == {q.name for q in before if q.name != "best.yaml"}  # nothing new either

    rewritten = subprocess.run(cmd + ["--rewrite"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert rewritten.returncode == 0, rewritten.stderr[-2000:]
    assert f"wrote {out.out_dir / 'best.yaml'}" in rewritten.stdout
    assert (out.out_dir / "best.yaml").read_bytes() == before[out.out_dir / "best.yaml"][1]


def _two_rung_study():
    """An empty study of two rungs (2 and 4 epochs, 400 validation images), with :func:`_add` to fill it."""
    import optuna

    study = optuna.create_study(direction="maximize")
    study.set_user_attr("patsearch_config", {"rungs": {"epochs": [2, 4]}, "val_images": 400})
    return study


def _add(study, top1, **attrs):
    """One finished, feasible trial as the worker loop leaves it (``attrs``: its rung, parent, seed, baseline)."""
    from optuna.trial import TrialState, create_trial

    from patsearch.search.objective import ATTR_ARCH, ATTR_FEASIBLE, ATTR_TOP1

    study.add_trial(create_trial(state=TrialState.COMPLETE, value=top1,
                                 user_attrs={ATTR_ARCH: {"embed_dim": 32}, ATTR_TOP1: top1, ATTR_FEASIBLE: True,
                                             **attrs}))


def _rung_study(*, baseline_at_rung1: bool):
    """A two-rung study: two searched networks and PATNet-T1 scored at rung 0, searched trial 1 re-trained at
    rung 1, and the baseline only if asked."""
    from patsearch.search.objective import ATTR_BASELINE, ATTR_RUNG, ATTR_RUNG_PARENT, ATTR_RUNG_SEED

    study = _two_rung_study()
    _add(study, 0.50, **{ATTR_BASELINE: "patnet_t1"})  # trial 0
    _add(study, 0.52)  # trial 1: ahead of the baseline by 2 points at 2 epochs
    _add(study, 0.49)  # trial 2
    _add(study, 0.80, **{ATTR_RUNG: 1, ATTR_RUNG_PARENT: 1, ATTR_RUNG_SEED: 0})
    if baseline_at_rung1:
        _add(study, 0.77, **{ATTR_RUNG: 1, ATTR_RUNG_PARENT: 0, ATTR_RUNG_SEED: 0, ATTR_BASELINE: "patnet_t1"})
    return study


def test_seeds_that_score_alike_give_no_verdict_rather_than_a_division_by_zero():
    from patsearch.search.objective import ATTR_BASELINE, ATTR_RUNG, ATTR_RUNG_PARENT, ATTR_RUNG_SEED

    study = _two_rung_study()
    for top1, baseline in ((0.50, "patnet_t1"), (0.60, None)):
        parent = len(study.trials)  # the network's rung-0 trial, which its re-trainings name
        named = {ATTR_BASELINE: baseline} if baseline else {}
        _add(study, top1, **named)
        for seed in (0, 1):  # chance-like proxies of a dry run: every seed gives the same score
            _add(study, top1, **named, **{ATTR_RUNG: 1, ATTR_RUNG_PARENT: parent, ATTR_RUNG_SEED: seed})
    info = lead(study)
    assert (info["rung"], info["se_points"], info["inside_noise"]) == (1, 0, None)
    assert "+10.00 points (noise not measured: every seed scored alike" in comparison(study)


def test_a_rung_search_compares_the_two_at_the_highest_rung_both_reached():
    # The baseline not yet re-trained: trial 1's 4-epoch score against T1's 2-epoch one would claim +30 points.
    early = lead(_rung_study(baseline_at_rung1=False))
    assert (early["rung"], early["trial"], early["delta_points"]) == (0, 1, pytest.approx(2.0))
    assert comparison(_rung_study(baseline_at_rung1=False)).startswith(
        "best searched at rung 0 (2 epochs) (trial 1) 52.00% vs patnet_t1 50.00% proxy top-1: +2.00 points")
    later = lead(_rung_study(baseline_at_rung1=True))
    assert (later["rung"], later["top1"], later["delta_points"]) == (1, 0.80, pytest.approx(3.0))
    assert "at rung 1 (4 epochs)" in comparison(_rung_study(baseline_at_rung1=True))


def test_a_floor_set_by_a_network_gets_its_own_comparison_line_when_another_baseline_leads():
    from patsearch.search.objective import ATTR_BASELINE

    study = _two_rung_study()
    study.set_user_attr("patsearch_config", {
        **study.user_attrs["patsearch_config"],
        "constraints": [{"device": "h200", "kind": "throughput", "limit": 3.0e4, "relative_to": "fasternet_t2"}]})
    _add(study, 0.50, **{ATTR_BASELINE: "fasternet_t2"})
    _add(study, 0.55, **{ATTR_BASELINE: "patnet_t1"})
    _add(study, 0.60)
    best, floor = comparison(study).splitlines()
    assert best.startswith("best searched at rung 0 (2 epochs) (trial 2) 60.00% vs patnet_t1 55.00% proxy top-1: "
                           "+5.00 points")
    assert floor.startswith("best searched at rung 0 (2 epochs) (trial 2) 60.00% vs fasternet_t2 (the floor's "
                            "network) 50.00% proxy top-1: +10.00 points")
    assert lead(study, baseline="fasternet_t2")["delta_points"] == pytest.approx(10.0)
    # when the floor's network is itself the best baseline, one line says it all
    _add(study, 0.58, **{ATTR_BASELINE: "fasternet_t2"})
    assert len(comparison(study).splitlines()) == 1
    # a latency budget set by a network that is not the best baseline: the budget's network
    study.set_user_attr("patsearch_config", {**study.user_attrs["patsearch_config"],
                                             "constraints": [{"device": "epyc", "kind": "latency", "limit": 30.0,
                                                              "relative_to": "patnet_t1"}]})
    assert len(comparison(study).splitlines()) == 2 and "(the budget's network)" in comparison(study)


def test_a_collapsed_proxy_training_is_marked_and_named_under_the_table(tmp_path, tiny_profile):
    from patsearch.search.objective import ATTR_BASELINE, ATTR_COLLAPSE, ATTR_RUNG, ATTR_RUNG_PARENT, ATTR_RUNG_SEED
    from patsearch.search.summary import collapse_notes

    def collapsing_proxy(arch, on_epoch_end=None):
        # wide networks fall back to chance in their second epoch (the lr too high for them), narrow ones learn
        falls = arch.embed_dim >= 24
        collapsing_proxy.last_history = [{"epoch": 1, "top1": 70.0}, {"epoch": 2, "top1": 11.0 if falls else 75.0}]
        return 0.11 if falls else 0.75

    collapsing_proxy.num_classes = 10
    out = tiny_search(tmp_path, tiny_profile, "50ms", proxy=collapsing_proxy, trials=6)
    study = out.study
    trained = [t for t in study.trials if t.state == TrialState.COMPLETE and t.user_attrs.get("proxy_top1")]
    marked = [t for t in trained if ATTR_COLLAPSE in t.user_attrs]
    assert marked and all(t.user_attrs["proxy_top1"] == 0.11 for t in marked)
    assert all(t.user_attrs[ATTR_COLLAPSE] == {"epoch": 2, "top1": 11.0, "best": 70.0, "best_epoch": 1}
               for t in marked)
    assert len(marked) < len(trained)  # the narrow ones learnt and are not marked
    assert any(n.startswith(f"warning: {len(marked)} proxy training(s) collapsed (trial ")
               for n in summary_notes(study))

    study = _two_rung_study()
    _add(study, 0.60)
    assert collapse_notes(study) == []
    _add(study, 0.13, **{ATTR_BASELINE: "patnet_t2", ATTR_RUNG: 1, ATTR_RUNG_PARENT: 0, ATTR_RUNG_SEED: 0,
                         ATTR_COLLAPSE: {"epoch": 17, "top1": 12.8, "best": 76.0, "best_epoch": 14}})
    [note] = collapse_notes(study)
    assert note.startswith("warning: 1 proxy training(s) collapsed (patnet_t2 at rung 1, top-1 76.0% at epoch 14 to "
                           "12.8% at epoch 17): a score that fell back toward chance ranks the proxy's lr")
    assert note in summary_notes(study)

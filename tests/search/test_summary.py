"""The search summary: honest state counts, standard errors and the lead's verdict, fidelity, files, plots."""
from __future__ import annotations

import json
import math

import pytest
from optuna.trial import TrialState
from search_helpers import fake_proxy, variant_space

from patsearch.arch import VARIANTS
from patsearch.profiler import load_profile
from patsearch.search.api import SearchOptions, run_search
from patsearch.search.results import (
    _front_plot,
    comparison,
    constraints_of,
    describe_counts,
    find_fidelity,
    lead,
    rows,
    state_counts,
    summary_dict,
    summary_notes,
    trained_study,
)
from patsearch.search.study import is_infeasible


def _load(path):
    return load_profile(path, check=False)


def _run(tmp_path, profile, budget, **kw):
    proxy = kw.pop("proxy", None) or fake_proxy()
    base = dict(latency_budgets=[f"{profile}={budget}"], space="tiny", trials=4, runs_dir=str(tmp_path / "runs"),
                count_costs=False, plots=False, baselines="none", heartbeat_interval=1, study_name="s",
                pruner="none")
    base.update(kw)
    return run_search(SearchOptions(**base), run_proxy=proxy, load_profile=_load)


def test_infeasible_trials_are_counted_apart_and_kept_out_of_importances(tmp_path, tiny_profile):
    out = _run(tmp_path, tiny_profile, "1ms", seed=3)
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
    out = _run(tmp_path, tiny_profile, "5ms", seed=1)
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
    out = _run(tmp_path, tiny_profile, "5ms")
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
    budget = _load(profile).predict(VARIANTS["patnet_t0"], 64) * 1.2
    proxy = fake_proxy(score=lambda a: 0.50 if a.name == "patnet_t0" else searched_top1)
    return _run(tmp_path, profile, f"{budget:.4f}ms", space=str(space_path), trials=3, baselines="auto",
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


def test_pareto_plot_marks_pruned_trials(tmp_path, tiny_profile):
    def run_proxy(arch, on_epoch_end=None):
        final = 0.1 + 0.01 * arch.embed_dim + 0.05 * arch.depths[2]
        for epoch in range(1, 5):
            on_epoch_end(epoch, final * epoch / 4)
        return final

    run_proxy.num_classes = 10
    out = _run(tmp_path, tiny_profile, "5ms", proxy=run_proxy, trials=10, seed=0, sampler="random",
               pruner="median")
    pruned = [t for t in out.study.get_trials() if t.state == TrialState.PRUNED]
    assert pruned
    assert state_counts(out.study)["pruned"] == len(pruned)
    ax = _front_plot(out.study, rows(out.study), constraints_of(out.study), False)
    marked = [c for c in ax.collections if c.get_label().startswith("pruned")]
    assert len(marked) == 1 and len(marked[0].get_offsets()) == len(pruned)
    import matplotlib.pyplot as plt

    plt.close("all")


def test_validation_size_recorded_for_the_standard_error(tmp_path):
    from patsearch.search.api import _val_images
    from patsearch.search.proxy import ProxySettings

    for split, sizes in (("train", (4, 4)), ("val", (3, 5))):
        for name, count in zip(("a", "b"), sizes):
            folder = tmp_path / "data" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                (folder / f"{i}.jpg").write_bytes(b"")  # only listed, never decoded
    data = str(tmp_path / "data")
    assert _val_images(ProxySettings()) == 400
    assert _val_images(ProxySettings(val_samples=123)) == 123
    assert _val_images(ProxySettings(data=data)) == 8
    assert _val_images(ProxySettings(data=data, val_samples=4)) == 2 + 2  # class-balanced: 2 per class
    assert _val_images(ProxySettings(data=data, val_samples=100)) == 8
    assert _val_images(ProxySettings(data=str(tmp_path / "missing"))) is None


def test_costs_are_counted_once_stored_as_they_go_and_never_recounted(tmp_path, tiny_profile, monkeypatch):
    from rich.console import Console

    from patsearch.search import api
    from patsearch.search.results import COSTS_ATTR, fill_costs, missing_costs

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
                         run_proxy=fake_proxy(), load_profile=_load, console=Console(file=fh, width=200))
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
                   run_proxy=fake_proxy(), load_profile=_load, console=Console(file=fh, width=200))
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


def test_show_only_shows_and_rewrite_writes(tmp_path, tiny_profile):
    import subprocess
    import sys

    from search_helpers import ROOT

    runs = tmp_path / "runs"
    out = _run(tmp_path, tiny_profile, "5ms", seed=1)
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


def test_the_shipped_fidelity_reports_are_data_next_to_the_tables():
    import tomllib
    from search_helpers import ROOT as root

    from patsearch.search.results import fidelity_reports

    shipped = fidelity_reports("no-such-runs-dir")
    names = {p.name for p in shipped}
    assert {"proxy-fidelity-cifar10.json", "proxy-fidelity-cifar10-reference50.json"} <= names
    assert all(p.parent == (root / "profiles" / "fidelity").resolve() for p in shipped)
    for p in shipped:  # each a proxy-check report the summary can state
        report = json.loads(p.read_text())
        assert report["settings"]["proxy"]["data_id"] and report["kendall_tau"] is not None
    data_files = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    assert data_files["share/patsearch/profiles/fidelity"] == ["profiles/fidelity/*.json"]


def test_plots_list_only_what_occurred_and_give_top1_in_percent(tmp_path, tiny_profile):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import PercentFormatter

    from patsearch.search.results import FEW_FOR_IMPORTANCES, TOP1_LABEL, _history_plot, importances_plot

    clean = _run(tmp_path / "a", tiny_profile, "5ms", trials=5, seed=2, pruner="none")
    rs = rows(clean.study)
    assert not [r for r in rs if not r.feasible or r.state == "PRUNED"]  # the case the issue saw: none occurred
    ax = _front_plot(clean.study, rs, constraints_of(clean.study), False)
    labels = ax.get_legend_handles_labels()[1]
    assert "searched" in labels and not [x for x in labels if x.startswith(("pruned", "infeasible"))]
    assert ax.get_ylabel() == TOP1_LABEL == "proxy top-1 (%)"
    searched = next(c for c in ax.collections if c.get_label() == "searched")
    assert sorted(y for _, y in searched.get_offsets()) == \
        pytest.approx(sorted(100 * r.top1 for r in rs if not r.baseline))

    tight = _run(tmp_path / "b", tiny_profile, "1ms", trials=4, seed=3, pruner="none")
    rs = rows(tight.study)
    infeasible = [r for r in rs if not r.feasible]
    assert infeasible
    ax = _front_plot(tight.study, rs, constraints_of(tight.study), False)
    marks = next(c for c in ax.collections if c.get_label().startswith("infeasible"))
    assert len(marks.get_offsets()) == len(infeasible)
    lo, hi = ax.get_xlim()  # drawn along the bottom edge, inside the axes
    assert all(lo <= r.predicted["cpu:latency_ms"] <= hi for r in infeasible)
    assert ax.get_ylim()[0] > 1  # no made-up 0% score stretching the axis

    history = _history_plot(tight.study, False)
    assert isinstance(history.yaxis.get_major_formatter(), PercentFormatter)
    assert "Best Value" in history.get_legend_handles_labels()[1]

    notes: list[str] = []
    imp = importances_plot(tight.study, notes)
    n = len(trained_study(tight.study).trials)
    assert n < FEW_FOR_IMPORTANCES
    title = imp.get_title(loc="left")
    assert f"from {n} trained networks" in title and "rough hint" in title
    assert notes == [f"importances.png: from only {n} trained networks (under {FEW_FOR_IMPORTANCES}), a rough hint"]

    pareto = _run(tmp_path / "c", tiny_profile, "1ms", trials=4, seed=3, objective="pareto")
    assert any(is_infeasible(t) for t in pareto.study.trials)
    ax = _front_plot(pareto.study, rows(pareto.study), constraints_of(pareto.study), True)
    assert ax.get_xlabel() == TOP1_LABEL and "Infeasible Trial" not in ax.get_legend_handles_labels()[1]
    plt.close("all")

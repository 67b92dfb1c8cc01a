"""The proxy fidelity check: report fields, resume after a kill, worker processes, option errors."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
from search_helpers import cheap_free_scores, failing_runner_factory, fake_runner_factory, rendezvous_runner_factory
from typer.testing import CliRunner

from patsearch.errors import UserError
from patsearch.profiler import load_profile
from patsearch.proxycheck import FidelityOptions, build_report, default_reference, run_fidelity
from patsearch.proxycheck.plan import make_jobs
from patsearch.search.proxy import ProxySettings

PROXY = ProxySettings(epochs=1, resolution=32, batch_size=16, train_samples=64, val_samples=32, device="cpu")


def _load(path):
    return load_profile(path, check=False)


def _opts(tmp_path, profile, **kw):
    base = dict(proxy=PROXY, n=3, seeds=(0, 1), budget=f"{profile}=5ms", space="tiny",
                out=str(tmp_path / "fid" / "report.json"))
    base.update(kw)
    return FidelityOptions(**base)


def _counting(calls):
    def make_runner(settings):
        inner = fake_runner_factory(settings)

        def run_proxy(arch, on_epoch_end=None):
            calls.append((settings.epochs, settings.seed, arch.embed_dim, arch.depths))
            return inner(arch)

        run_proxy.num_classes = 10
        return run_proxy

    return make_runner


def test_report_fields_and_types_with_the_real_trainer(tmp_path, tiny_profile):
    """Tiny space, synthetic data, 1-epoch proxy (2 seeds) and a 5-epoch reference: the whole pipeline."""
    proxy = ProxySettings(epochs=1, resolution=32, batch_size=16, train_samples=32, val_samples=16, device="cpu")
    opts = _opts(tmp_path, tiny_profile, proxy=proxy, reference=dataclasses.replace(proxy, epochs=5))
    result = run_fidelity(opts, load_profile=_load)
    report = json.loads(result.json_path.read_text())
    assert report["n"] == 3 and report["networks"] == 3 and report["complete"] is True
    assert report["jobs"] == {"done": 12, "total": 12}  # 3 x (reference + 2 proxy seeds + free scores)
    for key in ("kendall_tau", "spearman"):
        assert report[key] is None or -1.0 <= report[key] <= 1.0
    if report["kendall_tau"] is not None and report["kendall_tau_ci95"] is not None:
        lo, hi = report["kendall_tau_ci95"]
        assert -1.0 <= lo <= hi <= 1.0
    assert isinstance(report["seed_std"], float) and report["seed_std"] >= 0
    assert set(report["baselines"]) == {"params", "flops", "synflow"}
    assert all(v is None or isinstance(v, float) for v in report["baselines"].values())
    for row in report["rows"]:
        assert len(row["proxy_top1"]) == 2 and all(0.0 <= p <= 1.0 for p in row["proxy_top1"])
        assert 0.0 <= row["reference_top1"] <= 1.0
        assert row["params"] > 0 and row["flops"] > 0 and row["synflow"] > 0
        assert row["predicted"]["cpu:latency_ms"] <= 5.0  # every sampled network meets the budget
    assert report["settings"]["reference"]["epochs"] == 5 and report["settings"]["reference"]["resolution"] == 32
    assert result.png_path.read_bytes()[:4] == b"\x89PNG"
    assert result.png_path == result.json_path.with_suffix(".png")
    # every training's record keeps its per-epoch top-1, ending at the score it reports
    reference = json.loads((opts.records_dir / "r00.reference.json").read_text())
    assert len(reference["curve"]) == 5 and reference["curve"][-1] == pytest.approx(reference["top1"], abs=1e-6)
    assert len(json.loads((opts.records_dir / "r00.proxy.s1.json").read_text())["curve"]) == 1
    # ... and its losses, one per epoch, from this training's own history (the runner is reused across jobs)
    assert len(reference["curve_val_loss"]) == 5 and len(reference["curve_train_loss"]) == 5
    assert all(math.isfinite(v) and v > 0 for v in reference["curve_val_loss"])
    assert report["curve_kendall_tau"].keys() == {"val_loss"}  # 1 epoch: no top-1 curve, but a final loss


def test_a_killed_run_resumes_without_retraining(tmp_path, tiny_profile):
    calls: list = []
    opts = _opts(tmp_path, tiny_profile)

    def kill_after_first(record):
        raise KeyboardInterrupt  # what Ctrl-C or a lost machine does right after a record is written

    with pytest.raises(KeyboardInterrupt):
        run_fidelity(opts, make_runner=_counting(calls), load_profile=_load, on_record=kill_after_first,
                     score_free=cheap_free_scores)
    assert len(calls) == 1
    records = list(opts.records_dir.glob("*.json"))
    assert sorted(p.name for p in records) == ["plan.json", "r00.reference.json"]
    assert not list(opts.records_dir.glob(".*tmp*"))  # nothing half-written

    result = run_fidelity(opts, make_runner=_counting(calls), load_profile=_load, score_free=cheap_free_scores)
    assert result.ran == 11  # 12 jobs, one already recorded
    assert len(calls) == 1 + 8  # the recorded reference was not trained again; free scores train nothing
    assert result.report["complete"] and result.report["n"] == 3
    # The fake proxy ranks by size, as the reference does: perfect agreement, and seeds 0/1 differ by 0.4 points.
    assert result.report["kendall_tau"] == pytest.approx(1.0)
    assert result.report["kendall_tau_ci95"] == [1.0, 1.0]  # every resample of a perfect ranking is perfect
    assert result.report["seed_std"] == pytest.approx(100 * 0.004 / math.sqrt(2), abs=1e-3)
    again = run_fidelity(opts, make_runner=_counting(calls), load_profile=_load, score_free=cheap_free_scores)
    assert again.ran == 0 and len(calls) == 9


def test_resuming_with_other_settings_is_refused(tmp_path, tiny_profile):
    opts = _opts(tmp_path, tiny_profile)
    run_fidelity(opts, make_runner=fake_runner_factory, load_profile=_load,
                          score_free=cheap_free_scores)
    changed = _opts(tmp_path, tiny_profile, proxy=ProxySettings(epochs=2, resolution=32, train_samples=64,
                                                                val_samples=32, device="cpu"))
    with pytest.raises(UserError, match="holds a proxy check with other settings \\(proxy, reference differ\\)"):
        run_fidelity(changed, make_runner=fake_runner_factory, load_profile=_load,
                          score_free=cheap_free_scores)


def test_a_check_grows_by_networks_and_seeds_reusing_its_records(tmp_path, tiny_profile):
    """More networks, proxy seeds and reference seeds on resume: only the new jobs train; the first networks are
    the same draws; fewer networks than recorded are refused."""
    calls: list = []
    small = run_fidelity(_opts(tmp_path, tiny_profile), make_runner=_counting(calls), load_profile=_load,
                         score_free=cheap_free_scores)
    assert small.ran == 12 and len(calls) == 9
    first_ids = [row["id"] for row in small.report["rows"]]
    grown_opts = _opts(tmp_path, tiny_profile, n=4, seeds=(0, 1, 2), reference_seeds=2)
    grown = run_fidelity(grown_opts, make_runner=_counting(calls), load_profile=_load, score_free=cheap_free_scores)
    # 4 networks x (2 references + 3 proxy seeds + free scores) = 24 jobs, 12 recorded before.
    assert grown.ran == 12 and grown.report["complete"] and grown.report["n"] == 4
    assert len(calls) == 9 + 12 - 1  # the new network's free scores train nothing
    rows = {row["id"]: row for row in grown.report["rows"]}
    assert all(rows[i]["arch"] == r["arch"] for i, r in zip(first_ids, small.report["rows"], strict=True))
    assert all(len(row["proxy_top1"]) == 3 and len(row["reference_seeds_top1"]) == 2 for row in rows.values())
    assert json.loads((grown_opts.records_dir / "plan.json").read_text())["settings"]["n"] == 4
    with pytest.raises(UserError, match=r"holds a proxy check of 4 networks and --n 3 would drop r03; "
                                        r"rerun with --n 4 or more"):
        run_fidelity(_opts(tmp_path, tiny_profile, n=3), make_runner=_counting(calls), load_profile=_load,
                     score_free=cheap_free_scores)


def test_alternatives_are_added_after_the_recorded_ones_only(tmp_path, tiny_profile):
    calls: list = []
    one = (dataclasses.replace(PROXY, batch_size=8),)
    first = run_fidelity(_opts(tmp_path, tiny_profile, alternatives=one), make_runner=_counting(calls),
                         load_profile=_load, score_free=cheap_free_scores)
    assert first.ran == 3 * 6
    two = one + (dataclasses.replace(PROXY, resolution=64),)
    grown = run_fidelity(_opts(tmp_path, tiny_profile, alternatives=two), make_runner=_counting(calls),
                         load_profile=_load, score_free=cheap_free_scores)
    assert grown.ran == 3 * 2 and len(calls) == 3 * 5 + 3 * 2  # only alt2's trainings are new
    assert [a["kind"] for a in grown.report["alternatives"]] == ["alt1", "alt2"]
    swapped = tuple(reversed(two))
    with pytest.raises(UserError, match=r"other settings \(alternatives differ\)"):
        run_fidelity(_opts(tmp_path, tiny_profile, alternatives=swapped), make_runner=_counting(calls),
                     load_profile=_load, score_free=cheap_free_scores)


def test_learning_curve_scores_come_from_the_recorded_curves(tmp_path, tiny_profile):
    """Proxies of 2+ epochs also get Kendall taus of curve scores, computed from the per-epoch top-1: here the
    curves fall where the final scores rise, so the curve scores rank the networks backwards."""
    def make_runner(settings):
        inner = fake_runner_factory(settings)

        def run_proxy(arch, on_epoch_end=None):
            final = inner(arch)
            if on_epoch_end is not None and settings.epochs == 2:  # the proxy; the reference keeps no curve here
                on_epoch_end(0, 1 - 3 * final)
                on_epoch_end(1, final)
                # the runner's history: here the validation loss ranks like the final top-1
                run_proxy.last_history = [{"val_loss": 3.0, "train_loss": 3.0}, {"val_loss": 2 - final,
                                                                                    "train_loss": 2.0}]
            return final

        run_proxy.num_classes = 10
        return run_proxy

    two = _opts(tmp_path, tiny_profile, proxy=dataclasses.replace(PROXY, epochs=2))
    report = run_fidelity(two, make_runner=make_runner, load_profile=_load, score_free=cheap_free_scores).report
    assert report["kendall_tau"] == pytest.approx(1.0)
    assert report["curve_kendall_tau"] == {"last2": pytest.approx(-1.0), "area": pytest.approx(-1.0),
                                           "val_loss": pytest.approx(1.0)}
    records = [json.loads(p.read_text()) for p in two.records_dir.glob("r*.proxy.s*.json")]
    assert len(records) == 6 and all(len(r["curve"]) == 2 and r["curve"][1] > r["curve"][0] for r in records)
    assert all(len(r["curve_val_loss"]) == 2 and r["curve_train_loss"] == [3.0, 2.0] for r in records)
    one = run_fidelity(_opts(tmp_path / "one", tiny_profile), make_runner=fake_runner_factory, load_profile=_load,
                       score_free=cheap_free_scores)
    assert "curve_kendall_tau" not in one.report  # one epoch: no curve to score


def test_two_worker_processes_share_the_jobs(tmp_path, tiny_profile, monkeypatch):
    """The --gpus path with CPU processes: every job runs once, and both spawned workers take jobs (each job waits
    for a marker from the other worker, so one worker alone cannot finish the list)."""
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("PATSEARCH_TEST_MARKERS", str(markers))
    opts = _opts(tmp_path, tiny_profile, gpus="cpu:2")
    result = run_fidelity(opts, make_runner=rendezvous_runner_factory, load_profile=_load,
                          score_free=cheap_free_scores)
    assert result.ran == 12 and result.report["complete"]
    records = [json.loads(p.read_text()) for p in opts.records_dir.glob("r*.json")]
    assert len(records) == 12
    assert len({r["pid"] for r in records}) == 2  # both workers took jobs
    assert result.report["jobs_by_device"] == {"unset": 12}  # CPU workers: no CUDA_VISIBLE_DEVICES


def test_a_failing_job_in_a_worker_stops_the_run_with_one_line(tmp_path, tiny_profile):
    opts = _opts(tmp_path, tiny_profile, gpus="cpu:2")
    with pytest.raises(RuntimeError, match=r"^job r0\d\.reference failed: ValueError: boom$"):
        run_fidelity(opts, make_runner=failing_runner_factory, load_profile=_load, score_free=cheap_free_scores)
    assert not any(p.name.endswith(".reference.json") for p in opts.records_dir.iterdir())
    assert not list(opts.records_dir.glob(".*tmp*"))


def test_stop_after_leaves_a_partial_report_that_a_rerun_completes(tmp_path, tiny_profile):
    calls: list = []
    opts = _opts(tmp_path, tiny_profile, stop_after=1e-9)
    first = run_fidelity(opts, make_runner=_counting(calls), load_profile=_load, score_free=cheap_free_scores)
    assert first.ran == 0 and first.report["complete"] is False and first.report["n"] == 0
    assert json.loads(first.json_path.read_text())["kendall_tau"] is None
    rest = run_fidelity(_opts(tmp_path, tiny_profile), make_runner=_counting(calls), load_profile=_load,
                       score_free=cheap_free_scores)
    assert rest.ran == 12 and rest.report["complete"]


def test_jobs_and_report_from_records():
    plan = [{"id": f"r{i}", "source": "random", "resolution": 64, "predicted": {}, "arch": {}} for i in range(4)]
    opts = FidelityOptions(proxy=PROXY, n=4, seeds=(0, 1))
    assert (opts.reference.epochs, opts.reference.resolution) == (5, 64)  # 5x the epochs at twice the resolution
    assert default_reference(dataclasses.replace(PROXY, epochs=2, resolution=64)).resolution == 64  # never lower
    jobs = make_jobs(plan, opts.seeds)
    assert [j.key for j in jobs[:3]] == ["r0.reference", "r0.proxy.s0", "r0.proxy.s1"]
    assert len(jobs) == 16
    proxy = {"r0": (0.30, 0.32), "r1": (0.40, 0.38), "r2": (0.50, 0.50), "r3": (0.20, 0.24)}
    ref = {"r0": 0.6, "r1": 0.5, "r2": 0.7, "r3": 0.4}  # proxy order r3 < r0 < r1 < r2; reference swaps r0/r1
    records = {}
    for rid, (a, b) in proxy.items():
        records[f"{rid}.proxy.s0"] = {"key": f"{rid}.proxy.s0", "top1": a, "seconds": 1.0}
        records[f"{rid}.proxy.s1"] = {"key": f"{rid}.proxy.s1", "top1": b, "seconds": 1.0}
        records[f"{rid}.reference"] = {"key": f"{rid}.reference", "top1": ref[rid], "seconds": 5.0}
    sizes = {"r0": 10, "r1": 20, "r2": 30, "r3": 40}
    for rid in proxy:
        records[f"{rid}.free"] = {"key": f"{rid}.free", "params": sizes[rid], "flops": sizes[rid],
                                  "synflow": None, "synflow_overflow": True, "seconds": 0.1}
    report = build_report(opts, plan, records)
    assert report["n"] == 4
    assert report["kendall_tau"] == pytest.approx(4 / 6, abs=1e-4)  # 5 concordant pairs, 1 discordant
    assert report["spearman"] == pytest.approx(0.8, abs=1e-4)
    # seed std: sqrt(mean of per-network variances (ddof 1)) in points
    variances = [(a - b) ** 2 / 2 for a, b in proxy.values()]
    assert report["seed_std"] == pytest.approx(100 * math.sqrt(sum(variances) / 4), abs=1e-3)
    assert report["baselines"]["params"] == pytest.approx(-2 / 6, abs=1e-4)  # r0<r1<r2<r3 by size vs reference
    assert report["baselines"]["synflow"] is None  # every synflow overflowed: all tied, no ranking
    assert report["beats_free_scores"] is True
    del records["r3.reference"]
    partial = build_report(opts, plan, records)
    assert partial["n"] == 3 and partial["complete"] is False


def test_a_multi_seed_reference_is_averaged_and_its_noise_reported():
    plan = [{"id": f"r{i}", "source": "random", "resolution": 64, "predicted": {}, "arch": {}} for i in range(3)]
    opts = FidelityOptions(proxy=PROXY, n=3, seeds=(4, 5), reference_seeds=3)
    assert opts.reference_seed_list() == [4, 5, 6]
    assert opts.settings()["reference_seeds"] == 3
    assert "reference_seeds" not in FidelityOptions(proxy=PROXY, n=3).settings()  # old reports stay resumable
    jobs = make_jobs(plan, opts.seeds, reference_seeds=3)
    assert [(j.key, j.seed) for j in jobs[:5]] == [("r0.reference", 4), ("r0.reference.s5", 5),
                                                   ("r0.reference.s6", 6), ("r0.proxy.s4", 4), ("r0.proxy.s5", 5)]
    assert len(jobs) == 3 * (3 + 2 + 1)
    refs = {"r0": (0.60, 0.62, 0.64), "r1": (0.50, 0.50, 0.56), "r2": (0.70, 0.70, 0.70)}
    records = {}
    for rid, tops in refs.items():
        for k, (seed, top1) in enumerate(zip((4, 5, 6), tops)):
            key = f"{rid}.reference" if k == 0 else f"{rid}.reference.s{seed}"
            records[key] = {"key": key, "top1": top1, "seconds": 5.0}
        for seed in (4, 5):
            records[f"{rid}.proxy.s{seed}"] = {"key": f"{rid}.proxy.s{seed}", "top1": tops[0] / 2, "seconds": 1.0}
        records[f"{rid}.free"] = {"key": f"{rid}.free", "params": 1, "flops": 1, "synflow": 1.0, "seconds": 0.1}
    report = build_report(opts, plan, records)
    row = {r["id"]: r for r in report["rows"]}
    assert row["r1"]["reference_top1"] == pytest.approx(0.52) and row["r1"]["reference_seeds_top1"] == [0.5, 0.5, 0.56]
    # within-network variances 0.0004, 0.0012, 0 (ddof 1): pooled sqrt(0.0016 / 3) = 2.309 points
    assert report["reference_seed_std"] == pytest.approx(2.3094, abs=1e-3)
    assert report["jobs"]["total"] == 18 and report["n"] == 3
    del records["r2.reference.s6"]  # a missing reference seed leaves that network out, not half-averaged
    assert build_report(opts, plan, records)["n"] == 2


@pytest.mark.parametrize("kw,fragment", [
    (dict(n=2), "--n must be at least 3"),
    (dict(reference_seeds=0), "--reference-seeds must be a positive integer, got 0"),
    (dict(seeds=(1, 1)), "--seeds must list distinct"),
    (dict(reference=ProxySettings(epochs=4, resolution=64, train_samples=64, val_samples=32)),
     "the reference trains on 256 images (4 epochs x 64), less than 5x the proxy's 64 (1 x 64); give "
     "--reference-epochs 5 or more"),
    (dict(reference=ProxySettings(epochs=5, resolution=32), proxy=ProxySettings(epochs=1, resolution=64)),
     "below the proxy's 64"),
    (dict(reference=ProxySettings(data="/x", epochs=5, resolution=64)), "same --data"),
    (dict(out="report.txt"), "must name a .json file"),
])
def test_bad_options_are_one_line_errors(kw, fragment):
    base = dict(proxy=PROXY)
    base.update(kw)
    with pytest.raises(UserError) as info:
        FidelityOptions(**base)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def _cli_with_fake_trainings(monkeypatch):
    """The CLI module, its proxy-check running stand-in trainings and free scores on the tiny profile."""
    import cli
    monkeypatch.setattr("patsearch.proxycheck.run.make_proxy_runner", fake_runner_factory)
    monkeypatch.setattr("patsearch.proxycheck.plan.free_scores", cheap_free_scores)
    monkeypatch.setattr("patsearch.profiler.load_profile", lambda device, **kw: _load(device))
    return cli


def test_cli_proxy_check_runs_and_reports(tmp_path, tiny_profile, monkeypatch):
    cli = _cli_with_fake_trainings(monkeypatch)
    out = tmp_path / "r.json"
    args = ["proxy-check", "--n", "3", "--budget", f"{tiny_profile}=5ms", "--space", "tiny", "--proxy-epochs", "1",
            "--proxy-device", "cpu", "--out", str(out)]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert "Kendall tau" in result.output and out.exists() and out.with_suffix(".png").exists()
    bad = CliRunner().invoke(cli.app, args[:-2] + ["--out", str(tmp_path / "b.json"), "--reference-epochs", "2"])
    assert bad.exit_code != 0 and "less than 5x" in str(bad.exception)


def test_cli_refuses_to_shrink_a_recorded_check_in_one_line(tmp_path, tiny_profile, monkeypatch, capsys):
    """Growing is allowed, shrinking is not: a one-line error, exit 2, and the recorded plan and report untouched."""
    import sys

    cli = _cli_with_fake_trainings(monkeypatch)
    out = tmp_path / "r.json"
    args = ["proxy-check", "--budget", f"{tiny_profile}=5ms", "--space", "tiny", "--proxy-epochs", "1",
            "--proxy-device", "cpu", "--out", str(out)]
    assert CliRunner().invoke(cli.app, args + ["--n", "4"]).exit_code == 0
    plan, report = (out.parent / "r.records" / "plan.json").read_bytes(), out.read_bytes()
    monkeypatch.setattr(sys, "argv", ["patsearch", *args, "--n", "3"])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "\n" not in err
    assert err.startswith("error: ") and "holds a proxy check of 4 networks and --n 3 would drop r03" in err
    assert (out.parent / "r.records" / "plan.json").read_bytes() == plan and out.read_bytes() == report


def test_alternative_proxies_are_measured_against_the_same_reference():
    """One reference per network; each alternative proxy gets its own tau, seed std and cost."""
    plan = [{"id": f"r{i}", "source": "random", "resolution": 64, "predicted": {}, "arch": {}} for i in range(4)]
    alt = dataclasses.replace(PROXY, resolution=64)
    opts = FidelityOptions(proxy=PROXY, alternatives=(alt,), n=4, seeds=(0, 1))
    jobs = make_jobs(plan, opts.seeds, len(opts.alternatives))
    assert [j.key for j in jobs[:5]] == ["r0.reference", "r0.proxy.s0", "r0.proxy.s1", "r0.alt1.s0", "r0.alt1.s1"]
    assert len(jobs) == 4 * 6
    assert opts.proxy_for("alt1") == alt and opts.proxy_for("proxy") == PROXY
    ref = {"r0": 0.6, "r1": 0.5, "r2": 0.7, "r3": 0.4}
    main = {"r0": 0.1, "r1": 0.2, "r2": 0.3, "r3": 0.4}  # ranks r3 first, the reference last: tau -2/6
    records = {}
    for rid in ref:
        records[f"{rid}.reference"] = {"key": f"{rid}.reference", "top1": ref[rid], "seconds": 5.0}
        records[f"{rid}.free"] = {"key": f"{rid}.free", "params": 1, "flops": 1, "synflow": 1.0, "seconds": 0.1}
        for s in (0, 1):
            records[f"{rid}.proxy.s{s}"] = {"key": f"{rid}.proxy.s{s}", "top1": main[rid], "seconds": 1.0}
            # the alternative agrees with the reference exactly and costs 3 s
            records[f"{rid}.alt1.s{s}"] = {"key": f"{rid}.alt1.s{s}", "top1": ref[rid] - 0.1 + 0.01 * s,
                                           "seconds": 3.0}
    report = build_report(opts, plan, records)
    assert report["kendall_tau"] == pytest.approx(-2 / 6, abs=1e-4) and report["proxy_mean_seconds"] == 1.0
    (a,) = report["alternatives"]
    assert a["kind"] == "alt1" and a["n"] == 4 and a["kendall_tau"] == 1.0 and a["mean_seconds"] == 3.0
    assert a["seed_std"] == pytest.approx(100 * math.sqrt(0.01 ** 2 / 2), abs=1e-3)
    assert a["settings"]["resolution"] == 64
    assert a["reference_factor"] == 5.0 and a["meets_reference_rule"] is True   # the default reference: 5x epochs
    assert report["rows"][0]["alternatives_top1"]["alt1"] == [pytest.approx(0.5), pytest.approx(0.51)]
    del records["r1.alt1.s1"]  # an alternative missing a seed leaves that network out of its figures only
    partial = build_report(opts, plan, records)
    assert partial["alternatives"][0]["n"] == 3 and partial["n"] == 4


def test_apply_overrides_parses_and_refuses():
    from patsearch.proxycheck import apply_overrides

    changed = apply_overrides(PROXY, "epochs=2, resolution=64,train_samples=all,lr=0.002")
    assert (changed.epochs, changed.resolution, changed.train_samples, changed.lr) == (2, 64, None, 0.002)
    assert changed.val_samples == PROXY.val_samples
    for text, fragment in (("epochs", "key=value pairs"), ("depth=3", "key=value pairs"), ("", "at least one"),
                           ("epochs=two", "not an integer"), ("resolution=all", "needs a number"),
                           ("lr=-1", "--proxy-lr must be a positive number, got -1.0")):
        with pytest.raises(UserError) as info:
            apply_overrides(PROXY, text)
        assert fragment in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("kw,fragment", [
    (dict(alternatives=(dataclasses.replace(PROXY, epochs=2),)), "less than 5x --also-proxy 1's 128 (2 x 64); give "
     "--reference-epochs 10 or more, or --exploratory-alternatives to measure it anyway (the report marks it)"),
    (dict(alternatives=(dataclasses.replace(PROXY, resolution=128),)), "above the reference's 64 px"),
    (dict(alternatives=(PROXY,)), "is the same as the proxy"),
    (dict(alternatives=(dataclasses.replace(PROXY, data="/x"),)), "must train on the proxy's --data"),
    (dict(workers_per_gpu=0), "--workers-per-gpu must be a positive integer"),
])
def test_bad_alternatives_are_one_line_errors(kw, fragment):
    with pytest.raises(UserError) as info:
        FidelityOptions(proxy=PROXY, **kw)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_workers_per_gpu_runs_that_many_processes_per_device(tmp_path, tiny_profile, monkeypatch):
    """cpu:1 with two workers per device: both spawned processes take jobs (the rendezvous needs two)."""
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("PATSEARCH_TEST_MARKERS", str(markers))
    opts = _opts(tmp_path, tiny_profile, gpus="cpu:1", workers_per_gpu=2)
    result = run_fidelity(opts, make_runner=rendezvous_runner_factory, load_profile=_load,
                          score_free=cheap_free_scores)
    assert result.ran == 12
    records = [json.loads(p.read_text()) for p in opts.records_dir.glob("r*.json")]
    assert len({r["pid"] for r in records}) == 2


def test_cli_also_proxy_and_reference_overrides(tmp_path, tiny_profile, monkeypatch):
    cli = _cli_with_fake_trainings(monkeypatch)
    out = tmp_path / "r.json"
    args = ["proxy-check", "--n", "3", "--budget", f"{tiny_profile}=5ms", "--space", "tiny", "--proxy-epochs", "1",
            "--proxy-device", "cpu", "--proxy-train-samples", "64", "--out", str(out), "--reference-epochs", "10",
            "--reference", "train_samples=all", "--also-proxy", "epochs=2,resolution=64"]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["settings"]["reference"]["train_samples"] is None
    assert report["alternatives"][0]["settings"]["epochs"] == 2 and report["alternatives"][0]["n"] == 3
    assert "alt1 (2 ep at 64 px" in result.output


def test_gpus_means_what_the_search_means(monkeypatch):
    """One reading of --gpus for search and proxy-check: a count is the first N GPUs, a list names them."""
    import torch

    from patsearch.search.jobs import parse_devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert parse_devices("all") == ["0", "1"]
    assert parse_devices("1") == ["0"]            # the first GPU, as `patsearch search --gpus 1`
    assert parse_devices("1,") == ["1"] and parse_devices("0,1") == ["0", "1"]
    assert parse_devices("none") == [] and parse_devices("cpu:2") == ["cpu", "cpu"]
    with pytest.raises(UserError, match="pass distinct indices from 0 to 1"):
        parse_devices("0,2")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert parse_devices("all") == []             # no GPU: this process


def test_an_exploratory_alternative_may_be_longer_and_is_marked_so():
    """--exploratory-alternatives lets an alternative train on more than 1/5 of the reference's images (a longer
    proxy against the existing reference); the proxy itself keeps the rule, and the report marks the alternative."""
    longer = dataclasses.replace(PROXY, epochs=2)
    opts = FidelityOptions(proxy=PROXY, alternatives=(longer,), n=4, seeds=(0,), exploratory_alternatives=True)
    plan = [{"id": f"r{i}", "source": "random", "resolution": 32, "predicted": {}, "arch": {}} for i in range(4)]
    records = {}
    for i in range(4):
        records[f"r{i}.reference"] = {"key": f"r{i}.reference", "top1": 0.1 * i, "seconds": 1.0}
        records[f"r{i}.free"] = {"key": f"r{i}.free", "params": 1, "flops": 1, "synflow": 1.0, "seconds": 0.1}
        for kind in ("proxy", "alt1"):
            records[f"r{i}.{kind}.s0"] = {"key": f"r{i}.{kind}.s0", "top1": 0.1 * i, "seconds": 1.0}
    (alt,) = build_report(opts, plan, records)["alternatives"]
    assert alt["reference_factor"] == 2.5 and alt["meets_reference_rule"] is False and alt["kendall_tau"] == 1.0
    with pytest.raises(UserError, match="less than 5x the proxy's"):   # never for the proxy itself
        FidelityOptions(proxy=longer, reference=dataclasses.replace(PROXY, epochs=5), exploratory_alternatives=True)


def test_reuse_records_copies_matching_trainings_and_retrains_only_the_rest(tmp_path, tiny_profile):
    """A longer reference for the same proxies: only the reference is trained again."""
    longer = dataclasses.replace(PROXY, epochs=2)
    calls: list = []
    first = run_fidelity(_opts(tmp_path / "a", tiny_profile, alternatives=(longer,), exploratory_alternatives=True),
                         make_runner=_counting(calls), load_profile=_load, score_free=cheap_free_scores)
    assert len(calls) == 3 * (1 + 2 + 2)  # per network: reference, 2 proxy seeds, 2 alternative seeds
    calls.clear()
    # The roles swap: the longer proxy is the proxy now, the short one its alternative, against a 10-epoch reference.
    swapped = _opts(tmp_path / "b", tiny_profile, proxy=longer, alternatives=(PROXY,),
                    reference=dataclasses.replace(default_reference(PROXY), epochs=10),
                    reuse_records=str(first.json_path.with_name("report.records")))
    second = run_fidelity(swapped, make_runner=_counting(calls), load_profile=_load, score_free=cheap_free_scores)
    assert len(calls) == 3 and {c[0] for c in calls} == {10}
    assert second.report["complete"] is True
    old = {r["id"]: r for r in first.report["rows"]}
    for row in second.report["rows"]:  # the same trainings under their new roles
        assert row["proxy_top1"] == old[row["id"]]["alternatives_top1"]["alt1"]
        assert row["alternatives_top1"]["alt1"] == old[row["id"]]["proxy_top1"]
    record = json.loads((swapped.records_dir / "r00.alt1.s1.json").read_text())
    assert record["key"] == "r00.alt1.s1" and record["kind"] == "alt1" and record["reused_from"].endswith("records")
    # Resuming copies nothing twice and trains nothing.
    calls.clear()
    run_fidelity(swapped, make_runner=_counting(calls), load_profile=_load, score_free=cheap_free_scores)
    assert calls == []


def test_reuse_records_needs_a_check_folder(tmp_path, tiny_profile):
    with pytest.raises(UserError, match="no plan.json there"):  # refused before anything is written
        _opts(tmp_path, tiny_profile, reuse_records=str(tmp_path / "nowhere"))
    assert not (tmp_path / "fid").exists()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "plan.json").write_text("{not json")
    bad = _opts(tmp_path, tiny_profile, reuse_records=str(tmp_path / "bad"))
    with pytest.raises(UserError, match="is not a proxy-check plan"):
        run_fidelity(bad, make_runner=_counting([]), load_profile=_load, score_free=cheap_free_scores)


def test_cli_reuse_records_without_a_check_is_one_line_and_writes_nothing(tmp_path, tiny_profile, monkeypatch, capsys):
    import sys

    cli = _cli_with_fake_trainings(monkeypatch)
    out = tmp_path / "r.json"
    monkeypatch.setattr(sys, "argv", ["patsearch", "proxy-check", "--n", "3", "--budget", f"{tiny_profile}=5ms",
                                      "--space", "tiny", "--proxy-epochs", "1", "--proxy-device", "cpu",
                                      "--reuse-records", str(tmp_path / "nowhere"), "--out", str(out)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "\n" not in err
    assert err == (f"error: --reuse-records {tmp_path / 'nowhere'}: no plan.json there; give the .records folder of "
                   "an earlier proxy-check (it sits beside that check's report)")
    assert list(tmp_path.iterdir()) == []  # no records folder, report or plot


def test_cli_proxy_check_writes_under_runs_and_never_prints_none(tmp_path, tiny_profile, monkeypatch):
    import re

    cli = _cli_with_fake_trainings(monkeypatch)
    monkeypatch.chdir(tmp_path)  # a checkout's docs/ would be here: nothing may land in it
    args = ["proxy-check", "--n", "3", "--seeds", "0", "--budget", f"{tiny_profile}=5ms", "--space", "tiny",
            "--proxy-epochs", "1", "--proxy-device", "cpu", "--runs-dir", str(tmp_path / "runs")]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    report = tmp_path / "runs" / "proxy-check" / "proxy-fidelity.json"
    assert report.exists() and report.with_suffix(".png").exists() and not (tmp_path / "docs").exists()
    text = " ".join(result.output.split())  # rich may wrap the long line
    assert "None" not in text
    assert "seed std - (one proxy seed: --seeds 0,1 measures it)" in text and "[complete]" in text
    tau = re.search(r"Kendall tau (-|-?\d\.\d\d)(?: \(95% interval (-?\d\.\d\d) to (-?\d\.\d\d)\))?", text)
    assert tau is not None, text
    if tau.group(2) is not None:  # as printed: the interval holds the estimate
        assert float(tau.group(2)) <= float(tau.group(1)) <= float(tau.group(3))

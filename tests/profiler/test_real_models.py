"""The profiler with real PATNet layers on the tiny space: table, traces, validation report and plot, bench."""
import json

import pytest
import torch

from patsearch.profiler.bench import run_bench, write_result
from patsearch.profiler.devices import get_device
from patsearch.profiler.run import profile_device
from patsearch.profiler.table import Profile
from patsearch.profiler.timing import Budget

QUICK = Budget(warmup_s=0.0, min_samples=3, target_s=0.0, max_samples=3)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    path = root / "cpu.json"
    profile = profile_device("cpu", space="tiny", out=path, validate=5, calibrate=6, seed=1, trace=root / "traces",
                             progress=False, command="pytest", layer_budget=QUICK, network_budget=QUICK)
    return root, path, profile


def test_real_table_validation_and_plot(built):
    root, path, profile = built
    data = json.loads(path.read_text())
    assert len(data["entries"]) == 22
    roles = [n["role"] for n in data["networks"].values()]
    assert roles.count("calibration") == 6 and roles.count("evaluation") == 5
    fid = data["fidelity"]
    for part in ("raw_sum", "calibrated"):
        assert set(fid[part]) == {"n", "within_5pct", "within_10pct", "mape", "max_error_pct", "kendall_tau"}
        assert fid[part]["n"] == 5
    assert data["calibration"]["model"] in data["calibration"]["loo_mape"]
    png = root / fid["plot"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # calibration and evaluation sets are disjoint networks
    calib = {k for k, n in data["networks"].items() if n["role"] == "calibration"}
    assert not calib & {k for k, n in data["networks"].items() if n["role"] == "evaluation"}


def test_prediction_tracks_measured_order_of_very_different_networks(built):
    _, path, _ = built
    profile = Profile.load(path)
    from patsearch.arch import ArchConfig

    small = ArchConfig(embed_dim=16, depths=(1, 1, 1, 1), num_classes=10, head_width=64,
                       mixers=("pconv", "pat_ch", "pat_ch", "pat_ch"))
    large = small.replace(embed_dim=32, depths=(1, 2, 3, 1), mixers=("pat_ch", "pat_ch", "pat_ch", "pat_sf"))
    assert profile.predict(large, 64) > profile.predict(small, 64)


def test_traces_open_as_chrome_traces(built):
    root, _, _ = built
    runs = sorted(p for p in (root / "traces").iterdir() if p.is_dir())
    assert len(runs) >= 4
    for run in runs:
        files = list(run.glob("*.pt.trace.json"))
        assert len(files) == 1
        events = json.loads(files[0].read_text())["traceEvents"]
        assert any(e.get("name", "").startswith("aten::") for e in events)
    # TensorBoard's torch-tb-profiler plugin parses a run into its views (what `tensorboard --logdir` shows)
    pytest.importorskip("torch_tb_profiler")
    from torch_tb_profiler import consts
    from torch_tb_profiler.profiler.data import RunProfileData
    from torch_tb_profiler.profiler.run_generator import RunGenerator

    trace = next(runs[0].glob("*.pt.trace.json"))
    match = consts.WORKER_PATTERN.match(trace.name)
    assert match and match.group(1) == "cpu"
    data = RunProfileData.parse(match.group(1), None, str(trace), str(root / "tbcache"))
    views = {v.name for v in RunGenerator(match.group(1), None, data).generate_run_profile().views}
    assert {"overall", "operator", "trace"} <= views


def test_rerun_measures_nothing_new(built, monkeypatch):
    root, path, _ = built
    import patsearch.profiler.build as build

    def boom(spec, form):
        raise AssertionError("a complete table must not measure again")

    monkeypatch.setattr(build, "default_layer_factory", boom)
    again = profile_device("cpu", space="tiny", out=path, progress=False, layer_budget=QUICK)
    assert len(again.entries) == 22


def test_bench_rows_side_by_side(tmp_path):
    result = run_bench("cpu", models=["patnet_t0", "fasternet_t0"], resolution=64, progress=False,
                       budget=QUICK, command="pytest")
    rows = {(r.model, r.form): r for r in result.rows}
    assert set(rows) == {(m, f) for m in ("patnet_t0", "fasternet_t0") for f in ("trained", "fused")}
    assert rows[("patnet_t0", "trained")].params_m == pytest.approx(4.29, abs=0.01)   # Table 6
    assert rows[("fasternet_t0", "trained")].params_m == pytest.approx(3.91, abs=0.01)
    # deployment form: fewer parameters (BN folded) and fewer FLOPs (PAT_sp merged)
    assert rows[("patnet_t0", "fused")].flops_g < rows[("patnet_t0", "trained")].flops_g
    assert rows[("fasternet_t0", "fused")].params_m < rows[("fasternet_t0", "trained")].params_m
    for row in result.rows:
        assert row.value > 0 and row.spread_pct >= 0
    t0 = rows[("patnet_t0", "fused")]
    assert t0.vs_fasternet == pytest.approx(rows[("fasternet_t0", "fused")].value / t0.value, rel=1e-2)
    md = write_result(result, tmp_path / "bench.md").read_text()
    assert "| patnet_t0 | fused |" in md and "latency (ms)" in md
    assert json.loads(write_result(result, tmp_path / "bench.json").read_text())["rows"][0]["model"] == "patnet_t0"
    assert write_result(result, tmp_path / "bench.csv").read_text().startswith("model,family,form")


def test_unstable_network_measurements_are_retried_once(tmp_path, tiny_space):
    from patsearch.profiler.build import open_for_build
    from patsearch.profiler.validate import measure_networks, split_samples

    built = []

    def factory(arch, form):
        built.append(arch)
        return torch.nn.Conv2d(3, 4, 3)

    dev = get_device("cpu")
    profile = open_for_build(tmp_path / "p.json", dev, dev.protocol)
    items = split_samples(tiny_space, 3, 2, seed=0)
    measure_networks(profile, items, dev, model_factory=factory, budget=QUICK, progress=False,
                     unstable_spread=-1.0, host_factor=0.0)  # every measurement counts as unstable
    assert len(built) == 2 * len(items)
    assert all(n["retried"] for n in profile.networks.values())
    measure_networks(profile, items, dev, model_factory=factory, budget=QUICK, progress=False,
                     unstable_spread=-1.0, host_factor=0.0)
    assert len(built) == 2 * len(items)  # retried ones are never measured a third time


@pytest.mark.parametrize("spreads, retried", [
    ([0.30, 0.25, 0.35, 0.28, 0.90], [4]),   # a noisy VM: only the outlier (over 2x the median 0.30) again
    ([0.02, 0.03, 0.15, 0.02, 0.04], [2]),   # a quiet host: anything over 10%
    ([0.30, 0.25, 0.35, 0.28, 0.50], []),    # noisy alike: a retry would be as noisy, none
])
def test_retries_are_judged_against_the_hosts_own_spread(tmp_path, tiny_space, monkeypatch, spreads, retried):
    from patsearch.profiler import timing
    from patsearch.profiler.build import open_for_build
    from patsearch.profiler.validate import measure_networks, split_samples

    order = iter(spreads + [0.01] * 5)  # first pass in item order, then the retries measure steady
    monkeypatch.setattr(timing, "time_interleaved", lambda prepared, **kw: [
        timing.Timing(10.0, 10.0, 10.0 * (1 + next(order)), 9, 1) for _ in prepared])
    dev = get_device("cpu")
    profile = open_for_build(tmp_path / "p.json", dev, dev.protocol)
    items = split_samples(tiny_space, 3, 2, seed=0)
    measure_networks(profile, items, dev, model_factory=lambda arch, form: torch.nn.Identity(), budget=QUICK,
                     progress=False)
    assert [i for i, (key, *_) in enumerate(items) if profile.networks[key].get("retried")] == retried
    for i in retried:  # the steadier of the two is kept
        assert profile.networks[items[i][0]]["p90"] == pytest.approx(10.1)


def test_cuda_graph_protocol_times_graph_replays(tmp_path, tiny_space, monkeypatch):
    # The GPU timing is faked (this host has none): the network measurements of a cuda_graphs protocol ask the
    # timer for graph replays, an eager protocol for eager calls.
    import dataclasses

    from patsearch.profiler import timing
    from patsearch.profiler.build import open_for_build
    from patsearch.profiler.validate import measure_networks, split_samples

    asked = []
    monkeypatch.setattr(timing, "prepare", lambda module, shape, device, protocol: (module, None))
    monkeypatch.setattr(timing, "configure", lambda device, protocol: None)
    monkeypatch.setattr(timing, "time_interleaved", lambda prepared, **kw: (
        asked.append(kw["graphs"]) or [timing.Timing(5.0, 5.0, 5.0, 9, 1) for _ in prepared]))
    dev = get_device("h200")
    items = split_samples(tiny_space, 2, 1, seed=0)
    for graphs in (True, False):
        protocol = dataclasses.replace(dev.protocol, cuda_graphs=graphs)
        profile = open_for_build(tmp_path / f"{graphs}.json", dev, protocol)
        measure_networks(profile, items, dev, model_factory=lambda arch, form: torch.nn.Identity(), budget=QUICK,
                         progress=False)
        assert asked and set(asked) == {graphs} and len(profile.networks) == 3
        asked.clear()


def test_a_network_cuda_graphs_cannot_capture_is_a_one_line_error_naming_the_eager_flag():
    from patsearch.profiler.timing import GraphCaptureError, time_interleaved

    with pytest.raises(GraphCaptureError) as exc:   # no GPU here: capture fails like an uncapturable network
        time_interleaved([(torch.nn.Identity(), torch.zeros(1))], gpu=True, budget=QUICK, graphs=True)
    assert "cannot be captured in a CUDA graph" in str(exc.value) and "--no-cuda-graphs" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_bench_reports_a_model_graphs_cannot_capture_and_times_the_rest(monkeypatch):
    from patsearch.profiler import bench, timing
    from patsearch.profiler.devices import Protocol

    def fake(items, **kw):
        if any(module == "uncapturable" for module, _ in items):
            raise timing.GraphCaptureError("no")
        return [timing.Timing(2.0, 2.0, 2.0, 9, 1) for _ in items]

    monkeypatch.setattr(timing, "time_interleaved", fake)
    protocol = Protocol(metric="throughput", batch=256, cuda_graphs=True)
    got = bench._time_chunk([("a", None), ("uncapturable", None), ("b", None)], gpu=True, budget=QUICK,
                            protocol=protocol)
    assert got[0].median_ms == 2.0 and got[1] is None and got[2].median_ms == 2.0

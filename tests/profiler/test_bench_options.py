"""BenchOptions: YAML round trip, one-line validation errors naming the flag, the CLI's flags onto the options."""
import dataclasses
import sys

import pytest

import patsearch.profiler as profiler
from patsearch.errors import UserError
from patsearch.profiler import BenchOptions, BenchOptionsError, DeviceError
from patsearch.profiler.bench import BenchResult, BenchRow, run_bench


def test_yaml_round_trip_gives_equal_options(tmp_path):
    opts = BenchOptions("cpu", models=["patnet_t0", "fasternet_t0"], forms=["fused"], resolution=64, batch=2,
                        dtype="bfloat16", channels_last=True, threads=2, clock="wall", group=2, format="json",
                        out=tmp_path / "bench.json", progress=False, command="pytest")
    assert opts.models == ("patnet_t0", "fasternet_t0") and opts.forms == ("fused",)  # lists frozen as tuples
    assert opts.out == str(tmp_path / "bench.json")
    path = tmp_path / "bench.yaml"
    path.write_text(opts.to_yaml())
    assert "models:\n- patnet_t0\n- fasternet_t0\n" in path.read_text()  # plain YAML lists, no python tags
    assert BenchOptions.from_yaml(path) == opts
    protocol = opts.protocol()
    assert (protocol.batch, protocol.dtype, protocol.channels_last, protocol.threads, protocol.clock) == \
        (2, "bfloat16", True, 2, "wall")
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.group = 3  # type: ignore[misc]
    assert BenchOptions("cpu", models="patnet_t0, fasternet_t0").models == ("patnet_t0", "fasternet_t0")


@pytest.mark.parametrize("changes, message", [
    ({"group": 0}, "--group must be at least 1, got 0"),
    ({"rounds": 0}, "--rounds must be a positive integer, got 0"),
    ({"rounds": 1.5}, "--rounds must be a positive integer, got 1.5"),
    ({"cuda_graphs": "yes"}, "--cuda-graphs must be true, false or unset, got 'yes'"),
    ({"tf32": "yes"}, "--tf32 must be true, false or unset, got 'yes'"),
    ({"resolution": 16}, "--resolution must be an integer of at least 32, got 16"),
    ({"resolution": 224.0}, "--resolution must be an integer of at least 32, got 224.0"),
    ({"format": "html"}, "--format must be md, csv or json, got 'html'"),
    ({"models": []}, "--models must be a non-empty list of model names (or unset), got ()"),
    ({"forms": ["fused", ""]}, "--forms must be a non-empty list of forms from trained, fused"),
    ({"forms": ["nope"]}, "--forms: unknown form 'nope'; choose from trained, fused"),
    ({"forms": ["table6"]}, "--forms: form 'table6' is not available here; choose from trained, fused"),
    ({"progress": "yes"}, "--progress must be true or false, got 'yes'"),
    ({"dtype": "float64"}, "--dtype must be one of float32, bfloat16, float16, got 'float64'"),  # the Protocol's
    ({"batch": 0}, "--batch must be a positive integer, got 0"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
])
def test_bad_values_are_one_line_errors_naming_the_flag(changes, message):
    with pytest.raises(DeviceError) as exc:
        BenchOptions(**{"device": "cpu", **changes})
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value)
    assert isinstance(exc.value, UserError)


def test_options_file_errors_name_the_file_and_field(tmp_path):
    path = tmp_path / "bench.yaml"
    path.write_text("device: cpu\nbatch_size: 4\n")
    with pytest.raises(BenchOptionsError, match=r"bench.yaml: unknown field\(s\) batch_size; known fields: "):
        BenchOptions.from_yaml(path)
    path.write_text("device: cpu\ngroup: 0\n")
    with pytest.raises(BenchOptionsError, match=r"bench.yaml: --group must be at least 1, got 0"):
        BenchOptions.from_yaml(path)
    path.write_text("- cpu\n")
    with pytest.raises(BenchOptionsError, match="expected a mapping of bench options, got list"):
        BenchOptions.from_yaml(path)


def test_run_bench_keywords_are_the_options():
    # the keyword call still works and is validated before any model is built
    with pytest.raises(BenchOptionsError, match="unexpected keyword argument 'batch_size'"):
        run_bench("cpu", batch_size=4)
    with pytest.raises(BenchOptionsError, match="--group must be at least 1, got 0"):
        run_bench("cpu", models=["patnet_t0"], group=0, progress=False)


def _fake_result() -> BenchResult:
    row = BenchRow("patnet_t0", "PATNet", "fused", 4.0, 0.5, 123.0, 1.0)
    return BenchResult("cpu", "throughput", "b1", 64, {"hardware": "here", "date": "today"}, [row])


@pytest.fixture
def seen(monkeypatch):
    calls = []
    monkeypatch.setattr(profiler, "build_bench", lambda opts: calls.append(opts) or _fake_result())
    return calls


def _run_cli(monkeypatch, argv):
    import cli

    monkeypatch.setattr(sys, "argv", ["patsearch", "bench", *argv])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    return exc.value.code


def test_cli_flags_map_onto_the_options(tmp_path, monkeypatch, capsys, seen):
    out = tmp_path / "t.json"
    code = _run_cli(monkeypatch, ["--device", "cpu", "--models", "patnet_t0,fasternet_t0", "--forms", "fused",
                                  "--resolution", "64", "--batch", "2", "--dtype", "bfloat16", "--channels-last",
                                  "--threads", "2", "--clock", "wall", "--group", "3", "--rounds", "2",
                                  "--format", "csv", "--out", str(out)])
    assert code == 0
    (opts,) = seen
    assert opts == BenchOptions("cpu", models=("patnet_t0", "fasternet_t0"), forms=("fused",), resolution=64,
                                batch=2, dtype="bfloat16", channels_last=True, threads=2, clock="wall", group=3,
                                rounds=2, format="csv", out=str(out))
    printed = capsys.readouterr().out
    assert printed.startswith("model,family,form") and f"wrote {out}" in printed  # --format csv to stdout
    assert out.read_text().startswith('{\n "device": "cpu"')  # the file's format comes from its suffix


def test_cli_defaults_are_the_options_defaults(monkeypatch, seen):
    assert _run_cli(monkeypatch, ["--device", "cpu"]) == 0
    assert seen == [BenchOptions("cpu")]


def test_cli_flags_given_override_the_file_and_defaults_do_not(tmp_path, monkeypatch, seen):
    path = tmp_path / "bench.yaml"
    path.write_text("device: cpu\nmodels: [patnet_t0]\nresolution: 96\ngroup: 2\nformat: json\n")
    assert _run_cli(monkeypatch, ["--options", str(path), "--group", "5", "--format", "md"]) == 0
    (opts,) = seen
    assert (opts.group, opts.format) == (5, "md")                                       # flags given
    assert (opts.device, opts.models, opts.resolution) == ("cpu", ("patnet_t0",), 96)  # file, not defaults


@pytest.mark.parametrize("argv, message", [
    (["--group", "0", "--device", "cpu"], "error: --group must be at least 1, got 0"),
    (["--device", "cpu", "--format", "html"], "error: --format must be md, csv or json, got 'html'"),
    (["--device", "epyc", "--cuda-graphs"], "error: --cuda-graphs needs a GPU device; epyc is a CPU (drop the flag, "
                                            "or use --no-cuda-graphs)"),
    ([], "error: --device is required (or an --options file that sets device)"),
])
def test_cli_errors_are_one_line(monkeypatch, capsys, seen, argv, message):
    assert _run_cli(monkeypatch, argv) == 2
    assert capsys.readouterr().err.strip() == message
    assert seen == []


@pytest.mark.parametrize("metric, column", [("throughput", "throughput_img_per_s"), ("latency_ms", "latency_ms")])
def test_csv_names_the_metric_column_with_its_unit(metric, column):
    import csv
    import io

    result = _fake_result()
    result.metric = metric
    rows = list(csv.DictReader(io.StringIO(result.to_csv())))
    assert "value" not in rows[0] and rows[0][column] == "123.0"
    assert list(rows[0])[:6] == ["model", "family", "form", "params_m", "flops_g", column]


def test_an_unwritable_out_fails_before_any_measuring(tmp_path, monkeypatch):
    import patsearch.models

    (tmp_path / "f").write_text("a file, not a folder")
    monkeypatch.setattr(patsearch.models, "create_model", lambda *a, **k: pytest.fail("built before checking --out"))
    with pytest.raises(UserError, match=r"cannot write --out .*f/b\.md: .*f is a file, not a folder"):
        profiler.build_bench(BenchOptions("cpu", models=["patnet_t0"], out=tmp_path / "f" / "b.md"))


def test_arch_is_one_file_measured_instead_of_models(tmp_path):
    arch = tmp_path / "best.yaml"
    arch.write_text("embed_dim: 16\n")
    opts = BenchOptions("cpu", arch=arch)
    assert opts.arch == str(arch) and opts.models == (str(arch),)
    assert opts.replace(resolution=64).models == (str(arch),)  # made again from its own fields
    with pytest.raises(BenchOptionsError, match="give --arch FILE or --models, not both"):
        BenchOptions("cpu", arch=arch, models="patnet_t0")
    with pytest.raises(BenchOptionsError, match="no such file; pass a search's best.yaml"):
        BenchOptions("cpu", arch=tmp_path / "nope.yaml")


def test_rounds_time_each_group_again_and_report_the_median_and_range(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import patsearch.profiler.bench as bench

    arch = tmp_path / "searched.yaml"
    arch.write_text("embed_dim: 16\ndepths: [1, 1, 1, 1]\n")
    medians = iter([[10.0, 20.0], [14.0, 21.0], [11.0, 26.0]])  # three rounds of one group of two models
    calls = []

    def fake_time_chunk(prepared, **_):
        calls.append(len(prepared))
        return [SimpleNamespace(median_ms=ms, spread=0.01 * ms) for ms in next(medians)]

    monkeypatch.setattr(bench, "_time_chunk", fake_time_chunk)
    result = profiler.build_bench(BenchOptions("cpu", models=["patnet_t0", str(arch)], forms=["fused"],
                                               resolution=64, rounds=3, progress=False, command="pytest"))
    assert calls == [2, 2, 2]  # the group, timed three times over
    t0, searched = result.rows
    assert (t0.value, searched.value) == (11.0, 21.0)  # the median of the rounds
    assert t0.rounds_range_pct == pytest.approx(100 * 4 / 11, abs=0.01)
    assert searched.rounds_range_pct == pytest.approx(100 * 6 / 21, abs=0.01)
    assert (t0.family, searched.family) == ("patnet", "arch file")
    assert t0.spread_pct == pytest.approx(11.0)  # the median round's p10-p90 spread
    md = result.to_markdown()
    assert "| range over 3 rounds |" in md and f"| {searched.rounds_range_pct:.1f}% |" in md
    assert result.provenance["rounds"] == 3


def test_one_round_adds_no_range_column():
    result = _fake_result()
    assert "range over" not in result.to_markdown() and result.rows[0].rounds_range_pct is None

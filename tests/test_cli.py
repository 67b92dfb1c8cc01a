"""The CLI front door for the model family: tables, errors as one line with a non-zero exit."""
import json
import subprocess
import sys

import pytest


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "patsearch", *args], capture_output=True, text=True, timeout=300)


def test_info_prints_counts_and_stages():
    result = run_cli("info", "--arch", "patnet_t0", "--resolution", "224")
    assert result.returncode == 0, result.stderr
    assert "4,292,072" in result.stdout and "0.252G" in result.stdout
    assert "stage4" in result.stdout and "pat_sf" in result.stdout and "thop" in result.stdout


@pytest.mark.parametrize("args, message", [
    (("info", "--arch", "patnet_xxl"), "unknown architecture 'patnet_xxl'; known: patnet_t0"),
    (("info", "--arch", "patnet_t0", "--resolution", "100"), "must be a multiple of 32"),
    (("export", "--arch", "patnet_t0", "--onnx", "out.txt"), "should end in .onnx"),
    (("profile", "--device", "cpu", "--tf32"), "--tf32 is a GPU setting (TensorFloat-32 tensor cores); cpu is a CPU"),
    (("bench", "--device", "cpu", "--tf32"), "use --no-tf32"),
    (("search", "--latency-budget", "35ms", "--rewrite"), "--rewrite goes with --show STUDY"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    result = subprocess.run([sys.executable, "-m", "patsearch", *args], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_export_writes_an_onnx_file(tmp_path):
    out = tmp_path / "t0.onnx"
    result = run_cli("export", "--arch", "patnet_t0", "--onnx", str(out), "--resolution", "128")
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 1_000_000


def test_profile_refit_reproduces_a_shipped_fidelity_report_without_measuring(tmp_path):
    import json
    import shutil

    from patsearch.resources import bundled_dir

    shipped = bundled_dir("profiles") / "patnet-wide" / "h100-b256-bfloat16-cl-fused.json"  # the default space's
    copy = tmp_path / shipped.name
    shutil.copy(shipped, copy)
    before = json.loads(shipped.read_text())["fidelity"]
    result = run_cli("profile", "--device", "h100", "--out", str(copy), "--refit", "--validate",
                     str(before["n_evaluation"]), "--calibrate", str(before["n_calibration"]), "--seed",
                     str(before["seed"]))
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout.splitlines()[-1])
    after = json.loads(copy.read_text())
    assert printed["calibrated"] == after["fidelity"]["calibrated"]
    assert after["fidelity"]["calibrated"]["mape"] == pytest.approx(before["calibrated"]["mape"], rel=1e-9)
    assert (tmp_path / f"{copy.stem}.fidelity.png").stat().st_size > 0
    assert after["entries"] == json.loads(shipped.read_text())["entries"]  # nothing measured


def test_profile_refit_partial_scores_a_validation_cut_short(tmp_path):
    """A lease ended mid-validation: --refit refuses and names --partial; --refit --partial scores the rest and
    lists what is missing; --partial alone is a one-line error."""
    import json

    from patsearch.profiler import load_profile
    from patsearch.profiler.validate import split_samples
    from patsearch.resources import bundled_dir
    from patsearch.space import load_space

    shipped = bundled_dir("profiles") / "patnet-wide" / "h100-b256-bfloat16-cl-fused.json"  # the default space's
    fidelity = json.loads(shipped.read_text())["fidelity"]
    sizes = ["--validate", str(fidelity["n_evaluation"]), "--calibrate", str(fidelity["n_calibration"]),
             "--seed", str(fidelity["seed"])]
    items = split_samples(load_space(None), fidelity["n_calibration"], fidelity["n_evaluation"], fidelity["seed"])
    gone = [items[-1][0], items[-2][0]]  # the last two held-out networks were never measured
    data = json.loads(shipped.read_text())
    for key in gone:
        del data["networks"][key]
    copy = tmp_path / shipped.name
    copy.write_text(json.dumps(data))
    before = copy.read_bytes()

    refused = run_cli("profile", "--device", "h100", "--out", str(copy), "--refit", *sizes)
    assert refused.returncode == 2 and "lacks 2 of the" in refused.stderr and "add --partial" in refused.stderr
    assert copy.read_bytes() == before  # nothing written

    scored = run_cli("profile", "--device", "h100", "--out", str(copy), "--refit", "--partial", *sizes)
    assert scored.returncode == 0, scored.stderr
    assert "2 not measured, scored over the rest" in scored.stdout
    report = load_profile(copy, check=False).fidelity
    assert sorted(report["missing_networks"]) == sorted(gone)
    assert report["calibrated"]["n"] == fidelity["n_evaluation"] - 2

    alone = run_cli("profile", "--device", "h100", "--out", str(copy), "--partial")
    assert alone.returncode == 2 and alone.stderr.strip() == ("error: --partial goes with --refit (scoring a "
                                                              "validation that was cut short)")


def test_profile_refit_needs_the_validation_sizes(tmp_path):
    result = run_cli("profile", "--device", "h100", "--refit")
    assert result.returncode == 2 and "--refit needs --validate N" in result.stderr


def test_bench_arch_records_the_measurement_in_a_search_best_yaml(tmp_path):
    import yaml

    arch = {"embed_dim": 16, "depths": [1, 1, 1, 1], "mixers": ["pconv", "pat_ch", "pat_ch", "pat_sf"],
            "num_classes": 10, "head_width": 64, "name": "tiny"}
    best = tmp_path / "best.yaml"
    best.write_text(yaml.safe_dump({"arch": arch, "search": {"study": "s", "trial": 3,
                                                             "predicted": {"cpu:latency_ms": 1.0}}}))
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump(arch))
    for path in (best, plain):
        result = run_cli("bench", "--device", "cpu", "--arch", str(path), "--forms", "fused", "--resolution", "64",
                         "--threads", "1")
        assert result.returncode == 0, result.stderr
    measured = yaml.safe_load(best.read_text())["search"]["measured"]
    [(key, entry)] = measured.items()
    assert key.startswith("cpu (") and entry["metric"] == "latency_ms" and entry["fused"] > 0
    assert yaml.safe_load(best.read_text())["search"]["predicted"] == {"cpu:latency_ms": 1.0}  # kept beside it
    assert "search" not in yaml.safe_load(plain.read_text())  # a plain architecture file is left alone
    bad = run_cli("bench", "--device", "cpu", "--arch", str(tmp_path / "nope.yaml"))
    assert bad.returncode == 2 and "no such file" in bad.stderr and "Traceback" not in bad.stderr


def test_version_prints_the_version_and_the_checkouts_commit():
    from patsearch.version import __version__, describe

    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [describe()] and result.stdout.startswith(f"patsearch {__version__}")


def _train_tiny(tmp_path, monkeypatch, capsys, *global_options: str) -> list[str]:
    """`patsearch [OPTIONS] train` of one step at 32 px, in this process (a fresh interpreter costs a minute on a
    busy 2-core host); the result must be alone on stdout; returns the lines on stderr."""
    import cli

    monkeypatch.setattr(sys, "argv", ["patsearch", *global_options, "train", "--arch", "patnet_t0", "--resolution",
                                      "32", "--synthetic-train", "16", "--synthetic-val", "8", "--batch-size", "8",
                                      "--max-steps", "1", "--epochs", "1", "--device", "cpu", "--workers", "0",
                                      "--out", str(tmp_path / "run")])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    captured = capsys.readouterr()
    assert exc.value.code == 0, captured.err
    assert json.loads(captured.out)["out_dir"] == str(tmp_path / "run")
    return captured.err.splitlines()


def test_notes_go_to_stderr_quiet_hides_them_and_verbose_adds_debug_lines(tmp_path, monkeypatch, capsys,
                                                                           single_thread):
    import logging

    handlers = list(logging.getLogger("patsearch").handlers)
    default = _train_tiny(tmp_path, monkeypatch, capsys)
    assert any(line.startswith("training patnet_t0 with recipe") for line in default), default
    assert not any(line.startswith("debug: ") for line in default)
    import torch

    from patsearch import __version__

    saved = torch.load(tmp_path / "run" / "latest.pt", map_location="cpu", weights_only=True)
    assert saved["run"]["patsearch"] == __version__  # the run folder says which patsearch trained it
    assert _train_tiny(tmp_path / "q", monkeypatch, capsys, "--quiet") == []
    verbose = _train_tiny(tmp_path / "v", monkeypatch, capsys, "--verbose")
    assert any(line.startswith("debug: patsearch.cli: patsearch ") for line in verbose), verbose
    assert any(line.startswith("debug: patsearch.train.loop: run settings: {") for line in verbose)  # the library's
    assert any(line.startswith("training patnet_t0 with recipe") for line in verbose)
    assert logging.getLogger("patsearch").handlers == handlers  # each command removed the handler it added


def test_quiet_and_verbose_together_are_one_line_and_exit_2():
    result = run_cli("--quiet", "--verbose", "models")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == "error: --quiet and --verbose contradict each other; pass one of them"


@pytest.mark.parametrize("command, most_lines", [("search", 140), ("proxy-check", 125)])
def test_long_commands_group_their_options_into_help_panels(command, most_lines):
    import os

    import typer.main

    import cli

    params = typer.main.get_command(cli.app).commands[command].params
    loose = [p.name for p in params if p.name != "help" and not getattr(p, "rich_help_panel", None)]
    assert loose == [], f"{command} options outside a help panel: {loose}"
    result = subprocess.run([sys.executable, "-m", "patsearch", command, "--help"], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    panels = {getattr(p, "rich_help_panel", None) for p in params} - {None}
    assert all(f"─ {panel} ─" in result.stdout for panel in panels), result.stdout
    assert len(result.stdout.splitlines()) <= most_lines, f"{command} --help: {len(result.stdout.splitlines())} lines"


@pytest.mark.parametrize("command, field", [("search", "trails"), ("proxy-check", "nn")])
def test_a_bad_field_in_an_options_file_is_one_line_and_exit_2(tmp_path, command, field):
    options = tmp_path / "options.yaml"
    options.write_text(f"{field}: 5\n")
    result = subprocess.run([sys.executable, "-m", "patsearch", command, "--options", str(options)],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {options}: unknown field(s) {field}"), result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["options.yaml"]  # nothing written

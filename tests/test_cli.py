"""The CLI front door for the model family: tables, errors as one line with a non-zero exit."""
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

    shipped = bundled_dir("profiles") / "h100-b256-bfloat16-cl-fused.json"
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


def test_profile_refit_needs_the_validation_sizes(tmp_path):
    result = run_cli("profile", "--device", "h100", "--refit")
    assert result.returncode == 2 and "--refit needs --validate N" in result.stderr

"""The train, eval and export commands as a user runs them: bad input is one line, rc 2, nothing left behind."""
import subprocess
import sys

import pytest


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "patsearch", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("args, message", [
    (("export", "--arch", "patnet_t0", "--onnx", "/proc/x.onnx"), "cannot write --onnx /proc/x.onnx: /proc: "),
    (("train", "--arch", "patnet_t0", "--out", "f/run", "--device", "cpu"),
     "cannot write --out f/run: f is a file, not a folder"),
    (("search", "--latency-budget", "35ms", "--runs-dir", "f/runs"),
     "cannot write --runs-dir f/runs: f is a file, not a folder"),
])
def test_unwritable_outputs_are_one_line_naming_the_path(tmp_path, args, message):
    (tmp_path / "f").write_text("a file where a folder is needed")
    line = one_error_line(run_cli(*args, cwd=tmp_path))
    assert message in line
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


@pytest.mark.parametrize("command, options", [
    ("train", ("--seed", "--progress")),
    ("eval", ("--batch-size", "--workers")),
    ("export", ("--checkpoint", "--opset")),
])
def test_every_option_of_train_eval_and_export_has_a_description(command, options):
    import typer

    import cli

    group = typer.main.get_command(cli.app)
    params = {opt: param for param in group.commands[command].params for opt in getattr(param, "opts", [])}
    for name in options:
        assert (params[name].help or "").strip(), f"{command} {name} has no help text"
    missing = [param.name for param in group.commands[command].params
               if getattr(param, "opts", None) and not (param.help or "").strip()]
    assert missing == []


def test_a_corrupt_image_read_by_a_loader_process_is_one_line_and_no_run_folder(tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("a", "b"):
            folder = tmp_path / "data" / split / name
            folder.mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (tmp_path / "data" / "train" / "b" / "zz_bad.png").write_bytes(rng.bytes(3000))
    result = run_cli("train", "--arch", "patnet_t0", "--data", "data", "--cache", "none", "--workers", "1",
                     "--device", "cpu", "--epochs", "1", "--batch-size", "4", "--resolution", "32", "--out", "runs/t0",
                     cwd=tmp_path)
    # The image is read once the run has started, so the run's header line (progress, on stderr) comes first.
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 2 and lines[0].startswith("training patnet_t0 "), result.stderr
    line = lines[1]
    assert line.startswith("error: corrupt or unreadable image data/train/b/zz_bad.png")
    assert "Traceback" not in result.stderr and "worker" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_eval_of_a_file_that_is_no_checkpoint_is_one_line_without_unsafe_advice(tmp_path):
    (tmp_path / "random.pt").write_bytes(bytes(range(256)) * 20)
    line = one_error_line(run_cli("eval", "--checkpoint", "random.pt", cwd=tmp_path))
    assert line.startswith("error: checkpoint random.pt is damaged or not a torch checkpoint")
    assert "weights_only" not in line

"""TrainOptions: YAML round trip, one-line validation errors naming the flag, and the CLI's flags over a file."""
import dataclasses
import json
import sys

import pytest
import yaml
from train_helpers import TINY_ARCH, write_tiny_arch

from patsearch.arch import resolve_arch
from patsearch.errors import UserError
from patsearch.train import Trainer, TrainOptions, TrainOptionsError


def test_yaml_round_trip_gives_equal_options(tmp_path):
    opts = TrainOptions(arch=dict(TINY_ARCH), recipe="proxy", data=tmp_path / "data", out_dir=tmp_path / "run",
                        epochs=3, batch_size=16, lr=2e-3, resolution=32, multi_scale="none", amp=False,
                        device="cpu", workers=0, synthetic=(32, 16), seed=7, resume="auto", max_steps=5,
                        progress=False, tensorboard=False)
    assert opts.data == str(tmp_path / "data")  # paths are kept as strings so that they dump to YAML
    path = tmp_path / "opts.yaml"
    path.write_text(opts.to_yaml())
    assert yaml.safe_load(path.read_text())["synthetic"] == [32, 16]
    again = TrainOptions.from_yaml(path)
    assert again == opts and again.synthetic == (32, 16)


def test_an_archconfig_is_written_as_its_fields():
    opts = TrainOptions(arch=resolve_arch(TINY_ARCH), batch_size=16)
    again = TrainOptions.from_dict(yaml.safe_load(opts.to_yaml()))
    assert resolve_arch(again.arch) == opts.arch


def test_options_are_frozen():
    opts = TrainOptions(arch="patnet_t0")
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.batch_size = 8  # type: ignore[misc]
    assert opts.replace(batch_size=8).batch_size == 8 and opts.batch_size == 256


@pytest.mark.parametrize("field, value, message", [
    ("batch_size", 0, "--batch-size must be a positive integer (the global batch), got 0"),
    ("batch_size", True, "--batch-size must be a positive integer (the global batch), got True"),
    ("epochs", 0, "--epochs must be a positive integer or unset, got 0"),
    ("lr", -1e-3, "--lr must be a positive number or unset, got -0.001"),
    ("resolution", 100, "--resolution must be a multiple of 32 (at least 32), e.g. 224, got 100"),
    ("multi_scale", "sometimes", "--multi-scale must be one of none, random, schedule, got 'sometimes'"),
    ("cache", "disk", "--cache must be one of auto, memory, none, got 'disk'"),
    ("synthetic", (0, 5), "--synthetic must be two positive integers (training and validation images), got (0, 5)"),
    ("workers", -1, "--workers must be a non-negative integer or unset, got -1"),
    ("checkpoint_every", -2, "--checkpoint-every must be a non-negative integer (0: save at epoch ends only), got -2"),
    ("max_steps", 0, "--max-steps must be a positive integer or unset, got 0"),
    ("eval_every", 0, "--eval-every must be a positive integer, got 0"),
    ("log_every", 0, "--log-every must be a positive integer, got 0"),
    ("compile", "yes", "--compile must be true or false, got 'yes'"),
    ("fused_kernels", 1, "--fused-kernels must be true or false, got 1"),
    ("compile_options", {"combo_kernels": True},
     "--compile-option combo_kernels needs --compile (it configures torch.compile); add --compile or drop the option"),
])
def test_bad_values_are_one_line_errors_naming_the_flag(field, value, message):
    with pytest.raises(TrainOptionsError) as exc:
        TrainOptions(arch="patnet_t0", **{field: value})
    assert str(exc.value) == message
    assert isinstance(exc.value, UserError)


@pytest.mark.parametrize("options, message", [
    ({"no_such_option": 1}, "--compile-option: torch._inductor.config has no option 'no_such_option'"),
    ({"combo_kernels": "yes"}, "--compile-option: compile option combo_kernels takes true or false, got 'yes'"),
    ({"max_fusion_size": True}, "--compile-option: compile option max_fusion_size takes a number, got True"),
    ({"triton.no_such": 1}, "--compile-option: torch._inductor.config has no option 'triton.no_such'"),
    (["combo_kernels"], "--compile-option: compile options are a mapping of Inductor option names to values, got list"),
])
def test_compile_options_are_checked_against_inductor(options, message):
    with pytest.raises(TrainOptionsError) as exc:
        TrainOptions(arch="patnet_t0", compile=True, compile_options=options)
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value)


def test_compile_options_round_trip_and_reach_torch_compile(tmp_path, monkeypatch):
    opts = TrainOptions(arch=dict(TINY_ARCH), recipe="proxy", device="cpu", resolution=32, workers=0,
                        synthetic=(8, 4), batch_size=4, max_steps=1, epochs=1, progress=False, tensorboard=False,
                        compile=True, compile_options={"combo_kernels": True, "triton.max_tiles": 3})
    assert TrainOptions.from_dict(yaml.safe_load(opts.to_yaml())) == opts
    import torch

    seen = []

    def fake_compile(model, **kwargs):
        seen.append(kwargs.get("options"))
        return model  # the options' path is what is tested here; compiled training has its own tests

    monkeypatch.setattr(torch, "compile", fake_compile)
    Trainer(opts).fit()
    Trainer(opts.replace(compile_options={})).fit()
    assert seen == [{"combo_kernels": True, "triton.max_tiles": 3}, None]  # on the CPU, no CUDA defaults
    result = Trainer(opts).fit()  # the run's record (and its checkpoints) keep what it compiled with
    assert result["run"]["compile_options"] == {"combo_kernels": True, "triton.max_tiles": 3}


@pytest.mark.parametrize("text, message", [
    ("arch: patnet_t0\nbatch_size: 0\n", "--batch-size must be a positive integer"),
    ("arch: patnet_t0\nbatchsize: 16\n", "unknown field(s) batchsize; known fields: amp, arch,"),
    ("- arch\n", "expected a mapping of train options, got list"),
    ("arch: [unclosed\n", "not valid YAML"),
    ("batch_size: 16\n", "missing 1 required positional argument: 'arch'"),
    ("arch: patnet_t0\nout: a\nout_dir: b\n", "out and out_dir are the same option; give one of them"),
    ("arch: patnet_t0\nsynthetic: [8, 8]\nsynthetic_train: 8\n", "give synthetic or synthetic_train, not both"),
    ("arch: patnet_t0\nsynthetic_train: 0\n", "--synthetic must be two positive integers"),
])
def test_bad_files_name_the_file_and_the_problem(tmp_path, text, message):
    path = tmp_path / "opts.yaml"
    path.write_text(text)
    with pytest.raises(TrainOptionsError) as exc:
        TrainOptions.from_yaml(path)
    assert str(exc.value).startswith(str(path)) and message in str(exc.value) and "\n" not in str(exc.value)


def _options_file(tmp_path) -> "tuple":
    arch = write_tiny_arch(tmp_path)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"arch": str(arch), "recipe": "proxy", "device": "cpu", "resolution": 32,
                                    "workers": 0, "synthetic": [32, 16], "batch_size": 16, "epochs": 1,
                                    "seed": 3, "progress": False, "out_dir": str(tmp_path / "from-file")}))
    return arch, path


def _capture_fit(monkeypatch) -> list:
    seen = []

    def fake_fit(self):
        seen.append(self.opts)
        return {"is_main": True, "final": {}, "best_top1": None, "out_dir": self.opts.out_dir}

    monkeypatch.setattr(Trainer, "fit", fake_fit)
    return seen


def _main_ok() -> None:
    """``cli.main()`` for a command that should succeed (typer exits 0 through SystemExit)."""
    import cli

    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 0


def test_cli_flags_given_override_the_file_and_defaults_do_not(tmp_path, monkeypatch):
    _, path = _options_file(tmp_path)
    seen = _capture_fit(monkeypatch)
    monkeypatch.setattr(sys, "argv", ["patsearch", "train", "--options", str(path), "--batch-size", "8",
                                      "--synthetic-val", "8", "--compile", "--fused-kernels"])
    _main_ok()
    (opts,) = seen
    assert opts.batch_size == 8 and opts.compile is True          # given on the command line
    assert opts.fused_kernels is True
    assert opts.synthetic == (32, 8)                               # one size given, the other from the file
    assert opts.seed == 3 and opts.epochs == 1 and opts.recipe == "proxy"  # the CLI's defaults do not override
    assert opts.out_dir == str(tmp_path / "from-file")
    assert opts.tensor_cache_dir == str(tmp_path / ".proxy-data")


def test_cli_without_a_file_maps_every_flag(tmp_path, monkeypatch):
    arch = write_tiny_arch(tmp_path)
    seen = _capture_fit(monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["patsearch", "train", "--arch", str(arch), "--device", "cpu",
                                      "--synthetic-train", "64", "--max-steps", "3", "--no-channels-last"])
    _main_ok()
    (opts,) = seen
    assert (opts.arch, opts.device, opts.synthetic, opts.max_steps) == (str(arch), "cpu", (64, 2000), 3)
    assert opts.channels_last is False and opts.batch_size == 256 and opts.recipe == "auto" and opts.seed == 0
    assert opts.out_dir == "runs/tiny"  # the CLI always writes a run folder


def test_cli_options_file_trains_and_writes_its_run_folder(tmp_path, monkeypatch, capsys):
    _, path = _options_file(tmp_path)
    out = tmp_path / "flag-out"
    monkeypatch.setattr(sys, "argv", ["patsearch", "train", "--options", str(path), "--out", str(out)])
    _main_ok()
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["out_dir"] == str(out) and printed["final"]["epoch"] == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run"]["seed"] == 3 and metrics["run"]["global_batch"] == 16 and len(metrics["history"]) == 1
    assert not (tmp_path / "from-file").exists()


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0"], "--batch-size must be a positive integer (the global batch), got 0"),
    (["--compile", "--compile-option", "combo_kernels"],
     "--compile-option: a compile option is KEY=VALUE, got 'combo_kernels' (e.g. combo_kernels=true)"),
    (["--compile-option", "combo_kernels=true"], "--compile-option combo_kernels needs --compile"),
    ([], "--arch is required (or an --options file that sets arch)"),
])
def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys, args, message):
    import cli

    monkeypatch.setattr(sys, "argv", ["patsearch", "train", "--out", str(tmp_path / "run"), *args]
                        + (["--arch", "patnet_t0"] if args else []))
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 2 and capsys.readouterr().err.strip().startswith(f"error: {message}")
    assert not (tmp_path / "run").exists()


def test_cli_bad_options_file_is_one_line(tmp_path, monkeypatch, capsys):
    import cli

    path = tmp_path / "run.yaml"
    path.write_text("arch: patnet_t0\nbatch_size: 0\n")
    monkeypatch.setattr(sys, "argv", ["patsearch", "train", "--options", str(path)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err == f"error: {path}: --batch-size must be a positive integer (the global " \
                                          "batch), got 0"


def test_options_files_take_the_flag_names_too(tmp_path):
    """README: the file's fields are named like the flags. The flag names (and their dashed spelling) read as the
    fields they set; the field names keep working."""
    path = tmp_path / "run.yaml"
    path.write_text("arch: patnet_t0\nsynthetic_train: 64\nout: runs/x\nbatch-size: 32\ncompile: true\n"
                    "compile_option: [combo_kernels=false]\n")
    opts = TrainOptions.from_yaml(path)
    assert opts.synthetic == (64, 2000) and opts.out_dir == "runs/x" and opts.batch_size == 32
    assert opts.compile_options == {"combo_kernels": False}
    path.write_text("arch: patnet_t0\nsynthetic_val: 16\nsynthetic_train: 8\n")
    assert TrainOptions.from_yaml(path, batch_size=8).synthetic == (8, 16)
    path.write_text("arch: patnet_t0\nsynthetic: [8, 16]\nout_dir: runs/y\n")
    assert TrainOptions.from_yaml(path).synthetic == (8, 16) and TrainOptions.from_yaml(path).out_dir == "runs/y"


def test_cli_reads_an_options_file_with_flag_names(tmp_path, monkeypatch):
    arch = write_tiny_arch(tmp_path)
    path = tmp_path / "opts.yaml"
    path.write_text(yaml.safe_dump({"arch": str(arch), "synthetic_train": 48, "out": str(tmp_path / "o")}))
    seen = _capture_fit(monkeypatch)
    monkeypatch.setattr(sys, "argv", ["patsearch", "train", "--options", str(path), "--synthetic-val", "8"])
    _main_ok()
    (opts,) = seen
    assert opts.synthetic == (48, 8) and opts.out_dir == str(tmp_path / "o")

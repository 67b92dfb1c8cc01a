"""--proxy-device and --gpus: parsing, auto's fallback without a GPU, one-line errors before any work."""
import sys

import pytest
import torch

from patsearch.errors import UserError
from patsearch.search.proxy import ProxySettings, parse_gpus


def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def gpus(monkeypatch, n):
    # resolving a device only asks how many GPUs there are; nothing touches CUDA
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)


def test_default_is_auto_and_falls_back_to_the_cpu(monkeypatch):
    no_gpu(monkeypatch)
    settings = ProxySettings()
    assert settings.device == "auto"
    assert settings.torch_device() == torch.device("cpu")
    assert settings.batch_for(settings.torch_device().type) == 64


def test_auto_picks_the_gpu_when_there_is_one(monkeypatch):
    gpus(monkeypatch, 2)
    assert ProxySettings().torch_device() == torch.device("cuda", 0)
    assert ProxySettings(device="cuda:1").torch_device() == torch.device("cuda", 1)
    assert ProxySettings().batch_for("cuda") == 512 and ProxySettings(batch_size=96).batch_for("cuda") == 96
    with pytest.raises(UserError, match=r"--proxy-device cuda:2: this machine shows 2 GPU\(s\)"):
        ProxySettings(device="cuda:2").torch_device()


def test_epochs_and_resolution_default_to_the_devices_measured_proxy(monkeypatch):
    """The GPU default is the proxy the fidelity report ranked best (5 epochs, 64 px); a CPU keeps 4 at 32 px;
    given values and an explicit CPU device on a GPU machine win."""
    gpus(monkeypatch, 1)
    assert (ProxySettings.for_device().epochs, ProxySettings.for_device().resolution) == (5, 64)
    cpu = ProxySettings.for_device(device="cpu")
    assert (cpu.epochs, cpu.resolution, cpu.device) == (4, 32, "cpu")
    given = ProxySettings.for_device(epochs=2, resolution=96, data=None)
    assert (given.epochs, given.resolution) == (2, 96)
    no_gpu(monkeypatch)
    assert (ProxySettings.for_device().epochs, ProxySettings.for_device().resolution) == (4, 32)
    with pytest.raises(UserError, match=r"^--proxy-device cuda: no CUDA GPU"):
        ProxySettings.for_device(device="cuda")
    with pytest.raises(UserError, match=r"^--proxy-epochs must be a positive integer, got 0$"):
        ProxySettings.for_device(epochs=0)


def test_the_proxy_is_a_recipe_per_device_and_yields_to_explicit_settings(monkeypatch):
    """The GPU proxy recipe states the measured lr at its batch (2e-3 at 512); the CPU recipe 2.5e-3 at 64; an
    explicit lr wins, and an explicit batch scales the recipe's lr by the square root of the ratio."""
    from patsearch.train.recipe import load_recipe

    gpu, cpu = load_recipe("proxy"), load_recipe("proxy_cpu")
    assert (gpu.epochs, gpu.resolution, gpu.batch_size, gpu.lr) == (5, 64, 512, 2e-3)
    assert (cpu.epochs, cpu.resolution, cpu.batch_size, cpu.lr) == (4, 32, 64, 2.5e-3)
    assert ProxySettings().recipe_for("cuda") == "proxy" and ProxySettings().recipe_for("cpu") == "proxy_cpu"
    assert ProxySettings(recipe="patnet_t0").recipe_for("cuda") == "patnet_t0"
    assert gpu.scaled_lr(ProxySettings().batch_for("cuda")) == 2e-3
    assert cpu.scaled_lr(ProxySettings().batch_for("cpu")) == 2.5e-3
    assert ProxySettings(lr=1e-3).lr_for("cuda") == 1e-3 and ProxySettings().lr_for("cuda") is None
    assert gpu.scaled_lr(ProxySettings(batch_size=2048).batch_for("cuda")) == pytest.approx(4e-3)
    no_gpu(monkeypatch)
    assert ProxySettings.for_device().recipe == "proxy_cpu"


def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    no_gpu(monkeypatch)
    with pytest.raises(UserError, match=r"^--proxy-device cuda: no CUDA GPU is visible to PyTorch on this machine; "
                                        r"use --proxy-device auto .* or --proxy-device cpu$"):
        ProxySettings(device="cuda").torch_device()


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "", "tpu"])
def test_bad_device_names(bad):
    with pytest.raises(UserError, match=r"--proxy-device must be auto, cpu, cuda or cuda:N"):
        ProxySettings(device=bad)


def test_device_names_are_normalised():
    assert ProxySettings(device=" CPU ").device == "cpu" and ProxySettings(device="CUDA:3").device == "cuda:3"


@pytest.mark.parametrize("spec, available, expected", [
    (None, 0, None), ("", 4, None), ("all", 4, [0, 1, 2, 3]), ("2", 4, [0, 1]), ("1,3", 4, [1, 3]),
    ("1", 1, [0]), (" 0, 2 ", 3, [0, 2]),
])
def test_parse_gpus(spec, available, expected):
    assert parse_gpus(spec, available) == expected


@pytest.mark.parametrize("spec, available, message", [
    ("all", 0, "no CUDA GPU is visible"), ("2", 0, "no CUDA GPU is visible"), ("5", 4, "shows 4 GPU"),
    ("0", 4, "shows 4 GPU"), ("0,0", 4, "distinct indices from 0 to 3"), ("1,7", 4, "distinct indices"),
    ("a,b", 4, "--gpus must be all, a count"),
])
def test_parse_gpus_errors(spec, available, message):
    with pytest.raises(UserError, match=message):
        parse_gpus(spec, available)


def run_search_cli(monkeypatch, capsys, tmp_path, *args):
    import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["patsearch", "search", "--latency-budget", "35ms", "--runs-dir",
                                      str(tmp_path / "runs"), *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    return exc.value.code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("args, message", [
    (["--proxy-device", "cuda"], "error: --proxy-device cuda: no CUDA GPU is visible to PyTorch"),
    (["--proxy-device", "gpu"], "error: --proxy-device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    (["--gpus", "all"], "error: --gpus all: no CUDA GPU is visible on this machine; drop --gpus"),
    (["--proxy-holdout", "5"], "error: --proxy-holdout needs --data"),
    (["--proxy-lr", "0"], "error: --proxy-lr must be a positive number, got 0.0"),
    (["--confirm-top", "-2"], "error: --confirm-top must be a non-negative integer (0: off), got -2"),
    (["--confirm-top", "2", "--confirm-seeds", "1"], "error: --confirm-seeds must be an integer of at least 2"),
    (["--confirm-top", "2", "--objective", "pareto"], "error: --confirm-top ranks one score by its mean over seeds"),
])
def test_cli_refuses_before_any_work(monkeypatch, capsys, tmp_path, args, message):
    no_gpu(monkeypatch)
    code, err = run_search_cli(monkeypatch, capsys, tmp_path, *args)
    assert code == 2 and err.startswith(message) and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()


def test_gpus_with_a_cpu_proxy_device_is_refused(monkeypatch, capsys, tmp_path):
    gpus(monkeypatch, 2)
    code, err = run_search_cli(monkeypatch, capsys, tmp_path, "--gpus", "all", "--proxy-device", "cpu")
    assert code == 2 and "--gpus all trains on GPUs but --proxy-device is cpu" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_one_worker_process_per_device_fills_one_study(monkeypatch, tmp_path, tiny_profile, caplog):
    """The --gpus plumbing (spawned workers rebuilding the search from the options, exact trial count, the parent
    reporting their trials), run on the CPU: each worker gets device None instead of a GPU index."""
    import logging

    from patsearch.search import api

    caplog.set_level(logging.INFO, logger="patsearch")

    monkeypatch.setattr(api, "worker_gpus", lambda opts: [None, None])  # the name run_search calls
    proxy = ProxySettings(epochs=1, resolution=32, batch_size=16, train_samples=64, val_samples=32, device="cpu",
                          subset_dir=str(tmp_path / "proxy-data"))
    opts = api.SearchOptions(latency_budgets=[f"{tiny_profile}=5ms"], space="tiny", trials=3, proxy=proxy,
                             runs_dir=str(tmp_path / "runs"), count_costs=False, plots=False, baselines="none",
                             allow_stale_profile=True, heartbeat_interval=5)
    from rich.console import Console

    out = api.run_search(opts, console=Console(width=200))
    from optuna.trial import TrialState

    trials = out.study.get_trials(deepcopy=False)
    trained = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("feasible", True)]
    assert len(trained) == 3 and not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.FAIL)]
    assert all(0.0 <= t.user_attrs["proxy_top1"] <= 1.0 for t in trained)
    assert len({tuple(sorted(t.params.items())) for t in trained}) == 3  # the workers did not duplicate proposals
    assert sum(line.startswith("trial ") for line in caplog.messages) == len(trials) == out.ran
    # the parent tells how far the plan is (3 candidates x 1 epoch) after each trial its workers finish
    reports = [line for line in caplog.messages if line.startswith("trial ") and "complete" in line]
    assert reports[-1].endswith("; 3/3 planned epochs") and all("planned epochs" in line for line in reports)
    assert [p.suffix for p in (tmp_path / "proxy-data").iterdir() if p.suffix == ".pt"] == [".pt"]  # one decode


def test_workers_per_gpu_repeats_each_gpu(monkeypatch):
    from patsearch.search.gpu_workers import where_proxies_train, worker_gpus
    from patsearch.search.options import SearchOptions

    gpus(monkeypatch, 2)
    opts = SearchOptions(gpus="all", workers_per_gpu=3, proxy=ProxySettings(device="auto"))
    assert worker_gpus(opts) == [0, 0, 0, 1, 1, 1]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    where = where_proxies_train
    assert where(opts, [0, 0, 0, 1, 1, 1], None) == "2 GPU(s) (cuda:0, cuda:1), 3 worker process(es) each"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # the summary line names the GPU the workers will use
    assert where(opts, [0, 0], None) == "1 GPU(s) (cuda:0 = CUDA_VISIBLE_DEVICES 1), 2 worker process(es) each"


@pytest.mark.parametrize("args, message", [
    (["--workers-per-gpu", "2"], "error: --workers-per-gpu needs --gpus"),
    (["--gpus", "all", "--workers-per-gpu", "0"], "error: --workers-per-gpu must be a positive integer, got 0"),
])
def test_workers_per_gpu_errors(monkeypatch, capsys, tmp_path, args, message):
    gpus(monkeypatch, 1)
    code, err = run_search_cli(monkeypatch, capsys, tmp_path, *args)
    assert code == 2 and err.startswith(message) and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()


def test_library_options_take_the_devices_default_proxy_too(monkeypatch):
    from patsearch.proxycheck import FidelityOptions
    from patsearch.search.api import SearchOptions

    gpus(monkeypatch, 1)
    assert (SearchOptions().proxy.epochs, SearchOptions().proxy.resolution) == (5, 64)
    assert (FidelityOptions().proxy.epochs, FidelityOptions().proxy.resolution) == (5, 64)
    no_gpu(monkeypatch)
    assert (SearchOptions().proxy.epochs, SearchOptions().proxy.resolution) == (4, 32)

"""Test helpers: tiny lookup tables built with the profiler's own API, and stand-in proxy trainers."""
from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

from patsearch.arch import ArchConfig


def cost_ms(spec, chw) -> float:
    """A made-up but monotone cost: proportional to the layer's input volume and width (ms, batch 1)."""
    c, h, w = chw
    widen = spec.mlp_ratio if spec.kind == "block" else 1.0
    attn = 1.6 if spec.mixer in ("pat_sf", "pat_sf_full") else 1.0
    return 1e-5 * c * h * w * (1 + widen) * attn + 0.01


def make_profile(path: Path, space, *, device: str = "cpu", scale: float = 1.0) -> Path:
    """A profile file for every layer of ``space`` whose entries follow :func:`cost_ms` times ``scale``."""
    from patsearch.profiler import Profile, get_device

    dev = get_device(device)
    profile = Profile.new(dev, dev.protocol, command="test fixture")
    for key, (spec, chw) in space.layer_inputs().items():
        profile.entries[key] = {"ms": scale * cost_ms(spec, chw)}
    return profile.save(path)


def variant_space(tmp_path: Path):
    """A small space that contains PATNet-T0 (so that it can be enqueued as a baseline by its parameters) and a
    CPU table for it: ``(space YAML path, space, table path)``."""
    import yaml

    from patsearch.space import load_space

    path = tmp_path / "t0space.yaml"
    path.write_text(yaml.safe_dump({
        "name": "t0space", "embed_dim": [16, 32], "depths": [[1], [1, 2], [2, 6], [2, 4]],
        "partial_ratio": [0.25], "mlp_ratio": [2], "mixers": [["pconv", "pat_ch"]] * 3 + [["pat_ch", "pat_sf"]],
        "spatial": ["partial"], "act": ["gelu"], "num_heads": [4], "resolution": [64],
        "fixed": {"num_classes": 1000, "head_width": 1280}}))
    space = load_space(path)
    return path, space, make_profile(tmp_path / "cpu-t0space.json", space)


def fake_proxy(score=None, epochs: int = 2, calls: list | None = None):
    """A stand-in for proxy training: top-1 grows with width and depth (deterministic), reported per epoch."""

    def default_score(arch: ArchConfig) -> float:
        return min(0.95, 0.2 + 0.02 * math.log2(arch.embed_dim) * sum(arch.depths) / 4)

    score = score or default_score

    def run_proxy(arch: ArchConfig, on_epoch_end=None) -> float:
        final = score(arch)
        if calls is not None:
            calls.append(arch)
        for epoch in range(1, epochs + 1):
            if on_epoch_end is not None:
                on_epoch_end(epoch, final * epoch / epochs)
        return final

    run_proxy.num_classes = 10
    return run_proxy


HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORKER = HERE / "search_worker.py"
PG_PASSWORD = "s3cret-Pw_42"
# Seconds between a running trial's heartbeats in tests (stale after 3x): long enough that a live worker starved
# of CPU on a loaded 2-core machine still beats in time, short enough that a killed worker's trial is retried soon.
HEARTBEAT_S = 5
PG_USER = "nas"
PG_DB = "nas"


def start_worker(storage: str, profile: Path, runs: Path, study: str, trials: int, **kw) -> subprocess.Popen:
    """A search worker process (search_worker.py): the real search entry point with a stand-in trainer."""
    args = [sys.executable, str(WORKER), "--storage", storage, "--profile", str(profile), "--runs-dir", str(runs),
            "--study", study, "--trials", str(trials), "--budget", kw.pop("budget", "5ms")]
    for key, value in kw.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def wait_for_marker(proc: subprocess.Popen, marker: Path, what: str, timeout: float = 180) -> None:
    """Wait until a worker process creates ``marker`` (its stand-in trainer does, then blocks); fail at once if the
    process ends first or ``what`` has not happened within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert proc.poll() is None, f"the worker ended before {what}: {proc.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.05)


def fake_runner_factory(settings):
    """A stand-in for ``make_proxy_runner(settings)`` (module-level: worker processes unpickle it).

    The score grows with width and depth; longer training (more epochs) adds a size-dependent gain, and the seed
    adds a small deterministic offset, so proxy and reference rank alike but not identically.
    """

    def run_proxy(arch: ArchConfig, on_epoch_end=None) -> float:
        size = math.log2(arch.embed_dim) * sum(arch.depths)
        final = min(0.95, 0.1 + 0.01 * size * (1 + 0.02 * settings.epochs) + 0.004 * (settings.seed % 3))
        for epoch in range(settings.epochs):  # a curve rising linearly to the final score
            if on_epoch_end is not None:
                on_epoch_end(epoch, final * (epoch + 1) / settings.epochs)
        return final

    run_proxy.num_classes = 10
    return run_proxy


def cheap_free_scores(arch: ArchConfig, resolution: int) -> dict:
    """A stand-in for the free scores (fvcore and synflow take seconds per network): sizes from the description."""
    size = arch.embed_dim * sum(arch.depths)
    return {"params": size, "flops": size * resolution, "synflow": float(size), "synflow_overflow": False}


def rendezvous_runner_factory(settings):
    """:func:`fake_runner_factory` whose every job first waits until two processes have each started one (a marker
    file per process in ``$PATSEARCH_TEST_MARKERS``): a job list shared by two workers finishes only if both work."""
    import os
    import time

    inner = fake_runner_factory(settings)

    def run_proxy(arch: ArchConfig, on_epoch_end=None) -> float:
        import multiprocessing

        if multiprocessing.current_process().daemon:  # the trainer's DataLoader workers could not start
            raise RuntimeError("the worker process is daemonic")
        folder = Path(os.environ["PATSEARCH_TEST_MARKERS"])
        (folder / str(os.getpid())).touch()
        deadline = time.monotonic() + 180
        while len(list(folder.iterdir())) < 2:
            if time.monotonic() > deadline:
                raise TimeoutError("no second worker process took a job")
            time.sleep(0.05)
        return inner(arch)

    run_proxy.num_classes = 10
    return run_proxy


def failing_runner_factory(settings):
    """A proxy trainer whose reference trainings (5+ epochs) crash: how a worker reports a broken job."""
    inner = fake_runner_factory(settings)

    def run_proxy(arch: ArchConfig, on_epoch_end=None) -> float:
        if settings.epochs >= 5:
            raise ValueError("boom\nsecond line")
        return inner(arch)

    run_proxy.num_classes = 10
    return run_proxy


def killed_mid_write_executor():
    """A job executor for :func:`patsearch.search.jobs.run_jobs` with two workers: job kind ``slow`` blocks inside
    an atomic write into ``$PATSEARCH_TEST_RECORDS`` (and says so with a marker), job kind ``bad`` waits for that
    marker and fails, so the coordinator terminates the other worker in the middle of its write."""
    import os
    import time

    from patsearch.io import atomic_open

    markers = Path(os.environ["PATSEARCH_TEST_MARKERS"])
    records = Path(os.environ["PATSEARCH_TEST_RECORDS"])

    def run(job):
        if job.kind == "slow":
            with atomic_open(records / "partial.json", "w") as fh:
                fh.write("{")
                (markers / "inside").touch()
                while True:  # until the coordinator terminates this worker
                    time.sleep(0.05)
        deadline = time.monotonic() + 180
        while not (markers / "inside").exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the other worker never started its write")
            time.sleep(0.02)
        raise ValueError("boom")

    return run


def load_unchecked(path):
    """A profile without the freshness check (test tables were built on no real hardware)."""
    from patsearch.profiler import load_profile

    return load_profile(path, check=False)


def tiny_search(tmp_path: Path, profile, budget: str, **kw):
    """A short search of the tiny space under one CPU latency budget, with a fake proxy unless ``proxy`` is given."""
    from patsearch.search.api import SearchOptions, run_search

    proxy = kw.pop("proxy", None) or fake_proxy()
    base = dict(latency_budgets=[f"{profile}={budget}"], space="tiny", trials=4, runs_dir=str(tmp_path / "runs"),
                count_costs=False, plots=False, baselines="none", heartbeat_interval=1, study_name="s",
                pruner="none")
    base.update(kw)
    return run_search(SearchOptions(**base), run_proxy=proxy, load_profile=load_unchecked)


def options_passed(monkeypatch, module, function: str, *args: str):
    """The options object `patsearch ARGS` hands to ``module.function`` (replaced: nothing runs)."""
    from typer.testing import CliRunner

    import cli

    seen: list = []
    monkeypatch.setattr(module, function, lambda opts, **kw: seen.append(opts))
    result = CliRunner().invoke(cli.app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return seen[0]

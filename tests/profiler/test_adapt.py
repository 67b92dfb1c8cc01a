"""Few-shot adaptation: known per-type factors are recovered, the search adapts by itself where no table fits,
and messages name a device that fits the host."""
import json
import warnings

import numpy as np
import pytest
from adapt_helpers import FACTORS, OFFSET_MS, OTHER_HARDWARE, FakeMeasure, make_base, true_ms

import patsearch.profiler.adapt as adapt_mod
from patsearch.arch import ArchConfig
from patsearch.profiler import PROFILES_DIR, devices, table
from patsearch.profiler.adapt import (
    adapt_profile,
    fit_type_scales,
    load_or_adapt,
    nearest_base,
)
from patsearch.profiler.devices import get_device
from patsearch.profiler.table import Profile, ProfileError, find_profile, load_profile


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """An empty stand-in for the shipped profiles/ folder."""
    folder = tmp_path / "shipped"
    folder.mkdir()
    monkeypatch.setattr(table, "PROFILES_DIR", folder)
    monkeypatch.setattr(adapt_mod, "PROFILES_DIR", folder)
    return folder


def test_ridge_fit_recovers_exact_scales_without_noise():
    rng = np.random.default_rng(1)
    feats = rng.uniform(0.1, 2.0, size=(20, 4))
    scales = np.array([0.5, 1.0, 2.0, 3.0])
    fit = fit_type_scales(feats, 0.3 + feats @ scales)
    np.testing.assert_allclose(fit["scales"], scales, rtol=1e-3)
    assert fit["offset_ms"] == pytest.approx(0.3, rel=1e-3)
    # noiseless data: the weakest pull (free scales) wins the leave-one-out choice
    assert fit["ridge"] == 0.0


def test_adaptation_recovers_a_synthetic_other_device(tmp_path, tiny_space):
    base = make_base(tmp_path / "base.json", tiny_space)
    measure = FakeMeasure(base)
    dev = get_device("cpu")
    out = tmp_path / "adapted.json"
    adapt_profile(base, tiny_space, dev, dev.protocol, out, n_adapt=14, n_evaluate=10, seed=3,
                            measure=measure, command="pytest", plot=tmp_path / "adapted.png")
    assert len(measure.measured) == 24 and len(set(measure.measured)) == 24
    saved = Profile.load(out)
    info = saved.provenance["adapted"]
    assert info["from"] == "base.json" and info["from_hardware"] == OTHER_HARDWARE
    assert info["networks"] == 14 and info["held_out"] == 10
    # every type is recovered: within 10% where it carries much of the time, 15% for pconv (one small stage-1
    # block in a few networks of this space)
    for kind, tolerance in (("block|pat_ch|relu", 0.10), ("block|pat_sf|relu", 0.10), ("stem", 0.10),
                            ("block|pconv|relu", 0.15)):
        assert info["scales"][kind] == pytest.approx(FACTORS[kind], rel=tolerance), kind
    # a table with the true factors predicts every network of the space within 3% ...
    report = saved.fidelity
    assert report["adapted"] is True and report["n_evaluation"] == 10 and report["n_calibration"] == 14
    assert report["calibrated"]["within_10pct"] == 100.0 and report["calibrated"]["kendall_tau"] >= 0.9
    for arch, res in tiny_space.samples(30, seed=99):
        assert saved.predict(arch, res) == pytest.approx(true_ms(base, arch, res), rel=0.03)
    # ... where the unadapted base is far off
    held_out = [(a, r) for a, r in tiny_space.samples(30, seed=99)]
    base_error = np.mean([abs(base.predictor.raw_ms(a, r) / true_ms(base, a, r) - 1) for a, r in held_out])
    assert base_error > 5 * report["calibrated"]["mape"] / 100
    ranks = report["rank_correlation"]
    assert set(ranks) == {"predictor", "table_sum", "flops", "params"}
    assert ranks["predictor"]["kendall_tau"] >= ranks["flops"]["kendall_tau"]
    assert (tmp_path / "adapted.png").stat().st_size > 0
    assert OFFSET_MS > 0


def test_interrupted_adaptation_resumes_measuring_only_what_is_missing(tmp_path, tiny_space):
    base = make_base(tmp_path / "base.json", tiny_space)
    dev = get_device("cpu")
    out = tmp_path / "adapted.json"

    class Interrupted(FakeMeasure):
        def __call__(self, profile, items, device):
            super().__call__(profile, items[:9], device)
            profile.save()                      # what measure_networks does as it goes
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        adapt_profile(base, tiny_space, dev, dev.protocol, out, n_adapt=8, n_evaluate=4, measure=Interrupted(base))
    assert not out.exists()                     # no half-made table where lookups would find it
    assert len(Profile.load(tmp_path / ".adapted.json.partial").networks) == 9

    class Counting(FakeMeasure):
        def __call__(self, profile, items, device):
            super().__call__(profile, [i for i in items if i[0] not in profile.networks], device)

    again = Counting(base)
    adapt_profile(base, tiny_space, dev, dev.protocol, out, n_adapt=8, n_evaluate=4, measure=again)
    assert len(again.measured) == 3 and Profile.load(out).provenance["adapted"]["networks"] == 8
    assert not (tmp_path / ".adapted.json.partial").exists()


def test_search_adapts_by_itself_where_no_table_fits(tmp_path, tiny_space, shipped, monkeypatch, _user_home):
    base = make_base(shipped / "epyc-b1-float32-nchw-t1-cputime-fused.json", tiny_space)
    measure = FakeMeasure(base)
    monkeypatch.setattr(adapt_mod, "default_measure", measure)
    notes = []
    profile = load_or_adapt("cpu", space=tiny_space, note=notes.append)
    assert profile.provenance["adapted"]["from"] == base.path.name
    assert profile.path == _user_home / "profiles" / "tiny" / "cpu-b1-float32-nchw-t1-cputime-fused.json"
    assert len(notes) == 2
    assert notes[0].startswith("no cpu table fits this host") and "adapting epyc-" in notes[0]
    assert "`patsearch profile --device cpu --space tiny --validate 60` (about 9 minutes" in notes[0]
    assert "held-out networks within +-10%" in notes[1]
    # the next search reuses the adapted table: nothing measured again, no note
    count = len(measure.measured)
    again = load_or_adapt("cpu", space=tiny_space, note=notes.append)
    assert len(measure.measured) == count and len(notes) == 2 and again.path == profile.path
    # the shipped table itself is never modified
    assert json.loads(base.path.read_text())["entries"] == base.entries


def test_run_search_uses_the_adapted_table(tmp_path, tiny_space, shipped, monkeypatch, caplog):
    import logging
    from pathlib import Path

    from patsearch.search.api import SearchOptions, run_search

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "search"))
    from search_helpers import fake_proxy

    base = make_base(shipped / "epyc-b1-float32-nchw-t1-cputime-fused.json", tiny_space)
    monkeypatch.setattr(adapt_mod, "default_measure", FakeMeasure(base))
    from rich.console import Console

    opts = SearchOptions(latency_budgets=["100ms"], space="tiny", trials=2, runs_dir=str(tmp_path / "runs"),
                         count_costs=False, plots=False, baselines="none", heartbeat_interval=1)
    caplog.set_level(logging.INFO, logger="patsearch")  # the note is logged, as the search's other notes
    with open(tmp_path / "console.txt", "w") as fh:
        out = run_search(opts, console=Console(file=fh, width=300), run_proxy=fake_proxy())
    assert sum("no cpu table fits this host" in m for m in caplog.messages) == 1
    assert out.ran == 2


def test_a_table_measured_here_is_used_without_adapting(tmp_path, tiny_space, shipped, monkeypatch):
    make_base(shipped / "epyc-b1-float32-nchw-t1-cputime-fused.json", tiny_space, hardware=devices.cpu_name())
    monkeypatch.setattr(adapt_mod, "default_measure", lambda *a, **k: pytest.fail("measured"))
    notes = []
    assert load_or_adapt("cpu", space=tiny_space, note=notes.append).device == "epyc" and not notes


def test_ignoring_shipped_tables_forces_adaptation(tmp_path, tiny_space, shipped, monkeypatch):
    base = make_base(shipped / "epyc-b1-float32-nchw-t1-cputime-fused.json", tiny_space,
                     hardware=devices.cpu_name())
    monkeypatch.setenv("PATSEARCH_IGNORE_SHIPPED_PROFILES", "1")
    with pytest.raises(ProfileError, match="no profile for device 'epyc'"):
        find_profile("epyc")
    monkeypatch.setattr(adapt_mod, "default_measure", FakeMeasure(base))
    notes = []
    profile = load_or_adapt("cpu", space=tiny_space, note=notes.append)
    assert profile.provenance["adapted"]["from"] == base.path.name and len(notes) == 2


def test_each_space_resolves_a_device_name_to_its_own_table(tiny_space, shipped, monkeypatch, _user_home):
    """The first space's table sits at the folder's top, every other space's (the default's too) in a sub-folder of
    its name: a name finds the table covering the searched space, and a search of another space adapts into that
    space's sub-folder."""
    from patsearch.space import load_space

    default, first = load_space(), load_space("patnet")
    top = make_base(shipped / "epyc-b1-float32-nchw-t1-cputime-fused.json", tiny_space)  # lacks both's layers
    (shipped / "tiny").mkdir()
    own = make_base(shipped / "tiny" / "epyc-b1-float32-nchw-t1-cputime-fused.json", tiny_space, seed=1,
                    hardware="The Tiny Table's CPU")
    assert find_profile("epyc", space=tiny_space) == own.path
    assert find_profile("epyc") == top.path  # no space: the default's sub-folder (absent here), then the top
    for space, flag in ((default, ""), (first, " --space patnet")):
        with pytest.raises(ProfileError) as info:
            find_profile("epyc", space=space)
        message = str(info.value)
        assert f"{top.path} lacks layers of space {space.name!r}" in message and "\n" not in message
        assert f"`patsearch profile --device epyc{flag} --adapt`" in message  # the default space needs no --space
    protocol = get_device("cpu").protocol
    assert table.profile_path("cpu", protocol, space=default).parent == _user_home / "profiles" / "patnet-wide"
    assert table.profile_path("cpu", protocol).parent == _user_home / "profiles" / "patnet-wide"
    assert table.profile_path("cpu", protocol, space=first).parent == _user_home / "profiles"
    # a search of the tiny space on a host no table fits adapts the tiny table, never the top one
    monkeypatch.setattr(adapt_mod, "default_measure", FakeMeasure(own))
    adapted = load_or_adapt("cpu", space=tiny_space, note=lambda _: None)
    assert adapted.provenance["adapted"]["from_hardware"] == "The Tiny Table's CPU"  # the space's own table
    assert adapted.path.parent == _user_home / "profiles" / "tiny"
    assert find_profile("cpu", space=tiny_space) == adapted.path


def test_adaptation_never_overwrites_a_full_table(tmp_path, tiny_space, shipped, monkeypatch, _user_home):
    make_base(shipped / "epyc-b1-float32-nchw-t1-cputime-fused.json", tiny_space)
    (_user_home / "profiles" / "tiny").mkdir(parents=True)
    mine = make_base(_user_home / "profiles" / "tiny" / "cpu-b1-float32-nchw-t1-cputime-fused.json", tiny_space,
                     device="cpu", hardware="Some Other CPU")
    monkeypatch.setattr(adapt_mod, "default_measure", lambda *a, **k: pytest.fail("measured"))
    with pytest.raises(ProfileError, match="measured on 'Some Other CPU'"):
        load_or_adapt("cpu", space=tiny_space, note=lambda _: None)
    assert Profile.load(mine.path).entries == mine.entries


def test_no_base_covering_the_space_names_the_full_command(tmp_path, tiny_space, shipped):
    dev = get_device("cpu")
    with pytest.raises(ProfileError, match=r"no CPU latency_ms table covering space 'tiny' to adapt from; build a "
                                           r"full one with `patsearch profile --device cpu --space tiny "
                                           r"--validate 60`"):
        nearest_base(dev, dev.protocol, tiny_space)


def test_stale_cpu_table_on_an_intel_host_suggests_device_cpu(tmp_path, tiny_space, monkeypatch):
    base = make_base(tmp_path / "epyc.json", tiny_space, hardware="AMD EPYC 7B13")
    monkeypatch.setattr(devices, "cpu_name", lambda: "Intel(R) Xeon(R) Processor")
    with pytest.raises(ProfileError) as info:
        load_profile(base.path)
    message = str(info.value)
    assert "`patsearch profile --device cpu --adapt`" in message
    assert "--device cpu --validate 60" in message and "--device epyc" not in message
    assert "\n" not in message


def test_device_for_host_names_the_device_that_accepts_it():
    assert devices.device_for_host("cpu", "Intel(R) Xeon(R) Processor") == "cpu"
    assert devices.device_for_host("cpu", "AMD EPYC 7B13 64-Core Processor") == "epyc"
    assert devices.device_for_host("cuda", "NVIDIA H200") == "h200"
    assert devices.device_for_host("cuda", "NVIDIA H100 80GB HBM3") == "h100"
    assert devices.device_for_host("cuda", "NVIDIA A100-SXM4-80GB") == "cuda"


def test_h200_is_named_with_bf16_channels_last_and_checked(monkeypatch):
    import torch

    dev = get_device("h200")
    assert dev.protocol.slug() == "b256-bfloat16-cl-graphs-fused" and dev.protocol.metric == "throughput"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.version, "hip", None, raising=False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA H200")
    assert devices.check_hardware(dev) == "NVIDIA H200"
    with pytest.raises(devices.DeviceError, match="--device h100 expects an NVIDIA H100 GPU, but found 'NVIDIA H200'"):
        devices.check_hardware(get_device("h100"))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA H100 80GB HBM3")
    with pytest.raises(devices.DeviceError, match="--device h200 expects an NVIDIA H200 GPU"):
        devices.check_hardware(dev)


def test_cli_profile_adapt_writes_an_adapted_table_and_says_how_long_it_took(tmp_path, tiny_space):
    import os
    import subprocess
    import sys
    from pathlib import Path

    base = make_base(tmp_path / "base.json", tiny_space, device="cpu")
    out = tmp_path / "out" / "adapted.json"
    env = {**os.environ, "PATSEARCH_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "cli.py", "profile", "--device", "cpu", "--space", "tiny", "--adapt",
                           "--adapt-from", str(base.path), "--calibrate", "5", "--validate", "3", "--out", str(out)],
                          cwd=repo, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith(f"wrote {out}: ") and "adapted from base.json" in first
    assert "this command took" in first and first.endswith("s in all")
    lines = proc.stdout.splitlines()
    assert lines[1].startswith("fidelity on 3 held-out networks (5 fitted the calibration, ")
    assert "% within +-10% (" in lines[1] and "Kendall tau" in lines[1]
    assert lines[2].startswith("  uncalibrated table sum: ")
    assert lines[3].startswith("  ranking the measured times (Kendall tau): predictor ")
    assert all(name in lines[3] for name in ("table sum", "FLOPs", "params"))
    assert lines[4].startswith("host: ") and "cores" in lines[4] and "other processes used" in lines[4]
    assert len(lines) == 5 and not any(line.lstrip().startswith("{") for line in lines)   # no raw JSON
    saved = Profile.load(out)
    assert saved.provenance["adapted"]["networks"] == 5 and len(saved.networks) == 8
    assert (tmp_path / "out" / "adapted.fidelity.png").exists()
    assert not (tmp_path / "home").exists()      # --out: nothing written to the user folder either
    # too few networks to fit: one line, exit 2, nothing written
    bad = subprocess.run([sys.executable, "cli.py", "profile", "--device", "cpu", "--space", "tiny", "--adapt",
                          "--adapt-from", str(base.path), "--calibrate", "2", "--out", str(tmp_path / "bad.json")],
                         cwd=repo, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --calibrate must be at least 4 networks")
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad.json").exists()


def test_gpu_adaptation_path_on_cpu_tensors(tmp_path, tiny_space):
    # An h100-like base (CUDA-graph statistic, throughput at batch 256) adapted to h200 with a fake measurement:
    # the GPU statistic is what gets scaled and predictions come back in images/s.
    base = make_base(tmp_path / "h100.json", tiny_space, device="h100", hardware="NVIDIA H100 80GB HBM3")
    for entry in base.entries.values():
        entry["graph_ms"], entry["ms"] = entry["ms"], entry["ms"] * 1.5   # eager adds launch overhead
    base.data["calibration"] = {"model": "sum", "coef": [1.0], "statistic": "graph_ms"}
    base.save()

    class GraphTruth(FakeMeasure):   # the H200 runs the graph time x the known factors
        def __call__(self, profile, items, device):
            graph_base = Profile({**self.base.data, "entries": {k: {**e, "ms": e["graph_ms"]}
                                                                for k, e in self.base.entries.items()}})
            self.base, original = graph_base, self.base
            try:
                super().__call__(profile, items, device)
            finally:
                self.base = original

    dev = get_device("h200")
    adapted = adapt_profile(base, tiny_space, dev, dev.protocol, tmp_path / "h200.json", n_adapt=14, n_evaluate=6,
                            measure=GraphTruth(base))
    assert adapted.provenance["adapted"]["from_statistic"] == "graph_ms"
    assert adapted.metric == "throughput" and adapted.fidelity["calibrated"]["within_10pct"] == 100.0
    key = next(k for k in base.entries if k.startswith("block|c16|pat_ch"))
    scale = adapted.provenance["adapted"]["scales"]["block|pat_ch|relu"]
    assert adapted.entries[key]["graph_ms"] == pytest.approx(base.entries[key]["graph_ms"] * scale, rel=1e-4)
    graph_base = Profile({**base.data, "entries": {k: {**e, "ms": e["graph_ms"]} for k, e in base.entries.items()}})
    for arch, res in tiny_space.samples(10, seed=7):
        assert adapted.predict(arch, res) == pytest.approx(256e3 / true_ms(graph_base, arch, res), rel=0.05)


def test_nearest_base_prefers_the_same_protocol_then_the_same_device():
    import dataclasses

    from patsearch.space import load_space

    space = load_space("patnet")  # the space with shipped H200 tables
    h200, h100 = get_device("h200"), get_device("h100")
    eager = dataclasses.replace(h200.protocol, cuda_graphs=False)
    assert nearest_base(h200, eager, space).path.name == "h200-b256-bfloat16-cl-fused.json"   # same protocol too
    # without a table of its own, an H200 adapts the H100's table of the same protocol
    base = nearest_base(h200, eager, space, exclude=PROFILES_DIR / "h200-b256-bfloat16-cl-fused.json")
    assert base.device == "h100" and base.protocol == eager == h100.protocol
    # the default space ships no H200 table: an H200 search adapts its H100 table, whatever the protocol
    base = nearest_base(h200, h200.protocol, load_space())
    assert base.device == "h100" and base.path.parent.name == "patnet-wide"


def _other_release(profile: Profile) -> Profile:
    profile.provenance["torch"] = "0.0.0-another-release"
    profile.save()
    return profile


class ScaledMeasure:
    """The table's own predictions times ``factor``: a host where the table holds up to a constant."""

    def __init__(self, base: Profile, factor: float) -> None:
        self.base, self.factor, self.measured = base, factor, []

    def __call__(self, profile, items, device) -> None:
        for key, arch, res, role in items:
            ms = self.factor * self.base.predict_ms(arch, res)
            profile.networks[key] = {"arch": arch.to_dict(), "resolution": res, "role": role, "ms": ms,
                                     "p10": ms, "p90": ms, "n": 9, "inner": 1}
            self.measured.append(key)


def test_a_table_from_another_torch_release_is_spot_checked_once_and_kept_when_it_holds(tmp_path, tiny_space,
                                                                                         shipped, monkeypatch):
    base = _other_release(make_base(shipped / "epyc-b1-float32-nchw-t1-cputime-fused.json", tiny_space,
                                    hardware=devices.cpu_name()))
    measure = ScaledMeasure(base, 1.08)
    monkeypatch.setattr(adapt_mod, "default_measure", lambda p, items, d, **k: measure(p, items, d))
    notes = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", table.StaleProfileWarning)  # the note replaces the release warning
        profile = load_or_adapt("cpu", space=tiny_space, note=notes.append)
    assert profile.device == "epyc" and not adapt_mod.is_adapted(profile)
    assert len(measure.measured) == adapt_mod.SPOT_CHECK_NETWORKS
    assert len(notes) == 1 and notes[0].startswith("spot check: epyc-") and "run 1.08x its predictions" in notes[0]
    # the verdict is remembered: the next search measures nothing and says nothing
    load_or_adapt("cpu", space=tiny_space, note=notes.append)
    assert len(measure.measured) == adapt_mod.SPOT_CHECK_NETWORKS and len(notes) == 1


def test_a_table_that_fits_by_name_but_runs_off_here_is_adapted(tmp_path, tiny_space, shipped, monkeypatch,
                                                                _user_home):
    base = _other_release(make_base(shipped / "epyc-b1-float32-nchw-t1-cputime-fused.json", tiny_space,
                                    hardware=devices.cpu_name()))
    slow = ScaledMeasure(base, 1.75)  # the case seen on this VM: the shipped epyc table predicted 1.75x too fast
    monkeypatch.setattr(adapt_mod, "default_measure", lambda p, items, d, **k: slow(p, items, d))
    notes = []
    profile = load_or_adapt("cpu", space=tiny_space, note=notes.append)
    assert profile.provenance["adapted"]["from"] == base.path.name
    assert profile.path == _user_home / "profiles" / "tiny" / "cpu-b1-float32-nchw-t1-cputime-fused.json"
    assert notes[0].startswith(f"{base.path.name} fits this host by name but was measured with torch "
                               "0.0.0-another-release") and "run 1.75x its predictions: adapting" in notes[0]
    # the adapted table predicts what this host measures (a constant factor is exactly what adaptation fits)
    for key, net in profile.networks.items():
        predicted = profile.predict_ms(ArchConfig.from_dict(net["arch"]), net["resolution"])
        assert predicted == pytest.approx(net["ms"], rel=0.05), key
    # and the next search takes the adapted table without checking or measuring again
    count = len(slow.measured)
    again = load_or_adapt("cpu", space=tiny_space, note=notes.append)
    assert again.path == profile.path and len(slow.measured) == count


def _no_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _h100_table(folder, tiny_space):
    return _other_release(make_base(folder / "h100-b256-bfloat16-cl-fused.json", tiny_space, device="h100",
                                    hardware="NVIDIA H100 80GB HBM3"))


def test_a_device_that_is_not_this_host_is_predicted_by_its_table_without_a_spot_check(tmp_path, tiny_space,
                                                                                        shipped, monkeypatch):
    _no_gpu(monkeypatch)
    h100 = _h100_table(shipped, tiny_space)   # another torch release: on an H100 it would be spot-checked
    monkeypatch.setattr(adapt_mod, "default_measure", lambda *a, **k: pytest.fail("measured a device not here"))
    notes = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # the one note replaces the no-GPU and release warnings
        profile = load_or_adapt("h100", space=tiny_space, note=notes.append)
    assert profile.device == "h100" and profile.path == h100.path and not adapt_mod.is_adapted(profile)
    assert notes == ["h100 is not this host (no GPU here): its table h100-b256-bfloat16-cl-fused.json (measured on "
                     "NVIDIA H100 80GB HBM3 with torch 0.0.0-another-release) is used as a prediction, without a "
                     "spot check"]
    assert not (tmp_path / "home" / "profiles" / adapt_mod.SPOT_CHECK_FILE).exists()


def test_no_table_of_a_device_that_is_not_this_host_is_one_line_and_never_adapted(tiny_space, shipped, monkeypatch):
    _no_gpu(monkeypatch)
    make_base(shipped / "h200-b256-bfloat16-cl-graphs-fused.json", tiny_space, device="h200",
              hardware="NVIDIA H200")     # a base it could adapt from, if it measured here
    monkeypatch.setattr(adapt_mod, "default_measure", lambda *a, **k: pytest.fail("measured a device not here"))
    with pytest.raises(ProfileError) as info:
        load_or_adapt("h100", space=tiny_space, note=lambda _: None)
    message = str(info.value)
    assert message.startswith("no h100 table of space 'tiny', and h100 is not this host, so none can be measured "
                              "here: run `patsearch profile --device h100 --space tiny --adapt` on an NVIDIA H100 GPU "
                              "host")
    assert "\n" not in message


def test_spot_check_never_measures_a_device_that_is_not_this_host(tiny_space, shipped, monkeypatch):
    _no_gpu(monkeypatch)
    h100 = _h100_table(shipped, tiny_space)
    with pytest.raises(devices.DeviceError, match="--device h100 expects an NVIDIA H100 GPU, but torch .* sees no "
                                                  "GPU on this host"):
        adapt_mod.spot_check(h100, tiny_space, get_device("h100"),
                             measure=lambda *a: pytest.fail("measured a device not here"))


def test_search_with_a_gpu_floor_on_a_host_without_a_gpu(tmp_path, tiny_space, shipped, monkeypatch, caplog):
    # the README's `--latency-budget cpu=35ms --min-throughput h100=20000fps` on a CPU-only host
    from pathlib import Path

    from rich.console import Console

    from patsearch.search.api import SearchOptions, run_search

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "search"))
    from search_helpers import fake_proxy

    _no_gpu(monkeypatch)
    make_base(shipped / "epyc-b1-float32-nchw-t1-cputime-fused.json", tiny_space, hardware=devices.cpu_name())
    _h100_table(shipped, tiny_space)
    monkeypatch.setattr(adapt_mod, "default_measure", lambda *a, **k: pytest.fail("measured"))
    opts = SearchOptions(latency_budgets=["cpu=1000ms"], min_throughputs=["h100=1fps"], space="tiny", trials=2,
                         runs_dir=str(tmp_path / "runs"), count_costs=False, plots=False, baselines="none",
                         heartbeat_interval=1)
    with open(tmp_path / "console.txt", "w") as fh, caplog.at_level("INFO", logger="patsearch"):
        out = run_search(opts, console=Console(file=fh, width=300), run_proxy=fake_proxy())
    text = (tmp_path / "console.txt").read_text() + "\n".join(caplog.messages)  # notes go through logging
    assert out.ran == 2
    assert text.count("h100 is not this host (no GPU here)") == 1 and "without a spot check" in text


def test_the_paper_cpu_named_on_another_cpu_is_a_prediction_too(tiny_space, shipped, monkeypatch):
    # `--latency-budget epyc=20ms` on an Intel host: the EPYC table predicts the EPYC; `cpu` still means this host
    epyc = make_base(shipped / "epyc-b1-float32-nchw-t1-cputime-fused.json", tiny_space, hardware="AMD EPYC 73F3")
    monkeypatch.setattr(devices, "cpu_name", lambda: "Intel(R) Xeon(R) Processor")
    monkeypatch.setattr(adapt_mod, "default_measure", FakeMeasure(epyc))
    notes = []
    assert load_or_adapt("epyc", space=tiny_space, note=notes.append).path == epyc.path
    assert notes == ["epyc is not this host (this host has Intel(R) Xeon(R) Processor): its table "
                     "epyc-b1-float32-nchw-t1-cputime-fused.json (measured on AMD EPYC 73F3 with torch "
                     f"{epyc.provenance['torch']}) is used as a prediction, without a spot check"]
    assert adapt_mod.is_adapted(load_or_adapt("cpu", space=tiny_space, note=notes.append))   # this host: adapted

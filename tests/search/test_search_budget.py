"""Budget and throughput parsing: every accepted spelling, and one-line errors for the rest."""
import subprocess
import sys
from pathlib import Path

import pytest

from patsearch.errors import UserError
from patsearch.search.budget import BudgetError, parse_latency, parse_throughput
from patsearch.search.constraints import ConstraintSpec, parse_constraints

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("text", ["35ms", "35 ms", "0.035s", "35000us", "35000 µs", "35MS", " 35ms ", "3.5e1ms"])
def test_latency_spellings_mean_35_ms(text):
    assert parse_latency(text) == pytest.approx(35.0)


@pytest.mark.parametrize("text,value", [("4000fps", 4000.0), ("4000 img/s", 4000.0), ("4kfps", 4000.0),
                                        ("2500.5 FPS", 2500.5)])
def test_throughput_spellings(text, value):
    assert parse_throughput(text) == pytest.approx(value)


@pytest.mark.parametrize("text,fragment", [
    ("35", "missing unit"),
    ("ms", "not a number"),
    ("35 parsecs", "unknown unit 'parsecs'"),
    ("-5ms", "positive"),
    ("0s", "positive"),
    ("", "empty"),
    ("35ms35", "unknown unit 'ms35'"),
])
def test_bad_latency_is_a_user_error_naming_the_problem(text, fragment):
    with pytest.raises(BudgetError) as info:
        parse_latency(text)
    assert fragment in str(info.value)
    assert isinstance(info.value, UserError)
    assert "\n" not in str(info.value)


def test_throughput_rejects_time_units():
    with pytest.raises(BudgetError, match="unknown unit 'ms'"):
        parse_throughput("35ms")


def test_device_prefixes_and_multiple_constraints():
    specs = parse_constraints(["35ms", "epyc=0.02s"], ["h100=4000fps"])
    assert specs == [ConstraintSpec(None, "latency", 35.0), ConstraintSpec("epyc", "latency", 20.0),
                     ConstraintSpec("h100", "throughput", 4000.0)]
    with pytest.raises(UserError, match="at least one constraint"):
        parse_constraints([], [])


def test_cli_reports_a_bad_budget_on_one_line_with_exit_code_2(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), "search", "--latency-budget", "35",
                           "--runs-dir", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: latency budget '35': missing unit; write it like 35ms (units: s, sec, ms, us, µs, ns)"]
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_default_study_names_tell_data_and_proxy_settings_apart(tmp_path):
    from patsearch.search.constraints import Constraint
    from patsearch.search.options import default_study_name
    from patsearch.search.proxy import ProxySettings
    from patsearch.search.rungs import Rungs

    (tmp_path / "cifar10" / "train").mkdir(parents=True)
    budget = [Constraint("cpu", "latency", 35.0, None)]
    synthetic = ProxySettings(epochs=4, resolution=32, device="cpu")
    folder = ProxySettings(data=str(tmp_path / "cifar10"), train_samples=500, val_samples=200, epochs=4,
                           resolution=32, device="cpu")
    names = {default_study_name("patnet", budget, "single", p, r)
             for p in (synthetic, folder, ProxySettings(epochs=5, resolution=64, device="cpu"))
             for r in (None, Rungs((4, 12)))}
    assert len(names) == 6  # each data/proxy/rung setting its own study
    other_lr = {default_study_name("patnet", budget, "single", ProxySettings(epochs=4, resolution=32, device="cpu",
                                                                             **kw))
                for kw in ({}, {"lr": 1e-3}, {"lr": 2e-3}, {"batch_size": 64})}
    assert len(other_lr) == 4  # the lr moves the ranking: each lr or batch its own study
    name = default_study_name("patnet", budget, "single", synthetic)
    assert name.startswith("patnet-cpu-lat35ms-synthetic-4ep32px-")
    assert default_study_name("patnet", budget, "single", folder).startswith("patnet-cpu-lat35ms-cifar10-4ep32px-")
    assert name == default_study_name("patnet", budget, "single", ProxySettings(epochs=4, resolution=32, device="cpu"))


def test_a_search_states_how_much_of_the_space_its_budget_admits(tmp_path, tiny_profile, caplog):
    import logging

    from search_helpers import fake_proxy, load_unchecked

    from patsearch.search.api import SearchOptions, run_search
    from patsearch.search.constraints import feasible_share, load_constraints
    from patsearch.space import load_space

    space, profile = load_space("tiny"), load_unchecked(tiny_profile)
    latencies = sorted(profile.predict(arch, res) for arch, res in space.samples(500, seed=0))
    budget = f"{tiny_profile}={latencies[len(latencies) // 2]:.6f}ms"  # about half the space
    caplog.set_level(logging.INFO, logger="patsearch")
    opts = SearchOptions(latency_budgets=[budget], space="tiny", trials=2, seed=1, plots=False,
                         runs_dir=str(tmp_path / "runs"), baselines="none", count_costs=False)
    out = run_search(opts, run_proxy=fake_proxy(), load_profile=load_unchecked)
    expected = feasible_share(space, load_constraints(parse_constraints([budget]), loader=load_unchecked))
    assert 0 < expected < 1  # the tiny table's 5 ms splits the tiny space
    assert out.study.user_attrs["patsearch_config"]["feasible_share"] == round(expected, 4)
    assert f"the constraint admits about {100 * expected:.1f}% of the space" in caplog.text

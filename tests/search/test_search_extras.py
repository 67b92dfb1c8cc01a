"""Interrupt and resume, the other samplers, --show through the CLI, and the study in optuna-dashboard."""
from __future__ import annotations

import io
import json

import pytest
from optuna.trial import TrialState
from search_helpers import HEARTBEAT_S, fake_proxy
from typer.testing import CliRunner

from patsearch.errors import UserError
from patsearch.profiler import load_profile
from patsearch.search.api import SearchOptions, run_search
from patsearch.search.storage import parse_storage
from patsearch.search.study import open_storage
from patsearch.search.trial_counts import is_infeasible


def _opts(tmp_path, profile, **kw):
    base = dict(latency_budgets=[f"{profile}=5ms"], space="tiny", trials=3, runs_dir=str(tmp_path / "runs"),
                count_costs=False, plots=False, baselines="none", study_name="s", heartbeat_interval=HEARTBEAT_S)
    base.update(kw)
    return SearchOptions(**base)


def _load(path):
    return load_profile(path, check=False)


def test_ctrl_c_requeues_the_running_trial_and_a_rerun_completes(tmp_path, tiny_profile):
    calls = []

    def interrupted(arch, on_epoch_end=None):
        calls.append(arch)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return fake_proxy()(arch, on_epoch_end)

    interrupted.num_classes = 10
    with pytest.raises(KeyboardInterrupt):
        run_search(_opts(tmp_path, tiny_profile), run_proxy=interrupted, load_profile=_load)
    out = run_search(_opts(tmp_path, tiny_profile), run_proxy=fake_proxy(), load_profile=_load)
    trials = out.study.get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == failed[0].params
    assert sum(t.state == TrialState.COMPLETE and not is_infeasible(t) for t in trials) == 3


@pytest.mark.parametrize("sampler,objective", [("nsga2", "pareto"), ("gp", "single"), ("random", "single")])
def test_other_samplers_run_to_the_exact_count(tmp_path, tiny_profile, sampler, objective):
    import importlib.util

    if sampler == "gp" and importlib.util.find_spec("scipy") is None:
        from patsearch.errors import UserError

        with pytest.raises(UserError, match="needs scipy"):
            run_search(_opts(tmp_path, tiny_profile, sampler=sampler), run_proxy=fake_proxy(), load_profile=_load)
        return
    out = run_search(_opts(tmp_path, tiny_profile, sampler=sampler, objective=objective, trials=4, seed=1),
                     run_proxy=fake_proxy(), load_profile=_load)
    counted = [t for t in out.study.get_trials() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
               and not is_infeasible(t)]
    assert len(counted) == 4


def test_show_via_the_cli_and_the_dashboard_reads_the_study(tmp_path, tiny_profile, monkeypatch):
    import cli

    run_search(_opts(tmp_path, tiny_profile), run_proxy=fake_proxy(), load_profile=_load)
    result = CliRunner().invoke(cli.app, ["search", "--show", "s", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "study s: cpu latency <= 5 ms" in result.output and "best: trial" in result.output
    result = CliRunner().invoke(cli.app, ["search", "--show", "nope", "--runs-dir", str(tmp_path / "runs")])
    # The user error itself (cli.main turns it into one line and exit code 2, as tests/test_cli.py checks).
    assert isinstance(result.exception, UserError), result.output
    assert "no study 'nope'" in str(result.exception)

    from optuna_dashboard._app import create_app

    storage = open_storage(parse_storage(None, "s", tmp_path / "runs"))
    app = create_app(storage)
    status = {}

    def start_response(code, headers, exc_info=None):
        status["code"] = code

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/api/studies", "QUERY_STRING": "", "SERVER_NAME": "x",
               "SERVER_PORT": "80", "wsgi.input": io.BytesIO(), "wsgi.url_scheme": "http", "wsgi.errors": io.StringIO()}
    body = b"".join(app(environ, start_response))
    assert status["code"].startswith("200"), body[:300]
    studies = json.loads(body)["study_summaries"]
    assert [s["study_name"] for s in studies] == ["s"]

"""Flag groups declared once (patsearch.flags): each command that has a group gets the same flags with the same
help, and the command receives their values as one mapping."""
from __future__ import annotations

import inspect

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from patsearch import flags


def _params(command: str) -> dict[str, object]:
    import cli

    return {p.name: p for p in typer.main.get_command(cli.app).commands[command].params}


@pytest.mark.parametrize("group, commands", [
    (flags.PROTOCOL.but("form"), ("profile", "bench")),
    (flags.PROXY_SETTINGS, ("search", "proxy-check")),
    (flags.GPU_WORKERS, ("search", "proxy-check")),
    (flags.TABLES, ("search", "proxy-check")),
])
def test_a_shared_flag_says_one_thing_in_every_command(group, commands):
    first, *rest = [_params(c) for c in commands]
    for p in group.params:
        declared = [(params[p.name].opts, params[p.name].secondary_opts, params[p.name].help, params[p.name].default)
                    for params in (first, *rest)]
        assert all(d == declared[0] for d in declared), (p.name, declared)
        assert declared[0][2], f"--{p.name} has no help"


def test_a_group_reaches_the_command_as_one_mapping_and_keeps_its_place():
    group = flags.FlagGroup("extra", (flags.flag("width", int, 3, help="Width."),
                                      flags.flag("tall", bool, False, "--tall", help="Tall.")))
    app = typer.Typer()
    seen = []

    @app.command()
    @group
    def cmd(name: str = typer.Option("x"), extra: dict | None = None, last: int = typer.Option(0)) -> None:
        seen.append((name, extra, last))

    assert [p for p in inspect.signature(cmd).parameters] == ["name", "width", "tall", "last"]
    result = CliRunner().invoke(app, ["--width", "5", "--tall", "--last", "2"])
    assert result.exit_code == 0, result.output
    assert seen == [("x", {"width": 5, "tall": True}, 2)]
    assert [p.name for p in group.but("tall").params] == ["width"]


def test_the_old_table_spellings_are_hidden_aliases_of_profile():
    for command in ("search", "proxy-check"):
        params = _params(command)
        assert params["profile"].opts == ["--profile"] and not params["profile"].hidden
        assert set(params["profile_alias"].opts) == {"--device", "--device-table"} and params["profile_alias"].hidden

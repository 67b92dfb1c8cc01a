"""The library logs (loggers under "patsearch") and never prints; patsearch.log shows the records on stderr at the
level an application picks (the CLI's --quiet / --verbose), and undoes that when asked."""
import ast
import logging
from pathlib import Path

import pytest

import patsearch
from patsearch import log
from patsearch.progress import progress_bar

PACKAGE = Path(patsearch.__file__).parent


@pytest.fixture
def configured():
    """log.configure at a level, undone after the test (the logger's handlers and level as they were)."""
    undos = []
    yield lambda level: undos.append(log.configure(level))
    for undo in reversed(undos):
        undo()


def _emit_all() -> None:
    lib = logging.getLogger("patsearch.some.module")
    lib.debug("the chosen table: x.json")
    lib.info("note: something worth knowing")
    lib.warning("the host is busy")


def test_default_level_shows_notes_as_plain_lines_and_hides_debug(configured, capsys):
    configured(log.DEFAULT)
    _emit_all()
    captured = capsys.readouterr()
    assert captured.out == ""  # stdout is left to the command's result
    assert captured.err.splitlines() == ["note: something worth knowing", "warning: the host is busy"]


def test_a_note_logged_as_a_warning_keeps_its_own_prefix(configured, capsys):
    configured(log.QUIET)
    logging.getLogger("patsearch.some.module").warning("note: no --data given: synthetic set")
    assert capsys.readouterr().err.splitlines() == ["note: no --data given: synthetic set"]  # not "warning: note:"


def test_quiet_hides_notes_and_progress_bars_but_not_warnings(configured, capsys):
    configured(log.QUIET)
    _emit_all()
    assert capsys.readouterr().err.splitlines() == ["warning: the host is busy"]
    assert not log.progress_shown() and progress_bar().disable


def test_verbose_shows_debug_lines_with_their_logger(configured, capsys):
    configured(log.VERBOSE)
    _emit_all()
    assert capsys.readouterr().err.splitlines() == ["debug: patsearch.some.module: the chosen table: x.json",
                                                    "note: something worth knowing", "warning: the host is busy"]


def test_undo_restores_the_logger_and_configure_twice_keeps_one_handler(capsys):
    root = logging.getLogger("patsearch")
    before = (list(root.handlers), root.level)
    first = log.configure(log.VERBOSE)
    second = log.configure(log.QUIET)
    logging.getLogger("patsearch.x").warning("once")
    assert capsys.readouterr().err == "warning: once\n"  # one handler: one line
    second()
    first()
    assert (list(root.handlers), root.level) == before
    assert log.progress_shown() and not progress_bar().disable


def test_records_go_to_the_stderr_of_the_moment(configured, monkeypatch):
    """rich's live bars swap sys.stderr to print records above the bar: the handler must follow the swap."""
    import io

    configured(log.DEFAULT)
    swapped = io.StringIO()
    monkeypatch.setattr("sys.stderr", swapped)
    logging.getLogger("patsearch.train").info("epoch 1/1")
    assert swapped.getvalue() == "epoch 1/1\n"


def _print_calls(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), str(path))
    lines = [node.lineno for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"]
    # `note=print` style defaults hand the builtin to code that calls it later
    lines += [node.lineno for node in ast.walk(tree) if isinstance(node, ast.arguments)
              for default in node.defaults + [d for d in node.kw_defaults if d is not None]
              if isinstance(default, ast.Name) and default.id == "print"]
    return lines


def test_the_library_never_prints():
    found = {str(path.relative_to(PACKAGE)): lines for path in sorted(PACKAGE.rglob("*.py"))
             if (lines := _print_calls(path))}
    assert found == {}, f"print() in the library (log through logging.getLogger(__name__) instead): {found}"

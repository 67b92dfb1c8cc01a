"""Every module of patsearch imports, and no two modules import each other, directly or around a circle,
function-local imports included (a local import hides a circle; it does not remove it)."""
import ast
import importlib
from pathlib import Path

import pytest

import patsearch

ROOT = Path(patsearch.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = ("patsearch",) + path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _target(name: str) -> str | None:
    """The most specific patsearch module that ``name`` (a module or a name in one) refers to."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):  # every import, at any depth
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import sub` imports the submodule; `from pkg import name` the package's __init__.
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for name in names:
            target = _target(name) if name.startswith("patsearch") else None
            if target and target != module:
                found.add(target)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _graph() -> dict[str, set[str]]:
    return {m: _imports(m, p) for m, p in MODULES.items()}


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert cycles == [], "import circles (function-local imports included): " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_the_checker_sees_circles_hidden_in_functions(tmp_path):
    graph = {"patsearch.a": {"patsearch.b"}, "patsearch.b": {"patsearch.c"}, "patsearch.c": {"patsearch.a"},
             "patsearch.d": {"patsearch.a"}}
    assert _cycles(graph) == [["patsearch.a", "patsearch.b", "patsearch.c"]]
    # A function-local import is an edge like any other.
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from patsearch.profiler.table import ProfileError\n")
    assert _imports("patsearch.profiler.predictor", src) == {"patsearch.profiler.table"}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports(module):
    if module == "patsearch.kernels._triton":  # the GPU kernels need Triton, which CPU-only torch builds lack
        pytest.importorskip("triton", reason="needs Triton, which CUDA builds of torch install")
    importlib.import_module(module)

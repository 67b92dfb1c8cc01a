"""Every module of patsearch imports; no two modules import each other, directly or around a circle; and every
import points down the layers docs/ARCHITECTURE.md draws. Function-local imports count like any other (a local
import hides a circle or an upward arrow; it does not remove it)."""
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


# The layers of docs/ARCHITECTURE.md, top to bottom: a module imports only from its own package or a lower layer.
# Packages that share a layer do not import each other (profiler and train, data and space, ...).
LAYERS: list[set[str]] = [
    {"__main__"},
    {"cli"},
    {"flags"},  # the typer flag groups the commands share
    {"proxycheck"},
    {"search", "export", "reporting"},  # export reads trained checkpoints; reporting prints counted tables
    {"profiler", "train"},
    {"space", "data", "counting"},
    {"models"},
    {"kernels"},
]
# Below everything, importing only each other: small helpers every layer may use (arch is one of them for all
# layers but kernels, which stands alone).
BASE = {"arch", "compile_options", "config", "errors", "host", "io", "log", "paper", "progress", "ranking",
        "resources", "termination", "version"}


def _unit(module: str) -> str:
    """The package (``train``) or top-level module (``io``) a module belongs to; ``patsearch`` for the root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "patsearch"


def _rank(unit: str) -> int:
    for depth, layer in enumerate(LAYERS):
        if unit in layer:
            return depth
    assert unit in BASE, f"{unit} is in no layer: add it to LAYERS or BASE (and to docs/ARCHITECTURE.md)"
    return len(LAYERS)


def _upward(graph: dict[str, set[str]]) -> list[str]:
    """Imports that point up a layer or sideways into another package of the same layer."""
    out = []
    for module, targets in sorted(graph.items()):
        src = _unit(module)
        if src == "patsearch":  # the package root re-exports the public API of the layers below
            continue
        for target in sorted(targets):
            dst = _unit(target)
            if dst == src:
                continue
            if dst in BASE:
                ok = not (src == "kernels" and dst == "arch")
            else:
                ok = src not in BASE and _rank(dst) > _rank(src)
            if not ok:
                out.append(f"{module} -> {target}")
    return out


def test_imports_point_down_the_layers():
    assert _upward(_graph()) == [], "imports against the layers of docs/ARCHITECTURE.md"


def test_data_never_imports_train():
    """The data layer sits below the trainer: what it reads from a recipe it names as a protocol."""
    graph = _graph()
    found = [f"{m} -> {t}" for m, ts in graph.items() if _unit(m) == "data" for t in ts if _unit(t) == "train"]
    assert found == []


def test_the_layer_check_sees_upward_and_sideways_arrows():
    graph = {"patsearch.data.transforms": {"patsearch.train.recipe", "patsearch.io"},
             "patsearch.train.loop": {"patsearch.profiler.table", "patsearch.data.folder", "patsearch.arch"},
             "patsearch.kernels.ops": {"patsearch.arch"}, "patsearch.io": {"patsearch.errors"},
             "patsearch.search.api": {"patsearch.train", "patsearch.cli"}}
    assert _upward(graph) == ["patsearch.data.transforms -> patsearch.train.recipe",
                              "patsearch.kernels.ops -> patsearch.arch",
                              "patsearch.search.api -> patsearch.cli",
                              "patsearch.train.loop -> patsearch.profiler.table"]


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

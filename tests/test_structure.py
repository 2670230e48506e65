"""The shape of the code: imports point one way, modules and functions stay small.

Read from the source with ``ast`` (nothing is imported), over ``engine/`` and
``dashboard/``. Every import counts, also one inside a function: a lazy import
hides a circle from Python's loader, not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"engine": "layerscope.engine", "dashboard": "layerscope.dashboard"}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# Justified exceptions, each with its reason: none today.
LONG_MODULES: dict[str, str] = {}
LONG_FUNCTIONS: dict[str, str] = {}


def _sources() -> dict[str, Path]:
    """Module name -> file, for every .py file of the two packages."""
    modules = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "node_modules" in path.parts:
                continue
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of the two packages it imports."""
    modules = _sources()
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:      # relative: from the module's own package
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[:len(base) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module
                targets.add(module)
                targets.update(f"{module}.{alias.name}" for alias in node.names)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the modules along it, or None."""
    state: dict[str, int] = {}      # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_the_import_graph_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_imports_point_one_way():
    graph = import_graph()
    assert len(graph) > 40 and sum(map(len, graph.values())) > 100      # the graph was read
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
    upward = sorted(f"{m} -> {t}" for m, targets in graph.items() if m.startswith("layerscope.engine")
                    for t in targets if t.startswith("layerscope.dashboard"))
    assert not upward, f"the engine imports the dashboard: {upward}"


def test_modules_and_functions_stay_small():
    long_modules, long_functions = [], []
    for name, path in _sources().items():
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES and name not in LONG_MODULES:
            long_modules.append(f"{path.relative_to(ROOT)} ({lines} lines)")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and f"{name}.{node.name}" not in LONG_FUNCTIONS:
                    long_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert not long_modules, f"modules over {MAX_MODULE_LINES} lines: {long_modules}"
    assert not long_functions, f"functions over {MAX_FUNCTION_LINES} lines: {long_functions}"


def test_every_package_is_in_the_install():
    """pyproject.toml lists packages by hand (the folders are mapped under
    ``layerscope.``): a new subpackage missing there works in an editable
    install and is absent from a wheel."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {name for name, path in _sources().items() if path.name == "__init__.py"}
    assert found - listed == set(), f"packages missing from pyproject.toml: {sorted(found - listed)}"

"""The package graph: data flows one way. Each module imports alone (no import-order
cycle), the subpackages' imports (function-level ones included) form no cycle, nothing in
edgelm imports the facade ``edgelm/__init__.py`` or the top-level ``android_bridge``."""

from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "edgelm"


def _modules() -> list[str]:
    out = []
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = f.relative_to(ROOT).with_suffix("").parts
        out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def _unit(module: str) -> str:
    """The node of the graph: a subpackage or top-level module of edgelm (``edgelm.bench``,
    ``edgelm.arch``), the facade ``edgelm`` itself, or ``android_bridge``."""
    return ".".join(module.split(".")[:2])


def _imports(f: Path) -> set[str]:
    """Every edgelm / android_bridge module a file imports, anywhere in it (relative imports
    resolved; type-checking-only imports count: they are dependencies too)."""
    parts = f.relative_to(ROOT).with_suffix("").parts
    package = list(parts[:-1])  # the package a relative import starts from (also for __init__.py)
    found = set()
    for node in ast.walk(ast.parse(f.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n.split(".")[0] in ("edgelm", "android_bridge")}
    return found


def _graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(ROOT).with_suffix("").parts
        src = _unit(".".join(parts))
        for target in _imports(f):
            dst = _unit(target)
            if dst != src:
                edges.setdefault(src, set()).add(dst)
    return edges


def test_the_import_finder_sees_relative_and_function_level_imports() -> None:
    assert "edgelm.bench" in _graph()["edgelm.cli"]  # cli imports bench inside its command functions
    assert "edgelm.profiler.energy" in _imports(PACKAGE / "bench" / "runner.py")


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path that returns to its start, or None."""
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], node, nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, node])):
                return found
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}}) is None


def test_the_subpackage_graph_has_no_cycle() -> None:
    found = _cycle(_graph())
    assert found is None, "import cycle: " + " -> ".join(found or [])


def test_nothing_in_edgelm_imports_the_facade_or_the_bridge() -> None:
    for f in PACKAGE.rglob("*.py"):
        if f == PACKAGE / "__init__.py":
            continue
        for target in _imports(f):
            assert target.split(".")[0] != "android_bridge", f"{f.relative_to(ROOT)} imports {target}"
            assert target not in ("edgelm", "edgelm.__init__"), f"{f.relative_to(ROOT)} imports the package facade"


def test_devices_sit_below_bench() -> None:
    edges = _graph()
    assert not {"edgelm.bench", "edgelm.runtime", "edgelm.cli", "edgelm.profiler"} & edges.get("edgelm.devices", set())
    assert "edgelm.bench" not in edges.get("edgelm.profiler", set())


def test_each_module_imports_alone() -> None:
    def alone(module: str) -> tuple[str, int, str]:
        p = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, cwd=ROOT,
                           timeout=300)
        return module, p.returncode, p.stderr.strip().splitlines()[-1:] and p.stderr.strip().splitlines()[-1] or ""

    with ThreadPoolExecutor(2) as pool:
        failed = [r for r in pool.map(alone, _modules()) if r[1] != 0]
    assert not failed, failed

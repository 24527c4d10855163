"""The layout is a stack of rooms: each imports only from its own room or the rooms below it.

The graph is read from the source (every import, function-level ones too; imports only for type
checking are left out), so a lazy import that would close a cycle counts like any other.
Framework and torch imports are ruff's rule (TID251 in pyproject.toml).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "guard_plugin"

# Lowest first. A room may import from its own room and from any room of a lower layer.
LAYERS: list[set[str]] = [
    {"types", "errors", "taxonomy", "_aio", "sealing", "language"},
    {"policy", "verdict"},
    {"prompting"},
    {"decision", "audit", "telemetry"},
    {"media"},
    {"classifiers"},
    {"check", "evaluation", "streams"},
    {"lc_messages", "nemo"},
    {"langchain", "langgraph"},
    {"testing", "cli", "__init__", "serve"},
    # compatibility paths, kept where a public path moved
    {"guard", "testing_langchain"},
]
# Compatibility modules that re-export their new home, wherever it is.
SHIMS = {"guard_plugin.classifiers.scripted"}


def _modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        parts = list(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _resolve(name: str) -> str:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _type_only(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    return skip


def _imports(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    skip = _type_only(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(_resolve(a.name) for a in node.names if a.name.startswith("guard_plugin"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module if path.name == "__init__.py" else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    pkg = pkg.rpartition(".")[0]
                base = f"{pkg}.{base}" if base else pkg
            if base.startswith("guard_plugin"):
                for a in node.names:
                    full = f"{base}.{a.name}"
                    found.add(full if full in MODULES else _resolve(base))
    found.discard(module)
    return found


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(room: str) -> int:
    for n, rooms in enumerate(LAYERS):
        if room in rooms:
            return n
    raise AssertionError(f"room {room!r} is in no layer: add it to LAYERS in {__file__}")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read() -> None:
    assert "guard_plugin.check.guard" in GRAPH["guard_plugin.check"]
    assert "guard_plugin.classifiers.base" in GRAPH["guard_plugin.check.guard"]


def test_no_import_cycles_between_modules() -> None:
    assert _cycles(GRAPH) == []


def test_no_import_cycles_between_rooms() -> None:
    rooms: dict[str, set[str]] = {}
    for m, targets in GRAPH.items():
        rooms.setdefault(_room(m), set()).update(
            _room(t) for t in targets if _room(t) != _room(m) and m not in SHIMS
        )
    assert _cycles(rooms) == []


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_each_module_imports_only_its_room_or_lower(module: str) -> None:
    if module in SHIMS:
        return
    mine = _layer(_room(module))
    upward = sorted(t for t in GRAPH[module] if _layer(_room(t)) > mine)
    assert upward == [], f"{module} imports from a higher layer: {upward}"


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]

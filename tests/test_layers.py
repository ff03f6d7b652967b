"""The package's layers, checked from its own imports (docs/architecture.md, "Layers").

science <- data <- stacks <- hub / jobs <- service / cli / platform

Every import (module level or inside a function: both are dependencies) goes to the same
layer or a lower one, and there is no import circle between modules nor between top-level
units. A stack's package holds its science (lowest layer) and its plug-ins, which sit in the
top layer: the web routes, CLI commands, widgets, clients and job functions named in
``STACK_PLUGINS``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dass"

LAYERS = ("base", "science", "data", "stacks", "hub/jobs", "front")
#: modules of the stacks' packages that plug the science into the platform (top layer)
STACK_PLUGINS = {
    "dass.sem.cli", "dass.sem.client", "dass.sem.widgets", "dass.sem.labels", "dass.sem.web",
    "dass.sem.nexus",
    "dass.kmap.service", "dass.kmap.widgets",
    "dass.stm.catalog", "dass.stm.service", "dass.stm.widgets", "dass.stm.still_widgets", "dass.stm.cli",
}
BASE = {"dass", "dass.config", "dass.client", "dass.errors", "dass.versions", "dass.slurm"}
SCIENCE = ("dass.sem", "dass.kmap", "dass.stm")
FRONT = ("dass.service", "dass.cli", "dass.platform", "dass.demo", "dass.__main__")


def layer(module: str) -> str:
    if module in BASE:
        return "base"
    if module in STACK_PLUGINS:
        return "front"
    top = ".".join(module.split(".")[:2])
    if top in SCIENCE:
        return "science"
    if top == "dass.data":
        return "data"
    if top == "dass.stacks":
        return "stacks"
    if top in ("dass.hub", "dass.jobs"):
        return "hub/jobs"
    if top in FRONT:
        return "front"
    raise AssertionError(f"{module}: no layer; add it to tests/test_layers.py and docs/architecture.md")


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        found[".".join(parts)] = path
    return found


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the dass modules it imports (relative imports resolved)."""
    edges: dict[str, set[str]] = {}
    for name, path in mods.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    parts = parts[: len(parts) - (node.level - 1)]
                    base = ".".join([*parts, base] if base else parts)
                candidates = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for c in candidates:
                # the longest known module the import names
                while c and c not in mods:
                    c = c.rpartition(".")[0]
                if c and c != name and c != "dass" and not name.startswith(c + "."):
                    targets.add(c)
        edges[name] = targets
    return edges


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
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

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


@pytest.fixture(scope="module")
def graph():
    return imports(modules())


def test_every_module_has_a_layer(graph):
    for name in graph:
        layer(name)


def test_no_import_runs_up_a_layer(graph):
    upward = [
        f"{m} ({layer(m)}) imports {t} ({layer(t)})"
        for m, ts in sorted(graph.items())
        for t in sorted(ts)
        if LAYERS.index(layer(t)) > LAYERS.index(layer(m))
    ]
    assert not upward, "imports that run up a layer:\n" + "\n".join(upward)


def test_no_import_circle_between_modules(graph):
    assert cycles(graph) == []


def test_no_knot_between_top_level_units(graph):
    def unit(m: str) -> str:
        parts = m.split(".")
        return parts[1] if len(parts) > 1 else "dass"

    units: dict[str, set[str]] = {}
    for m, ts in graph.items():
        for t in ts:
            if unit(m) != unit(t):
                units.setdefault(unit(m), set()).add(unit(t))
    assert cycles(units) == []


def test_the_checker_sees_an_upward_import(tmp_path):
    """The checker itself: a data module importing the service is caught."""
    assert LAYERS.index(layer("dass.service.app")) > LAYERS.index(layer("dass.data.catalog"))
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_no_module_is_long_without_a_reason():
    """Modules over 600 lines say at their top why they stay whole."""
    long = []
    for name, path in modules().items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 600 and "Why one module" not in text[:3000]:
            long.append(f"{name} ({text.count(chr(10))} lines)")
    assert not long, "split these or say why at the top (a 'Why one module' paragraph):\n" + "\n".join(long)

"""The package's import graph (read from the source with ``ast``): no cycles, no other module's private names."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "afvae"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> list[tuple[str, str | None]]:
    """(afvae module imported, name taken from it or None) for every import in ``path``, function-level too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.startswith("afvae")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("afvae") and not node.level:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.append((sub, None) if sub in modules else (node.module, a.name))
    return found


def graph() -> tuple[dict[str, set[str]], list[str]]:
    """module -> afvae modules it imports; and every private name imported from another module."""
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    edges, private = {m: set() for m in files}, []
    for mod, path in files.items():
        for target, name in imports(path, set(files)):
            if target != mod:
                edges[mod].add(target)
            if name and name.startswith("_") and target != mod:
                private.append(f"{mod} imports {target}.{name}")
    return edges, private


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(m: str, stack: list[str]) -> list[str] | None:
        state[m] = 1
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (cycle := visit(t, stack + [t])):
                return cycle
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state and (cycle := visit(m, [m])):
            return cycle
    return None


def test_no_import_cycle():
    assert find_cycle(graph()[0]) is None, " -> ".join(find_cycle(graph()[0]))


def test_no_private_cross_module_import():
    assert graph()[1] == []


@pytest.mark.parametrize("low, high", [("afvae.data.datasets", "afvae.model"), ("afvae.metrics", "afvae.data.synthetic"),
                                       ("afvae.model", "afvae.train"), ("afvae.images", "afvae.model"),
                                       ("afvae.losses", "afvae.model"), ("afvae.train", "afvae.evaluate")])
def test_lower_floor_does_not_import_higher(low, high):
    assert high not in graph()[0][low]


# The floor below the model: what the data modules may import (README, Layout).
DATA_FLOOR = ("afvae.config", "afvae.atomic", "afvae.images", "afvae.tables", "afvae.boundaries", "afvae.weights",
              "afvae.cli", "afvae.data")
WING = "afvae.data.real"


def test_real_data_wing_stays_on_the_data_floor():
    edges = graph()[0]
    parts = {f"{WING}.{m}" for m in ("readers", "landmarks", "align", "prepare")}
    assert parts <= set(edges), "the real-data wing's modules were not found"
    above = [f"{m} imports {t}" for m in sorted(parts | {WING}) for t in sorted(edges[m])
             if not any(t == f or t.startswith(f + ".") for f in DATA_FLOOR)]
    assert above == []
    # readers, landmarks and align are independent steps; only prepare ties them together
    assert [f"{m} imports {t}" for m in sorted(parts - {f"{WING}.prepare"}) for t in edges[m] if t in parts] == []


def test_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None

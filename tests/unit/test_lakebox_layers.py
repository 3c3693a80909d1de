"""The floors of lakebox: imports point one way, and no module of the project imports itself back (ADR 0019).

    cli -> lakebox (the face: open_box, Lakebox) -> app -> box -> home -> services -> cfn, sfn -> errors

Every import counts: at module level, inside functions, and under `TYPE_CHECKING` (an import that only the type
checker follows still ties the two modules together). A module may import its own floor or any floor below it;
`cfn` and `sfn` are one floor and do not import each other. The cycle check covers all the project's non-test
Python (lakebox, the `datalake` package, the Spark jobs, bench and scripts).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {"lakebox": ROOT / "lakebox", "datalake": ROOT / "layers/common/datalake", "glue": ROOT / "glue"}
SCRIPTS = ("bench", "scripts")
FLOORS: tuple[tuple[str, ...], ...] = (
    ("lakebox.cli",),
    ("lakebox", "lakebox.runtime"),
    ("lakebox.app",),
    ("lakebox.box",),
    ("lakebox.home",),
    ("lakebox.services",),
    ("lakebox.cfn", "lakebox.sfn"),
    ("lakebox.errors",),
)
"""lakebox's floors, top first: a module belongs to the floor of the longest prefix naming it."""
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}
"""(importer, imported) pairs that still point up, each with the reason; only ever shrinks."""
ALLOWED_CYCLES: dict[frozenset[str], str] = {}
"""Import cycles still present (as the set of their modules), each with the reason; only ever shrinks."""


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    for folder in SCRIPTS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            found[f"{folder}.{'.'.join(path.relative_to(ROOT / folder).with_suffix('').parts)}"] = path
    return found


def _imported(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every module name `name` imports, with the line, wherever the import statement is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno
            if not name.startswith(f"{base}."):
                # `from package import sibling` inside the package names the sibling: its package is already
                # initialised (or initialising) when the importer runs, so the import adds no edge to it
                yield base, node.lineno


def _graph() -> dict[str, dict[str, int]]:
    """Module -> the project modules it imports (the deepest existing module each import names) -> first line."""
    modules = _modules()
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges: dict[str, int] = {}
        for target, line in _imported(name, path):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.setdefault(target, line)
        graph[name] = edges
    return graph


def _floor(module: str) -> int | None:
    best: tuple[int, int] | None = None
    for rank, prefixes in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(f"{prefix}.")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), rank)
    return None if best is None else best[1]


def _peer(module: str) -> str:
    """The top package within a floor (`lakebox.cfn` and `lakebox.sfn` share a floor but not a package)."""
    return ".".join(module.split(".")[:2])


def upward_imports(graph: dict[str, dict[str, int]]) -> list[str]:
    """`importer:line -> imported` for every import that reaches a higher floor, or a peer package on the same."""
    found = []
    for importer, edges in sorted(graph.items()):
        low = _floor(importer)
        if low is None or not importer.startswith("lakebox"):
            continue
        for imported, line in sorted(edges.items()):
            high = _floor(imported)
            if high is None:
                continue
            peers = high == low and len(FLOORS[low]) > 1 and _peer(importer) != _peer(imported)
            if (high < low or peers) and (importer, imported) not in ALLOWED_UPWARD:
                found.append(f"{importer}:{line} -> {imported}")
    return found


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, int]]:
    return _graph()


def test_every_lakebox_module_sits_on_a_floor(graph: dict[str, dict[str, int]]) -> None:
    # GIVEN every module of lakebox THEN each belongs to one of the floors
    assert [m for m in graph if m.startswith("lakebox") and _floor(m) is None] == []


def test_no_lakebox_import_points_up(graph: dict[str, dict[str, int]]) -> None:
    # GIVEN every import of lakebox, inside functions and under TYPE_CHECKING too
    # WHEN each is placed on the floors THEN none reaches a floor above its importer
    assert upward_imports(graph) == []


def test_no_import_cycle_in_the_projects_code(graph: dict[str, dict[str, int]]) -> None:
    # GIVEN the import graph of all non-test code WHEN its cycles are found THEN there are none beyond the allowed
    assert [c for c in cycles(graph) if frozenset(c) not in ALLOWED_CYCLES] == []


def test_the_allow_lists_name_only_what_still_exists(graph: dict[str, dict[str, int]]) -> None:
    # GIVEN the allowed exceptions THEN each is still there (a fixed one leaves the list, so the list only shrinks)
    assert [pair for pair in ALLOWED_UPWARD if pair[1] not in graph.get(pair[0], {})] == []
    assert [c for c in ALLOWED_CYCLES if c not in {frozenset(x) for x in cycles(graph)}] == []


def test_the_guard_sees_an_upward_import_and_a_cycle(tmp_path: Path) -> None:
    # GIVEN a service that imports the box inside a function, and the box that imports the service
    graph = {"lakebox.services.x": {"lakebox.box": 3}, "lakebox.box": {"lakebox.services.x": 1}}
    # THEN both the upward import and the cycle are reported
    assert upward_imports(graph) == ["lakebox.services.x:3 -> lakebox.box"]
    assert cycles(graph) == [["lakebox.box", "lakebox.services.x"]]
    # AND cfn and sfn, one floor, do not import each other
    assert upward_imports({"lakebox.cfn.stack": {"lakebox.sfn.registry": 5}}) == [
        "lakebox.cfn.stack:5 -> lakebox.sfn.registry"
    ]


def test_imports_under_type_checking_and_inside_functions_are_read(tmp_path: Path) -> None:
    # GIVEN a module whose imports hide under TYPE_CHECKING, inside a function, and relative to its package
    source = tmp_path / "x.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from lakebox.box import Lakebox\n"
        "def f() -> None:\n    from . import cli\n"
    )
    # WHEN its imports are read THEN every one is there
    assert {name for name, _ in _imported("lakebox.services.x", source)} >= {"lakebox.box", "lakebox.services.cli"}


def test_the_lakes_folder_and_its_variable_are_named_in_home_only() -> None:
    # GIVEN every string constant of lakebox's code
    # WHEN the folder's name or LAKEBOX_HOME is one of them THEN it is in lakebox/home/__init__.py (LakeHome) only
    found = sorted(
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in (ROOT / "lakebox").rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Constant) and node.value in (".lakebox", "LAKEBOX_HOME")
    )
    assert [f for f in found if not f.startswith("lakebox/home/__init__.py:")] == []
    assert found

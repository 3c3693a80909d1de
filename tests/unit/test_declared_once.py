"""Declared once: no registered dataset's name is written in the pipeline's generic code (issue: datasets as data).

The engine, the handlers, the Spark job, the state machines and lakebox's runtime read every dataset fact from the
registry; a dataset name there would be a second declaration that a new dataset's author cannot know to edit.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from datalake.contracts import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
GENERIC = ("layers/common/datalake", "glue", "functions", "lakebox", "statemachines")
DOMAIN = {
    "layers/common/datalake/contracts": "the dataset declarations themselves",
    "lakebox/app/sample.py": "the sample data `lakebox run` generates for the example datasets",
    "lakebox/app/demo.py": "`lakebox run`, the demo over that sample data",
    "lakebox/app/options.py": "the help of the options of `lakebox run` and `lakebox sample`, which speak of that data",
    "lakebox/app/source_api.py": "the sample source API, which serves the example sales",
    "lakebox/app/dashboard.py": "the KPI page over the example curated tables (its SQL is in sql/dashboard/)",
    "layers/common/datalake/forecast.py": "the sales forecast, a consumer of the curated sales tables",
    "functions/plan_forecast": "the sales forecast's planning handler",
}


def _domain(path: Path) -> bool:
    relative = path.relative_to(ROOT).as_posix()
    return any(relative == d or relative.startswith(f"{d}/") for d in DOMAIN)


def _prose(tree: ast.AST) -> set[int]:
    """The strings that are statements of their own: docstrings, of modules, classes, functions and attributes."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    }


def _strings(path: Path) -> Iterator[tuple[int, str]]:
    """Every string the code uses (docstrings and comments are prose, not declarations)."""
    if path.suffix == ".json":
        document = json.loads(path.read_text())

        def walk(value: object) -> Iterator[str]:
            if isinstance(value, dict):
                for key, item in value.items():
                    if key != "Comment":
                        yield from walk(item)
            elif isinstance(value, list):
                for item in value:
                    yield from walk(item)
            elif isinstance(value, str):
                yield value

        yield from ((0, text) for text in walk(document))
        return
    tree = ast.parse(path.read_text(), str(path))
    prose = _prose(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            yield node.lineno, node.value


def _generic_files() -> list[Path]:
    files = [p for folder in GENERIC for p in sorted((ROOT / folder).rglob("*")) if p.suffix in {".py", ".json"}]
    return [p for p in files if not _domain(p) and "__pycache__" not in p.parts]


def test_no_dataset_name_is_written_in_generic_code() -> None:
    # GIVEN every registered dataset's name as a word
    names = re.compile(r"\b(" + "|".join(map(re.escape, sorted(REGISTRY))) + r")\b")
    # WHEN every string of the generic code is scanned THEN none names a dataset
    found = [
        f"{path.relative_to(ROOT)}:{line}: {text!r}"
        for path in _generic_files()
        for line, text in _strings(path)
        if names.search(text)
    ]
    assert not found, "dataset names in generic code (declare them in the dataset's module):\n" + "\n".join(found)


@pytest.mark.parametrize("folder", sorted(DOMAIN))
def test_every_exemption_exists(folder: str) -> None:
    # GIVEN an exemption THEN it names a real path (a stale one would hide nothing and mislead)
    assert (ROOT / folder).exists()


def test_the_scan_sees_a_name_written_in_code(tmp_path: Path) -> None:
    # GIVEN code naming a dataset in a string, and prose naming one THEN only the code is found
    source = tmp_path / "x.py"
    source.write_text('"""Reads sales."""\n\nDEFAULT = ("sales",)  # sales\n')
    assert [text for _, text in _strings(source)] == ["sales"]

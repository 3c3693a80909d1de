"""The Athena SQL conformance corpus: queries with the values and types Trino's reference documents for them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Case:
    """One query of the corpus: the first row as Athena prints it and its column types, or the error it raises."""

    file: str
    ref: str
    sql: str
    values: tuple[str | None, ...] | None
    types: tuple[str, ...] | None
    error: str | None
    rows: tuple[tuple[str | None, ...], ...] | None

    @property
    def id(self) -> str:
        return f"{self.file}:{self.sql[:70]}"


def _row(items: list[Any]) -> tuple[str | None, ...]:
    return tuple(None if v is None else str(v) for v in items)


def load_cases() -> list[Case]:
    """Every case of every ``*.yaml`` file beside this module, in file order."""
    cases = []
    for path in sorted(HERE.glob("*.yaml")):
        for raw in yaml.safe_load(path.read_text()):
            cases.append(
                Case(
                    file=path.stem,
                    ref=str(raw["ref"]),
                    sql=str(raw["sql"]),
                    values=_row(raw["values"]) if "values" in raw else None,
                    types=tuple(raw["types"]) if "types" in raw else None,
                    error=raw.get("error"),
                    rows=tuple(_row(r) for r in raw["rows"]) if "rows" in raw else None,
                )
            )
    return cases


def _type(column: dict[str, Any]) -> str:
    """A ColumnInfo's type; Athena gives a decimal's precision and scale beside its type name."""
    if column["Type"] == "decimal":
        return f"decimal({column['Precision']},{column['Scale']})"
    return str(column["Type"])


def result_of(response_pages: list[dict[str, Any]]) -> tuple[list[tuple[str | None, ...]], list[str]]:
    """Rows (header dropped) and column types from GetQueryResults pages."""
    rows: list[tuple[str | None, ...]] = []
    types: list[str] = []
    for number, page in enumerate(response_pages):
        result = page["ResultSet"]
        if number == 0:
            types = [_type(c) for c in result["ResultSetMetadata"]["ColumnInfo"]]
        data = result["Rows"][1:] if number == 0 else result["Rows"]
        rows.extend(tuple(cell.get("VarCharValue") for cell in row["Data"]) for row in data)
    return rows, types


def differences(
    case: Case, rows: list[tuple[str | None, ...]] | None, types: list[str] | None, error: str | None
) -> list[str]:
    """What differs between a case's expectation and an answer (empty when they agree)."""
    found: list[str] = []
    if case.error is not None:
        if error is None or not error.startswith(case.error):
            found.append(f"expected an error {case.error}, got {error or rows}")
        return found
    if error is not None:
        return [f"failed: {error}"]
    assert rows is not None and types is not None
    if case.rows is not None and tuple(rows) != case.rows:
        found.append(f"rows {rows} != {list(case.rows)}")
    if case.values is not None and (not rows or rows[0] != case.values):
        found.append(f"values {rows[0] if rows else None} != {list(case.values)}")
    if case.types is not None and tuple(types) != case.types:
        found.append(f"types {types} != {list(case.types)}")
    return found

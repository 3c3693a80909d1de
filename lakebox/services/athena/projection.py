"""Partition projection: a table whose ``projection.*`` properties enumerate its partitions, read as Athena reads it
(the catalog's partitions ignored, locations from ``storage.location.template`` or the Hive layout)."""

from __future__ import annotations

import calendar
import datetime as dt
import itertools
import re
from typing import Final

from sqlglot import exp

from lakebox.services.athena.functions import PatternError, java_to_strftime
from lakebox.services.athena.model import _Partition, _QueryError, _Table

__all__ = ["injected_values", "is_projected", "projected_partitions"]

MAX_PROJECTED: Final = 1_000_000
"""More partitions than this in one table's projection is refused rather than enumerated."""
_NOW: Final = re.compile(r"NOW\s*(?:(?P<sign>[+-])\s*(?P<count>\d+)\s*(?P<unit>[A-Z]+?)S?)?", re.IGNORECASE)
_UNITS: Final = {"YEAR", "MONTH", "WEEK", "DAY", "HOUR", "MINUTE", "SECOND"}


def is_projected(table: _Table) -> bool:
    """Whether Athena reads `table` through partition projection."""
    return table.parameters.get("projection.enabled", "").strip().lower() == "true" and bool(table.partition_keys)


def _property(table: _Table, column: str, name: str) -> str | None:
    value = table.parameters.get(f"projection.{column}.{name}")
    return None if value is None else value.strip()


def _required(table: _Table, column: str, name: str) -> str:
    value = _property(table, column, name)
    if not value:
        raise _QueryError(
            f"HIVE_METASTORE_ERROR: Table {table.qualified}: property 'projection.{column}.{name}' is missing"
        )
    return value


def _add(moment: dt.datetime, count: int, unit: str) -> dt.datetime:
    if unit in {"YEAR", "MONTH"}:
        months = moment.month - 1 + count * (12 if unit == "YEAR" else 1)
        year, month = moment.year + months // 12, months % 12 + 1
        day = min(moment.day, calendar.monthrange(year, month)[1])
        return moment.replace(year=year, month=month, day=day)
    seconds = {"WEEK": 604800, "DAY": 86400, "HOUR": 3600, "MINUTE": 60, "SECOND": 1}[unit]
    return moment + dt.timedelta(seconds=count * seconds)


def _date_bound(text: str, fmt: str, now: dt.datetime, where: str) -> dt.datetime:
    match = _NOW.fullmatch(text.strip())
    if match:
        if not match.group("sign"):
            return now
        unit = match.group("unit").upper()
        if unit not in _UNITS:
            raise _QueryError(f"HIVE_METASTORE_ERROR: {where}: unknown unit {unit!r} in {text!r}")
        count = int(match.group("count")) * (1 if match.group("sign") == "+" else -1)
        return _add(now, count, unit)
    try:
        return dt.datetime.strptime(text.strip(), fmt)
    except ValueError as exc:
        raise _QueryError(f"HIVE_METASTORE_ERROR: {where}: {text!r} does not match the format") from exc


def _default_unit(pattern: str) -> str:
    for letters, unit in (("s", "SECOND"), ("m", "MINUTE"), ("H", "HOUR"), ("d", "DAY"), ("M", "MONTH")):
        if letters in re.sub(r"'[^']*'", "", pattern):
            return unit
    return "YEAR"


def _column_values(table: _Table, column: str, injected: dict[str, list[str]], now: dt.datetime) -> list[str]:
    kind = _required(table, column, "type").lower()
    where = f"Table {table.qualified}, projected column {column}"
    if kind == "enum":
        return [v.strip() for v in _required(table, column, "values").split(",") if v.strip()]
    if kind == "integer":
        low, _, high = _required(table, column, "range").partition(",")
        step = int(_property(table, column, "interval") or "1")
        digits = int(_property(table, column, "digits") or "0")
        return [str(n).zfill(digits) for n in range(int(low), int(high) + 1, step)]
    if kind == "date":
        pattern = _required(table, column, "format")
        try:
            fmt = java_to_strftime(pattern)
        except PatternError as exc:
            raise _QueryError(f"NOT_SUPPORTED: {where}: format with {exc}") from exc
        low, _, high = _required(table, column, "range").partition(",")
        start, end = _date_bound(low, fmt, now, where), _date_bound(high, fmt, now, where)
        step = int(_property(table, column, "interval") or "1")
        unit = (_property(table, column, "interval.unit") or _default_unit(pattern)).upper().rstrip("S")
        if unit not in _UNITS:
            raise _QueryError(f"HIVE_METASTORE_ERROR: {where}: unknown interval unit {unit!r}")
        values, moment, count = [], start, 0
        while moment <= end:
            values.append(moment.strftime(fmt))
            count += 1
            moment = _add(start, count * step, unit)
            if count > MAX_PROJECTED:
                break
        return values
    if kind == "injected":
        if column not in injected:
            raise _QueryError(
                f"CONSTRAINT_VIOLATION: For the injected projected partition column {column}, the WHERE clause must "
                "contain only static equality conditions, and at least one such condition must be present."
            )
        return injected[column]
    raise _QueryError(f"HIVE_METASTORE_ERROR: {where}: unknown projection type {kind!r}")


def projected_partitions(
    table: _Table, injected: dict[str, list[str]], now: dt.datetime | None = None
) -> list[_Partition]:
    """Every partition the projection of `table` defines, with its location.

    Parameters
    ----------
    table
        A table with ``projection.enabled`` set.
    injected
        The values a query's WHERE clause gives each ``injected`` column (see `injected_values`).
    now
        The moment ``NOW`` stands for in date ranges (UTC now when omitted).
    """
    moment = (now or dt.datetime.now(dt.UTC)).replace(tzinfo=None)
    names = [name for name, _ in table.partition_keys]
    dimensions = [_column_values(table, name, injected, moment) for name in names]
    total = 1
    for values in dimensions:
        total *= len(values)
    if total > MAX_PROJECTED:
        raise _QueryError(
            f"NOT_SUPPORTED: the projection of {table.qualified} defines {total} partitions; lakebox enumerates at "
            f"most {MAX_PROJECTED}"
        )
    template = table.parameters.get("storage.location.template")
    partitions = []
    for combination in itertools.product(*dimensions):
        if template:
            location = template
            for name, value in zip(names, combination, strict=True):
                location = location.replace("${" + name + "}", value)
        else:
            path = "/".join(f"{n}={v}" for n, v in zip(names, combination, strict=True))
            location = f"{table.location.rstrip('/')}/{path}/"
        partitions.append(_Partition(tuple(combination), location))
    return partitions


def injected_values(where: exp.Expr | None, alias: str, columns: set[str]) -> dict[str, list[str]]:
    """The literal values a WHERE clause's top-level conjuncts give each of `columns` (``=`` and ``IN``)."""
    found: dict[str, list[str]] = {}
    if where is None:
        return found
    stack = [where.this if isinstance(where, exp.Where) else where]
    while stack:
        node = stack.pop()
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.And):
            stack.extend([node.this, node.expression])
            continue
        if isinstance(node, exp.EQ):
            pairs = [(node.this, [node.expression]), (node.expression, [node.this])]
        elif isinstance(node, exp.In) and not node.args.get("query"):
            pairs = [(node.this, list(node.expressions))]
        else:
            continue
        for column, literals in pairs:
            if (
                isinstance(column, exp.Column)
                and column.name in columns
                and column.table in {alias, ""}
                and all(isinstance(v, exp.Literal) for v in literals)
            ):
                found[column.name] = [v.name for v in literals]
    return found

"""Differential check: every curated table recomputed from the processed Parquet with DuckDB, row by row.

The published tables are read through the local Athena (catalog, partitions, run folders: what an analyst sees).
The expected rows come from the processed zone alone: its Parquet files copied out of S3 and read by a DuckDB of
our own, each dataset's rollups computed from its rows as declared (never the Spark job's rollups, ADR 0030), the
curated SQL (`sql/curated/<table>.sql`, every processed date for a partitioned table, each row enriched at its own
event time; a table reading another curated table reads it as computed here) and the reference views
(`sql/views/`), transpiled from Trino with sqlglot and Trino's decimal arithmetic. Nothing of the plan, the ledger or
the run history takes part: after a run that ends SUCCEEDED the two must be equal, whatever
happened before (ADR 0017).
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
from collections import Counter
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import sqlglot
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

from datalake.contracts import REGISTRY
from datalake.contracts.base import Rollup
from datalake.curation import curated_tables, reference_views, render, sql_text
from lakebox.services.athena.trino_decimal import DIVIDE_MACRO, exact_decimals

SCHEMA = "lake"


def _download(box: Any, folder: Path) -> dict[str, list[dt.date]]:
    """Copy every dataset's processed Parquet out of the local S3; return each dataset's event dates."""
    s3 = box.session.client("s3")
    bucket = box.bucket("ProcessedBucket")
    dates: dict[str, set[dt.date]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            key = item["Key"]
            dataset = key.split("/", 1)[0]
            if dataset not in REGISTRY or not key.endswith(".parquet") or "/event_date=" not in key:
                continue
            target = folder / key
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(target))
            day = key.split("/event_date=", 1)[1].split("/", 1)[0]
            dates.setdefault(dataset, set()).add(dt.date.fromisoformat(day))
    return {name: sorted(days) for name, days in dates.items()}


def _trino(sql: str, con: duckdb.DuckDBPyConnection) -> str:
    """Trino SQL over `lake.*` as DuckDB runs it, with Trino's exact decimal arithmetic."""
    mapping: dict[str, dict[str, dict[str, str]]] = {SCHEMA: {}}
    for name, column, kind in con.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = ?", [SCHEMA]
    ).fetchall():
        mapping[SCHEMA].setdefault(name, {})[column] = kind
    schema = MappingSchema(mapping, dialect="duckdb")
    tree = sqlglot.parse_one(sql, read="athena")
    tree = qualify(tree, schema=schema, db=SCHEMA, dialect="athena", quote_identifiers=True)
    tree = annotate_types(tree, schema=schema, dialect="athena")
    return exact_decimals(tree).sql(dialect="duckdb")


def expected_tables(
    box: Any, tables: Iterable[str] | None = None
) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    """Each curated table's columns and rows as its SQL computes them over the processed zone as it stands."""
    wanted = set(tables) if tables is not None else None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        dates = _download(box, folder)
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        con.execute(DIVIDE_MACRO)
        con.execute(f"CREATE SCHEMA {SCHEMA}")
        for name in dates:
            files = (folder / name).as_posix() + "/**/*.parquet"
            con.execute(
                f"CREATE TABLE {SCHEMA}.{name} AS SELECT * REPLACE (CAST(event_date AS DATE) AS event_date) "
                f"FROM read_parquet('{files}', hive_partitioning = true, union_by_name = true)"
            )
        for name in dates:  # each rollup computed directly from its dataset's rows, as its declaration says
            for rollup in REGISTRY[name].rollups:
                con.execute(f"CREATE VIEW {SCHEMA}.{rollup.name} AS {_trino(_rollup_select(name, rollup), con)}")
        for view in reference_views():
            if view.values["source"] not in dates:
                continue
            select = render(sql_text(view.template), {"database": SCHEMA, **view.values})
            con.execute(f"CREATE VIEW {SCHEMA}.{view.name} AS {_trino(select, con)}")
        found: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
        declared = curated_tables()
        needed = {t.name for t in declared} if wanted is None else set(wanted)
        for table in reversed(declared):  # and the curated tables those read, declared before them
            if table.name in needed:
                needed.update(_curated_reads(table.name) & {t.name for t in declared})
        for table in declared:
            if table.name not in needed:
                continue
            text = sql_text(f"curated/{table.name}.sql")
            if not table.reads <= set(dates):
                if wanted is None or table.name in wanted:
                    found[table.name] = ([], [])
                continue
            days = dates[table.dataset] if table.partition_column else []
            listed = ", ".join(f"DATE '{day.isoformat()}'" for day in days) or "NULL"
            # every date enriched at each row's own event time: the reference the steady-date shortcut must equal
            values = {"database": SCHEMA, "dates": listed, "versioned_dates": listed, "steady_dates": "NULL"}
            select = _trino(render(text, values), con)
            con.execute(f"CREATE TABLE {SCHEMA}.{table.name} AS {select}")
            cursor = con.execute(f"SELECT * FROM {SCHEMA}.{table.name}")
            if wanted is None or table.name in wanted:
                found[table.name] = ([d[0] for d in cursor.description], cursor.fetchall())
        con.close()
        return found


def _rollup_select(dataset: str, rollup: Rollup) -> str:
    """A rollup of the dataset's processed rows in Trino SQL: what the Spark job's rollup must equal."""
    functions = {"count": "COUNT(*)", "count_distinct": "COUNT(DISTINCT {})", "sum": "SUM({})"}
    measures = [f"{functions[m.kind].format(m.column)} AS {m.name}" for m in rollup.measures]
    groups = ", ".join(rollup.group_by)
    return f"SELECT {groups}, {', '.join(measures)}, event_date FROM {SCHEMA}.{dataset} GROUP BY event_date, {groups}"


def _curated_reads(table: str) -> set[str]:
    """The tables a curated query names (datasets, reference views and curated tables alike)."""
    return set(re.findall(r"\{\{\s*database\s*\}\}\.([a-z_][a-z0-9_]*)", sql_text(f"curated/{table}.sql")))


def _value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float, Decimal)):
        number = Decimal(str(value))
        return format(number.normalize(), "f")
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _rows(columns: list[str], rows: list[tuple[Any, ...]], order: list[str]) -> Counter[tuple[Any, ...]]:
    index = [columns.index(c) for c in order]
    return Counter(tuple(_value(row[i]) for i in index) for row in rows)


def published_table(box: Any, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The published table as Athena answers `SELECT *`; no columns when it does not exist yet."""
    from lakebox.services.athena import QueryFailedError

    database = str(box.stack.parameters["GlueDatabaseName"])
    workgroup = str(box.stack.ref("AnalyticsWorkGroup"))
    try:
        result = box.athena.query(f"SELECT * FROM {table}", workgroup=workgroup, database=database)
    except QueryFailedError as exc:
        if "TABLE_NOT_FOUND" in str(exc) or "does not exist" in str(exc):
            return [], []
        raise
    return list(result.columns), list(result.rows)


def curated_differences(box: Any, tables: Iterable[str] | None = None, *, limit: int = 10) -> list[str]:
    """Why the published curated tables differ from their SQL over the processed zone (empty when they agree).

    Parameters
    ----------
    box
        The running lakebox.
    tables
        The tables to compare (every declared one by default): a PARTIAL run leaves its held tables out.
    limit
        Rows shown per table and side.
    """
    problems: list[str] = []
    for table, (columns, rows) in expected_tables(box, tables).items():
        published_columns, published_rows = published_table(box, table)
        if not rows and not published_rows:
            continue
        if rows and not published_columns:
            problems.append(f"{table}: not published, expected {len(rows)} rows")
            continue
        order = sorted(published_columns)
        if columns and sorted(columns) != order:
            problems.append(f"{table}: columns {order}, expected {sorted(columns)}")
            continue
        want = _rows(columns or order, rows, order)
        have = _rows(published_columns, published_rows, order)
        if want == have:
            continue
        missing, extra = want - have, have - want
        problems.append(f"{table}: {sum(missing.values())} rows missing, {sum(extra.values())} unexpected ({order})")
        problems += [f"  missing    {row}" for row in list(missing)[:limit]]
        problems += [f"  unexpected {row}" for row in list(extra)[:limit]]
    return problems

"""Benchmark: local Athena's exact DECIMAL division against DuckDB's floating-point one, on the same rows.

Run with `.venv/bin/python bench/decimals.py [--rows N] [--repeat K]`. A DuckDB table of `decimal(18,2)` amounts is
queried three ways a curated table or a named query divides money: per row (`amount / quantity`), per group
(`sum(amount) / count(*)`, as `daily_sales_by_region`), and as a window average (as `daily_revenue_trend`). Each
query runs as sqlglot transpiles it (DuckDB divides in DOUBLE) and as lakebox runs it
(`lakebox.services.athena.trino_decimal`: exact, HALF_UP). Prints a table of medians, the rows whose value
differs, and one line of `key=value` figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "common")]

QUERIES = {
    "row": "SELECT CAST(amount / quantity AS decimal(18, 2)) AS v FROM lake.sales",
    "group": "SELECT CAST(SUM(amount) / COUNT(*) AS decimal(18, 2)) AS v FROM lake.sales GROUP BY grp",
    "window": "SELECT CAST(AVG(amount) OVER (PARTITION BY grp) AS decimal(18, 2)) AS v FROM lake.sales",
}


def main() -> None:
    """Time each query both ways and print the table."""
    import duckdb
    import sqlglot
    from sqlglot.optimizer.annotate_types import annotate_types
    from sqlglot.optimizer.qualify import qualify
    from sqlglot.schema import MappingSchema

    from lakebox.services.athena.trino_decimal import DIVIDE_MACRO, exact_decimals

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--groups", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    con = duckdb.connect()
    con.execute(DIVIDE_MACRO)
    con.execute(
        "CREATE SCHEMA lake; CREATE TABLE lake.sales AS SELECT "
        "CAST(round(random() * 100000, 2) AS DECIMAL(18, 2)) AS amount, CAST(1 + i % 7 AS INTEGER) AS quantity, "
        f"i % {args.groups} AS grp FROM range({args.rows}) AS t(i)"
    )
    schema = MappingSchema(
        {"lake": {"sales": {"amount": "decimal(18,2)", "quantity": "int", "grp": "bigint"}}}, dialect="hive"
    )
    rows: list[tuple[str, float, float, float, int]] = []
    figures = {"rows": str(args.rows)}
    for name, sql in QUERIES.items():
        tree = qualify(sqlglot.parse_one(sql, read="athena"), schema=schema, db="lake", dialect="athena")
        exact = exact_decimals(annotate_types(tree, schema=schema, dialect="athena")).sql("duckdb")
        floating = sqlglot.transpile(sql, read="athena", write="duckdb")[0]
        times: dict[str, list[float]] = {"float": [], "exact": []}
        for _ in range(args.repeat):
            for kind, query in (("float", floating), ("exact", exact)):
                start = time.perf_counter()
                con.sql(f"SELECT sum(v) FROM ({query})").fetchall()
                times[kind].append(time.perf_counter() - start)
        differ = con.sql(f"SELECT count(*) FROM (({floating}) EXCEPT ALL ({exact}))").fetchone()
        f, e = statistics.median(times["float"]), statistics.median(times["exact"])
        rows.append((name, f, e, e / f, int(differ[0]) if differ else 0))
        figures[f"{name}_ratio"] = f"{e / f:.2f}"

    print(f"\n{args.rows:,} decimal(18,2) rows, {args.groups:,} groups; median of {args.repeat} runs\n")
    print(f"| {'query':<8} | {'DOUBLE s':>8} | {'exact s':>8} | {'exact/DOUBLE':>12} | {'values that differ':>18} |")
    print(f"|{'-' * 10}|{'-' * 9}:|{'-' * 9}:|{'-' * 13}:|{'-' * 19}:|")
    for name, f, e, ratio, changed in rows:
        print(f"| {name:<8} | {f:>8.3f} | {e:>8.3f} | {ratio:>11.1f}x | {changed:>18,} |")
    print(" ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()

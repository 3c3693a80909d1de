"""Benchmark: the 22 TPC-H queries through the local Athena engine and natively in DuckDB on the same Parquet.

Run with `.venv/bin/python bench/athena.py [--sf 0.01] [--repeat 3]`. DuckDB's `tpch` extension (the PyPI package
`duckdb-extension-tpch`) generates the data and holds the official queries and answers (sf 0.01, 0.1 and 1). Each
table is written once as Parquet, uploaded to the local endpoint and registered as a Glue table; then every query runs
through the local Athena engine (`StartQueryExecution`, its `EngineExecutionTimeInMillis`, results read back with
`GetQueryResults`), natively in DuckDB over the same S3 objects (httpfs against the same endpoint) and natively over
the local copies of the files. Every answer is checked against the official one. Times are medians of `--repeat`,
after one warm-up run of each query on each path. The moto server is lakebox's endpoint, whose record of changes
lets the engine keep what it read between queries, as it does in a box.
Finally `lakebox query "SELECT 1"` runs as a subprocess with a `lakebox up` running (started in a temporary
`LAKEBOX_HOME` and stopped at the end): the wall time a user waits, median of `--repeat`.

Prints a table per query, then `athena_vs_duckdb=R` (sum of the Athena engine's medians over the sum of DuckDB's on
S3) with the other figures (`athena_first_vs_duckdb`: the warm-up runs, each statement new to the engine, so planned
and bound afresh over tables it already knows; `athena_call_vs_duckdb`: the whole call, results written), and last
`athena_vs_duckdb=R query_wall_s=S correct=N/22`.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "common")]

BUCKET = "bench-tpch"
DATABASE = "tpch"
RESULTS = f"s3://{BUCKET}/athena-results/"
OFFICIAL_SCALES = (0.01, 0.1, 1.0)


def athena_engine_class() -> Any:
    """The local Athena engine class; its module is named here only."""
    from lakebox.services.athena import AthenaEngine

    return AthenaEngine


# ---------------------------------------------------------------------------------------------- DuckDB


def _load_extension(con: Any, package: str, name: str) -> None:
    """LOAD an extension shipped as a PyPI package (works offline), else by name."""
    import duckdb

    folder = Path(str(resources.files(package))) / "extensions"
    found = sorted(folder.glob(f"v{duckdb.__version__}/{name}.duckdb_extension"))
    con.execute(f"LOAD '{found[0]}'" if found else f"LOAD {name}")


def _glue_type(duckdb_type: str) -> str:
    kind = duckdb_type.upper()
    if kind.startswith("DECIMAL"):
        return kind.lower()
    return {
        "INTEGER": "int",
        "BIGINT": "bigint",
        "SMALLINT": "smallint",
        "DOUBLE": "double",
        "FLOAT": "float",
        "DATE": "date",
        "VARCHAR": "string",
    }[kind]


@dataclass(frozen=True)
class Tpch:
    """The generated tables (local Parquet files and their Glue columns), the 22 queries and the official answers."""

    files: dict[str, Path]
    columns: dict[str, list[tuple[str, str]]]
    queries: dict[int, str]
    answers: dict[int, str]
    parquet_bytes: int


def generate(sf: float, folder: Path) -> Tpch:
    """TPC-H at scale `sf` from DuckDB's `tpch` extension, one Parquet file per table."""
    import duckdb

    con = duckdb.connect()
    _load_extension(con, "duckdb_extension_tpch", "tpch")
    con.execute(f"CALL dbgen(sf={sf})")
    files, columns = {}, {}
    for (table,) in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall():
        path = folder / f"{table}.parquet"
        con.execute(f"COPY {table} TO '{path}' (FORMAT parquet)")
        files[table] = path
        described = con.execute(f"DESCRIBE {table}").fetchall()
        columns[table] = [(str(row[0]), _glue_type(str(row[1]))) for row in described]
    queries = {int(n): str(q) for n, q in con.execute("SELECT query_nr, query FROM tpch_queries()").fetchall()}
    answers: dict[int, str] = {}
    if sf in OFFICIAL_SCALES:
        rows = con.execute("SELECT query_nr, answer FROM tpch_answers() WHERE scale_factor = ?", [sf]).fetchall()
        answers = {int(n): str(a) for n, a in rows}
    con.close()
    return Tpch(files, columns, queries, answers, sum(path.stat().st_size for path in files.values()))


def _duckdb_on_s3(endpoint: str) -> Any:
    """A DuckDB connection reading the moto server's S3 through httpfs."""
    import duckdb

    con = duckdb.connect()
    _load_extension(con, "duckdb_extension_httpfs", "httpfs")
    parts = urlsplit(endpoint)
    con.execute(
        "CREATE SECRET bench (TYPE s3, KEY_ID 'testing', SECRET 'testing', REGION 'us-east-1', "
        f"ENDPOINT '{parts.netloc}', URL_STYLE 'path', USE_SSL false)"
    )
    return con


def _native(con: Any, files: dict[str, str]) -> Any:
    for table, uri in files.items():
        con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet('{uri}')")
    con.execute("SET TimeZone = 'UTC'")
    return con


def _timed_native(con: Any, sql: str) -> tuple[float, list[list[str]]]:
    start = time.perf_counter()
    rows = con.execute(sql).fetchall()
    elapsed = time.perf_counter() - start
    return elapsed, [[_text(value) for value in row] for row in rows]


def _text(value: Any) -> str:
    return "NULL" if value is None else str(value)


# ------------------------------------------------------------------------------------------------ answers


def _cell_equal(got: str, want: str) -> bool:
    if got.strip() == want.strip() or (got == "NULL" and want == ""):  # the answers print NULL as nothing
        return True
    try:
        a, b = Decimal(got), Decimal(want)
    except InvalidOperation:
        return False
    return abs(a - b) <= max(Decimal("0.01"), abs(b) * Decimal("1e-9"))


def check(rows: list[list[str]], answer: str) -> str:
    """`ok`, or what differs from the official answer (pipe-separated, header first)."""
    expected = [row or [""] for row in csv.reader(io.StringIO(answer), delimiter="|")][1:]
    if len(rows) != len(expected):
        return f"{len(rows)} rows, expected {len(expected)}"
    for n, (got, want) in enumerate(zip(rows, expected, strict=True)):
        if len(got) != len(want) or not all(_cell_equal(g, w) for g, w in zip(got, want, strict=True)):
            return f"row {n + 1}: {got} != {want}"
    return "ok"


# ------------------------------------------------------------------------------------------------ Athena


def _athena_rows(engine: Any, execution_id: str) -> list[list[str]]:
    rows: list[list[str]] = []
    token: str | None = None
    first = True
    while True:
        page = engine.get_query_results(QueryExecutionId=execution_id, **({"NextToken": token} if token else {}))
        data = page["ResultSet"]["Rows"][1 if first else 0 :]
        rows.extend([cell.get("VarCharValue", "NULL") for cell in row["Data"]] for row in data)
        first = False
        token = page.get("NextToken")
        if not token:
            return rows


def _timed_athena(engine: Any, sql: str) -> tuple[float, float, list[list[str]] | str]:
    """Engine seconds (the execution's statistics), call wall seconds, and the rows or the failure reason."""
    start = time.perf_counter()
    described = engine.start_query_execution(QueryString=sql, QueryExecutionContext={"Database": DATABASE})
    wall = time.perf_counter() - start
    execution = described["QueryExecution"]
    engine_s = execution["Statistics"]["EngineExecutionTimeInMillis"] / 1000
    if execution["Status"]["State"] != "SUCCEEDED":
        return engine_s, wall, str(execution["Status"].get("StateChangeReason", execution["Status"]["State"]))
    return engine_s, wall, _athena_rows(engine, execution["QueryExecutionId"])


def register(session: Any, tpch: Tpch) -> dict[str, str]:
    """Upload each table's Parquet file and declare it in the Glue catalog; return each table's object URI."""
    s3, glue = session.client("s3"), session.client("glue")
    s3.create_bucket(Bucket=BUCKET)
    glue.create_database(DatabaseInput={"Name": DATABASE})
    uris = {}
    for table, path in tpch.files.items():
        key = f"tpch/{table}/{path.name}"
        s3.upload_file(str(path), BUCKET, key)
        uris[table] = f"s3://{BUCKET}/{key}"
        glue.create_table(
            DatabaseName=DATABASE,
            TableInput={
                "Name": table,
                "TableType": "EXTERNAL_TABLE",
                "Parameters": {"classification": "parquet"},
                "StorageDescriptor": {
                    "Columns": [{"Name": name, "Type": kind} for name, kind in tpch.columns[table]],
                    "Location": f"s3://{BUCKET}/tpch/{table}/",
                    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
                    "SerdeInfo": {
                        "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
                    },
                },
            },
        )
    return uris


# ------------------------------------------------------------------------------------------------ CLI wall


def query_wall(repeat: int) -> float:
    """Median wall seconds of `lakebox query "SELECT 1"` run as a subprocess from the repository root, with a
    `lakebox up` running (started here in a temporary LAKEBOX_HOME, stopped at the end): the wait of a user who
    keeps `up` running."""
    import json
    import signal
    import socket

    command = shutil.which("lakebox", path=str(Path(sys.executable).parent))
    argv = [command] if command else [sys.executable, "-m", "lakebox.cli"]
    with tempfile.TemporaryDirectory(prefix="bench-query-") as folder:
        home = Path(folder) / "lake"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["LAKEBOX_HOME"] = str(home)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        log = (Path(folder) / "up.log").open("w")
        up = subprocess.Popen(
            [*argv, "up", "--port", str(port), "--quiet"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    if json.loads((home / "endpoint.json").read_text())["pid"] == up.pid:
                        break
                except (OSError, ValueError, KeyError):
                    pass
                if up.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"lakebox up did not start: {(Path(folder) / 'up.log').read_text()[-1000:]}")
                time.sleep(0.2)
            seconds = []
            for _ in range(repeat):
                start = time.perf_counter()
                done = subprocess.run(
                    [*argv, "query", "SELECT 1"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
                )
                seconds.append(time.perf_counter() - start)
                if done.returncode != 0:
                    raise SystemExit(f"lakebox query failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        finally:
            if up.poll() is None:
                up.send_signal(signal.SIGTERM)
                up.wait(60)
            log.close()
    return statistics.median(seconds)


# ------------------------------------------------------------------------------------------------ main


def main() -> None:
    """Generate, register, run the 22 queries three ways, check the answers and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sf", type=float, default=0.01, help="TPC-H scale factor (answers exist for 0.01, 0.1, 1)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per query and per CLI call (median)")
    parser.add_argument("--skip-cli", action="store_true", help="do not time `lakebox query` as a subprocess")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    import boto3

    from lakebox.services.endpoint import LocalEndpoint

    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    server = LocalEndpoint().start()
    endpoint = server.url
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    try:
        with tempfile.TemporaryDirectory(prefix="bench-tpch-") as folder:
            print(f"generating TPC-H sf {args.sf} ...", file=sys.stderr)
            tpch = generate(args.sf, Path(folder))
            session = boto3.Session(region_name="us-east-1")
            uris = register(session, tpch)
            engine = athena_engine_class()(
                session,
                default_output=RESULTS,
                default_database=DATABASE,
                changes=server.changes,
                read_tail=server.object_tail,
            )
            on_s3 = _native(_duckdb_on_s3(endpoint), uris)
            local = _native(__import__("duckdb").connect(), {t: str(p) for t, p in tpch.files.items()})
            results = run_queries(tpch, engine, on_s3, local, args.repeat)
            engine.close()
    finally:
        server.stop()
        os.environ.pop("AWS_ENDPOINT_URL", None)
    wall = query_wall(args.repeat) if not args.skip_cli else float("nan")
    report(results, args.sf, tpch, wall)


@dataclass
class QueryTimes:
    number: int
    athena_first: float
    athena_engine: float
    athena_wall: float
    duckdb_s3: float
    duckdb_local: float
    athena_check: str
    duckdb_check: str


def run_queries(tpch: Tpch, engine: Any, on_s3: Any, local: Any, repeat: int) -> list[QueryTimes]:
    """Each query `repeat` times on each path (after one warm-up each); medians and the answers' checks."""
    results = []
    for number, sql in sorted(tpch.queries.items()):
        print(f"Q{number:02d} ...", file=sys.stderr)
        first, _, _ = _timed_athena(engine, sql)  # planned, its tables and files read: a statement never run before
        _timed_native(on_s3, sql)
        _timed_native(local, sql)
        athena_engine, athena_wall, duck_s3, duck_local = [], [], [], []
        athena_rows: list[list[str]] | str = []
        native_rows: list[list[str]] = []
        for _ in range(repeat):
            seconds, wall, athena_rows = _timed_athena(engine, sql)
            athena_engine.append(seconds)
            athena_wall.append(wall)
            seconds, native_rows = _timed_native(on_s3, sql)
            duck_s3.append(seconds)
            seconds, _ = _timed_native(local, sql)
            duck_local.append(seconds)
        answer = tpch.answers.get(number)
        if isinstance(athena_rows, str):
            athena_check = f"FAILED: {athena_rows[:80]}"
        else:
            athena_check = check(athena_rows, answer) if answer else "no official answer"
        duckdb_check = check(native_rows, answer) if answer else "no official answer"
        results.append(
            QueryTimes(
                number,
                first,
                statistics.median(athena_engine),
                statistics.median(athena_wall),
                statistics.median(duck_s3),
                statistics.median(duck_local),
                athena_check,
                duckdb_check,
            )
        )
    return results


def report(results: list[QueryTimes], sf: float, tpch: Tpch, wall: float) -> None:
    """Print the per-query table and the figures."""
    print(f"\nTPC-H sf {sf}: {len(tpch.files)} tables, {tpch.parquet_bytes / 1e6:,.1f} MB of Parquet\n")
    print(
        f"| {'query':<5} | {'athena first ms':>15} | {'athena engine ms':>16} | {'athena call ms':>14} | "
        f"{'duckdb s3 ms':>12} | {'duckdb local ms':>15} | {'athena/duckdb':>13} | {'athena answer':<40} | "
        f"{'duckdb answer':<13} |"
    )
    print(f"|{'-' * 7}|{'-' * 17}|{'-' * 18}|{'-' * 16}|{'-' * 14}|{'-' * 17}|{'-' * 15}|{'-' * 42}|{'-' * 15}|")
    for r in results:
        print(
            f"| Q{r.number:02d}   | {1000 * r.athena_first:>15.1f} | {1000 * r.athena_engine:>16.1f} | "
            f"{1000 * r.athena_wall:>14.1f} | "
            f"{1000 * r.duckdb_s3:>12.1f} | {1000 * r.duckdb_local:>15.1f} | "
            f"{r.athena_engine / max(r.duckdb_s3, 1e-6):>13.1f} | {r.athena_check[:40]:<40} | "
            f"{r.duckdb_check[:13]:<13} |"
        )
    first = sum(r.athena_first for r in results)
    athena = sum(r.athena_engine for r in results)
    calls = sum(r.athena_wall for r in results)
    s3 = sum(r.duckdb_s3 for r in results)
    local = sum(r.duckdb_local for r in results)
    correct = sum(r.athena_check == "ok" for r in results)
    native_correct = sum(r.duckdb_check == "ok" for r in results)
    print(
        f"| total | {1000 * first:>15.1f} | {1000 * athena:>16.1f} | {1000 * calls:>14.1f} | {1000 * s3:>12.1f} | "
        f"{1000 * local:>15.1f} | "
        f"{athena / s3:>13.1f} | {f'{correct}/{len(results)} correct':<40} | "
        f"{f'{native_correct}/{len(results)} ok':<13} |"
    )
    figures = [
        f"athena_vs_duckdb={athena / s3:.2f}",
        f"athena_call_vs_duckdb={calls / s3:.2f}",
        f"athena_first_vs_duckdb={first / s3:.2f}",
        f"athena_vs_duckdb_local={athena / local:.2f}",
        f"query_wall_s={wall:.2f}",
        f"correct={correct}/{len(results)}",
    ]
    print("\n" + " ".join(figures))
    print(f"athena_vs_duckdb={athena / s3:.2f} query_wall_s={wall:.2f} correct={correct}/{len(results)}")


if __name__ == "__main__":
    main()

"""Athena on DuckDB against the local endpoint: catalog resolution, pruning, bytes scanned, CTAS, the curated plan."""

from __future__ import annotations

import datetime as dt
import io
import logging
import random
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import boto3
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.config import Config

from datalake.contracts import get_dataset
from datalake.contracts.base import Rollup
from datalake.curation import Statement, TableGroup, plan_statements, plan_waves
from lakebox.services.athena import AthenaEngine, QueryFailedError
from lakebox.services.endpoint import LocalEndpoint

pytestmark = pytest.mark.integration

DATABASE = "lake"
DATES = [dt.date(2026, 10, 20) + dt.timedelta(days=n) for n in range(10)]
REGIONS = ("north", "south", "east", "west", "online")
CATEGORIES = ("toys", "books", "home")
UNIT_COST = Decimal("6.50")
"""The unit cost (USD) of every other product; the others have none."""
SALES_SCHEMA = pa.schema(
    [
        ("transaction_id", pa.string()),
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("customer_id", pa.string()),
        ("product_id", pa.string()),
        ("store_id", pa.string()),
        ("region", pa.string()),
        ("quantity", pa.int32()),
        ("unit_price", pa.decimal128(12, 2)),
        ("currency", pa.string()),
        ("payment_method", pa.string()),
        ("channel", pa.string()),
        ("revenue", pa.decimal128(18, 2)),
        ("product_name", pa.string()),
        ("category", pa.string()),
        ("customer_segment", pa.string()),
        ("customer_region", pa.string()),
        ("event_hour", pa.int32()),
        ("_source_key", pa.string()),
        ("_source_version", pa.string()),
        ("_line", pa.int64()),
        ("_ingested_at", pa.timestamp("us", tz="UTC")),
    ]
)
CUSTOMERS_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("name", pa.string()),
        ("segment", pa.string()),
        ("region", pa.string()),
        ("country", pa.string()),
        ("signup_date", pa.timestamp("us", tz="UTC")),
        ("updated_at", pa.timestamp("us", tz="UTC")),
        ("event_hour", pa.int32()),
        ("_source_key", pa.string()),
        ("_source_version", pa.string()),
        ("_line", pa.int64()),
        ("_ingested_at", pa.timestamp("us", tz="UTC")),
    ]
)
PRODUCTS_SCHEMA = pa.schema(
    [
        ("product_id", pa.string()),
        ("name", pa.string()),
        ("category", pa.string()),
        ("list_price", pa.decimal128(12, 2)),
        ("currency", pa.string()),
        ("active", pa.bool_()),
        ("updated_at", pa.timestamp("us", tz="UTC")),
        ("unit_cost", pa.decimal128(12, 2)),
        ("event_hour", pa.int32()),
        ("_source_key", pa.string()),
        ("_source_version", pa.string()),
        ("_line", pa.int64()),
        ("_ingested_at", pa.timestamp("us", tz="UTC")),
    ]
)
HIVE_TYPES = {
    pa.string(): "string",
    pa.int32(): "int",
    pa.int64(): "bigint",
    pa.bool_(): "boolean",
    pa.timestamp("us", tz="UTC"): "timestamp",
    pa.decimal128(12, 2): "decimal(12,2)",
    pa.decimal128(18, 2): "decimal(18,2)",
    pa.decimal128(28, 2): "decimal(28,2)",
}


@dataclass
class Lake:
    """The moto endpoint, a session on it, the engine, and the processed data written to it."""

    endpoint: str
    session: boto3.Session
    engine: AthenaEngine
    sales: pd.DataFrame
    customers: pd.DataFrame


@pytest.fixture(scope="module")
def lake() -> Iterator[Lake]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = LocalEndpoint().start()
    endpoint = server.url
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", endpoint)
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        s3 = session.client("s3")
        for bucket in ("processed", "curated", "results"):
            s3.create_bucket(Bucket=bucket)
        session.client("glue").create_database(DatabaseInput={"Name": DATABASE})
        sales, customers, products = _generate(random.Random(11))
        _write_processed(session, "sales", sales, SALES_SCHEMA, "event_date")
        _write_processed(session, "customers", customers, CUSTOMERS_SCHEMA, "event_date")
        _write_processed(session, "products", products, PRODUCTS_SCHEMA, "event_date")
        for rollup in get_dataset("sales").rollups:  # what the Spark job writes beside the sales (ADR 0030)
            records, schema = _rollup(rollup, sales, SALES_SCHEMA)
            _write_processed(session, rollup.name, records, schema, "event_date")
        # the box's engine: it keeps what it read between queries, checked against the endpoint's changes
        engine = AthenaEngine(
            session,
            default_output="s3://results/athena/",
            default_database=DATABASE,
            changes=server.changes,
            read_tail=server.object_tail,
        )
        yield Lake(endpoint, session, engine, pd.DataFrame(sales), pd.DataFrame(customers))
        engine.close()
    server.stop()


@pytest.fixture(autouse=True)
def _endpoint(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", lake.endpoint)


Records = list[dict[str, Any]]


def _generate(rng: random.Random) -> tuple[Records, Records, Records]:
    customers = [f"C{n:03d}" for n in range(40)]
    products = [f"P{n:03d}" for n in range(15)]
    category = {p: CATEGORIES[n % len(CATEGORIES)] for n, p in enumerate(products)}
    rows = []
    for n in range(3000):
        day = rng.choice(DATES)
        moment = dt.datetime.combine(day, dt.time(rng.randrange(24), rng.randrange(60)), dt.UTC)
        quantity = rng.randint(1, 5)
        price = Decimal(rng.randrange(100, 50_000)) / 100
        product = rng.choice(products)
        known = product != "P014"
        rows.append(
            {
                "transaction_id": f"T{n:06d}",
                "event_time": moment,
                "customer_id": rng.choice(customers),
                "product_id": product,
                "store_id": f"S{rng.randrange(5)}",
                "region": rng.choice(REGIONS),
                "quantity": quantity,
                "unit_price": price,
                "currency": "EUR" if n % 10 == 0 else "USD",
                "payment_method": "card",
                "channel": "web",
                "revenue": price * quantity,
                "product_name": f"Product {product}" if known else None,
                "category": category[product] if known else None,
                "customer_segment": "consumer",
                "customer_region": "north",
                "event_hour": moment.hour,
                "_source_key": "sales/a.jsonl",
                "_source_version": "v1",
                "_line": n + 1,
                "_ingested_at": moment,
                "event_date": day,
            }
        )
    old, new = dt.datetime(2026, 9, 1, tzinfo=dt.UTC), dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    people = []
    for n, cid in enumerate(customers[:-3]):
        for version, moment in enumerate((old, new) if n % 4 == 0 else (new,)):
            people.append(
                {
                    "customer_id": cid,
                    "name": f"Customer {cid}",
                    "segment": ("consumer", "enterprise")[(n + version) % 2],
                    "region": REGIONS[(n + version) % len(REGIONS)],
                    "country": "DE",
                    "signup_date": old,
                    "updated_at": moment,
                    "event_hour": 0,
                    "_source_key": "customers/c.csv",
                    "_source_version": "v1",
                    "_line": n + 1,
                    "_ingested_at": moment,
                    "event_date": moment.date(),
                }
            )
    catalogue = [
        {
            "product_id": p,
            "name": f"Product {p}",
            "category": category[p],
            "list_price": Decimal("9.99"),
            "currency": "USD",
            "active": True,
            "updated_at": new,
            "unit_cost": UNIT_COST if n % 2 == 0 else None,
            "event_hour": 0,
            "_source_key": "products/p.csv",
            "_source_version": "v1",
            "_line": n + 1,
            "_ingested_at": new,
            "event_date": new.date(),
        }
        for n, p in enumerate(products[:-1])
    ]
    return rows, people, catalogue


def _rollup(rollup: Rollup, records: Records, schema: pa.Schema) -> tuple[Records, pa.Schema]:
    """The rollup's rows computed in Python from its declaration, and their schema (Spark's types for the sums)."""
    groups: dict[tuple[Any, ...], Records] = {}
    for record in records:
        groups.setdefault((record["event_date"], *(record[c] for c in rollup.group_by)), []).append(record)
    rows: Records = []
    for (day, *values), members in groups.items():
        row: dict[str, Any] = dict(zip(rollup.group_by, values, strict=True))
        for measure in rollup.measures:
            if measure.kind == "count":
                row[measure.name] = len(members)
            elif measure.kind == "count_distinct":
                row[measure.name] = len({m[measure.column] for m in members if m[measure.column] is not None})
            else:
                row[measure.name] = sum(m[measure.column] for m in members if m[measure.column] is not None)
        rows.append({**row, "event_date": day})

    def kind(measure: Any) -> pa.DataType:
        source = schema.field(measure.column).type if measure.column else pa.int64()
        if measure.kind == "sum" and pa.types.is_decimal(source):
            return pa.decimal128(min(38, source.precision + 10), source.scale)
        return pa.int64()

    fields = [schema.field(c) for c in rollup.group_by] + [pa.field(m.name, kind(m)) for m in rollup.measures]
    return rows, pa.schema(fields)


def _write_processed(session: boto3.Session, dataset: str, records: Records, schema: pa.Schema, partition: str) -> None:
    """Write Parquet per event date and register the table as the Spark job does (`event_date date`)."""
    s3, glue = session.client("s3"), session.client("glue")
    columns = [{"Name": f.name, "Type": HIVE_TYPES[f.type]} for f in schema]
    storage = {
        "Columns": columns,
        "Location": f"s3://processed/{dataset}/",
        "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
        "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
        "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
    }
    glue.create_table(
        DatabaseName=DATABASE,
        TableInput={
            "Name": dataset,
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": "parquet"},
            "PartitionKeys": [{"Name": partition, "Type": "date"}],
            "StorageDescriptor": storage,
        },
    )
    partitions = []
    days: dict[dt.date, Records] = {}
    for record in records:
        days.setdefault(record[partition], []).append({k: v for k, v in record.items() if k != partition})
    for day, rows in sorted(days.items()):
        table = pa.Table.from_pylist(rows, schema=schema)
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="snappy")
        folder = f"{dataset}/{partition}={day.isoformat()}/"
        s3.put_object(Bucket="processed", Key=f"{folder}part-00000.snappy.parquet", Body=buffer.getvalue())
        partitions.append(
            {"Values": [day.isoformat()], "StorageDescriptor": {**storage, "Location": f"s3://processed/{folder}"}}
        )
    glue.batch_create_partition(DatabaseName=DATABASE, TableName=dataset, PartitionInputList=partitions)


def _frame(lake: Lake, sql: str) -> pd.DataFrame:
    result = lake.engine.query(sql)
    return pd.DataFrame(result.rows, columns=list(result.columns))


# ------------------------------------------------------------------------------------------------- reads


def test_select_resolves_tables_through_the_catalog_with_trino_semantics(lake: Lake) -> None:
    # GIVEN processed sales registered in the catalog
    # WHEN Athena SQL counts and sums them, with an integer division Trino truncates
    result = lake.engine.query("SELECT count(*) AS n, sum(quantity) AS q, 7 / 2 AS half FROM sales")
    # THEN the answer matches the data and Trino's arithmetic
    assert result.rows == [(len(lake.sales), int(lake.sales.quantity.sum()), 3)]
    assert result.types[:2] == ("bigint", "bigint")


def test_partition_pruned_query_scans_a_fraction_of_a_full_scan(lake: Lake) -> None:
    # GIVEN sales over ten daily partitions
    full = lake.engine.query("SELECT sum(revenue) AS revenue FROM sales")
    # WHEN the same sum is asked for one day
    day = lake.engine.query("SELECT sum(revenue) AS revenue FROM sales WHERE event_date = DATE '2026-10-22'")
    # THEN only that partition's revenue column is read
    expected = lake.sales.loc[lake.sales.event_date == dt.date(2026, 10, 22), "revenue"].sum()
    assert day.rows == [(expected,)]
    assert 0 < day.bytes_scanned < full.bytes_scanned / 5


def test_bytes_scanned_count_only_the_columns_read(lake: Lake) -> None:
    # WHEN queries over the same rows read one column, two columns, then every column
    one = lake.engine.query("SELECT count(DISTINCT region) FROM sales")
    two = lake.engine.query("SELECT count(DISTINCT region), max(transaction_id) FROM sales")
    everything = lake.engine.query("SELECT * FROM sales")
    # THEN the bytes scanned grow with the columns read
    assert 0 < one.bytes_scanned < two.bytes_scanned < everything.bytes_scanned


def test_failed_sql_ends_in_failed_state_with_athena_reason(lake: Lake) -> None:
    # WHEN a query names a column that does not exist
    described = lake.engine.start_query_execution(QueryString="SELECT no_such_column FROM sales")
    # THEN the execution FAILED with a reason rather than raising
    status = described["QueryExecution"]["Status"]
    assert status["State"] == "FAILED" and "COLUMN_NOT_FOUND" in status["StateChangeReason"]
    with pytest.raises(QueryFailedError, match="TABLE_NOT_FOUND"):
        lake.engine.query("SELECT 1 FROM no_such_table")


def test_results_are_written_and_paged_like_athena(lake: Lake) -> None:
    # GIVEN a finished query
    described = lake.engine.start_query_execution(
        QueryString="SELECT region, count(*) AS n FROM sales GROUP BY region ORDER BY region"
    )
    execution = described["QueryExecution"]
    qid = execution["QueryExecutionId"]
    # THEN its CSV is in the output location and its description is JSON-safe
    key = f"athena/{qid}.csv"
    assert execution["ResultConfiguration"]["OutputLocation"] == f"s3://results/{key}"
    body = lake.session.client("s3").get_object(Bucket="results", Key=key)["Body"].read().decode()
    assert body.splitlines()[0] == '"region","n"' and len(body.splitlines()) == len(REGIONS) + 1
    assert isinstance(execution["Status"]["SubmissionDateTime"], str)
    # AND GetQueryResults pages it with the header row first
    first = lake.engine.get_query_results(QueryExecutionId=qid, MaxResults=3)
    rows = first["ResultSet"]["Rows"]
    assert rows[0]["Data"] == [{"VarCharValue": "region"}, {"VarCharValue": "n"}] and len(rows) == 3
    rest = lake.engine.get_query_results(QueryExecutionId=qid, NextToken=first["NextToken"])
    assert len(rest["ResultSet"]["Rows"]) == len(REGIONS) - 2 and "NextToken" not in rest


def test_bytes_scanned_cutoff_cancels_the_query(lake: Lake) -> None:
    # GIVEN a workgroup that allows 1 KB per query
    unchecked = Config(parameter_validation=False)  # Athena's floor is 10 MB; the test data is smaller
    lake.session.client("athena", config=unchecked).create_work_group(
        Name="tight",
        Configuration={
            "ResultConfiguration": {"OutputLocation": "s3://results/tight/"},
            "EnforceWorkGroupConfiguration": True,
            "BytesScannedCutoffPerQuery": 1024,
        },
    )
    # WHEN a query would read more
    described = lake.engine.start_query_execution(QueryString="SELECT * FROM sales", WorkGroup="tight")
    # THEN Athena cancels it, naming the limit
    status = described["QueryExecution"]["Status"]
    assert status["State"] == "CANCELLED" and "Bytes scanned limit was exceeded" in status["StateChangeReason"]


# ------------------------------------------------------------------------------------------------- writes


def test_ctas_writes_partitioned_parquet_and_refuses_a_non_empty_location(lake: Lake) -> None:
    sql = (
        "CREATE TABLE lake.by_region WITH (format = 'PARQUET', external_location = 's3://curated/by_region/', "
        "partitioned_by = ARRAY['event_date'], write_compression = 'SNAPPY') AS "
        "SELECT region, count(*) AS n, event_date FROM sales WHERE event_date <= DATE '2026-10-21' "
        "GROUP BY region, event_date"
    )
    # WHEN a CTAS runs
    created = lake.engine.query(sql)
    # THEN it wrote the rows, registered the table and its two partitions
    glue = lake.session.client("glue")
    table = glue.get_table(DatabaseName=DATABASE, Name="by_region")["Table"]
    assert [k["Name"] for k in table["PartitionKeys"]] == ["event_date"]
    partitions = glue.get_partitions(DatabaseName=DATABASE, TableName="by_region")["Partitions"]
    assert sorted(p["Values"][0] for p in partitions) == ["2026-10-20", "2026-10-21"]
    early = lake.sales[lake.sales.event_date <= dt.date(2026, 10, 21)]
    assert created.rows == [(early.groupby(["region", "event_date"]).ngroups,)]
    assert lake.engine.query("SELECT sum(n) FROM by_region").rows == [(len(early),)]
    # AND a second CTAS into the same location fails as Athena's does
    again = sql.replace("lake.by_region", "lake.by_region_again")
    failed = lake.engine.start_query_execution(QueryString=again)["QueryExecution"]["Status"]
    assert failed["State"] == "FAILED" and failed["StateChangeReason"].startswith("HIVE_PATH_ALREADY_EXISTS")


def test_insert_into_adds_files_and_new_partitions(lake: Lake) -> None:
    # GIVEN a partitioned table holding one day
    lake.engine.query(
        "CREATE TABLE lake.daily WITH (external_location = 's3://curated/daily/', partitioned_by = ARRAY['d']) "
        "AS SELECT count(*) AS n, event_date AS d FROM sales WHERE event_date = DATE '2026-10-20' GROUP BY event_date"
    )
    # WHEN rows for that day and a new day are inserted
    inserted = lake.engine.query(
        "INSERT INTO lake.daily SELECT count(*), event_date FROM sales "
        "WHERE event_date IN (DATE '2026-10-20', DATE '2026-10-25') GROUP BY event_date"
    )
    # THEN the existing partition gains files beside its old ones and the new day is registered
    assert inserted.rows == [(2,)]
    counts = _frame(lake, "SELECT d, sum(n) AS n, count(*) AS files FROM daily GROUP BY d ORDER BY d")
    expected = lake.sales.groupby("event_date").size()
    assert counts.d.tolist() == [dt.date(2026, 10, 20), dt.date(2026, 10, 25)]
    assert counts.n.tolist() == [2 * expected[dt.date(2026, 10, 20)], expected[dt.date(2026, 10, 25)]]


def test_view_is_stored_in_the_catalog_and_expanded_in_queries(lake: Lake) -> None:
    # WHEN a view is created
    lake.engine.query(
        "CREATE OR REPLACE VIEW lake.big_sales AS SELECT transaction_id, revenue FROM sales WHERE quantity >= 4"
    )
    # THEN the catalog holds it as Athena does, queries expand it, and DROP VIEW removes it
    table = lake.session.client("glue").get_table(DatabaseName=DATABASE, Name="big_sales")["Table"]
    assert table["TableType"] == "VIRTUAL_VIEW" and table["ViewOriginalText"].startswith("/* Presto View: ")
    assert lake.engine.query("SELECT count(*) FROM big_sales").rows == [(int((lake.sales.quantity >= 4).sum()),)]
    lake.engine.query("DROP VIEW lake.big_sales")
    with pytest.raises(QueryFailedError, match="TABLE_NOT_FOUND"):
        lake.engine.query("SELECT count(*) FROM big_sales")


def test_drop_table_removes_the_catalog_entry_and_keeps_the_data(lake: Lake) -> None:
    # GIVEN a table written by a CTAS, WHEN it is dropped (twice, the second time IF EXISTS)
    lake.engine.query("CREATE TABLE lake.dropped WITH (external_location = 's3://curated/dropped/') AS SELECT 1 AS one")
    lake.engine.query("DROP TABLE lake.dropped")
    lake.engine.query("DROP TABLE IF EXISTS lake.dropped")
    # THEN its file is still in S3
    listed = lake.session.client("s3").list_objects_v2(Bucket="curated", Prefix="dropped/")
    assert listed["KeyCount"] == 1


def test_msck_repair_registers_partition_folders_and_show_lists_them(lake: Lake) -> None:
    # GIVEN a table declared over folders that are not in the catalog yet
    lake.engine.query(
        "CREATE EXTERNAL TABLE lake.repaired (transaction_id string, revenue decimal(18,2)) "
        "PARTITIONED BY (event_date date) STORED AS PARQUET LOCATION 's3://processed/sales/'"
    )
    assert lake.engine.query("SELECT count(*) FROM repaired").rows == [(0,)]
    # WHEN MSCK REPAIR TABLE runs
    lake.engine.query("MSCK REPAIR TABLE repaired")
    # THEN every event_date=… folder is a partition, and the data reads through them
    shown = lake.engine.query("SHOW PARTITIONS repaired").rows
    assert shown == [(f"event_date={day}",) for day in DATES]
    assert lake.engine.query("SELECT count(*) FROM repaired").rows == [(len(lake.sales),)]
    assert ("repaired",) in lake.engine.query("SHOW TABLES IN lake").rows
    described = lake.engine.query("DESCRIBE repaired").rows
    assert described[:2] == [("transaction_id", "string", ""), ("revenue", "decimal(18,2)", "")]


# -------------------------------------------------------------------------------------------- curation


def _statements(run_id: str) -> list[Statement]:
    return plan_statements(
        database=DATABASE,
        curated_bucket="curated",
        run_id=run_id,
        dates=DATES,
        changed={"sales", "customers"},
        dates_by_dataset={"sales": DATES},
    )


def _run_statement(lake: Lake, statement: Statement) -> int:
    described = lake.engine.start_query_execution(
        QueryString=statement.query, QueryExecutionContext={"Database": DATABASE}
    )
    status = described["QueryExecution"]["Status"]
    assert status["State"] == "SUCCEEDED", (statement.name, status.get("StateChangeReason"))
    return int(described["QueryExecution"]["Statistics"]["DataScannedInBytes"])


def _run_plan(lake: Lake, run_id: str) -> dict[str, int]:
    scanned: dict[str, int] = {}
    for statement in _statements(run_id):
        scanned[statement.table] = scanned.get(statement.table, 0) + _run_statement(lake, statement)
    return scanned


def _run_waves(lake: Lake, run_id: str, workers: int) -> dict[str, int]:
    """Run the plan as the pipeline does: wave after wave, a wave's table groups at once, a group's statements in
    order."""

    def run_group(group: TableGroup) -> tuple[str, int]:
        return group.table, sum(_run_statement(lake, statement) for statement in group.queries)

    scanned: dict[str, int] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for wave in plan_waves(_statements(run_id), DATABASE):
            scanned.update(pool.map(run_group, wave))
    return scanned


def _curated_rows(lake: Lake) -> dict[str, pd.DataFrame]:
    """Every planned table's rows, in the order of all their columns."""
    tables = {statement.table for statement in _statements("read") if statement.step == "build"}
    found = {}
    for table in sorted(tables):
        columns = lake.session.client("glue").get_table(DatabaseName=DATABASE, Name=table)["Table"]
        count = len(columns["StorageDescriptor"]["Columns"]) + len(columns.get("PartitionKeys", []))
        order = ", ".join(str(n) for n in range(1, count + 1))
        found[table] = _frame(lake, f"SELECT * FROM {table} ORDER BY {order}")
    return found


def test_curated_waves_run_at_once_through_the_engine_give_the_rows_of_a_run_one_statement_at_a_time(
    lake: Lake,
) -> None:
    # GIVEN the curated tables built one statement after another
    alone = _run_plan(lake, "serial-1")
    serial = _curated_rows(lake)
    assert set(serial) >= {"daily_sales_by_region", "product_performance", "customer_aggregates"}
    assert all(len(rows) for rows in serial.values())

    # WHEN the same plan runs as the pipeline runs it, a wave's tables at once from several threads (twice over)
    scanned = _run_waves(lake, "waves-1", workers=4)
    _run_waves(lake, "waves-2", workers=8)

    # THEN every table holds exactly the rows it held
    concurrent = _curated_rows(lake)
    assert concurrent.keys() == serial.keys()
    for table, rows in serial.items():
        pd.testing.assert_frame_equal(concurrent[table], rows, obj=table)
    # AND each table reading no curated table scanned what it scans alone (the files of a curated table, built anew by
    # each run, vary in size from one build to the next)
    statements = _statements("read")
    built = {statement.table for statement in statements if statement.step == "build"}
    reads_built = {
        s.table for s in statements for name in built - {s.table} if re.search(rf"\b{DATABASE}\.{name}\b", s.query)
    }
    assert reads_built == {"customer_aggregates"}
    assert scanned.keys() == alone.keys()
    assert {t: n for t, n in scanned.items() if t not in reads_built} == {
        t: n for t, n in alone.items() if t not in reads_built
    }
    # AND no stage table of any run is left in the catalog
    names = {t["Name"] for t in lake.session.client("glue").get_tables(DatabaseName=DATABASE)["TableList"]}
    assert not any("__" in name for name in names)


def _expected_daily(sales: pd.DataFrame) -> pd.DataFrame:
    grouped = sales.groupby(["event_date", "region", "currency"])
    out = grouped.agg(
        transactions=("transaction_id", "size"),
        customers=("customer_id", "nunique"),
        units=("quantity", "sum"),
        revenue=("revenue", "sum"),
    ).reset_index()
    out["average_transaction_value"] = [
        (r / t).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        for r, t in zip(out.revenue, out.transactions, strict=True)
    ]
    return out.rename(columns={"event_date": "sale_date"})


def _expected_products(sales: pd.DataFrame) -> pd.DataFrame:
    frame = sales.assign(product_name=sales.product_name.fillna("unknown"), category=sales.category.fillna("unknown"))
    out = (
        frame.groupby(["event_date", "product_id", "currency", "product_name", "category"])
        .agg(
            transactions=("transaction_id", "size"),
            customers=("customer_id", "nunique"),
            units=("quantity", "sum"),
            revenue=("revenue", "sum"),
        )
        .reset_index()
    )
    out["rank"] = (
        out.assign(r=out.revenue.astype(float))
        .groupby(["event_date", "category", "currency"])
        .r.rank(method="min", ascending=False)
        .astype(int)
    )
    return out.rename(columns={"event_date": "sale_date"})


def _expected_customers(sales: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    current = customers.sort_values(["updated_at", "_ingested_at"]).groupby("customer_id").tail(1)
    spend = (
        sales.groupby(["customer_id", "currency"])
        .agg(
            transactions=("transaction_id", "size"),
            units=("quantity", "sum"),
            lifetime_revenue=("revenue", "sum"),
            first_purchase_date=("event_date", "min"),
            last_purchase_date=("event_date", "max"),
            active_days=("event_date", "nunique"),
        )
        .reset_index()
    )
    return spend.merge(current[["customer_id", "segment", "region"]], on="customer_id", how="left")


def test_curated_tables_equal_pandas_and_a_rerun_changes_nothing(lake: Lake) -> None:
    # GIVEN processed sales, customers (some with two versions) and products
    # WHEN the curation plan runs, then runs again as a new run over the same dates
    first = _run_plan(lake, "run-1")
    daily_1 = _frame(lake, "SELECT * FROM daily_sales_by_region ORDER BY sale_date, region, currency")
    _run_plan(lake, "run-2")
    daily = _frame(lake, "SELECT * FROM daily_sales_by_region ORDER BY sale_date, region, currency")
    products = _frame(lake, "SELECT * FROM product_performance ORDER BY sale_date, product_id, currency")
    customers = _frame(lake, "SELECT * FROM customer_aggregates ORDER BY customer_id, currency")

    # THEN the re-run left the same rows (no duplicates, no failure on the non-empty table location)
    pd.testing.assert_frame_equal(daily, daily_1)
    # AND every curated table equals an independent pandas computation over the same input
    expected = _expected_daily(lake.sales).sort_values(["sale_date", "region", "currency"]).reset_index(drop=True)
    assert len(daily) == len(expected)
    for column in ("sale_date", "region", "currency", "transactions", "customers", "units", "revenue"):
        assert daily[column].tolist() == expected[column].tolist(), column
    assert daily.average_transaction_value.tolist() == expected.average_transaction_value.tolist()
    want = _expected_products(lake.sales).sort_values(["sale_date", "product_id", "currency"]).reset_index(drop=True)
    assert len(products) == len(want)
    for column in ("product_id", "product_name", "category", "transactions", "customers", "units", "revenue"):
        assert products[column].tolist() == want[column].tolist(), column
    assert products.average_unit_price.tolist() == [
        (r / u).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP) for r, u in zip(want.revenue, want.units, strict=True)
    ]
    assert products.revenue_rank_in_category.tolist() == want["rank"].tolist()
    # AND profit is revenue less units at the product's unit cost, known only for a costed product in its currency
    costed = {f"P{n:03d}" for n in range(0, 14, 2)}
    assert [None if pd.isna(p) else p for p in products.profit] == [
        r - u * UNIT_COST if c == "USD" and p in costed else None
        for p, c, r, u in zip(want.product_id, want.currency, want.revenue, want.units, strict=True)
    ]
    assert set(products.category) >= {"unknown"}
    aggregates = _expected_customers(lake.sales, lake.customers).sort_values(["customer_id", "currency"])
    aggregates = aggregates.reset_index(drop=True)
    for column in ("customer_id", "currency", "transactions", "units", "lifetime_revenue", "active_days"):
        assert customers[column].tolist() == aggregates[column].tolist(), column
    assert customers.average_transaction_value.tolist() == [
        (r / t).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        for r, t in zip(aggregates.lifetime_revenue, aggregates.transactions, strict=True)
    ]
    assert customers.first_purchase_date.tolist() == aggregates.first_purchase_date.tolist()
    assert customers.segment.fillna("-").tolist() == aggregates.segment.fillna("-").tolist()
    # AND the stage tables are gone from the catalog while their files back the published tables
    names = {t["Name"] for t in lake.session.client("glue").get_tables(DatabaseName=DATABASE)["TableList"]}
    assert not any("__run" in name for name in names)
    assert first["daily_sales_by_region"] > 0
    # AND each published table's files have the columns its DDL declares, in order
    glue = lake.session.client("glue")
    for name in ("daily_sales_by_region", "product_performance", "customer_aggregates"):
        declared = glue.get_table(DatabaseName=DATABASE, Name=name)["Table"]
        columns = [c["Name"] for c in declared["StorageDescriptor"]["Columns"]]
        assert pq.read_schema(_one_file(lake, declared)).names == columns, name


def _one_file(lake: Lake, table: dict[str, Any]) -> io.BytesIO:
    s3 = lake.session.client("s3")
    glue = lake.session.client("glue")
    location = table["StorageDescriptor"]["Location"]
    if table["PartitionKeys"]:
        partition = glue.get_partitions(DatabaseName=DATABASE, TableName=table["Name"])["Partitions"][0]
        location = partition["StorageDescriptor"]["Location"]
    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    key = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"][0]["Key"]
    return io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


# ------------------------------------------------------------------------------------- decimal arithmetic

# Trino's rules: x + y is decimal(min(38, 1 + max(xs, ys) + max(xp - xs, yp - ys)), max(xs, ys)); x * y is
# decimal(min(38, xp + yp), xs + ys); x / y is decimal(min(38, xp + ys + max(0, ys - xs)), max(xs, ys)) rounded
# HALF_UP; x % y is decimal(min(xp - xs, yp - ys) + max(xs, ys), max(xs, ys)); an integer operand counts as
# decimal(3|5|10|19, 0) for tinyint | smallint | integer | bigint; a literal with a point is a decimal.
DECIMAL_CASES = [
    ("1847.85 / 6", "307.98", "decimal(6,2)"),
    ("CAST(1847.85 AS decimal(18,2)) / 6", "307.98", "decimal(18,2)"),
    ("CAST(-1847.85 AS decimal(18,2)) / 6", "-307.98", "decimal(18,2)"),
    ("CAST(1847.85 AS decimal(18,2)) / CAST(-6 AS bigint)", "-307.98", "decimal(18,2)"),
    ("CAST(1847.84 AS decimal(18,2)) / 6", "307.97", "decimal(18,2)"),
    ("CAST(5 AS decimal(3,0)) / CAST(2 AS decimal(3,0))", "3", "decimal(3,0)"),
    ("CAST(-5 AS decimal(3,0)) / CAST(2 AS decimal(3,0))", "-3", "decimal(3,0)"),
    ("CAST(1 AS decimal(3,0)) / CAST(8 AS decimal(3,0))", "0", "decimal(3,0)"),
    ("CAST(2 AS decimal(5,1)) / CAST(3 AS decimal(5,1))", "0.7", "decimal(6,1)"),
    ("CAST(10 AS decimal(10,2)) / CAST(3 AS decimal(10,4))", "3.3333", "decimal(16,4)"),
    ("CAST(1 AS decimal(38,2)) / CAST(3 AS bigint)", "0.33", "decimal(38,2)"),
    ("CAST(9999999999999999.99 AS decimal(18,2)) / 3", "3333333333333333.33", "decimal(18,2)"),
    ("CAST(-0.05 AS decimal(18,2)) / 2", "-0.03", "decimal(18,2)"),
    ("CAST(-12345678901234567890.15 AS decimal(38,2)) / 2", "-6172839450617283945.08", "decimal(38,2)"),
    ("CAST(12345678901234567890.12 AS decimal(38,2)) / 7", "1763668414462081127.16", "decimal(38,2)"),
    (
        "CAST(9999999999999999.99 AS decimal(18,2)) * CAST(100.00 AS decimal(18,2))",
        "999999999999999999.0000",
        "decimal(36,4)",
    ),
    ("CAST(-1.25 AS decimal(3,2)) * 3", "-3.75", "decimal(13,2)"),
    ("CAST(1.05 AS decimal(3,2)) + CAST(2 AS decimal(10,0))", "3.05", "decimal(13,2)"),
    ("CAST(1.05 AS decimal(3,2)) - 2", "-0.95", "decimal(13,2)"),
    ("CAST(7.5 AS decimal(4,1)) % CAST(2 AS decimal(3,0))", "1.5", "decimal(4,1)"),
    ("-7.5 % 2", "-1.5", "decimal(2,1)"),
    ("CAST(CAST(307.975 AS decimal(6,3)) AS decimal(5,2))", "307.98", "decimal(5,2)"),
    ("CAST(CAST(-307.975 AS decimal(6,3)) AS decimal(5,2))", "-307.98", "decimal(5,2)"),
    ("CAST(CAST(1847.85 AS decimal(18,2)) / CAST(6 AS decimal(10,0)) AS decimal(10,1))", "308.0", "decimal(10,1)"),
    ("CAST(NULL AS decimal(10,2)) / 2", None, "decimal(10,2)"),
    ("CASE WHEN 1 > 0 THEN CAST(10 AS decimal(18,2)) ELSE 0 END / 3", "3.33", "decimal(18,2)"),
    ("COALESCE(CAST(NULL AS decimal(10,2)), 5) / 4", "1.25", "decimal(12,2)"),
    ("IF(1 > 0, CAST(2 AS decimal(5,1)), 1.25) / 3", "0.67", "decimal(6,2)"),
]


@pytest.mark.parametrize(("expression", "value", "kind"), DECIMAL_CASES, ids=[c[0] for c in DECIMAL_CASES])
def test_decimal_arithmetic_follows_trino(lake: Lake, expression: str, value: str | None, kind: str) -> None:
    # WHEN a decimal expression is evaluated
    result = lake.engine.query(f"SELECT {expression} AS v")
    # THEN its value is exact, rounded HALF_UP, and its type is the one Trino gives
    assert result.rows == [(None if value is None else Decimal(value),)]
    assert result.types == (kind,)


def test_decimal_division_by_zero_fails_like_trino(lake: Lake) -> None:
    with pytest.raises(QueryFailedError, match="DIVISION_BY_ZERO"):
        lake.engine.query("SELECT CAST(1 AS decimal(10,2)) / 0 AS v")


def _half_up(value: Decimal, places: str = "0.01") -> Decimal:
    return value.quantize(Decimal(places), rounding=ROUND_HALF_UP)


def test_curated_averages_are_exact_over_aggregates_and_derived_tables(lake: Lake) -> None:
    # GIVEN sales whose per-day sums divided by their counts often end in a 5 at the third place
    sql = """
        WITH spend AS (
            SELECT event_date, SUM(revenue) AS revenue, COUNT(*) AS transactions
            FROM sales GROUP BY event_date
        )
        SELECT event_date,
               CAST(revenue / transactions AS decimal(18, 2)) AS via_cte,
               revenue / transactions AS raw_quotient
        FROM spend ORDER BY event_date
    """
    # WHEN the curated SQL's own expressions run, directly on aggregates and through a derived table
    direct = lake.engine.query(
        "SELECT event_date, CAST(SUM(revenue) / COUNT(*) AS decimal(18, 2)) AS a, AVG(revenue) AS m "
        "FROM sales GROUP BY event_date ORDER BY event_date"
    )
    derived = lake.engine.query(sql)
    # THEN each equals exact Decimal arithmetic with HALF_UP rounding, typed as Trino types it
    groups = lake.sales.groupby("event_date").revenue.agg(["sum", "size"]).sort_index()
    expected = [_half_up(s / n) for s, n in zip(groups["sum"], groups["size"], strict=True)]
    assert [row[1] for row in direct.rows] == expected
    assert [row[2] for row in direct.rows] == expected  # avg(decimal(18,2)) is decimal(18,2)
    assert [row[1] for row in derived.rows] == expected
    assert [row[2] for row in derived.rows] == expected
    assert direct.types[1:] == ("decimal(18,2)", "decimal(18,2)")
    assert derived.types[1:] == ("decimal(18,2)", "decimal(38,2)")


def test_window_average_of_decimals_is_exact(lake: Lake) -> None:
    # WHEN a decimal is averaged over a window (the daily revenue trend's moving average)
    result = lake.engine.query(
        "SELECT transaction_id, AVG(revenue) OVER (PARTITION BY event_date) AS m FROM sales "
        "WHERE event_date = DATE '2026-10-22' ORDER BY transaction_id"
    )
    # THEN every row holds the exact HALF_UP average as a decimal
    day = lake.sales[lake.sales.event_date == dt.date(2026, 10, 22)]
    assert {row[1] for row in result.rows} == {_half_up(sum(day.revenue, Decimal(0)) / len(day))}
    assert result.types[1] == "decimal(18,2)"


# ------------------------------------------------------------------------------------------- nested types

ADDRESS = pa.struct([("city", pa.string()), ("location", pa.struct([("lat", pa.float64()), ("lon", pa.float64())]))])
PARCEL = pa.struct([("parcel_id", pa.string()), ("weight_kg", pa.float64()), ("declared_value", pa.decimal128(12, 2))])
NESTED_SCHEMA = pa.schema(
    [
        ("shipment_id", pa.string()),
        ("insured", pa.bool_()),
        ("promised_date", pa.date32()),
        ("destination", ADDRESS),
        ("parcels", pa.list_(PARCEL)),
        ("tags", pa.list_(pa.string())),
        ("dimensions_cm", pa.map_(pa.string(), pa.float64())),
    ]
)
NESTED_ROWS: Records = [
    {
        "shipment_id": "SH1",
        "insured": True,
        "promised_date": dt.date(2026, 11, 5),
        "destination": {"city": "Leeds", "location": {"lat": 53.8, "lon": -1.55}},
        "parcels": [
            {"parcel_id": "P1", "weight_kg": 2.5, "declared_value": Decimal("19.99")},
            {"parcel_id": "P2", "weight_kg": 0.75, "declared_value": Decimal("5.00")},
        ],
        "tags": ["express", "signed"],
        "dimensions_cm": [("w", 30.0), ("h", 20.5)],
        "event_date": DATES[0],
    },
    {
        "shipment_id": "SH2",
        "insured": False,
        "promised_date": dt.date(2026, 11, 6),
        "destination": {"city": "York", "location": None},
        "parcels": [{"parcel_id": "P3", "weight_kg": 1.0, "declared_value": Decimal("7.10")}],
        "tags": [],
        "dimensions_cm": None,
        "event_date": DATES[1],
    },
]


@pytest.fixture(scope="module")
def nested(lake: Lake) -> str:
    """A processed table of structs, arrays and a map, catalogued with the Glue types the crawler infers."""
    from lakebox.services.crawler import arrow_to_glue

    types = {f.type: arrow_to_glue(f.type) for f in NESTED_SCHEMA}
    HIVE_TYPES.update(types)
    _write_processed(lake.session, "shipments", NESTED_ROWS, NESTED_SCHEMA, "event_date")
    return "shipments"


def test_nested_columns_are_catalogued_with_glue_types(nested: str, lake: Lake) -> None:
    columns = lake.session.client("glue").get_table(DatabaseName=DATABASE, Name=nested)["Table"]["StorageDescriptor"]
    assert {c["Name"]: c["Type"] for c in columns["Columns"]} == {
        "shipment_id": "string",
        "insured": "boolean",
        "promised_date": "date",
        "destination": "struct<city:string,location:struct<lat:double,lon:double>>",
        "parcels": "array<struct<parcel_id:string,weight_kg:double,declared_value:decimal(12,2)>>",
        "tags": "array<string>",
        "dimensions_cm": "map<string,double>",
    }


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "SELECT shipment_id, destination.city, destination.location.lat FROM shipments ORDER BY shipment_id",
            [("SH1", "Leeds", 53.8), ("SH2", "York", None)],
        ),
        (
            "SELECT shipment_id, cardinality(parcels), cardinality(tags), cardinality(dimensions_cm) FROM shipments"
            " ORDER BY shipment_id",
            [("SH1", 2, 2, 2), ("SH2", 1, 0, None)],
        ),
        (
            "SELECT s.shipment_id, p.parcel_id, p.declared_value FROM shipments s CROSS JOIN UNNEST(s.parcels) AS t(p)"
            " ORDER BY p.parcel_id",
            [("SH1", "P1", Decimal("19.99")), ("SH1", "P2", Decimal("5.00")), ("SH2", "P3", Decimal("7.10"))],
        ),
        (
            "SELECT tag, count(*) FROM shipments, UNNEST(tags) t(tag) GROUP BY tag ORDER BY tag",
            [("express", 1), ("signed", 1)],
        ),
        (
            "SELECT shipment_id, n, p.weight_kg FROM shipments CROSS JOIN UNNEST(parcels) WITH ORDINALITY AS t(p, n)"
            " WHERE shipment_id = 'SH1' ORDER BY n",
            [("SH1", 1, 2.5), ("SH1", 2, 0.75)],
        ),
        (
            "SELECT k, v FROM shipments CROSS JOIN UNNEST(dimensions_cm) AS t(k, v) ORDER BY k",
            [("h", 20.5), ("w", 30.0)],
        ),
        (
            "SELECT parcels[2].parcel_id, element_at(dimensions_cm, 'w'), dimensions_cm['h'], element_at(tags, 1)"
            " FROM shipments WHERE shipment_id = 'SH1'",
            [("P2", 30.0, 20.5, "express")],
        ),
        (
            "SELECT shipment_id FROM shipments WHERE contains(tags, 'express')"
            " AND cardinality(filter(parcels, p -> p.weight_kg < 1)) = 1"
            " AND insured AND promised_date = DATE '2026-11-05'",
            [("SH1",)],
        ),
    ],
)
def test_nested_columns_query_as_athena_spells_it(nested: str, lake: Lake, sql: str, expected: list[Any]) -> None:
    # GIVEN processed Parquet with structs, arrays of structs, arrays and a map
    # WHEN queried with Athena's field access, cardinality, UNNEST (with ordinality, of a map) and element access
    # THEN the rows are Athena's
    assert lake.engine.query(sql).rows == expected

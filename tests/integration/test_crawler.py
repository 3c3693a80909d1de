"""The local Glue crawler against a moto server: schemas, SerDes, partitions, recrawls and the crawler's state."""

from __future__ import annotations

import gzip
import io
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from lakebox.services import crawler as crawler_module
from lakebox.services.athena import AthenaEngine
from lakebox.services.crawler import JSON_SERDE, PARQUET_FORMAT, get_crawler, glob_regex, start_crawler

pytestmark = pytest.mark.integration

DATABASE = "lake"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def session(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> boto3.Session:
    """A session on a freshly reset moto server, with the raw bucket and the database."""
    requests.post(f"{endpoint}/moto-api/reset", timeout=10)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    session = boto3.Session(region_name="us-east-1")
    session.client("s3").create_bucket(Bucket="raw")
    session.client("glue").create_database(DatabaseInput={"Name": DATABASE})
    return session


def _crawler(session: boto3.Session, path: str, **extra: Any) -> str:
    name = f"crawler-{uuid.uuid4().hex[:8]}"
    session.client("glue").create_crawler(
        Name=name,
        Role="arn:aws:iam::123456789012:role/crawler",
        DatabaseName=DATABASE,
        Targets=extra.pop("targets", {"S3Targets": [{"Path": path}]}),
        **extra,
    )
    return name


def _put_jsonl(session: boto3.Session, key: str, records: list[dict[str, Any]]) -> None:
    body = gzip.compress(("\n".join(json.dumps(r) for r in records) + "\n").encode())
    session.client("s3").put_object(Bucket="raw", Key=key, Body=body, ServerSideEncryption="aws:kms")


def _table(session: boto3.Session, name: str) -> dict[str, Any]:
    table: dict[str, Any] = session.client("glue").get_table(DatabaseName=DATABASE, Name=name)["Table"]
    return table


def _partitions(session: boto3.Session, name: str) -> list[list[str]]:
    partitions = session.client("glue").get_partitions(DatabaseName=DATABASE, TableName=name)["Partitions"]
    return sorted(p["Values"] for p in partitions)


RAW_CRAWLER_CONFIGURATION = json.dumps(
    {
        "Version": 1.0,
        "Grouping": {"TableGroupingPolicy": "CombineCompatibleSchemas", "TableLevelConfiguration": 2},
        "CrawlerOutput": {"Partitions": {"AddOrUpdateBehavior": "InheritFromTable"}},
    }
)
SALE = {"transaction_id": "T1", "quantity": 2, "unit_price": 9.5, "paid": True, "event_time": "2026-10-01T10:00:00Z"}


def test_raw_json_lines_become_one_queryable_table_per_dataset(session: boto3.Session) -> None:
    # GIVEN gzip JSON lines in Hive-partitioned dataset folders, quarantine beside them
    _put_jsonl(session, "sales/year=2026/month=10/day=01/a.json.gz", [SALE, {**SALE, "transaction_id": "T2"}])
    _put_jsonl(session, "sales/year=2026/month=10/day=02/b.json.gz", [{**SALE, "coupon": {"code": "X", "pct": 10}}])
    _put_jsonl(session, "products/year=2026/month=09/day=30/p.json.gz", [{"product_id": "P1", "price": 3}])
    _put_jsonl(session, "_quarantine/sales/year=2026/month=10/day=01/q.json.gz", [{"_raw": "bad"}])
    name = _crawler(session, "s3://raw/", TablePrefix="raw_", Configuration=RAW_CRAWLER_CONFIGURATION)
    # WHEN the crawler runs
    assert start_crawler(session, name) == {}
    # THEN each dataset folder is a table with the JSON SerDe, merged types and Hive partition keys
    tables = {t["Name"] for t in session.client("glue").get_tables(DatabaseName=DATABASE)["TableList"]}
    assert tables == {"raw_sales", "raw_products"}
    sales = _table(session, "raw_sales")
    columns = {c["Name"]: c["Type"] for c in sales["StorageDescriptor"]["Columns"]}
    assert columns == {
        "transaction_id": "string",
        "quantity": "bigint",
        "unit_price": "double",
        "paid": "boolean",
        "event_time": "string",
        "coupon": "struct<code:string,pct:bigint>",
    }
    assert sales["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"] == JSON_SERDE
    assert sales["StorageDescriptor"]["Location"] == "s3://raw/sales/"
    assert [k["Name"] for k in sales["PartitionKeys"]] == ["year", "month", "day"]
    assert sales["Parameters"]["classification"] == "json"
    assert sales["Parameters"]["compressionType"] == "gzip"
    assert sales["Parameters"]["UPDATED_BY_CRAWLER"] == name
    assert _partitions(session, "raw_sales") == [["2026", "10", "01"], ["2026", "10", "02"]]
    # AND Athena reads the crawled table, partition and nested columns included
    engine = AthenaEngine(session, default_output="s3://raw/_athena/", default_database=DATABASE)
    try:
        result = engine.query("SELECT day, count(*), max(coupon.pct) FROM raw_sales GROUP BY day ORDER BY day")
    finally:
        engine.close()
    assert result.rows == [("01", 2, None), ("02", 1, 10)]


def test_parquet_schema_and_plain_folders_become_columns_and_numbered_partitions(session: boto3.Session) -> None:
    # GIVEN Parquet files under year/month folders that are not key=value
    table = pa.table(
        {
            "id": pa.array([1, 2], pa.int32()),
            "amount": pa.array([Decimal("1.50"), Decimal("2.25")], pa.decimal128(12, 2)),
            "at": pa.array([0, 1], pa.timestamp("us", tz="UTC")),
            "tags": pa.array([["a"], []], pa.list_(pa.string())),
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    for folder in ("2026/10", "2026/11"):
        session.client("s3").put_object(Bucket="raw", Key=f"orders/{folder}/part-0.parquet", Body=buffer.getvalue())
    name = _crawler(session, "s3://raw/orders/")
    # WHEN it is crawled
    start_crawler(session, name)
    # THEN the table takes the file schema, the Parquet SerDe and partition_0, partition_1 keys
    crawled = _table(session, "orders")
    assert [(c["Name"], c["Type"]) for c in crawled["StorageDescriptor"]["Columns"]] == [
        ("id", "int"),
        ("amount", "decimal(12,2)"),
        ("at", "timestamp"),
        ("tags", "array<string>"),
    ]
    assert crawled["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"] == PARQUET_FORMAT["serde"]
    assert crawled["StorageDescriptor"]["InputFormat"] == PARQUET_FORMAT["input"]
    assert [k["Name"] for k in crawled["PartitionKeys"]] == ["partition_0", "partition_1"]
    assert _partitions(session, "orders") == [["2026", "10"], ["2026", "11"]]


def test_csv_with_a_header_gets_typed_columns_and_skips_the_header(session: boto3.Session) -> None:
    # GIVEN a CSV with a header row, WHEN it is crawled
    csv = "product_id,price,active,updated\nP1,9.99,true,2026-10-01 10:00:00\nP2,12,false,2026-10-02 11:30:00\n"
    session.client("s3").put_object(Bucket="raw", Key="reference/products.csv", Body=csv.encode())
    name = _crawler(session, "s3://raw/reference/")
    start_crawler(session, name)
    # THEN the columns are typed from the values and Athena reads the rows without the header
    crawled = _table(session, "reference")
    assert [(c["Name"], c["Type"]) for c in crawled["StorageDescriptor"]["Columns"]] == [
        ("product_id", "string"),
        ("price", "double"),
        ("active", "boolean"),
        ("updated", "timestamp"),
    ]
    assert crawled["Parameters"]["skip.header.line.count"] == "1"
    engine = AthenaEngine(session, default_output="s3://raw/_athena/", default_database=DATABASE)
    try:
        assert engine.query("SELECT sum(price), count(*) FROM reference WHERE active").rows == [(9.99, 1)]
    finally:
        engine.close()


def test_recrawl_adds_new_partitions_and_merges_new_columns(session: boto3.Session) -> None:
    # GIVEN a crawled dataset
    _put_jsonl(session, "sales/year=2026/month=10/day=01/a.json.gz", [SALE])
    name = _crawler(session, "s3://raw/", TablePrefix="raw_")
    start_crawler(session, name)
    # WHEN a new day arrives with a new field, and the crawler runs again
    _put_jsonl(session, "sales/year=2026/month=10/day=02/b.json.gz", [{**SALE, "channel": "web"}])
    start_crawler(session, name)
    # THEN the new partition is registered once and the new column is added after the known ones
    assert _partitions(session, "raw_sales") == [["2026", "10", "01"], ["2026", "10", "02"]]
    columns = [c["Name"] for c in _table(session, "raw_sales")["StorageDescriptor"]["Columns"]]
    assert columns == [*SALE, "channel"]


def test_log_policy_with_new_folders_only_keeps_the_schema_and_adds_partitions(session: boto3.Session) -> None:
    # GIVEN a crawler configured like the template's raw crawler (LOG, new folders only)
    _put_jsonl(session, "sales/year=2026/month=10/day=01/a.json.gz", [SALE])
    name = _crawler(
        session,
        "s3://raw/",
        TablePrefix="raw_",
        RecrawlPolicy={"RecrawlBehavior": "CRAWL_NEW_FOLDERS_ONLY"},
        SchemaChangePolicy={"UpdateBehavior": "LOG", "DeleteBehavior": "LOG"},
    )
    start_crawler(session, name)
    # WHEN a new day with a new field is crawled
    _put_jsonl(session, "sales/year=2026/month=10/day=02/b.json.gz", [{**SALE, "channel": "web"}])
    start_crawler(session, name)
    # THEN the partition is added and the table's schema is left alone
    assert _partitions(session, "raw_sales") == [["2026", "10", "01"], ["2026", "10", "02"]]
    assert "channel" not in {c["Name"] for c in _table(session, "raw_sales")["StorageDescriptor"]["Columns"]}


def test_exclusions_follow_glue_globs(session: boto3.Session) -> None:
    # GIVEN folders the target excludes with `**` globs
    _put_jsonl(session, "sales/year=2026/month=10/day=01/a.json.gz", [SALE])
    _put_jsonl(session, "_firehose_errors/x/y.json.gz", [SALE])
    _put_jsonl(session, "tmp/year=2026/month=10/day=01/a.json.gz", [SALE])
    targets = {"S3Targets": [{"Path": "s3://raw/", "Exclusions": ["tmp/**", "_firehose_errors/**"]}]}
    name = _crawler(session, "s3://raw/", targets=targets)
    start_crawler(session, name)
    # THEN only the included dataset becomes a table, and `*` stays within one folder
    assert {t["Name"] for t in session.client("glue").get_tables(DatabaseName=DATABASE)["TableList"]} == {"sales"}
    assert glob_regex("*.csv").fullmatch("a.csv") and not glob_regex("*.csv").fullmatch("x/a.csv")
    assert glob_regex("**.{csv,json}").fullmatch("x/a.json")


def test_get_crawler_reports_ready_with_the_last_crawl(session: boto3.Session) -> None:
    # GIVEN a crawler that never ran, THEN READY; WHEN it ran, THEN READY with a SUCCEEDED last crawl
    _put_jsonl(session, "sales/year=2026/month=10/day=01/a.json.gz", [SALE])
    name = _crawler(session, "s3://raw/")
    assert get_crawler(session, name)["Crawler"]["State"] == "READY"
    start_crawler(session, name)
    described = get_crawler(session, name)["Crawler"]
    assert described["State"] == "READY" and described["LastCrawl"]["Status"] == "SUCCEEDED"
    json.dumps(described)  # JSON-safe, as a state machine passes it on
    with pytest.raises(ClientError) as unknown:
        start_crawler(session, "no-such-crawler")
    assert unknown.value.response["Error"]["Code"] == "EntityNotFoundException"


def test_a_failed_crawl_is_reported_in_last_crawl(session: boto3.Session) -> None:
    # GIVEN a target bucket that does not exist, WHEN the crawler runs, THEN its last crawl FAILED with the cause
    name = _crawler(session, "s3://no-such-bucket/")
    start_crawler(session, name)
    last = get_crawler(session, name)["Crawler"]["LastCrawl"]
    assert last["Status"] == "FAILED" and "NoSuchBucket" in last["ErrorMessage"]


def test_starting_a_running_crawler_raises_crawler_running_exception(
    session: boto3.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a crawl that is still running
    name = _crawler(session, "s3://raw/")
    started, release = threading.Event(), threading.Event()
    real_crawl = crawler_module.crawl

    def slow_crawl(*args: Any) -> Any:
        started.set()
        release.wait(10)
        return real_crawl(*args)

    monkeypatch.setattr(crawler_module, "crawl", slow_crawl)
    worker = threading.Thread(target=start_crawler, args=(session, name))
    worker.start()
    try:
        assert started.wait(10)
        assert get_crawler(session, name)["Crawler"]["State"] == "RUNNING"
        # WHEN it is started again THEN Glue's error code comes back
        with pytest.raises(ClientError) as running:
            start_crawler(session, name)
        assert running.value.response["Error"]["Code"] == "CrawlerRunningException"
    finally:
        release.set()
        worker.join(10)
    assert get_crawler(session, name)["Crawler"]["State"] == "READY"

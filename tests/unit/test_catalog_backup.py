"""Catalog backup: export, restore round trip, idempotence and bad backups (moto in-process)."""

from __future__ import annotations

import gzip
import importlib.util
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from datalake.aws import AwsClients
from datalake.catalog_backup import backup_catalog, export_catalog, latest_backup, load_backup, restore_catalog
from datalake.exceptions import TerminalError
from datalake.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DB = "data_lake_db"
PARQUET = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
}


@pytest.fixture
def aws() -> Iterator[boto3.Session]:
    """A catalog with a partitioned table (150 days: more than one batch), a plain table and a view."""
    with mock_aws():
        session = boto3.Session()
        session.client("s3").create_bucket(Bucket="artifacts")
        glue = session.client("glue")
        glue.create_database(DatabaseInput={"Name": DB, "LocationUri": "s3://processed/"})
        columns = [{"Name": "transaction_id", "Type": "string"}, {"Name": "units", "Type": "bigint"}]
        glue.create_table(
            DatabaseName=DB,
            TableInput={
                "Name": "sales",
                "TableType": "EXTERNAL_TABLE",
                "Parameters": {"classification": "parquet"},
                "PartitionKeys": [{"Name": "event_date", "Type": "date"}],
                "StorageDescriptor": {"Columns": columns, "Location": "s3://processed/sales/", **PARQUET},
            },
        )
        days = [f"2026-{m:02d}-{d:02d}" for m in range(1, 6) for d in range(1, 31)]
        for start in range(0, len(days), 100):
            glue.batch_create_partition(
                DatabaseName=DB,
                TableName="sales",
                PartitionInputList=[
                    {
                        "Values": [day],
                        "StorageDescriptor": {
                            "Columns": columns,
                            "Location": f"s3://processed/sales/event_date={day}/",
                            **PARQUET,
                        },
                    }
                    for day in days[start : start + 100]
                ],
            )
        glue.create_table(
            DatabaseName=DB,
            TableInput={
                "Name": "customer_aggregates",
                "TableType": "EXTERNAL_TABLE",
                "StorageDescriptor": {"Columns": columns, "Location": "s3://curated/ca/runs/r1/", **PARQUET},
            },
        )
        glue.create_table(
            DatabaseName=DB,
            TableInput={
                "Name": "customers_current",
                "TableType": "VIRTUAL_VIEW",
                "ViewOriginalText": "/* Presto View: e30= */",
                "ViewExpandedText": "/* Presto View */",
                "StorageDescriptor": {"Columns": columns},
            },
        )
        yield session


SETTINGS = Settings(artifacts_bucket="artifacts", glue_database=DB)
AT = datetime(2026, 11, 23, 3, 30, tzinfo=UTC)


def _catalog(session: boto3.Session) -> dict[str, Any]:
    document = export_catalog(session.client("glue"), [DB], AT)
    return document


def test_backup_writes_one_gzip_export_named_by_its_time(aws: boto3.Session) -> None:
    summary = backup_catalog(AwsClients.from_session(aws), SETTINGS, now=AT)
    assert summary.key == "catalog-backups/2026/11/23/20261123T033000Z.json.gz"
    assert (summary.databases, summary.tables, summary.partitions) == (1, 3, 150)
    body = aws.client("s3").get_object(Bucket="artifacts", Key=summary.key)["Body"].read()
    document = json.loads(gzip.decompress(body))
    assert document["exported_at"] == AT.isoformat()
    assert {t["table"]["Name"] for t in document["databases"][0]["tables"]} == {
        "sales",
        "customer_aggregates",
        "customers_current",
    }


def test_restore_brings_back_dropped_tables_partitions_and_changed_locations(aws: boto3.Session) -> None:
    # GIVEN a backup of the catalog
    before = _catalog(aws)
    key = backup_catalog(AwsClients.from_session(aws), SETTINGS, now=AT).key
    # WHEN the catalog loses a table, 120 partitions, and a table is re-pointed
    glue = aws.client("glue")
    glue.delete_table(DatabaseName=DB, Name="customers_current")
    parts = [p["Values"] for p in glue.get_partitions(DatabaseName=DB, TableName="sales")["Partitions"]][:120]
    for start in range(0, len(parts), 25):
        glue.batch_delete_partition(
            DatabaseName=DB,
            TableName="sales",
            PartitionsToDelete=[{"Values": v} for v in parts[start : start + 25]],
        )
    moved = glue.get_table(DatabaseName=DB, Name="customer_aggregates")["Table"]
    glue.update_table(
        DatabaseName=DB,
        TableInput={
            "Name": "customer_aggregates",
            "TableType": "EXTERNAL_TABLE",
            "StorageDescriptor": {**moved["StorageDescriptor"], "Location": "s3://curated/ca/runs/r2/"},
        },
    )
    glue.create_table(DatabaseName=DB, TableInput={"Name": "made_after", "StorageDescriptor": {"Location": "s3://x/"}})
    # AND it is restored from the newest backup
    s3 = aws.client("s3")
    assert latest_backup(s3, "artifacts") == key
    summary = restore_catalog(glue, load_backup(s3, "artifacts", key), key=key)
    # THEN the catalog holds what was backed up again, and what came later is kept
    assert (summary.created, summary.updated) == (1 + 120, 1)
    after = _catalog(aws)
    restored = {t["table"]["Name"]: t for t in after["databases"][0]["tables"]}
    assert set(restored) == {"sales", "customer_aggregates", "customers_current", "made_after"}
    del restored["made_after"]
    assert restored == {t["table"]["Name"]: t for t in before["databases"][0]["tables"]}
    # AND a second restore changes nothing
    again = restore_catalog(glue, load_backup(s3, "artifacts", key), key=key)
    assert (again.created, again.updated) == (0, 0)


def test_restore_into_an_empty_account_creates_the_database(aws: boto3.Session) -> None:
    document = _catalog(aws)
    glue = aws.client("glue")
    glue.delete_database(Name=DB)
    summary = restore_catalog(glue, document)
    assert summary.created == 1 + 3 + 150
    assert _catalog(aws)["databases"] == document["databases"]


def test_no_backup_or_a_foreign_object_is_a_clear_error(aws: boto3.Session) -> None:
    s3 = aws.client("s3")
    with pytest.raises(TerminalError, match="no catalog backup under s3://artifacts/catalog-backups/"):
        latest_backup(s3, "artifacts")
    s3.put_object(Bucket="artifacts", Key="catalog-backups/x.json.gz", Body=b"not gzip")
    with pytest.raises(TerminalError, match="is not a catalog backup"):
        load_backup(s3, "artifacts", "catalog-backups/x.json.gz")
    s3.put_object(Bucket="artifacts", Key="catalog-backups/y.json.gz", Body=gzip.compress(b'{"format": 9}'))
    with pytest.raises(TerminalError, match="of format 1"):
        load_backup(s3, "artifacts", "catalog-backups/y.json.gz")


def test_restore_script_restores_the_newest_backup(aws: boto3.Session, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("restore_catalog_script", ROOT / "scripts" / "restore-catalog.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    key = backup_catalog(AwsClients.from_session(aws), SETTINGS, now=AT).key
    aws.client("glue").delete_table(DatabaseName=DB, Name="sales")
    assert script.main(["--bucket", "artifacts", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["key"] == key
    assert aws.client("glue").get_tables(DatabaseName=DB)["TableList"].__len__() == 2
    assert script.main(["--bucket", "artifacts"]) == 0
    assert json.loads(capsys.readouterr().out)["created"] == 1 + 150
    assert script.main(["--bucket", "nope"]) == 1
    assert "restore-catalog: error" in capsys.readouterr().err


def test_run_folders_no_table_references_are_tagged_for_expiry_after_the_grace(aws: boto3.Session) -> None:
    # GIVEN curated run folders: customer_aggregates re-pointed from r1 to r2, daily partitions on r1 and r2
    from datetime import timedelta

    from datalake.catalog_backup import mark_superseded_runs

    s3, glue = aws.client("s3"), aws.client("glue")
    s3.create_bucket(Bucket="curated")
    keys = [
        "customer_aggregates/runs/r1/part-0.parquet",
        "customer_aggregates/runs/r2/part-0.parquet",
        "daily/runs/r1/sale_date=2026-11-01/part-0.parquet",
        "daily/runs/r2/sale_date=2026-11-02/part-0.parquet",
        "daily/runs/r3/sale_date=2026-11-02/part-0.parquet",
    ]
    for key in keys:
        s3.put_object(Bucket="curated", Key=key, Body=b"x")
    glue.create_table(
        DatabaseName=DB,
        TableInput={"Name": "ca", "StorageDescriptor": {"Location": "s3://curated/customer_aggregates/runs/r2/"}},
    )
    glue.create_table(
        DatabaseName=DB,
        TableInput={
            "Name": "daily",
            "PartitionKeys": [{"Name": "sale_date", "Type": "date"}],
            "StorageDescriptor": {"Location": "s3://curated/daily/"},
        },
    )
    for run, day in (("r1", "2026-11-01"), ("r2", "2026-11-02")):
        glue.create_partition(
            DatabaseName=DB,
            TableName="daily",
            PartitionInput={
                "Values": [day],
                "StorageDescriptor": {"Location": f"s3://curated/daily/runs/{run}/sale_date={day}/"},
            },
        )
    document = export_catalog(glue, [DB])
    # WHEN superseded folders are marked now (within the grace) and two days later
    assert mark_superseded_runs(s3, "curated", document, datetime.now(UTC)).folders == []
    marked = mark_superseded_runs(s3, "curated", document, datetime.now(UTC) + timedelta(days=2))
    # THEN only the folders nothing points at carry the lifecycle's tag: the old whole-table run, the lost rerun
    assert marked.folders == ["customer_aggregates/runs/r1/", "daily/runs/r3/"]
    assert marked.objects_tagged == 2
    tagged = {k for k in keys if s3.get_object_tagging(Bucket="curated", Key=k)["TagSet"]}
    assert tagged == {"customer_aggregates/runs/r1/part-0.parquet", "daily/runs/r3/sale_date=2026-11-02/part-0.parquet"}


def test_backup_marks_superseded_runs_when_the_curated_bucket_is_set(aws: boto3.Session) -> None:
    aws.client("s3").create_bucket(Bucket="curated")
    aws.client("s3").put_object(Bucket="curated", Key="t/runs/old/part-0.parquet", Body=b"x")
    settings = Settings(artifacts_bucket="artifacts", curated_bucket="curated", glue_database=DB)
    later = datetime(2099, 1, 1, tzinfo=UTC)
    assert backup_catalog(AwsClients.from_session(aws), settings, now=later).superseded_folders == 1

"""Raw tables typed from the contract, and contract versions evolving, through the whole local pipeline (ADR 0016).

One lake, three runs: customers (CSV reference data) at contract 1.0.0; then 1.1.0, which adds an optional field,
with records of both versions landed; then 2.0.0, which drops a required field and changes a type, and is refused.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pytest

from datalake.contracts import Contract, registered
from datalake.contracts import customers as customers_module
from datalake.contracts.base import EventTime, Identifier, Name
from datalake.schemas import JSON_SERDE, TIMESTAMP_FORMATS
from lakebox.services import glue
from lakebox.sfn import CompressedClock, Execution, run_execution
from lakebox.sfn.integrations import glue_start_job_run_sync
from tests.integration.differential import curated_differences

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GLUE = "arn:aws:states:::glue:startJobRun.sync"
V1 = customers_module.DATASET
HEADER_V1 = "customer_id,name,segment,region,country,signup_date,updated_at"


class CustomerV11(customers_module.Customer):
    """1.1.0: an optional loyalty tier, additive."""

    loyalty_tier: Literal["bronze", "silver", "gold"] | None = None


class CustomerV2(Contract):
    """2.0.0: `country` removed, `signup_date` a date instead of a timestamp, both breaking."""

    customer_id: Identifier
    name: Name
    segment: Literal["consumer", "small_business", "enterprise"]
    region: Literal["north", "south", "east", "west", "central", "online"]
    signup_date: dt.date
    updated_at: EventTime


V11 = replace(V1, contract=CustomerV11, version="1.1.0")
V2 = replace(V1, contract=CustomerV2, version="2.0.0")


@dataclass
class Snapshot:
    """What one run left: its execution and the catalog and objects it is judged by."""

    execution: Execution
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    objects: dict[str, dict[str, str]] = field(default_factory=dict)
    queries: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)

    def columns(self, table: str) -> dict[str, str]:
        return {c["Name"]: c["Type"] for c in self.tables[table]["StorageDescriptor"]["Columns"]}


class Lake:
    """The local stack and the few things these tests do with it."""

    def __init__(self, box: Any, folder: Path) -> None:
        self.box = box
        self.folder = folder
        self.definition, _ = box.stack.state_machine("PipelineStateMachine")
        self.arn = str(box.stack.ref("PipelineStateMachine"))
        self.database = str(box.stack.parameters["GlueDatabaseName"])
        self.workgroup = str(box.stack.ref("AnalyticsWorkGroup"))

    def put_csv(self, name: str, header: str, rows: list[str], dataset: str = "customers") -> None:
        path = self.folder / name
        path.write_text("\n".join([header, *rows]) + "\n")
        _, deliveries = self.box.put_file(path, dataset)
        assert all(d.ok for d in deliveries), deliveries

    def run(self, name: str) -> Execution:
        integrations = self.box.integrations()
        integrations.register(GLUE, glue_start_job_run_sync(self.run_glue_job))
        return run_execution(
            self.definition,
            {"datasets": ["sales", "products", "customers"], "forecast": False},
            integrations,
            name=name,
            state_machine_arn=self.arn,
            clock=CompressedClock(),
        )

    def run_glue_job(self, job_name: str, arguments: dict[str, str]) -> dict[str, Any]:
        return glue.run_glue_job(self.box.session, job_name, {**arguments, "--settle_seconds": "0"})

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        _, rows = self.box.athena.query(sql, workgroup=self.workgroup, database=self.database).to_rows()
        return list(rows)

    def snapshot(self, execution: Execution, queries: dict[str, str]) -> Snapshot:
        glue_client = self.box.session.client("glue")
        tables = {t["Name"]: t for t in glue_client.get_tables(DatabaseName=self.database)["TableList"]}
        s3 = self.box.session.client("s3")
        objects: dict[str, dict[str, str]] = {}
        for zone, bucket in (("processed", "ProcessedBucket"), ("curated", "CuratedBucket")):
            listed: dict[str, str] = {}
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.box.bucket(bucket)):
                listed.update({o["Key"]: o["ETag"] for o in page.get("Contents", []) if not o["Key"].startswith("_")})
            objects[zone] = listed
        watermark = s3.get_object(Bucket=self.box.bucket("ProcessedBucket"), Key="_watermarks/customers.json")
        raw = s3.list_objects_v2(Bucket=self.box.bucket("RawBucket"), Prefix="customers/").get("Contents", [])
        objects["watermark"] = {"customers": watermark["Body"].read().decode()}
        objects["raw"] = {o["Key"]: o["ETag"] for o in raw}
        partitions = glue_client.get_partitions(DatabaseName=self.database, TableName="customers")["Partitions"]
        objects["partition_columns"] = {
            p["Values"][0]: ",".join(c["Name"] for c in p["StorageDescriptor"]["Columns"]) for p in partitions
        }
        return Snapshot(execution, tables, objects, {k: self.query(sql) for k, sql in queries.items()})

    def run_item(self, name: str) -> dict[str, Any]:
        table = self.box.session.resource("dynamodb").Table(self.box.stack.ref("RunsTable"))
        item: dict[str, Any] = table.get_item(Key={"run_id": name})["Item"]
        return item


SALES_HEADER = (
    "transaction_id,event_time,customer_id,product_id,store_id,region,quantity,unit_price,currency,"
    "payment_method,channel"
)
UNITS = "SELECT sum(units) FROM daily_sales_by_region"
RAW_QUERY = "SELECT customer_id, signup_date, updated_at, _ingested_at FROM raw_customers ORDER BY customer_id"
TIERS_RAW = "SELECT customer_id, loyalty_tier FROM raw_customers ORDER BY customer_id, updated_at"
TIERS_PROCESSED = "SELECT customer_id, loyalty_tier FROM customers ORDER BY customer_id, updated_at"


@pytest.fixture(scope="module")
def runs(local_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Snapshot]]:
    """Three pipeline runs on one lake: contract 1.0.0, then 1.1.0 (additive), then 2.0.0 (breaking)."""
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("AWS_ENDPOINT_URL", local_stack.endpoint)  # the job's own catalog client
    lake = Lake(local_stack, tmp_path_factory.mktemp("evolution"))
    snapshots: dict[str, Snapshot] = {}
    recent = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        # the curated tables join sales to products and customers: one sale and one product make them buildable
        lake.put_csv(
            "products.csv",
            "product_id,name,category,list_price,currency,active,updated_at",
            ["P1,Lamp,home,19.90,EUR,true,2026-11-01T00:00:00Z"],
            "products",
        )
        lake.put_csv("sales.csv", SALES_HEADER, [f"T1,{recent},C1,P1,S1,north,2,19.90,EUR,card,store"], "sales")
        lake.put_csv(
            "v1.csv",
            HEADER_V1,
            [
                "C1,Ada,consumer,north,GB,2025-01-02T03:04:05.123456Z,2026-11-20T10:00:00Z",
                "C2,Bob,enterprise,west,US,2024-06-30T23:59:59+02:00,2026-11-21T11:30:00.5Z",
            ],
        )
        first = lake.run("contract-1-0-0")
        snapshots["1.0.0"] = lake.snapshot(first, {"raw": RAW_QUERY})
        with registered(V11):
            lake.put_csv(
                "v11.csv",
                f"{HEADER_V1},loyalty_tier",
                [
                    "C3,Cy,consumer,south,FR,2025-05-05T05:05:05Z,2026-11-25T09:00:00Z,gold",
                    # a new version of C1, dated into the partition 1.0.0 wrote: that partition is rewritten
                    "C1,Ada,consumer,north,GB,2025-01-02T03:04:05Z,2026-11-20T12:00:00Z,silver",
                ],
            )
            second = lake.run("contract-1-1-0")
            snapshots["1.1.0"] = lake.snapshot(second, {"raw": TIERS_RAW, "processed": TIERS_PROCESSED})
        with registered(V2):
            lake.put_csv(
                "v2.csv",
                "customer_id,name,segment,region,signup_date,updated_at",
                ["C4,Di,enterprise,east,2025-07-07,2026-11-28T08:00:00Z"],
            )
            # sales keep arriving while the customers contract is refused: they must flow (ADR 0017)
            lake.put_csv("sales-2.csv", SALES_HEADER, [f"T2,{recent},C1,P1,S1,north,3,19.90,EUR,card,store"], "sales")
            third = lake.run("contract-2-0-0")
            snapshots["2.0.0"] = lake.snapshot(third, {"processed": TIERS_PROCESSED, "units": UNITS})
            snapshots["2.0.0"].queries["run_item"] = [tuple(lake.run_item("contract-2-0-0").items())]
            snapshots["2.0.0"].queries["differences"] = [
                (line,) for line in curated_differences(local_stack, ["daily_sales_by_region", "product_performance"])
            ]
        yield snapshots
    finally:
        monkeypatch.undo()


def test_csv_sourced_raw_table_is_typed_from_the_contract(runs: dict[str, Snapshot]) -> None:
    # GIVEN customers landed from CSV at contract 1.0.0
    first = runs["1.0.0"]
    assert first.execution.status == "SUCCEEDED", (first.execution.error, first.execution.cause)

    # THEN the raw table's columns are the contract's types, read by the Hive JSON SerDe with the canonical formats
    table = first.tables["raw_customers"]
    assert first.columns("raw_customers") == {
        "customer_id": "string",
        "name": "string",
        "segment": "string",
        "region": "string",
        "country": "string",
        "signup_date": "timestamp",
        "updated_at": "timestamp",
        "_source_key": "string",
        "_source_version": "string",
        "_line": "bigint",
        "_ingested_at": "timestamp",
        "_original_key": "string",
    }
    serde = table["StorageDescriptor"]["SerdeInfo"]
    assert serde["SerializationLibrary"] == JSON_SERDE
    assert serde["Parameters"]["timestamp.formats"] == TIMESTAMP_FORMATS
    assert table["Parameters"]["contract_version"] == "1.0.0"
    assert [k["Name"] for k in table["PartitionKeys"]] == ["year", "month", "day"]

    # AND the crawl after processing registered the raw partition with the declared columns
    # AND querying raw gives timestamps (to the millisecond, as Athena reads Hive timestamps), an offset read as its
    # UTC instant
    (c1, c2) = first.queries["raw"]
    assert c1[:3] == ("C1", dt.datetime(2025, 1, 2, 3, 4, 5, 123000), dt.datetime(2026, 11, 20, 10, 0))
    assert c2[:3] == ("C2", dt.datetime(2024, 6, 30, 21, 59, 59), dt.datetime(2026, 11, 21, 11, 30, 0, 500000))
    assert isinstance(c1[3], dt.datetime)


def test_an_additive_contract_version_flows_end_to_end(runs: dict[str, Snapshot]) -> None:
    # GIVEN 1.0.0 records processed, then 1.1.0 (a new optional field) records landed beside them
    before, after = runs["1.0.0"], runs["1.1.0"]

    # THEN the run succeeded and the raw table gained the column at the end, recording the new version
    assert after.execution.status == "SUCCEEDED", (after.execution.error, after.execution.cause)
    assert list(after.columns("raw_customers")) == [*before.columns("raw_customers"), "loyalty_tier"]
    assert after.columns("raw_customers")["loyalty_tier"] == "string"
    assert after.tables["raw_customers"]["Parameters"]["contract_version"] == "1.1.0"

    # AND the processed table gained it too, without moving a column; the 1.0.0 partition reads NULL
    assert list(after.columns("customers")) == [*before.columns("customers"), "loyalty_tier"]
    assert after.tables["customers"]["Parameters"]["contract_version"] == "1.1.0"
    tiers = [("C1", None), ("C1", "silver"), ("C2", None), ("C3", "gold")]
    assert after.queries["processed"] == tiers
    assert after.queries["raw"] == tiers

    # AND the partition the run rewrote (1.0.0 wrote it) and the one it added both describe the new column
    columns = after.objects["partition_columns"]
    assert columns["2026-11-20"] == columns["2026-11-25"] == ",".join(after.columns("customers"))
    # AND the partition it did not touch keeps its files and columns: C2 reads NULL from files without the column
    assert columns["2026-11-21"] == before.objects["partition_columns"]["2026-11-21"]
    untouched = {k: v for k, v in after.objects["processed"].items() if "event_date=2026-11-21" in k}
    assert untouched and untouched == {k: v for k, v in before.objects["processed"].items() if k in untouched}
    assert after.objects["processed"] != before.objects["processed"]

    # AND the curated tables keep their columns
    curated = [n for n, t in before.tables.items() if t["StorageDescriptor"]["Location"].find("curated") >= 0]
    assert curated
    assert all(after.columns(n) == before.columns(n) for n in curated)


def test_a_breaking_contract_version_is_held_by_the_gate_while_the_other_datasets_flow(
    runs: dict[str, Snapshot],
) -> None:
    # GIVEN 1.1.0 processed, then 2.0.0 (country removed, signup_date a date) records landed, and a new sale
    before, after = runs["1.1.0"], runs["2.0.0"]

    # THEN the run is PARTIAL: customers is held at the gate, naming the fields and both versions
    assert after.execution.status == "SUCCEEDED", (after.execution.error, after.execution.cause)
    summary = after.execution.output
    assert summary["status"] == "PARTIAL"
    (held,) = summary["held"]
    assert (held["table"], held["datasets"]) == ("customer_aggregates", ["customers"])
    reasons = " ".join(held["reasons"])
    assert "from contract 1.1.0 to 2.0.0" in reasons
    assert "country (string) is in 1.1.0 but not in 2.0.0" in reasons
    assert "signup_date is timestamp in 1.1.0 but date in 2.0.0" in reasons
    item = dict(after.queries["run_item"][0])
    assert item["status"] == "PARTIAL"

    # AND nothing of customers was written: its processed objects and the table reading it are as 1.1.0 left them
    def customers_only(objects: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in objects.items() if k.startswith(("customers/", "customer_aggregates/"))}

    for zone in ("processed", "curated"):
        assert customers_only(after.objects[zone]) == customers_only(before.objects[zone])
    # AND the 2.0.0 records are kept in raw, and the watermark stays so that they are read once compatible
    assert len(after.objects["raw"]) == len(before.objects["raw"]) + 1
    assert after.objects["watermark"] == before.objects["watermark"]
    assert after.queries["processed"] == before.queries["processed"]
    for table in ("raw_customers", "customers"):
        assert after.columns(table) == before.columns(table)
        assert after.tables[table]["Parameters"]["contract_version"] == "1.1.0"

    # AND the sale flowed into the tables that do not read customers, which equal their SQL over processed
    assert after.queries["units"] == [(5,)]
    assert after.queries["differences"] == []

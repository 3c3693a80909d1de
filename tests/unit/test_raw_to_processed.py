"""The Spark job raw → processed: schemas from contracts, planning, and the transforms on a local SparkSession."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import types as T

import tests.fixtures.contracts as fixture_contracts
from datalake.contracts import REGISTRY, Contract, Dataset, discover, get_dataset, registered
from datalake.exceptions import TerminalError
from glue import raw_to_processed as job

SALES = get_dataset("sales")
SHIPMENTS = discover(fixture_contracts.__path__, fixture_contracts.__name__)["shipments"]
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def sale(tid: str, quantity: Any = 1, **changes: Any) -> dict[str, Any]:
    record = {
        "transaction_id": tid,
        "event_time": "2026-11-02T10:00:00Z",
        "customer_id": "C1",
        "product_id": "P1",
        "store_id": "S1",
        "region": "north",
        "quantity": quantity,
        "unit_price": "19.99",
        "currency": "USD",
        "payment_method": "card",
        "channel": "store",
    }
    return {**record, **changes}


def write_raw(
    root: Path,
    dataset: str,
    day: str,
    name: str,
    records: list[dict[str, Any]],
    modified: datetime,
    hour: str | None = None,
) -> Path:
    """A raw object as ingestion writes it: gzip JSON lines with lineage, its mtime set to `modified`.

    With `hour`, in that hour's folder inside the day, as Firehose delivers.
    """
    folder = root / "raw" / dataset / f"year={day[:4]}" / f"month={day[5:7]}" / f"day={day[8:]}"
    if hour is not None:
        folder = folder / f"hour={hour}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json.gz"
    with gzip.open(path, "wt") as out:
        for line, record in enumerate(records, 1):
            lineage = {
                "_source_key": f"{dataset}/{name}.jsonl",
                "_source_version": "v1",
                "_line": line,
                "_original_key": f"_originals/{dataset}/year=2026/month=11/day=20/0123456789ab/{name}.jsonl",
            }
            out.write(json.dumps({"_ingested_at": "2026-11-20T10:00:00.000000Z", **record, **lineage}) + "\n")
    os.utime(path, (modified.timestamp(), modified.timestamp()))
    return path


def local(moment: datetime) -> datetime:
    """How PySpark returns a timestamp: naive, in the process's time zone."""
    return datetime.fromtimestamp(moment.timestamp())


def job_args(root: Path, **extra: str) -> dict[str, str]:
    return {
        "raw_path": (root / "raw").as_uri(),
        "processed_path": (root / "processed").as_uri(),
        "update_catalog": "false",
        "datasets": "sales",
        **extra,
    }


def processed_rows(spark: SparkSession, root: Path, dataset: str = "sales") -> list[dict[str, Any]]:
    rows = spark.read.parquet(str(root / "processed" / dataset)).collect()
    return sorted((r.asDict() for r in rows), key=lambda r: str(r[get_dataset(dataset).key[0]]))


def part_files(root: Path, day: str) -> set[str]:
    return {p.name for p in (root / "processed" / "sales" / f"event_date={day}").glob("*.parquet")}


# ------------------------------------------------------------------------------------ schemas and options


def test_spark_schema_follows_the_contract_types() -> None:
    # GIVEN the registered contracts
    # WHEN their Spark schemas are derived
    sales = {f.name: f.dataType for f in job.contract_schema(SALES).fields}
    products = {f.name: f.dataType for f in job.contract_schema(get_dataset("products")).fields}
    clicks = {f.name: f.dataType for f in job.contract_schema(get_dataset("clickstream")).fields}

    # THEN money is an exact decimal, times are timestamps, bounded ints are ints, optional ids are strings
    assert sales["unit_price"] == T.DecimalType(12, 2)
    assert sales["event_time"] == T.TimestampType()
    assert sales["quantity"] == T.IntegerType()
    assert sales["region"] == T.StringType()
    assert products["active"] == T.BooleanType()
    assert clicks["customer_id"] == T.StringType()
    assert list(sales) == list(SALES.contract.model_fields)


def test_nested_models_lists_and_dicts_map_to_structs_arrays_and_maps() -> None:
    # GIVEN a contract with floats, booleans, dates, a model inside a model, a list of models, a list and a dict
    # WHEN its Spark schema is derived
    schema = {f.name: f.dataType.simpleString() for f in job.contract_schema(SHIPMENTS).fields}

    # THEN each nests as the contract does, with the leaves' exact types
    assert schema == {
        "shipment_id": "string",
        "shipped_at": "timestamp",
        "carrier": "string",
        "weight_kg": "double",
        "insured": "boolean",
        "promised_date": "date",
        "delivered_on": "date",
        "destination": "struct<street:string,city:string,postcode:string,country:string,"
        "location:struct<lat:double,lon:double>>",
        "parcels": "array<struct<parcel_id:string,weight_kg:double,declared_value:decimal(12,2),fragile:boolean,"
        "packed_at:timestamp>>",
        "tags": "array<string>",
        "dimensions_cm": "map<string,double>",
    }


def test_a_nullable_decimal_written_as_annotated_field_or_none_has_its_decimal_type() -> None:
    from typing import Annotated

    from pydantic import Field

    Money = Annotated[Decimal, Field(max_digits=10, decimal_places=2)]

    # GIVEN nullable decimals in the form `lakebox dataset new` writes (`Annotated[Decimal, Field(...)] | None`, where
    # pydantic keeps the Field inside the union), at the top, in a list and in a nested model
    class Line(Contract):
        price: Money | None = None

    class Order(Contract):
        order_id: str
        placed_at: datetime
        amount: Money | None = None
        refunds: list[Money | None] | None = None
        line: Line | None = None

    dataset = Dataset(name="orders", contract=Order, key=("order_id",), event_time="placed_at")
    # WHEN its Spark schema is derived (before the fix: TypeError "a Decimal field needs max_digits and
    # decimal_places", failing the whole run)
    schema = {f.name: f.dataType.simpleString() for f in job.contract_schema(dataset).fields}
    # THEN each is decimal(10,2), as the catalog declares it
    assert schema["amount"] == "decimal(10,2)"
    assert schema["refunds"] == "array<decimal(10,2)>"
    assert schema["line"] == "struct<price:decimal(10,2)>"


def test_a_type_with_no_spark_counterpart_is_refused_by_name() -> None:
    class ByNumber(Contract):
        counts: dict[int, int]

    class Either(Contract):
        value: int | str

    for contract in (ByNumber, Either):
        dataset = Dataset(name="odd", contract=contract, key=(), event_time=next(iter(contract.model_fields)))
        with pytest.raises(TypeError, match="Spark type"):
            job.contract_schema(dataset)


def test_options_order_reference_datasets_before_the_datasets_they_enrich() -> None:
    # GIVEN datasets named sales first, as a JSON list (how the state machine passes them)
    args = {"raw_path": "s3://raw-bucket", "processed_path": "s3://processed-bucket/", "JOB_RUN_ID": "jr_1"}

    # WHEN the options are parsed
    options = job.JobOptions.from_args({**args, "datasets": '["sales", "products", "customers"]'})

    # THEN products and customers come before sales, roots end with "/", the catalog keeps the s3 location
    names = [d.name for d in options.datasets]
    assert names.index("products") < names.index("sales") and names.index("customers") < names.index("sales")
    assert options.raw_path == "s3://raw-bucket/"
    assert options.catalog_processed_path == "s3://processed-bucket/"
    assert options.run_id == "jr_1"
    # AND none named (no argument, or the state machine's default empty list) is every registered dataset
    assert {d.name for d in job.JobOptions.from_args(args).datasets} == set(REGISTRY)
    assert {d.name for d in job.JobOptions.from_args({**args, "datasets": "[]"}).datasets} == set(REGISTRY)


def test_missing_paths_are_a_terminal_error() -> None:
    with pytest.raises(TerminalError, match="--raw_path"):
        job.JobOptions.from_args({"processed_path": "s3://p/"})


def test_spark_submit_arguments_are_parsed_as_pairs() -> None:
    assert job.parse_arguments(["--raw_path", "s3://r/", "--since=2026-11-01T00:00:00Z"]) == {
        "raw_path": "s3://r/",
        "since": "2026-11-01T00:00:00Z",
    }
    with pytest.raises(TerminalError):
        job.parse_arguments(["--raw_path"])


def test_catalog_table_is_parquet_partitioned_by_event_date() -> None:
    # GIVEN a processed schema
    schema = T.StructType(
        [
            T.StructField("transaction_id", T.StringType()),
            T.StructField("unit_price", T.DecimalType(12, 2)),
            T.StructField("event_time", T.TimestampType()),
            T.StructField("event_date", T.DateType()),
        ]
    )

    # WHEN the Glue table input is built
    table = job.glue_table_input("sales", schema, "s3://processed-bucket/sales/")

    # THEN the columns carry Hive types, the partition key is a date, the SerDe is Parquet's
    descriptor = table["StorageDescriptor"]
    assert descriptor["Columns"] == [
        {"Name": "transaction_id", "Type": "string"},
        {"Name": "unit_price", "Type": "decimal(12,2)"},
        {"Name": "event_time", "Type": "timestamp"},
    ]
    assert table["PartitionKeys"] == [{"Name": "event_date", "Type": "date"}]
    assert descriptor["SerdeInfo"]["SerializationLibrary"] == job.PARQUET_SERDE
    assert descriptor["InputFormat"].endswith("MapredParquetInputFormat")
    assert descriptor["Location"] == "s3://processed-bucket/sales/"


def test_an_additive_schema_appends_columns_and_refreshes_the_partitions_the_run_rewrote() -> None:
    import boto3
    from moto import mock_aws

    # GIVEN a processed table at 1.0.0 with one partition, and a 1.1.0 schema with a column in the middle
    before = T.StructType([T.StructField("id", T.StringType()), T.StructField("event_date", T.DateType())])
    after = T.StructType(
        [T.StructField("id", T.StringType()), T.StructField("tier", T.StringType()), *before.fields[1:]]
    )
    with mock_aws():
        glue = boto3.client("glue", region_name="us-east-1")
        glue.create_database(DatabaseInput={"Name": "lake"})
        old_day, new_day = date(2026, 11, 20), date(2026, 11, 25)
        job.update_catalog(glue, "lake", "t", before, "s3://p/t/", [old_day], parameters={"contract_version": "1.0.0"})

        # WHEN a run at 1.1.0 rewrites the old partition and adds a new one
        added = job.update_catalog(
            glue, "lake", "t", after, "s3://p/t/", [old_day, new_day], parameters={"contract_version": "1.1.0"}
        )

        # THEN the column is appended, the version recorded, and both partitions describe the new column
        table = glue.get_table(DatabaseName="lake", Name="t")["Table"]
        assert [c["Name"] for c in table["StorageDescriptor"]["Columns"]] == ["id", "tier"]
        assert table["Parameters"]["contract_version"] == "1.1.0"
        assert added == 1
        partitions = glue.get_partitions(DatabaseName="lake", TableName="t")["Partitions"]
        assert {p["Values"][0]: [c["Name"] for c in p["StorageDescriptor"]["Columns"]] for p in partitions} == {
            "2026-11-20": ["id", "tier"],
            "2026-11-25": ["id", "tier"],
        }


# ------------------------------------------------------------------------------------------------ planning


@dataclass
class MemoryStore:
    """The job's FileStore protocol over a dict: file URI → modification time, plus small texts."""

    files: dict[str, datetime]
    texts: dict[str, str] = field(default_factory=dict)

    def list_files(self, prefix: str) -> list[job.FileInfo]:
        return [job.FileInfo(u, u[len(prefix) :], 1, m) for u, m in self.files.items() if u.startswith(prefix)]

    def exists(self, uri: str) -> bool:
        return uri in self.texts or any(u.startswith(uri) for u in self.files)

    def read_text(self, uri: str) -> str | None:
        return self.texts.get(uri)

    def write_text(self, uri: str, text: str) -> None:
        self.texts[uri] = text

    def delete(self, uri: str) -> None:
        self.files = {u: m for u, m in self.files.items() if not u.startswith(uri)}


def test_plan_reads_only_files_past_the_watermark_and_settled() -> None:
    # GIVEN raw files before, after and too close to now, a hidden file, and a watermark at T0
    raw = "s3://raw-bucket/sales/"
    files = {
        f"{raw}year=2026/month=11/day=01/old.json.gz": T0,
        f"{raw}year=2026/month=11/day=02/new.json.gz": T0 + timedelta(minutes=5),
        f"{raw}year=2026/month=11/day=03/unsettled.json.gz": T0 + timedelta(minutes=14),
        f"{raw}_temporary/year=2026/month=11/day=02/x.json.gz": T0 + timedelta(minutes=5),
        "s3://processed-bucket/sales/event_date=2026-11-02/part-0.parquet": T0,
    }
    watermark = "s3://processed-bucket/_watermarks/sales.json"
    store = MemoryStore(files, {watermark: json.dumps({"last_modified": T0.isoformat()})})
    args = {"raw_path": "s3://raw-bucket/", "processed_path": "s3://processed-bucket/", "settle_seconds": "300"}

    # WHEN the run is planned at T0 + 15 min
    plan = job.staging_plan({**args, "datasets": "sales"}, store, now=T0 + timedelta(minutes=15))

    # THEN only the settled new file, the dataset's processed root (dedup spans its history) and the watermark
    assert plan.inputs == (
        f"{raw}year=2026/month=11/day=02/new.json.gz",
        "s3://processed-bucket/sales/",
        watermark,
    )
    assert plan.roots == {"raw_path": "s3://raw-bucket/", "processed_path": "s3://processed-bucket/"}
    # AND the catalog keeps the real locations of both zones when a runtime relocates the roots
    assert plan.args == {"catalog_processed_path": "s3://processed-bucket/", "catalog_raw_path": "s3://raw-bucket/"}


def test_since_overrides_the_watermark() -> None:
    raw = "s3://raw-bucket/sales/year=2026/month=11/day=01/a.json.gz"
    store = MemoryStore({raw: T0}, {"s3://p/_watermarks/sales.json": json.dumps({"last_modified": T0.isoformat()})})
    options = job.JobOptions.from_args(
        {"raw_path": "s3://raw-bucket/", "processed_path": "s3://p/", "since": "2026-01-01"}
    )

    plan = job.plan_dataset(store, options, SALES, now=T0 + timedelta(hours=1))

    assert [f.uri for f in plan.raw_files] == [raw]
    assert plan.dates == (date(2026, 11, 1),)


def test_raw_file_outside_the_partition_layout_is_listed_and_skipped_not_a_failure() -> None:
    dated = "s3://raw-bucket/sales/year=2026/month=11/day=01/a.json.gz"
    store = MemoryStore({"s3://raw-bucket/sales/stray.json.gz": T0, dated: T0})
    options = job.JobOptions.from_args({"raw_path": "s3://raw-bucket/", "processed_path": "s3://p/"})
    plan = job.plan_dataset(store, options, SALES, now=T0 + timedelta(hours=1))
    assert [f.uri for f in plan.raw_files] == [dated]
    assert [f.relative for f in plan.skipped_files] == ["stray.json.gz"]
    assert plan.high_water == T0


def test_hour_partitions_inside_the_day_are_read_and_deeper_or_other_layouts_skipped() -> None:
    # GIVEN a Firehose object in an hour folder, a stream object in the day folder, and two other layouts
    raw = "s3://raw-bucket/clickstream/"
    hour = (
        f"{raw}year=2026/month=11/day=01/hour=09/0a1b2c3d4e5f6a7b-lakebox-clickstream-1-2026-11-01-09-58-12-x.json.gz"
    )
    day = f"{raw}year=2026/month=11/day=02/h10-lakebox-clickstream-shard-0123.json.gz"
    deeper = f"{raw}year=2026/month=11/day=02/hour=10/extra/x.json.gz"
    not_an_hour = f"{raw}year=2026/month=11/day=02/hour=1/x.json.gz"
    store = MemoryStore({hour: T0, day: T0, deeper: T0, not_an_hour: T0})
    options = job.JobOptions.from_args({"raw_path": "s3://raw-bucket/", "processed_path": "s3://p/"})
    # WHEN the run is planned
    plan = job.plan_dataset(store, options, get_dataset("clickstream"), now=T0 + timedelta(hours=1))
    # THEN both the hour and the day layout are read, dated by their day; the others are listed as skipped
    assert [f.uri for f in plan.raw_files] == [hour, day]
    assert plan.dates == (date(2026, 11, 1), date(2026, 11, 2))
    assert sorted(f.uri for f in plan.skipped_files) == sorted([deeper, not_an_hour])


def test_a_reference_change_makes_the_datasets_that_look_it_up_read_their_history() -> None:
    files = {
        "s3://raw-bucket/products/year=2026/month=11/day=01/p.json.gz": T0,
        "s3://p/sales/event_date=2026-10-01/part-0.parquet": T0,
    }
    args = {"raw_path": "s3://raw-bucket/", "processed_path": "s3://p/", "datasets": "sales,products"}
    plan = job.build_plan(job.JobOptions.from_args(args), MemoryStore(files), T0 + timedelta(hours=1))
    by_name = {p.dataset: p for p in plan.datasets}
    assert by_name["sales"].references_changed == ("products",)
    assert not by_name["sales"].raw_files and by_name["sales"].reads_history
    assert "s3://p/sales/" in plan.inputs(MemoryStore(files))


def test_datasets_wait_for_the_references_they_look_up_only_when_their_history_or_no_new_file_asks_for_them() -> None:
    # GIVEN new products, customers, clickstream and sales, and no processed history yet
    files = {
        f"s3://raw-bucket/{name}/year=2026/month=11/day=01/{name}.json.gz": T0
        for name in ("products", "customers", "clickstream", "sales")
    }
    args = {
        "raw_path": "s3://raw-bucket/",
        "processed_path": "s3://p/",
        "datasets": "products,customers,clickstream,sales",
    }
    plan = job.build_plan(job.JobOptions.from_args(args), MemoryStore(files), T0 + timedelta(hours=1))
    # THEN every dataset starts at once, and no new rows are kept in memory: nothing has history to scan for them
    assert job.dataset_waits(MemoryStore(files), plan) == {
        n: set() for n in ("products", "customers", "clickstream", "sales")
    }
    assert job.kept_references(MemoryStore(files), plan) == set()
    # WHEN sales has processed history, THEN it waits for the references it looks up and their new rows are kept
    with_history = {**files, "s3://p/sales/event_date=2026-10-01/part-0.parquet": T0}
    waits = job.dataset_waits(MemoryStore(with_history), plan)
    assert waits["sales"] == {"products", "customers"} and waits["clickstream"] == set()
    assert job.kept_references(MemoryStore(with_history), plan) == {"products", "customers"}
    # WHEN sales has no new file but its references do, THEN it waits for them (they decide whether it runs)
    no_sales = {k: v for k, v in files.items() if "/sales/" not in k}
    plan = job.build_plan(job.JobOptions.from_args(args), MemoryStore(no_sales), T0 + timedelta(hours=1))
    assert job.dataset_waits(MemoryStore(no_sales), plan)["sales"] == {"products", "customers"}


# ---------------------------------------------------------------------------------------------- transforms


def raw_frame(spark: SparkSession, dataset: str, records: list[Mapping[str, Any]], tmp_path: Path) -> Any:
    """Raw records read the way the job reads them: JSON lines with the all-string raw schema."""
    path = tmp_path / f"{dataset}.jsonl"
    lineage = {
        "_source_key": "k",
        "_source_version": "v",
        "_line": 1,
        "_ingested_at": "2026-11-20T10:00:00Z",
        "_original_key": "_originals/k",
    }
    path.write_text("".join(json.dumps({**lineage, **r}) + "\n" for r in records))
    return spark.read.schema(job.raw_schema(get_dataset(dataset))).json(str(path))


@pytest.mark.slow
def test_json_numbers_and_csv_strings_cast_to_the_same_contract_values(spark: SparkSession, tmp_path: Path) -> None:
    # GIVEN the same sale as a JSON document (numbers, offset time) and as a CSV row (strings, UTC time)
    as_json = sale("T1", 3, unit_price=19.99, event_time="2026-11-02T12:30:00+02:00")
    as_csv = sale("T2", "3", unit_price="19.99", event_time="2026-11-02T10:30:00Z")

    # WHEN they are cast to the contract
    rows = job.transform_cast(raw_frame(spark, "sales", [as_json, as_csv], tmp_path), SALES).collect()

    # THEN both carry the same exact decimal, int and UTC timestamp, and the lineage is typed
    first, second = sorted((r.asDict() for r in rows), key=lambda r: r["transaction_id"])
    for row in (first, second):
        assert row["unit_price"] == Decimal("19.99")
        assert row["quantity"] == 3
        assert row["event_time"] == local(datetime(2026, 11, 2, 10, 30, tzinfo=UTC))
        assert row["_line"] == 1 and row["_ingested_at"] == local(datetime(2026, 11, 20, 10, 0, tzinfo=UTC))


@pytest.mark.slow
def test_csv_booleans_and_empty_optionals_are_typed(spark: SparkSession, tmp_path: Path) -> None:
    # GIVEN a product from CSV ("false") and a click whose optional customer is an empty CSV field
    product = {
        "product_id": "P1",
        "name": "Lamp",
        "category": "home",
        "list_price": "12.50",
        "currency": "EUR",
        "active": "false",
        "updated_at": "2026-11-01T00:00:00Z",
    }
    click = {
        "event_id": "E1",
        "event_time": "2026-11-01T00:00:00Z",
        "session_id": "S1",
        "customer_id": "",
        "event_type": "page_view",
        "page": "/",
        "device": "mobile",
    }

    # WHEN they are cast
    products = job.transform_cast(raw_frame(spark, "products", [product], tmp_path), get_dataset("products"))
    clicks = job.transform_cast(raw_frame(spark, "clickstream", [click], tmp_path), get_dataset("clickstream"))

    # THEN the boolean is False, the price a decimal, the empty optional id null and the missing one null
    (p,) = products.collect()
    (c,) = clicks.collect()
    assert p["active"] is False and p["list_price"] == Decimal("12.50")
    assert c["customer_id"] is None and c["product_id"] is None


@pytest.mark.slow
def test_reference_versions_are_all_kept_and_a_repeated_version_keeps_its_latest_delivery(
    spark: SparkSession, tmp_path: Path
) -> None:
    # GIVEN two versions of product P1 delivered newest first, the older one twice, and a sale
    product = {"category": "home", "list_price": "5.00", "currency": "USD", "active": "true"}
    products = [
        {**product, "product_id": "P1", "name": "Lamp", "updated_at": "2026-10-05T00:00:00Z"},
        {
            **product,
            "product_id": "P1",
            "name": "Old lamp",
            "updated_at": "2026-10-01T00:00:00Z",
            "_ingested_at": "2026-11-20T10:00:00Z",
        },
        {
            **product,
            "product_id": "P1",
            "name": "Old lamp (fixed)",
            "updated_at": "2026-10-01T00:00:00Z",
            "_ingested_at": "2026-11-21T10:00:00Z",
        },
    ]
    dataset = get_dataset("products")
    typed = job.transform_cast(raw_frame(spark, "products", products, tmp_path), dataset)

    # WHEN the processed rows are built
    out = job.transform_processed(typed, job.read_processed(spark, dataset, []), dataset)

    # THEN each version is a row of its own (point-in-time enrichment reads them), the repeat keeps its later copy
    rows = sorted((r["updated_at"], r["name"]) for r in out.collect())
    assert [name for _, name in rows] == ["Old lamp (fixed)", "Lamp"]
    assert dataset.record_key == ("product_id", "updated_at")


@pytest.mark.slow
def test_sales_carry_exact_revenue_and_no_reference_attributes(spark: SparkSession, tmp_path: Path) -> None:
    # GIVEN a sale late in the evening at UTC-2
    new = job.transform_cast(
        raw_frame(spark, "sales", [sale("T1", 3, event_time="2026-11-02T23:30:00-02:00")], tmp_path), SALES
    )
    # WHEN the processed rows are built
    out = job.transform_processed(new, job.read_processed(spark, SALES, []), SALES)
    (row,) = out.collect()
    # THEN revenue = q x p exactly, the date and hour are UTC's, and enrichment is left to curation (point in time)
    assert out.columns == job.processed_columns(SALES)
    assert row["revenue"] == Decimal("59.97") and out.schema["revenue"].dataType == T.DecimalType(18, 2)
    assert (row["event_date"], row["event_hour"]) == (date(2026, 11, 3), 1)
    assert "product_name" not in out.columns and "customer_segment" not in out.columns
    # AND the raw record's `_original_key` stays in raw: processed keeps its lineage columns (ADR 0018)
    assert "_original_key" not in out.columns


@pytest.mark.slow
def test_later_batches_dedup_against_processed_data_and_reruns_replace_identically(
    spark: SparkSession, tmp_path: Path
) -> None:
    # GIVEN a first batch over two days, with T3 twice in it, processed
    first = [
        sale("T1", 1),
        sale("T2", 1),
        sale("T3", 1, _ingested_at="2026-11-20T09:00:00Z"),
        sale("T3", 5, _ingested_at="2026-11-20T11:00:00Z"),
    ]
    write_raw(tmp_path, "sales", "2026-11-02", "first", first, T0)
    write_raw(tmp_path, "sales", "2026-11-03", "other-day", [sale("T9", 1, event_time="2026-11-03T08:00:00Z")], T0)
    summary = job.run(spark, job_args(tmp_path))
    day3_files = part_files(tmp_path, "2026-11-03")

    # WHEN a later batch brings a newer T1 and an older T2 for 2026-11-02
    second = [
        sale("T1", 7, _ingested_at="2026-11-21T12:00:00Z"),
        sale("T2", 9, _ingested_at="2026-11-19T08:00:00Z"),
    ]
    write_raw(tmp_path, "sales", "2026-11-02", "second", second, T0 + timedelta(minutes=1))
    again = job.run(spark, job_args(tmp_path))

    # THEN the first run dropped the older T3; the second read only the new file, kept the newer T1,
    # kept the processed T2 over the older arrival, and left the other day's partition untouched
    assert summary["datasets"]["sales"]["duplicates_dropped"] == 1
    counts = again["datasets"]["sales"]
    assert counts["raw_files"] == ["sales/year=2026/month=11/day=02/second.json.gz"]
    moved = (counts["rows_in"], counts["rows_existing"], counts["duplicates_dropped"], counts["rows_out"])
    assert moved == (2, 3, 2, 3)
    assert counts["partitions"] == ["2026-11-02"]
    after = processed_rows(spark, tmp_path)
    assert {r["transaction_id"]: r["quantity"] for r in after} == {"T1": 7, "T2": 1, "T3": 5, "T9": 1}
    assert part_files(tmp_path, "2026-11-03") == day3_files
    watermark = json.loads((tmp_path / "processed" / "_watermarks" / "sales.json").read_text())
    assert datetime.fromisoformat(watermark["last_modified"]) == T0 + timedelta(minutes=1)

    # AND WHEN every raw file is processed again
    rerun = job.run(spark, job_args(tmp_path, since="2000-01-01T00:00:00Z"))

    # THEN each row read is a duplicate, the rows are identical, each partition was replaced by one new file
    counts = rerun["datasets"]["sales"]
    assert (counts["rows_in"], counts["duplicates_dropped"], counts["rows_out"]) == (7, 7, 4)
    assert processed_rows(spark, tmp_path) == after
    assert len(part_files(tmp_path, "2026-11-02")) == 1
    assert len(files := part_files(tmp_path, "2026-11-03")) == 1 and files != day3_files


@pytest.mark.slow
def test_a_run_with_nothing_new_writes_its_summary_without_starting_spark(spark: SparkSession, tmp_path: Path) -> None:
    # GIVEN a lake whose raw files were all processed
    write_raw(tmp_path, "sales", "2026-11-02", "first", [sale("T1", 1), sale("T2", 2)], T0)
    first = job.run(spark, job_args(tmp_path))
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "processed" / "sales").rglob("*.parquet"))
    made: list[SparkSession] = []

    def make_session() -> SparkSession:
        made.append(spark)
        return spark

    # WHEN the job runs again, given a function making the session rather than the session
    again = job.run(make_session, job_args(tmp_path, run_id="second"))

    # THEN no session was made, and the summary says nothing was read, with the watermark where it was
    assert made == []
    counts = again["datasets"]["sales"]
    assert (counts["raw_files"], counts["rows_read"], counts["rows_out"], counts["partitions"]) == ([], 0, 0, [])
    assert counts["watermark"]["previous"] == counts["watermark"]["current"] == T0.isoformat()
    assert first["datasets"]["sales"]["rows_out"] == 2
    written = json.loads((tmp_path / "processed" / "_runs" / "second" / "summary.json").read_text())
    assert written["datasets"]["sales"]["raw_files"] == []
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "processed" / "sales").rglob("*.parquet")) == before

    # AND WHEN a new file arrives, the session is made and the file processed
    moment = T0 + timedelta(minutes=1)
    write_raw(tmp_path, "sales", "2026-11-03", "second", [sale("T3", 1, event_time="2026-11-03T08:00:00Z")], moment)
    third = job.run(make_session, job_args(tmp_path, run_id="third"))
    assert made == [spark]
    assert third["datasets"]["sales"]["rows_out"] == 1


@pytest.mark.slow
def test_what_the_job_cannot_digest_is_quarantined_with_its_reason_and_the_run_goes_on(
    spark: SparkSession, tmp_path: Path
) -> None:
    # GIVEN raw data that did not come through this ingestion: a sale dated outside its raw partition, an
    # unreadable quantity, a line that is no JSON object, a missing required field, and two good sales
    folder = write_raw(
        tmp_path,
        "sales",
        "2026-11-02",
        "odd",
        [sale("T1"), sale("T2", "many"), sale("T3", event_time="2026-11-05T10:00:00Z"), sale("T4"), sale("T5")],
        T0,
    )
    with gzip.open(folder, "at") as out:
        out.write("{not json\n")
        record = sale("T6")
        del record["customer_id"]
        out.write(
            json.dumps(
                {
                    **record,
                    "_source_key": "k",
                    "_source_version": "v",
                    "_line": 7,
                    "_ingested_at": "2026-11-20T10:00:00Z",
                }
            )
            + "\n"
        )
    # AND an hour partition (Firehose's layout) holding a sale of its hour and one of the next hour
    hourly = [sale("T7", event_time="2026-11-02T10:59:59Z"), sale("T8", event_time="2026-11-02T11:00:00Z")]
    write_raw(tmp_path, "sales", "2026-11-02", "hourly", hourly, T0, hour="10")

    # WHEN the job runs
    summary = job.run(spark, job_args(tmp_path))

    # THEN it succeeds; the good rows are processed, every other row is set aside with its reason, counts reconcile
    counts = summary["datasets"]["sales"]
    assert (counts["rows_read"], counts["rows_quarantined"], counts["rows_in"], counts["rows_out"]) == (9, 5, 4, 4)
    assert counts["quarantine"]["reasons"] == {
        "_corrupt_record: not a JSON object": 1,
        "customer_id: missing": 1,
        "event_time: dated outside its raw partition": 2,
        "quantity: not a int": 1,
    }
    assert counts["skipped_files"] == []
    assert {r["transaction_id"] for r in processed_rows(spark, tmp_path)} == {"T1", "T4", "T5", "T7"}
    quarantined = spark.read.json(counts["quarantine"]["location"]).collect()
    assert sorted(r["transaction_id"] or "" for r in quarantined) == ["", "T2", "T3", "T6", "T8"]
    assert all(r["_raw_file"].endswith(("odd.json.gz", "hourly.json.gz")) and r["_problems"] for r in quarantined)


@pytest.mark.slow
def test_rows_quarantined_beside_processed_history_are_counted_and_leave_the_history_as_it_was(
    spark: SparkSession, tmp_path: Path
) -> None:
    # GIVEN T1 and T2 processed on 11-02
    write_raw(tmp_path, "sales", "2026-11-02", "first", [sale("T1"), sale("T2")], T0)
    job.run(spark, job_args(tmp_path))

    # WHEN a later delivery brings, for 11-02, T3 and an unreadable quantity, and for 11-03 only a missing field
    later = T0 + timedelta(minutes=1)
    write_raw(tmp_path, "sales", "2026-11-02", "second", [sale("T3", 2), sale("T4", "many")], later)
    lone = sale("T5", event_time="2026-11-03T10:00:00Z")
    del lone["customer_id"]
    write_raw(tmp_path, "sales", "2026-11-03", "third", [lone], later)
    summary = job.run(spark, job_args(tmp_path))

    # THEN every row read is processed or quarantined with its reason, the counts reconcile with the partitions
    # (existing + read - quarantined - duplicates = rows out), and no partition is written for a date whose only
    # row was set aside
    counts = summary["datasets"]["sales"]
    assert (counts["rows_read"], counts["rows_quarantined"], counts["rows_in"]) == (3, 2, 1)
    assert (counts["rows_existing"], counts["duplicates_dropped"], counts["rows_out"]) == (2, 0, 3)
    assert counts["quarantine"]["reasons"] == {"customer_id: missing": 1, "quantity: not a int": 1}
    assert counts["partitions"] == ["2026-11-02"] and counts["partitions_removed"] == []
    assert [(r["transaction_id"], r["quantity"]) for r in processed_rows(spark, tmp_path)] == [
        ("T1", 1),
        ("T2", 1),
        ("T3", 2),
    ]
    assert not (tmp_path / "processed" / "sales" / "event_date=2026-11-03").exists()
    quarantined = spark.read.json(counts["quarantine"]["location"]).collect()
    assert sorted(r["transaction_id"] for r in quarantined) == ["T4", "T5"]


@pytest.mark.slow
def test_a_correction_that_moves_a_sale_to_another_date_leaves_one_row_and_removes_the_old(
    spark: SparkSession, tmp_path: Path
) -> None:
    # GIVEN T1 and T2 processed on 11-02 and T7 alone on 11-04
    first = [sale("T1", 1), sale("T2", 1)]
    write_raw(tmp_path, "sales", "2026-11-02", "first", first, T0)
    write_raw(tmp_path, "sales", "2026-11-04", "lone", [sale("T7", 1, event_time="2026-11-04T09:00:00Z")], T0)
    job.run(spark, job_args(tmp_path))

    # WHEN a later delivery corrects T1 to 11-05 and T7 to 11-05
    later = {"_ingested_at": "2026-11-22T10:00:00Z", "event_time": "2026-11-05T10:00:00Z"}
    write_raw(
        tmp_path, "sales", "2026-11-05", "fix", [sale("T1", 4, **later), sale("T7", 2, **later)], T0 + timedelta(1)
    )
    summary = job.run(spark, job_args(tmp_path))

    # THEN each key has one row, on its new date; 11-02 lost T1, 11-04 is emptied and removed
    counts = summary["datasets"]["sales"]
    assert counts["partitions"] == ["2026-11-02", "2026-11-05"]
    assert counts["partitions_removed"] == ["2026-11-04"]
    assert (counts["rows_in"], counts["rows_existing"], counts["duplicates_dropped"], counts["rows_out"]) == (
        2,
        3,
        2,
        3,
    )
    rows = processed_rows(spark, tmp_path)
    assert [(r["transaction_id"], r["quantity"], str(r["event_date"])) for r in rows] == [
        ("T1", 4, "2026-11-05"),
        ("T2", 1, "2026-11-02"),
        ("T7", 2, "2026-11-05"),
    ]
    assert not (tmp_path / "processed" / "sales" / "event_date=2026-11-04").exists()


@pytest.mark.slow
def test_timestamps_before_1900_are_written_as_the_instants_they_name(spark: SparkSession, tmp_path: Path) -> None:
    # GIVEN sales dated 1899-12-31 and 0001-01-01 (legal to the contract), in their raw partitions
    write_raw(tmp_path, "sales", "1899-12-31", "old", [sale("T1", event_time="1899-12-31T23:59:59.000000Z")], T0)
    write_raw(tmp_path, "sales", "0001-01-01", "oldest", [sale("T2", event_time="0001-01-01T00:00:00.000000Z")], T0)
    # WHEN the job runs THEN the Parquet write succeeds and the dates are the contract's (proleptic Gregorian)
    summary = job.run(spark, job_args(tmp_path))
    assert summary["datasets"]["sales"]["partitions"] == ["0001-01-01", "1899-12-31"]
    # (PySpark turns timestamps into local datetimes, which cannot hold year 1 west of UTC: compare as text)
    frame = spark.read.parquet(str(tmp_path / "processed" / "sales"))
    rows = {
        r[0]: (r[1], r[2]) for r in frame.selectExpr("transaction_id", "event_date", "string(event_time)").collect()
    }
    assert rows == {"T1": (date(1899, 12, 31), "1899-12-31 23:59:59"), "T2": (date(1, 1, 1), "0001-01-01 00:00:00")}


@pytest.mark.slow
def test_a_product_change_names_the_sales_dates_whose_curated_rows_it_touches(
    spark: SparkSession, tmp_path: Path
) -> None:
    # GIVEN sales of P1 on 11-02 and 11-03 and of P2 on 11-04, processed before any product arrived
    write_raw(tmp_path, "sales", "2026-11-02", "a", [sale("T1")], T0)
    write_raw(tmp_path, "sales", "2026-11-03", "b", [sale("T2", event_time="2026-11-03T10:00:00Z")], T0)
    write_raw(
        tmp_path, "sales", "2026-11-04", "c", [sale("T3", product_id="P2", event_time="2026-11-04T10:00:00Z")], T0
    )
    job.run(spark, job_args(tmp_path))
    # WHEN product P1 arrives late
    product = {
        "product_id": "P1",
        "name": "Lamp",
        "category": "home",
        "list_price": "5.00",
        "currency": "USD",
        "active": "true",
        "updated_at": "2026-11-10T00:00:00Z",
    }
    write_raw(tmp_path, "products", "2026-11-10", "p", [product], T0 + timedelta(1))
    summary = job.run(spark, job_args(tmp_path, datasets="sales,products"))
    # THEN the sales dates holding P1 are named for curation, though no sale changed
    assert summary["datasets"]["sales"]["reference_dates"] == ["2026-11-02", "2026-11-03"]
    assert summary["datasets"]["sales"]["partitions"] == []


def shipment(sid: str, **changes: Any) -> dict[str, Any]:
    """A shipment as raw holds it (canonical text), with `changes` applied."""
    record = {
        "shipment_id": sid,
        "shipped_at": "2026-11-02T10:00:00.000000Z",
        "carrier": "ups",
        "weight_kg": 12.5,
        "insured": True,
        "promised_date": "2026-11-05",
        "delivered_on": None,
        "destination": {
            "street": "1 High St",
            "city": "Leeds",
            "postcode": "LS1",
            "country": "GB",
            "location": {"lat": 53.8, "lon": -1.55},
        },
        "parcels": [
            {
                "parcel_id": "P1",
                "weight_kg": 2.5,
                "declared_value": 19.90,
                "fragile": False,
                "packed_at": "2026-11-02T08:00:00.000000Z",
            }
        ],
        "tags": ["express"],
        "dimensions_cm": {"w": 10.0, "h": 2.5},
    }
    return {**record, **changes}


@pytest.mark.slow
def test_nested_values_are_typed_and_an_unreadable_one_is_quarantined_with_its_path(
    spark: SparkSession, tmp_path: Path
) -> None:
    # GIVEN raw shipments, two good and others that did not come through this ingestion, each wrong in one nested place
    good = shipment("S1"), shipment("S2", destination={**shipment("S2")["destination"], "location": None})
    parcel = shipment("S0")["parcels"][0]
    odd = {
        "B1": shipment("B1", destination={"street": "x", "postcode": "LS1", "country": "GB"}),
        "B2": shipment("B2", parcels=[{**parcel, "weight_kg": "heavy"}, None]),
        "B3": shipment("B3", parcels={"parcel_id": "P9"}, tags="express"),
        "B4": shipment("B4", dimensions_cm={"w": "wide"}, insured="perhaps", promised_date="2026-02-30"),
        "B5": shipment("B5", parcels=[{**parcel, "declared_value": 1e30}]),
        "B6": shipment("B6", destination={**shipment("B6")["destination"], "location": {"lat": "north", "lon": 0}}),
    }
    write_raw(tmp_path, "shipments", "2026-11-02", "odd", [*good, *odd.values()], T0)

    # WHEN the job runs on them
    with registered(SHIPMENTS):
        summary = job.run(spark, job_args(tmp_path, datasets="shipments"))
        rows = processed_rows(spark, tmp_path, "shipments")

    # THEN the good rows are processed with nested values typed as the contract says
    counts = summary["datasets"]["shipments"]
    assert (counts["rows_read"], counts["rows_quarantined"], counts["rows_out"]) == (8, 6, 2)
    first = rows[0]
    assert first["destination"]["location"]["lat"] == 53.8 and rows[1]["destination"]["location"] is None
    assert first["parcels"][0]["declared_value"] == Decimal("19.90")
    assert first["parcels"][0]["packed_at"] == local(datetime(2026, 11, 2, 8, tzinfo=UTC))
    assert (first["weight_kg"], first["insured"], first["promised_date"]) == (12.5, True, date(2026, 11, 5))
    assert (first["tags"], first["dimensions_cm"]) == (["express"], {"w": 10.0, "h": 2.5})
    # AND every other row is set aside, each reason naming the nested field's path
    parcels = job.contract_schema(SHIPMENTS)["parcels"].dataType.simpleString()
    assert counts["quarantine"]["reasons"] == {
        "destination.city: missing": 1,
        "destination.location.lat: not a double": 1,
        "dimensions_cm{}: not a double": 1,
        "insured: not a boolean": 1,
        "parcels: not a " + parcels: 2,
        "parcels[]: missing": 1,
        "parcels[].weight_kg: not a double": 1,
        "promised_date: not a date": 1,
        "tags: not a array<string>": 1,
    }
    quarantined = spark.read.json(counts["quarantine"]["location"]).collect()
    assert sorted(r["shipment_id"] for r in quarantined) == sorted(odd)


def test_a_check_inside_a_list_of_lists_searches_each_level_with_its_own_elements(spark: SparkSession) -> None:
    # GIVEN a list of lists of numbers, read as text and cast, as the job reads a nested field
    kind = T.ArrayType(T.ArrayType(T.DoubleType()))
    checks = dict(job._nested_checks("grid", list[list[float]], kind))
    texts = ["[[1.5], [2, 3]]", "[[1.5], null]", "[[1.5, null]]", '[[1.5], [2, 3], ["x"]]', "[]", None]
    frame = spark.createDataFrame([(t,) for t in texts], "text string")
    frame = frame.selectExpr("text", "from_json(text, 'array<array<string>>') AS read")
    frame = frame.selectExpr("text", "read", "CAST(read AS array<array<double>>) AS typed")

    # WHEN each check is evaluated as the job writes it (its SQL text, nested lambdas named per level)
    found = frame.selectExpr("text", *(f"{test('read', 'typed', 0)} AS `{reason}`" for reason, test in checks.items()))
    by_text = {row["text"]: {reason for reason in checks if row[reason]} for row in found.collect()}

    # THEN each row holds exactly the problems of its own elements, at the level where they are
    assert set(checks) == {"grid[]: missing", "grid[][]: missing", "grid[][]: not a double"}
    assert by_text == {
        "[[1.5], [2, 3]]": set(),
        "[[1.5], null]": {"grid[]: missing"},
        "[[1.5, null]]": {"grid[][]: missing"},
        '[[1.5], [2, 3], ["x"]]': {"grid[][]: not a double"},  # first of its list, in the third list
        "[]": set(),
        None: set(),
    }

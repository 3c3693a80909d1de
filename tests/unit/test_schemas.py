"""Catalog schemas from the contracts: every contract type's Hive type, the declared raw table, evolution verdicts."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import boto3
import pytest
from moto import mock_aws
from pydantic import AwareDatetime, BaseModel, Field

from datalake import schemas
from datalake.contracts import REGISTRY, Contract, discover, get_dataset
from datalake.contracts.base import Dataset, EventTime, Money, Quantity
from datalake.validation import CANONICAL_TIME_PATTERN
from lakebox.cfn.template import load_template

ROOT = Path(__file__).resolve().parents[2]


class Tier(StrEnum):
    BRONZE = "bronze"
    GOLD = "gold"


class Address(BaseModel):
    city: str
    zip_code: Annotated[int, Field(ge=0, le=99_999)]


class EveryType(Contract):
    """One field of each type a contract may use."""

    id: str
    at: EventTime
    naive: dt.datetime
    aware: AwareDatetime
    day: dt.date
    price: Money
    ratio: float
    count: Quantity
    big: int
    flag: bool
    status: Literal["new", "done"]
    code: Literal[1, 2]
    tier: Tier
    note: str | None = None
    address: Address
    tags: list[str]
    scores: tuple[float, ...] = ()


def test_every_contract_type_has_the_hive_type_athena_reads_it_as() -> None:
    # GIVEN a contract with a field of each type
    dataset = Dataset("every", EveryType, key=("id",), event_time="at")

    # WHEN its columns are derived
    columns = dict(schemas.contract_columns(dataset))

    # THEN timestamps are timestamps, money keeps its precision, enums are their values' type, nested types nest
    assert columns == {
        "id": "string",
        "at": "timestamp",
        "naive": "timestamp",
        "aware": "timestamp",
        "day": "date",
        "price": "decimal(12,2)",
        "ratio": "double",
        "count": "int",
        "big": "bigint",
        "flag": "boolean",
        "status": "string",
        "code": "bigint",
        "tier": "string",
        "note": "string",
        "address": "struct<city:string,zip_code:int>",
        "tags": "array<string>",
        "scores": "array<double>",
    }
    assert schemas.required_fields(dataset) == set(columns) - {"note", "scores"}


@pytest.mark.parametrize(
    ("annotation", "reason"),
    [(int | str, "unions"), (Decimal, "max_digits"), (dict[int, str], "keyed by text"), (object, "no Hive type")],
)
def test_a_type_no_column_can_hold_is_refused_by_name(annotation: Any, reason: str) -> None:
    with pytest.raises(TypeError, match=reason):
        schemas.hive_type(annotation)


def test_the_spark_job_types_every_registered_contract_as_the_catalog_does() -> None:
    # GIVEN the job's Spark schema and the catalog's columns of each dataset, the nested fixture dataset's included
    from glue import raw_to_processed as job
    from tests.fixtures import contracts as fixture_contracts

    fixtures = discover(fixture_contracts.__path__, fixture_contracts.__name__)
    for name, dataset in {**REGISTRY, **fixtures}.items():
        spark = [(f.name, f.dataType.simpleString()) for f in job.contract_schema(dataset).fields]
        # THEN they agree field by field: raw and processed tables say the same of every field
        assert schemas.contract_columns(dataset) == spark, name


def test_raw_table_is_hive_json_with_the_canonical_timestamp_formats() -> None:
    # GIVEN the declared raw table of sales
    table = schemas.raw_table_input(get_dataset("sales"), "s3://raw/sales/")

    # THEN it is partitioned as the raw zone is, records its contract version and reads canonical timestamps
    descriptor = table["StorageDescriptor"]
    assert table["Name"] == "raw_sales"
    assert [k["Name"] for k in table["PartitionKeys"]] == ["year", "month", "day"]
    assert table["Parameters"]["contract_version"] == "1.0.0"
    assert descriptor["SerdeInfo"] == {
        "SerializationLibrary": "org.apache.hive.hcatalog.data.JsonSerDe",
        "Parameters": {"serialization.format": "1", "timestamp.formats": schemas.TIMESTAMP_FORMATS},
    }
    assert [c["Name"] for c in descriptor["Columns"]][-5:] == [
        "_source_key",
        "_source_version",
        "_line",
        "_ingested_at",
        "_original_key",
    ]
    assert {c["Name"]: c["Type"] for c in descriptor["Columns"]}["unit_price"] == "decimal(12,2)"


def test_timestamp_formats_cover_every_spelling_raw_may_hold() -> None:
    # GIVEN the raw timestamp spellings ingestion lands as received: fraction or none, Z or an offset
    assert CANONICAL_TIME_PATTERN.endswith(r"(?:\.\d{1,6})?(?:Z|[+-](?:0\d|1[0-7]):[0-5]\d)")
    # THEN one Joda pattern takes a fraction (1 to 9 digits parse under SSSSSS) and one none; ZZ takes Z and ±HH:MM
    assert schemas.TIMESTAMP_FORMATS.split(",") == ["yyyy-MM-dd'T'HH:mm:ss.SSSSSSZZ", "yyyy-MM-dd'T'HH:mm:ssZZ"]


def test_the_raw_crawler_prefix_is_the_declared_tables_prefix() -> None:
    template = load_template(ROOT / "template.yaml")
    assert template["Resources"]["RawCrawler"]["Properties"]["TablePrefix"] == schemas.RAW_TABLE_PREFIX
    configuration = json.loads(template["Resources"]["RawCrawler"]["Properties"]["Configuration"])
    # the crawler never changes a declared schema; its new partitions take the table's
    assert template["Resources"]["RawCrawler"]["Properties"]["SchemaChangePolicy"]["UpdateBehavior"] == "LOG"
    assert configuration["CrawlerOutput"]["Partitions"]["AddOrUpdateBehavior"] == "InheritFromTable"


# ------------------------------------------------------------------------------------------------ evolution

SALES = get_dataset("sales")
V1 = [("transaction_id", "string"), ("quantity", "int"), ("store_id", "string")]
RECORDED = {"contract_version": "1.0.0", "contract_required": "quantity,store_id,transaction_id"}


@pytest.mark.parametrize(
    ("current", "kinds", "breaking"),
    [
        (V1, [], False),
        ([*V1, ("coupon", "string")], [("coupon", "added")], False),
        ([V1[0], ("coupon", "string"), *V1[1:]], [("coupon", "added")], False),
        ([V1[0], ("quantity", "bigint"), V1[2]], [("quantity", "type_changed")], True),
        ([V1[0], ("quantity", "decimal(12,2)"), V1[2]], [("quantity", "type_changed")], True),
        (V1[:2], [("store_id", "removed")], True),
        ([*V1, ("region", "string")], [("region", "added")], True),
    ],
    ids=["same", "new-optional", "new-optional-in-the-middle", "widened", "int-to-decimal", "removed", "new-required"],
)
def test_a_contract_version_is_judged_additive_or_breaking(
    current: list[tuple[str, str]], kinds: list[tuple[str, str]], breaking: bool
) -> None:
    # GIVEN a table at 1.0.0 and a next version's columns (`region` is a required field of sales, `coupon` is not)
    dataset = replace(SALES, version="1.1.0")

    # WHEN they are compared
    change = schemas.compare("sales", V1, RECORDED, current, dataset)

    # THEN each difference is named, and the verdict follows the rules in docs/runbook.md
    assert [(c.column, c.kind) for c in change.changes] == kinds
    assert change.breaking is breaking
    assert (change.previous_version, change.version) == ("1.0.0", "1.1.0")


def test_an_optional_field_made_required_is_breaking_when_the_table_recorded_it_optional() -> None:
    recorded = {**RECORDED, "contract_required": "transaction_id,store_id"}
    change = schemas.compare("sales", V1, recorded, V1, replace(SALES, version="2.0.0"))
    assert [(c.column, c.kind) for c in change.changes] == [("quantity", "now_required")]
    assert "quantity is optional in 1.0.0 but required in 2.0.0" in change.describe()


def test_the_breaking_verdict_names_every_field_and_both_versions() -> None:
    change = schemas.compare("sales", V1, RECORDED, [("transaction_id", "bigint")], replace(SALES, version="2.0.0"))
    assert change.describe() == (
        "breaking schema change in sales from contract 1.0.0 to 2.0.0: "
        "transaction_id is string in 1.0.0 but bigint in 2.0.0; quantity (int) is in 1.0.0 but not in 2.0.0; "
        "store_id (string) is in 1.0.0 but not in 2.0.0 (nothing was processed; see docs/runbook.md, Schema changes)"
    )
    assert change.model_dump(mode="json")["breaking"] is True


def test_a_table_without_a_recorded_version_is_compared_by_its_columns() -> None:
    change = schemas.compare("sales", V1, {}, [*V1, ("coupon", "string")], SALES)
    assert change.previous_version == schemas.UNRECORDED
    assert not change.breaking


def test_an_evolved_table_appends_new_columns_and_never_reorders() -> None:
    current = [("coupon", "string"), *V1, ("channel", "string")]
    assert schemas.evolved(V1, current) == [*V1, ("coupon", "string"), ("channel", "string")]


# ------------------------------------------------------------------------------------------------ catalog


class SaleV11(SALES.contract):  # type: ignore[misc,valid-type]
    coupon: str | None = None


class SaleV2(Contract):
    transaction_id: str
    event_time: EventTime
    quantity: str


@pytest.fixture
def glue() -> Any:
    with mock_aws():
        client = boto3.client("glue", region_name="us-east-1")
        client.create_database(DatabaseInput={"Name": "lake"})
        yield client


def _columns(glue: Any, name: str = "raw_sales") -> list[str]:
    return [c["Name"] for c in glue.get_table(DatabaseName="lake", Name=name)["Table"]["StorageDescriptor"]["Columns"]]


def test_raw_table_is_created_evolved_and_kept_through_a_breaking_version(glue: Any) -> None:
    # GIVEN no raw table: the first declaration creates it
    first = schemas.declare_raw_table(glue, "lake", "s3://raw/sales/", SALES)
    assert not first.changes
    created = _columns(glue)

    # WHEN an additive version is declared, the column is appended and the version recorded
    additive = replace(SALES, contract=SaleV11, version="1.1.0")
    change = schemas.declare_raw_table(glue, "lake", "s3://raw/sales/", additive)
    assert change.added == ["coupon"]
    assert _columns(glue) == [*created, "coupon"]

    # AND a breaking version changes nothing and says why
    breaking = replace(SALES, contract=SaleV2, version="2.0.0", lookups=(), derived=(), checks=(), rollups=())
    refused = schemas.declare_raw_table(glue, "lake", "s3://raw/sales/", breaking)
    assert refused.breaking
    assert "quantity is int in 1.1.0 but string in 2.0.0" in refused.describe()
    table = glue.get_table(DatabaseName="lake", Name="raw_sales")["Table"]
    assert _columns(glue) == [*created, "coupon"]
    assert table["Parameters"]["contract_version"] == "1.1.0"


def test_a_crawler_inferred_raw_table_and_its_partitions_are_retyped_from_the_contract(glue: Any) -> None:
    # GIVEN a raw table as the crawler inferred it (timestamps as strings, money as double) with a partition
    inferred = [{"Name": "transaction_id", "Type": "string"}, {"Name": "unit_price", "Type": "double"}]
    descriptor = {"Columns": inferred, "Location": "s3://raw/sales/", "SerdeInfo": {"SerializationLibrary": "x"}}
    glue.create_table(
        DatabaseName="lake",
        TableInput={
            "Name": "raw_sales",
            "PartitionKeys": [{"Name": k, "Type": "string"} for k in ("year", "month", "day")],
            "StorageDescriptor": descriptor,
            "Parameters": {"classification": "json", "UPDATED_BY_CRAWLER": "raw"},
        },
    )
    location = "s3://raw/sales/year=2026/month=11/day=01/"
    glue.create_partition(
        DatabaseName="lake",
        TableName="raw_sales",
        PartitionInput={"Values": ["2026", "11", "01"], "StorageDescriptor": {**descriptor, "Location": location}},
    )

    # WHEN the contract declares it
    schemas.declare_raw_table(glue, "lake", "s3://raw/sales/", SALES)

    # THEN the table and its partition carry the contract's types, the partition keeping its location
    expected = [{"Name": n, "Type": t} for n, t in schemas.raw_columns(SALES)]
    table = glue.get_table(DatabaseName="lake", Name="raw_sales")["Table"]
    assert table["StorageDescriptor"]["Columns"] == expected
    assert table["Parameters"]["contract_version"] == "1.0.0"
    (partition,) = glue.get_partitions(DatabaseName="lake", TableName="raw_sales")["Partitions"]
    assert partition["StorageDescriptor"]["Columns"] == expected
    assert partition["StorageDescriptor"]["Location"] == location
    assert partition["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"] == schemas.JSON_SERDE


def test_money_and_quantity_annotations_are_the_contract_base_types() -> None:
    assert schemas.hive_type(Money) == "decimal(12,2)"
    assert schemas.hive_type(Quantity) == "int"

"""Differential: every value a contract accepts reaches processed Parquet as the contract's value, on its date."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import random
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from moto import mock_aws
from py4j.protocol import Py4JJavaError
from pydantic import AwareDatetime
from pyspark.errors import PySparkException
from pyspark.sql import SparkSession

from datalake.aws import AwsClients
from datalake.contracts import Dataset, get_dataset
from datalake.exceptions import TerminalError
from datalake.ingest import ObjectRef, ingest_object
from datalake.settings import Settings
from glue import raw_to_processed as job
from tests.integration.truth.judge import Judged, csv_text, event_date, judge_csv, judge_json_lines, micros
from tests.integration.truth.spellings import CSV_BOOLEANS, Raw, decimal_text, epoch_seconds, json_line, timestamp

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("CONTRACT_PARQUET_SEED", random.randrange(2**32)))
"""Hypothesis's seed for the generated values: set CONTRACT_PARQUET_SEED to replay a failing run."""
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
EXAMPLES = {"sales": 200, "clickstream": 60, "products": 80, "customers": 80}
"""Generated records per dataset: a few hundred in all, run through ingestion and one Spark job together."""
UTC = dt.UTC

# ------------------------------------------------------------------------------------------------ values


def rarely(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly `usual`, now and then `odd` (values the contract rejects, mostly)."""
    return st.sampled_from([True] * 29 + [False]).flatmap(lambda common: usual if common else odd)


DAYS = [dt.date(1, 1, 2), dt.date(1899, 12, 31), dt.date(1970, 1, 1), dt.date(2025, 6, 1), dt.date(9999, 12, 30)]
"""Days the instants cluster around. Each date is a processed partition, and the job's cost grows with their number."""
CLOCKS = [dt.time(23, 59, 59, 999_999), dt.time(0, 0), dt.time(23, 59, 59), dt.time(0, 0, 0, 1), dt.time(12, 0)]

INSTANTS = rarely(
    st.builds(
        lambda day, clock, shift: dt.datetime.combine(day, clock, tzinfo=UTC) + dt.timedelta(microseconds=shift),
        st.sampled_from(DAYS),
        st.sampled_from(CLOCKS),
        st.sampled_from([0, 0, 1, -1, 3_599_999_999]),
    ).filter(lambda moment: dt.date(1, 1, 2) <= moment.date() <= dt.date(9999, 12, 30)),
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=st.just(UTC)),
)
"""Instants from year 1 to 9999 (a day short of each end, so every offset keeps them in range): mostly near
midnight of a few telling days (the first year, before 1900, the epoch, the last year), now and then anywhere."""

OFFSETS = st.one_of(st.just(0), st.sampled_from([-1439, 1439, 330, -330, 345, -60]), st.integers(-1439, 1439))


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """An instant spelled as some producer would: RFC 3339 in every precision and zone form, or epoch seconds."""
    moment = draw(INSTANTS)
    kind = draw(st.sampled_from(["rfc3339"] * 12 + ["epoch"] * 2 + ["nanoseconds"] * 2 + ["naive"]))
    if kind == "epoch":
        return epoch_seconds(moment)
    if kind == "nanoseconds":
        # a wall clock at 23:59:59.999999 and a few more nines: one nine too many must not move the date
        offset = draw(OFFSETS)
        zone = dt.timezone(dt.timedelta(minutes=offset))
        moment = dt.datetime.combine(moment.date(), dt.time(23, 59, 59, 999_999), tzinfo=zone)
        return timestamp(
            moment, offset_minutes=offset, zone=draw(st.sampled_from(["Z", "z", "+"])), digits=6, extra="9"
        )
    digits = draw(st.integers(-1, 6))
    return timestamp(
        moment,
        offset_minutes=draw(OFFSETS),
        zone="" if kind == "naive" else draw(st.sampled_from(["Z", "z", "+", "-0"])),
        separator=draw(st.sampled_from("Tt _")),
        digits=digits,
        extra=draw(st.text("0123456789", min_size=1, max_size=3)) if digits == 6 and draw(st.booleans()) else "",
    )


MONEY = rarely(
    st.one_of(
        st.decimals(min_value=Decimal("0.01"), max_value=Decimal("9999999999.99"), places=2),
        st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1000"), places=2),
    ),
    st.sampled_from([Decimal("0"), Decimal("-1.50"), Decimal("0.001"), Decimal("10000000000"), Decimal("7")]),
)


@st.composite
def decimal_strings(draw: st.DrawFn) -> str:
    """A decimal as text: normalized, with fixed places, in exponent form, or with a sign or padding."""
    value = draw(MONEY)
    text = decimal_text(
        value,
        places=draw(st.sampled_from([None, 1, 2, 3])),
        style=draw(st.sampled_from(["plain"] * 6 + ["exponent"])),
    )
    return draw(st.sampled_from([text] * 8 + [f"+{text}", f" {text}", f"00{text}"]))


@st.composite
def json_decimals(draw: st.DrawFn) -> object:
    """A decimal in a JSON document: a number token as written (`12.50`, `1.25E+1`) or a string."""
    if draw(st.booleans()):
        value = draw(MONEY)
        places = draw(st.sampled_from([None, 1, 2, 3]))
        return Raw(decimal_text(value, places=places, style=draw(st.sampled_from(["plain"] * 4 + ["exponent"]))))
    return draw(decimal_strings())


def csv_booleans() -> st.SearchStrategy[str]:
    """Every spelling pydantic's lax mode reads as a boolean, in any letter case, and a few it does not."""
    spellings = [s for values in CSV_BOOLEANS.values() for s in values]
    cased = st.tuples(st.sampled_from(spellings), st.sampled_from([str.lower, str.upper, str.title])).map(
        lambda pair: pair[1](pair[0])
    )
    return rarely(cased, st.sampled_from(["maybe", " true", "2"]))


IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,11}", fullmatch=True)
NAMES = st.text(st.characters(categories=("L", "M", "N", "P", "S", "Zs")), min_size=1, max_size=24)
QUANTITIES = rarely(st.one_of(st.integers(1, 10_000), st.integers(1, 5)), st.sampled_from([0, -2, 10_001])).map(
    lambda n: Raw(str(n))
)


def literal(name: str, dataset: str) -> st.SearchStrategy[str]:
    """The values a Literal field allows, and now and then one it does not."""
    annotation = get_dataset(dataset).contract.model_fields[name].annotation
    values = sorted(str(v) for v in getattr(annotation, "__args__", ()))
    return rarely(st.sampled_from(values), st.just("unknown-value"))


SALE = st.fixed_dictionaries(
    {
        "transaction_id": st.just(""),
        "event_time": timestamps(),
        "customer_id": IDS,
        "product_id": IDS,
        "store_id": IDS,
        "region": literal("region", "sales"),
        "quantity": QUANTITIES,
        "unit_price": json_decimals(),
        "currency": literal("currency", "sales"),
        "payment_method": literal("payment_method", "sales"),
        "channel": literal("channel", "sales"),
    }
)
CLICK = st.fixed_dictionaries(
    {
        "event_id": st.just(""),
        "event_time": timestamps(),
        "session_id": IDS,
        "event_type": literal("event_type", "clickstream"),
        "page": st.from_regex(r"/[a-z0-9/_\-]{0,20}", fullmatch=True),
        "device": literal("device", "clickstream"),
    },
    optional={"customer_id": st.one_of(st.none(), IDS), "product_id": st.one_of(st.none(), IDS)},
)
PRODUCT = st.fixed_dictionaries(
    {
        "product_id": st.just(""),
        "name": NAMES,
        "category": literal("category", "products"),
        "list_price": decimal_strings(),
        "currency": literal("currency", "products"),
        "active": csv_booleans(),
        "updated_at": timestamps(),
    }
)
CUSTOMER = st.fixed_dictionaries(
    {
        "customer_id": st.just(""),
        "name": NAMES,
        "segment": literal("segment", "customers"),
        "region": literal("region", "customers"),
        "country": rarely(st.sampled_from(["US", "GB", "DE", "IN", "BR", "JP"]), st.just("usa")),
        "signup_date": timestamps(),
        "updated_at": timestamps(),
    }
)


# ------------------------------------------------------------------------------------------------ batch


@dataclass
class Delivery:
    """One generated object: its landing key, its bytes, and the contract's verdict on each of its records."""

    dataset: Dataset
    key: str
    body: bytes
    judged: list[Judged] = field(default_factory=list)

    @property
    def accepted(self) -> dict[str, Judged]:
        """Accepted records by their (unique) key."""
        name = self.dataset.key[0]
        return {str(getattr(j.model, name)): j for j in self.judged if j.model is not None}


def collect(strategy: st.SearchStrategy[dict[str, Any]], examples: int) -> list[dict[str, Any]]:
    """Draw `examples` records with hypothesis (its generation, not its shrinking: the property is checked once)."""
    drawn: list[dict[str, Any]] = []

    @seed(SEED)
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def draw(record: dict[str, Any]) -> None:
        drawn.append(record)

    draw()
    return drawn


def keyed(dataset: Dataset, records: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """Give every record a unique key, so each accepted record must appear once in processed."""
    return [{**r, dataset.key[0]: f"{prefix}{n:05d}"} for n, r in enumerate(records, start=1)]


def json_delivery(name: str, strategy: st.SearchStrategy[dict[str, Any]], prefix: str) -> Delivery:
    dataset = get_dataset(name)
    records = keyed(dataset, collect(strategy, EXAMPLES[name]), prefix)
    body = b"".join(json_line(r.items()) + b"\n" for r in records)
    return Delivery(dataset, f"{name}/generated.jsonl", body, judge_json_lines(dataset, body))


def csv_delivery(name: str, strategy: st.SearchStrategy[dict[str, Any]], prefix: str) -> Delivery:
    dataset = get_dataset(name)
    records = keyed(dataset, collect(strategy, EXAMPLES[name]), prefix)
    text = csv_text(records, list(dataset.contract.model_fields))
    return Delivery(dataset, f"{name}/generated.csv", text.encode(), judge_csv(dataset, text))


# ----------------------------------------------------------------------------------------------- the lake


@dataclass
class Lake:
    """Landing and raw buckets, the manifest and idempotency tables on moto, and ingestion's settings."""

    settings: Settings
    clients: AwsClients

    @classmethod
    def create(cls) -> Lake:
        session = boto3.Session(region_name="us-east-1")
        s3 = session.client("s3")
        for bucket in ("landing", "raw"):
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        dynamodb = session.client("dynamodb")
        for table, key in (("manifests", "object_id"), ("idempotency", "id")):
            dynamodb.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        settings = Settings(raw_bucket="raw", manifests_table="manifests", idempotency_table="idempotency")
        return cls(settings, AwsClients.from_session(session))

    def ingest(self, delivery: Delivery) -> dict[str, Any]:
        response = self.clients.s3.put_object(Bucket="landing", Key=delivery.key, Body=delivery.body)
        ref = ObjectRef(
            "landing", delivery.key, response.get("VersionId"), response["ETag"].strip('"'), len(delivery.body)
        )
        return ingest_object(ref, settings=self.settings, clients=self.clients, now=NOW).model_dump()

    def download_raw(self, folder: Path) -> dict[str, dict[str, dt.date]]:
        """Copy the raw zone (without quarantine) to `folder`; return dataset → record key → raw partition date."""
        where: dict[str, dict[str, dt.date]] = {}
        pages = self.clients.s3.get_paginator("list_objects_v2").paginate(Bucket="raw")
        for item in (obj for page in pages for obj in page.get("Contents", [])):
            key = item["Key"]
            if key.startswith("_"):
                continue
            body = self.clients.s3.get_object(Bucket="raw", Key=key)["Body"].read()
            target = folder / key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(body)
            name, year, month, day = (part.split("=")[-1] for part in key.split("/")[:4])
            dataset = get_dataset(name)
            for line in gzip.decompress(body).splitlines():
                record_key = str(json.loads(line)[dataset.key[0]])
                assert record_key not in where.setdefault(name, {}), f"{name} {record_key} landed twice in raw"
                where[name][record_key] = dt.date(int(year), int(month), int(day))
        return where


@pytest.fixture(scope="module")
def deliveries() -> list[Delivery]:
    """Generated objects: sales and clickstream as JSON lines, products and customers as CSV."""
    return [
        json_delivery("sales", SALE, "T"),
        json_delivery("clickstream", CLICK, "E"),
        csv_delivery("products", PRODUCT, "P"),
        csv_delivery("customers", CUSTOMER, "C"),
    ]


# ------------------------------------------------------------------------------------------------ reading


def read_processed(root: Path, dataset: Dataset) -> dict[str, dict[str, Any]]:
    """Processed rows by key, read with pyarrow (as Athena reads them); timestamps as epoch microseconds."""
    folder = root / dataset.name
    if not folder.exists():
        return {}
    partitioning = pds.partitioning(pa.schema([("event_date", pa.string())]), flavor="hive")
    table = pds.dataset(str(folder), format="parquet", partitioning=partitioning).to_table()
    columns = {}
    for name in [*dataset.contract.model_fields, "event_date"]:
        column = table.column(name)
        if pa.types.is_timestamp(column.type):
            column = pc.cast(pc.cast(column, pa.timestamp("us", tz="UTC")), pa.int64())
        columns[name] = column.to_pylist()
    rows: dict[str, dict[str, Any]] = {}
    key = dataset.key[0]
    for n in range(table.num_rows):
        row = {name: values[n] for name, values in columns.items()}
        assert row[key] not in rows, f"{dataset.name}: key {row[key]} appears twice in processed"
        rows[str(row[key])] = row
    return rows


def expected_value(model: Any, name: str) -> Any:
    """The contract's value of a field, in the form processed holds it (instants as epoch microseconds)."""
    value = getattr(model, name)
    return micros(value) if isinstance(value, dt.datetime) else value


def describe(value: Any, annotation: Any) -> str:
    if annotation is AwareDatetime and isinstance(value, int):
        return (dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(microseconds=value)).isoformat()
    return repr(value)


def raw_mismatches(delivery: Delivery, raw_dates: dict[str, dt.date]) -> list[str]:
    """Accepted records missing from raw, or landed in a partition other than their contract's UTC date."""
    problems = []
    for key, judged in delivery.accepted.items():
        expected = event_date(delivery.dataset, judged.model)  # type: ignore[arg-type]
        if raw_dates.get(key) != expected:
            problems.append(
                f"{where(delivery, key)}: raw partition {raw_dates.get(key)}, contract's UTC date {expected}"
            )
    return problems


def processed_mismatches(delivery: Delivery, processed: dict[str, dict[str, Any]]) -> list[str]:
    """Every way an accepted record differs between the contract and processed Parquet (empty when none)."""
    dataset = delivery.dataset
    problems = []
    for key, judged in delivery.accepted.items():
        row = processed.get(key)
        if row is None:
            problems.append(f"{where(delivery, key)}: missing from processed")
            continue
        expected = event_date(dataset, judged.model)  # type: ignore[arg-type]
        if row["event_date"] != expected.isoformat():
            problems.append(f"{where(delivery, key)}: processed event_date {row['event_date']}, UTC date {expected}")
        for name, info in dataset.contract.model_fields.items():
            want, got = expected_value(judged.model, name), row[name]
            if want != got:
                problems.append(
                    f"{where(delivery, key)}: {name} is {describe(got, info.annotation)} in processed, "
                    f"{describe(want, info.annotation)} by the contract"
                )
    rejected = sorted(processed.keys() - delivery.accepted.keys())
    problems.extend(f"{dataset.name} {key}: in processed, but the contract rejects it" for key in rejected)
    return problems


def where(delivery: Delivery, key: str) -> str:
    judged = delivery.accepted[key]
    return f"{delivery.dataset.name} {key} (line {judged.line}: {judged.text})"


def failure(exc: Exception) -> str:
    """The first line of a job failure; for a JVM error, its root cause's."""
    if isinstance(exc, Py4JJavaError):
        cause = exc.java_exception
        while cause.getCause() is not None:
            cause = cause.getCause()
        return str(cause.toString()).splitlines()[0][:500]
    return str(exc).strip().splitlines()[0][:500]


def run_job(spark: SparkSession, raw: Path, processed: Path) -> dict[str, Any]:
    """The Spark job once over the whole raw zone (local folders), without the catalog."""
    args = {
        "raw_path": raw.as_uri(),
        "processed_path": processed.as_uri(),
        "update_catalog": "false",
        "settle_seconds": "0",
        "run_id": "contract-to-parquet",
    }
    return job.run(spark, args)


# ------------------------------------------------------------------------------------------------- test


def test_every_accepted_value_reaches_processed_parquet_as_the_contract_parsed_it(
    deliveries: list[Delivery], spark: SparkSession, tmp_path: Path
) -> None:
    # GIVEN generated records in many legal spellings, and the contract's verdict and values for each
    accepted = {d.dataset.name: len(d.accepted) for d in deliveries}
    assert all(count >= EXAMPLES[name] // 2 for name, count in accepted.items()), accepted

    # WHEN they are ingested by the ingestion engine and the Spark job runs once over the whole raw zone
    with mock_aws():
        lake = Lake.create()
        manifests = {d.dataset.name: lake.ingest(d) for d in deliveries}
        raw_dates = lake.download_raw(tmp_path / "raw")
    landed = {name: m["records_landed"] for name, m in manifests.items()}
    assert landed == accepted, f"ingestion's verdicts differ from the contract's (seed {SEED})"
    problems = [p for d in deliveries for p in raw_mismatches(d, raw_dates.get(d.dataset.name, {}))]
    try:
        run_job(spark, tmp_path / "raw", tmp_path / "processed")
    except (TerminalError, PySparkException, Py4JJavaError) as exc:
        problems.insert(0, f"the job failed: {failure(exc)}")
    else:
        for delivery in deliveries:
            processed = read_processed(tmp_path / "processed", delivery.dataset)
            problems.extend(processed_mismatches(delivery, processed))

    # THEN every accepted record is in processed once, with the contract's value in every field, on its raw date
    shown = "\n  ".join(problems[:40])
    assert not problems, (
        f"{len(problems)} differences between the contract, raw and processed (seed {SEED}):\n  {shown}"
    )

"""A dataset added as one module (a fixture outside the package) goes end to end with no other edit.

The `shipments` module under `tests/fixtures/contracts/` declares floats, booleans, dates, a nested model (with a
model inside it), a list of models, a list of strings and a map, as a module of `datalake.contracts` would. Brought
into the registry with `discover` and `registered`, its file is put through the box's landing bucket; the pipeline,
run with its default datasets, then catalogs, processes, checks and (with nothing curated from it) publishes, and
local Athena reads it back.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow.parquet as pq
import pytest

import tests.fixtures.contracts as fixture_contracts
from datalake.contracts import Dataset, discover, registered
from lakebox.services.crawler import arrow_to_glue
from lakebox.sfn import Execution
from tests.fixtures.contracts.shipments import Shipment

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SHIPMENTS: Dataset = discover(fixture_contracts.__path__, fixture_contracts.__name__)["shipments"]
DAYS = (dt.date(2026, 11, 2), dt.date(2026, 11, 3), dt.date(2026, 11, 4))
AS_OF = dt.datetime(2026, 11, 5, 6, 0, tzinfo=dt.UTC)
CARRIERS = ("ups", "dhl", "fedex", "royal-mail")
CITIES = ("Leeds", "York", "Hull")
GLUE_TYPES = {
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
    "event_hour": "int",
    "_source_key": "string",
    "_source_version": "string",
    "_line": "bigint",
    "_ingested_at": "timestamp",
}


def shipment(n: int) -> dict[str, Any]:
    """A valid shipment as a producer would send it (offsets, integers for floats, decimals as text)."""
    day = DAYS[n % len(DAYS)]
    return {
        "shipment_id": f"SH{n:05d}",
        "shipped_at": f"{day.isoformat()}T{9 + n % 9:02d}:30:00+01:00",
        "carrier": CARRIERS[n % len(CARRIERS)],
        "weight_kg": 3 if n % 5 == 0 else round(1.5 + n * 0.25, 2),
        "insured": n % 2 == 0,
        "promised_date": (day + dt.timedelta(days=2 + n % 3)).isoformat(),
        "delivered_on": None if n % 3 else (day + dt.timedelta(days=1)).isoformat(),
        "destination": {
            "street": f"{n} High Street",
            "city": CITIES[n % len(CITIES)],
            "postcode": f"LS{n % 20}",
            "country": "GB",
            **({"location": {"lat": 53.75 + n / 1000, "lon": -1.5}} if n % 2 else {}),
        },
        "parcels": [
            {
                "parcel_id": f"P{n:05d}-{i}",
                "weight_kg": 0.5 + i,
                "declared_value": f"{10 + n}.{i}5",
                "fragile": i == 0,
                "packed_at": f"{day.isoformat()}T07:0{i}:00Z",
            }
            for i in range(1 + n % 3)
        ],
        "tags": ["express", "signed", "gift"][: n % 4],
        **({"dimensions_cm": {"w": 40, "h": 25.5, "d": float(n)}} if n % 4 else {}),
    }


GOOD = [shipment(n) for n in range(1, 31)]
BAD = {
    "SH90001": {**shipment(90001), "weight_kg": -2.0},
    "SH90002": {**shipment(90002), "destination": {**shipment(90002)["destination"], "country": "Atlantis"}},
    "SH90003": {**shipment(90003), "parcels": []},
    "SH90004": {**shipment(90004), "insured": "perhaps"},
    "SH90005": {**shipment(90005), "promised_date": "2026-02-30"},
    "SH90006": {**shipment(90006), "tags": ["Not A Tag"]},
}
"""Records the contract rejects, by id: a float, a nested field, a list's length, a bool, a date, a list element."""
BAD_FIELDS = {
    "SH90001": "weight_kg",
    "SH90002": "destination.country",
    "SH90003": "parcels",
    "SH90004": "insured",
    "SH90005": "promised_date",
    "SH90006": "tags.0",
}


@dataclass
class Lake:
    """The box after the shipments file was put and the pipeline ran with its default datasets."""

    box: Any
    deliveries: list[Any]
    execution: Execution
    database: str
    workgroup: str

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return self.box.athena.query(sql, workgroup=self.workgroup, database=self.database).rows

    def objects(self, bucket: str, prefix: str) -> dict[str, bytes]:
        s3 = self.box.session.client("s3")
        keys = [
            item["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.box.bucket(bucket), Prefix=prefix)
            for item in page.get("Contents", [])
        ]
        return {key: s3.get_object(Bucket=self.box.bucket(bucket), Key=key)["Body"].read() for key in keys}


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    from lakebox.box import open_box
    from tests.conftest import ROOT

    folder = tmp_path_factory.mktemp("shipments")
    path = folder / "dispatch-2026-11-04.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [*GOOD[:15], *BAD.values(), *GOOD[15:]]))
    with registered(SHIPMENTS), pytest.MonkeyPatch.context() as env:
        env.setenv("LAKEBOX_HOME", str(folder / "lake"))  # this box's run records and logs, not the project's
        with open_box(ROOT, reuse=False) as box:
            # the job's own boto3 clients (its catalog updates) reach the box's endpoint, as on Glue they reach AWS
            env.setenv("AWS_ENDPOINT_URL", box.endpoint)
            _, deliveries = box.put_file(path, "shipments")
            execution = box.execute(
                "PipelineStateMachine",
                # no `datasets`: the run processes every registered dataset, the fixture's included (ADR 0012); the
                # forecast needs weeks of sales, which this module does not land (test_forecast_lakebox runs it)
                {"forecast": False, "as_of": AS_OF.isoformat()},
                execution_name="new-dataset-1",
            )
            yield Lake(
                box,
                deliveries,
                execution,
                str(box.stack.parameters["GlueDatabaseName"]),
                str(box.stack.ref("AnalyticsWorkGroup")),
            )


def expected(record: dict[str, Any]) -> Shipment:
    """The record as the contract parses it: the one meaning every zone must hold (ADR 0006)."""
    return Shipment.model_validate_json(json.dumps(record))


def naive_utc(moment: dt.datetime) -> dt.datetime:
    """How Athena returns a `timestamp`: the UTC instant without a zone."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


def test_the_file_lands_and_the_invalid_records_are_quarantined_with_their_reasons(lake: Lake) -> None:
    # GIVEN the shipments file put through the landing bucket
    # THEN the ingest function judged it by the fixture's contract: the valid records landed, the rest quarantined
    assert [d.ok for d in lake.deliveries] == [True]
    manifest = lake.deliveries[0].result
    assert (manifest["records_read"], manifest["records_landed"], manifest["records_quarantined"]) == (36, 30, 6)
    lines = [
        json.loads(line)
        for body in lake.objects("RawBucket", "_quarantine/shipments/").values()
        for line in gzip.decompress(body).splitlines()
    ]
    reasons = {json.loads(line["_raw"])["shipment_id"]: {e["loc"] for e in line["_errors"]} for line in lines}
    assert set(reasons) == set(BAD)
    for shipment_id, field in BAD_FIELDS.items():
        assert field in reasons[shipment_id], (shipment_id, reasons[shipment_id])


def test_the_pipeline_processes_it_by_default_and_the_quality_gate_passes(lake: Lake) -> None:
    # THEN the run succeeded: catalogued, processed, every record accounted for by the gate
    assert lake.execution.status == "SUCCEEDED", (lake.execution.error, lake.execution.cause)
    summary = json.loads(lake.objects("ProcessedBucket", "_runs/new-dataset-1/summary.json").popitem()[1])
    job = summary["datasets"]["shipments"]
    assert (job["rows_read"], job["rows_quarantined"], job["rows_out"]) == (30, 0, 30)
    assert job["partitions"] == [d.isoformat() for d in DAYS]
    assert "shipments" in lake.execution.output["datasets"]
    report = next(d for d in lake.execution.output["quality"]["datasets"] if d["dataset"] == "shipments")
    assert report["passed"] and {r["rule"] for r in report["rules"]} >= {
        "row_count",
        "key_unique",
        "weight_kg_positive",
        "freshness",
    }


def test_the_processed_table_carries_the_contract_types(lake: Lake) -> None:
    # WHEN the catalog table the job wrote is read
    table = lake.box.session.client("glue").get_table(DatabaseName=lake.database, Name="shipments")["Table"]
    # THEN every field has its exact Glue type: double, boolean, date, struct<…>, array<…>, map<…>
    columns = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
    assert columns == GLUE_TYPES
    assert table["PartitionKeys"] == [{"Name": "event_date", "Type": "date"}]
    # AND the crawler, inferring from the Parquet the job wrote, would record the same types
    parts = lake.objects("ProcessedBucket", "shipments/event_date=")
    assert parts
    for body in parts.values():
        schema = pq.read_schema(io.BytesIO(body))
        assert {f.name: arrow_to_glue(f.type) for f in schema} == GLUE_TYPES


def test_local_athena_reads_every_value_as_the_contract_parsed_it(lake: Lake) -> None:
    # WHEN the processed table is queried with Athena's field access
    rows = lake.query(
        "SELECT shipment_id, shipped_at, weight_kg, insured, promised_date, delivered_on, destination.city,"
        " destination.location.lat, cardinality(parcels), parcels[1].declared_value, parcels[1].packed_at, tags,"
        " element_at(dimensions_cm, 'h'), event_date FROM shipments ORDER BY shipment_id"
    )
    # THEN each value is the contract's, with its exact type (float, bool, date, Decimal, UTC timestamps)
    want = []
    for record in GOOD:
        model = expected(record)
        location = model.destination.location
        want.append(
            (
                model.shipment_id,
                naive_utc(model.shipped_at),
                model.weight_kg,
                model.insured,
                model.promised_date,
                model.delivered_on,
                model.destination.city,
                location.lat if location else None,
                len(model.parcels),
                model.parcels[0].declared_value,
                naive_utc(model.parcels[0].packed_at),
                model.tags,
                model.dimensions_cm["h"] if model.dimensions_cm else None,
                model.shipped_at.astimezone(dt.UTC).date(),
            )
        )
    assert rows == sorted(want)
    assert all(isinstance(r[2], float) and isinstance(r[3], bool) and isinstance(r[4], dt.date) for r in rows)


def test_lists_unnest_into_rows_and_maps_into_entries(lake: Lake) -> None:
    # WHEN the parcels, tags and dimensions are unnested as Athena spells it
    parcels = lake.query(
        "SELECT s.shipment_id, p.parcel_id, p.weight_kg, p.declared_value, p.fragile"
        " FROM shipments s CROSS JOIN UNNEST(s.parcels) AS t(p) ORDER BY p.parcel_id"
    )
    tags = lake.query("SELECT tag, count(*) FROM shipments, UNNEST(tags) AS t(tag) GROUP BY tag ORDER BY tag")
    sides = lake.query(
        "SELECT k, sum(v) FROM shipments CROSS JOIN UNNEST(dimensions_cm) AS t(k, v) GROUP BY k ORDER BY k"
    )
    # THEN there is one row per element, with the values the contract parsed
    models = [expected(r) for r in GOOD]
    assert parcels == sorted(
        (m.shipment_id, p.parcel_id, p.weight_kg, p.declared_value, p.fragile) for m in models for p in m.parcels
    )
    counted: dict[str, int] = {}
    for m in models:
        for tag in m.tags:
            counted[tag] = counted.get(tag, 0) + 1
    assert tags == sorted(counted.items())
    totals: dict[str, float] = {}
    for m in models:
        for side, value in (m.dimensions_cm or {}).items():
            totals[side] = totals.get(side, 0.0) + value
    assert sides == sorted(totals.items())
    assert Decimal("11.05") in {row[3] for row in parcels}

"""File ingestion: every record landed or quarantined with its reason, counts reconciled, replays harmless."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from unittest import mock

import boto3
import botocore.session
import pytest
from moto import mock_aws

from datalake.aws import AwsClients
from datalake.contracts import Dataset, registered
from datalake.contracts.base import Contract, EventTime
from datalake.ingest import IngestStatus, Manifest, ObjectRef, ingest_object
from datalake.settings import Settings
from tests.conftest import ROOT, load_event

NOW = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)
SALE: dict[str, Any] = {
    "transaction_id": "T1",
    "event_time": "2026-11-01T10:00:00+02:00",
    "customer_id": "C1",
    "product_id": "P1",
    "store_id": "S1",
    "region": "north",
    "quantity": 2,
    "unit_price": 19.99,
    "currency": "USD",
    "payment_method": "card",
    "channel": "store",
}


@dataclass
class Lake:
    settings: Settings
    clients: AwsClients

    def put(self, key: str, body: bytes) -> ObjectRef:
        response = self.clients.s3.put_object(Bucket="landing", Key=key, Body=body)
        return ObjectRef("landing", key, response.get("VersionId"), response["ETag"].strip('"'), len(body))

    def ingest(self, key: str, body: bytes) -> Manifest:
        return ingest_object(self.put(key, body), settings=self.settings, clients=self.clients, now=NOW)

    def raw_records(self, prefix: str = "sales/") -> list[dict[str, Any]]:
        records = []
        for key in self.keys(prefix):
            body = self.clients.s3.get_object(Bucket="raw", Key=key)["Body"].read()
            records.extend(json.loads(line) for line in gzip.decompress(body).splitlines())
        return records

    def keys(self, prefix: str) -> list[str]:
        listing = self.clients.s3.list_objects_v2(Bucket="raw", Prefix=prefix)
        return sorted(o["Key"] for o in listing.get("Contents", []))

    def manifest(self, object_id: str) -> dict[str, Any]:
        item: dict[str, Any] = self.clients.dynamodb.Table("manifests").get_item(Key={"object_id": object_id})["Item"]
        return item


def _create_lake() -> Lake:
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
    settings = Settings(
        raw_bucket="raw",
        manifests_table="manifests",
        idempotency_table="idempotency",
        max_line_bytes=4096,
        ratio_check_after_bytes=1_000_000,
    )
    return Lake(settings, AwsClients.from_session(session))


@pytest.fixture
def lake() -> Iterator[Lake]:
    with mock_aws():
        yield _create_lake()


def _jsonl(*records: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def test_valid_records_land_as_received_with_lineage(lake: Lake) -> None:
    # GIVEN two valid sales on different event days
    body = _jsonl(SALE, SALE | {"transaction_id": "T2", "event_time": "2026-11-01T23:30:00-05:00"})
    # WHEN the object is ingested
    manifest = lake.ingest("sales/batch 1.jsonl", body)
    # THEN each lands in its event-date partition, values untouched, lineage appended
    assert (manifest.status, manifest.records_read, manifest.records_landed) == (IngestStatus.LANDED, 2, 2)
    assert [k.rsplit("/", 1)[0] for k in manifest.output_keys] == [
        "sales/year=2026/month=11/day=01",
        "sales/year=2026/month=11/day=02",
    ]
    records = sorted(lake.raw_records(), key=lambda r: r["_line"])
    assert records[0]["unit_price"] == 19.99 and records[0]["event_time"] == "2026-11-01T10:00:00+02:00"
    assert records[1]["_line"] == 2 and records[1]["_source_key"] == "sales/batch 1.jsonl"
    assert records[0]["_source_version"] == manifest.version
    assert records[0]["_ingested_at"] == "2026-11-02T12:00:00.000000Z"


@pytest.mark.parametrize(
    ("event_time", "day"),
    [
        ("0970-03-06T23:59:59.999999Z", "year=0970/month=03/day=06"),
        ("9998-12-31T23:59:59.999999Z", "year=9998/month=12/day=31"),
        ("1899-12-31T23:59:59.999999+00:00", "year=1899/month=12/day=31"),
    ],
)
def test_a_microsecond_before_midnight_far_from_1970_lands_on_its_own_date(
    lake: Lake, event_time: str, day: str
) -> None:
    # GIVEN canonical instants (the fast path) whose float epoch seconds cannot hold the last microsecond
    manifest = lake.ingest("sales/far.jsonl", _jsonl(SALE | {"event_time": event_time}))
    # THEN the raw partition is the instant's own UTC date, as the contract dates it
    assert [k.rsplit("/", 1)[0] for k in manifest.output_keys] == [f"sales/{day}"]


def test_invalid_records_are_quarantined_with_reasons_and_counts_reconcile(lake: Lake) -> None:
    body = _jsonl(SALE, SALE | {"quantity": 0}, SALE | {"currency": "XYZ"}) + b"{not json\n\n   \n"
    manifest = lake.ingest("sales/mixed.jsonl", body)
    assert (manifest.records_read, manifest.records_landed, manifest.records_quarantined) == (4, 1, 3)
    assert manifest.status is IngestStatus.PARTIAL
    quarantined = lake.raw_records("_quarantine/sales/")
    assert [q["_line"] for q in quarantined] == [2, 3, 4]
    assert quarantined[0]["_errors"][0]["loc"] == "quantity"
    assert quarantined[2]["_raw"] == "{not json"
    stored = lake.manifest(manifest.object_id)
    assert stored["records_read"] == stored["records_landed"] + stored["records_quarantined"]


def test_gzip_csv_and_json_array_inputs_are_read(lake: Lake) -> None:
    gz = lake.ingest("sales/a.jsonl.gz", gzip.compress(_jsonl(SALE)))
    array = lake.ingest("sales/b.json", json.dumps([SALE, SALE | {"quantity": -3}]).encode())
    header = ",".join(SALE)
    row = ",".join(str(v) for v in SALE.values())
    csv_manifest = lake.ingest("sales/c.csv", f"\ufeff{header}\r\n{row}\r\n{row},extra\r\n".encode())
    assert (gz.format, gz.records_landed) == ("jsonl", 1)
    assert (array.format, array.records_landed, array.records_quarantined) == ("json", 1, 1)
    assert (csv_manifest.format, csv_manifest.records_landed, csv_manifest.records_quarantined) == ("csv", 1, 1)


def test_non_utf8_line_is_quarantined_with_its_reason(lake: Lake) -> None:
    manifest = lake.ingest("sales/latin1.jsonl", _jsonl(SALE) + b'{"transaction_id":"caf\xe9"}\n')
    assert (manifest.records_landed, manifest.records_quarantined) == (1, 1)
    assert lake.raw_records("_quarantine/sales/")[0]["_errors"][0]["type"] == "utf8_invalid"


def test_line_over_the_cap_is_quarantined_without_losing_the_rest(lake: Lake) -> None:
    huge = json.dumps(SALE | {"store_id": "S" * 10_000}).encode()
    manifest = lake.ingest("sales/long.jsonl", _jsonl(SALE) + huge + b"\n" + _jsonl(SALE | {"transaction_id": "T9"}))
    assert (manifest.records_read, manifest.records_landed, manifest.records_quarantined) == (3, 2, 1)
    assert lake.raw_records("_quarantine/sales/")[0]["_errors"][0]["type"] == "line_too_long"


@pytest.mark.parametrize(
    ("key", "body", "reason"),
    [
        ("no-such-dataset/x.jsonl", b'{"a":1}\n', "unknown dataset"),
        ("sales/t.jsonl.gz", gzip.compress(bytes(range(256)) * 400)[:-12], "truncated gzip"),
        ("sales/bomb.jsonl.gz", gzip.compress(b" " * 50_000_000), "gzip bomb"),
        ("sales/x.parquet", b"PAR1\x00\x00", "unreadable Parquet"),
        ("sales/x.csv", b"PAR1\x00\x00", "unreadable Parquet"),
        ("sales/x.bin", b"\x00\x01binary", "unsupported format"),
    ],
)
def test_unreadable_objects_are_quarantined_whole(lake: Lake, key: str, body: bytes, reason: str) -> None:
    manifest = lake.ingest(key, body)
    assert manifest.status is IngestStatus.QUARANTINED
    assert manifest.reason is not None and manifest.reason.startswith(reason)
    assert manifest.records_read == manifest.records_landed + manifest.records_quarantined
    assert lake.keys("sales/") == []
    kept = lake.keys("_quarantine/_objects/")
    assert any(k.endswith(key) for k in kept) and any(k.endswith(".reason.json") for k in kept)


def test_zero_byte_objects_and_folders_are_skipped(lake: Lake) -> None:
    assert lake.ingest("sales/", b"").status is IngestStatus.SKIPPED
    assert lake.ingest("sales/empty.jsonl", b"").status is IngestStatus.SKIPPED
    blank = lake.ingest("sales/blank.jsonl", b"\n \n")
    assert blank.status is IngestStatus.SKIPPED and blank.original_key is None
    assert lake.keys("") == []


def test_reingesting_the_same_version_overwrites_instead_of_duplicating(lake: Lake) -> None:
    ref = lake.put("sales/retry.jsonl", _jsonl(SALE, SALE | {"transaction_id": "T2"}))
    first = ingest_object(ref, settings=lake.settings, clients=lake.clients, now=NOW)
    second = ingest_object(ref, settings=lake.settings, clients=lake.clients, now=NOW)
    assert first.output_keys == second.output_keys
    assert len(lake.raw_records()) == 2


def test_a_new_version_of_a_key_lands_beside_the_old_one(lake: Lake) -> None:
    first = lake.ingest("sales/daily.jsonl", _jsonl(SALE))
    second = lake.ingest("sales/daily.jsonl", _jsonl(SALE | {"transaction_id": "T2"}))
    assert first.version != second.version and set(first.output_keys).isdisjoint(second.output_keys)


def test_event_keys_are_decoded_once() -> None:
    ref = ObjectRef.from_event_key("b", "sales/store+exports+%2B+web.jsonl", "v1", "e", 5.0)
    assert ref.key == "sales/store exports + web.jsonl"


# ---------------------------------------------------------------------------------------------------- handler
def _load_handler() -> ModuleType:
    path = ROOT / "functions" / "ingest_file" / "app.py"
    spec = importlib.util.spec_from_file_location("ingest_file_app", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, Lake]]:
    monkeypatch.setenv("DL_RAW_BUCKET", "raw")
    monkeypatch.setenv("DL_MANIFESTS_TABLE", "manifests")
    monkeypatch.setenv("DL_IDEMPOTENCY_TABLE", "idempotency")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "ingest_file")
    with mock_aws():
        lake = _create_lake()
        yield _load_handler(), lake


def _event_for(ref: ObjectRef) -> dict[str, Any]:
    from urllib.parse import quote_plus

    event = load_event("ingest_file/object_created")
    event["detail"]["bucket"]["name"] = ref.bucket
    event["detail"]["object"].update(key=quote_plus(ref.key, safe="/"), etag=ref.etag, size=ref.size)
    event["detail"]["object"]["version-id"] = ref.version_id
    return event


def test_handler_ingests_the_object_an_event_names(handler: tuple[ModuleType, Lake], lambda_context: Any) -> None:
    module, lake = handler
    ref = lake.put("sales/store exports + web.jsonl", _jsonl(SALE))
    result = module.lambda_handler(_event_for(ref), lambda_context)
    assert result["key"] == "sales/store exports + web.jsonl" and result["records_landed"] == 1


def test_handler_import_builds_no_client_and_the_idempotency_store_uses_the_sessions(
    handler: tuple[ModuleType, Lake], lambda_context: Any
) -> None:
    _, lake = handler
    # GIVEN a fresh handler: init builds no AWS client at all (the cold start's first event builds those it uses)
    built: list[str] = []
    create_client = botocore.session.Session.create_client

    def counted(self: Any, service_name: str, *args: Any, **kwargs: Any) -> Any:
        built.append(service_name)
        return create_client(self, service_name, *args, **kwargs)

    with mock.patch.object(botocore.session.Session, "create_client", counted):
        module = _load_handler()
    assert built == [] and not {"s3", "dynamodb", "events"} & set(vars(module.clients))
    # WHEN it handles an event
    ref = lake.put("sales/first.jsonl", _jsonl(SALE))
    assert module.lambda_handler(_event_for(ref), lambda_context)["records_landed"] == 1
    # THEN the engine built its clients, and the idempotency store uses the session's DynamoDB client
    assert {"s3", "dynamodb", "events", "dynamodb_client"} <= set(vars(module.clients))
    assert module.persistence().client is module.clients.dynamodb_client


def test_same_event_delivered_three_times_lands_once(handler: tuple[ModuleType, Lake], lambda_context: Any) -> None:
    # GIVEN an object and its event
    module, lake = handler
    ref = lake.put("sales/dup.jsonl", _jsonl(SALE, SALE | {"transaction_id": "T2"}))
    event = _event_for(ref)
    # WHEN the event is delivered three times
    results = [module.lambda_handler(event, lambda_context) for _ in range(3)]
    # THEN the raw zone holds each record once and every delivery reports the same manifest
    assert len(lake.raw_records()) == 2
    assert results[0] == results[1] == results[2]
    versions = lake.clients.s3.list_object_versions(Bucket="raw", Prefix="sales/").get("Versions", [])
    assert len(versions) == 1


# ------------------------------------------------------------------------------------- JSON shapes by content

PRETTY_SALE = json.dumps(SALE, indent=2).encode()
PRETTY_ARRAY = json.dumps([SALE, SALE | {"transaction_id": "T2", "quantity": 0}], indent=2).encode()
JSON_LINES = _jsonl(SALE, SALE | {"transaction_id": "T2", "quantity": 0})
JQ_STREAM = PRETTY_SALE + b"\n" + json.dumps(SALE | {"transaction_id": "T2", "quantity": 0}, indent=4).encode()


@pytest.mark.parametrize(
    "key", ["sales/shape.json", "sales/shape.jsonl", "sales/shape.json.gz", "sales/shape.jsonl.gz"]
)
@pytest.mark.parametrize(
    ("body", "fmt", "read", "landed"),
    [
        (PRETTY_SALE, "json-document", 1, 1),
        (JQ_STREAM, "json-document", 2, 1),
        (PRETTY_ARRAY, "json", 2, 1),
        (JSON_LINES, "jsonl", 2, 1),
    ],
    ids=["pretty-object", "pretty-objects-in-a-row", "pretty-array", "json-lines"],
)
def test_json_shape_is_told_by_content_whatever_the_suffix(
    lake: Lake, key: str, body: bytes, fmt: str, read: int, landed: int
) -> None:
    # GIVEN a landed object of one JSON shape, under a .json or .jsonl key, plain or gzip
    data = gzip.compress(body) if key.endswith(".gz") else body
    # WHEN it is ingested
    manifest = lake.ingest(key, data)
    # THEN a document is one record, an array its items, JSON lines their lines: nothing read as broken lines
    assert (manifest.format, manifest.records_read, manifest.records_landed) == (fmt, read, landed)
    assert manifest.records_read == manifest.records_landed + manifest.records_quarantined
    landed_records = lake.raw_records()
    assert [r["transaction_id"] for r in landed_records] == ["T1"]
    assert landed_records[0]["unit_price"] == 19.99 and landed_records[0]["_line"] == 1
    if manifest.records_quarantined:
        assert lake.raw_records("_quarantine/sales/")[0]["_errors"][0]["loc"] == "quantity"


def test_a_document_over_the_size_cap_quarantines_the_object_with_its_reason(lake: Lake) -> None:
    # GIVEN a pretty-printed document larger than the 4 KiB record cap (and the parser's buffer)
    huge = json.dumps(SALE | {"store_id": "S" * 100_000}, indent=2).encode()
    # WHEN it is ingested
    manifest = lake.ingest("sales/huge.json", huge)
    # THEN the whole object is kept in quarantine with the reason, and nothing lands
    assert manifest.status is IngestStatus.QUARANTINED
    assert manifest.reason is not None and manifest.reason.startswith("document too large")
    assert lake.keys("sales/") == []
    assert any(k.endswith("sales/huge.json") for k in lake.keys("_quarantine/_objects/"))


def test_a_malformed_document_quarantines_the_object(lake: Lake) -> None:
    manifest = lake.ingest("sales/broken.json", PRETTY_SALE[:-10])
    assert manifest.status is IngestStatus.QUARANTINED
    assert manifest.reason is not None and manifest.reason.startswith("malformed JSON")
    assert lake.keys("sales/") == []


def test_json_lines_with_a_broken_first_record_stay_json_lines(lake: Lake) -> None:
    manifest = lake.ingest("sales/lines.json", b'{"transaction_id": "T0",\n' + _jsonl(SALE))
    assert (manifest.format, manifest.records_read, manifest.records_landed) == ("jsonl", 2, 1)


# ------------------------------------------------------------------------------------------- content duplicates


def test_the_same_bytes_put_again_are_a_duplicate_and_land_nothing(lake: Lake) -> None:
    # GIVEN an ingested object
    body = _jsonl(SALE, SALE | {"transaction_id": "T2", "quantity": 0})
    first = lake.ingest("sales/daily.jsonl", body)
    raw_before, quarantine_before = lake.keys("sales/"), lake.keys("_quarantine/")
    # WHEN the same bytes are put again: a new version of the same key, and a copy under another key
    again = lake.ingest("sales/daily.jsonl", body)
    copy = lake.ingest("sales/copy/daily-copy.jsonl", gzip.decompress(gzip.compress(body)))
    # THEN both are recorded as duplicates of the first object, and raw and quarantine are unchanged
    for duplicate in (again, copy):
        assert duplicate.status is IngestStatus.DUPLICATE
        assert duplicate.duplicate_of == first.object_id
        assert duplicate.sha256 == first.sha256 and duplicate.output_keys == duplicate.quarantine_keys == []
        assert (duplicate.records_read, duplicate.records_landed, duplicate.records_quarantined) == (0, 0, 0)
        stored = lake.manifest(duplicate.object_id)
        assert stored["status"] == "DUPLICATE" and stored["duplicate_of"] == first.object_id
    assert again.version != first.version
    assert lake.keys("sales/") == raw_before and lake.keys("_quarantine/") == quarantine_before
    assert [r["transaction_id"] for r in lake.raw_records()] == ["T1"]


def test_a_retry_of_the_original_still_overwrites(lake: Lake) -> None:
    ref = lake.put("sales/retry.jsonl", _jsonl(SALE))
    first = ingest_object(ref, settings=lake.settings, clients=lake.clients, now=NOW)
    second = ingest_object(ref, settings=lake.settings, clients=lake.clients, now=NOW)
    assert first.status is second.status is IngestStatus.LANDED
    assert first.output_keys == second.output_keys and len(lake.raw_records()) == 1


def test_different_bytes_and_other_datasets_are_not_duplicates(lake: Lake) -> None:
    body = _jsonl(SALE)
    lake.ingest("sales/a.jsonl", body)
    other = lake.ingest("sales/b.jsonl", _jsonl(SALE | {"transaction_id": "T2"}))
    elsewhere = lake.ingest("clickstream/a.jsonl", body)
    assert other.status is IngestStatus.LANDED
    assert elsewhere.status is IngestStatus.QUARANTINED and elsewhere.duplicate_of is None


def test_racing_objects_with_the_same_bytes_land_once_and_the_original_can_be_retried(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN object A claimed its content, then failed writing raw (its retry will come later)
    from botocore.client import BaseClient

    from datalake.exceptions import TransientError

    body = _jsonl(SALE)
    ref_a = lake.put("sales/a.jsonl", body)
    real = BaseClient._make_api_call

    def failing_put(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if operation == "PutObject" and params.get("Bucket") == "raw":
            raise lake.clients.s3.exceptions.ClientError(
                {"Error": {"Code": "SlowDown", "Message": "slow down"}}, operation
            )
        return real(self, operation, params)

    with monkeypatch.context() as patch:
        patch.setattr(BaseClient, "_make_api_call", failing_put)
        with pytest.raises(TransientError):
            ingest_object(ref_a, settings=lake.settings, clients=lake.clients, now=NOW)
    # WHEN object B with the same bytes is ingested meanwhile, and then A is retried
    b = lake.ingest("sales/b.jsonl", body)
    a = ingest_object(ref_a, settings=lake.settings, clients=lake.clients, now=NOW)
    # THEN B is a duplicate of A, A lands on its retry, and the records are in raw once
    assert b.status is IngestStatus.DUPLICATE and b.duplicate_of == ref_a.object_id
    assert a.status is IngestStatus.LANDED
    assert [r["_source_key"] for r in lake.raw_records()] == ["sales/a.jsonl"]


def test_content_claims_stay_out_of_the_quality_gates_manifest_scan(lake: Lake) -> None:
    # GIVEN an object and a duplicate of it
    first = lake.ingest("sales/a.jsonl", _jsonl(SALE))
    lake.ingest("sales/b.jsonl", _jsonl(SALE))
    # WHEN the quality gate sums what the manifests say landed in the raw files the job read
    from datalake.quality import landed_for

    session = boto3.Session(region_name="us-east-1")
    landed, unmatched, (received, quarantined) = landed_for(session, "manifests", "sales", first.output_keys)
    # THEN it counts the original once: neither the claim item nor the duplicate's manifest adds to it
    assert (landed, unmatched, received, quarantined) == (1, (), 1, 0)


# ----------------------------------------------------------------------------------------------- deep nesting


class _Size(Contract):
    width_cm: float


class _Parcel(Contract):
    """A contract with nested and list fields: the fast path leaves their values to pydantic."""

    parcel_id: str
    sent_at: EventTime
    size: _Size | None = None
    tags: list[str] | None = None


PARCELS = Dataset(name="parcels", contract=_Parcel, key=("parcel_id",), event_time="sent_at")
DEPTH = 20_000
DEEP_VALUES = {
    "list": b"[" * DEPTH + b"]" * DEPTH,
    "object": b'{"a":' * DEPTH + b"1" + b"}" * DEPTH,
}


def _parcel(n: int) -> dict[str, Any]:
    return {"parcel_id": f"P{n}", "sent_at": "2026-11-01T10:00:00Z", "tags": ["fragile"]}


def _deep_parcel(field: str, value: bytes) -> bytes:
    return b'{"parcel_id":"P2","sent_at":"2026-11-01T10:00:00Z","' + field.encode() + b'":' + value + b"}"


def _deep_bodies(field: str, value: bytes) -> dict[str, bytes]:
    good, other, deep = json.dumps(_parcel(1)).encode(), json.dumps(_parcel(3)).encode(), _deep_parcel(field, value)
    lines = good + b"\n" + deep + b"\n" + other + b"\n"
    return {
        "parcels/deep.jsonl": lines,
        "parcels/deep.jsonl.gz": gzip.compress(lines),
        "parcels/deep-first.jsonl": deep + b"\n" + good + b"\n" + other + b"\n",
        "parcels/deep.json": b"[" + good + b",\n" + deep + b",\n" + other + b"]",
        "parcels/deep-documents.json": json.dumps(_parcel(1), indent=2).encode() + b"\n" + deep + b"\n" + other,
    }


@pytest.mark.parametrize("field", ["tags", "size", "unexpected"])
@pytest.mark.parametrize("shape", sorted(DEEP_VALUES))
@pytest.mark.parametrize("key", sorted(_deep_bodies("tags", b"1")))
def test_a_20000_deep_value_is_quarantined_as_its_record_and_the_rest_lands(
    lake: Lake, key: str, shape: str, field: str
) -> None:
    # GIVEN an object of three records whose second holds a value nested 20,000 deep (in JSON lines, gzip, an
    # array, pretty documents), under a field with a nested type, a list field, or a field the contract lacks
    body = _deep_bodies(field, DEEP_VALUES[shape])[key]
    lake.settings = lake.settings.model_copy(update={"max_line_bytes": 1 << 20})
    with registered(PARCELS):
        # WHEN it is ingested
        manifest = lake.ingest(key, body)
    # THEN that record is quarantined with a reason, the two others land, and the counts reconcile
    assert (manifest.records_read, manifest.records_landed, manifest.records_quarantined) == (3, 2, 1)
    assert manifest.status is IngestStatus.PARTIAL
    assert sorted(r["parcel_id"] for r in lake.raw_records("parcels/")) == ["P1", "P3"]
    (rejected,) = lake.raw_records("_quarantine/parcels/")
    assert rejected["_line"] == (1 if "first" in key else 2) and rejected["_errors"][0]["type"] in {
        "json_invalid",
        "nesting_too_deep",
    }
    assert "recursion limit" in rejected["_errors"][0]["msg"] or "nested" in rejected["_errors"][0]["msg"]


def test_a_csv_cell_holding_a_deep_value_is_judged_as_text(lake: Lake) -> None:
    # GIVEN a CSV row whose list column holds 20,000-deep JSON text
    deep = DEEP_VALUES["list"].decode()
    body = f'parcel_id,sent_at,tags\nP1,2026-11-01T10:00:00Z,\nP2,2026-11-01T10:00:00Z,"{deep}"\n'.encode()
    lake.settings = lake.settings.model_copy(update={"max_line_bytes": 1 << 20})
    with registered(PARCELS):
        manifest = lake.ingest("parcels/deep.csv", body)
    # THEN that row is quarantined with the contract's reason and the other lands
    assert (manifest.records_read, manifest.records_landed, manifest.records_quarantined) == (2, 1, 1)


# ------------------------------------------------------------------------------------------ originals (ADR 0018)


def _original(lake: Lake, key: str) -> tuple[bytes, dict[str, str]]:
    response = lake.clients.s3.get_object(Bucket="raw", Key=key)
    return response["Body"].read(), response["Metadata"]


def _arrival_day(lake: Lake, ref: ObjectRef) -> str:
    head = lake.clients.s3.head_object(Bucket="landing", Key=ref.key, VersionId=ref.version_id)
    return f"year={head['LastModified']:%Y}/month={head['LastModified']:%m}/day={head['LastModified']:%d}"


@pytest.mark.parametrize("key", ["sales/store exports + web.jsonl.gz", "sales/plain.jsonl"])
def test_every_object_is_kept_byte_for_byte_and_each_record_names_it(lake: Lake, key: str) -> None:
    # GIVEN an object of one valid and one invalid sale (gzip or plain)
    body = _jsonl(SALE, SALE | {"transaction_id": "T2", "quantity": 0})
    data = gzip.compress(body) if key.endswith(".gz") else body
    ref = lake.put(key, data)
    # WHEN it is ingested
    manifest = ingest_object(ref, settings=lake.settings, clients=lake.clients, now=NOW)
    # THEN the raw zone keeps its bytes under _originals/<dataset>/<arrival day>/<ingestion id>/<file name>
    name = key.rsplit("/", 1)[-1]
    expected = f"_originals/sales/{_arrival_day(lake, ref)}/{ref.output_token}/{name}"
    assert manifest.original_key == expected and lake.keys("_originals/") == [expected]
    kept, metadata = _original(lake, expected)
    assert kept == data
    # AND its metadata says where it came from, which version, when it was ingested and its digest
    assert metadata["source-bucket"] == "landing" and metadata["source-version-id"] == ref.version_id
    assert metadata["source-key"] == key.replace(" ", "%20").replace("+", "%2B")
    assert (
        metadata["ingested-at"] == "2026-11-02T12:00:00.000000Z" and hashlib.sha256(kept).hexdigest() == manifest.sha256
    )
    # AND every landed and every quarantined record names that original
    assert [r["_original_key"] for r in lake.raw_records()] == [expected]
    assert [r["_original_key"] for r in lake.raw_records("_quarantine/sales/")] == [expected]


def test_a_redelivered_event_keeps_one_original(lake: Lake) -> None:
    # GIVEN an object ingested once
    ref = lake.put("sales/twice.jsonl", _jsonl(SALE))
    first = ingest_object(ref, settings=lake.settings, clients=lake.clients, now=NOW)
    # WHEN the same version is ingested again, a day later (a redelivered event, a retry)
    again = ingest_object(ref, settings=lake.settings, clients=lake.clients, now=NOW + dt.timedelta(days=1))
    # THEN the original is kept once, one version, with its first ingestion's metadata; the data once too
    assert again.original_key == first.original_key
    versions = lake.clients.s3.list_object_versions(Bucket="raw", Prefix="_originals/").get("Versions", [])
    assert len(versions) == 1
    assert _original(lake, str(first.original_key))[1]["ingested-at"] == "2026-11-02T12:00:00.000000Z"
    assert len(lake.raw_records()) == 1


def test_objects_quarantined_whole_and_content_duplicates_are_kept_too(lake: Lake) -> None:
    # GIVEN a truncated gzip and two objects with the same bytes
    broken = gzip.compress(_jsonl(SALE) * 200)[:-12]
    rejected = lake.ingest("sales/broken.jsonl.gz", broken)
    first = lake.ingest("sales/a.jsonl", _jsonl(SALE))
    duplicate = lake.ingest("sales/b.jsonl", _jsonl(SALE))
    # THEN each is kept as it arrived under its own ingestion id
    assert rejected.status is IngestStatus.QUARANTINED and duplicate.status is IngestStatus.DUPLICATE
    kept = {str(m.original_key): m for m in (rejected, first, duplicate)}
    assert sorted(kept) == lake.keys("_originals/")
    assert _original(lake, str(rejected.original_key))[0] == broken
    assert _original(lake, str(duplicate.original_key))[0] == _jsonl(SALE)


def test_originals_get_object_lock_retention_when_the_stack_turns_it_on(lake: Lake) -> None:
    # GIVEN a raw bucket with Object Lock and a retention of 30 days for originals
    lake.clients.s3.create_bucket(Bucket="locked-raw", ObjectLockEnabledForBucket=True)
    lake.settings = lake.settings.model_copy(
        update={"raw_bucket": "locked-raw", "originals_retention_days": 30, "originals_retention_mode": "COMPLIANCE"}
    )
    # WHEN an object is ingested
    manifest = lake.ingest("sales/locked.jsonl", _jsonl(SALE))
    # THEN its original is retained in compliance mode for 30 days from its ingestion; its records are not locked
    head = lake.clients.s3.head_object(Bucket="locked-raw", Key=str(manifest.original_key))
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"].date() == (NOW + dt.timedelta(days=30)).date()
    assert "ObjectLockMode" not in lake.clients.s3.head_object(Bucket="locked-raw", Key=manifest.output_keys[0])


# ------------------------------------------------------------------------------------------------ Parquet input


def _parquet(table: Any, **options: Any) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **options)
    return bytes(sink.getvalue().to_pybytes())


def _sales_table(rows: list[dict[str, Any]], *, tz: str | None = "UTC") -> Any:
    import pyarrow as pa

    schema = pa.schema(
        [
            ("transaction_id", pa.string()),
            ("event_time", pa.timestamp("us", tz=tz)),
            ("customer_id", pa.string()),
            ("product_id", pa.string()),
            ("store_id", pa.string()),
            ("region", pa.string()),
            ("quantity", pa.int64()),
            ("unit_price", pa.decimal128(12, 2)),
            ("currency", pa.string()),
            ("payment_method", pa.string()),
            ("channel", pa.string()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def _typed_sale(n: int, **changes: Any) -> dict[str, Any]:
    from decimal import Decimal

    moment = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=n)
    return SALE | {"transaction_id": f"T{n}", "event_time": moment, "unit_price": Decimal("19.99")} | changes


def test_parquet_rows_are_judged_one_by_one_and_land_canonical(lake: Lake) -> None:
    # GIVEN a Parquet object of three sales, the second with a quantity its contract refuses
    data = _parquet(_sales_table([_typed_sale(1), _typed_sale(2, quantity=0), _typed_sale(3)]))
    # WHEN it is ingested
    manifest = lake.ingest("sales/export.parquet", data)
    # THEN each row is judged by the contract: two land, one is quarantined with its reason and its values
    assert (manifest.format, manifest.records_read, manifest.records_landed, manifest.records_quarantined) == (
        "parquet",
        3,
        2,
        1,
    )
    landed = sorted(lake.raw_records(), key=lambda r: r["_line"])
    assert [(r["transaction_id"], r["_line"]) for r in landed] == [("T1", 1), ("T3", 3)]
    assert landed[0]["event_time"] == "2026-11-01T08:01:00Z" and landed[0]["unit_price"] == 19.99
    assert landed[0]["_original_key"] == manifest.original_key
    (rejected,) = lake.raw_records("_quarantine/sales/")
    assert rejected["_line"] == 2 and rejected["_errors"][0]["loc"] == "quantity"
    assert json.loads(rejected["_raw"])["transaction_id"] == "T2"
    # AND the Parquet object itself is kept byte for byte
    assert _original(lake, str(manifest.original_key))[0] == data


def test_parquet_is_read_in_batches_across_row_groups(lake: Lake) -> None:
    # GIVEN 40,000 rows in row groups of 7,000, one in every 1,000 invalid
    rows = [_typed_sale(n, quantity=0 if n % 1000 == 0 else 1) for n in range(1, 40_001)]
    manifest = lake.ingest("sales/big.parquet", _parquet(_sales_table(rows), row_group_size=7_000))
    # THEN every row is accounted for
    assert (manifest.records_read, manifest.records_landed, manifest.records_quarantined) == (40_000, 39_960, 40)
    assert sorted(r["_line"] for r in lake.raw_records("_quarantine/sales/"))[:2] == [1000, 2000]


def test_parquet_timestamps_without_a_zone_are_refused_as_the_contract_refuses_naive_text(lake: Lake) -> None:
    rows = [_typed_sale(1, event_time=dt.datetime(2026, 11, 1, 8, 0))]
    manifest = lake.ingest("sales/naive.parquet", _parquet(_sales_table(rows, tz=None)))
    assert (manifest.records_landed, manifest.records_quarantined) == (0, 1)
    assert lake.raw_records("_quarantine/sales/")[0]["_errors"][0]["loc"] == "event_time"


def test_parquet_nested_values_and_nulls_are_judged_like_json(lake: Lake) -> None:
    import pyarrow as pa

    # GIVEN parcels with a struct and a list column, one row with a list of the wrong item type
    table = pa.Table.from_pylist(
        [
            {"parcel_id": "P1", "sent_at": dt.datetime(2026, 11, 1, tzinfo=dt.UTC), "size": {"width_cm": 2.5}},
            {"parcel_id": "P2", "sent_at": dt.datetime(2026, 11, 1, tzinfo=dt.UTC), "tags": ["a", "b"]},
            {"parcel_id": "P3", "sent_at": None},
        ],
        schema=pa.schema(
            [
                ("parcel_id", pa.string()),
                ("sent_at", pa.timestamp("ms", tz="UTC")),
                ("size", pa.struct([("width_cm", pa.float64())])),
                ("tags", pa.list_(pa.string())),
            ]
        ),
    )
    with registered(PARCELS):
        manifest = lake.ingest("parcels/nested.parquet", _parquet(table))
    # THEN the nested values land, and a row missing its event time is quarantined
    assert (manifest.records_landed, manifest.records_quarantined) == (2, 1)
    landed = {r["parcel_id"]: r for r in lake.raw_records("parcels/")}
    assert landed["P1"]["size"] == {"width_cm": 2.5} and landed["P2"]["tags"] == ["a", "b"]


def test_a_parquet_object_whose_schema_cannot_be_read_is_quarantined_whole(lake: Lake) -> None:
    # GIVEN a Parquet file cut short (its footer, which holds the schema, is gone)
    data = _parquet(_sales_table([_typed_sale(1), _typed_sale(2)]))[:-20]
    # WHEN it is ingested
    manifest = lake.ingest("sales/cut.parquet", data)
    # THEN the whole object is quarantined with the reason, nothing lands, and its original is kept
    assert manifest.status is IngestStatus.QUARANTINED
    assert manifest.reason is not None and manifest.reason.startswith("unreadable Parquet")
    assert lake.keys("sales/") == []
    assert any(k.endswith("sales/cut.parquet") for k in lake.keys("_quarantine/_objects/"))
    assert _original(lake, str(manifest.original_key))[0] == data


class _Stock(Contract):
    sku: str
    counted_at: EventTime
    bins: dict[str, int]


STOCK = Dataset(name="stock", contract=_Stock, key=("sku",), event_time="counted_at")


def test_parquet_maps_meet_dict_fields_and_nanosecond_times_are_judged_as_text(lake: Lake) -> None:
    import pyarrow as pa

    # GIVEN a map column and nanosecond timestamps, one with a fraction the contract's microseconds cannot hold
    table = pa.table(
        {
            "sku": ["A", "B"],
            "counted_at": pa.array([1_793_000_000_000_000_000, 1_793_000_000_000_000_001], pa.timestamp("ns", "UTC")),
            "bins": pa.array([[("x", 1)], [("y", 2)]], pa.map_(pa.string(), pa.int64())),
        }
    )
    with registered(STOCK):
        manifest = lake.ingest("stock/count.parquet", _parquet(table))
    # THEN the map lands as an object; each row is read, and whatever the contract makes of the time is accounted for
    assert manifest.records_read == 2 == manifest.records_landed + manifest.records_quarantined
    landed = {r["sku"]: r for r in lake.raw_records("stock/")}
    assert landed["A"]["bins"] == {"x": 1}


def test_nothing_lands_when_the_original_cannot_be_kept(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the raw zone refuses the copy of the original
    from botocore.client import BaseClient

    from datalake.exceptions import TransientError

    real = BaseClient._make_api_call

    def failing_copy(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if operation == "CopyObject" and str(params.get("Key", "")).startswith("_originals/"):
            raise lake.clients.s3.exceptions.ClientError({"Error": {"Code": "SlowDown", "Message": "x"}}, operation)
        return real(self, operation, params)

    ref = lake.put("sales/later.jsonl", _jsonl(SALE))
    with monkeypatch.context() as patch:
        patch.setattr(BaseClient, "_make_api_call", failing_copy)
        # WHEN the object is ingested THEN the ingestion fails to be retried, and no record names a missing original
        with pytest.raises(TransientError, match="keeping the original"):
            ingest_object(ref, settings=lake.settings, clients=lake.clients, now=NOW)
    assert lake.keys("sales/") == [] and lake.keys("_originals/") == []
    # AND its retry keeps the original and lands the record
    retried = ingest_object(ref, settings=lake.settings, clients=lake.clients, now=NOW)
    assert retried.status is IngestStatus.LANDED and lake.keys("_originals/") == [retried.original_key]


def test_handler_init_on_lambda_traces_the_aws_sdk_without_importing_other_libraries() -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import app\n"
        "from aws_xray_sdk.core.patcher import _PATCHED_MODULES\n"
        "print(sorted(_PATCHED_MODULES), 'requests' in sys.modules, 'sqlite3' in sys.modules)"
    )
    env = {
        **os.environ,
        "LAMBDA_TASK_ROOT": str(ROOT / "functions" / "ingest_file"),
        "AWS_LAMBDA_FUNCTION_NAME": "ingest_file",
        "AWS_DEFAULT_REGION": "us-east-1",
        "DL_RAW_BUCKET": "raw",
        "DL_MANIFESTS_TABLE": "manifests",
        "DL_IDEMPOTENCY_TABLE": "idempotency",
        "POWERTOOLS_SERVICE_NAME": "ingest_file",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "layers" / "common")]),
    }
    env.pop("POWERTOOLS_TRACE_DISABLED", None)
    result = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "functions" / "ingest_file")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert result.stdout.split("\n")[0] == "['botocore'] False False"

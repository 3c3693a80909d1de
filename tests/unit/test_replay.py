"""Quarantine inspection and replays: counts, samples, replay bodies, the manifest mark, the deployed-stack script."""

from __future__ import annotations

import datetime as dt
import gzip
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import boto3
import pytest
from moto import mock_aws

from datalake.contracts import Dataset, registered
from datalake.contracts.base import Contract, EventTime, Format
from datalake.replay import (
    ReplayError,
    record_replay,
    replay_body,
    replay_key,
    scan_quarantine,
    upload_replay,
    wait_for_manifest,
)
from tests.conftest import ROOT

RAW = "raw-bucket"
LANDING = "landing-bucket"


def _line(source: str, line: int, raw: str, loc: str = "quantity", kind: str = "greater_than") -> str:
    errors = [{"loc": loc, "msg": "Input should be greater than 0", "type": kind}]
    return json.dumps({"_source_key": source, "_source_version": "v1", "_line": line, "_errors": errors, "_raw": raw})


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        for bucket in (RAW, LANDING):
            client.create_bucket(Bucket=bucket)
        records = "\n".join(
            [
                _line("sales/a.jsonl", 2, '{"transaction_id": "T1", "quantity": -1}'),
                _line("sales/a.jsonl", 5, '{"transaction_id": "T2", "quantity": 0}'),
                _line("sales/a.jsonl", 7, '{"transaction_id": "T3"}', loc="currency", kind="missing"),
            ]
        )
        client.put_object(
            Bucket=RAW,
            Key="_quarantine/sales/year=2026/month=11/day=02/a-1.json.gz",
            Body=gzip.compress(records.encode() + b"\n"),
        )
        client.put_object(Bucket=RAW, Key="_quarantine/_objects/sales/tok/sales/broken.json.gz", Body=b"\x1f\x8bxx")
        reason = {"reason": "corrupt_gzip", "detail": "not a gzip file"}
        client.put_object(
            Bucket=RAW, Key="_quarantine/_objects/sales/tok/sales/broken.json.gz.reason.json", Body=json.dumps(reason)
        )
        client.put_object(
            Bucket=RAW,
            Key="_quarantine/products/year=2026/month=11/day=02/p-1.json.gz",
            Body=gzip.compress(_line("products/p.csv", 3, "P1,,-2").encode() + b"\n"),
        )
        yield client


def test_scan_counts_by_dataset_and_reason_with_samples(s3: Any) -> None:
    report = scan_quarantine(s3, RAW, samples=1)
    assert report.rows() == [
        {"dataset": "sales", "reason": "quantity: greater_than", "records": 2},
        {"dataset": "products", "reason": "quantity: greater_than", "records": 1},
        {"dataset": "sales", "reason": "currency: missing", "records": 1},
        {"dataset": "sales", "reason": "object: corrupt_gzip", "records": 1},
    ]
    first = next(s for s in report.samples if s.reason == "quantity: greater_than" and s.dataset == "sales")
    assert (first.source_key, first.line, first.raw) == ("sales/a.jsonl", 2, '{"transaction_id": "T1", "quantity": -1}')
    whole = next(s for s in report.samples if s.reason.startswith("object"))
    assert (whole.source_key, whole.detail, whole.raw) == ("sales/broken.json.gz", "not a gzip file", None)


def test_scan_filters_by_dataset_and_since(s3: Any) -> None:
    assert {r["dataset"] for r in scan_quarantine(s3, RAW, dataset="products").rows()} == {"products"}
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert scan_quarantine(s3, RAW, since=later).rows() == []


def test_a_record_file_replays_its_original_lines_and_a_whole_object_its_bytes(s3: Any) -> None:
    dataset, body, name = replay_body(s3, RAW, "_quarantine/sales/year=2026/month=11/day=02/a-1.json.gz")
    assert (dataset, name) == ("sales", "a-1.jsonl")
    assert body.decode().splitlines() == [
        '{"transaction_id": "T1", "quantity": -1}',
        '{"transaction_id": "T2", "quantity": 0}',
        '{"transaction_id": "T3"}',
    ]
    dataset, body, name = replay_body(s3, RAW, "_quarantine/_objects/sales/tok/sales/broken.json.gz")
    assert (dataset, body, name) == ("sales", b"\x1f\x8bxx", "broken.json.gz")


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("_quarantine/products/year=2026/month=11/day=02/p-1.json.gz", "CSV rows, which need their header"),
        ("sales/year=2026/x.json.gz", "is not a quarantine key"),
        ("_quarantine/sales/year=2026/month=11/day=02/missing.json.gz", "does not exist"),
    ],
)
def test_replays_that_cannot_be_made_say_why(s3: Any, key: str, message: str) -> None:
    with pytest.raises(ReplayError, match=message):
        replay_body(s3, RAW, key)


def test_replay_key_keeps_the_dataset_prefix() -> None:
    moment = dt.datetime(2026, 11, 3, 4, 5, 6, tzinfo=dt.UTC)
    assert replay_key("sales", "a.jsonl", now=moment) == "sales/_replay/20261103T040506Z/a.jsonl"


def test_the_replay_manifest_is_marked_with_what_it_replays(s3: Any) -> None:
    dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
    table = dynamodb.create_table(
        TableName="manifests",
        KeySchema=[{"AttributeName": "object_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "object_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    object_id = upload_replay(s3, LANDING, "sales/_replay/x/a.jsonl", b"{}\n", "_quarantine/sales/a-1.json.gz")
    assert object_id == f"s3://{LANDING}/sales/_replay/x/a.jsonl#null"
    head = s3.head_object(Bucket=LANDING, Key="sales/_replay/x/a.jsonl")
    assert head["Metadata"] == {"replay-of": "_quarantine/sales/a-1.json.gz"}
    with pytest.raises(ReplayError, match="no manifest"):
        wait_for_manifest(table, object_id, timeout=0.0, poll=0.0)
    table.put_item(Item={"object_id": object_id, "status": "LANDED", "records_landed": 1})
    assert wait_for_manifest(table, object_id, timeout=1.0)["status"] == "LANDED"
    updated = record_replay(table, object_id, "_quarantine/sales/a-1.json.gz")
    assert updated["replay_of"] == "_quarantine/sales/a-1.json.gz" and "replayed_at" in updated
    with pytest.raises(table.meta.client.exceptions.ConditionalCheckFailedException):
        record_replay(table, "s3://nowhere#null", "x")


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("replay_script", ROOT / "scripts" / "replay.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_script_reads_the_buckets_from_the_stack_outputs(s3: Any, capsys: pytest.CaptureFixture[str]) -> None:
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {
            "RawBucketName": {"Value": RAW},
            "LandingBucketName": {"Value": LANDING},
            "ManifestsTableName": {"Value": "manifests"},
        },
    }
    boto3.client("cloudformation", region_name="us-east-1").create_stack(
        StackName="lake", TemplateBody=json.dumps(template)
    )
    assert _script().main(["--stack-name", "lake", "quarantine", "--dataset", "sales", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert sum(c["records"] for c in document["counts"]) == 4
    assert _script().main(["--stack-name", "lake", "replay"]) == 1
    assert "replay takes FILE" in capsys.readouterr().err


def test_the_script_refuses_an_unknown_stack(s3: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert _script().main(["--stack-name", "missing", "quarantine"]) == 1
    assert capsys.readouterr().err.startswith("replay: error: ")
    assert Path(ROOT / "scripts" / "replay.py").exists()


# ----------------------------------------------------------------------------------- re-ingestion from originals


class _ReadingV1(Contract):
    reading_id: str
    taken_at: EventTime
    unit: Literal["cm"]


class _ReadingV2(Contract):
    reading_id: str
    taken_at: EventTime
    unit: Literal["cm", "mm"]


READINGS_V1 = Dataset("readings", _ReadingV1, ("reading_id",), "taken_at", formats=frozenset({Format.JSON_LINES}))
READINGS_V2 = Dataset("readings", _ReadingV2, ("reading_id",), "taken_at", version="1.1.0")
READINGS = b"".join(
    json.dumps({"reading_id": f"R{n}", "taken_at": "2026-11-01T10:00:00Z", "unit": unit}).encode() + b"\n"
    for n, unit in ((1, "cm"), (2, "mm"), (3, "cm"))
)


@pytest.fixture
def lake() -> Iterator[Any]:
    from tests.unit.test_ingest import _create_lake

    with mock_aws():
        yield _create_lake()


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _replay(lake: Any, *, start: dt.date | None = None, end: dt.date | None = None) -> Any:
    from datalake.replay import replay_originals

    return replay_originals(
        "readings", start or _today(), end or _today(), settings=lake.settings, clients=lake.clients, now=REPLAY_AT
    )


REPLAY_AT = dt.datetime(2026, 11, 5, 9, 0, tzinfo=dt.UTC)


def test_replaying_originals_after_a_contract_change_lands_what_was_refused_without_duplicates(lake: Any) -> None:
    # GIVEN three readings ingested under a contract that refuses the unit `mm`
    with registered(READINGS_V1):
        first = lake.ingest("readings/day.jsonl", READINGS)
    assert (first.records_landed, first.records_quarantined) == (2, 1)
    # WHEN the contract accepts it and the day's originals are replayed (twice: a replay may be repeated)
    with registered(READINGS_V2):
        report = _replay(lake)
        again = _replay(lake)
    # THEN every reading is in raw once, in the same object the first ingestion wrote, and the quarantine is gone
    (replayed,) = report.replayed
    assert (replayed.status, replayed.records_landed, replayed.records_quarantined) == ("LANDED", 3, 0)
    assert replayed.original_key == first.original_key and replayed.object_id == first.object_id
    assert replayed.removed == tuple(first.quarantine_keys)
    assert again.replayed[0].removed == ()
    records = lake.raw_records("readings/")
    assert sorted(r["reading_id"] for r in records) == ["R1", "R2", "R3"]
    assert lake.keys("readings/") == first.output_keys and lake.keys("_quarantine/") == []
    assert {r["_source_key"] for r in records} == {"readings/day.jsonl"}
    assert {r["_original_key"] for r in records} == {first.original_key}
    assert {r["_ingested_at"] for r in records} == {"2026-11-05T09:00:00.000000Z"}
    # AND the manifest says it was replayed from the original, which is still kept once
    stored = lake.manifest(first.object_id)
    assert stored["replayed_from"] == first.original_key and stored["contract_version"] == "1.1.0"
    versions = lake.clients.s3.list_object_versions(Bucket="raw", Prefix="_originals/").get("Versions", [])
    assert len(versions) == 1


def test_an_object_quarantined_whole_lands_on_replay_and_leaves_quarantine(lake: Any) -> None:
    # GIVEN a JSON array refused whole: the dataset accepted only JSON lines then
    array = json.dumps([json.loads(line) for line in READINGS.splitlines()]).encode()
    with registered(READINGS_V1):
        first = lake.ingest("readings/array.json", array)
    assert first.status.value == "QUARANTINED" and lake.keys("_quarantine/_objects/")
    # WHEN its formats widen and the day is replayed
    with registered(READINGS_V2):
        (replayed,) = _replay(lake).replayed
    # THEN it lands, and its whole-object quarantine copy and reason are removed
    assert (replayed.status, replayed.records_landed) == ("LANDED", 3)
    assert lake.keys("_quarantine/") == []


def test_the_range_selects_originals_by_arrival_day_and_archived_ones_are_listed(lake: Any) -> None:
    # GIVEN an object ingested today, and one original that S3 moved to Glacier
    with registered(READINGS_V1):
        first = lake.ingest("readings/day.jsonl", READINGS)
    archived = str(first.original_key).replace("/day.jsonl", "/archived.jsonl")
    lake.clients.s3.put_object(Bucket="raw", Key=archived, Body=READINGS, StorageClass="GLACIER")
    with registered(READINGS_V2):
        # WHEN yesterday is replayed THEN nothing is; WHEN today is, the archived original waits for its restore
        assert _replay(lake, start=_today() - dt.timedelta(days=1), end=_today() - dt.timedelta(days=1)).replayed == []
        report = _replay(lake)
    assert [r.original_key for r in report.replayed] == [first.original_key] and report.archived == [archived]
    with pytest.raises(ReplayError, match="starts after it ends"):
        _replay(lake, start=_today(), end=_today() - dt.timedelta(days=1))


def test_a_kept_stream_batch_is_replayed_into_the_same_objects(lake: Any) -> None:
    # GIVEN a stream batch of readings ingested under the first contract
    from datalake.streaming import StreamIngestion, StreamRecord

    lines = READINGS.splitlines()
    with registered(READINGS_V1):
        ingestion = StreamIngestion(READINGS_V1, settings=lake.settings, clients=lake.clients, now=REPLAY_AT)
        arrived = dt.datetime.now(dt.UTC).timestamp()
        for n, line in enumerate(lines):
            ingestion.add(StreamRecord("kinesis://readings", "shardId-0", 100 + n, line, arrived))
        (first,) = ingestion.flush().manifests
    assert (first.records_landed, first.records_quarantined) == (2, 1)
    # WHEN the day's originals are replayed under the contract that accepts `mm`
    with registered(READINGS_V2):
        (replayed,) = _replay(lake).replayed
    # THEN the batch's three records land once (an object named by the records it holds replaces the first
    # ingestion's), and what the first ingestion wrote is gone
    assert (replayed.original_key, replayed.object_id) == (first.original_key, first.object_id)
    assert (replayed.records_landed, replayed.records_quarantined) == (3, 0)
    assert sorted(r["reading_id"] for r in lake.raw_records("readings/")) == ["R1", "R2", "R3"]
    assert set(replayed.removed) == {*first.output_keys, *first.quarantine_keys}
    assert len(lake.keys("readings/")) == 1 and lake.keys("_quarantine/") == []


def test_the_script_replays_a_deployed_stacks_originals(lake: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a stack whose raw zone kept an object's original
    outputs = {"RawBucketName": "raw", "ManifestsTableName": "manifests", "IdempotencyTableName": "idempotency"}
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {name: {"Value": value} for name, value in outputs.items()},
    }
    boto3.client("cloudformation", region_name="us-east-1").create_stack(
        StackName="lake", TemplateBody=json.dumps(template)
    )
    with registered(READINGS_V1):
        first = lake.ingest("readings/day.jsonl", READINGS)
    # WHEN the script replays the day under the new contract
    with registered(READINGS_V2):
        code = _script().main(["--stack-name", "lake", "originals", "--dataset", "readings", "--from", str(_today())])
    # THEN it prints what each original gave
    assert code == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line) | {"removed": []} == {
        "original_key": first.original_key,
        "object_id": first.object_id,
        "status": "LANDED",
        "records_read": 3,
        "records_landed": 3,
        "records_quarantined": 0,
        "removed": [],
    }

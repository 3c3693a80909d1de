"""Stream ingestion: poison records quarantined, only failed writes retried, replays and duplicates land once."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import gzip
import importlib.util
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from moto import mock_aws

from datalake.aws import AwsClients
from datalake.contracts import get_dataset
from datalake.exceptions import TerminalError, TransientError, UnknownDatasetError
from datalake.settings import Settings
from datalake.streaming import LEDGER_PREFIX, BatchStatus, StreamManifest, batch_dataset, ingest_batch, stream_dataset
from tests.conftest import ROOT, load_event

NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/clicks"
SHARD = "shardId-000000000003"
CLICKSTREAM = get_dataset("clickstream")


def click(n: int, *, hour: int = 10, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"E{n:05d}",
        "event_time": f"2026-11-01T{hour:02d}:{n % 60:02d}:00Z",
        "session_id": "S1",
        "event_type": "page_view",
        "page": "/",
        "device": "mobile",
        **fields,
    }


def _data(payload: dict[str, Any] | bytes) -> str:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return base64.b64encode(raw).decode()


def kinesis_event(payloads: list[dict[str, Any] | bytes], *, first: int = 1000) -> dict[str, Any]:
    """A Kinesis batch as the event source mapping sends it: consecutive sequence numbers from `first`."""
    records = []
    for i, payload in enumerate(payloads):
        seq = str(first + i)
        records.append(
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "S1",
                    "sequenceNumber": seq,
                    "data": _data(payload),
                    "approximateArrivalTimestamp": NOW.timestamp(),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{SHARD}:{seq}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/r",
                "awsRegion": "us-east-1",
                "eventSourceARN": STREAM_ARN,
            }
        )
    return {"Records": records}


def kafka_event(payloads: list[dict[str, Any] | bytes], *, first: int = 1000) -> dict[str, Any]:
    """An MSK batch: one topic partition, consecutive offsets from `first`."""
    records = [
        {
            "topic": "clicks",
            "partition": 3,
            "offset": first + i,
            "timestamp": int(NOW.timestamp() * 1000),
            "timestampType": "CREATE_TIME",
            "key": base64.b64encode(b"S1").decode(),
            "value": _data(payload),
            "headers": [],
        }
        for i, payload in enumerate(payloads)
    ]
    return {
        "eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/c/1",
        "bootstrapServers": "b-1:9098",
        "records": {"clicks-3": records},
    }


@dataclass
class Lake:
    settings: Settings
    clients: AwsClients

    def ingest(self, event: dict[str, Any]) -> tuple[dict[str, Any], list[StreamManifest]]:
        response, manifests = ingest_batch(event, CLICKSTREAM, settings=self.settings, clients=self.clients, now=NOW)
        return dict(response), manifests

    def keys(self, prefix: str) -> list[str]:
        listing = self.clients.s3.list_objects_v2(Bucket="raw", Prefix=prefix)
        return sorted(o["Key"] for o in listing.get("Contents", []))

    def records(self, prefix: str = "clickstream/") -> list[dict[str, Any]]:
        out = []
        for key in self.keys(prefix):
            body = self.clients.s3.get_object(Bucket="raw", Key=key)["Body"].read()
            out.extend(json.loads(line) for line in gzip.decompress(body).splitlines())
        return out

    def ledger(self) -> dict[str, Any] | None:
        items = self.clients.dynamodb.Table("idempotency").scan()["Items"]
        found = [i for i in items if str(i["id"]).startswith(LEDGER_PREFIX)]
        return dict(found[0]) if found else None


@pytest.fixture
def lake() -> Iterator[Lake]:
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        session.client("s3").create_bucket(Bucket="raw")
        session.client("s3").put_bucket_versioning(Bucket="raw", VersioningConfiguration={"Status": "Enabled"})
        for table, key in (("manifests", "object_id"), ("idempotency", "id")):
            session.client("dynamodb").create_table(
                TableName=table,
                KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        settings = Settings(raw_bucket="raw", manifests_table="manifests", idempotency_table="idempotency")
        yield Lake(settings, AwsClients.from_session(session))


@pytest.fixture
def fail_puts(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[str], bool], str], list[str]]:
    """Make S3 PutObject fail with `code` for keys the predicate picks; returns the keys refused so far."""

    def install(predicate: Callable[[str], bool], code: str = "SlowDown") -> list[str]:
        refused: list[str] = []
        original = BaseClient._make_api_call

        def call(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
            if operation == "PutObject" and predicate(str(params.get("Key", ""))):
                refused.append(str(params["Key"]))
                raise ClientError({"Error": {"Code": code, "Message": "injected"}}, operation)
            return original(self, operation, params)

        monkeypatch.setattr(BaseClient, "_make_api_call", call)
        return refused

    return install


def test_valid_records_land_as_received_in_event_hour_objects_with_lineage(lake: Lake) -> None:
    # GIVEN a batch whose events fall in two hours of one day
    event = kinesis_event([click(1), click(2, hour=11), click(3)])
    # WHEN it is ingested
    response, [manifest] = lake.ingest(event)
    # THEN nothing is reported failed, one object per event hour lands inside the day partition
    assert response == {"batchItemFailures": []}
    assert (manifest.status, manifest.records_received, manifest.records_landed) == (BatchStatus.LANDED, 3, 3)
    assert [k.rsplit("/", 1)[0] for k in manifest.output_keys] == ["clickstream/year=2026/month=11/day=01"] * 2
    assert [k.rsplit("/", 1)[1][:4] for k in manifest.output_keys] == ["h10-", "h11-"]
    assert all(f"clicks-{SHARD}-" in k for k in manifest.output_keys)
    record = next(r for r in lake.records() if r["event_id"] == "E00001")
    assert record["_source_key"] == f"kinesis://clicks/{SHARD}" and record["_source_version"] == "1000"
    assert record["_line"] == 1 and record["_ingested_at"] == "2026-11-01T12:00:00.000000Z"
    assert manifest.object_id == f"kinesis://clicks/{SHARD}#1000-1002"


def test_poison_record_is_quarantined_with_its_reason_and_does_not_block_the_shard(lake: Lake) -> None:
    # GIVEN a batch with a record of an unknown event type and one that is not JSON between valid ones
    event = kinesis_event([click(1), click(2, event_type="teleport"), b"\x00garbage", click(4)])
    # WHEN it is ingested
    response, [manifest] = lake.ingest(event)
    # THEN the poison is quarantined with its reason, the rest lands, and no record is reported as failed
    assert response == {"batchItemFailures": []}
    assert (manifest.records_read, manifest.records_landed, manifest.records_quarantined) == (4, 2, 2)
    assert manifest.status is BatchStatus.PARTIAL
    quarantined = lake.records("_quarantine/clickstream/")
    assert [q["_source_version"] for q in quarantined] == ["1001", "1002"]
    assert quarantined[0]["_errors"][0]["loc"] == "event_type"
    assert quarantined[1]["_errors"][0]["type"] == "json_invalid"
    stored = lake.clients.dynamodb.Table("manifests").get_item(Key={"object_id": manifest.object_id})["Item"]
    assert stored["records_read"] == stored["records_landed"] + stored["records_quarantined"]


def test_the_same_event_id_twice_in_a_batch_lands_once(lake: Lake) -> None:
    response, [manifest] = lake.ingest(kinesis_event([click(1), click(2), click(1)]))
    assert response == {"batchItemFailures": []}
    assert (manifest.records_received, manifest.records_landed, manifest.duplicates_dropped) == (3, 2, 1)
    assert sorted(r["event_id"] for r in lake.records()) == ["E00001", "E00002"]


def test_a_replayed_batch_overwrites_its_objects_instead_of_duplicating(lake: Lake) -> None:
    # GIVEN a batch that was ingested once
    event = kinesis_event([click(1), click(2, hour=11), click(3, event_type="teleport")])
    _, [first] = lake.ingest(event)
    # WHEN the event source mapping delivers the same batch again
    _, [second] = lake.ingest(copy.deepcopy(event))
    # THEN the same keys are written and the raw zone still holds each record once
    assert (first.output_keys, first.quarantine_keys) == (second.output_keys, second.quarantine_keys)
    assert sorted(r["event_id"] for r in lake.records()) == ["E00001", "E00002"]
    assert len(lake.records("_quarantine/")) == 1


def test_a_transient_write_failure_reports_only_the_records_of_the_failed_object(
    lake: Lake, fail_puts: Callable[..., list[str]]
) -> None:
    # GIVEN raw writes for hour 11 throttled
    refused = fail_puts(lambda key: "/h11-" in key)
    event = kinesis_event([click(1), click(2, hour=11), click(3), click(4, hour=11)])
    # WHEN the batch is ingested
    response, [manifest] = lake.ingest(event)
    # THEN only the hour-11 records are reported, and the hour-10 records landed
    assert response == {"batchItemFailures": [{"itemIdentifier": "1001"}, {"itemIdentifier": "1003"}]}
    assert len(refused) == 1
    assert (manifest.status, manifest.records_landed, manifest.records_failed) == (BatchStatus.RETRYING, 2, 2)
    assert sorted(r["event_id"] for r in lake.records()) == ["E00001", "E00003"]
    # AND the ledger remembers the record after the retry point that already landed
    ledger = lake.ledger()
    assert ledger is not None and ledger["resume_from"] == "1001" and int(ledger["records"]) == 1


def test_the_retry_after_a_partial_failure_writes_only_the_failed_records(
    lake: Lake, monkeypatch: pytest.MonkeyPatch, fail_puts: Callable[..., list[str]]
) -> None:
    # GIVEN a batch whose hour-11 object failed once
    original = BaseClient._make_api_call
    fail_puts(lambda key: "/h11-" in key)
    payloads: list[dict[str, Any] | bytes] = [click(1), click(2, hour=11), click(3), click(4, hour=11), click(5)]
    lake.ingest(kinesis_event(payloads))
    monkeypatch.setattr(BaseClient, "_make_api_call", original)
    # WHEN Kinesis retries from the lowest failed record (1001), with everything after it
    response, [retry] = lake.ingest(kinesis_event(payloads[1:], first=1001))
    # THEN the retry lands the two failed records only, skips the two that had landed, and clears the ledger
    assert response == {"batchItemFailures": []}
    assert (retry.records_received, retry.records_landed, retry.records_replayed) == (4, 2, 2)
    assert sorted(r["event_id"] for r in lake.records()) == ["E00001", "E00002", "E00003", "E00004", "E00005"]
    assert lake.ledger() is None


def test_a_terminal_write_failure_fails_the_invocation(lake: Lake, fail_puts: Callable[..., list[str]]) -> None:
    fail_puts(lambda key: True, "AccessDenied")
    with pytest.raises(TerminalError, match="AccessDenied"):
        lake.ingest(kinesis_event([click(1), click(2)]))


def _without_source(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        ({k: v for k, v in r.items() if k not in ("_source_key", "_source_version", "_original_key")} for r in records),
        key=lambda r: str(r.get("event_id", r.get("_raw"))),
    )


def test_kafka_and_kinesis_batches_reach_the_same_handler_and_land_the_same_records(lake: Lake) -> None:
    # GIVEN the same payloads as a Kinesis batch and as an MSK batch
    payloads: list[dict[str, Any] | bytes] = [click(1), click(2, event_type="teleport"), click(1), click(4, hour=9)]
    # WHEN both are ingested
    kinesis_response, [kinesis] = lake.ingest(kinesis_event(payloads))
    kinesis_raw, kinesis_quarantine = lake.records(), lake.records("_quarantine/")
    for key in lake.keys(""):
        lake.clients.s3.delete_object(Bucket="raw", Key=key)
    kafka_response, [kafka] = lake.ingest(kafka_event(payloads))
    # THEN they are judged, deduplicated and landed alike; only the lineage names their source
    assert kinesis_response == kafka_response == {"batchItemFailures": []}
    counts = ("records_received", "records_landed", "records_quarantined", "duplicates_dropped")
    assert [getattr(kinesis, c) for c in counts] == [getattr(kafka, c) for c in counts] == [4, 2, 1, 1]
    assert _without_source(kinesis_raw) == _without_source(lake.records())
    assert _without_source(kinesis_quarantine) == _without_source(lake.records("_quarantine/"))
    assert {r["_source_key"] for r in lake.records()} == {"kafka://clicks/3"}
    assert kafka.object_id == "kafka://clicks/3#1000-1003"


def test_a_kafka_batch_with_a_failed_write_fails_whole_and_its_retry_lands_only_the_rest(
    lake: Lake, monkeypatch: pytest.MonkeyPatch, fail_puts: Callable[..., list[str]]
) -> None:
    # GIVEN an MSK batch whose hour-11 object is throttled (the MSK mapping ignores partial batch responses)
    original = BaseClient._make_api_call
    fail_puts(lambda key: "/h11-" in key)
    event = kafka_event([click(1), click(2, hour=11), click(3)])
    with pytest.raises(TransientError, match="1 Kafka records"):
        lake.ingest(event)
    monkeypatch.setattr(BaseClient, "_make_api_call", original)
    # WHEN the whole batch comes back
    _, [retry] = lake.ingest(copy.deepcopy(event))
    # THEN only the failed record is written; the others are skipped as replays
    assert (retry.records_landed, retry.records_replayed) == (1, 2)
    assert sorted(r["event_id"] for r in lake.records()) == ["E00001", "E00002", "E00003"]


def test_a_record_over_the_size_cap_is_quarantined(lake: Lake) -> None:
    big = click(1, page="/" + "x" * 5000)
    lake.settings = Settings(
        raw_bucket="raw", manifests_table="manifests", idempotency_table="idempotency", max_line_bytes=1024
    )
    _, [manifest] = lake.ingest(kinesis_event([big, click(2)]))
    assert (manifest.records_landed, manifest.records_quarantined) == (1, 1)
    assert lake.records("_quarantine/")[0]["_errors"][0]["type"] == "too_long"


def test_a_kafka_tombstone_is_quarantined(lake: Lake) -> None:
    event = kafka_event([click(1), click(2)])
    event["records"]["clicks-3"][1]["value"] = None
    _, [manifest] = lake.ingest(event)
    assert (manifest.records_landed, manifest.records_quarantined) == (1, 1)
    assert lake.records("_quarantine/")[0]["_errors"][0]["type"] == "value_missing"


# ---------------------------------------------------------------------------------------------------- handler
def _load_handler() -> ModuleType:
    path = ROOT / "functions" / "ingest_stream" / "app.py"
    spec = importlib.util.spec_from_file_location("ingest_stream_app", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("sample", ["kinesis_clickstream", "msk_kafka_clickstream"])
def test_handler_ingests_the_sample_events(
    lake: Lake, monkeypatch: pytest.MonkeyPatch, lambda_context: Any, sample: str
) -> None:
    # GIVEN the handler configured as the template configures it
    for name, value in {
        "DL_STREAM_PREFIX": "lakebox-",
        "DL_RAW_BUCKET": "raw",
        "DL_MANIFESTS_TABLE": "manifests",
        "DL_IDEMPOTENCY_TABLE": "idempotency",
        "POWERTOOLS_SERVICE_NAME": "ingest_stream",
    }.items():
        monkeypatch.setenv(name, value)
    module = _load_handler()
    # WHEN it gets the sample event (two valid events, a poison one, a repeat of the first)
    response = module.lambda_handler(load_event(f"ingest_stream/{sample}"), lambda_context)
    # THEN nothing is reported failed; two land, one is quarantined, the repeat is dropped
    assert response == {"batchItemFailures": []}
    assert sorted(r["event_id"] for r in lake.records()) == ["E07000000001", "E07000000002"]
    assert len(lake.records("_quarantine/")) == 1


# ------------------------------------------------------------------------------------------- dataset by stream
@pytest.mark.parametrize(
    ("source", "prefix", "dataset"),
    [
        ("arn:aws:kinesis:us-east-1:123456789012:stream/lakebox-clickstream", "lakebox-", "clickstream"),
        ("lakebox-clickstream", "lakebox-", "clickstream"),
        ("clickstream", "lakebox-", "clickstream"),
        ("clickstream", "", "clickstream"),
    ],
)
def test_a_streams_name_names_its_dataset(source: str, prefix: str, dataset: str) -> None:
    assert stream_dataset(source, prefix).name == dataset


def test_a_stream_named_for_no_dataset_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(UnknownDatasetError, match=r"unknown dataset 'clicks'.*clickstream"):
        stream_dataset("arn:aws:kinesis:us-east-1:123456789012:stream/lakebox-clicks", "lakebox-")


@pytest.mark.parametrize("sample", ["kinesis_clickstream", "msk_kafka_clickstream"])
def test_a_batchs_dataset_is_named_by_its_stream_or_topic(sample: str) -> None:
    assert batch_dataset(load_event(f"ingest_stream/{sample}"), "lakebox-").name == "clickstream"


def test_a_batch_of_no_record_or_of_two_datasets_is_refused() -> None:
    event = load_event("ingest_stream/kinesis_clickstream")
    mixed = {"Records": [*event["Records"], {**event["Records"][0], "eventSourceARN": "arn:x:stream/lakebox-sales"}]}
    with pytest.raises(TerminalError, match=r"one dataset, not \['clickstream', 'sales'\]"):
        batch_dataset(mixed, "lakebox-")
    with pytest.raises(TerminalError, match="one dataset, not none"):
        batch_dataset({"Records": []}, "lakebox-")


def test_a_record_holding_a_20000_deep_value_is_quarantined_and_the_batch_lands(lake: Lake) -> None:
    # GIVEN a stream batch of three records of a dataset with a list field, the second nested 20,000 deep
    from tests.unit.test_ingest import DEEP_VALUES, PARCELS, _deep_parcel, _parcel

    payloads: list[dict[str, Any] | bytes] = [_parcel(1), _deep_parcel("tags", DEEP_VALUES["list"]), _parcel(3)]
    settings = lake.settings.model_copy(update={"max_line_bytes": 1 << 20})
    # WHEN it is ingested
    response, manifests = ingest_batch(
        kinesis_event(payloads), PARCELS, settings=settings, clients=lake.clients, now=NOW
    )
    # THEN no record fails: the deep one is quarantined with its reason and the two others land
    assert response == {"batchItemFailures": []}
    (manifest,) = manifests
    assert (manifest.records_landed, manifest.records_quarantined, manifest.records_failed) == (2, 1, 0)
    (rejected,) = lake.records("_quarantine/parcels/")
    assert "recursion limit" in rejected["_errors"][0]["msg"]


def test_each_batch_is_kept_byte_for_byte_once_and_its_records_name_it(lake: Lake) -> None:
    # GIVEN a batch of a valid click, a poison payload that is not JSON, and a repeat of the first
    payloads: list[dict[str, Any] | bytes] = [click(1), b"\x00not json\n{", click(1)]
    event = kinesis_event(payloads)
    # WHEN it is ingested, then delivered again
    _, [manifest] = lake.ingest(event)
    _, [again] = lake.ingest(copy.deepcopy(event))
    # THEN the raw zone keeps the batch once under _originals/, every payload's bytes recoverable as delivered
    assert manifest.original_key is not None and manifest.original_key == again.original_key
    assert manifest.original_key.startswith("_originals/clickstream/year=")
    assert manifest.original_key.endswith("/clicks-shardId-000000000003-1000-1002.jsonl.gz")
    versions = lake.clients.s3.list_object_versions(Bucket="raw", Prefix="_originals/").get("Versions", [])
    assert len(versions) == 1
    kept = gzip.decompress(lake.clients.s3.get_object(Bucket="raw", Key=manifest.original_key)["Body"].read())
    lines = [json.loads(line) for line in kept.splitlines()]
    assert [base64.b64decode(line["data"]) for line in lines] == [
        p if isinstance(p, bytes) else json.dumps(p).encode() for p in payloads
    ]
    assert [line["position"] for line in lines] == ["1000", "1001", "1002"]
    # AND every landed and quarantined record names that original
    assert {r["_original_key"] for r in lake.records()} == {manifest.original_key}
    assert {r["_original_key"] for r in lake.records("_quarantine/")} == {manifest.original_key}


def test_a_batch_whose_original_cannot_be_kept_is_retried_whole(
    lake: Lake, fail_puts: Callable[[Callable[[str], bool], str], list[str]]
) -> None:
    # GIVEN the raw zone refuses the batch's original
    refused = fail_puts(lambda key: key.startswith("_originals/"), "SlowDown")
    # WHEN a batch is ingested
    response, [manifest] = lake.ingest(kinesis_event([click(1), click(2)]))
    # THEN every record is reported failed (to be retried) and nothing lands without its original
    assert response == {"batchItemFailures": [{"itemIdentifier": "1000"}, {"itemIdentifier": "1001"}]}
    assert refused and manifest.records_failed == 2 and lake.keys("clickstream/") == []

"""Firehose transformation: the contract applied, valid records keyed by event hour, invalid ones failed."""

from __future__ import annotations

import base64
import datetime as dt
import importlib.util
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.data_classes import KinesisFirehoseEvent
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from moto import mock_aws

from datalake.aws import AwsClients
from datalake.contracts import get_dataset
from datalake.exceptions import TransientError, UnknownDatasetError
from datalake.firehose import batch_token, partition_keys, transform_batch, transform_records
from datalake.settings import Settings
from tests.conftest import ROOT, load_event

NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)


def _transform(event: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
    response, counts = transform_records(KinesisFirehoseEvent(event), get_dataset("clickstream"), now=NOW)
    records: list[dict[str, Any]] = response.asdict()["records"]
    return records, counts


def test_valid_records_are_ok_with_lineage_and_event_hour_partition_keys() -> None:
    # GIVEN the sample batch: two valid events, a poison one, a repeat of the first
    event = load_event("transform_records/firehose_clickstream")
    # WHEN it is transformed
    records, counts = _transform(event)
    # THEN each record id comes back once, in order, with its verdict
    assert [r["recordId"] for r in records] == [r["recordId"] for r in event["records"]]
    assert [r["result"] for r in records] == ["Ok", "Ok", "ProcessingFailed", "Dropped"]
    assert (counts.records, counts.ok, counts.failed, counts.dropped) == (4, 2, 1, 1)
    assert counts.errors == {"literal_error": 1}
    first = records[0]
    batch = counts.batch
    assert len(batch) == 16 and batch == batch_token([r["recordId"] for r in event["records"]])
    keys = {"year": "2026", "month": "11", "day": "01", "hour": "09", "batch": batch}
    assert first["metadata"] == {"partitionKeys": keys}
    assert records[1]["metadata"]["partitionKeys"]["hour"] == "10"
    assert counts.partitions == {
        f"clickstream/year=2026/month=11/day=01/hour=09/{batch}-": 1,
        f"clickstream/year=2026/month=11/day=01/hour=10/{batch}-": 1,
    }
    line = base64.b64decode(first["data"])
    assert line.endswith(b"}\n") and line.count(b"\n") == 1
    landed = json.loads(line)
    source = json.loads(base64.b64decode(event["records"][0]["data"]))
    assert {k: landed[k] for k in source} == source
    assert landed["_source_key"] == "kinesis://lakebox-clickstream/shardId-000000000000"
    assert landed["_source_version"] == event["records"][0]["kinesisRecordMetadata"]["sequenceNumber"]
    assert landed["_ingested_at"] == "2026-11-01T12:00:00.000000Z" and landed["_line"] == 1


def test_a_failed_record_keeps_its_original_data_for_the_error_prefix() -> None:
    event = load_event("transform_records/firehose_clickstream")
    records, _ = _transform(event)
    assert records[2]["data"] == event["records"][2]["data"] and "metadata" not in records[2]


def test_a_direct_put_record_without_kinesis_metadata_is_named_by_its_record_id() -> None:
    event = load_event("transform_records/firehose_clickstream")
    del event["sourceKinesisStreamArn"]
    for record in event["records"]:
        del record["kinesisRecordMetadata"]
    records, _ = _transform(event)
    landed = json.loads(base64.b64decode(records[0]["data"]))
    assert landed["_source_key"] == "firehose://lakebox-clickstream"
    assert landed["_source_version"] == event["records"][0]["recordId"]


def test_a_record_that_is_not_base64_fails_processing() -> None:
    event = load_event("transform_records/firehose_clickstream")
    event["records"][0]["data"] = "not base64!"
    records, counts = _transform(event)
    assert records[0]["result"] == "ProcessingFailed" and counts.errors.get("base64_invalid") == 1


def test_partition_keys_are_the_utc_event_hour() -> None:
    moment = dt.datetime(2026, 1, 2, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert partition_keys(moment) == {"year": "2026", "month": "01", "day": "01", "hour": "22"}
    assert partition_keys(moment, "b")["batch"] == "b"


@pytest.fixture
def manifests() -> Iterator[AwsClients]:
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        session.client("dynamodb").create_table(
            TableName="manifests",
            KeySchema=[{"AttributeName": "object_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "object_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        session.client("s3").create_bucket(Bucket="raw")
        session.client("s3").put_bucket_versioning(Bucket="raw", VersioningConfiguration={"Status": "Enabled"})
        yield AwsClients.from_session(session)


SETTINGS = Settings(manifests_table="manifests", stream_prefix="lakebox-", raw_bucket="raw")


def _items(clients: AwsClients) -> list[dict[str, Any]]:
    return list(clients.dynamodb.Table("manifests").scan()["Items"])


def test_each_batch_records_a_manifest_that_accounts_for_every_record(manifests: AwsClients) -> None:
    # GIVEN the sample batch from the stack's clickstream stream (two valid, a poison one, a repeat)
    event = KinesisFirehoseEvent(load_event("transform_records/firehose_clickstream"))
    # WHEN it is transformed
    _, counts, manifest = transform_batch(event, settings=SETTINGS, clients=manifests, now=NOW)
    # THEN its dataset is the one its source stream names, and one manifest says where each record went
    assert manifest.dataset == "clickstream" and manifest.origin == "firehose"
    (item,) = _items(manifests)
    assert item["object_id"] == f"firehose://lakebox-clickstream/{counts.batch}"
    assert (item["records_received"], item["records_read"], item["duplicates_dropped"]) == (4, 3, 1)
    assert (item["records_landed"], item["records_quarantined"]) == (2, 1)
    assert item["records_received"] == item["records_landed"] + item["records_quarantined"] + item["duplicates_dropped"]
    assert {k: int(v) for k, v in item["output_prefixes"].items()} == counts.partitions
    assert item["errors"] == {"literal_error": 1} and item["status"] == "PARTIAL"


def test_a_batch_firehose_retries_writes_the_same_manifest_and_prefixes(manifests: AwsClients) -> None:
    # GIVEN a batch transformed once
    event = load_event("transform_records/firehose_clickstream")
    first = transform_batch(KinesisFirehoseEvent(event), settings=SETTINGS, clients=manifests, now=NOW)
    # WHEN Firehose invokes again with the same records (a new invocation id, later)
    again = {**event, "invocationId": "another"}
    later = NOW.replace(hour=13)
    second = transform_batch(KinesisFirehoseEvent(again), settings=SETTINGS, clients=manifests, now=later)
    # THEN the batch keeps its token: one manifest, the same prefixes, nothing counted twice
    assert second[2].batch == first[2].batch and second[2].output_prefixes == first[2].output_prefixes
    assert len(_items(manifests)) == 1


def test_a_manifest_that_cannot_be_recorded_fails_the_invocation_for_firehose_to_retry(
    manifests: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = BaseClient._make_api_call

    def call(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if operation == "PutItem":
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}}, operation)
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", call)
    event = KinesisFirehoseEvent(load_event("transform_records/firehose_clickstream"))
    with pytest.raises(TransientError, match="manifest of firehose://lakebox-clickstream/"):
        transform_batch(event, settings=SETTINGS, clients=manifests, now=NOW)


def test_a_delivery_stream_whose_source_names_no_dataset_is_refused(manifests: AwsClients) -> None:
    event = load_event("transform_records/firehose_clickstream")
    event["sourceKinesisStreamArn"] = "arn:aws:kinesis:us-east-1:123456789012:stream/lakebox-telemetry"
    with pytest.raises(UnknownDatasetError, match="'telemetry'"):
        transform_batch(KinesisFirehoseEvent(event), settings=SETTINGS, clients=manifests, now=NOW)
    assert _items(manifests) == []


def test_handler_returns_firehose_response(
    monkeypatch: pytest.MonkeyPatch, lambda_context: Any, manifests: AwsClients
) -> None:
    monkeypatch.setenv("DL_STREAM_PREFIX", "lakebox-")
    monkeypatch.setenv("DL_MANIFESTS_TABLE", "manifests")
    monkeypatch.setenv("DL_RAW_BUCKET", "raw")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "transform_records")
    spec = importlib.util.spec_from_file_location("transform_records_app", ROOT / "functions/transform_records/app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    response = module.lambda_handler(load_event("transform_records/firehose_clickstream"), lambda_context)
    assert [r["result"] for r in response["records"]] == ["Ok", "Ok", "ProcessingFailed", "Dropped"]
    assert len(_items(manifests)) == 1


def test_a_record_holding_a_20000_deep_value_fails_processing_alone() -> None:
    # GIVEN a Firehose batch of a dataset with a list field whose second record is nested 20,000 deep
    from tests.unit.test_ingest import DEEP_VALUES, PARCELS, _deep_parcel, _parcel

    event = load_event("transform_records/firehose_clickstream")
    payloads = [
        json.dumps(_parcel(1)).encode(),
        _deep_parcel("tags", DEEP_VALUES["object"]),
        json.dumps(_parcel(3)).encode(),
    ]
    event["records"] = [
        {**event["records"][0], "recordId": f"r{i}", "data": base64.b64encode(p).decode()}
        for i, p in enumerate(payloads)
    ]
    # WHEN it is transformed
    response, counts = transform_records(KinesisFirehoseEvent(event), PARCELS, now=NOW)
    # THEN only that record fails processing, with the parser's reason counted
    assert [r["result"] for r in response.asdict()["records"]] == ["Ok", "ProcessingFailed", "Ok"]
    assert counts.errors == {"json_invalid": 1}


def test_each_batch_is_kept_as_delivered_once_and_its_records_name_it(manifests: AwsClients) -> None:
    # GIVEN the sample batch, transformed, then retried by Firehose
    event = load_event("transform_records/firehose_clickstream")
    response, _, manifest = transform_batch(KinesisFirehoseEvent(event), settings=SETTINGS, clients=manifests, now=NOW)
    again = transform_batch(
        KinesisFirehoseEvent({**event, "invocationId": "another"}), settings=SETTINGS, clients=manifests, now=NOW
    )
    # THEN the raw zone keeps the batch once, every record's bytes recoverable, under the batch's token
    key = manifest.original_key
    assert key is not None and key == again[2].original_key and f"/{manifest.batch}/" in key
    versions = manifests.s3.list_object_versions(Bucket="raw", Prefix="_originals/clickstream/").get("Versions", [])
    assert len(versions) == 1
    import gzip

    kept = gzip.decompress(manifests.s3.get_object(Bucket="raw", Key=key)["Body"].read()).splitlines()
    assert [json.loads(line)["data"] for line in kept] == [r["data"] for r in event["records"]]
    # AND every record Firehose writes to raw names it
    ok = [json.loads(base64.b64decode(r["data"])) for r in response.asdict()["records"] if r["result"] == "Ok"]
    assert {r["_original_key"] for r in ok} == {key}

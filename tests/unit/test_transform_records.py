"""Firehose transformation: the contract applied, valid records keyed by event hour, invalid ones failed."""

from __future__ import annotations

import base64
import datetime as dt
import importlib.util
import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import KinesisFirehoseEvent

from datalake.contracts import get_dataset
from datalake.firehose import partition_keys, transform_records
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
    assert first["metadata"] == {"partitionKeys": {"year": "2026", "month": "11", "day": "01", "hour": "09"}}
    assert records[1]["metadata"]["partitionKeys"]["hour"] == "10"
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
    assert landed["_source_key"] == "firehose://lakebox-FirehoseDeliveryStream"
    assert landed["_source_version"] == event["records"][0]["recordId"]


def test_a_record_that_is_not_base64_fails_processing() -> None:
    event = load_event("transform_records/firehose_clickstream")
    event["records"][0]["data"] = "not base64!"
    records, counts = _transform(event)
    assert records[0]["result"] == "ProcessingFailed" and counts.errors.get("base64_invalid") == 1


def test_partition_keys_are_the_utc_event_hour() -> None:
    moment = dt.datetime(2026, 1, 2, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert partition_keys(moment) == {"year": "2026", "month": "01", "day": "01", "hour": "22"}


def test_handler_returns_firehose_response(monkeypatch: pytest.MonkeyPatch, lambda_context: Any) -> None:
    monkeypatch.setenv("DL_STREAM_DATASET", "clickstream")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "transform_records")
    spec = importlib.util.spec_from_file_location("transform_records_app", ROOT / "functions/transform_records/app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    response = module.lambda_handler(load_event("transform_records/firehose_clickstream"), lambda_context)
    assert [r["result"] for r in response["records"]] == ["Ok", "Ok", "ProcessingFailed", "Dropped"]

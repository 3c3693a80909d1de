"""File ingestion through the local stack: the template's rule, the real handler, the moto server."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from datalake.contracts import registered
from lakebox.app import scaffold
from lakebox.app.sample import SampleSpec, write_sales
from lakebox.services.eventbus import object_created_event
from tests.conftest import run_cli

pytestmark = pytest.mark.integration


def _raw_rows(box: Any, prefix: str) -> int:
    s3 = box.session.client("s3")
    bucket = box.bucket("RawBucket")
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            total += gzip.decompress(body).count(b"\n")
    return total


def test_100k_row_file_is_ingested_end_to_end(local_stack: Any, tmp_path: Path) -> None:
    # GIVEN a generated 100k-row gzip file with 2% bad records
    generated = write_sales(tmp_path / "big.jsonl.gz", SampleSpec(sales=100_000, seed=11), compress=True)
    # WHEN it is put in the landing bucket
    _, deliveries = local_stack.put_file(generated.path, "sales", key="sales/big/big.jsonl.gz")
    # THEN the template's rule delivers it to the ingest function once, and the counts reconcile exactly
    assert [d.rule for d in deliveries] == ["IngestFileFunction.LandingObjectCreated"]
    manifest = deliveries[0].result
    assert manifest["records_read"] == generated.records == 100_000
    assert manifest["records_quarantined"] == generated.bad
    assert manifest["records_landed"] == generated.good
    assert _raw_rows(local_stack, "sales/") == generated.good
    assert _raw_rows(local_stack, "_quarantine/sales/") == generated.bad
    table = local_stack.session.resource("dynamodb").Table(local_stack.stack.ref("ManifestsTable"))
    stored = table.get_item(Key={"object_id": manifest["object_id"]})["Item"]
    assert int(stored["records_landed"]) == generated.good


def test_same_event_three_times_leaves_raw_unchanged(local_stack: Any, tmp_path: Path) -> None:
    generated = write_sales(tmp_path / "dup.jsonl", SampleSpec(sales=500, seed=12))
    key, deliveries = local_stack.put_file(generated.path, "sales", key="sales/dup/dup.jsonl")
    before = _raw_rows(local_stack, "sales/")
    event = object_created_event(
        local_stack.bucket("LandingBucket"),
        key,
        version_id=deliveries[0].result["version"],
        etag="ignored-when-versioned",
        size=generated.path.stat().st_size,
    )
    for _ in range(3):
        again = local_stack.bus.put(event)
        assert again[0].ok and again[0].result == deliveries[0].result
    assert _raw_rows(local_stack, "sales/") == before


def test_failing_deliveries_end_in_the_failure_queue(local_stack: Any) -> None:
    # GIVEN an event naming an object that does not exist WHEN it is delivered
    event = object_created_event(
        local_stack.bucket("LandingBucket"), "sales/missing.jsonl", version_id=None, etag="0", size=10
    )
    deliveries = local_stack.bus.put(event)
    # THEN Lambda's async retries are spent and the request lands in the on-failure destination
    assert not deliveries[0].ok and deliveries[0].attempts == 3
    sqs = local_stack.session.client("sqs")
    queue = sqs.get_queue_url(QueueName=local_stack.stack.get_att("IngestFailureQueue", "QueueName"))["QueueUrl"]
    message = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"][0]
    record = json.loads(message["Body"])
    assert record["requestPayload"]["detail"]["object"]["key"] == "sales/missing.jsonl"
    assert record["requestContext"]["condition"] == "RetriesExhausted"


def test_cli_put_prints_json_summary(tmp_path: Path) -> None:
    generated = write_sales(tmp_path / "cli.jsonl", SampleSpec(sales=200, seed=3, bad_rate=0.1))
    result = run_cli(tmp_path / "lake", "put", str(generated.path), "--dataset", "sales", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert rows == [
        {
            "key": "sales/cli.jsonl",
            "dataset": "sales",
            "status": "PARTIAL",
            "read": 200,
            "landed": generated.good,
            "quarantined": generated.bad,
            "reason": None,
        }
    ]


def test_cli_errors_are_one_clear_line(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "lake", "put", "/nonexistent/file.jsonl", "--dataset", "sales")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["lakebox: error: /nonexistent/file.jsonl: no such file"]


def test_the_same_file_put_twice_lands_once(local_stack: Any, tmp_path: Path) -> None:
    # GIVEN a file put in the landing bucket and ingested
    generated = write_sales(tmp_path / "twice.jsonl", SampleSpec(sales=300, seed=13))
    _, first = local_stack.put_file(generated.path, "sales", key="sales/twice/twice.jsonl")
    before = _raw_rows(local_stack, "sales/")
    # WHEN the producer puts the very same bytes again (a new version of the same key)
    _, second = local_stack.put_file(generated.path, "sales", key="sales/twice/twice.jsonl")
    # THEN the second version is recorded as a duplicate of the first, and raw holds its records once
    original, duplicate = first[0].result, second[0].result
    assert original["status"] in {"LANDED", "PARTIAL"} and duplicate["version"] != original["version"]
    assert (duplicate["status"], duplicate["duplicate_of"]) == ("DUPLICATE", original["object_id"])
    assert duplicate["output_keys"] == [] and duplicate["records_landed"] == 0
    assert _raw_rows(local_stack, "sales/") == before
    table = local_stack.session.resource("dynamodb").Table(local_stack.stack.ref("ManifestsTable"))
    assert table.get_item(Key={"object_id": duplicate["object_id"]})["Item"]["status"] == "DUPLICATE"


def test_a_dataset_made_from_a_sample_ingests_that_sample_through_the_stack(local_stack: Any, tmp_path: Path) -> None:
    # GIVEN a contract inferred from a semicolon CSV sample (BOM, gaps, leading zeros, zone-less times)
    sample = tmp_path / "deliveries.csv"
    sample.write_text(
        "\ufeffdelivery_id;depot_code;status;weight_kg;postcode;scanned_at;note\n"
        "D1;DEP-1;out;12.5;01234;2026-11-01 08:00:00;\n"
        "D2;DEP-1;done;3;02345;2026-11-01 09:15:00;left at door\n"
        "D3;DEP-2;done;0.75;10115;2026-11-02 10:00:00;\n"
        "D4;DEP-2;out;7.25;80331;2026-11-02 11:30:00;\n"
    )
    inferred = scaffold.infer("deliveries", scaffold.read_sample(sample))
    dataset = scaffold.build(inferred)
    # WHEN it is registered and the sample put on the landing bucket of the running stack
    with registered(dataset):
        _, deliveries = local_stack.put_file(sample, "deliveries", key="deliveries/deliveries.csv")
    # THEN the template's rule runs the real handler, and every record lands in raw, by its UTC date
    manifest = deliveries[0].result
    assert (manifest["status"], manifest["records_read"], manifest["records_landed"]) == ("LANDED", 4, 4)
    assert manifest["event_dates"] == ["2026-11-01", "2026-11-02"]
    assert _raw_rows(local_stack, "deliveries/") == 4

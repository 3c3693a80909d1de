"""File ingestion through the local stack: the template's rule, the real handler, the moto server."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from datalake.contracts import get_dataset, registered
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


def test_a_dropped_file_is_kept_byte_for_byte_and_every_record_leads_back_to_it(
    local_stack: Any, tmp_path: Path
) -> None:
    # GIVEN a gzip file of sales with some bad records, dropped on the landing bucket of the running stack
    generated = write_sales(tmp_path / "kept.jsonl.gz", SampleSpec(sales=400, seed=21, bad_rate=0.05), compress=True)
    _, deliveries = local_stack.put_file(generated.path, "sales", key="sales/kept/kept.jsonl.gz")
    manifest = deliveries[0].result
    s3 = local_stack.session.client("s3")
    raw = local_stack.bucket("RawBucket")
    # THEN the raw zone keeps the object, byte for byte, under _originals/sales/<arrival day>/<ingestion id>/<name>
    original = manifest["original_key"]
    assert original.startswith("_originals/sales/year=") and original.endswith("/kept.jsonl.gz")
    kept = s3.get_object(Bucket=raw, Key=original)
    body = kept["Body"].read()
    assert body == generated.path.read_bytes() and hashlib.sha256(body).hexdigest() == manifest["sha256"]
    # AND every landed and quarantined record names it, and its metadata names the landed object and version
    records = [
        json.loads(line)
        for prefix in ("sales/", "_quarantine/sales/")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=raw, Prefix=prefix)
        for obj in page.get("Contents", [])
        for line in gzip.decompress(s3.get_object(Bucket=raw, Key=obj["Key"])["Body"].read()).splitlines()
    ]
    records = [r for r in records if r["_source_key"] == manifest["key"]]
    assert len(records) == generated.records and {r["_original_key"] for r in records} == {original}
    metadata = kept["Metadata"]
    assert (metadata["source-bucket"], metadata["source-key"]) == (local_stack.bucket("LandingBucket"), manifest["key"])
    assert metadata["source-version"] == manifest["version"] == records[0]["_source_version"]
    # AND the lineage resolves to the manifest of that object version
    table = local_stack.session.resource("dynamodb").Table(local_stack.stack.ref("ManifestsTable"))
    object_id = f"s3://{metadata['source-bucket']}/{metadata['source-key']}#{metadata['source-version']}"
    assert table.get_item(Key={"object_id": object_id})["Item"]["original_key"] == original


def _json_object(line: bytes) -> dict[str, Any] | None:
    """A generated line as a JSON object, or None for the lines the generator spoils beyond JSON."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def test_a_parquet_file_is_ingested_through_the_stack_row_by_row(local_stack: Any, tmp_path: Path) -> None:
    # GIVEN a Parquet export of the generated sales the contract accepts, two then spoiled with a zero quantity
    import pyarrow as pa
    import pyarrow.parquet as pq

    from datalake.validation import validator_for

    generated = write_sales(tmp_path / "sales.jsonl", SampleSpec(sales=300, seed=22, bad_rate=0.1))
    judge = validator_for(get_dataset("sales")).check_json
    rows = [json.loads(line) for line in generated.path.read_bytes().splitlines() if judge(line).ok]
    rows[3]["quantity"] = rows[7]["quantity"] = 0
    table = pa.Table.from_pylist(rows)
    path = tmp_path / "sales.parquet"
    pq.write_table(table, path)
    # WHEN it is dropped on the landing bucket
    _, deliveries = local_stack.put_file(path, "sales", key="sales/export/sales.parquet")
    # THEN every row is judged by the contract, and the counts reconcile
    manifest = deliveries[0].result
    assert manifest["format"] == "parquet" and manifest["records_read"] == len(rows)
    assert manifest["records_landed"] + manifest["records_quarantined"] == len(rows)
    assert (manifest["records_landed"], manifest["records_quarantined"]) == (len(rows) - 2, 2)

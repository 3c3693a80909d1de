"""The ingestion scenario against a deployed stack (skipped unless AWS_SAM_STACK_NAME names one)."""

from __future__ import annotations

import gzip
import os
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from lakebox.app.sample import SampleSpec, write_sales

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not os.environ.get("AWS_SAM_STACK_NAME"), reason="AWS_SAM_STACK_NAME is not set"),
]


@pytest.fixture(scope="module")
def outputs() -> dict[str, str]:
    """The deployed stack's outputs, by key."""
    stack = boto3.client("cloudformation").describe_stacks(StackName=os.environ["AWS_SAM_STACK_NAME"])["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def _wait_for_manifest(table: Any, object_id_prefix: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = table.scan(
            FilterExpression="begins_with(object_id, :p)", ExpressionAttributeValues={":p": object_id_prefix}
        )["Items"]
        if items:
            return dict(items[0])
        time.sleep(5)
    raise AssertionError(f"no manifest for {object_id_prefix} within {timeout:.0f} s")


def test_dropped_file_is_landed_and_accounted_for(outputs: dict[str, str], tmp_path: Path) -> None:
    # GIVEN a generated sales file with known bad records
    generated = write_sales(tmp_path / "e2e.jsonl", SampleSpec(sales=1_000, seed=99))
    key = f"sales/e2e/{uuid.uuid4().hex}.jsonl"
    # WHEN it is dropped in the landing bucket
    boto3.client("s3").upload_file(str(generated.path), outputs["LandingBucketName"], key)
    # THEN its manifest reconciles and the raw zone holds the valid records
    table = boto3.resource("dynamodb").Table(outputs["ManifestsTableName"])
    manifest = _wait_for_manifest(table, f"s3://{outputs['LandingBucketName']}/{key}#")
    assert int(manifest["records_read"]) == generated.records
    assert int(manifest["records_quarantined"]) == generated.bad
    s3 = boto3.client("s3")
    landed = sum(
        gzip.decompress(s3.get_object(Bucket=outputs["RawBucketName"], Key=k)["Body"].read()).count(b"\n")
        for k in manifest["output_keys"]
    )
    assert landed == generated.good

"""Distributed Map results written to S3 as Step Functions writes them: a manifest and one file per status."""

from __future__ import annotations

import json

import boto3
from moto import mock_aws

from lakebox.sfn import ManualClock, run_execution
from lakebox.sfn.distributed import Boto3ObjectStore


def test_result_writer_writes_a_manifest_and_the_succeeded_and_failed_child_workflows() -> None:
    # GIVEN a Distributed Map whose child workflow fails on item 2, tolerating one failure, writing its results
    processor = {
        "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
        "StartAt": "Check",
        "States": {
            "Check": {
                "Type": "Choice",
                "Choices": [{"Variable": "$", "NumericEquals": 2, "Next": "Reject"}],
                "Default": "Accept",
            },
            "Reject": {"Type": "Fail", "Error": "Item.Rejected", "Cause": "two"},
            "Accept": {"Type": "Pass", "Parameters": {"ok.$": "$"}, "End": True},
        },
    }
    definition = {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "MaxConcurrency": 2,
                "ToleratedFailureCount": 1,
                "ItemProcessor": processor,
                "ResultWriter": {
                    "Resource": "arn:aws:states:::s3:putObject",
                    "Parameters": {"Bucket": "results", "Prefix.$": "$$.Execution.Name"},
                },
                "End": True,
            }
        },
    }
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="results")

        # WHEN it runs
        execution = run_execution(
            definition,
            [1, 2, 3],
            name="run-1",
            clock=ManualClock(),
            objects=Boto3ObjectStore(boto3.Session(region_name="us-east-1")),
        )

        # THEN the Map's output points at the manifest, which lists one file per status present
        assert execution.status == "SUCCEEDED", execution.cause
        details = execution.output["ResultWriterDetails"]
        assert details["Bucket"] == "results" and details["Key"].startswith("run-1/")
        manifest = json.loads(s3.get_object(Bucket="results", Key=details["Key"])["Body"].read())
        assert manifest["MapRunArn"] == execution.output["MapRunArn"]
        assert manifest["ResultFiles"]["PENDING"] == []

        def records(status: str) -> list[dict[str, object]]:
            (entry,) = manifest["ResultFiles"][status]
            return list(json.loads(s3.get_object(Bucket="results", Key=entry["Key"])["Body"].read()))

        succeeded, failed = records("SUCCEEDED"), records("FAILED")
    # AND every item is accounted for: two outputs, one failure with its error
    assert sorted(json.loads(str(r["Output"]))["ok"] for r in succeeded) == [1, 3]
    assert [(r["Input"], r["Error"], r["Status"]) for r in failed] == [("2", "Item.Rejected", "FAILED")]

"""lakebox's local SageMaker: the project's training and inference entries run in an /opt/ml tree, outputs in S3."""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from lakebox.services.sagemaker import LocalSageMaker, build_sourcedir, create_training_job_sync
from lakebox.sfn import TaskContext, TaskError
from tests.unit.test_forecast_model import seasonal_rows

BUCKET = "curated"
ARTIFACTS = "artifacts"
SOURCEDIR = f"s3://{ARTIFACTS}/ml/forecast/sourcedir.tar.gz"
ROLE = "arn:aws:iam::123456789012:role/forecast"
pytestmark = pytest.mark.slow  # each job starts a Python process that imports scikit-learn and pandas


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        for bucket in (BUCKET, ARTIFACTS):
            client.create_bucket(Bucket=bucket)
        yield client


@pytest.fixture
def sagemaker(s3: Any, tmp_path: Path) -> LocalSageMaker:
    return LocalSageMaker(boto3.Session(region_name="us-east-1"), tmp_path / "logs", artifacts_bucket=ARTIFACTS)


def put_training_window(s3: Any, rows: list[dict[str, Any]], prefix: str = "_ml/training/run1/") -> str:
    buffer = io.BytesIO()
    pd.DataFrame(rows).to_parquet(buffer)
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}part-0.parquet", Body=buffer.getvalue())
    return f"s3://{BUCKET}/{prefix}"


def training_request(name: str, channel: str, **overrides: Any) -> dict[str, Any]:
    request = {
        "TrainingJobName": name,
        "RoleArn": ROLE,
        "AlgorithmSpecification": {
            "TrainingImage": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3",
            "TrainingInputMode": "File",
            "MetricDefinitions": [
                {"Name": "backtest:smape_model", "Regex": "backtest smape_model=([0-9.]+);"},
                {"Name": "backtest:smape_seasonal_naive", "Regex": "backtest smape_seasonal_naive=([0-9.]+);"},
            ],
        },
        "HyperParameters": {
            "sagemaker_program": "train.py",
            "sagemaker_submit_directory": SOURCEDIR,
            "horizon": "7",
        },
        "InputDataConfig": [
            {"ChannelName": "train", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": channel}}}
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/_ml/models/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600, "MaxWaitTimeInSeconds": 1200},
        "EnableManagedSpotTraining": True,
        "CheckpointConfig": {"S3Uri": f"s3://{BUCKET}/_ml/checkpoints/run1/"},
    }
    request.update(overrides)
    return request


def read_tar(s3: Any, uri: str) -> dict[str, bytes]:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_training_then_transform_run_the_project_scripts_and_write_where_sagemaker_does(
    s3: Any, sagemaker: LocalSageMaker
) -> None:
    # GIVEN a training window in S3 and the job's code only in the artifacts bucket (packaged from ml/forecast)
    channel = put_training_window(s3, seasonal_rows())

    # WHEN a training job runs
    described = sagemaker.create_training_job(**training_request("sales-forecast-run1-0", channel))

    # THEN it completed in the DescribeTrainingJob shape, with model.tar.gz where SageMaker puts it
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    model_uri = described["ModelArtifacts"]["S3ModelArtifacts"]
    assert model_uri == f"s3://{BUCKET}/_ml/models/sales-forecast-run1-0/output/model.tar.gz"
    files = read_tar(s3, model_uri)
    assert set(files) == {"model.joblib", "metrics.json"}
    metrics = json.loads(files["metrics.json"])
    assert metrics["model_version"] == "sales-forecast-run1-0"  # TRAINING_JOB_NAME reached the script
    # AND the MetricDefinitions picked both backtest errors out of the job's log
    final = {m["MetricName"]: m["Value"] for m in described["FinalMetricDataList"]}
    assert final == {
        "backtest:smape_model": pytest.approx(metrics["smape_model"], abs=1e-3),
        "backtest:smape_seasonal_naive": pytest.approx(metrics["smape_seasonal_naive"], abs=1e-3),
    }
    assert described["TrainingEndTime"] >= described["TrainingStartTime"]
    assert read_tar(s3, SOURCEDIR).keys() >= {"train.py", "inference.py", "forecaster.py"}

    # WHEN the model is created and a batch transform asks for a 5-day forecast
    sagemaker.create_model(
        ModelName="sales-forecast-run1-0",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": "image",
            "ModelDataUrl": model_uri,
            "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": SOURCEDIR},
        },
    )
    s3.put_object(Bucket=BUCKET, Key="_ml/requests/run1/request.jsonl", Body=b'{"horizon": 5}\n')
    transform = sagemaker.create_transform_job(
        TransformJobName="sales-forecast-run1-0-t0",
        ModelName="sales-forecast-run1-0",
        TransformInput={
            "ContentType": "application/json",
            "SplitType": "Line",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/_ml/requests/run1/"}},
        },
        TransformOutput={
            "S3OutputPath": f"s3://{BUCKET}/sales_forecast/runs/run1/",
            "AssembleWith": "Line",
            "Accept": "application/jsonlines",
        },
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )

    # THEN the forecast rows are at <output>/<input name>.out: one per region and day, intervals ordered
    assert transform["TransformJobStatus"] == "Completed", transform.get("FailureReason")
    body = s3.get_object(Bucket=BUCKET, Key="sales_forecast/runs/run1/request.jsonl.out")["Body"].read()
    rows = [json.loads(line) for line in body.decode().splitlines()]
    assert len(rows) == 3 * 5 == len({(r["region"], r["forecast_date"]) for r in rows})
    assert all(r["yhat_lower"] <= r["yhat"] <= r["yhat_upper"] for r in rows)


def test_a_failing_script_ends_the_job_failed_with_its_failure_file_as_the_reason(
    s3: Any, sagemaker: LocalSageMaker
) -> None:
    # GIVEN a training window too short for the backtest
    channel = put_training_window(s3, seasonal_rows(days=20))

    # WHEN the job runs through the Step Functions integration
    handler = create_training_job_sync(sagemaker)
    with pytest.raises(TaskError) as failed:
        handler(training_request("sales-forecast-short-0", channel), TaskContext("Train", "r", {}))

    # THEN the task fails as States.TaskFailed with the script's own reason, and no model was uploaded
    assert failed.value.error == "States.TaskFailed"
    assert "needs 28 days of history" in json.loads(failed.value.cause)["FailureReason"]
    assert sagemaker.describe_training_job("sales-forecast-short-0")["TrainingJobStatus"] == "Failed"
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="_ml/models/")
    assert listed.get("KeyCount", 0) == 0


def test_a_job_name_is_used_once(s3: Any, sagemaker: LocalSageMaker) -> None:
    channel = put_training_window(s3, seasonal_rows(days=20))
    sagemaker.create_training_job(**training_request("sales-forecast-dup-0", channel))
    with pytest.raises(ClientError) as error:
        sagemaker.create_training_job(**training_request("sales-forecast-dup-0", channel))
    assert error.value.response["Error"]["Code"] == "ResourceInUse"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"TrainingJobName": "bad_name"}, "must match"),
        ({"StoppingCondition": {"MaxRuntimeInSeconds": 600}}, "MaxWaitTimeInSeconds"),
        ({"HyperParameters": {"horizon": "7"}}, "sagemaker_program"),
    ],
)
def test_invalid_training_requests_are_rejected_before_running(
    s3: Any, sagemaker: LocalSageMaker, overrides: dict[str, Any], message: str
) -> None:
    request = training_request("sales-forecast-x-0", "s3://curated/none/", **overrides)
    with pytest.raises(ClientError, match=message) as error:
        sagemaker.create_training_job(**request)
    assert error.value.response["Error"]["Code"] == "ValidationException"


def test_sourcedir_is_byte_identical_whenever_it_is_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = build_sourcedir("forecast", tmp_path / "a.tar.gz").read_bytes()
    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.0)  # gzip stamps the time unless told otherwise
    second = build_sourcedir("forecast", tmp_path / "b.tar.gz").read_bytes()
    assert first == second

"""lakebox's warm SageMaker container: a job forked from it runs as the same script would in a process of its own."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lakebox.services.sagemaker import LocalSageMaker, _run_child
from lakebox.services.sagemaker_container import WarmContainer, job_environment
from tests.unit.test_forecast_model import seasonal_rows
from tests.unit.test_local_sagemaker import ARTIFACTS, BUCKET, ROLE, put_training_window, read_tar, training_request

pytestmark = pytest.mark.slow  # the container imports pandas and scikit-learn

PROBE = """
import json, os, sys
preloaded = "sklearn.linear_model" in sys.modules
report = {
    "argv": sys.argv,
    "cwd": os.getcwd(),
    "name": __name__,
    "path0": sys.path[0],
    "variable": os.environ.get("PROBE_VARIABLE"),
    "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
    "pid": os.getpid(),
    "preloaded": preloaded,
}
with open(sys.argv[1], "w") as out:
    json.dump(report, out)
print("to stdout")
print("to stderr", file=sys.stderr)
sys.exit(int(sys.argv[2]))
"""


@pytest.fixture
def container() -> Iterator[WarmContainer]:
    warm = WarmContainer()
    warm.warm()
    yield warm
    warm.close()


def run_probe(tmp_path: Path, label: str, runner: Any) -> tuple[int, dict[str, Any], str]:
    code_dir = tmp_path / label / "code"
    code_dir.mkdir(parents=True)
    (code_dir / "probe.py").write_text(PROBE, "utf-8")
    report, log = tmp_path / label / "report.json", tmp_path / label / "job.log"
    env = {**job_environment(), "PROBE_VARIABLE": "set by the job"}
    code = runner([sys.executable, "probe.py", str(report), "3"], code_dir, env, log, 60)
    return code, json.loads(report.read_text("utf-8")), log.read_text("utf-8")


def test_a_job_forked_from_the_warm_container_sees_what_a_cold_process_sees(
    tmp_path: Path, container: WarmContainer
) -> None:
    # GIVEN a script that reports its argv, folder, module name, path, environment and input, then exits 3
    # WHEN it runs in the warm container and in a cold process
    warm_code, warm, warm_log = run_probe(tmp_path, "warm", container.run)
    cold_code, cold, cold_log = run_probe(tmp_path, "cold", lambda *a: _run_child(*a).returncode)

    # THEN both exit 3, write both streams to the job's log, and saw the same process set-up
    assert warm_code == cold_code == 3
    for log in (warm_log, cold_log):
        assert "to stdout" in log and "to stderr" in log
    for report, label in ((warm, "warm"), (cold, "cold")):
        assert report["argv"] == ["probe.py", str(tmp_path / label / "report.json"), "3"]
        assert report["cwd"] == report["path0"] == str(tmp_path / label / "code")
        assert report["name"] == "__main__"
        assert report["variable"] == "set by the job"
        assert report["blas_threads"] == "1"
        assert report["pid"] != os.getpid()
    # AND only the warm one found the framework already imported
    assert warm["preloaded"] and not cold["preloaded"]


def test_a_job_outliving_its_time_limit_is_killed_and_the_container_serves_the_next(
    tmp_path: Path, container: WarmContainer
) -> None:
    (tmp_path / "sleep.py").write_text("import time\ntime.sleep(60)\n", "utf-8")
    (tmp_path / "quick.py").write_text("raise SystemExit('no good')\n", "utf-8")
    env, log = job_environment(), tmp_path / "job.log"
    started = time.monotonic()
    assert container.run([sys.executable, "sleep.py"], tmp_path, env, log, 20) is not None  # warmed by a first job
    assert container.run([sys.executable, "sleep.py"], tmp_path, env, log, 1) == -9
    assert time.monotonic() - started < 30
    assert container.run([sys.executable, "quick.py"], tmp_path, env, log, 20) == 1
    assert "no good" in log.read_text("utf-8")


def test_a_job_asking_other_thread_counts_runs_cold(tmp_path: Path, container: WarmContainer) -> None:
    (tmp_path / "ok.py").write_text("", "utf-8")
    env = {**job_environment(), "OPENBLAS_NUM_THREADS": "4"}
    assert container.run([sys.executable, "ok.py"], tmp_path, env, tmp_path / "job.log", 20) is None


def forecast_of(sagemaker: LocalSageMaker, s3: Any, name: str, channel: str) -> tuple[dict[str, Any], list[Any]]:
    described = sagemaker.create_training_job(**training_request(name, channel))
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    model_uri = described["ModelArtifacts"]["S3ModelArtifacts"]
    metrics = json.loads(read_tar(s3, model_uri)["metrics.json"])
    source = f"s3://{ARTIFACTS}/ml/forecast/sourcedir.tar.gz"
    environment = {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": source}
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "image", "ModelDataUrl": model_uri, "Environment": environment},
    )
    transform = sagemaker.create_transform_job(
        TransformJobName=f"{name}-t0",
        ModelName=name,
        TransformInput={
            "ContentType": "application/json",
            "SplitType": "Line",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/_ml/requests/"}},
        },
        TransformOutput={"S3OutputPath": f"s3://{BUCKET}/out/{name}/", "AssembleWith": "Line"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )
    assert transform["TransformJobStatus"] == "Completed", transform.get("FailureReason")
    body = s3.get_object(Bucket=BUCKET, Key=f"out/{name}/request.jsonl.out")["Body"].read()
    rows = [json.loads(line) for line in body.decode().splitlines()]
    return metrics, [(r["forecast_date"], r["region"], r["yhat"], r["yhat_lower"], r["yhat_upper"]) for r in rows]


def test_local_sagemaker_runs_training_and_transform_warm_with_the_numbers_of_a_cold_run(tmp_path: Path) -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in (BUCKET, ARTIFACTS):
            s3.create_bucket(Bucket=bucket)
        channel = put_training_window(s3, seasonal_rows())
        s3.put_object(Bucket=BUCKET, Key="_ml/requests/request.jsonl", Body=b'{"horizon": 5}\n')
        session = boto3.Session(region_name="us-east-1")
        cold = LocalSageMaker(session, tmp_path / "cold", artifacts_bucket=ARTIFACTS, warm=False)
        warm = LocalSageMaker(session, tmp_path / "warm", artifacts_bucket=ARTIFACTS)
        # GIVEN the warm one's container started (as the box does when it wires SageMaker into an executor)
        warm.start_container()
        try:
            # WHEN both train on the same window and forecast
            cold_metrics, cold_rows = forecast_of(cold, s3, "sales-forecast-cold-0", channel)
            warm_metrics, warm_rows = forecast_of(warm, s3, "sales-forecast-warm-0", channel)
            served = warm._container.served if warm._container else 0
        finally:
            warm.close()
    # THEN the warm one ran both jobs in its container, with the cold run's backtest and forecast to the digit
    assert served == 2
    assert cold.python == warm.python and cold._container is None
    for key in ("smape_model", "smape_seasonal_naive", "interval_coverage", "series"):
        assert warm_metrics[key] == cold_metrics[key]
    assert warm_rows == cold_rows and len(warm_rows) == 3 * 5

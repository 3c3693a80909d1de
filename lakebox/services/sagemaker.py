"""Local SageMaker: training and batch transform jobs run the job's own scripts in an /opt/ml-style temp tree.

A training job downloads its channels and its `sagemaker_submit_directory` from the local S3 into a temp folder laid
out as the container's `/opt/ml` (input/config, input/data/<channel>, model, output, checkpoints, code), runs
`python <sagemaker_program> --<hyperparameter> <value> ...` with the environment the SageMaker training toolkit sets
(SM_MODEL_DIR, SM_CHANNEL_<NAME>, SM_OUTPUT_DATA_DIR, SM_HPS, TRAINING_JOB_NAME...), then uploads model.tar.gz,
output.tar.gz and the checkpoints as SageMaker does, and answers with the DescribeTrainingJob shape (metrics from the
job's MetricDefinitions applied to its log). A transform job unpacks the model and serves each input object through
the inference entry's `model_fn` / `input_fn` / `predict_fn` / `output_fn` in a child process. No Docker: the child
runs on this interpreter, so the scripts need only what the project's pins provide (scikit-learn, pandas, pyarrow).
Once the box has started the warm container, each job's process is a fork of it, with the framework already imported
and one BLAS thread (`sagemaker_container`, ADR 0035); otherwise, or when it cannot take the job, a cold process.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from lakebox.services.s3uri import split_s3_uri
from lakebox.services.sagemaker_container import WarmContainer, job_environment
from lakebox.sfn.errors import TASK_FAILED, TaskError
from lakebox.sfn.integrations import STATES, client_errors, json_safe
from lakebox.sfn.registry import Handler, TaskContext

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_s3 import S3Client

REPO = Path(__file__).resolve().parents[2]
ML_ROOT = REPO / "ml"
SOURCEDIR_KEY = "ml/{model}/sourcedir.tar.gz"
"""Where a model's code lives in the artifacts bucket (scripts/package-artifacts.py uploads the same key)."""
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
CREATE_TRAINING_JOB_SYNC = f"{STATES}sagemaker:createTrainingJob.sync"
CREATE_TRANSFORM_JOB_SYNC = f"{STATES}sagemaker:createTransformJob.sync"
CREATE_MODEL = f"{STATES}sagemaker:createModel"
_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_FIXED_MTIME = 1_577_836_800


def _error(code: str, message: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ------------------------------------------------------------------------------------------- source dirs


def build_sourcedir(model: str, dest: Path) -> Path:
    """A reproducible `sourcedir.tar.gz` of `ml/<model>/*.py` (what `sagemaker_submit_directory` points at)."""
    folder = ML_ROOT / model
    files = sorted(p for p in folder.glob("*.py") if p.is_file())
    if not files:
        raise FileNotFoundError(f"{folder} has no Python files to package")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in files:
            info = tarfile.TarInfo(path.name)
            data = path.read_bytes()
            info.size, info.mtime, info.mode = len(data), _FIXED_MTIME, 0o644
            archive.addfile(info, io.BytesIO(data))
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as out, gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=_FIXED_MTIME) as zipped:
        zipped.write(buffer.getvalue())
    return dest


def upload_sourcedir(session: boto3.Session, bucket: str, model: str) -> str:
    """Package `ml/<model>` and upload it to the artifacts bucket unless the same bytes are there; returns its URI."""
    s3 = session.client("s3")
    key = SOURCEDIR_KEY.format(model=model)
    with tempfile.TemporaryDirectory(prefix="lakebox-sourcedir-") as tmp:
        path = build_sourcedir(model, Path(tmp) / "sourcedir.tar.gz")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        try:
            current = s3.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get("sha256")
        except ClientError:
            current = None
        if current != digest:
            s3.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {"sha256": digest}})
    return f"s3://{bucket}/{key}"


# ------------------------------------------------------------------------------------------- local jobs


@dataclass
class LocalSageMaker:
    """Training jobs, models and transform jobs of one local stack (names are unique, as in one account).

    Parameters
    ----------
    session
        A boto3 session on the local endpoint (channels, code, model artifacts and outputs are in its S3).
    log_dir
        Where each job's output goes: `<log_dir>/TrainingJobs/<name>.log`, `<log_dir>/TransformJobs/<name>.log`
        (the CloudWatch log groups `/aws/sagemaker/TrainingJobs` and `/aws/sagemaker/TransformJobs`).
    artifacts_bucket
        The stack's artifacts bucket: a job whose code is `s3://<it>/ml/<model>/sourcedir.tar.gz` gets `ml/<model>`
        packaged from the working tree first, as `make package-artifacts` uploads it after a deploy.
    python
        The interpreter that runs the scripts (this one by default).
    warm
        Whether jobs run in forks of a warm container process that has the framework imported (started by
        `start_container()`, ended by `close()`); a job it cannot take, or any job before it starts, runs cold.
    """

    session: boto3.Session
    log_dir: Path
    artifacts_bucket: str | None = None
    python: str = sys.executable
    training_jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    transform_jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    warm: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _container: WarmContainer | None = field(default=None, repr=False)

    @property
    def _s3(self) -> S3Client:
        return self.session.client("s3")

    def task_handlers(self) -> dict[str, Handler]:
        """The executor's SageMaker tasks (a TaskService): the training and transform ``.sync`` jobs and CreateModel."""
        return {
            CREATE_TRAINING_JOB_SYNC: create_training_job_sync(self),
            CREATE_TRANSFORM_JOB_SYNC: create_transform_job_sync(self),
            CREATE_MODEL: create_model(self),
        }

    def start_container(self) -> None:
        """Start the warm container in the background (nothing when `warm` is off or it is running)."""
        if not self.warm:
            return
        with self._lock:
            if self._container is None:
                self._container = WarmContainer(python=self.python, env=job_environment())
        self._container.warm()

    def close(self) -> None:
        """End the warm container."""
        if self._container is not None:
            self._container.close()

    def _run(self, command: list[str], cwd: Path, env: Mapping[str, str], log: Path, timeout: int) -> _Outcome:
        """Run a job's process: a fork of the warm container when it takes the job, else a cold process."""
        with log.open("a", encoding="utf-8") as out:
            out.write(f"{_now().isoformat()} {' '.join(command)}\n")
        container = self._container
        code = None if container is None else container.run(command, cwd, env, log, timeout)
        return _run_child(command, cwd, env, log, timeout) if code is None else _outcome(code, log)

    # ------------------------------------------------------------------ training
    def create_training_job(self, **request: Any) -> dict[str, Any]:
        """Run a training job to its end; returns DescribeTrainingJob's response (``TrainingJobStatus`` and all).

        Raises
        ------
        ClientError
            ``ValidationException`` for a bad request (name, spot without ``MaxWaitTimeInSeconds``, no program),
            ``ResourceInUse`` for a name already used. A failing script is not an error: the job ends ``Failed``.
        """
        name = str(request.get("TrainingJobName", ""))
        self._validate_training(name, request)
        created = _now()
        describe: dict[str, Any] = {
            "TrainingJobName": name,
            "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT_ID}:training-job/{name.lower()}",
            "TrainingJobStatus": "InProgress",
            "SecondaryStatus": "Starting",
            "HyperParameters": dict(request.get("HyperParameters") or {}),
            "AlgorithmSpecification": dict(request["AlgorithmSpecification"]),
            "RoleArn": request["RoleArn"],
            "InputDataConfig": list(request.get("InputDataConfig") or []),
            "OutputDataConfig": dict(request["OutputDataConfig"]),
            "ResourceConfig": dict(request["ResourceConfig"]),
            "StoppingCondition": dict(request["StoppingCondition"]),
            "EnableManagedSpotTraining": bool(request.get("EnableManagedSpotTraining", False)),
            "EnableNetworkIsolation": bool(request.get("EnableNetworkIsolation", False)),
            "CreationTime": created,
        }
        for optional in ("CheckpointConfig", "RetryStrategy", "Environment", "Tags"):
            if optional in request:
                describe[optional] = request[optional]
        with self._lock:
            if name in self.training_jobs:
                raise _error("ResourceInUse", f"Training job names must be unique: {name}", "CreateTrainingJob")
            self.training_jobs[name] = describe
        self._run_training(describe)
        return json_safe(describe)  # type: ignore[no-any-return]

    def describe_training_job(self, name: str) -> dict[str, Any]:
        """DescribeTrainingJob."""
        job = self.training_jobs.get(name)
        if job is None:
            raise _error("ValidationException", f"Requested resource not found: {name}", "DescribeTrainingJob")
        return json_safe(job)  # type: ignore[no-any-return]

    def _validate_training(self, name: str, request: Mapping[str, Any]) -> None:
        def invalid(message: str) -> ClientError:
            return _error("ValidationException", message, "CreateTrainingJob")

        if not _JOB_NAME.fullmatch(name):
            raise invalid(f"TrainingJobName {name!r} must match {_JOB_NAME.pattern}")
        for required in (
            "AlgorithmSpecification",
            "RoleArn",
            "OutputDataConfig",
            "ResourceConfig",
            "StoppingCondition",
        ):
            if required not in request:
                raise invalid(f"CreateTrainingJob needs {required}")
        stopping = request["StoppingCondition"]
        runtime = int(stopping.get("MaxRuntimeInSeconds", 86_400))
        if request.get("EnableManagedSpotTraining"):
            wait = stopping.get("MaxWaitTimeInSeconds")
            if wait is None or int(wait) < runtime:
                raise invalid("Managed spot training needs MaxWaitTimeInSeconds >= MaxRuntimeInSeconds")
        hyperparameters = request.get("HyperParameters") or {}
        for key in ("sagemaker_program", "sagemaker_submit_directory"):
            if key not in hyperparameters:
                raise invalid(f"a script-mode job needs the hyperparameter {key}")
        for channel in request.get("InputDataConfig") or []:
            source = channel.get("DataSource", {}).get("S3DataSource", {})
            if source.get("S3DataType", "S3Prefix") != "S3Prefix":
                raise invalid(f"channel {channel.get('ChannelName')}: lakebox reads S3Prefix channels only")

    def _run_training(self, job: dict[str, Any]) -> None:
        name = job["TrainingJobName"]
        hyperparameters = {k: _hp_value(v) for k, v in job["HyperParameters"].items()}
        started = _now()
        job.update(TrainingStartTime=started, SecondaryStatus="Downloading")
        log = self._log_path("TrainingJobs", name)
        with tempfile.TemporaryDirectory(prefix=f"lakebox-sagemaker-{name}-") as tmp:
            opt_ml = Path(tmp) / "opt" / "ml"
            dirs = {
                part: opt_ml / part
                for part in ("input/config", "input/data", "model", "output/data", "code", "checkpoints")
            }
            for folder in dirs.values():
                folder.mkdir(parents=True, exist_ok=True)
            try:
                channels = self._download_channels(job["InputDataConfig"], dirs["input/data"])
                code = self._download_code(hyperparameters["sagemaker_submit_directory"], dirs["code"])
                checkpoint = job.get("CheckpointConfig", {}).get("S3Uri")
                if checkpoint:
                    self._download_prefix(str(checkpoint), dirs["checkpoints"])
            except (ClientError, OSError, ValueError, tarfile.TarError) as exc:
                self._finish_training(job, started, "Failed", f"ClientError: {exc}")
                return
            self._write_config(job, hyperparameters, channels, dirs["input/config"])
            program = str(hyperparameters["sagemaker_program"])
            user = {k: v for k, v in hyperparameters.items() if not k.startswith("sagemaker_")}
            argv = [item for key, value in user.items() for item in (f"--{key}", _arg(value))]
            env = self._training_env(job, opt_ml, dirs, channels, user, program, argv)
            job["SecondaryStatus"] = "Training"
            timeout = int(job["StoppingCondition"].get("MaxRuntimeInSeconds", 86_400))
            outcome = self._run([self.python, program, *argv], code, env, log, timeout)
            job["SecondaryStatus"] = "Uploading"
            checkpoint = job.get("CheckpointConfig", {}).get("S3Uri")
            if checkpoint:
                self._upload_folder(dirs["checkpoints"], str(checkpoint))
            output_path = str(job["OutputDataConfig"]["S3OutputPath"]).rstrip("/")
            kms = job["OutputDataConfig"].get("KmsKeyId")
            if outcome.returncode == 0:
                model_uri = f"{output_path}/{name}/output/model.tar.gz"
                self._upload_tar(dirs["model"], model_uri, kms)
                self._upload_tar(dirs["output/data"], f"{output_path}/{name}/output/output.tar.gz", kms)
                job["ModelArtifacts"] = {"S3ModelArtifacts": model_uri}
                job["FinalMetricDataList"] = _metrics(job["AlgorithmSpecification"], log.read_text("utf-8"))
                self._finish_training(job, started, "Completed", None)
            else:
                failure = opt_ml / "output" / "failure"
                reason = failure.read_text("utf-8").strip() if failure.exists() else outcome.tail
                prefix = "AlgorithmError: " if outcome.returncode != -9 else "MaxRuntimeExceeded: "
                self._finish_training(job, started, "Failed", f"{prefix}{reason}"[:1024])

    def _finish_training(self, job: dict[str, Any], started: dt.datetime, status: str, reason: str | None) -> None:
        ended = _now()
        seconds = max(1, round((ended - started).total_seconds()))
        job.update(
            TrainingJobStatus=status,
            SecondaryStatus=status,
            TrainingEndTime=ended,
            LastModifiedTime=ended,
            TrainingTimeInSeconds=seconds,
            BillableTimeInSeconds=seconds,
        )
        if reason:
            job["FailureReason"] = reason

    def _training_env(
        self,
        job: Mapping[str, Any],
        opt_ml: Path,
        dirs: Mapping[str, Path],
        channels: Mapping[str, Path],
        user: Mapping[str, Any],
        program: str,
        argv: list[str],
    ) -> dict[str, str]:
        name = job["TrainingJobName"]
        env = {**job_environment(), **_environment(job.get("Environment"))}
        env.update(
            {
                "TRAINING_JOB_NAME": name,
                "TRAINING_JOB_ARN": job["TrainingJobArn"],
                "SM_MODEL_DIR": str(dirs["model"]),
                "SM_INPUT_DIR": str(opt_ml / "input"),
                "SM_INPUT_DATA_CONFIG": json.dumps({c: {} for c in channels}),
                "SM_INPUT_CONFIG_DIR": str(dirs["input/config"]),
                "SM_OUTPUT_DIR": str(opt_ml / "output"),
                "SM_OUTPUT_DATA_DIR": str(dirs["output/data"]),
                "SM_CHANNELS": json.dumps(sorted(channels)),
                "SM_HPS": json.dumps(dict(user)),
                "SM_USER_ARGS": json.dumps(argv),
                "SM_CURRENT_HOST": "algo-1",
                "SM_HOSTS": json.dumps(["algo-1"]),
                "SM_NUM_CPUS": str(os.cpu_count() or 1),
                "SM_NUM_GPUS": "0",
                "SM_MODULE_NAME": program.removesuffix(".py"),
                "SM_MODULE_DIR": str(job["HyperParameters"].get("sagemaker_submit_directory", "")),
                "SM_CHECKPOINT_DIR": str(dirs["checkpoints"]),
                "PYTHONUNBUFFERED": "1",
            }
        )
        for channel, folder in channels.items():
            env[f"SM_CHANNEL_{channel.upper()}"] = str(folder)
        for key, value in user.items():
            env[f"SM_HP_{key.upper()}"] = _arg(value)
        env["SM_TRAINING_ENV"] = json.dumps(
            {
                "job_name": name,
                "hyperparameters": dict(user),
                "channel_input_dirs": {c: str(p) for c, p in channels.items()},
                "model_dir": str(dirs["model"]),
                "output_data_dir": str(dirs["output/data"]),
                "module_name": program.removesuffix(".py"),
                "current_host": "algo-1",
                "hosts": ["algo-1"],
            }
        )
        return env

    def _write_config(
        self, job: Mapping[str, Any], hyperparameters: Mapping[str, Any], channels: Mapping[str, Path], folder: Path
    ) -> None:
        (folder / "hyperparameters.json").write_text(
            json.dumps({k: str(v) for k, v in job["HyperParameters"].items()}), "utf-8"
        )
        (folder / "inputdataconfig.json").write_text(
            json.dumps({c["ChannelName"]: {"TrainingInputMode": "File"} for c in job["InputDataConfig"]}), "utf-8"
        )
        (folder / "resourceconfig.json").write_text(
            json.dumps({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}), "utf-8"
        )

    # ------------------------------------------------------------------ models and transform
    def create_model(self, **request: Any) -> dict[str, Any]:
        """CreateModel: remember the container (image, model data, environment); returns ``ModelArn``."""
        name = str(request.get("ModelName", ""))
        if not _JOB_NAME.fullmatch(name):
            raise _error("ValidationException", f"ModelName {name!r} must match {_JOB_NAME.pattern}", "CreateModel")
        container = request.get("PrimaryContainer")
        if not container or "ModelDataUrl" not in container:
            raise _error("ValidationException", "CreateModel needs PrimaryContainer.ModelDataUrl", "CreateModel")
        arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT_ID}:model/{name.lower()}"
        with self._lock:
            if name in self.models:
                raise _error("ValidationException", f'Cannot create already existing model "{arn}".', "CreateModel")
            self.models[name] = {**request, "ModelArn": arn, "CreationTime": _now()}
        return {"ModelArn": arn}

    def create_transform_job(self, **request: Any) -> dict[str, Any]:
        """Run a batch transform job to its end; returns DescribeTransformJob's response."""
        name = str(request.get("TransformJobName", ""))
        if not _JOB_NAME.fullmatch(name):
            message = f"TransformJobName {name!r} must match {_JOB_NAME.pattern}"
            raise _error("ValidationException", message, "CreateTransformJob")
        model = self.models.get(str(request.get("ModelName", "")))
        if model is None:
            message = f'Could not find model "{request.get("ModelName")}".'
            raise _error("ValidationException", message, "CreateTransformJob")
        created = _now()
        describe: dict[str, Any] = {
            "TransformJobName": name,
            "TransformJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT_ID}:transform-job/{name.lower()}",
            "TransformJobStatus": "InProgress",
            "ModelName": request["ModelName"],
            "TransformInput": dict(request["TransformInput"]),
            "TransformOutput": dict(request["TransformOutput"]),
            "TransformResources": dict(request["TransformResources"]),
            "BatchStrategy": request.get("BatchStrategy", "MultiRecord"),
            "CreationTime": created,
        }
        with self._lock:
            if name in self.transform_jobs:
                message = f"Transform job names must be unique: {name}"
                raise _error("ResourceInUse", message, "CreateTransformJob")
            self.transform_jobs[name] = describe
        self._run_transform(describe, model)
        return json_safe(describe)  # type: ignore[no-any-return]

    def _run_transform(self, job: dict[str, Any], model: Mapping[str, Any]) -> None:
        name = job["TransformJobName"]
        started = _now()
        job["TransformStartTime"] = started
        container = model["PrimaryContainer"]
        environment = {k: _hp_value(v) for k, v in (container.get("Environment") or {}).items()}
        log = self._log_path("TransformJobs", name)
        source = job["TransformInput"]["DataSource"]["S3DataSource"]
        output = job["TransformOutput"]
        with tempfile.TemporaryDirectory(prefix=f"lakebox-sagemaker-{name}-") as tmp:
            root = Path(tmp) / "opt" / "ml"
            model_dir, code_dir, inputs, outputs = (root / p for p in ("model", "code", "input", "output"))
            for folder in (model_dir, code_dir, inputs, outputs):
                folder.mkdir(parents=True)
            try:
                self._extract(str(container["ModelDataUrl"]), model_dir)
                program = environment.get("SAGEMAKER_PROGRAM")
                submit = environment.get("SAGEMAKER_SUBMIT_DIRECTORY")
                if not program or not submit:
                    raise ValueError("the model's Environment needs SAGEMAKER_PROGRAM and SAGEMAKER_SUBMIT_DIRECTORY")
                self._download_code(str(submit), code_dir)
                files = self._download_prefix(str(source["S3Uri"]), inputs)
            except (ClientError, OSError, ValueError, tarfile.TarError) as exc:
                self._finish_transform(job, "Failed", f"ClientError: {exc}")
                return
            manifest = {
                "code_dir": str(code_dir),
                "program": program,
                "model_dir": str(model_dir),
                "content_type": job["TransformInput"].get("ContentType", "application/json"),
                "accept": output.get("Accept", "application/json"),
                "split_type": job["TransformInput"].get("SplitType", "None"),
                "batch_strategy": job["BatchStrategy"],
                "assemble_with": output.get("AssembleWith", "None"),
                "files": [[str(inputs / f), str(outputs / f"{f}.out")] for f in files],
            }
            (root / "manifest.json").write_text(json.dumps(manifest), "utf-8")
            env = {**job_environment(), **{k: str(v) for k, v in environment.items()}, "PYTHONUNBUFFERED": "1"}
            env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
            timeout = int(job.get("ModelClientConfig", {}).get("InvocationsTimeoutInSeconds", 3600))
            command = [self.python, "-m", "lakebox.services.sagemaker_serving", str(root / "manifest.json")]
            outcome = self._run(command, code_dir, env, log, timeout)
            if outcome.returncode != 0:
                self._finish_transform(job, "Failed", f"ClientError: {outcome.tail}"[:1024])
                return
            destination = str(output["S3OutputPath"]).rstrip("/")
            bucket, prefix = split_s3_uri(destination + "/")
            extra = (
                {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": output["KmsKeyId"]} if output.get("KmsKeyId") else {}
            )
            for relative in files:
                body = (outputs / f"{relative}.out").read_bytes()
                self._s3.put_object(Bucket=bucket, Key=f"{prefix}{relative}.out", Body=body, **extra)
        self._finish_transform(job, "Completed", None)

    def _finish_transform(self, job: dict[str, Any], status: str, reason: str | None) -> None:
        job.update(TransformJobStatus=status, TransformEndTime=_now())
        if reason:
            job["FailureReason"] = reason

    # ------------------------------------------------------------------ S3 helpers
    def _log_path(self, kind: str, name: str) -> Path:
        folder = self.log_dir / kind
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{name}.log"

    def _download_prefix(self, uri: str, dest: Path) -> list[str]:
        bucket, prefix = split_s3_uri(uri)
        names = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                relative = obj["Key"][len(prefix) :].lstrip("/") or Path(obj["Key"]).name
                if obj["Key"].endswith("/") or any(p.startswith(".") for p in relative.split("/")):
                    continue
                target = dest / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                self._s3.download_file(bucket, obj["Key"], str(target))
                names.append(relative)
        return names

    def _download_channels(self, config: list[dict[str, Any]], data: Path) -> dict[str, Path]:
        channels = {}
        for channel in config:
            name = str(channel["ChannelName"])
            folder = data / name
            folder.mkdir(parents=True, exist_ok=True)
            uri = str(channel["DataSource"]["S3DataSource"]["S3Uri"])
            if not self._download_prefix(uri, folder):
                raise ValueError(f"channel {name}: no objects under {uri}")
            channels[name] = folder
        return channels

    def _download_code(self, uri: str, dest: Path) -> Path:
        bucket, key = split_s3_uri(uri)
        model = re.fullmatch(SOURCEDIR_KEY.format(model="([a-z0-9_-]+)"), key)
        if bucket == self.artifacts_bucket and model and (ML_ROOT / model[1]).is_dir():
            upload_sourcedir(self.session, bucket, model[1])
        self._extract(uri, dest)
        return dest

    def _extract(self, uri: str, dest: Path) -> None:
        bucket, key = split_s3_uri(uri)
        body = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as archive:
            archive.extractall(dest, filter="data")

    def _upload_tar(self, folder: Path, uri: str, kms_key: str | None) -> None:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    archive.add(path, arcname=path.relative_to(folder).as_posix())
        bucket, key = split_s3_uri(uri)
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key} if kms_key else {}
        self._s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue(), **extra)  # type: ignore[arg-type]

    def _upload_folder(self, folder: Path, uri: str) -> None:
        bucket, prefix = split_s3_uri(uri.rstrip("/") + "/")
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                self._s3.upload_file(str(path), bucket, prefix + path.relative_to(folder).as_posix())


@dataclass(frozen=True)
class _Outcome:
    returncode: int
    tail: str


def _run_child(command: list[str], cwd: Path, env: Mapping[str, str], log: Path, timeout: int) -> _Outcome:
    """Run a job's process with its output appended to the job's log; -9 when it outlived its time limit."""
    with log.open("a", encoding="utf-8") as out:
        try:
            done = subprocess.run(
                command, cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
            code = done.returncode
        except subprocess.TimeoutExpired:
            code = -9
    return _outcome(code, log)


def _outcome(code: int, log: Path) -> _Outcome:
    lines = log.read_text("utf-8").strip().splitlines()
    return _Outcome(code, " | ".join(lines[-5:]) if code else "")


def _hp_value(value: Any) -> Any:
    """A hyperparameter as the training toolkit reads it: JSON-decoded when it is JSON text (the SDK quotes)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _arg(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (dict, list, bool)) else str(value)


def _environment(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in (value or {}).items()}


def _metrics(algorithm: Mapping[str, Any], log: str) -> list[dict[str, Any]]:
    """FinalMetricDataList: the last value each MetricDefinitions regex finds in the job's log."""
    found = []
    moment = _now()
    for definition in algorithm.get("MetricDefinitions") or []:
        matches = re.findall(str(definition["Regex"]), log)
        if matches:
            last = matches[-1]
            value = last[0] if isinstance(last, tuple) else last
            found.append({"MetricName": definition["Name"], "Value": float(value), "Timestamp": moment})
    return found


# ---------------------------------------------------------------------------------------------- Step Functions


def create_training_job_sync(sagemaker: LocalSageMaker) -> Handler:
    """``arn:aws:states:::sagemaker:createTrainingJob.sync``: the output is DescribeTrainingJob's response.

    A job that ends ``Failed`` fails the task with ``States.TaskFailed`` (its FailureReason in the cause); a rejected
    request fails it with ``SageMaker.<ErrorCode>`` (``SageMaker.ResourceInUse`` for a name used before).
    """

    def handler(parameters: Any, task: TaskContext) -> Any:
        started = time.monotonic()
        with client_errors("SageMaker"):
            describe = sagemaker.create_training_job(**parameters)
        if describe["TrainingJobStatus"] != "Completed":
            raise TaskError(TASK_FAILED, json.dumps(_failure(describe, "TrainingJobName", started)))
        return describe

    return handler


def create_transform_job_sync(sagemaker: LocalSageMaker) -> Handler:
    """``arn:aws:states:::sagemaker:createTransformJob.sync``: the output is DescribeTransformJob's response."""

    def handler(parameters: Any, task: TaskContext) -> Any:
        started = time.monotonic()
        with client_errors("SageMaker"):
            describe = sagemaker.create_transform_job(**parameters)
        if describe["TransformJobStatus"] != "Completed":
            raise TaskError(TASK_FAILED, json.dumps(_failure(describe, "TransformJobName", started)))
        return describe

    return handler


def create_model(sagemaker: LocalSageMaker) -> Handler:
    """``arn:aws:states:::sagemaker:createModel`` (request-response)."""

    def handler(parameters: Any, task: TaskContext) -> Any:
        with client_errors("SageMaker"):
            return sagemaker.create_model(**parameters)

    return handler


def _failure(describe: Mapping[str, Any], key: str, started: float) -> dict[str, Any]:
    return {
        key: describe.get(key),
        "FailureReason": describe.get("FailureReason", ""),
        "seconds": round(time.monotonic() - started, 1),
    }

"""Local Glue and EMR Serverless: a job script's `run(spark, args)` on local PySpark, staged through temp folders.

Spark here cannot reach S3, so a run copies its inputs from the local S3 into a temp folder, points the job's
root arguments at `file://` copies, runs the script on one shared local SparkSession (PySpark 3.5, as Glue 5.0
and EMR 7), then mirrors what the job changed back: new or rewritten files are uploaded, files it removed
(a replaced partition's old parts) are deleted. The script tells what to stage through
`staging_plan(args, store) -> StagingPlan` (`roots`: argument → root URI, `inputs`: URIs, folders ending in
`/`, `args`: arguments to pin when the roots move), so staging stays bounded by the job's own watermark. The
script's boto3 calls (the catalog) reach the local AWS through `AWS_ENDPOINT_URL`, as every client here does;
`--extra-py-files` is not fetched because the process already imports `datalake` from the layer's source.
A script that sets `ACCEPTS_SESSION_FACTORY` is given a function making the session instead of the session, so a
run with nothing to do never starts the JVM.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from stat import S_ISREG
from types import ModuleType
from typing import TYPE_CHECKING, Any

from lakebox.cfn.artifacts import REPO
from lakebox.services.interrupts import interrupted, rewatch
from lakebox.services.local_fs import CLASS_NAME, local_fs_jar
from lakebox.services.s3uri import split_s3_uri
from lakebox.sfn.integrations import (
    EMR_SERVERLESS_START_JOB_RUN_SYNC,
    GLUE_START_JOB_RUN_SYNC,
    emr_serverless_start_job_run_sync,
    glue_start_job_run_sync,
)

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef
    from pyspark.sql import SparkSession

    from lakebox.sfn.registry import Handler

logger = logging.getLogger(__name__)

THREADS = 8
SINGLE_PUT_BYTES = 64 * 1024 * 1024
"""Files up to this size go back to S3 in one PutObject; larger ones in parts."""
EARLY_SYNC_SECONDS = 1.0
"""How often a running job's finished files are mirrored back to S3 (`EarlySync`)."""
_WARMING = threading.Lock()
"""Held while a job warms the JVM (`warm_job`); a real run waits for it rather than share the two cores with it."""


# ------------------------------------------------------------------------------------------------ Spark


@lru_cache(maxsize=1)
def local_spark(log_file: Path | None = None) -> SparkSession:
    """The process's one local SparkSession: `local[2]`, UTC, two shuffle partitions planned up front, no UI.

    Spark's own log (warnings and errors) goes to `log_file` when one is given (the box's `logs/spark.log`), so
    a terminal holds only lakebox's progress; without one, errors only, on stderr. The first call decides.

    Returns
    -------
    SparkSession
        Created on first use (about 4 s), shared by every job run and test afterwards.
    """
    import signal

    from pyspark.sql import SparkSession

    before = signal.getsignal(signal.SIGINT)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    log_config = _log_config(log_file) if log_file is not None else Path(__file__).with_name("log4j2.properties")
    builder = (
        SparkSession.builder.master("local[2]")
        .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{log_config}")
        .appName("lakebox")
        .config("spark.sql.shuffle.partitions", "2")
        # Two shuffle partitions leave adaptive execution nothing to coalesce or split, and it would re-plan (and
        # compile anew) after every shuffle, a job per stage: a local job's plan is fixed up front instead.
        .config("spark.sql.adaptive.enabled", "false")
        .config("spark.default.parallelism", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", os.environ.get("LAKEBOX_SPARK_MEMORY", "2g"))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        # Every path is on the local disk: the driver lists any number of them in milliseconds, where Spark would
        # run a job of one task per path to list more than 32 (a job's raw files) in parallel.
        .config("spark.sql.sources.parallelPartitionDiscovery.threshold", "1000000")
    )
    jar = local_fs_jar()
    if jar is not None:  # local files written without a chmod process each (ADR 0039)
        builder = builder.config("spark.driver.extraClassPath", str(jar)).config(
            "spark.hadoop.fs.file.impl", CLASS_NAME
        )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN" if log_file is not None else "ERROR")
    rewatch(before)  # PySpark's SIGINT handler cancels its jobs; a run's Ctrl-C watch stays in front of it
    return spark


def _log_config(log_file: Path) -> Path:
    """A log4j2 configuration that appends Spark's warnings and errors to `log_file` (written beside it)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    config = log_file.with_name(f"{log_file.stem}-log4j2.properties")
    config.write_text(
        "# Spark's own log, kept apart from the terminal (lakebox prints its own progress).\n"
        "rootLogger.level = warn\n"
        "rootLogger.appenderRef.file.ref = file\n"
        "appender.file.type = File\n"
        "appender.file.name = file\n"
        f"appender.file.fileName = {log_file.absolute()}\n"
        "appender.file.append = true\n"
        "appender.file.layout.type = PatternLayout\n"
        "appender.file.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex\n",
        encoding="utf-8",
    )
    return config


# ------------------------------------------------------------------------------------------ local S3 access


@dataclass(frozen=True)
class StoredFile:
    """A file listed by `S3Store` (the shape of the job's `FileInfo`)."""

    uri: str
    relative: str
    size: int
    modified: datetime


class S3Store:
    """The job's `FileStore` protocol over boto3 S3, used to plan staging against the local S3."""

    def __init__(self, session: boto3.Session) -> None:
        self._s3: S3Client = session.client("s3")

    def list_files(self, prefix: str) -> list[StoredFile]:
        """Every object under `prefix` (a folder URI)."""
        bucket, key = split_s3_uri(prefix)
        files = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
            for obj in page.get("Contents", []):
                modified = obj["LastModified"].astimezone(UTC)
                files.append(StoredFile(f"s3://{bucket}/{obj['Key']}", obj["Key"][len(key) :], obj["Size"], modified))
        return files

    def exists(self, uri: str) -> bool:
        """Whether an object or a non-empty folder exists at `uri`."""
        bucket, key = split_s3_uri(uri)
        listed = self._s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        return bool(listed.get("KeyCount", 0))

    def read_text(self, uri: str) -> str | None:
        """The object's UTF-8 text, or None when absent."""
        bucket, key = split_s3_uri(uri)
        try:
            return self._s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
        except self._s3.exceptions.NoSuchKey:
            return None

    def write_text(self, uri: str, text: str) -> None:
        """Put a small UTF-8 object."""
        bucket, key = split_s3_uri(uri)
        self._s3.put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"))


# ------------------------------------------------------------------------------------------------ staging


def _visible(relative: str) -> bool:
    """Not a hidden file (checksums, Spark's staging folders) nor a committer's leftover `_temporary` folder."""
    return not any(part.startswith(".") or part == "_temporary" for part in relative.split("/"))


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every visible file; a file removed while the folder is walked is left out
    (a running job renames and deletes files while the runner syncs)."""
    files = {}
    for path in folder.rglob("*"):
        relative = path.relative_to(folder).as_posix()
        if not _visible(relative):
            continue
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        if S_ISREG(stat.st_mode):
            files[relative] = (stat.st_size, stat.st_mtime_ns)
    return files


VANISHED = (-1, -1)
"""The recorded state of a file that disappeared before its upload: whatever S3 holds for it is settled next sync."""


@dataclass
class Mirror:
    """A root argument's S3 prefix and its local copy, with the state after staging to diff against."""

    uri: str
    local: Path
    before: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def local_uri(self) -> str:
        """The `file://` URI handed to the job."""
        return self.local.as_uri() + "/"

    def sync_back(self, s3: S3Client) -> tuple[int, int]:
        """Upload files the job created or changed, delete objects of files it removed; returns the counts."""
        bucket, prefix = split_s3_uri(self.uri)
        after = _snapshot(self.local)
        changed = [name for name, stat in after.items() if self.before.get(name) != stat]
        removed = [name for name in self.before if name not in after]

        def upload(name: str) -> bool:
            path = self.local / name
            try:
                if path.stat().st_size > SINGLE_PUT_BYTES:
                    s3.upload_file(str(path), bucket, prefix + name)
                    return True
                with path.open("rb") as body:  # one request, without a transfer manager and its threads per file
                    s3.put_object(Bucket=bucket, Key=prefix + name, Body=body)
            except FileNotFoundError:  # replaced or removed by the job since the snapshot: the next sync settles it
                after[name] = VANISHED
                return False
            return True

        with ThreadPoolExecutor(THREADS) as pool:
            uploaded = sum(pool.map(upload, changed))
        for start in range(0, len(removed), 1000):
            chunk: list[ObjectIdentifierTypeDef] = [{"Key": prefix + name} for name in removed[start : start + 1000]]
            s3.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
        self.before = after
        return uploaded, len(removed)


def _download(s3: S3Client, bucket: str, key: str, dest: Path) -> None:
    response = s3.get_object(Bucket=bucket, Key=key)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as out:
        shutil.copyfileobj(response["Body"], out, 1024 * 1024)
    modified = response["LastModified"].timestamp()
    os.utime(dest, (modified, modified))


def stage(s3: S3Client, mirrors: Sequence[Mirror], inputs: Iterable[str]) -> int:
    """Copy the inputs (object URIs, or folder URIs ending in `/`) into their mirrors; returns the files copied.

    Each copy keeps the object's LastModified as its modification time, so a job's watermark sees the
    same times locally as on S3.
    """
    jobs: dict[Path, tuple[str, str]] = {}
    for uri in inputs:
        mirror = max((m for m in mirrors if uri.startswith(m.uri)), key=lambda m: len(m.uri), default=None)
        if mirror is None:
            raise ValueError(f"input {uri} is outside the job's root arguments")
        bucket, key = split_s3_uri(uri)
        _, root_key = split_s3_uri(mirror.uri)
        if uri.endswith("/"):
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
                for obj in page.get("Contents", []):
                    jobs[mirror.local / obj["Key"][len(root_key) :]] = (bucket, obj["Key"])
        else:
            jobs[mirror.local / key[len(root_key) :]] = (bucket, key)
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda item: _download(s3, item[1][0], item[1][1], item[0]), jobs.items()))
    for mirror in mirrors:
        mirror.before = _snapshot(mirror.local)
    return len(jobs)


# ------------------------------------------------------------------------------------------------ running


def _load_script(session: boto3.Session, location: str, folder: Path) -> ModuleType:
    if location.startswith("s3://"):
        bucket, key = split_s3_uri(location)
        path = folder / Path(key).name
        session.client("s3").download_file(bucket, key, str(path))
    else:
        path = Path(location) if Path(location).is_absolute() else REPO / location
    name = f"lakebox_job_{path.stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load a job script from {location}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _plan(
    module: ModuleType, args: Mapping[str, str], store: S3Store
) -> tuple[dict[str, str], list[str], dict[str, str]]:
    planner: Callable[..., Any] | None = getattr(module, "staging_plan", None)
    if planner is None:
        raise LookupError(f"{module.__file__} defines no staging_plan(args, store): its inputs cannot be staged")
    plan = planner(args, store)
    return dict(plan.roots), list(plan.inputs), dict(plan.args)


@dataclass(frozen=True)
class Outcome:
    """How a script run ended."""

    succeeded: bool
    error: str | None
    seconds: float
    staged: int = 0
    uploaded: int = 0
    deleted: int = 0
    rows_out: int = 0
    """Rows the run wrote, by its summary's `datasets.*.rows_out` (a warm-up's: `warm_job`)."""


def _script_arguments(module: ModuleType, argv: Sequence[str]) -> dict[str, str]:
    parse: Callable[[Sequence[str]], dict[str, str]] | None = getattr(module, "parse_arguments", None)
    if parse is None:
        raise LookupError(f"{module.__file__} defines no parse_arguments(argv): its spark-submit arguments are unknown")
    return parse(argv)


def execute_script(
    session: boto3.Session,
    script_location: str,
    args: Mapping[str, str] | Sequence[str],
    *,
    spark_log: Path | None = None,
) -> Outcome:
    """Run a job script's `run(spark, args)` locally with staged inputs; any failure is a failed outcome.

    Parameters
    ----------
    session
        boto3 session on the local AWS (S3 for the staging and the script).
    script_location
        `s3://` URI of the script, or a path (relative to the repository).
    args
        Job arguments, names without `--` (as Glue passes them); or a spark-submit argv (as EMR Serverless passes
        it), which the script's own `parse_arguments(argv)` turns into those names, as it does when it runs there.
    spark_log
        Where Spark's own log goes (see `local_spark`); None: errors on stderr.

    Returns
    -------
    Outcome
        Whether `run` returned, the error text otherwise (`Type: message`), the wall time and the file counts.
    """
    if _WARMING.locked():
        logger.info("waiting for the Spark warm-up to end before job script %s", script_location)
    with _WARMING:  # a run never shares the JVM with a warm-up
        pass
    started = time.monotonic()
    s3: S3Client = session.client("s3")
    folder = Path(tempfile.mkdtemp(prefix="lakebox-job-"))
    mirrors: list[Mirror] = []
    module: ModuleType | None = None
    staged = uploaded = deleted = 0
    early: EarlySync | None = None
    try:
        module = _load_script(session, script_location, folder)
        if not isinstance(args, Mapping):
            args = _script_arguments(module, args)
        roots, inputs, pinned = _plan(module, args, S3Store(session))
        local_args = dict(args)
        for name, uri in roots.items():
            mirror = Mirror(uri if uri.endswith("/") else uri + "/", folder / "roots" / name)
            mirror.local.mkdir(parents=True, exist_ok=True)
            mirrors.append(mirror)
            local_args[name] = mirror.local_uri
        for name, value in pinned.items():
            local_args.setdefault(name, value)
        staged = stage(s3, mirrors, inputs)
        with EarlySync(s3, mirrors) as early:
            if getattr(module, "ACCEPTS_SESSION_FACTORY", False):  # Spark starts only if the job has work
                module.run(lambda: local_spark(spark_log), local_args)
            else:
                module.run(local_spark(spark_log), local_args)
    # A job run fails whatever the script raises, as on Glue; the error becomes the run's ErrorMessage.
    except Exception as exc:
        logger.warning("job script %s failed", script_location, exc_info=not interrupted())
        error: str | None = f"{type(exc).__name__}: {exc}"
    else:
        error = None
    finally:
        try:
            uploaded, deleted = sync_back(s3, mirrors)
            if early is not None:
                uploaded, deleted = uploaded + early.uploaded, deleted + early.deleted
        finally:
            if module is not None:
                sys.modules.pop(module.__name__, None)
            _remove_later(folder)
    return Outcome(error is None, error, time.monotonic() - started, staged, uploaded, deleted)


def sync_back(s3: S3Client, mirrors: Sequence[Mirror]) -> tuple[int, int]:
    """Mirror every root back to S3 at once (`Mirror.sync_back`); returns the files uploaded and deleted in all."""
    if len(mirrors) < 2:
        counts = [mirror.sync_back(s3) for mirror in mirrors]
    else:
        with ThreadPoolExecutor(len(mirrors)) as pool:
            counts = list(pool.map(lambda mirror: mirror.sync_back(s3), mirrors))
    return sum(up for up, _ in counts), sum(down for _, down in counts)


class EarlySync:
    """While a job runs, mirror what it has finished writing back to S3 every `interval` seconds, so the run's last
    sync has little left: a dataset's partitions upload while the job writes the next dataset or its rollups.

    Spark makes a file visible only when it is complete (tasks write under hidden staging folders and the commit
    renames), so an early sync uploads finished files; one the job replaces or removes later is uploaded again or
    deleted by a later sync, the last one after the job returns. A failing early sync is left to the next one.
    """

    def __init__(self, s3: S3Client, mirrors: Sequence[Mirror], interval: float | None = None) -> None:
        self._s3, self._mirrors = s3, mirrors
        self._interval = EARLY_SYNC_SECONDS if interval is None else interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lakebox-job-sync", daemon=True)
        self.uploaded = self.deleted = 0

    def __enter__(self) -> EarlySync:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                uploaded, deleted = sync_back(self._s3, self._mirrors)
            except Exception:  # the next sync, or the run's last, uploads what this one could not
                logger.debug("early sync of a running job failed", exc_info=True)
                continue
            self.uploaded, self.deleted = self.uploaded + uploaded, self.deleted + deleted


def _remove_later(folder: Path) -> None:
    """Delete a run's temp folder in a thread of its own: the run's result does not wait for the disk.

    The thread is not a daemon, so the process still removes the folder before it exits.
    """
    threading.Thread(
        target=shutil.rmtree, args=(folder,), kwargs={"ignore_errors": True}, name="lakebox-job-cleanup"
    ).start()


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _script_args(job: Mapping[str, Any], arguments: Mapping[str, str] | None, run_id: str) -> dict[str, str]:
    """A run's arguments as Glue passes them to its script: the run's `Arguments` over the job's `DefaultArguments`,
    names without `--`, with `JOB_NAME` and `JOB_RUN_ID`."""
    merged = {**job.get("DefaultArguments", {}), **(arguments or {})}
    args = {name.removeprefix("--"): value for name, value in merged.items()}
    args.update(JOB_NAME=job["Name"], JOB_RUN_ID=run_id)
    return args


def run_glue_job(
    session: boto3.Session,
    job_name: str,
    arguments: Mapping[str, str] | None = None,
    *,
    spark_log: Path | None = None,
) -> dict[str, Any]:
    """Run a Glue job of the local catalog the way `glue:startJobRun.sync` would, and return its JobRun.

    Parameters
    ----------
    session
        boto3 session on the local AWS.
    job_name
        The job, read with `glue:GetJob` (Command.ScriptLocation, DefaultArguments, GlueVersion).
    arguments
        The run's Arguments (`--name`: value), merged over the job's DefaultArguments as Glue does.

    Returns
    -------
    dict
        A Glue JobRun: `Id`, `JobName`, `Arguments`, `JobRunState` (`SUCCEEDED` or `FAILED`), `ErrorMessage`
        when failed, `StartedOn`/`CompletedOn` (epoch milliseconds, as Step Functions passes them),
        `ExecutionTime` (seconds). A failing script is a FAILED run, not an exception.
    """
    job = session.client("glue").get_job(JobName=job_name)["Job"]
    run_id = f"jr_{uuid.uuid4().hex}{uuid.uuid4().hex}"
    args = _script_args(job, arguments, run_id)
    started = datetime.now(UTC)
    outcome = execute_script(session, job["Command"]["ScriptLocation"], args, spark_log=spark_log)
    completed = datetime.now(UTC)
    run: dict[str, Any] = {
        "Id": run_id,
        "Attempt": 0,
        "JobName": job_name,
        "JobMode": "SCRIPT",
        "Arguments": dict(arguments or {}),
        "StartedOn": _millis(started),
        "LastModifiedOn": _millis(completed),
        "CompletedOn": _millis(completed),
        "JobRunState": "SUCCEEDED" if outcome.succeeded else "FAILED",
        "ExecutionTime": max(1, round(outcome.seconds)),
        "GlueVersion": job.get("GlueVersion", "5.0"),
    }
    if outcome.error:
        run["ErrorMessage"] = outcome.error
    logger.info("glue job %s %s in %.1fs (%d staged)", job_name, run["JobRunState"], outcome.seconds, outcome.staged)
    return run


def warm_job(session: boto3.Session, job_name: str, raw: Path, *, spark_log: Path | None = None) -> Outcome:
    """Run a Glue job's script once on a local raw zone, writing into a throwaway folder, to warm the JVM (ADR 0038).

    A job's first run in a JVM costs seconds more than later ones (classes loaded, its plans' generated code
    compiled, the hot paths not yet compiled by the JIT), whatever its input's size. This pays that cost on records
    of `raw` (laid out as the raw zone), before any real run: only the script is read from the local AWS, nothing is
    written to S3 or the catalog (`update_catalog` is false), and every output goes to a temp folder removed after.
    A run of any job started meanwhile waits for it (`execute_script`).

    Returns
    -------
    Outcome
        Whether the script's run returned, its error otherwise, and its wall time.
    """
    started = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="lakebox-warm-"))
    with _WARMING:
        try:
            job = session.client("glue").get_job(JobName=job_name)["Job"]
            module = _load_script(session, job["Command"]["ScriptLocation"], folder)
            local = {
                "--raw_path": raw.resolve().as_uri() + "/",
                "--processed_path": (folder / "processed").as_uri() + "/",
                "--update_catalog": "false",
                "--settle_seconds": "0",
                "--run_id": "warm-up",
            }
            args = _script_args(job, local, "warm-up")
            try:
                summary = module.run(local_spark(spark_log), args)
            finally:
                sys.modules.pop(module.__name__, None)
            rows = sum(int(result.get("rows_out", 0)) for result in summary.get("datasets", {}).values())
        except Exception as exc:  # a warm-up that fails (or is cut short by `up` stopping) costs only its warmth
            error: str | None = f"{type(exc).__name__}: {exc}"
            logger.info("warming job %s did not finish: %s", job_name, error)
            logger.debug("warming job %s", job_name, exc_info=True)
            rows = 0
        else:
            error = None
        finally:
            _remove_later(folder)
    return Outcome(error is None, error, time.monotonic() - started, rows_out=rows)


def run_emr_job(
    session: boto3.Session,
    application_id: str,
    execution_role_arn: str,
    job_driver: Mapping[str, Any],
    *,
    spark_log: Path | None = None,
) -> dict[str, Any]:
    """Run an EMR Serverless Spark job the way `emr-serverless:startJobRun.sync` would.

    Parameters
    ----------
    session
        boto3 session on the local AWS.
    application_id
        The application, checked with `emr-serverless:GetApplication`.
    execution_role_arn
        The job's role (recorded; local runs are not authorized).
    job_driver
        `{"sparkSubmit": {"entryPoint": script URI, "entryPointArguments": ["--name", "value", ...]}}`.

    Returns
    -------
    dict
        The EMR job run fields (`applicationId`, `jobRunId`, `arn`, `state` `SUCCESS`/`FAILED`,
        `stateDetails`, `totalExecutionDurationSeconds`) and the same Glue-shaped fields as `run_glue_job`
        (`Id`, `JobRunState`, `ErrorMessage`, `ExecutionTime`).
    """
    application = session.client("emr-serverless").get_application(applicationId=application_id)["application"]
    submit = job_driver["sparkSubmit"]
    args = list(submit.get("entryPointArguments", []))
    run_id = uuid.uuid4().hex[:16]
    started = datetime.now(UTC)
    outcome = execute_script(session, submit["entryPoint"], args, spark_log=spark_log)
    completed = datetime.now(UTC)
    seconds = max(1, round(outcome.seconds))
    return {
        "applicationId": application_id,
        "jobRunId": run_id,
        "arn": f"{application['arn']}/jobruns/{run_id}",
        "executionRole": execution_role_arn,
        "releaseLabel": application.get("releaseLabel"),
        "jobDriver": dict(job_driver),
        "state": "SUCCESS" if outcome.succeeded else "FAILED",
        "stateDetails": outcome.error or "",
        "createdAt": _millis(started),
        "updatedAt": _millis(completed),
        "totalExecutionDurationSeconds": seconds,
        "Id": run_id,
        "JobRunState": "SUCCEEDED" if outcome.succeeded else "FAILED",
        "ExecutionTime": seconds,
        **({"ErrorMessage": outcome.error} if outcome.error else {}),
    }


class SparkJobs:
    """The jobs of one box's local AWS (Glue and EMR Serverless) run on local PySpark; a TaskService."""

    def __init__(self, session: boto3.Session, *, spark_log: Path | None = None) -> None:
        self.session = session
        self.spark_log = spark_log  # where Spark's own log lines go (the box's logs folder), not the terminal

    def warm_up(self, job_name: str, raw: Path) -> Outcome:
        """Warm the JVM with one run of `job_name`'s script on the local raw zone `raw` (`warm_job`)."""
        return warm_job(self.session, job_name, raw, spark_log=self.spark_log)

    def task_handlers(self) -> dict[str, Handler]:
        """``glue:startJobRun.sync`` and ``emr-serverless:startJobRun.sync``, each run to its end here."""
        session, spark_log = self.session, self.spark_log

        def run_glue(job_name: str, arguments: dict[str, str]) -> dict[str, Any]:
            return run_glue_job(session, job_name, arguments, spark_log=spark_log)

        def run_emr(application_id: str, role_arn: str, job_driver: dict[str, Any]) -> dict[str, Any]:
            return run_emr_job(session, application_id, role_arn, job_driver, spark_log=spark_log)

        return {
            GLUE_START_JOB_RUN_SYNC: glue_start_job_run_sync(run_glue),
            EMR_SERVERLESS_START_JOB_RUN_SYNC: emr_serverless_start_job_run_sync(run_emr),
        }

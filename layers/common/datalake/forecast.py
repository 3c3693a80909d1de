"""The sales forecast step of a run: the training export, the SageMaker job names and locations, the publication."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from datalake.aws import aws_error, read_object
from datalake.curation import Statement, render, run_token, sql_text

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

TABLE: Final = "sales_forecast"
MODEL: Final = "forecast"
"""The folder of the model's code under `ml/` (and its sourcedir key in the artifacts bucket)."""
ML_PREFIX: Final = f"_ml/{TABLE}"
"""Where in the curated bucket the forecast's training data, requests, checkpoints and models live."""
MAX_JOB_BASE: Final = 50
"""SageMaker job names take 63 characters; the state machine appends `-<retry>` and `-t<retry>`."""
TRAINING_SQL: Final = "ml/sales_forecast_training.sql"
RECORD_KEY: Final = f"{ML_PREFIX}/published.json"
"""The last published forecast (the run summary's `forecast` with its input's fingerprint), in the curated bucket;
the pipeline writes it once a forecast is published, and the planner compares the next run's input with it."""
_SOURCE: Final = re.compile(r"\{\{\s*database\s*\}\}\.(\w+)")


class ForecastRequest(BaseModel):
    """What the pipeline passes to the planner: the run, and the forecast's options from the run input."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    run_id: str = Field(min_length=1, max_length=80)
    execution_id: str | None = None
    forecast_horizon: int = Field(default=14, ge=1, le=366)
    training_days: int = Field(default=365, ge=28, le=3660)
    as_of: dt.date | None = None
    """The run's day (UTC today when omitted): training data ends the day before it, the forecast starts on it."""
    retrain: bool = False
    """Train even when the training input is the one the published forecast was trained on."""


class ForecastPlan(BaseModel):
    """The planner's answer: every name and location of the forecast step, and the Athena statements around it."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    training_job_name: str
    training_start: dt.date
    training_end: dt.date
    export: list[Statement]
    training_uri: str
    model_output_uri: str
    checkpoint_uri: str
    request_key: str
    request_uri: str
    request: dict[str, int]
    output_uri: str
    hyperparameters: dict[str, str]
    publish: list[Statement]
    fingerprint: str = ""
    """SHA-256 of the training input: the window, the horizon and the objects of the tables the export reads."""
    unchanged: bool = False
    """The published forecast was trained on this very input: the state machine skips training (ADR 0025)."""
    previous: dict[str, Any] | None = None
    """The published forecast's record (`RECORD_KEY`), when there is one."""
    record_key: str = RECORD_KEY


def job_base_name(run_id: str) -> str:
    """`sales-forecast-<run>`: letters, digits and single hyphens, at most 50 characters, as SageMaker names need.

    A longer run id keeps its start and gets 8 hex digits of its SHA-256, so two runs never share a job name.
    """
    token = re.sub(r"[^a-z0-9]+", "-", run_id.lower()).strip("-")
    if not token:
        raise ValueError(f"run id {run_id!r} has no letters or digits")
    name = f"sales-forecast-{token}"
    if len(name) <= MAX_JOB_BASE:
        return name
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    return f"{name[: MAX_JOB_BASE - 9].rstrip('-')}-{digest}"


def plan_forecast(request: ForecastRequest, *, database: str, curated_bucket: str) -> ForecastPlan:
    """Plan the forecast step of one run.

    Parameters
    ----------
    request
        The run and its forecast options.
    database
        The Glue database holding the curated tables.
    curated_bucket
        The curated zone's bucket (training data, models and the forecast table live there).

    Returns
    -------
    ForecastPlan
        The export statements (ml_data workgroup: drop a stale stage, CTAS the window, drop the stage), the job's
        base name, channels, output, checkpoint and request locations, and the statements that publish the
        forecast (create ``sales_forecast`` if missing, point it at this run's transform output).
    """
    token = run_token(request.run_id)
    end = request.as_of or dt.datetime.now(dt.UTC).date()
    start = end - dt.timedelta(days=request.training_days)
    base = f"s3://{curated_bucket}/{ML_PREFIX}"
    stage = f"{TABLE}_training__{token}"
    training_uri = f"{base}/training/{token}/"
    select = render(
        sql_text("ml/sales_forecast_training.sql"),
        {"database": database, "start": start.isoformat(), "end": end.isoformat()},
    )
    export = [
        _statement("clean", "rebuild/drop_stage.sql", database=database, stage=stage),
        _statement(
            "export", "rebuild/build_stage.sql", database=database, stage=stage, location=training_uri, select=select
        ),
        _statement("cleanup", "rebuild/drop_stage.sql", database=database, stage=stage),
    ]
    table_base = f"s3://{curated_bucket}/{TABLE}/"
    output_uri = f"{table_base}runs/{token}/"
    publish = [
        _statement("table", f"curated/{TABLE}.table.sql", database=database, location=table_base),
        _statement("publish", "rebuild/publish_location.sql", database=database, table=TABLE, location=output_uri),
    ]
    request_prefix = f"{ML_PREFIX}/requests/{token}/"
    return ForecastPlan(
        run_id=request.run_id,
        training_job_name=job_base_name(request.run_id),
        training_start=start,
        training_end=end - dt.timedelta(days=1),
        export=export,
        training_uri=training_uri,
        model_output_uri=f"{base}/models/",
        checkpoint_uri=f"{base}/checkpoints/{token}/",
        request_key=f"{request_prefix}request.jsonl",
        request_uri=f"s3://{curated_bucket}/{request_prefix}",
        request={"horizon": request.forecast_horizon},
        output_uri=output_uri,
        hyperparameters={"horizon": str(request.forecast_horizon)},
        publish=publish,
    )


def training_sources() -> tuple[str, ...]:
    """The curated tables the training export reads (named in its SQL as `{{ database }}.<table>`)."""
    return tuple(dict.fromkeys(_SOURCE.findall(sql_text(TRAINING_SQL))))


def input_fingerprint(s3: S3Client, curated_bucket: str, plan: ForecastPlan) -> str:
    """SHA-256 of what the training sees: the window and horizon, and every object under its source tables' folders.

    A rebuilt partition is written to a new folder (curated builds never overwrite), so any change to the tables
    changes the listing; an unchanged listing means the export would read the same bytes.

    Raises
    ------
    TransientError, TerminalError
        When S3 cannot list a table's folder.
    """
    digest = hashlib.sha256()
    window = [plan.training_start.isoformat(), plan.training_end.isoformat(), plan.request.get("horizon")]
    digest.update(json.dumps([window, plan.hyperparameters], sort_keys=True).encode())
    paginator = s3.get_paginator("list_objects_v2")
    for table in training_sources():
        try:
            for page in paginator.paginate(Bucket=curated_bucket, Prefix=f"{table}/"):
                for item in page.get("Contents", []):
                    digest.update(f"\n{item['Key']}\t{item.get('ETag', '')}\t{item.get('Size', 0)}".encode())
        except ClientError as exc:
            raise aws_error(exc, f"listing s3://{curated_bucket}/{table}/") from exc
    return digest.hexdigest()


class _Record(BaseModel):
    """The part of a published forecast's record the planner reads; the rest is kept as written."""

    model_config = ConfigDict(frozen=True, extra="allow")

    fingerprint: str = Field(min_length=1)


def load_forecast_record(s3: S3Client, curated_bucket: str) -> dict[str, Any] | None:
    """The published forecast's record; None when none was written or it carries no fingerprint (then retrain).

    Raises
    ------
    TransientError, TerminalError
        When S3 fails otherwise than with a missing object.
    """
    body = read_object(s3, curated_bucket, RECORD_KEY)
    if body is None:
        return None
    try:
        record = _Record.model_validate_json(body)
    except ValidationError:
        return None
    return record.model_dump(mode="json")


def plan_forecast_run(request: ForecastRequest, *, database: str, curated_bucket: str, s3: S3Client) -> ForecastPlan:
    """Plan the forecast step of one run and say whether it may skip training (ADR 0025).

    The plan of `plan_forecast`, with the fingerprint of its training input; `unchanged` when the published forecast
    was trained on the same fingerprint (and the request does not ask to retrain), with that forecast's record as
    `previous`.
    """
    plan = plan_forecast(request, database=database, curated_bucket=curated_bucket)
    fingerprint = input_fingerprint(s3, curated_bucket, plan)
    previous = load_forecast_record(s3, curated_bucket)
    unchanged = previous is not None and previous["fingerprint"] == fingerprint and not request.retrain
    return plan.model_copy(update={"fingerprint": fingerprint, "unchanged": unchanged, "previous": previous})


def _statement(step: str, template: str, /, **values: str) -> Statement:
    return Statement(name=f"{TABLE}/{step}", table=TABLE, step=step, query=render(sql_text(template), values))

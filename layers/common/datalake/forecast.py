"""The sales forecast step of a run: the training export, the SageMaker job names and locations, the publication."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from datalake.curation import Statement, render, run_token, sql_text

TABLE: Final = "sales_forecast"
MODEL: Final = "forecast"
"""The folder of the model's code under `ml/` (and its sourcedir key in the artifacts bucket)."""
ML_PREFIX: Final = f"_ml/{TABLE}"
"""Where in the curated bucket the forecast's training data, requests, checkpoints and models live."""
MAX_JOB_BASE: Final = 50
"""SageMaker job names take 63 characters; the state machine appends `-<retry>` and `-t<retry>`."""


class ForecastRequest(BaseModel):
    """What the pipeline passes to the planner: the run, and the forecast's options from the run input."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    run_id: str = Field(min_length=1, max_length=80)
    execution_id: str | None = None
    forecast_horizon: int = Field(default=14, ge=1, le=366)
    training_days: int = Field(default=365, ge=28, le=3660)
    as_of: dt.date | None = None
    """The run's day (UTC today when omitted): training data ends the day before it, the forecast starts on it."""


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


def _statement(step: str, template: str, /, **values: str) -> Statement:
    return Statement(name=f"{TABLE}/{step}", table=TABLE, step=step, query=render(sql_text(template), values))

"""The curation ledger: which processing runs each curated table has absorbed, and the gate's verdict per dataset.

Curated is a function of processed, not of run history (ADR 0017). Every Spark run leaves its summary at
`<processed>/_runs/<run_id>/summary.json` and the gate its verdict beside it (`quality.json`); the ledger at
`<curated>/_ledger/curation.json` says, per curated table, which of those runs its published partitions already
reflect. A run plans, for every table, the changes of the runs it has not absorbed yet, whatever happened to the
runs that wrote them (a gate that held them, a failed, aborted or killed run, a run naming other datasets), and the
ledger is written only once the tables are published. A table the ledger does not know is rebuilt from every
processed partition. Runs absorbed by every table up to a point in time fold into the `horizon`, so the ledger
stays small.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from datalake.aws import aws_error, read_object
from datalake.exceptions import TerminalError
from datalake.runs import RunSummary, load_run_summary

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

LEDGER_KEY: Final = "_ledger/curation.json"
"""The ledger's key in the curated bucket."""
RUNS_PREFIX: Final = "_runs/"
SUMMARY_FILE: Final = "summary.json"
VERDICT_FILE: Final = "quality.json"
SETTLED: Final = dt.timedelta(minutes=10)
"""How old a run's summary must be before it folds into the horizon (S3 times are whole seconds, clocks drift)."""


class Verdict(BaseModel):
    """The gate's verdict on one dataset in one run: passed, or held with the failed rules' messages."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    run_id: str
    passed: bool
    checked_at: dt.datetime
    reasons: list[str] = Field(default_factory=list)


class RunVerdicts(BaseModel):
    """What the gate wrote for one run (`_runs/<run_id>/quality.json`): a verdict per dataset it judged."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    run_id: str
    recorded_at: dt.datetime
    datasets: dict[str, Verdict] = Field(default_factory=dict)


class TableEntry(BaseModel):
    """One curated table in the ledger: the runs after the horizon it has absorbed, and its last publication."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    absorbed: list[str] = Field(default_factory=list)
    published_by: str | None = None
    published_at: dt.datetime | None = None


class Ledger(BaseModel):
    """The curation ledger (ADR 0017).

    `horizon`: every processing run whose summary was written at or before it is absorbed by every table the
    ledger lists. `tables`: per table, the later runs it has absorbed. `verdicts`: per dataset, the gate's latest
    verdict as of the last recorded run (a run not yet absorbed adds its own from its `quality.json`).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    horizon: dt.datetime | None = None
    tables: dict[str, TableEntry] = Field(default_factory=dict)
    verdicts: dict[str, Verdict] = Field(default_factory=dict)


@dataclass(frozen=True)
class ProcessingRun:
    """A Spark run that left a summary, and when the summary was written."""

    run_id: str
    written_at: dt.datetime


# ---------------------------------------------------------------------------------------------------- reading


def load_ledger(s3: S3Client, curated_bucket: str) -> Ledger:
    """The ledger; an empty one when none was written yet (every table is then rebuilt from processed).

    Raises
    ------
    TerminalError
        When the ledger exists but cannot be read as one.
    TransientError
        When S3 throttles or fails transiently.
    """
    body = read_object(s3, curated_bucket, LEDGER_KEY)
    if body is None:
        return Ledger()
    try:
        return Ledger.model_validate_json(body)
    except ValidationError as exc:
        raise TerminalError(f"s3://{curated_bucket}/{LEDGER_KEY} is not a curation ledger: {exc}") from exc


def processing_runs(s3: S3Client, processed_bucket: str, after: dt.datetime | None = None) -> list[ProcessingRun]:
    """Every Spark run whose summary was written after `after` (all when None), oldest first."""
    found: list[ProcessingRun] = []
    paginator = s3.get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=processed_bucket, Prefix=RUNS_PREFIX):
            for item in page.get("Contents", []):
                parts = item["Key"].split("/")
                if len(parts) != 3 or parts[2] != SUMMARY_FILE:
                    continue
                written = item["LastModified"]
                if after is None or written > after:
                    found.append(ProcessingRun(parts[1], written))
    except ClientError as exc:
        raise aws_error(exc, f"listing s3://{processed_bucket}/{RUNS_PREFIX}") from exc
    return sorted(found, key=lambda run: (run.written_at, run.run_id))


def load_run_verdicts(s3: S3Client, processed_bucket: str, run_id: str) -> RunVerdicts | None:
    """The gate's verdicts of a run; None when the gate did not judge it (the run stopped before)."""
    body = read_object(s3, processed_bucket, f"{RUNS_PREFIX}{run_id}/{VERDICT_FILE}")
    return None if body is None else RunVerdicts.model_validate_json(body)


def write_run_verdicts(s3: S3Client, processed_bucket: str, verdicts: RunVerdicts) -> None:
    """Write the gate's verdicts of a run beside its summary."""
    key = f"{RUNS_PREFIX}{verdicts.run_id}/{VERDICT_FILE}"
    try:
        s3.put_object(
            Bucket=processed_bucket,
            Key=key,
            Body=verdicts.model_dump_json(indent=2).encode(),
            ContentType="application/json",
        )
    except ClientError as exc:
        raise aws_error(exc, f"writing s3://{processed_bucket}/{key}") from exc


def processed_dates(s3: S3Client, processed_bucket: str, dataset: str) -> list[dt.date]:
    """Every `event_date` partition the processed zone holds for a dataset, in order."""
    days: list[dt.date] = []
    paginator = s3.get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=processed_bucket, Prefix=f"{dataset}/", Delimiter="/"):
            for prefix in page.get("CommonPrefixes", []):
                folder = prefix["Prefix"].rstrip("/").rsplit("/", 1)[-1]
                if folder.startswith("event_date="):
                    try:
                        days.append(dt.date.fromisoformat(folder.removeprefix("event_date=")))
                    except ValueError:
                        continue
    except ClientError as exc:
        raise aws_error(exc, f"listing s3://{processed_bucket}/{dataset}/") from exc
    return sorted(days)


# ---------------------------------------------------------------------------------------------------- backlog


@dataclass(frozen=True)
class Backlog:
    """What curation has not absorbed: the runs after the horizon, their summaries, and the datasets' verdicts."""

    ledger: Ledger
    runs: tuple[ProcessingRun, ...]
    summaries: Mapping[str, RunSummary]
    verdicts: Mapping[str, Verdict]

    def pending(self, table: str) -> list[str]:
        """The runs `table` has not absorbed, oldest first; None-equivalent (every run) when the ledger lacks it."""
        entry = self.ledger.tables.get(table)
        absorbed = set(entry.absorbed) if entry else set()
        return [run.run_id for run in self.runs if run.run_id not in absorbed]

    def known(self, table: str) -> bool:
        """Whether the ledger has absorbed anything into `table` (else it is rebuilt from every partition)."""
        return table in self.ledger.tables

    def held(self) -> dict[str, Verdict]:
        """Datasets whose latest verdict failed: curation does not read them until a run passes them."""
        return {name: verdict for name, verdict in sorted(self.verdicts.items()) if not verdict.passed}


def load_backlog(s3: S3Client, processed_bucket: str, curated_bucket: str) -> Backlog:
    """Read the ledger, the runs after its horizon with their summaries, and fold their verdicts into its own."""
    ledger = load_ledger(s3, curated_bucket)
    runs = processing_runs(s3, processed_bucket, ledger.horizon)
    summaries = {run.run_id: load_run_summary(s3, processed_bucket, run.run_id) for run in runs}
    verdicts = dict(ledger.verdicts)
    judged = [v for run in runs if (v := load_run_verdicts(s3, processed_bucket, run.run_id)) is not None]
    for run_verdicts in sorted(judged, key=lambda v: v.recorded_at):
        for name, verdict in run_verdicts.datasets.items():
            current = verdicts.get(name)
            if current is None or current.checked_at <= verdict.checked_at:
                verdicts[name] = verdict
    return Backlog(ledger, tuple(runs), summaries, verdicts)


def advance(
    backlog: Backlog, published: Iterable[str], every_table: Sequence[str], run_id: str, now: dt.datetime
) -> Ledger:
    """The ledger once the `published` tables are built: each has absorbed every run of the backlog.

    Runs absorbed by every table (`every_table`) and older than `SETTLED`, up to the first one some table still
    lacks, fold into the horizon; the tables' lists keep only later runs.
    """
    tables = dict(backlog.ledger.tables)
    listed = [run.run_id for run in backlog.runs]
    for name in published:
        tables[name] = TableEntry(absorbed=listed, published_by=run_id, published_at=now)
    horizon = backlog.ledger.horizon
    folded: list[ProcessingRun] = []
    if all(name in tables for name in every_table):
        for run in backlog.runs:
            # a summary written later can never fall at or before the horizon: only settled runs fold into it
            if run.written_at > now - SETTLED or not all(run.run_id in tables[name].absorbed for name in every_table):
                # S3 times have whole seconds: a run written in the same second as this one stays unfolded too
                folded = [done for done in folded if done.written_at < run.written_at]
                break
            folded.append(run)
    if folded:
        latest = max(run.written_at for run in folded)
        horizon = latest if horizon is None or latest > horizon else horizon
    folded_ids = {run.run_id for run in folded}
    tables = {
        name: entry.model_copy(update={"absorbed": [r for r in entry.absorbed if r not in folded_ids]})
        for name, entry in sorted(tables.items())
    }
    return Ledger(horizon=horizon, tables=tables, verdicts=dict(sorted(backlog.verdicts.items())))


def ledger_document(ledger: Ledger) -> str:
    """The ledger as the JSON text the pipeline writes once the tables are published."""
    return json.dumps(ledger.model_dump(mode="json"), indent=2, sort_keys=True)

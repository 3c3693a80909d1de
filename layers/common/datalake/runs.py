"""The Spark job's run summary (`<processed>/_runs/<run_id>/summary.json`): one model and one loader."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from datalake.aws import read_object
from datalake.exceptions import TerminalError
from datalake.schemas import SchemaChange

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client


class Quarantine(BaseModel):
    """Rows a run set aside at processing: where they are and how many for each reason."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    location: str | None = None
    reasons: dict[str, int] = Field(default_factory=dict)


class DatasetRun(BaseModel):
    """One dataset's part of a run: what it read, set aside, deduplicated and wrote (see the job's `run`)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    table: str = ""
    rows_read: int | None = None
    """Raw rows read; absent from summaries that predate processing quarantine (then rows_in is all of them)."""
    rows_quarantined: int = 0
    rows_in: int = 0
    rows_existing: int = 0
    duplicates_dropped: int = 0
    rows_out: int = 0
    partitions: list[dt.date] = Field(default_factory=list)
    partitions_removed: list[dt.date] = Field(default_factory=list)
    reference_dates: list[dt.date] = Field(default_factory=list)
    """Dates of this dataset's rows whose lookup key a reference change touched (their curated rows are rebuilt)."""
    quarantine: Quarantine = Field(default_factory=Quarantine)
    raw_files: list[str] = Field(default_factory=list)
    skipped_files: list[str] = Field(default_factory=list)
    schema_change: SchemaChange | None = None
    """The contract version against the dataset's tables, when it changed them or was refused (ADR 0016)."""

    @property
    def changed(self) -> bool:
        """Whether the run wrote or removed any of its partitions."""
        return bool(self.partitions or self.partitions_removed)


class RunSummary(BaseModel):
    """A processing run: its id, times and each dataset's part."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    run_id: str
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    datasets: dict[str, DatasetRun] = Field(default_factory=dict)
    reference_dates: dict[str, list[dt.date]] = Field(default_factory=dict)
    """Per dataset the run did not process, the dates of its rows whose lookup key a reference change touched."""


def summary_key(run_id: str) -> str:
    """The summary's key in the processed bucket."""
    return f"_runs/{run_id}/summary.json"


def load_run_summary(s3: S3Client, processed_bucket: str, run_id: str) -> RunSummary:
    """Read and validate the summary the Spark job wrote for `run_id`.

    Raises
    ------
    TerminalError
        When the run wrote no summary (the processing step did not run with this run id).
    TransientError
        When S3 throttles or fails transiently.
    """
    key = summary_key(run_id)
    body = read_object(s3, processed_bucket, key)
    if body is None:
        raise TerminalError(
            f"run {run_id} has no processing summary at s3://{processed_bucket}/{key}: "
            f"was the job given --run_id {run_id}?"
        )
    return RunSummary.model_validate_json(body)

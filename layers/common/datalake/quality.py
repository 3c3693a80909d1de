"""Quality gate: rules per dataset, declared as data, checked on the processed partitions a run wrote.

Row count, precisely. The Spark job's summary (`<processed>/_runs/<run_id>/summary.json`) gives, per
dataset, the raw files it read, `rows_read`, `rows_quarantined` (set aside at processing with their reasons),
`rows_existing` (rows the rewritten partitions held before the run) and `duplicates_dropped`. The manifests that
produced those raw files (matched on their `output_keys`) give `records_landed`. So per dataset: received =
landed + quarantined at ingestion; landed = rows the job read = processed + quarantined at processing; and the
partitions must hold exactly `rows_existing + records_landed - rows_quarantined - duplicates_dropped` rows. A raw
file only partly read, a file with no manifest, or rows lost or doubled on the way all break an equality. Keys
are checked for uniqueness over the whole processed zone, as the job deduplicates over all of history. The gate
reads the processed files itself (one listing, each file fetched once for the columns the rules need of it,
ADR 0024), so that it stays a check on what the job wrote rather than on what the job says it wrote."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, model_validator

from datalake.aws import AwsClients
from datalake.contracts import REGISTRY, Dataset, get_dataset
from datalake.contracts.base import Check
from datalake.exceptions import TerminalError
from datalake.ledger import RunVerdicts, Verdict, write_run_verdicts
from datalake.runs import DatasetRun, load_run_summary
from datalake.settings import Settings

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_s3.client import S3Client

logger = logging.getLogger(__name__)

Observed = dict[str, int | float | str | None]


# ----------------------------------------------------------------------------------------------- report


class RuleResult(BaseModel):
    """One rule's verdict on one dataset, with what was observed."""

    model_config = ConfigDict(frozen=True)

    rule: str
    passed: bool
    observed: Observed
    message: str


class DatasetReport(BaseModel):
    """Every rule's verdict on one dataset's partitions of the run."""

    model_config = ConfigDict(frozen=True)

    dataset: str
    partitions: list[str]
    passed: bool
    rules: list[RuleResult]


class QualityReport(BaseModel):
    """The gate's verdict on a run."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    passed: bool
    checked_at: datetime
    datasets: list[DatasetReport]

    def failures(self) -> list[str]:
        """`dataset.rule: message` for every failed rule."""
        return [f"{d.dataset}.{r.rule}: {r.message}" for d in self.datasets for r in d.rules if not r.passed]


class QualityGateRequest(BaseModel):
    """The gate task's input: the datasets, the job's run id (the execution's name unless given), the job run.

    No datasets means every registered one (ADR 0012), as the Spark job reads the same empty list.
    """

    model_config = ConfigDict(frozen=True)

    datasets: list[str] = Field(default_factory=list)
    execution_id: str = Field(min_length=1)
    run_id: str = Field(min_length=1)
    job: dict[str, Any] = Field(default_factory=dict)
    as_of: datetime | None = None
    """The time freshness is judged at (a backfill passes its window's end); now when absent."""

    @model_validator(mode="before")
    @classmethod
    def _run_id_from_execution(cls, data: Any) -> Any:
        """The pipeline passes `--run_id` = `$$.Execution.Name`: the last part of the execution ARN."""
        if isinstance(data, dict) and not data.get("run_id") and data.get("execution_id"):
            return {**data, "run_id": str(data["execution_id"]).rsplit(":", 1)[-1]}
        return data


# ------------------------------------------------------------------------------------------------ facts


@dataclass(frozen=True)
class JobCounts:
    """One dataset's part of the Spark job's run summary."""

    rows_in: int = 0
    rows_existing: int = 0
    duplicates_dropped: int = 0
    rows_out: int = 0
    partitions: tuple[str, ...] = ()
    raw_files: tuple[str, ...] = ()
    rows_read: int | None = None
    """Raw rows the job read; `rows_in + rows_quarantined` when the summary predates the field."""
    rows_quarantined: int = 0
    quarantine_reasons: Mapping[str, int] = field(default_factory=dict)
    partitions_removed: tuple[str, ...] = ()

    @classmethod
    def from_summary(cls, part: DatasetRun) -> JobCounts:
        """Read a dataset's part of the run summary."""
        return cls(
            rows_in=part.rows_in,
            rows_existing=part.rows_existing,
            duplicates_dropped=part.duplicates_dropped,
            rows_out=part.rows_out,
            partitions=tuple(d.isoformat() for d in part.partitions),
            raw_files=tuple(part.raw_files),
            rows_read=part.rows_read,
            rows_quarantined=part.rows_quarantined,
            quarantine_reasons=dict(part.quarantine.reasons),
            partitions_removed=tuple(d.isoformat() for d in part.partitions_removed),
        )

    @property
    def read(self) -> int:
        """Raw rows the job read: processed or quarantined at processing."""
        return self.rows_read if self.rows_read is not None else self.rows_in + self.rows_quarantined


@dataclass(frozen=True)
class Observations:
    """Everything the rules judge one dataset by; built from S3 and DynamoDB, or by hand in tests.

    Parameters
    ----------
    dataset
        The dataset.
    data
        The run's partitions, only the columns the rules need.
    history
        The record-key columns of every processed partition (uniqueness spans all of history); None to judge
        `data` alone.
    job
        The job's counts for the dataset.
    records_landed
        `records_landed` summed over the manifests whose output keys the job read.
    records_received, records_quarantined_at_ingestion
        `records_read` and `records_quarantined` over the same manifests, for the report's reconciliation.
    raw_files_without_manifest
        Raw files the job read that no manifest lists.
    latest_event_time
        The newest event time in the processed zone (latest partition), None when it is empty.
    now
        The time freshness is judged at.
    freshness_max_age_hours
        The setting freshness rules use unless they carry their own.
    """

    dataset: Dataset
    data: pa.Table
    job: JobCounts
    history: pa.Table | None = None
    records_landed: int = 0
    records_received: int | None = None
    records_quarantined_at_ingestion: int | None = None
    raw_files_without_manifest: tuple[str, ...] = ()
    latest_event_time: datetime | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    freshness_max_age_hours: float = 48.0


# ------------------------------------------------------------------------------------------------ rules


class Rule(Protocol):
    """A quality rule: the columns it reads and its verdict."""

    @property
    def name(self) -> str:
        """The rule's name in the report."""
        ...

    def columns(self, dataset: Dataset) -> set[str]:
        """Processed columns the rule reads."""
        ...

    def check(self, obs: Observations) -> RuleResult:
        """Judge the observations."""
        ...


def _count(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.sum(pc.fill_null(mask, True)).as_py() or 0)


@dataclass(frozen=True)
class RowCountMatchesManifests:
    """Rows in the run's partitions == rows_existing + records_landed - rows_quarantined - duplicates_dropped.

    That is, per dataset: what ingestion landed (received minus quarantined at ingestion) is what the job read,
    and what it read is processed or quarantined at processing (module docstring).
    """

    name: str = "row_count"

    def columns(self, dataset: Dataset) -> set[str]:
        """Only the key is read; the row count comes with it."""
        return set(dataset.record_key)

    def check(self, obs: Observations) -> RuleResult:
        """Compare the partitions' rows with what the manifests, the job's quarantine and its dedup account for."""
        job = obs.job
        expected = job.rows_existing + obs.records_landed - job.rows_quarantined - job.duplicates_dropped
        observed = obs.data.num_rows
        unmatched = len(obs.raw_files_without_manifest)
        read_all = obs.records_landed == job.read
        passed = observed == expected and unmatched == 0 and read_all
        message = f"{observed} rows, expected {expected}"
        if not read_all:
            message += f"; the job read {job.read} rows of files whose manifests landed {obs.records_landed}"
        if unmatched:
            message += f"; {unmatched} raw files read have no manifest"
        return RuleResult(
            rule=self.name,
            passed=passed,
            observed={
                "processed_rows": observed,
                "expected_rows": expected,
                "records_received": obs.records_received,
                "records_quarantined_at_ingestion": obs.records_quarantined_at_ingestion,
                "records_landed": obs.records_landed,
                "rows_read": obs.job.read,
                "rows_quarantined": obs.job.rows_quarantined,
                "rows_in": obs.job.rows_in,
                "rows_existing": obs.job.rows_existing,
                "duplicates_dropped": obs.job.duplicates_dropped,
                "raw_files_without_manifest": unmatched,
            },
            message=message,
        )


@dataclass(frozen=True)
class KeyNotNull:
    """No key column is null."""

    name: str = "key_not_null"

    def columns(self, dataset: Dataset) -> set[str]:
        """The key columns."""
        return set(dataset.record_key)

    def check(self, obs: Observations) -> RuleResult:
        """Count rows with a null in any key column."""
        masks = [pc.is_null(obs.data.column(k)) for k in obs.dataset.record_key]
        nulls = 0
        if obs.data.num_rows:
            combined = masks[0]
            for mask in masks[1:]:
                combined = pc.or_(combined, mask)
            nulls = _count(combined)
        return RuleResult(
            rule=self.name, passed=nulls == 0, observed={"null_keys": nulls}, message=f"{nulls} null keys"
        )


@dataclass(frozen=True)
class KeyUnique:
    """Each record key appears once in the whole processed zone (all of history, the scope the job dedups over)."""

    name: str = "key_unique"

    def columns(self, dataset: Dataset) -> set[str]:
        """The record-key columns."""
        return set(dataset.record_key)

    def check(self, obs: Observations) -> RuleResult:
        """Count rows beyond the first of each key, over `history` when given."""
        record_key = list(obs.dataset.record_key)
        keys = (obs.history if obs.history is not None else obs.data).select(record_key).drop_null()
        distinct = keys.group_by(record_key).aggregate([]).num_rows
        duplicates = keys.num_rows - distinct
        return RuleResult(
            rule=self.name,
            passed=duplicates == 0,
            observed={"duplicate_rows": duplicates, "distinct_keys": distinct},
            message=f"{duplicates} rows repeat a key",
        )


@dataclass(frozen=True)
class Positive:
    """A column is present and greater than zero on every row."""

    column: str

    @property
    def name(self) -> str:
        """`<column>_positive`."""
        return f"{self.column}_positive"

    def columns(self, dataset: Dataset) -> set[str]:
        """The column."""
        return {self.column}

    def check(self, obs: Observations) -> RuleResult:
        """Count rows where the column is null or not above zero."""
        values = obs.data.column(self.column)
        bad = _count(pc.less_equal(values, pa.scalar(0, values.type))) if obs.data.num_rows else 0
        minimum = pc.min(values).as_py() if obs.data.num_rows else None
        return RuleResult(
            rule=self.name,
            passed=bad == 0,
            observed={"violations": bad, "min": None if minimum is None else str(minimum)},
            message=f"{bad} rows with {self.column} null or <= 0",
        )


@dataclass(frozen=True)
class EqualsProduct:
    """`column == left * right` exactly (decimal arithmetic) on every row."""

    column: str
    left: str
    right: str

    @property
    def name(self) -> str:
        """`<column>_equals_<left>_x_<right>`."""
        return f"{self.column}_equals_{self.left}_x_{self.right}"

    def columns(self, dataset: Dataset) -> set[str]:
        """The three columns."""
        return {self.column, self.left, self.right}

    def check(self, obs: Observations) -> RuleResult:
        """Count rows where the product differs (or a factor is null)."""
        bad = 0
        if obs.data.num_rows:
            left, right = (_as_decimal(obs.data.column(c)) for c in (self.left, self.right))
            bad = _count(pc.not_equal(pc.multiply(left, right), _as_decimal(obs.data.column(self.column))))
        return RuleResult(
            rule=self.name,
            passed=bad == 0,
            observed={"violations": bad},
            message=f"{bad} rows where {self.column} != {self.left} x {self.right}",
        )


def _as_decimal(values: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_decimal(values.type):
        return values
    if pa.types.is_integer(values.type):
        return pc.cast(values, pa.decimal128(19, 0))
    raise TypeError(f"decimal arithmetic needs integer or decimal columns, not {values.type}")


@dataclass(frozen=True)
class Freshness:
    """The newest event in the processed zone is at most `max_age_hours` old (the setting when None)."""

    max_age_hours: float | None = None
    name: str = "freshness"

    def columns(self, dataset: Dataset) -> set[str]:
        """Nothing from the run's partitions: the latest partition is read on its own."""
        return set()

    def check(self, obs: Observations) -> RuleResult:
        """Compare the newest event time with `now`."""
        limit = self.max_age_hours if self.max_age_hours is not None else obs.freshness_max_age_hours
        latest = obs.latest_event_time
        if latest is None:
            # A dataset that has never delivered has nothing to be stale: the run goes on for the others (a
            # workbench with only sales put, a stream not yet started); the freshness alarm watches arrivals.
            return RuleResult(
                rule=self.name,
                passed=True,
                observed={"latest_event_time": None, "max_age_hours": limit},
                message="no processed data yet",
            )
        age = (obs.now - latest) / timedelta(hours=1)
        return RuleResult(
            rule=self.name,
            passed=age <= limit,
            observed={"latest_event_time": latest.isoformat(), "age_hours": round(age, 2), "max_age_hours": limit},
            message=f"newest event is {age:.1f} h old (limit {limit:g} h)",
        )


@dataclass(frozen=True)
class ProcessingQuarantineShare:
    """At most `max_share` of the rows the job read were set aside at processing (a systemic cause, not a record).

    One record the job cannot digest is quarantined with its reason and the run goes on; many mean raw data that
    did not come through this ingestion, or a job out of step with the contract: the gate stops promotion.
    """

    max_share: float = 0.01
    name: str = "processing_quarantine"

    def columns(self, dataset: Dataset) -> set[str]:
        """Nothing from the partitions: the job's counts."""
        return set()

    def check(self, obs: Observations) -> RuleResult:
        """Compare the job's quarantined rows with the rows it read."""
        job = obs.job
        share = job.rows_quarantined / job.read if job.read else 0.0
        reasons = ", ".join(f"{reason} ({count})" for reason, count in job.quarantine_reasons.items())
        return RuleResult(
            rule=self.name,
            passed=share <= self.max_share,
            observed={"rows_quarantined": job.rows_quarantined, "share": round(share, 6), "max_share": self.max_share},
            message=f"{job.rows_quarantined} of {job.read} rows quarantined at processing"
            + (f": {reasons}" if reasons else ""),
        )


BASELINE: tuple[Rule, ...] = (RowCountMatchesManifests(), KeyNotNull(), KeyUnique(), ProcessingQuarantineShare())
"""Rules every dataset gets, registered or not."""


def _rule(check: Check) -> Rule:
    if check.kind == "positive":
        (column,) = check.columns
        return Positive(column)
    if check.kind == "equals_product":
        column, left, right = check.columns
        return EqualsProduct(column, left, right)
    return Freshness(check.max_age_hours)


def rules_for(dataset: str | Dataset) -> tuple[Rule, ...]:
    """The rules of a dataset: the baseline, then the checks it declares (`Dataset.checks`)."""
    declared = get_dataset(dataset) if isinstance(dataset, str) else dataset
    return (*BASELINE, *(_rule(check) for check in declared.checks))


def evaluate(obs: Observations, rules: Sequence[Rule], partitions: Sequence[str] = ()) -> DatasetReport:
    """Run the rules on the observations of one dataset.

    Parameters
    ----------
    obs
        What the rules judge.
    rules
        The rules (see `rules_for`).
    partitions
        The event dates checked, for the report.

    Returns
    -------
    DatasetReport
        Every rule's result; `passed` when all passed.
    """
    results = [rule.check(obs) for rule in rules]
    return DatasetReport(
        dataset=obs.dataset.name,
        partitions=list(partitions),
        passed=all(r.passed for r in results),
        rules=results,
    )


# ----------------------------------------------------------------------------------------------- reading


def _bucket_key(key: str) -> str:
    return key.split("/", 3)[3] if key.startswith("s3://") else key.lstrip("/")


def landed_for(
    session: boto3.Session, table: str, dataset: str, raw_files: Sequence[str]
) -> tuple[int, tuple[str, ...], tuple[int, int]]:
    """Sum `records_landed` over the manifests whose output keys (or, for Firehose, prefixes) the job read.

    Parameters
    ----------
    session
        boto3 session.
    table
        The manifests table.
    dataset
        The dataset (manifests are filtered on it).
    raw_files
        Raw keys the job read.

    Returns
    -------
    tuple
        The sum, the raw files no manifest lists, and (records received, records quarantined at ingestion) over
        the same manifests.
    """
    wanted = set(raw_files)
    if not wanted:
        return 0, (), (0, 0)
    from boto3.dynamodb.conditions import Attr

    # A Firehose batch's manifest names the prefixes of the objects Firehose wrote for it, with the records each
    # holds (`output_prefixes`, ADR 0014): the raw files read, by the prefix their name starts with.
    by_prefix: dict[str, set[str]] = {}
    for key in wanted:
        folder, _, name = key.rpartition("/")
        if "-" in name:
            by_prefix.setdefault(f"{folder}/{name.split('-', 1)[0]}-", set()).add(key)
    manifests = session.resource("dynamodb").Table(table)
    kwargs: dict[str, Any] = {
        "FilterExpression": Attr("dataset").eq(dataset),
        "ProjectionExpression": (
            "object_id, output_keys, output_prefixes, records_landed, records_read, records_quarantined"
        ),
    }
    landed, received, quarantined, matched = 0, 0, 0, set()
    while True:
        page = manifests.scan(**kwargs)
        for item in page.get("Items", []):
            output_keys = cast(list[str], item.get("output_keys") or [])
            keys = {_bucket_key(str(k)) for k in output_keys} & wanted
            prefixes = cast(dict[str, Decimal], item.get("output_prefixes") or {})
            read_prefixes = [p for p in prefixes if p in by_prefix]
            if keys:
                landed += int(cast(Decimal, item.get("records_landed", 0)))
            elif read_prefixes:
                landed += sum(int(prefixes[p]) for p in read_prefixes)
                keys = set().union(*(by_prefix[p] for p in read_prefixes))
            if keys:
                received += int(cast(Decimal, item.get("records_read", 0)))
                quarantined += int(cast(Decimal, item.get("records_quarantined", 0)))
                matched |= keys
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return landed, tuple(sorted(wanted - matched)), (received, quarantined)


READ_THREADS = 8
"""Processed files fetched at once by the gate."""


@dataclass(frozen=True)
class ProcessedFiles:
    """The Parquet files of a dataset's processed zone, by `event_date` partition, from one listing."""

    bucket: str
    by_day: Mapping[str, tuple[str, ...]]

    @property
    def days(self) -> list[str]:
        """Every partition holding a file, in order."""
        return sorted(self.by_day)


def list_processed(s3: S3Client, bucket: str, dataset: str) -> ProcessedFiles:
    """List a dataset's processed Parquet files once (a paginated listing, not one call per partition)."""
    by_day: dict[str, list[str]] = {}
    prefix = f"{dataset}/"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = str(item["Key"])
            folder, _, name = key[len(prefix) :].rpartition("/")
            if not folder.startswith("event_date=") or "/" in folder or name.startswith(("_", ".")):
                continue
            if name.endswith(".parquet"):
                by_day.setdefault(folder.removeprefix("event_date="), []).append(key)
    return ProcessedFiles(bucket, {day: tuple(sorted(keys)) for day, keys in by_day.items()})


def _read_file(s3: S3Client, bucket: str, key: str, columns: Sequence[str]) -> pa.Table:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    parquet = pq.ParquetFile(pa.BufferReader(body))
    present = [c for c in columns if c in parquet.schema_arrow.names]
    return parquet.read(columns=present)


def read_files(s3: S3Client, files: ProcessedFiles, days: Mapping[str, Sequence[str]]) -> dict[str, pa.Table]:
    """Per partition of `days`, the given columns of its files (all fetched at once); a column a file lacks is null."""
    wanted = [(day, key, columns) for day, columns in days.items() if columns for key in files.by_day.get(day, ())]
    if not wanted:
        return {}
    with ThreadPoolExecutor(min(READ_THREADS, len(wanted))) as pool:
        tables = list(pool.map(lambda item: _read_file(s3, files.bucket, item[1], item[2]), wanted))
    by_day: dict[str, list[pa.Table]] = {}
    for (day, _, _), table in zip(wanted, tables, strict=True):
        by_day.setdefault(day, []).append(table)
    return {day: _complete(parts, days[day]) for day, parts in by_day.items()}


def _complete(tables: Sequence[pa.Table], columns: Sequence[str]) -> pa.Table:
    merged = pa.concat_tables(tables, promote_options="default")
    for name in columns:
        if name not in merged.column_names:
            merged = merged.append_column(name, pa.nulls(merged.num_rows))
    return merged.select(list(columns))


def _concat(tables: Sequence[pa.Table], columns: Sequence[str]) -> pa.Table:
    if not tables:
        return pa.table({c: pa.array([], pa.null()) for c in columns})
    return _complete(tables, columns)


@dataclass(frozen=True)
class ProcessedReads:
    """What the rules read from the processed zone of one dataset, each file fetched once."""

    data: pa.Table
    history: pa.Table | None
    latest_event_time: datetime | None


def read_processed(
    s3: S3Client,
    bucket: str,
    dataset: Dataset,
    run_days: Sequence[str],
    columns: Sequence[str],
    *,
    history: bool,
    latest: bool,
) -> ProcessedReads:
    """Read the run's partitions (`columns`), the key columns of every other partition, the latest event time.

    One listing of the dataset's processed files; each file is fetched once, for every column the rules need of it:
    the run's partitions give the rules' columns (and their keys to the history), the other partitions only their
    key columns (uniqueness spans all of history), the latest partition its event times.
    """
    files = list_processed(s3, bucket, dataset.name)
    keys = list(dataset.record_key) if history else []
    latest_day = files.days[-1] if latest and files.days else None
    wanted: dict[str, list[str]] = {day: [*columns, *keys] for day in run_days}
    for day in files.days if history else []:
        wanted.setdefault(day, list(keys))
    if latest_day is not None:
        wanted.setdefault(latest_day, []).append(dataset.event_time)
    tables = read_files(s3, files, {day: list(dict.fromkeys(cols)) for day, cols in wanted.items()})
    data = _concat([tables[d] for d in run_days if d in tables], columns)
    keys_table = _concat([t.select(keys) for t in tables.values()], keys) if history else None
    newest: datetime | None = None
    if latest_day is not None and latest_day in tables:
        value = pc.max(tables[latest_day].column(dataset.event_time)).as_py()
        newest = None if value is None else value if value.tzinfo else value.replace(tzinfo=UTC)
    return ProcessedReads(data=data, history=keys_table, latest_event_time=newest)


# --------------------------------------------------------------------------------------------------- gate


def schema_refused(name: str, part: DatasetRun) -> DatasetReport:
    """The report of a dataset whose contract version the job refused: one failed `schema_compatible` rule.

    The job processed none of its data (ADR 0016), so no other rule has anything to judge.
    """
    change = part.schema_change
    assert change is not None
    observed: Observed = {
        "table": change.table,
        "previous_version": change.previous_version,
        "version": change.version,
        "breaking_fields": ",".join(c.column for c in change.changes if c.breaking),
    }
    result = RuleResult(rule="schema_compatible", passed=False, observed=observed, message=change.describe())
    return DatasetReport(dataset=name, partitions=[], passed=False, rules=[result])


def check_quality(
    clients: AwsClients,
    settings: Settings,
    datasets: Sequence[str],
    run_id: str,
    now: datetime | None = None,
) -> QualityReport:
    """Check every dataset's partitions of a run and write the verdicts beside the run's summary.

    A dataset that fails a rule is held back from curation (ADR 0017): the report says so, the run goes on for the
    others, and the curation planner leaves the tables that read it as they are until a run passes it.

    Parameters
    ----------
    clients
        AWS clients (S3 for the processed zone and the job summary, DynamoDB for the manifests).
    settings
        Needs `processed_bucket` and `manifests_table`; `freshness_max_age_hours`.
    datasets
        The datasets to check; every registered one when empty.
    run_id
        The job's run id (its summary's folder).
    now
        The time freshness is judged at; now when None.

    Returns
    -------
    QualityReport
        The report; `passed` is False when a dataset is held back.

    Raises
    ------
    TerminalError
        When the job left no summary for the run, or did not process a dataset.
    """
    bucket = settings.require("processed_bucket")
    manifests = settings.require("manifests_table")
    checked_at = now or datetime.now(UTC)
    session = clients.session
    summary = load_run_summary(clients.s3, bucket, run_id)
    reports = []
    for name in list(datasets) or sorted(REGISTRY):
        dataset = get_dataset(name)
        part = summary.datasets.get(name)
        if part is None:
            raise TerminalError(f"the job's run {run_id} did not process {name}")
        if part.schema_change is not None and part.schema_change.breaking:
            reports.append(schema_refused(name, part))
            continue
        job = JobCounts.from_summary(part)
        rules = rules_for(dataset)
        columns = sorted(set().union(*(r.columns(dataset) for r in rules)))
        landed, unmatched, (received, quarantined) = landed_for(session, manifests, name, job.raw_files)
        needs_latest = any(isinstance(r, Freshness) for r in rules)
        needs_history = any(isinstance(r, KeyUnique) for r in rules)
        reads = read_processed(
            clients.s3, bucket, dataset, job.partitions, columns, history=needs_history, latest=needs_latest
        )
        obs = Observations(
            dataset=dataset,
            data=reads.data,
            job=job,
            history=reads.history,
            records_landed=landed,
            records_received=received,
            records_quarantined_at_ingestion=quarantined,
            raw_files_without_manifest=unmatched,
            latest_event_time=reads.latest_event_time,
            now=checked_at,
            freshness_max_age_hours=settings.freshness_max_age_hours,
        )
        reports.append(evaluate(obs, rules, job.partitions))
    report = QualityReport(
        run_id=run_id, passed=all(r.passed for r in reports), checked_at=checked_at, datasets=reports
    )
    write_run_verdicts(clients.s3, bucket, verdicts_of(report))
    if not report.passed:
        logger.warning("quality gate holds back for run %s: %s", run_id, report.failures())
    return report


def verdicts_of(report: QualityReport) -> RunVerdicts:
    """The gate's verdict per dataset, as the curation ledger reads it (ADR 0017)."""
    recorded = datetime.now(UTC)
    return RunVerdicts(
        run_id=report.run_id,
        recorded_at=recorded,
        datasets={
            d.dataset: Verdict(
                run_id=report.run_id,
                passed=d.passed,
                checked_at=recorded,
                reasons=[f"{r.rule}: {r.message}" for r in d.rules if not r.passed],
            )
            for d in report.datasets
        },
    )

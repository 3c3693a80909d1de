"""What a data contract is: a strict pydantic model plus the dataset facts the pipeline needs."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints


class Format(StrEnum):
    """Object formats an ingestion can read."""

    JSON_LINES = "jsonl"
    JSON_ARRAY = "json"
    JSON_DOCUMENT = "json-document"
    """One JSON value per record, however many lines it spans (a pretty-printed object, or several in a row)."""
    CSV = "csv"
    PARQUET = "parquet"
    """Apache Parquet, read with pyarrow in row batches; each row is judged as the JSON object of its values."""


class Delivery(StrEnum):
    """How a dataset's records arrive: files on the landing bucket, a stream, the scheduled source API pull."""

    FILE = "file"
    STREAM = "stream"
    API = "api"


class Contract(BaseModel):
    """Base of every contract: strict types, no unknown fields, immutable records."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


Currency = Literal["USD", "EUR", "GBP", "JPY", "CAD", "AUD", "CHF", "SEK", "INR", "BRL"]
"""ISO 4217 codes the business accepts."""

Money = Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=2)]
"""A positive amount with at most two decimal places."""

Quantity = Annotated[int, Field(gt=0, le=10_000)]
"""A positive count of units in one line."""

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")]
"""A business key: letters, digits, `_` and `-`."""

Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]


def to_utc(value: dt.datetime) -> dt.datetime:
    """The instant in UTC: the one meaning of a timestamp from ingestion to Parquet (ADR 0006).

    Raises
    ------
    ValueError
        When the instant falls outside the years 0001-9999 once in UTC (`0001-01-01T00:30+01:00`): no date holds it.
    """
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("timestamp lies outside the years 0001-9999 in UTC") from None


EventTime = Annotated[AwareDatetime, AfterValidator(to_utc)]
"""A timestamp that carries its time zone (naive ones are rejected), held as the UTC instant it names.

Sub-microsecond digits are truncated, as pydantic parses them; raw and processed data store the instant as
`YYYY-MM-DDTHH:MM:SS.ffffffZ`.
"""


def utc_if_naive(value: dt.datetime) -> dt.datetime:
    """The instant in UTC, a timestamp that names no zone being taken as UTC."""
    return to_utc(value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC))


NaiveAsUtc = Annotated[dt.datetime, AfterValidator(utc_if_naive)]
"""A timestamp whose producers write no zone (`2026-11-01 10:00:00`), read as UTC; one with a zone keeps its instant.

For sources known to write UTC without saying so. Held, stored and partitioned as `EventTime` is (ADR 0006); a
source that writes local time needs its offset, not this type.
"""


@dataclass(frozen=True)
class Lookup:
    """A join from a dataset's records to a reference dataset on a shared key, made at curation time.

    The curated SQL joins the reference's versions as of each record's event time (`<reference>_history`); the
    Spark job reads the declaration to find which dates a changed reference key touches, so that their curated
    rows are rebuilt (ADR 0007).
    """

    dataset: str
    on: str


@dataclass(frozen=True)
class Derived:
    """A column computed from a record's own fields: a Spark SQL expression, cast to `data_type` (a Spark/Hive type)."""

    name: str
    data_type: str
    expression: str


@dataclass(frozen=True)
class Curated:
    """A curated table a dataset feeds, built by Athena from `sql/curated/<name>.sql` (its DDL in `<name>.table.sql`).

    Parameters
    ----------
    name
        The table's name in the catalog and its folder in the curated bucket.
    partition_column
        The date partition a run rebuilds for the dates of the dataset's rows it wrote, emptied, or whose reference
        data changed; None for a table rebuilt whole whenever a dataset it reads changed.
    reads
        Other datasets the table's query reads directly (not through point-in-time lookups), whose change calls for a
        rebuild of a whole table.
    """

    name: str
    partition_column: str | None = None
    reads: tuple[str, ...] = ()


@dataclass(frozen=True)
class Measure:
    """One aggregate column of a rollup: `count` (its rows), `count_distinct` of a column (nulls not counted) or
    `sum` of a column (exact for integers and decimals: a decimal(p,s) sums to decimal(min(p+10, 38),s))."""

    name: str
    kind: Literal["count", "count_distinct", "sum"]
    column: str | None = None

    def __post_init__(self) -> None:
        if (self.kind == "count") != (self.column is None):
            raise ValueError(f"measure {self.name}: `count` takes no column, `{self.kind}` needs one")


@dataclass(frozen=True)
class Rollup:
    """An exact per-day aggregate of a dataset's processed rows, written by the Spark job beside them (ADR 0030).

    One row per `event_date` and distinct `group_by` values, with `measures`; a catalog table of the processed zone
    called `name`, partitioned by `event_date` like the dataset, in `<processed>/<name>/`. Each run that rewrites or
    removes a date of the dataset rewrites or removes the same date of each rollup, so a curated query at that grain
    or coarser reads the rollup instead of every row (a count of distinct values is exact only at its own grain).

    Parameters
    ----------
    name
        The catalog table and its folder in the processed bucket.
    group_by
        Columns of the dataset's rows (contract fields or derived columns) the day's rows are grouped by.
    measures
        The aggregate columns (see `Measure`).
    """

    name: str
    group_by: tuple[str, ...]
    measures: tuple[Measure, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """The dataset's columns the rollup reads: its groups and its measures' columns, in order, once each."""
        named = [*self.group_by, *(m.column for m in self.measures if m.column is not None)]
        return tuple(dict.fromkeys(named))


@dataclass(frozen=True)
class Check:
    """A quality rule of a dataset, as data: `kind` names one of the gate's rules, `columns` its arguments.

    Kinds: `positive` (each column > 0 on every row), `equals_product` (the first column equals the product of the
    others, exactly), `freshness` (the newest event at most `max_age_hours` old; the setting when None).
    """

    kind: Literal["positive", "equals_product", "freshness"]
    columns: tuple[str, ...] = ()
    max_age_hours: float | None = None


@dataclass(frozen=True)
class Dataset:
    """A dataset as the pipeline sees it.

    Parameters
    ----------
    name
        The dataset's name: the landing key prefix, the raw zone folder and the catalog table.
    contract
        The pydantic model every record must satisfy.
    key
        Fields that identify a record; the processed zone keeps one record per key.
    event_time
        The field that dates a record; raw and processed data are partitioned by its date.
    formats
        Object formats accepted on the landing bucket.
    version
        The contract version, recorded in every manifest.
    version_field
        A field that orders the versions of a key (reference data: its own `updated_at`). Where two records share
        a key, the greater version wins whatever the delivery order; without one, the latest ingestion wins.
    keep_versions
        Keep every version of a key (with `version_field`): the processed zone then holds one row per key and
        version, the history point-in-time enrichment reads (`<dataset>_history` views, ADR 0007).
    lookups
        The reference datasets its records are enriched from (see `Lookup`).
    derived
        Columns the processed zone adds to each record (see `Derived`).
    checks
        Quality rules beyond the baseline every dataset gets (see `Check`).
    deliveries
        How its records arrive (files always may; a stream; the scheduled API pull).
    csv_delimiter
        The field separator of its CSV objects (`,` unless its producers write `;`, a tab or `|`).
    curated
        The curated tables it feeds (see `Curated`).
    rollups
        Per-day aggregates of its processed rows the Spark job writes beside them (see `Rollup`).
    """

    name: str
    contract: type[Contract]
    key: tuple[str, ...]
    event_time: str
    formats: frozenset[Format] = field(default_factory=lambda: frozenset(Format))
    version: str = "1.0.0"
    version_field: str | None = None
    keep_versions: bool = False
    lookups: tuple[Lookup, ...] = ()
    derived: tuple[Derived, ...] = ()
    checks: tuple[Check, ...] = ()
    deliveries: frozenset[Delivery] = frozenset({Delivery.FILE})
    csv_delimiter: str = ","
    curated: tuple[Curated, ...] = ()
    rollups: tuple[Rollup, ...] = ()

    def __post_init__(self) -> None:
        fields = self.contract.model_fields
        named = [
            *self.key,
            self.event_time,
            *([self.version_field] if self.version_field else []),
            *(lookup.on for lookup in self.lookups),
        ]
        derived = {d.name for d in self.derived}
        named += [c for check in self.checks for c in check.columns if c not in derived]
        missing = [f for f in named if f not in fields]
        if missing:
            raise ValueError(f"dataset {self.name}: fields {missing} are not in {self.contract.__name__}")
        if self.keep_versions and self.version_field is None:
            raise ValueError(f"dataset {self.name}: keep_versions needs a version_field")
        if len(self.csv_delimiter) != 1 or self.csv_delimiter in '"\r\n':
            raise ValueError(f"dataset {self.name}: csv_delimiter must be one character other than a quote or newline")
        if any(self.name in table.reads for table in self.curated):
            raise ValueError(f"dataset {self.name}: a curated table's `reads` names other datasets, not its own")
        self._check_rollups(set(fields) | derived)

    def _check_rollups(self, columns: set[str]) -> None:
        names = [rollup.name for rollup in self.rollups]
        if len(set(names)) != len(names) or self.name in names:
            raise ValueError(
                f"dataset {self.name}: rollup names {names} must be distinct and differ from the dataset's"
            )
        for rollup in self.rollups:
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", rollup.name):
                raise ValueError(f"dataset {self.name}: rollup name {rollup.name!r} is not a table name")
            unknown = [c for c in rollup.columns if c not in columns]
            if unknown:
                raise ValueError(f"dataset {self.name}: rollup {rollup.name} reads {unknown}, not columns of its rows")
            outputs = [*rollup.group_by, *(m.name for m in rollup.measures), "event_date"]
            if not rollup.measures or len(set(outputs)) != len(outputs):
                raise ValueError(f"dataset {self.name}: rollup {rollup.name} needs measures, every column named once")

    @property
    def record_key(self) -> tuple[str, ...]:
        """The fields that identify one row of the processed zone: the key, plus the version when versions are kept."""
        if self.keep_versions and self.version_field is not None:
            return (*self.key, self.version_field)
        return self.key

"""Spark job raw → processed: typed, deduplicated, enriched Parquet partitioned by event date, catalogued.

The job imports the contracts (`datalake.contracts`) instead of taking a schema argument: the Spark schema,
the key and the event-time field all derive from the one pydantic model per dataset, so a new dataset needs
no change here and no second schema can drift from the contract. On Glue 5.0 the layer is not installed, so
the job definition ships it: `--extra-py-files s3://<Artifacts>/glue/datalake.zip` (the zip of
`layers/common/datalake`, built and uploaded beside this script by `lakebox.glue.upload_glue_artifacts` or the
deploy step) and `--additional-python-modules pydantic==2.14.3`. On EMR Serverless the same zip goes in
`spark.submit.pyFiles`. Only `datalake.contracts` and `datalake.exceptions` are imported; they need pydantic.

New raw data is found with an explicit watermark rather than Glue job bookmarks (bookmarks only track
DynamicFrame sources and exist neither on EMR Serverless nor locally): the job reads raw objects modified
after the time stored in `<processed>/_watermarks/<dataset>.json` (or after `--since`) and older than
`--settle_seconds` (set it to the longest ingestion, so an object still being written is left for the next
run), and moves the watermark once the run's summary is written to `<processed>/_runs/<run_id>/summary.json`.
Files are listed and small objects read through Hadoop's FileSystem, so `s3://` on Glue/EMR and `file://`
staging folders locally behave the same. `staging_plan` exposes that plan to a local runtime, which stages
exactly those inputs. `awsglue` is imported only in the `__main__` bootstrap.

Arguments (without the leading `--`): `raw_path`, `processed_path` (URIs of the zones' roots),
`catalog_processed_path` (the location the catalog records, default `processed_path`), `datasets` (JSON list or
comma-separated; default all), `database` (default `data_lake_db`), `table_prefix` (default empty),
`update_catalog` (default `true`), `run_id` (default Glue's `JOB_RUN_ID`), `since` (ISO-8601), `settle_seconds`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from graphlib import TopologicalSorter
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Protocol, Union, get_args, get_origin

import boto3
from pydantic import AwareDatetime, NaiveDatetime
from pydantic.fields import FieldInfo
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from datalake.contracts import REGISTRY, Dataset, get_dataset
from datalake.exceptions import TerminalError

logger = logging.getLogger(__name__)

PARTITION_COLUMN = "event_date"
HOUR_COLUMN = "event_hour"
LINEAGE: tuple[T.StructField, ...] = (
    T.StructField("_source_key", T.StringType()),
    T.StructField("_source_version", T.StringType()),
    T.StructField("_line", T.LongType()),
    T.StructField("_ingested_at", T.TimestampType()),
)
REVENUE_TYPE = T.DecimalType(18, 2)
"""quantity (at most 10^4) times unit_price (below 10^10) always fits, with the price's two decimals kept exactly."""

OPTION_NAMES = (
    "datasets",
    "raw_path",
    "processed_path",
    "catalog_processed_path",
    "database",
    "table_prefix",
    "update_catalog",
    "run_id",
    "since",
    "settle_seconds",
)
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
_RAW_PARTITION = re.compile(r"(?:^|/)year=(\d{4})/month=(\d{2})/day=(\d{2})/")
_GLOB_CHARS = re.compile(r"([\\\[\]{}*?])")


@dataclass(frozen=True)
class Lookup:
    """Columns copied from the latest version of a reference dataset, joined on a shared key."""

    dataset: str
    on: str
    columns: Mapping[str, str]
    """Reference column → output column."""


@dataclass(frozen=True)
class Derived:
    """A column computed from a record's own fields."""

    name: str
    data_type: T.DataType
    expression: Callable[[], Column]


def _revenue() -> Column:
    return (F.col("quantity").cast(T.DecimalType(10, 0)) * F.col("unit_price")).cast(REVENUE_TYPE)


ENRICHMENTS: Mapping[str, tuple[Lookup, ...]] = {
    "sales": (
        Lookup("products", "product_id", {"name": "product_name", "category": "category"}),
        Lookup("customers", "customer_id", {"segment": "customer_segment", "region": "customer_region"}),
    ),
}
DERIVED: Mapping[str, tuple[Derived, ...]] = {
    "sales": (Derived("revenue", REVENUE_TYPE, _revenue),),
}


# ---------------------------------------------------------------------------------------------- schemas


def contract_schema(dataset: Dataset) -> T.StructType:
    """Spark schema of a dataset's contract fields, derived from its pydantic model.

    Parameters
    ----------
    dataset
        The registered dataset.

    Returns
    -------
    StructType
        One nullable field per contract field: `str`/`Literal` → string, `int` → int (long when unbounded),
        `bool` → boolean, `Decimal` → decimal(max_digits, decimal_places), aware datetimes → timestamp.
    """
    return T.StructType(
        [T.StructField(name, _spark_type(info.annotation, tuple(info.metadata))) for name, info in _fields(dataset)]
    )


def typed_schema(dataset: Dataset) -> T.StructType:
    """The contract schema plus the typed lineage columns: what the job deduplicates."""
    return T.StructType([*contract_schema(dataset).fields, *LINEAGE])


def raw_schema(dataset: Dataset) -> T.StructType:
    """Every contract and lineage field read as a string: raw values arrive as JSON scalars or CSV text."""
    return T.StructType([T.StructField(f.name, T.StringType()) for f in typed_schema(dataset).fields])


def _fields(dataset: Dataset) -> list[tuple[str, FieldInfo]]:
    return list(dataset.contract.model_fields.items())


def _optional(info: FieldInfo) -> bool:
    return not info.is_required() or _strip_none(info.annotation)[1]


def _strip_none(annotation: Any) -> tuple[Any, bool]:
    if get_origin(annotation) in (Union, UnionType):
        members = [a for a in get_args(annotation) if a is not NoneType]
        if len(members) != 1:
            raise TypeError(f"unions other than `X | None` have no Spark type: {annotation!r}")
        return members[0], True
    return annotation, False


def _spark_type(annotation: Any, metadata: tuple[Any, ...]) -> T.DataType:
    annotation, _ = _strip_none(annotation)
    if get_origin(annotation) is Annotated:
        inner, *extra = get_args(annotation)
        return _spark_type(inner, (*metadata, *extra))
    if get_origin(annotation) is Literal:
        kinds = {type(v) for v in get_args(annotation)}
        if len(kinds) != 1:
            raise TypeError(f"a Literal must have values of one type: {annotation!r}")
        return _spark_type(kinds.pop(), metadata)
    if annotation is bool:
        return T.BooleanType()
    if annotation is int:
        bound = max(
            (abs(getattr(m, a)) for m in metadata for a in ("le", "lt", "ge", "gt") if hasattr(m, a)), default=None
        )
        return T.IntegerType() if bound is not None and bound < 2**31 - 1 else T.LongType()
    if annotation is float:
        return T.DoubleType()
    if annotation is Decimal:
        digits = next((m.max_digits for m in metadata if getattr(m, "max_digits", None)), None)
        places = next((m.decimal_places for m in metadata if getattr(m, "decimal_places", None) is not None), None)
        if digits is None or places is None:
            raise TypeError("a Decimal field needs max_digits and decimal_places to have a Spark type")
        return T.DecimalType(digits, places)
    if annotation in (AwareDatetime, NaiveDatetime) or (
        isinstance(annotation, type) and issubclass(annotation, datetime)
    ):
        return T.TimestampType()
    if isinstance(annotation, type) and issubclass(annotation, date):
        return T.DateType()
    if annotation is str:
        return T.StringType()
    raise TypeError(f"no Spark type for {annotation!r}")


# ------------------------------------------------------------------------------------------- transforms


def transform_cast(df: DataFrame, dataset: Dataset) -> DataFrame:
    """Cast raw records to the contract's types and keep the lineage columns.

    Parameters
    ----------
    df
        Raw records with `raw_schema(dataset)`: every value a string (JSON numbers and booleans keep their
        text, CSV values arrive as text, `"true"`/`"false"` for booleans).
    dataset
        The dataset whose contract gives the types.

    Returns
    -------
    DataFrame
        Columns of `typed_schema(dataset)`: decimals exact, timestamps converted to UTC, an empty string
        in an optional field read as null.
    """
    optional = {name for name, info in _fields(dataset) if _optional(info)}
    columns = []
    for fld in typed_schema(dataset).fields:
        value = F.col(fld.name)
        if fld.name in optional:
            value = F.when(value == "", F.lit(None)).otherwise(value)
        columns.append(value.cast(fld.dataType).alias(fld.name))
    return df.select(*columns)


def _newest_first(*columns: str) -> list[Column]:
    order = [*columns, "_ingested_at", "_source_key", "_source_version", "_line"]
    return [F.col(c).desc_nulls_last() for c in order]


def _keep_first(df: DataFrame, key: Sequence[str], order: list[Column]) -> DataFrame:
    window = Window.partitionBy(*key).orderBy(*order)
    return df.withColumn("_rank", F.row_number().over(window)).where(F.col("_rank") == 1).drop("_rank")


def transform_deduplicate(df: DataFrame, dataset: Dataset) -> DataFrame:
    """Keep one record per dataset key: the latest `_ingested_at` wins (ties broken by source and line)."""
    return _keep_first(df, dataset.key, _newest_first())


def transform_latest_version(df: DataFrame, dataset: Dataset) -> DataFrame:
    """Keep each key's latest version: the latest event time (`updated_at` for reference data), then ingestion."""
    return _keep_first(df, dataset.key, _newest_first(dataset.event_time))


def transform_derive(df: DataFrame, dataset: Dataset) -> DataFrame:
    """Add `event_date` and `event_hour` (UTC, from the event-time field) and the dataset's derived columns."""
    event_time = F.col(dataset.event_time)
    out = df.withColumn(PARTITION_COLUMN, F.to_date(event_time)).withColumn(HOUR_COLUMN, F.hour(event_time))
    for derived in DERIVED.get(dataset.name, ()):
        out = out.withColumn(derived.name, derived.expression().cast(derived.data_type))
    return out


def transform_enrich(df: DataFrame, dataset: Dataset, references: Mapping[str, DataFrame]) -> DataFrame:
    """Left-join the dataset's lookups (`ENRICHMENTS`) from the latest versions of its reference datasets.

    Parameters
    ----------
    df
        Records of `dataset`.
    dataset
        The dataset being enriched.
    references
        Reference dataset name → one row per key (see `transform_latest_version`).

    Returns
    -------
    DataFrame
        `df` with the lookup columns added; null where the reference has no such key.
    """
    for lookup in ENRICHMENTS.get(dataset.name, ()):
        wanted = [F.col(lookup.on), *(F.col(src).alias(dst) for src, dst in lookup.columns.items())]
        df = df.join(F.broadcast(references[lookup.dataset].select(*wanted)), on=lookup.on, how="left")
    return df


def processed_columns(dataset: Dataset) -> list[str]:
    """Column order of the processed zone: contract, derived, lookups, hour, lineage, then the partition."""
    lookups = [dst for lookup in ENRICHMENTS.get(dataset.name, ()) for dst in lookup.columns.values()]
    return [
        *(name for name, _ in _fields(dataset)),
        *(d.name for d in DERIVED.get(dataset.name, ())),
        *lookups,
        HOUR_COLUMN,
        *(f.name for f in LINEAGE),
        PARTITION_COLUMN,
    ]


def transform_processed(
    new: DataFrame, existing: DataFrame, dataset: Dataset, references: Mapping[str, DataFrame]
) -> DataFrame:
    """The processed rows of the touched dates: new and existing together, deduplicated, derived, enriched, in order."""
    merged = transform_deduplicate(new.unionByName(existing), dataset)
    enriched = transform_enrich(transform_derive(merged, dataset), dataset, references)
    return enriched.select(*processed_columns(dataset))


# ----------------------------------------------------------------------------------------------- storage


@dataclass(frozen=True)
class FileInfo:
    """A stored file: its URI, its path relative to the listed prefix, its size and modification time."""

    uri: str
    relative: str
    size: int
    modified: datetime


class FileStore(Protocol):
    """The little file access the plan needs; Hadoop's FileSystem in the job, boto3 S3 in a local runtime."""

    def list_files(self, prefix: str) -> list[FileInfo]:
        """Every file under `prefix` (recursively); empty when it does not exist."""
        ...

    def exists(self, uri: str) -> bool:
        """Whether a file or a non-empty folder exists at `uri`."""
        ...

    def read_text(self, uri: str) -> str | None:
        """The UTF-8 text of a small file, or None when absent."""
        ...

    def write_text(self, uri: str, text: str) -> None:
        """Write a small UTF-8 file, replacing it."""
        ...


class HadoopStore:
    """`FileStore` over Hadoop's FileSystem, reached through the SparkSession's JVM (s3:// on Glue, file:// here)."""

    def __init__(self, spark: SparkSession) -> None:
        jvm = spark.sparkContext._jvm
        if jvm is None:
            raise RuntimeError("the SparkSession has no JVM")
        self._jvm = jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()

    def _resolve(self, uri: str) -> tuple[Any, Any]:
        path = self._jvm.org.apache.hadoop.fs.Path(uri)
        return path, path.getFileSystem(self._conf)

    def list_files(self, prefix: str) -> list[FileInfo]:
        """Every file under `prefix`, recursively; empty when the folder does not exist."""
        path, fs = self._resolve(prefix)
        if not fs.exists(path):
            return []
        root = fs.makeQualified(path).toString().rstrip("/") + "/"
        files = []
        listing = fs.listFiles(path, True)
        while listing.hasNext():
            status = listing.next()
            uri = status.getPath().toString()
            modified = datetime.fromtimestamp(status.getModificationTime() / 1000, UTC)
            files.append(FileInfo(uri, uri.removeprefix(root), int(status.getLen()), modified))
        return files

    def exists(self, uri: str) -> bool:
        """Whether a file or folder exists at `uri`."""
        path, fs = self._resolve(uri)
        return bool(fs.exists(path))

    def read_text(self, uri: str) -> str | None:
        """The UTF-8 text at `uri`, or None."""
        path, fs = self._resolve(uri)
        if not fs.exists(path):
            return None
        stream = fs.open(path)
        try:
            return str(self._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
        finally:
            stream.close()

    def write_text(self, uri: str, text: str) -> None:
        """Write `text` to `uri`, replacing it."""
        path, fs = self._resolve(uri)
        stream = fs.create(path, True)
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()


# -------------------------------------------------------------------------------------------------- plan


def _folder(uri: str) -> str:
    return uri if uri.endswith("/") else uri + "/"


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _ordered(names: Iterable[str]) -> tuple[Dataset, ...]:
    wanted = list(dict.fromkeys(names))
    graph = {n: {lk.dataset for lk in ENRICHMENTS.get(n, ()) if lk.dataset in wanted} for n in wanted}
    return tuple(get_dataset(n) for n in TopologicalSorter(graph).static_order())


def _parse_datasets(value: str | None) -> list[str]:
    if not value or not value.strip():
        return list(REGISTRY)
    text = value.strip()
    names = json.loads(text) if text.startswith("[") else [n.strip() for n in text.split(",")]
    return [str(n) for n in names if str(n)]


@dataclass(frozen=True)
class JobOptions:
    """The job's arguments, parsed and defaulted."""

    datasets: tuple[Dataset, ...]
    raw_path: str
    processed_path: str
    catalog_processed_path: str
    database: str = "data_lake_db"
    table_prefix: str = ""
    update_catalog: bool = True
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    since: datetime | None = None
    settle: timedelta = timedelta(0)

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> JobOptions:
        """Parse the job arguments (names without `--`); raises `TerminalError` when a path is missing."""
        missing = [n for n in ("raw_path", "processed_path") if not args.get(n)]
        if missing:
            raise TerminalError(f"missing job arguments: {', '.join('--' + n for n in missing)}")
        processed = _folder(args["processed_path"])
        run_id = args.get("run_id") or args.get("JOB_RUN_ID") or uuid.uuid4().hex
        return cls(
            datasets=_ordered(_parse_datasets(args.get("datasets"))),
            raw_path=_folder(args["raw_path"]),
            processed_path=processed,
            catalog_processed_path=_folder(args.get("catalog_processed_path") or processed),
            database=args.get("database") or "data_lake_db",
            table_prefix=args.get("table_prefix", ""),
            update_catalog=args.get("update_catalog", "true").strip().lower() not in ("false", "0", "no"),
            run_id=run_id,
            since=_parse_time(args["since"]) if args.get("since") else None,
            settle=timedelta(seconds=float(args.get("settle_seconds") or 0)),
        )

    def watermark_uri(self, dataset: str) -> str:
        """Where the dataset's watermark lives."""
        return f"{self.processed_path}_watermarks/{dataset}.json"

    def summary_uri(self) -> str:
        """Where this run's summary is written."""
        return f"{self.processed_path}_runs/{self.run_id}/summary.json"

    def partition_uri(self, root: str, dataset: str, day: date) -> str:
        """The folder of one processed partition under `root`."""
        return f"{root}{dataset}/{PARTITION_COLUMN}={day.isoformat()}/"


@dataclass(frozen=True)
class DatasetPlan:
    """What one dataset's run reads: new raw files, their dates, and the processed partitions of those dates."""

    dataset: str
    watermark: datetime | None
    raw_files: tuple[FileInfo, ...]
    dates: tuple[date, ...]
    existing_partitions: tuple[str, ...]

    @property
    def high_water(self) -> datetime | None:
        """The newest modification time among the files read: the next watermark."""
        return max((f.modified for f in self.raw_files), default=None)


@dataclass(frozen=True)
class JobPlan:
    """The whole run's inputs."""

    options: JobOptions
    datasets: tuple[DatasetPlan, ...]
    references: tuple[str, ...]

    def inputs(self, store: FileStore) -> list[str]:
        """URIs the run reads: raw files, processed partitions and reference roots (ending in `/`), watermarks."""
        uris: list[str] = []
        for plan in self.datasets:
            uris += [f.uri for f in plan.raw_files]
            uris += plan.existing_partitions
            watermark = self.options.watermark_uri(plan.dataset)
            if store.exists(watermark):
                uris.append(watermark)
        return list(dict.fromkeys([*uris, *self.references]))


def _raw_date(relative: str) -> date:
    match = _RAW_PARTITION.search(relative)
    if match is None:
        raise TerminalError(f"raw file outside a year=/month=/day= partition: {relative}")
    return date(int(match[1]), int(match[2]), int(match[3]))


def _hidden(relative: str) -> bool:
    return any(part.startswith((".", "_")) for part in relative.split("/"))


def read_watermark(store: FileStore, options: JobOptions, dataset: str) -> datetime | None:
    """The modification time of the newest raw file a previous run read, or None before the first run."""
    text = store.read_text(options.watermark_uri(dataset))
    return _parse_time(json.loads(text)["last_modified"]) if text else None


def plan_dataset(store: FileStore, options: JobOptions, dataset: Dataset, now: datetime) -> DatasetPlan:
    """Find a dataset's new raw files: modified after its watermark (or `since`) and before `now - settle`."""
    watermark = options.since or read_watermark(store, options, dataset.name)
    cutoff = now - options.settle
    files = tuple(
        sorted(
            (
                f
                for f in store.list_files(f"{options.raw_path}{dataset.name}/")
                if not _hidden(f.relative) and (watermark is None or f.modified > watermark) and f.modified <= cutoff
            ),
            key=lambda f: f.relative,
        )
    )
    dates = tuple(sorted({_raw_date(f.relative) for f in files}))
    partitions = tuple(
        uri for d in dates if store.exists(uri := options.partition_uri(options.processed_path, dataset.name, d))
    )
    return DatasetPlan(dataset.name, watermark, files, dates, partitions)


def build_plan(options: JobOptions, store: FileStore, now: datetime) -> JobPlan:
    """Plan every dataset of the run, and the reference data their enrichment needs."""
    plans = tuple(plan_dataset(store, options, d, now) for d in options.datasets)
    references = [
        f"{options.processed_path}{lookup.dataset}/"
        for plan in plans
        if plan.raw_files
        for lookup in ENRICHMENTS.get(plan.dataset, ())
    ]
    return JobPlan(options, plans, tuple(dict.fromkeys(references)))


@dataclass(frozen=True)
class StagingPlan:
    """What a local runtime must stage for `run`: the roots it may relocate, the inputs, the args to pin."""

    roots: Mapping[str, str]
    """Argument name → root URI; a runtime may point the argument at a local copy of the root."""
    inputs: tuple[str, ...]
    """URIs to copy in: files, or folders when ending with `/`."""
    args: Mapping[str, str]
    """Arguments to add when the roots are relocated (the catalog keeps the real locations)."""


def staging_plan(args: Mapping[str, str], store: FileStore, now: datetime | None = None) -> StagingPlan:
    """The inputs `run(spark, args)` will read, planned against `store` (used by `lakebox.glue`).

    Parameters
    ----------
    args
        The job arguments, names without `--`.
    store
        Access to the roots' storage (the local S3 in lakebox).
    now
        The planning time; defaults to now.

    Returns
    -------
    StagingPlan
        Bounded inputs: the raw files past the watermark, the processed partitions of their dates, the
        reference datasets' processed data and the watermarks.
    """
    options = JobOptions.from_args(args)
    plan = build_plan(options, store, now or datetime.now(UTC))
    return StagingPlan(
        roots={"raw_path": options.raw_path, "processed_path": options.processed_path},
        inputs=tuple(plan.inputs(store)),
        args={"catalog_processed_path": options.catalog_processed_path},
    )


# ----------------------------------------------------------------------------------------------- catalog


def glue_table_input(name: str, schema: T.StructType, location: str) -> dict[str, Any]:
    """A Glue `TableInput` for Parquet (Hive Parquet SerDe) partitioned by `event_date` (a date)."""
    columns = [{"Name": f.name, "Type": f.dataType.simpleString()} for f in schema.fields if f.name != PARTITION_COLUMN]
    return {
        "Name": name,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE", "parquet.compression": "SNAPPY"},
        "PartitionKeys": [{"Name": PARTITION_COLUMN, "Type": "date"}],
        "StorageDescriptor": _storage(columns, location),
    }


def _storage(columns: list[dict[str, str]], location: str) -> dict[str, Any]:
    return {
        "Columns": columns,
        "Location": location,
        "InputFormat": PARQUET_INPUT,
        "OutputFormat": PARQUET_OUTPUT,
        "Compressed": True,
        "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE, "Parameters": {"serialization.format": "1"}},
    }


def update_catalog(
    glue: Any, database: str, table: str, schema: T.StructType, location: str, days: Sequence[date]
) -> int:
    """Create or update the table, then register the partitions of `days`; returns the partitions added.

    Parameters
    ----------
    glue
        A boto3 Glue client.
    database, table
        Where the table lives.
    schema
        The processed DataFrame's schema (the partition column is taken out of the columns).
    location
        The table's root URI, as the catalog must record it (`s3://…/<dataset>/`).
    days
        The partitions written.
    """
    table_input = glue_table_input(table, schema, location)
    try:
        current = glue.get_table(DatabaseName=database, Name=table)["Table"]
    except glue.exceptions.EntityNotFoundException:
        glue.create_table(DatabaseName=database, TableInput=table_input)
    else:
        if current.get("StorageDescriptor", {}).get("Columns") != table_input["StorageDescriptor"]["Columns"]:
            glue.update_table(DatabaseName=database, TableInput=table_input)
    columns = table_input["StorageDescriptor"]["Columns"]
    inputs = [
        {"Values": [d.isoformat()], "StorageDescriptor": _storage(columns, f"{location}{PARTITION_COLUMN}={d}/")}
        for d in days
    ]
    added = 0
    for start in range(0, len(inputs), 100):
        chunk = inputs[start : start + 100]
        errors = glue.batch_create_partition(DatabaseName=database, TableName=table, PartitionInputList=chunk)
        failed = [e for e in errors.get("Errors", []) if e["ErrorDetail"]["ErrorCode"] != "AlreadyExistsException"]
        if failed:
            raise TerminalError(f"catalog partitions of {database}.{table} not created: {failed}")
        added += len(chunk) - len(errors.get("Errors", []))
    return added


# --------------------------------------------------------------------------------------------------- run


def _configure(spark: SparkSession) -> None:
    spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    spark.conf.set("spark.sql.parquet.compression.codec", "snappy")
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    hadoop.set("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")


def _escape_glob(uri: str) -> str:
    return _GLOB_CHARS.sub(r"\\\1", uri)


def read_processed(spark: SparkSession, dataset: Dataset, paths: Sequence[str]) -> DataFrame:
    """Typed rows (contract + lineage) of processed Parquet under `paths`; empty when there are none."""
    schema = typed_schema(dataset)
    if not paths:
        return spark.createDataFrame([], schema)
    return spark.read.schema(schema).parquet(*paths).select(*schema.fieldNames())


def processed_schema(spark: SparkSession, dataset: Dataset) -> T.StructType:
    """The schema of the processed zone's rows for `dataset` (what the catalog table declares)."""
    empty = read_processed(spark, dataset, [])
    references = {
        lk.dataset: read_processed(spark, get_dataset(lk.dataset), []) for lk in ENRICHMENTS.get(dataset.name, ())
    }
    return transform_processed(empty, empty, dataset, references).schema


def _references(spark: SparkSession, store: FileStore, options: JobOptions, dataset: Dataset) -> dict[str, DataFrame]:
    references = {}
    for lookup in ENRICHMENTS.get(dataset.name, ()):
        reference = get_dataset(lookup.dataset)
        root = f"{options.processed_path}{reference.name}/"
        paths = [root] if store.exists(root) else []
        references[reference.name] = transform_latest_version(read_processed(spark, reference, paths), reference)
    return references


def _count_by_day(df: DataFrame) -> dict[date, int]:
    return {row[0]: int(row[1]) for row in df.groupBy(PARTITION_COLUMN).count().collect()}


def _count_inputs(new: DataFrame, existing: DataFrame, dataset: Dataset) -> tuple[dict[date, int], int]:
    """New rows per event date and the existing rows' total, in one Spark job."""
    day = F.to_date(dataset.event_time).alias(PARTITION_COLUMN)
    tagged = new.select(day, F.lit(True).alias("_new")).unionByName(existing.select(day, F.lit(False).alias("_new")))
    rows = tagged.groupBy(PARTITION_COLUMN, "_new").count().collect()
    return {r[0]: int(r[2]) for r in rows if r[1]}, sum(int(r[2]) for r in rows if not r[1])


def write_partitions(df: DataFrame, dataset: Dataset, path: str) -> None:
    """Write Parquet (snappy) partitioned by `event_date`, one file per date; only those dates are replaced."""
    ordered = df.repartition(PARTITION_COLUMN).sortWithinPartitions(*dataset.key)
    ordered.write.mode("overwrite").partitionBy(PARTITION_COLUMN).option("compression", "snappy").parquet(path)


def process_dataset(spark: SparkSession, store: FileStore, options: JobOptions, plan: DatasetPlan) -> dict[str, Any]:
    """Read, type, deduplicate, enrich and write one dataset's new data; returns its part of the summary."""
    dataset = get_dataset(plan.dataset)
    table = f"{options.table_prefix}{dataset.name}"
    summary: dict[str, Any] = {
        "table": table,
        "rows_in": 0,
        "rows_existing": 0,
        "duplicates_dropped": 0,
        "rows_out": 0,
        "partitions": [],
        "raw_files": [f"{dataset.name}/{f.relative}" for f in plan.raw_files],
        "watermark": {"previous": plan.watermark.isoformat() if plan.watermark else None},
    }
    location = f"{options.catalog_processed_path}{dataset.name}/"
    if not plan.raw_files:
        summary["watermark"]["current"] = summary["watermark"]["previous"]
        if options.update_catalog:
            update_catalog(
                boto3.client("glue"), options.database, table, processed_schema(spark, dataset), location, []
            )
        return summary
    raw = spark.read.schema(raw_schema(dataset)).option("mode", "FAILFAST")
    new = transform_cast(raw.json([_escape_glob(f.uri) for f in plan.raw_files]), dataset).persist()
    out: DataFrame | None = None
    try:
        existing = read_processed(spark, dataset, plan.existing_partitions)
        new_days, rows_existing = _count_inputs(new, existing, dataset)
        if strays := set(new_days) - set(plan.dates):
            dates = ", ".join(sorted(map(str, strays)))
            raise TerminalError(f"{dataset.name}: records dated {dates} lie outside their raw partitions")
        references = _references(spark, store, options, dataset)
        out = transform_processed(new, existing, dataset, references).persist()
        out_days = _count_by_day(out)
        write_partitions(out, dataset, f"{options.processed_path}{dataset.name}/")
        if options.update_catalog:
            summary["catalog_partitions_added"] = update_catalog(
                boto3.client("glue"), options.database, table, out.schema, location, sorted(out_days)
            )
    finally:
        new.unpersist()
        if out is not None:
            out.unpersist()
    rows_in, rows_out = sum(new_days.values()), sum(out_days.values())
    summary.update(
        rows_in=rows_in,
        rows_existing=rows_existing,
        duplicates_dropped=rows_in + rows_existing - rows_out,
        rows_out=rows_out,
        partitions=[d.isoformat() for d in sorted(out_days)],
    )
    high_water = plan.high_water
    summary["watermark"]["current"] = high_water.isoformat() if high_water else None
    return summary


def run(spark: SparkSession, args: Mapping[str, str]) -> dict[str, Any]:
    """Process the new raw data of each dataset into the processed zone and the catalog.

    Parameters
    ----------
    spark
        The session (Glue's, EMR Serverless's or a local one).
    args
        Job arguments without the leading `--` (see the module docstring).

    Returns
    -------
    dict
        The run summary, also written to `<processed>/_runs/<run_id>/summary.json`: per dataset the rows read
        (`rows_in`), the rows the touched partitions held before (`rows_existing`), `duplicates_dropped`
        (= rows_in + rows_existing - rows_out), `rows_out`, the `partitions` (event dates) written, the
        `raw_files` read (keys relative to the raw root) and the watermark moves.
    """
    started = datetime.now(UTC)
    options = JobOptions.from_args(args)
    _configure(spark)
    store = HadoopStore(spark)
    plan = build_plan(options, store, started)
    results = {p.dataset: process_dataset(spark, store, options, p) for p in plan.datasets}
    summary = {
        "run_id": options.run_id,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "datasets": results,
    }
    store.write_text(options.summary_uri(), json.dumps(summary, indent=2))
    for dataset_plan in plan.datasets:
        if (high_water := dataset_plan.high_water) is not None:
            mark = {"dataset": dataset_plan.dataset, "last_modified": high_water.isoformat(), "run_id": options.run_id}
            store.write_text(options.watermark_uri(dataset_plan.dataset), json.dumps(mark))
    logger.info("raw_to_processed %s: %s", options.run_id, {k: v["rows_out"] for k, v in results.items()})
    return summary


def parse_arguments(argv: Sequence[str]) -> dict[str, str]:
    """Parse spark-submit style `--name value` (or `--name=value`) pairs into a dict without the dashes."""
    args: dict[str, str] = {}
    items = list(argv)
    while items:
        item = items.pop(0)
        if not item.startswith("--"):
            raise TerminalError(f"unexpected argument {item!r}: expected --name value pairs")
        name, eq, value = item[2:].partition("=")
        if not eq:
            if not items:
                raise TerminalError(f"argument --{name} has no value")
            value = items.pop(0)
        args[name] = value
    return args


if __name__ == "__main__":
    import importlib.util

    if importlib.util.find_spec("awsglue") is not None:
        from awsglue.context import GlueContext
        from awsglue.job import Job
        from awsglue.utils import getResolvedOptions
        from pyspark.context import SparkContext

        present = [name for name in OPTION_NAMES if f"--{name}" in sys.argv]
        options = getResolvedOptions(sys.argv, ["JOB_NAME", "JOB_RUN_ID", *present])
        glue_context = GlueContext(SparkContext.getOrCreate())
        job = Job(glue_context)
        job.init(options["JOB_NAME"], options)
        run(glue_context.spark_session, options)
        job.commit()
    else:
        run(SparkSession.builder.appName("raw_to_processed").getOrCreate(), parse_arguments(sys.argv[1:]))

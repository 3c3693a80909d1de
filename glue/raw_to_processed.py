"""Spark job raw → processed: typed, deduplicated, enriched Parquet partitioned by event date, catalogued.

The job imports the contracts (`datalake.contracts`) instead of taking a schema argument: the Spark schema,
the key and the event-time field all derive from the one pydantic model per dataset, so a new dataset needs
no change here and no second schema can drift from the contract. On Glue 5.0 the layer is not installed, so
the job definition ships it: `--extra-py-files s3://<Artifacts>/glue/datalake.zip` (the zip of
`layers/common/datalake`, built and uploaded beside this script by `lakebox.services.glue.upload_glue_artifacts` or the
deploy step) and `--additional-python-modules pydantic==2.14.3`. On EMR Serverless the same zip goes in
`spark.submit.pyFiles`. Only `datalake.contracts` and `datalake.exceptions` are imported; they need pydantic.

New raw data is found with an explicit watermark rather than Glue job bookmarks (bookmarks only track
DynamicFrame sources and exist neither on EMR Serverless nor locally): the job reads raw objects modified
after the time stored in `<processed>/_watermarks/<dataset>.json` (or after `--since`) and older than
`--settle_seconds` (set it to the longest ingestion, so an object still being written is left for the next
run), and moves the watermark once the run's summary is written to `<processed>/_runs/<run_id>/summary.json`.
Files are listed and small objects read through Hadoop's FileSystem on `s3://` (Glue, EMR), and with plain file
calls on the `file://` folders a local runtime stages (the same listing, times to the millisecond), so a local run
plans without the JVM: `run` takes the session or a function making it, and a run with nothing new writes its
summary without starting Spark. `staging_plan` exposes the plan to a local runtime, which stages exactly those
inputs. `awsglue` is imported only in the `__main__` bootstrap. The datasets are processed in threads on the one
session, each as soon as the reference datasets it needs are done (`process_datasets`, ADR 0031).

Arguments (without the leading `--`): `raw_path`, `processed_path` (URIs of the zones' roots),
`catalog_processed_path` and `catalog_raw_path` (the locations the catalog records, default `processed_path` and
`raw_path`), `datasets` (JSON list or comma-separated; default all), `database` (default `data_lake_db`),
`table_prefix` (default empty), `update_catalog` (default `true`; it also declares the raw tables and judges
schema changes, ADR 0016), `run_id` (default Glue's `JOB_RUN_ID`), `since` (ISO-8601), `settle_seconds`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import shutil
import sys
import threading
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from graphlib import TopologicalSorter
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Protocol, Union, get_args, get_origin
from urllib.parse import unquote, urlsplit

import boto3
from pydantic import AwareDatetime, BaseModel, NaiveDatetime
from pydantic.fields import FieldInfo
from pyspark.sql import Column, DataFrame, Observation, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from datalake import schemas
from datalake.contracts import REGISTRY, Dataset, get_dataset
from datalake.contracts.base import Rollup
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

OPTION_NAMES = (
    "datasets",
    "raw_path",
    "processed_path",
    "catalog_processed_path",
    "catalog_raw_path",
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
RAW_PARTITION_PATTERN = r"(?:^|/)year=(\d{4})/month=(\d{2})/day=(\d{2})/(?:hour=(\d{2})/)?[^/]+$"
"""A raw file's partition: in its day's folder, or in an hour's folder inside it (Firehose delivery, ADR 0014)."""
_RAW_PARTITION = re.compile(RAW_PARTITION_PATTERN)
_RAW_FOLDER_PATTERN = r"(?:^|/)(year=\d{4}/month=\d{2}/day=\d{2}/(?:hour=\d{2}/)?)[^/]+$"
"""The same partition's folders as one text (`year=YYYY/month=MM/day=DD/[hour=HH/]`): one match per row."""
_RAW_FOLDER = "_raw_folder"
CORRUPT_COLUMN = "_corrupt_record"
RAW_FILE_COLUMN = "_raw_file"
PROBLEMS_COLUMN = "_problems"
_GLOB_CHARS = re.compile(r"([\\\[\]{}*?])")


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
        One nullable field per contract field: `str`/`Literal`/str enums → string, `int` → int (long when
        unbounded), `float` → double, `bool` → boolean, `Decimal` → decimal(max_digits, decimal_places), aware
        datetimes → timestamp, `date` → date; a nested model → struct of its fields, `list[X]` → array<X>,
        `dict[str, X]` → map<string,X>, to any depth (ADR 0015).
    """
    return T.StructType([T.StructField(name, _field_type(info)) for name, info in _fields(dataset)])


def typed_schema(dataset: Dataset) -> T.StructType:
    """The contract schema plus the typed lineage columns: what the job deduplicates."""
    return T.StructType([*contract_schema(dataset).fields, *LINEAGE])


def raw_schema(dataset: Dataset) -> T.StructType:
    """Every contract and lineage field read as a string, plus `_corrupt_record` for a line that is no JSON object.

    A nested value (object, array) is read as its JSON text, parsed by `transform_check`/`transform_cast`.
    """
    fields = [T.StructField(f.name, T.StringType()) for f in typed_schema(dataset).fields]
    return T.StructType([*fields, T.StructField(CORRUPT_COLUMN, T.StringType())])


def _fields(dataset: Dataset) -> list[tuple[str, FieldInfo]]:
    return list(dataset.contract.model_fields.items())


def _field_type(info: FieldInfo) -> T.DataType:
    return _spark_type(info.annotation, tuple(info.metadata))


def _optional(info: FieldInfo) -> bool:
    return not info.is_required() or _strip_none(info.annotation)[1]


def _strip_none(annotation: Any) -> tuple[Any, bool]:
    if get_origin(annotation) in (Union, UnionType):
        members = [a for a in get_args(annotation) if a is not NoneType]
        if len(members) != 1:
            raise TypeError(f"unions other than `X | None` have no Spark type: {annotation!r}")
        return members[0], True
    return annotation, False


def _unwrap(annotation: Any, metadata: tuple[Any, ...] = ()) -> tuple[Any, tuple[Any, ...], bool]:
    """The annotation without `Annotated` and `| None` layers, its collected metadata, and whether None is allowed."""
    nullable = False
    while True:
        annotation, none = _strip_none(annotation)
        nullable = nullable or none
        if get_origin(annotation) is not Annotated:
            return annotation, metadata, nullable
        inner, *extra = get_args(annotation)
        # a `Field(...)` inside `Annotated` that pydantic did not lift (under `| None`, in a list) carries its
        # constraints in its own metadata
        flat = [m for item in extra for m in (item.metadata if isinstance(item, FieldInfo) else [item])]
        annotation, metadata = inner, (*metadata, *flat)


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _element(annotation: Any) -> Any | None:
    """The element annotation of `list[X]` (or `tuple[X, ...]`), else None."""
    args = get_args(annotation)
    if get_origin(annotation) is list and len(args) == 1:
        return args[0]
    if get_origin(annotation) is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    return None


def _map_value(annotation: Any) -> Any | None:
    """The value annotation of `dict[str, X]`, else None (a dict keyed by anything but text has no Spark type)."""
    if get_origin(annotation) is not dict:
        return None
    key, value = get_args(annotation) or (None, None)
    key = _unwrap(key)[0]
    if key is not str:
        raise TypeError(f"only dict[str, X] has a Spark type (map<string,X>): {annotation!r}")
    return value


def _spark_type(annotation: Any, metadata: tuple[Any, ...]) -> T.DataType:
    annotation, metadata, _ = _unwrap(annotation, metadata)
    if (model := _nested_model(annotation)) is not None:
        return T.StructType([T.StructField(n, _field_type(info)) for n, info in model.model_fields.items()])
    if (element := _element(annotation)) is not None:
        return T.ArrayType(_spark_type(element, ()))
    if (value := _map_value(annotation)) is not None:
        return T.MapType(T.StringType(), _spark_type(value, ()))
    if get_origin(annotation) is Literal:
        kinds = {type(v) for v in get_args(annotation)}
        if len(kinds) != 1:
            raise TypeError(f"a Literal must have values of one type: {annotation!r}")
        return _spark_type(kinds.pop(), metadata)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        kinds = {type(m.value) for m in annotation}
        if len(kinds) != 1:
            raise TypeError(f"an enum must have values of one type: {annotation!r}")
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


# ---------------------------------------------------------------------------------------------- nested values


_NESTED_TYPES = (T.StructType, T.ArrayType, T.MapType)
_WRAPPED = "value"
"""A nested value's JSON text is parsed as the `value` of a one-field object, so that a text that is no value of
the type (an object where an array belongs, a number that overflows its decimal) fills the corrupt-record field
instead of reading as a row of nulls."""


def _read_type(kind: T.DataType) -> T.DataType:
    """How a nested value is parsed: its structure as declared, its leaves as text (cast after, as top-level values
    are), decimals excepted: those are parsed as decimals, exactly (Spark re-prints a JSON number read as text
    through a double, which would cost digits beyond 15)."""
    if isinstance(kind, T.StructType):
        return T.StructType([T.StructField(f.name, _read_type(f.dataType)) for f in kind.fields])
    if isinstance(kind, T.ArrayType):
        return T.ArrayType(_read_type(kind.elementType))
    if isinstance(kind, T.MapType):
        return T.MapType(T.StringType(), _read_type(kind.valueType))
    return kind if isinstance(kind, T.DecimalType) else T.StringType()


def _parse_nested(raw: str, kind: T.DataType) -> str:
    """SQL for the nested value of JSON text `raw`: a struct of `value` (as `_read_type`) and `_corrupt_record`."""
    schema = f"{_ident(_WRAPPED)} {_type_sql(_read_type(kind))}, {_ident(CORRUPT_COLUMN)} string"
    options = f"map('mode', 'PERMISSIVE', 'columnNameOfCorruptRecord', {_text(CORRUPT_COLUMN)})"
    opening = _text('{"' + _WRAPPED + '":')
    text = f"concat({opening}, {raw}, '}}')"
    return f"from_json({text}, {_text(schema)}, {options})"


Condition = Callable[[str, str, int], str]
"""A problem's test on a value as parsed (`_read_type`) and as cast to the contract type, both SQL expressions, at a
nesting depth (which names the lambda variables of the elements it searches, unique within the expression)."""


def _nested_checks(path: str, annotation: Any, kind: T.DataType) -> list[tuple[str, Condition]]:
    """`(reason, condition)` for every way a nested value can fail its contract type below `path`.

    A leaf that was present but does not cast (`parcels[].weight_kg: not a double`), a required field of a model
    missing where the model is present (`destination.city: missing`), a null element of a list or map whose
    elements are required (`tags[]: missing`). Lists and maps are searched element by element (`exists`).
    """
    annotation, _, _ = _unwrap(annotation)
    checks: list[tuple[str, Condition]] = []
    if isinstance(kind, T.StructType):
        model = _nested_model(annotation)
        assert model is not None
        for fld, (name, info) in zip(kind.fields, model.model_fields.items(), strict=True):
            if not _optional(info):
                checks.append((f"{path}.{name}: missing", _field_missing(name)))
            checks += [
                (reason, _in_field(name, inner))
                for reason, inner in _nested_checks(f"{path}.{name}", info.annotation, fld.dataType)
            ]
        return checks
    if isinstance(kind, T.ArrayType | T.MapType):
        of_map = isinstance(kind, T.MapType)
        sub = _map_value(annotation) if of_map else _element(annotation)
        inner_kind = kind.valueType if isinstance(kind, T.MapType) else kind.elementType
        suffix = "{}" if of_map else "[]"
        if not _unwrap(sub)[2]:
            checks.append((f"{path}{suffix}: missing", _in_elements(_absent, of_map=of_map)))
        checks += [
            (reason, _in_elements(inner, of_map=of_map))
            for reason, inner in _nested_checks(f"{path}{suffix}", sub, inner_kind)
        ]
        return checks
    return [(f"{path}: not a {kind.simpleString()}", _uncastable)]


def _uncastable(read: str, typed: str, depth: int) -> str:
    return f"({read} IS NOT NULL AND {typed} IS NULL)"


def _absent(read: str, typed: str, depth: int) -> str:
    return f"({read} IS NULL)"


def _field_missing(name: str) -> Condition:
    def condition(read: str, typed: str, depth: int) -> str:
        return f"({read} IS NOT NULL AND ({read}).{_ident(name)} IS NULL)"

    return condition


def _in_field(name: str, inner: Condition) -> Condition:
    def condition(read: str, typed: str, depth: int) -> str:
        return inner(f"({read}).{_ident(name)}", f"({typed}).{_ident(name)}", depth)

    return condition


def _in_elements(inner: Condition, *, of_map: bool) -> Condition:
    def condition(read: str, typed: str, depth: int) -> str:
        return _any_element(read, typed, inner, depth, of_map=of_map)

    return condition


def _any_element(read: str, typed: str, condition: Condition, depth: int, *, of_map: bool) -> str:
    """SQL: whether `condition` holds for some element of an array (or value of a map) with its typed counterpart."""
    element, index = f"_element_{depth}", f"_index_{depth}"
    if of_map:
        found = condition(f"element_at({read}, {element})", f"element_at({typed}, {element})", depth + 1)
        return f"coalesce(exists(map_keys({read}), {element} -> {found}), false)"
    found = condition(element, f"element_at({typed}, {index} + 1)", depth + 1)
    return f"coalesce(exists(transform({read}, ({element}, {index}) -> {found}), {element} -> {element}), false)"


# ------------------------------------------------------------------------------------------- transforms
#
# The checks and casts are written as Spark SQL text: one expression is one round trip to the JVM, where the same
# expression built from `Column`s makes one per operator (thousands per job, most of its planning time).


def _ident(name: str) -> str:
    """A column or field name quoted for Spark SQL."""
    return "`" + name.replace("`", "``") + "`"


def _text(value: str) -> str:
    """A Spark SQL string literal of `value`."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _type_sql(kind: T.DataType) -> str:
    """A Spark SQL type, its field names quoted."""
    if isinstance(kind, T.StructType):
        return "struct<" + ",".join(f"{_ident(f.name)}:{_type_sql(f.dataType)}" for f in kind.fields) + ">"
    if isinstance(kind, T.ArrayType):
        return f"array<{_type_sql(kind.elementType)}>"
    if isinstance(kind, T.MapType):
        return f"map<{_type_sql(kind.keyType)},{_type_sql(kind.valueType)}>"
    return kind.simpleString()


def transform_check(df: DataFrame, dataset: Dataset) -> DataFrame:
    """Add `_problems`: why a raw record cannot be processed with the contract's values (empty when it can).

    Parameters
    ----------
    df
        Raw records with `raw_schema(dataset)` (every value a string, `_corrupt_record` for unparsable lines)
        and `_raw_file`, the URI of the object each came from.
    dataset
        The dataset whose contract gives the types.

    Returns
    -------
    DataFrame
        `df` with `_problems`, an array of `<field>: <problem>` texts: a value Spark cannot read as its
        contract type, a required value missing, a malformed line, or an event date outside the record's raw
        partition. Ingestion lands only canonical values (ADR 0006), so a problem here means raw data that did not
        come through this version's ingestion; such rows are quarantined, never allowed to fail the run.
    """
    return transform_typed(df, dataset).select(*df.columns, PROBLEMS_COLUMN)


_CLEAN_PREFIX = "_clean_"
_PARSED_PREFIX = "_parsed_"
_TYPED_PREFIX = "_typed_"


def _clean(name: str) -> str:
    return _ident(f"{_CLEAN_PREFIX}{name}")


def _parsed(name: str) -> str:
    return _ident(f"{_PARSED_PREFIX}{name}")


def _typed(name: str) -> str:
    return _ident(f"{_TYPED_PREFIX}{name}")


def typed_columns(dataset: Dataset) -> list[str]:
    """SQL for the columns of `typed_schema(dataset)` from a `transform_typed` frame (`selectExpr`): its valid rows
    are the typed rows."""
    return [f"{_typed(fld.name)} AS {_ident(fld.name)}" for fld in typed_schema(dataset).fields]


def transform_typed(df: DataFrame, dataset: Dataset) -> DataFrame:
    """`df` with every field's value cleaned, parsed and cast once, and `_problems` judged from those values.

    Parameters
    ----------
    df
        Raw records as `transform_check` takes them.
    dataset
        The dataset whose contract gives the types.

    Returns
    -------
    DataFrame
        `df`, then for each field of `typed_schema(dataset)` its value cast to the contract type (`_typed_<field>`,
        an empty text read as null), then `_problems` (see `transform_check`). `typed_columns(dataset)` selects the
        typed row; the raw values stay for the rows set aside. Each value is cast in one projection that the checks
        and the typed row share, so the plan holds every cast once.
    """
    folder = f"regexp_extract({_ident(RAW_FILE_COLUMN)}, {_text(_RAW_FOLDER_PATTERN)}, 1) AS {_ident(_RAW_FOLDER)}"
    values = _values(df.selectExpr("*", folder), dataset)
    # Each problem is its text or "" (no problem text is empty): `array_remove` runs in generated code, where a lambda
    # (`filter`) would leave the whole projection to be interpreted.
    texts = ", ".join(f"coalesce({problem}, '')" for problem in _problems(dataset))
    problems = f"array_remove(array({texts}), '') AS {_ident(PROBLEMS_COLUMN)}"
    typed = (_typed(fld.name) for fld in typed_schema(dataset).fields)
    return values.selectExpr(*(_ident(c) for c in df.columns), *typed, problems)


def _values(df: DataFrame, dataset: Dataset) -> DataFrame:
    """`df`, then each field's value cleaned (`_clean_<field>`), a nested one parsed (`_parsed_<field>`), and cast
    (`_typed_<field>`): one projection per step, so every later expression reads each value computed once."""
    fields = typed_schema(dataset).fields
    out = df.selectExpr("*", *(f"{_raw_value(fld.name)} AS {_clean(fld.name)}" for fld in fields))
    nested = [fld for fld in fields if isinstance(fld.dataType, _NESTED_TYPES)]
    if nested:
        out = out.selectExpr(
            "*", *(f"{_parse_nested(_clean(f.name), f.dataType)} AS {_parsed(f.name)}" for f in nested)
        )
    return out.selectExpr("*", *(f"{_cast(fld)} AS {_typed(fld.name)}" for fld in fields))


def _cast(fld: T.StructField) -> str:
    """SQL: a cleaned (`_clean_<field>`) or parsed (`_parsed_<field>`) value cast to its contract type."""
    if isinstance(fld.dataType, _NESTED_TYPES):
        return f"CAST({_parsed(fld.name)}.{_ident(_WRAPPED)} AS {_type_sql(fld.dataType)})"
    return f"CAST({_clean(fld.name)} AS {_type_sql(fld.dataType)})"


def _problems(dataset: Dataset) -> list[str]:
    """SQL for each problem's text or null, over the cleaned, parsed and typed values of `transform_typed`."""
    required = {name for name, info in _fields(dataset) if not _optional(info)}
    annotations = {name: info.annotation for name, info in _fields(dataset)}
    corrupt = _ident(CORRUPT_COLUMN)
    problems = [f"CASE WHEN {corrupt} IS NOT NULL THEN {_text(f'{CORRUPT_COLUMN}: not a JSON object')} END"]
    for fld in typed_schema(dataset).fields:
        raw, typed = _clean(fld.name), _typed(fld.name)
        not_a = _text(f"{fld.name}: not a {fld.dataType.simpleString()}")
        if isinstance(fld.dataType, _NESTED_TYPES):
            parsed = _parsed(fld.name)
            read, unreadable = f"{parsed}.{_ident(_WRAPPED)}", f"{parsed}.{corrupt}"
            problems.append(f"CASE WHEN {unreadable} IS NOT NULL THEN {not_a} END")
            for reason, condition in _nested_checks(fld.name, annotations[fld.name], fld.dataType):
                test = condition(read, typed, 0)
                problems.append(f"CASE WHEN {unreadable} IS NULL AND {test} THEN {_text(reason)} END")
        else:
            problems.append(f"CASE WHEN {raw} IS NOT NULL AND {typed} IS NULL THEN {not_a} END")
        if fld.name in required:
            missing = _text(f"{fld.name}: missing")
            problems.append(f"CASE WHEN {raw} IS NULL AND {corrupt} IS NULL THEN {missing} END")
    problems.append(_outside_raw_partition(dataset))
    return problems


def _outside_raw_partition(dataset: Dataset) -> str:
    """SQL: the problem of an event time dated outside its file's raw partition (the day, and the hour if it has
    one)."""
    event_time = _typed(dataset.event_time)
    if typed_schema(dataset)[dataset.event_time].dataType != T.TimestampType():
        event_time = f"CAST({_clean(dataset.event_time)} AS timestamp)"
    event_date = f"to_date({event_time})"
    # `year=YYYY/month=MM/day=DD/[hour=HH/]`: the digits at fixed places (1-based), the hour when the folder has one
    folder = _ident(_RAW_FOLDER)
    raw_date = (
        "make_date("
        + ", ".join(f"CAST(substring({folder}, {at}, {size}) AS int)" for at, size in ((6, 4), (17, 2), (24, 2)))
        + ")"
    )
    hour_at = len("year=YYYY/month=MM/day=DD/")
    raw_hour = f"CASE WHEN length({folder}) > {hour_at} THEN CAST(substring({folder}, 32, 2) AS int) END"
    outside = (
        f"{event_date} IS NOT NULL AND (NOT ({event_date} <=> {raw_date})"
        f" OR ({raw_hour} IS NOT NULL AND NOT (hour({event_time}) <=> {raw_hour})))"
    )
    return f"CASE WHEN {outside} THEN {_text(f'{dataset.event_time}: dated outside its raw partition')} END"


def _raw_value(name: str) -> str:
    """SQL: a raw value, with the empty text of an optional CSV cell read as null."""
    value = _ident(name)
    return f"CASE WHEN {value} = '' THEN NULL ELSE {value} END"


def transform_cast(df: DataFrame, dataset: Dataset) -> DataFrame:
    """Cast raw records to the contract's types and keep the lineage columns.

    Parameters
    ----------
    df
        Raw records with `raw_schema(dataset)`: every value a string, in the canonical form ingestion lands
        (UTC RFC 3339 timestamps, plain decimal text, `true`/`false`; ADR 0006).
    dataset
        The dataset whose contract gives the types.

    Returns
    -------
    DataFrame
        Columns of `typed_schema(dataset)`: decimals exact, timestamps in UTC, an empty string in a field read as
        null. Rows `transform_check` finds problems in are the caller's to set aside first.
    """
    return _values(df, dataset).selectExpr(*typed_columns(dataset))


def _newest_first(dataset: Dataset) -> list[Column]:
    versions = [dataset.version_field] if dataset.version_field and not dataset.keep_versions else []
    order = [*versions, "_ingested_at", "_source_key", "_source_version", "_line"]
    return [F.col(c).desc_nulls_last() for c in order]


def transform_deduplicate(df: DataFrame, dataset: Dataset) -> DataFrame:
    """Keep one row per record key (`Dataset.record_key`) across everything in `df`.

    The greatest version wins where the dataset declares a version field, else the latest `_ingested_at`; ties go
    to the later source object and line, so the outcome never depends on the order rows are read in.
    """
    window = Window.partitionBy(*dataset.record_key).orderBy(*_newest_first(dataset))
    return df.withColumn("_rank", F.row_number().over(window)).where(F.col("_rank") == 1).drop("_rank")


def transform_derive(df: DataFrame, dataset: Dataset) -> DataFrame:
    """Add `event_date` and `event_hour` (UTC, from the event-time field) and the dataset's derived columns."""
    event_time = F.col(dataset.event_time)
    out = df.withColumn(PARTITION_COLUMN, F.to_date(event_time)).withColumn(HOUR_COLUMN, F.hour(event_time))
    for derived in dataset.derived:
        out = out.withColumn(derived.name, F.expr(derived.expression).cast(derived.data_type))
    return out


def processed_columns(dataset: Dataset) -> list[str]:
    """Column order of the processed zone: contract, derived, hour, lineage, then the partition."""
    return [
        *(name for name, _ in _fields(dataset)),
        *(d.name for d in dataset.derived),
        HOUR_COLUMN,
        *(f.name for f in LINEAGE),
        PARTITION_COLUMN,
    ]


def transform_processed(new: DataFrame, existing: DataFrame | None, dataset: Dataset) -> DataFrame:
    """The processed rows of the rewritten dates: new and existing (None: no partition held rows before) together,
    deduplicated, derived, in order."""
    merged = transform_deduplicate(new if existing is None else new.unionByName(existing), dataset)
    return transform_derive(merged, dataset).select(*processed_columns(dataset))


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

    def delete(self, uri: str) -> None:
        """Delete a file or a folder with everything under it; nothing when absent."""
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

    def delete(self, uri: str) -> None:
        """Delete `uri` recursively."""
        path, fs = self._resolve(uri)
        if fs.exists(path):
            fs.delete(path, True)


class LocalFileStore:
    """`FileStore` over local folders (`file://` URIs or paths): what a local runtime stages; no JVM needed to plan."""

    @staticmethod
    def _path(uri: str) -> Path:
        parts = urlsplit(uri)
        return Path(unquote(parts.path)) if parts.scheme == "file" else Path(uri)

    def list_files(self, prefix: str) -> list[FileInfo]:
        """Every file under `prefix`, recursively; empty when the folder does not exist."""
        root = self._path(prefix)
        if not root.is_dir():
            return []
        base = _folder(prefix)
        files = []
        for path in sorted(root.rglob("*")):
            if path.is_file():
                relative, stat = path.relative_to(root).as_posix(), path.stat()
                # Milliseconds, as Hadoop's FileSystem gives them: watermarks compare alike whichever store wrote them.
                modified = datetime.fromtimestamp(stat.st_mtime_ns // 1_000_000 / 1000, UTC)
                files.append(FileInfo(base + relative, relative, stat.st_size, modified))
        return files

    def exists(self, uri: str) -> bool:
        """Whether a file or folder exists at `uri`."""
        return self._path(uri).exists()

    def read_text(self, uri: str) -> str | None:
        """The UTF-8 text at `uri`, or None."""
        path = self._path(uri)
        return path.read_text(encoding="utf-8") if path.is_file() else None

    def write_text(self, uri: str, text: str) -> None:
        """Write `text` to `uri`, replacing it."""
        path = self._path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def delete(self, uri: str) -> None:
        """Delete `uri` recursively."""
        path = self._path(uri)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def is_local(uri: str) -> bool:
    """Whether `uri` names a local file (`file://` or a plain path) rather than an object store's."""
    return urlsplit(uri).scheme in ("", "file")


# -------------------------------------------------------------------------------------------------- plan


def _folder(uri: str) -> str:
    return uri if uri.endswith("/") else uri + "/"


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _ordered(names: Iterable[str]) -> tuple[Dataset, ...]:
    wanted = list(dict.fromkeys(names))
    graph = {n: {lk.dataset for lk in get_dataset(n).lookups if lk.dataset in wanted} for n in wanted}
    return tuple(get_dataset(n) for n in TopologicalSorter(graph).static_order())


def _parse_datasets(value: str | None) -> list[str]:
    """The named datasets (a JSON list or comma-separated); none named means every registered one (ADR 0012)."""
    text = (value or "").strip()
    names = json.loads(text) if text.startswith("[") else [n.strip() for n in text.split(",")]
    return [str(n) for n in names if str(n)] or sorted(REGISTRY)


@dataclass(frozen=True)
class JobOptions:
    """The job's arguments, parsed and defaulted."""

    datasets: tuple[Dataset, ...]
    raw_path: str
    processed_path: str
    catalog_processed_path: str
    catalog_raw_path: str = ""
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
            catalog_raw_path=_folder(args.get("catalog_raw_path") or args["raw_path"]),
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

    def quarantine_uri(self, dataset: str) -> str:
        """Where this run sets aside the raw rows of `dataset` it cannot process."""
        return f"{self.processed_path}_quarantine/{dataset}/run_id={self.run_id}/"

    def partition_uri(self, root: str, dataset: str, day: date) -> str:
        """The folder of one processed partition under `root`."""
        return f"{root}{dataset}/{PARTITION_COLUMN}={day.isoformat()}/"


@dataclass(frozen=True)
class DatasetPlan:
    """What one dataset's run reads: new raw files and their dates (the dates it rewrites at least)."""

    dataset: str
    watermark: datetime | None
    raw_files: tuple[FileInfo, ...]
    dates: tuple[date, ...]
    skipped_files: tuple[FileInfo, ...] = ()
    """New files outside a `year=/month=/day=[/hour=]` partition: listed in the summary, never read."""
    references_changed: tuple[str, ...] = ()
    """Reference datasets of this dataset's lookups with new raw files in this run."""

    @property
    def high_water(self) -> datetime | None:
        """The newest modification time among the new files: the next watermark."""
        return max((f.modified for f in (*self.raw_files, *self.skipped_files)), default=None)

    @property
    def reads_history(self) -> bool:
        """Whether the run reads the dataset's processed history (its keys, or the keys a reference change touches)."""
        return bool(self.raw_files or self.references_changed)


@dataclass(frozen=True)
class JobPlan:
    """The whole run's inputs."""

    options: JobOptions
    datasets: tuple[DatasetPlan, ...]
    dependents: tuple[str, ...] = ()
    """Datasets outside the run that look up a reference dataset with new raw files in it: the dates of their rows
    that the change touches are in the summary's `reference_dates`, for curation to rebuild (ADR 0017)."""

    def inputs(self, store: FileStore) -> list[str]:
        """URIs the run reads: raw files, processed roots (folders, ending in `/`) and watermarks.

        A dataset's whole processed root is an input because dedup spans its history: the job reads the key
        columns of every partition and then only the partitions holding a key it rewrites.
        """
        uris: list[str] = []
        for plan in self.datasets:
            uris += [f.uri for f in plan.raw_files]
            root = f"{self.options.processed_path}{plan.dataset}/"
            if plan.reads_history and store.exists(root):
                uris.append(root)
            watermark = self.options.watermark_uri(plan.dataset)
            if store.exists(watermark):
                uris.append(watermark)
            uris += rollup_inputs(store, self.options, plan)
        for name in self.dependents:
            root = f"{self.options.processed_path}{name}/"
            if store.exists(root):
                uris.append(root)
        return list(dict.fromkeys(uris))


def _raw_date(relative: str) -> date | None:
    match = _RAW_PARTITION.search(relative)
    return None if match is None else date(int(match[1]), int(match[2]), int(match[3]))


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
    files = sorted(
        (
            f
            for f in store.list_files(f"{options.raw_path}{dataset.name}/")
            if not _hidden(f.relative) and (watermark is None or f.modified > watermark) and f.modified <= cutoff
        ),
        key=lambda f: f.relative,
    )
    dated = tuple(f for f in files if _raw_date(f.relative) is not None)
    skipped = tuple(f for f in files if _raw_date(f.relative) is None)
    for f in skipped:
        logger.warning("%s: raw file outside a year=/month=/day=[/hour=] partition, not read: %s", dataset.name, f.uri)
    dates = tuple(sorted({d for f in dated if (d := _raw_date(f.relative)) is not None}))
    return DatasetPlan(dataset.name, watermark, dated, dates, skipped)


def build_plan(options: JobOptions, store: FileStore, now: datetime) -> JobPlan:
    """Plan every dataset of the run, noting which of their reference datasets have new data."""
    plans = {d.name: plan_dataset(store, options, d, now) for d in options.datasets}
    out = []
    for name, plan in plans.items():
        changed = tuple(
            lk.dataset for lk in get_dataset(name).lookups if lk.dataset in plans and plans[lk.dataset].raw_files
        )
        out.append(replace(plan, references_changed=changed))
    delivered = {name for name, plan in plans.items() if plan.raw_files}
    dependents = tuple(
        name
        for name, dataset in sorted(REGISTRY.items())
        if name not in plans and any(lk.dataset in delivered for lk in dataset.lookups)
    )
    return JobPlan(options, tuple(out), dependents)


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
    """The inputs `run(spark, args)` will read, planned against `store` (used by `lakebox.services.glue`).

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
        The raw files past the watermark, the processed roots whose history the run reads, the watermarks.
    """
    options = JobOptions.from_args(args)
    plan = build_plan(options, store, now or datetime.now(UTC))
    return StagingPlan(
        roots={"raw_path": options.raw_path, "processed_path": options.processed_path},
        inputs=tuple(plan.inputs(store)),
        args={"catalog_processed_path": options.catalog_processed_path, "catalog_raw_path": options.catalog_raw_path},
    )


# ----------------------------------------------------------------------------------------------- catalog


def catalog_columns(schema: T.StructType) -> list[schemas.Column]:
    """The catalog columns of a processed schema: every field but the `event_date` partition, in Hive types."""
    return [(f.name, f.dataType.simpleString()) for f in schema.fields if f.name != PARTITION_COLUMN]


def glue_table_input(
    name: str,
    schema: T.StructType,
    location: str,
    parameters: Mapping[str, str] | None = None,
    columns: Sequence[schemas.Column] | None = None,
) -> dict[str, Any]:
    """A Glue `TableInput` for Parquet (Hive Parquet SerDe) partitioned by `event_date` (a date).

    `parameters` are added to the table's (the contract version it was declared from); `columns` replace the
    schema's (an evolved table keeps its column order).
    """
    declared = columns if columns is not None else catalog_columns(schema)
    return {
        "Name": name,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {
            "classification": "parquet",
            "EXTERNAL": "TRUE",
            "parquet.compression": "SNAPPY",
            **(parameters or {}),
        },
        "PartitionKeys": [{"Name": PARTITION_COLUMN, "Type": "date"}],
        "StorageDescriptor": _storage([{"Name": n, "Type": t} for n, t in declared], location),
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
    glue: Any,
    database: str,
    table: str,
    schema: T.StructType,
    location: str,
    days: Sequence[date],
    removed: Sequence[date] = (),
    parameters: Mapping[str, str] | None = None,
) -> int:
    """Create or update the table, register the partitions of `days` and drop those of `removed`; returns the added.

    An existing table keeps its columns in their order and gains the schema's new ones at the end (an additive
    contract change, ADR 0016); `parameters` (the contract version) are recorded on the table.

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
    removed
        Partitions the run emptied (their rows moved to other dates) and deleted.
    """
    table_input = glue_table_input(table, schema, location, parameters)
    try:
        current = glue.get_table(DatabaseName=database, Name=table)["Table"]
    except glue.exceptions.EntityNotFoundException:
        glue.create_table(DatabaseName=database, TableInput=table_input)
    else:
        columns = schemas.evolved(schemas.table_columns(current), catalog_columns(schema))
        table_input = glue_table_input(table, schema, location, parameters, columns)
        recorded = current.get("Parameters", {})
        changed = current.get("StorageDescriptor", {}).get("Columns") != table_input["StorageDescriptor"]["Columns"]
        if changed or any(recorded.get(k) != v for k, v in (parameters or {}).items()):
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
        existing = [e["PartitionValues"] for e in errors.get("Errors", [])]
        if existing:
            _refresh_partitions(glue, database, table, [i for i in chunk if i["Values"] in existing])
    for start in range(0, len(removed), 25):
        values = [{"Values": [d.isoformat()]} for d in removed[start : start + 25]]
        response = glue.batch_delete_partition(DatabaseName=database, TableName=table, PartitionsToDelete=values)
        failed = [e for e in response.get("Errors", []) if e["ErrorDetail"]["ErrorCode"] != "EntityNotFoundException"]
        if failed:
            raise TerminalError(f"catalog partitions of {database}.{table} not dropped: {failed}")
    return added


def _refresh_partitions(glue: Any, database: str, table: str, inputs: Sequence[dict[str, Any]]) -> None:
    """Give partitions a run rewrote the table's columns where theirs differ (new ones after an additive change)."""
    wanted = {tuple(i["Values"]): i for i in inputs}
    found = glue.batch_get_partition(
        DatabaseName=database, TableName=table, PartitionsToGet=[{"Values": list(v)} for v in wanted]
    ).get("Partitions", [])
    entries = [
        {"PartitionValueList": p["Values"], "PartitionInput": wanted[tuple(p["Values"])]}
        for p in found
        if schemas.table_columns(p) != schemas.table_columns(wanted[tuple(p["Values"])])
    ]
    if entries:
        glue.batch_update_partition(DatabaseName=database, TableName=table, Entries=entries)


# --------------------------------------------------------------------------------------------------- run


def check_schema(glue: Any, spark: SparkSession, options: JobOptions, dataset: Dataset) -> schemas.SchemaChange:
    """Judge the dataset's contract version against its processed table, then declare its raw table from it.

    The processed table's columns and contract version (parameters the job writes) are what earlier runs wrote;
    a breaking change is returned before anything changes (the caller then processes nothing of the dataset and
    the quality gate refuses the run), an additive one is applied to the raw table here and to the processed
    table when its partitions are written (ADR 0016).
    """
    table = f"{options.table_prefix}{dataset.name}"
    processed = schemas.get_table(glue, options.database, table)
    verdict: schemas.SchemaChange | None = None
    if processed is not None:
        columns = catalog_columns(processed_schema(spark, dataset))
        parameters = processed.get("Parameters") or {}
        verdict = schemas.compare(table, schemas.table_columns(processed), parameters, columns, dataset)
        if verdict.breaking:
            return verdict
    raw = schemas.declare_raw_table(glue, options.database, f"{options.catalog_raw_path}{dataset.name}/", dataset)
    return raw if verdict is None or raw.breaking else verdict


def _configure(spark: SparkSession) -> None:
    spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    spark.conf.set("spark.sql.parquet.compression.codec", "snappy")
    # Timestamps are proleptic Gregorian from the contract to Parquet: a sale dated 1899 or 0001 is written as
    # the instant it names (Spark otherwise refuses dates before 1900, fearing legacy hybrid-calendar readers).
    for mode in ("datetimeRebaseModeInWrite", "datetimeRebaseModeInRead", "int96RebaseModeInWrite"):
        spark.conf.set(f"spark.sql.parquet.{mode}", "CORRECTED")
    spark.conf.set("spark.sql.parquet.int96RebaseModeInRead", "CORRECTED")
    # Deduplication keeps the first row per record key (`transform_deduplicate`): Spark 3.5 would sort every row
    # before the shuffle too, to drop ranked-out rows early, a whole extra sort for batches with few duplicates.
    spark.conf.set("spark.sql.optimizer.windowGroupLimitThreshold", "-1")
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
    return transform_processed(read_processed(spark, dataset, []), None, dataset).schema


def read_history(spark: SparkSession, store: FileStore, root: str, columns: Sequence[str]) -> DataFrame | None:
    """`columns` and `event_date` of every processed row under `root` (Parquet reads only those columns)."""
    if not store.exists(root):
        return None
    return spark.read.option("basePath", root).parquet(root).select(*columns, PARTITION_COLUMN)


def write_partitions(df: DataFrame, dataset: Dataset, path: str, *, keep: bool = False) -> DataFrame | None:
    """Write Parquet (snappy) partitioned by `event_date`, one file per date; only those dates are replaced.

    Rows are sorted by date then record key: the writer needs them grouped by date and would otherwise sort them
    again by date alone, dropping the record-key order. With `keep`, the rows written stay cached, filled by the
    write itself and each date in one of Spark's partitions (`cached_by_date`), and are returned (the caller
    unpersists them): the dataset's rollups aggregate them without reading the files back.
    """
    ordered = df.repartition(PARTITION_COLUMN).sortWithinPartitions(PARTITION_COLUMN, *dataset.record_key)
    if keep:
        ordered = cached_by_date(ordered.sparkSession, ordered)
    try:
        ordered.write.mode("overwrite").partitionBy(PARTITION_COLUMN).option("compression", "snappy").parquet(path)
    except BaseException:
        if keep:
            ordered.unpersist()
        raise
    return ordered if keep else None


class _Observed:
    """Values gathered by an `Observation` while a later action runs, read from the JVM once."""

    def __init__(self, name: str) -> None:
        self._observation = Observation(f"{name}_{uuid.uuid4().hex[:8]}")  # unique in the session

    @functools.cached_property
    def _values(self) -> dict[str, Any]:
        # waits for the action; each read of `get` walks the JVM's map in round trips, so it is read once
        return dict(self._observation.get)


class CheckedCounts(_Observed):
    """Rows read and rows with a problem, gathered while the first action over the checked rows runs."""

    def observe(self, checked: DataFrame) -> DataFrame:
        """`checked`, counted by the next action that reads all of it (the write, or the history's key scan)."""
        problem = F.size(PROBLEMS_COLUMN) > 0
        return checked.observe(
            self._observation, F.count(F.lit(1)).alias("rows"), F.count_if(problem).alias("quarantined")
        )

    @property
    def rows(self) -> int:
        """Raw rows read."""
        return int(self._values["rows"])

    @property
    def quarantined(self) -> int:
        """Raw rows with a problem."""
        return int(self._values["quarantined"])


def quarantine_reasons(checked: DataFrame) -> dict[str, int]:
    """Rows per reason among the rows `transform_check` found problems in (one Spark job, run only when some did)."""
    bad = checked.where(F.size(PROBLEMS_COLUMN) > 0)
    reasons: dict[str, int] = {}
    for problems, count in bad.groupBy(PROBLEMS_COLUMN).count().collect():
        for reason in problems:
            reasons[str(reason)] = reasons.get(str(reason), 0) + int(count)
    return dict(sorted(reasons.items()))


class OutputCounts(_Observed):
    """Rows and event dates of a DataFrame, gathered while a later action (the write) runs: no pass of their own."""

    def observe(self, df: DataFrame) -> DataFrame:
        """`df`, counted (and its `event_date`s collected, when it has the column) by the next action that runs it."""
        # dates collected as dates (no text made per row); `to_json` writes the distinct ones as ISO text
        dates = F.to_json(F.array_sort(F.collect_set(F.col(PARTITION_COLUMN))))
        if PARTITION_COLUMN not in df.columns:
            dates = F.lit("[]")
        return df.observe(self._observation, F.count(F.lit(1)).alias("rows"), dates.alias("dates"))

    @property
    def rows(self) -> int:
        """Rows that went through (after the action ran)."""
        return int(self._values["rows"])

    @property
    def dates(self) -> list[date]:
        """Distinct event dates that went through, in order."""
        return [date.fromisoformat(d) for d in json.loads(self._values["dates"] or "[]")]


def quarantine_rows(checked: DataFrame, options: JobOptions, dataset: Dataset) -> None:
    """Write the rows `transform_check` found problems in, as received, with their reasons.

    They go to `<processed>/_quarantine/<dataset>/run_id=<run>/` (gzip JSON lines: the raw values, the raw file,
    `_problems`), so that every record read is accounted for: processed or quarantined here.
    """
    bad = checked.where(F.size(PROBLEMS_COLUMN) > 0)
    bad.coalesce(1).write.mode("overwrite").option("compression", "gzip").json(options.quarantine_uri(dataset.name))


def read_raw(spark: SparkSession, dataset: Dataset, files: Sequence[FileInfo]) -> DataFrame:
    """Raw records as text (`raw_schema`), a line that is not a JSON object kept whole in `_corrupt_record`."""
    reader = spark.read.schema(raw_schema(dataset)).option("mode", "PERMISSIVE")
    raw = reader.option("columnNameOfCorruptRecord", CORRUPT_COLUMN).json([_escape_glob(f.uri) for f in files])
    return raw.withColumn(RAW_FILE_COLUMN, F.input_file_name())


def moved_dates(spark: SparkSession, store: FileStore, root: str, dataset: Dataset, new: DataFrame) -> set[date]:
    """Dates of the processed partitions under `root` that hold a record key of `new` (records it may move)."""
    history = read_history(spark, store, root, dataset.record_key)
    if history is None:
        return set()
    keys = new.select(*dataset.record_key).distinct()
    found = history.join(keys, on=list(dataset.record_key), how="left_semi").select(PARTITION_COLUMN).distinct()
    return {row[0] for row in found.collect()}


def touched_by_references(
    spark: SparkSession, store: FileStore, options: JobOptions, dataset: Dataset, changed: Mapping[str, DataFrame]
) -> list[date]:
    """Dates of `dataset`'s processed rows whose lookup key a changed reference dataset touched in this run.

    Their curated rows are enriched at curation time (ADR 0007), so they must be rebuilt when the reference
    changes, a late-arriving product or customer included.
    """
    lookups = [lk for lk in dataset.lookups if lk.dataset in changed]
    if not lookups:
        return []
    history = read_history(spark, store, f"{options.processed_path}{dataset.name}/", [lk.on for lk in lookups])
    if history is None:
        return []
    touched: DataFrame | None = None
    for lookup in lookups:
        keys = changed[lookup.dataset].select(F.col(lookup.on)).distinct()
        days = history.join(keys, on=lookup.on, how="left_semi").select(PARTITION_COLUMN)
        touched = days if touched is None else touched.unionByName(days)
    assert touched is not None
    return sorted(row[0] for row in touched.distinct().collect())


_CLIENTS = threading.Lock()


def glue_client() -> Any:
    """A Glue client of boto3's default session, made under a lock: datasets run in threads, and a session is not
    safe to make clients from in several at once (a client, once made, is)."""
    with _CLIENTS:
        return boto3.client("glue")


def dataset_summary(options: JobOptions, dataset: Dataset, plan: DatasetPlan) -> dict[str, Any]:
    """One dataset's part of the run summary before anything is read: its files and watermark, nothing processed."""
    table = f"{options.table_prefix}{dataset.name}"
    summary: dict[str, Any] = {
        "table": table,
        "rows_read": 0,
        "rows_quarantined": 0,
        "rows_in": 0,
        "rows_existing": 0,
        "duplicates_dropped": 0,
        "rows_out": 0,
        "partitions": [],
        "partitions_removed": [],
        "reference_dates": [],
        "quarantine": {"location": None, "reasons": {}},
        "raw_files": [f"{dataset.name}/{f.relative}" for f in plan.raw_files],
        "skipped_files": [f"{dataset.name}/{f.relative}" for f in plan.skipped_files],
        "watermark": {"previous": plan.watermark.isoformat() if plan.watermark else None},
    }
    high_water = plan.high_water
    summary["watermark"]["current"] = high_water.isoformat() if high_water else summary["watermark"]["previous"]
    return summary


def unchanged_summary(
    options: JobOptions, plan: DatasetPlan, changed: Mapping[str, DataFrame]
) -> dict[str, Any] | None:
    """The summary of a dataset with nothing to do, when telling it needs no Spark; None when it does.

    Nothing to do: no new raw files and no reference dataset changed in this run. With the catalog kept, its
    processed table must already be declared from this contract version (then the table and the schema the job
    would compute are the ones an earlier run recorded); the raw table is declared as `check_schema` does, and a
    breaking change there is left to the full path, which refuses it.
    """
    dataset = get_dataset(plan.dataset)
    if plan.raw_files or any(lk.dataset in changed for lk in dataset.lookups):
        return None
    if options.update_catalog:
        glue = glue_client()
        table = schemas.get_table(glue, options.database, f"{options.table_prefix}{dataset.name}")
        recorded = (table or {}).get("Parameters") or {}
        if table is None or any(recorded.get(k) != v for k, v in schemas.version_parameters(dataset).items()):
            return None
        raw = schemas.declare_raw_table(glue, options.database, f"{options.catalog_raw_path}{dataset.name}/", dataset)
        if raw.breaking:
            return None
    return dataset_summary(options, dataset, plan)


@dataclass(frozen=True)
class WrittenRows:
    """The rows a dataset's run wrote, cached by the write, and the cache of checked rows they were computed from.

    Both are released together, the rows first: Spark rebuilds a cache whose plan reads a cache being released, and
    rebuilding the rows would read again the partitions their write replaced.
    """

    rows: DataFrame
    source: DataFrame

    def release(self) -> None:
        """Free both caches."""
        self.rows.unpersist()
        self.source.unpersist()


def process_dataset(
    spark: SparkSession,
    store: FileStore,
    options: JobOptions,
    plan: DatasetPlan,
    changed: Mapping[str, DataFrame],
    *,
    keep_new: bool = False,
    keep_written: bool = False,
) -> tuple[dict[str, Any], DataFrame | None, WrittenRows | None]:
    """Read, check, type, deduplicate across history and write one dataset's new data.

    Returns its part of the summary; its new valid rows (what the datasets that look it up need to know changed;
    persisted when `keep_new`, and the caller unpersists them), or None when it had no new data; and, when
    `keep_written`, the rows of the dates it rewrote, cached by the write (`write_partitions`; the caller releases
    them), or None when it wrote nothing or merged them with partitions it held before.

    Spark work per dataset: the history's key scan when a processed history exists, then the write, which counts
    while it runs the raw rows read and those with a problem, the rewritten partitions' former rows, and its own
    rows and dates (`Observation`s: no pass of their own); and only when some row has a problem, the count of each
    reason and the quarantine's write. The dates rewritten are the raw files' (a valid row is dated in its raw
    partition) and those a record moves from; a date whose rows were all set aside and that held no rows before
    is not written.
    """
    dataset = get_dataset(plan.dataset)
    table = f"{options.table_prefix}{dataset.name}"
    summary = dataset_summary(options, dataset, plan)
    summary["reference_dates"] = [d.isoformat() for d in touched_by_references(spark, store, options, dataset, changed)]
    location = f"{options.catalog_processed_path}{dataset.name}/"
    versions = schemas.version_parameters(dataset)
    glue = glue_client() if options.update_catalog else None
    if glue is not None:
        change = check_schema(glue, spark, options, dataset)
        if change.changes or change.previous_version != change.version:
            summary["schema_change"] = change.model_dump(mode="json")
        if change.breaking:
            logger.error("%s: %s", dataset.name, change.describe())
            summary["raw_files"] = []
            summary["watermark"]["current"] = summary["watermark"]["previous"]
            return summary, None, None
    if not plan.raw_files:
        if glue is not None:
            update_catalog(
                glue,
                options.database,
                table,
                processed_schema(spark, dataset),
                location,
                [],
                parameters=versions,
            )
        return summary, None, None
    root = f"{options.processed_path}{dataset.name}/"
    history = store.exists(root)
    raw = read_raw(spark, dataset, plan.raw_files)
    values = transform_typed(raw, dataset)
    if history:
        values = values.persist()  # read twice: the history's key scan, then the write
    checked = values.select(*raw.columns, PROBLEMS_COLUMN)
    read_counts = CheckedCounts(f"{dataset.name}_read")
    new: DataFrame | None = None
    written: WrittenRows | None = None
    try:
        valid = F.size(PROBLEMS_COLUMN) == 0
        new = values.where(valid).selectExpr(*typed_columns(dataset))
        if keep_new:
            new = new.persist()
        moved = moved_dates(spark, store, root, dataset, new) if history else set()
        # The rows read are counted by the write, through a DataFrame of its own: metrics are not gathered on the
        # broadcast side of a join (the history's key scan) nor under a cached plan (`new` kept for the lookups).
        counted_new = read_counts.observe(values).where(valid).selectExpr(*typed_columns(dataset))
        # Valid rows are dated in their raw partition (`transform_check`): the raw files' dates bound the new rows'.
        rewrite = sorted(set(plan.dates) | moved)
        existing_paths = [
            uri for d in rewrite if store.exists(uri := options.partition_uri(options.processed_path, dataset.name, d))
        ]
        existing_counts, out_counts = OutputCounts(f"{dataset.name}_existing"), OutputCounts(f"{dataset.name}_out")
        existing = existing_counts.observe(read_processed(spark, dataset, existing_paths)) if existing_paths else None
        processed = transform_processed(counted_new, existing, dataset)
        # Spark drops, after a write, the caches of plans reading the written folder: rows merged with existing
        # partitions are not kept (their rollups read those days back)
        keep = keep_written and existing is None
        kept = write_partitions(out_counts.observe(processed), dataset, root, keep=keep)
        if kept is not None:  # the rows' cache is computed from `values`'s: both released by the caller
            written = WrittenRows(kept, values)
        rows_read, rows_quarantined = read_counts.rows, read_counts.quarantined
        rows_existing = existing_counts.rows if existing_paths else 0
        rows_out, out_days = out_counts.rows, out_counts.dates
        reasons: dict[str, int] = {}
        if rows_quarantined:
            reasons = quarantine_reasons(checked)
            quarantine_rows(checked, options, dataset)
        removed = sorted(
            d
            for d in rewrite
            if d not in out_days and options.partition_uri(options.processed_path, dataset.name, d) in existing_paths
        )
        for day in removed:
            store.delete(options.partition_uri(options.processed_path, dataset.name, day))
        if glue is not None:
            summary["catalog_partitions_added"] = update_catalog(
                glue,
                options.database,
                table,
                processed.schema,
                location,
                out_days,
                removed,
                parameters=versions,
            )
    except BaseException:
        if new is not None and keep_new:
            new.unpersist()
        if written is not None:
            written.release()
            written = None
        raise
    finally:
        if written is None:
            values.unpersist()
    rows_in = rows_read - rows_quarantined
    summary.update(
        rows_read=rows_read,
        rows_quarantined=rows_quarantined,
        rows_in=rows_in,
        rows_existing=rows_existing,
        duplicates_dropped=rows_in + rows_existing - rows_out,
        rows_out=rows_out,
        partitions=[d.isoformat() for d in out_days],
        partitions_removed=[d.isoformat() for d in removed],
        quarantine={
            "location": options.quarantine_uri(dataset.name) if rows_quarantined else None,
            "reasons": reasons,
        },
    )
    return summary, new, written


# ----------------------------------------------------------------------------------------------- rollups


ROLLUP_MARKERS = "_rollups"
"""`<processed>/_rollups/<dataset>.json`: the declaration each rollup of a dataset was last built whole from."""


def rollup_signature(rollup: Rollup) -> str:
    """A digest of a rollup's declaration: a rollup whose stored days were built from another is rebuilt whole."""
    text = json.dumps(asdict(rollup), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def rollup_marker_uri(options: JobOptions, dataset: str) -> str:
    """Where the signatures of a dataset's consistent rollups are recorded."""
    return f"{options.processed_path}{ROLLUP_MARKERS}/{dataset}.json"


def rollup_root(options: JobOptions, rollup: Rollup) -> str:
    """The folder of a rollup's partitions in the processed zone (as the job reaches it)."""
    return f"{options.processed_path}{rollup.name}/"


@dataclass(frozen=True)
class RollupState:
    """A dataset's rollups as a run finds them: those whose every stored day matches the dataset's (`current`)."""

    dataset: Dataset
    current: frozenset[str]

    @classmethod
    def read(cls, store: FileStore, options: JobOptions, dataset: Dataset) -> RollupState:
        """The rollups recorded consistent with their declaration; none when the marker is missing or unreadable."""
        text = store.read_text(rollup_marker_uri(options, dataset.name)) if dataset.rollups else None
        try:
            recorded = json.loads(text).get("rollups", {}) if text else {}
        except (ValueError, AttributeError):
            recorded = {}
        found = {r.name for r in dataset.rollups if recorded.get(r.name) == rollup_signature(r)}
        return cls(dataset, frozenset(found))

    @property
    def stale(self) -> tuple[Rollup, ...]:
        """The rollups to rebuild from every processed day: never built, built from another declaration, or left
        unfinished by a run that failed between the dataset's write and theirs."""
        return tuple(r for r in self.dataset.rollups if r.name not in self.current)

    def record(self, store: FileStore, options: JobOptions, names: Collection[str]) -> None:
        """Record `names` as the rollups consistent with the dataset (the others are rebuilt whole by the next run)."""
        if not self.dataset.rollups:
            return
        rollups = {r.name: rollup_signature(r) for r in self.dataset.rollups if r.name in names}
        marker = {"dataset": self.dataset.name, "rollups": rollups, "run_id": options.run_id}
        store.write_text(rollup_marker_uri(options, self.dataset.name), json.dumps(marker, sort_keys=True))


def rollup_inputs(store: FileStore, options: JobOptions, plan: DatasetPlan) -> list[str]:
    """What a run's rollups of one dataset read and rewrite: the marker, and when the run writes them, their folders
    (a rewritten day replaces the files there) and the dataset's processed root (a stale rollup reads every day)."""
    dataset = get_dataset(plan.dataset)
    if not dataset.rollups:
        return []
    marker = rollup_marker_uri(options, dataset.name)
    uris = [marker] if store.exists(marker) else []
    state = RollupState.read(store, options, dataset)
    if not plan.raw_files and not state.stale:
        return uris
    folders = [f"{options.processed_path}{dataset.name}/", *(rollup_root(options, r) for r in dataset.rollups)]
    return uris + [uri for uri in folders if store.exists(uri)]


def transform_rollup(rows: DataFrame, rollup: Rollup) -> DataFrame:
    """One row per `event_date` and group of `rows`: the group columns, the measures, then `event_date`.

    Counts are bigint; a sum has Spark's type (bigint for integers, decimal(min(p+10, 38),s) for a decimal(p,s)), so
    every value is exact; a count of distinct values leaves nulls out, as SQL's does.
    """
    measures: list[Column] = []
    for measure in rollup.measures:
        if measure.kind == "count":
            measures.append(F.count(F.lit(1)).alias(measure.name))
        elif measure.kind == "count_distinct":
            measures.append(F.countDistinct(F.col(str(measure.column))).alias(measure.name))
        else:
            measures.append(F.sum(F.col(str(measure.column))).alias(measure.name))
    grouped = rows.groupBy(PARTITION_COLUMN, *rollup.group_by).agg(*measures)
    return grouped.select(*rollup.group_by, *(m.name for m in rollup.measures), PARTITION_COLUMN)


def read_rollup_rows(
    spark: SparkSession, dataset: Dataset, root: str, days: Sequence[date], columns: Sequence[str]
) -> DataFrame:
    """`columns` and `event_date` of the dataset's processed rows on `days` (derived columns included; Parquet reads
    only those columns of those partitions), each date's rows in one of Spark's partitions."""
    schema = processed_schema(spark, dataset)
    paths = [f"{root}{PARTITION_COLUMN}={day.isoformat()}/" for day in days]
    if paths:
        rows = spark.read.schema(schema).option("basePath", root).parquet(*paths)
    else:
        rows = spark.createDataFrame([], schema)
    parts = max(1, min(len(days), spark.sparkContext.defaultParallelism))
    return rows.select(*columns, PARTITION_COLUMN).repartition(parts, PARTITION_COLUMN)


def cached_by_date(spark: SparkSession, rows: DataFrame) -> DataFrame:
    """`rows` cached with their partitioning by date kept visible to the plans reading the cache (Spark's adaptive
    execution may otherwise change a cached plan's partitioning, and hides it): each rollup then aggregates them and
    writes one file per date without another shuffle."""
    key = "spark.sql.optimizer.canChangeCachedPlanOutputPartitioning"
    previous = spark.conf.get(key)
    spark.conf.set(key, "false")  # read when the cache is declared, not when it is filled
    try:
        return rows.persist()
    finally:
        if previous is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, previous)


def write_rollup(df: DataFrame, rollup: Rollup, path: str) -> None:
    """Write a rollup's days under `path` sorted by its groups; only those dates replaced. Each date's rows are in one
    of Spark's partitions (`cached_by_date`), so each date is one Parquet file."""
    ordered = df.sortWithinPartitions(PARTITION_COLUMN, *rollup.group_by)
    ordered.write.mode("overwrite").partitionBy(PARTITION_COLUMN).option("compression", "snappy").parquet(path)


def _processed_days(store: FileStore, root: str) -> list[date]:
    days = set()
    for info in store.list_files(root):
        folder = info.relative.split("/", 1)[0]
        if "/" in info.relative and folder.startswith(f"{PARTITION_COLUMN}="):
            try:
                days.add(date.fromisoformat(folder.removeprefix(f"{PARTITION_COLUMN}=")))
            except ValueError:
                continue
    return sorted(days)


def _catalog_days(glue: Any, database: str, table: str) -> list[date]:
    """The partitions the catalog holds for `table` (none when the table is not there)."""
    days = []
    try:
        for page in glue.get_paginator("get_partitions").paginate(DatabaseName=database, TableName=table):
            days += [date.fromisoformat(p["Values"][0]) for p in page.get("Partitions", [])]
    except glue.exceptions.EntityNotFoundException:
        return []
    return days


def refresh_rollups(
    spark: SparkSession,
    store: FileStore,
    options: JobOptions,
    state: RollupState,
    summary: Mapping[str, Any],
    written_rows: DataFrame | None = None,
) -> dict[str, Any]:
    """Rewrite a dataset's rollups for the days its run rewrote, remove those of the days it removed, and rebuild a
    stale rollup from every processed day; catalogue each as a table of the processed zone. Returns, per rollup, the
    days written and removed and whether it was rebuilt whole.

    The rewritten days' rows are `written_rows` when the run kept them (`write_partitions`), else they are read back
    from the processed zone (only the rollups' columns of those partitions), once for all the dataset's rollups; a
    stale rollup reads every processed day, which on a first load are the rows just written. The input is cached
    before the rollups start, then each rollup is one write, all at once.
    """
    dataset = state.dataset
    if not dataset.rollups:
        return {}
    root = f"{options.processed_path}{dataset.name}/"
    written = [date.fromisoformat(d) for d in summary.get("partitions", [])]
    removed = [date.fromisoformat(d) for d in summary.get("partitions_removed", [])]
    stale = {r.name for r in state.stale}
    if not written and not removed and not stale:  # a reference-only run, or one refused: the rollups stand
        state.record(store, options, [r.name for r in dataset.rollups])
        return {}
    every = _processed_days(store, root) if stale else []
    columns = list(dict.fromkeys(c for r in dataset.rollups for c in r.columns))
    glue: Any = boto3.client("glue") if options.update_catalog else None
    inputs: dict[bool, DataFrame] = {}
    read_back: list[DataFrame] = []

    def rollup_rows(whole: bool) -> DataFrame:
        days = every if whole else written
        if written_rows is not None and set(days) == set(written):
            return written_rows.select(*columns, PARTITION_COLUMN)
        rows = cached_by_date(spark, read_rollup_rows(spark, dataset, root, days, columns))
        read_back.append(rows)
        return rows

    def refresh(rollup: Rollup) -> dict[str, Any]:
        whole = rollup.name in stale
        days = every if whole else written
        rows = transform_rollup(inputs[whole], rollup)
        path = rollup_root(options, rollup)
        if whole:
            store.delete(path)
        if days:
            write_rollup(rows, rollup, path)
        gone = [d for d in removed if d not in days]
        for day in gone:
            store.delete(f"{path}{PARTITION_COLUMN}={day.isoformat()}/")
        if glue is not None:
            table = f"{options.table_prefix}{rollup.name}"
            location = f"{options.catalog_processed_path}{rollup.name}/"
            parameters = {"rollup_of": dataset.name, "rollup_signature": rollup_signature(rollup)}
            if whole:  # its columns are the declaration's alone, its partitions the days it holds
                gone = sorted({*gone, *(d for d in _catalog_days(glue, options.database, table) if d not in days)})
                if schemas.get_table(glue, options.database, table) is not None:
                    table_input = glue_table_input(table, rows.schema, location, parameters)
                    glue.update_table(DatabaseName=options.database, TableInput=table_input)
            update_catalog(glue, options.database, table, rows.schema, location, days, gone, parameters=parameters)
        return {
            "partitions": [d.isoformat() for d in days],
            "partitions_removed": [d.isoformat() for d in gone],
            "whole": whole,
        }

    try:
        for whole in sorted({r.name in stale for r in dataset.rollups}):
            inputs[whole] = rollup_rows(whole)
        for frame in read_back:
            frame.count()  # filled once here, not by each of the writes reading it at once
        rollups = dataset.rollups
        with ThreadPoolExecutor(len(rollups), thread_name_prefix=f"rollups_{dataset.name}") as pool:
            report = dict(zip((r.name for r in rollups), pool.map(refresh, rollups), strict=True))
    finally:
        for frame in read_back:
            frame.unpersist()
    state.record(store, options, [r.name for r in dataset.rollups])
    return report


def process_with_rollups(
    session: Callable[[], SparkSession],
    store: FileStore,
    options: JobOptions,
    plan: DatasetPlan,
    changed: Mapping[str, DataFrame],
    *,
    keep_new: bool = False,
) -> tuple[dict[str, Any], DataFrame | None]:
    """One dataset's part of a run: `process_dataset` unless it has nothing to do (`unchanged_summary`), then its
    rollups follow (`refresh_rollups`, from the rows the write kept); returns the summary and the new rows.

    Spark starts only for a dataset with something to do or a stale rollup. Before new rows are written the marker
    vouches for no rollup, so a run failing before its rollups follow leaves them to be rebuilt whole.
    """
    rollups = RollupState.read(store, options, get_dataset(plan.dataset))
    unchanged = unchanged_summary(options, plan, changed)
    if unchanged is not None and not rollups.stale:  # nothing to do: no Spark started for it
        return unchanged, None
    new: DataFrame | None = None
    written: WrittenRows | None = None
    if unchanged is not None:
        summary = unchanged
    else:
        if plan.raw_files:
            rollups.record(store, options, ())
        keep_written = bool(rollups.dataset.rollups)
        summary, new, written = process_dataset(
            session(), store, options, plan, changed, keep_new=keep_new, keep_written=keep_written
        )
    try:
        if rollups.dataset.rollups:
            rows = written.rows if written is not None else None
            summary["rollups"] = refresh_rollups(session(), store, options, rollups, summary, rows)
    except BaseException:
        if new is not None:
            new.unpersist()
        raise
    finally:
        if written is not None:
            written.release()
    return summary, new


ACCEPTS_SESSION_FACTORY = True
"""`run` takes a function that makes the session: a local runtime then starts Spark only when a run has work."""


class LazySession:
    """The run's SparkSession, made and configured on first use: a run with nothing new never starts Spark."""

    def __init__(self, spark: SparkSession | Callable[[], SparkSession]) -> None:
        self._given = spark
        self._session: SparkSession | None = None
        self._lock = threading.Lock()  # datasets are processed from several threads

    def __call__(self) -> SparkSession:
        with self._lock:
            if self._session is None:
                session = self._given if isinstance(self._given, SparkSession) else self._given()
                _configure(session)
                self._session = session
            return self._session


def dataset_waits(store: FileStore, plan: JobPlan) -> dict[str, set[str]]:
    """The datasets of the run each dataset must wait for: the reference datasets it looks up that have new files.

    Their new rows answer two questions: whether a dataset with no new files must run all the same, and which dates of
    its processed history their change touches. A dataset with new files and no processed history asks neither, so it
    waits for nothing.
    """
    root = plan.options.processed_path
    return {
        p.dataset: set() if p.raw_files and not store.exists(f"{root}{p.dataset}/") else set(p.references_changed)
        for p in plan.datasets
    }


def kept_references(store: FileStore, plan: JobPlan) -> set[str]:
    """The datasets whose new rows are kept in memory: those looked up by a dataset with processed history to scan."""
    root = plan.options.processed_path
    looking_up = [*(p.dataset for p in plan.datasets), *plan.dependents]
    return {lk.dataset for name in looking_up if store.exists(f"{root}{name}/") for lk in get_dataset(name).lookups}


def process_datasets(
    session: LazySession, store: FileStore, plan: JobPlan, changed: dict[str, DataFrame]
) -> dict[str, dict[str, Any]]:
    """Process every dataset of the run, each in a thread of its own once the datasets it waits for are done.

    Spark runs the jobs of several threads on one session at once: while one dataset's job runs, the driver plans
    another's, and a small dataset does not queue behind a large one. Each dataset waits for what `dataset_waits` says.
    Returns the datasets' summaries in the plan's order and fills `changed` with the new rows of every dataset another
    looks up (kept in memory when `kept_references` says so; the caller unpersists them). A failing dataset fails the
    run once those already running have ended.
    """
    options = plan.options
    plans = {p.dataset: p for p in plan.datasets}
    kept = kept_references(store, plan)
    referenced = {lk.dataset for name in [*plans, *plan.dependents] for lk in get_dataset(name).lookups}
    results: dict[str, dict[str, Any]] = {}

    def process(name: str, references: Mapping[str, DataFrame]) -> tuple[dict[str, Any], DataFrame | None]:
        # nothing to do and rollups current: no Spark started for it (none at all when nothing is new)
        return process_with_rollups(session, store, options, plans[name], references, keep_new=name in kept)

    order = TopologicalSorter(dataset_waits(store, plan))
    order.prepare()
    failure: BaseException | None = None
    with ThreadPoolExecutor(max(1, len(plans)), thread_name_prefix="raw_to_processed") as pool:
        running: dict[Future[tuple[dict[str, Any], DataFrame | None]], str] = {}
        while running or (failure is None and order.is_active()):
            if failure is None:
                running.update({pool.submit(process, name, dict(changed)): name for name in order.get_ready()})
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                if (error := future.exception()) is not None:
                    failure = failure or error  # no dataset starts after it; those running end first
                    continue
                results[name], new = future.result()
                if new is not None and name in referenced:
                    changed[name] = new
                elif new is not None:
                    new.unpersist()
                order.done(name)
    if failure is not None:
        raise failure
    return {name: results[name] for name in plans}


def run(spark: SparkSession | Callable[[], SparkSession], args: Mapping[str, str]) -> dict[str, Any]:
    """Process the new raw data of each dataset into the processed zone and the catalog.

    Parameters
    ----------
    spark
        The session (Glue's, EMR Serverless's or a local one), or a function making it, called only when a dataset
        has work (on local roots the plan is read without the JVM).
    args
        Job arguments without the leading `--` (see the module docstring).

    Returns
    -------
    dict
        The run summary, also written to `<processed>/_runs/<run_id>/summary.json`: per dataset the raw rows read
        (`rows_read`), those set aside with their reasons (`rows_quarantined`, `quarantine`), the valid rows
        (`rows_in` = rows_read - rows_quarantined), the rows the rewritten partitions held before
        (`rows_existing`), `duplicates_dropped` (= rows_in + rows_existing - rows_out), `rows_out`, the
        `partitions` (event dates) written and those emptied and removed (`partitions_removed`, where every row
        moved to another date), the `reference_dates` whose curated rows a reference change touches, the
        `raw_files` read (keys relative to the raw root), `skipped_files` and the watermark moves; and, for the
        datasets outside the run that look up a changed reference dataset, the dates it touches (`reference_dates`).
    """
    started = datetime.now(UTC)
    options = JobOptions.from_args(args)
    session = LazySession(spark)
    local = is_local(options.raw_path) and is_local(options.processed_path)
    store: FileStore = LocalFileStore() if local else HadoopStore(session())
    plan = build_plan(options, store, started)
    changed: dict[str, DataFrame] = {}
    reference_dates: dict[str, list[str]] = {}
    try:
        results = process_datasets(session, store, plan, changed)
        for name in plan.dependents:
            touched = touched_by_references(session(), store, options, get_dataset(name), changed)
            if touched:
                reference_dates[name] = [d.isoformat() for d in touched]
    finally:
        for frame in changed.values():
            frame.unpersist()
    summary = {
        "run_id": options.run_id,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "datasets": results,
        "reference_dates": reference_dates,
    }
    store.write_text(options.summary_uri(), json.dumps(summary, indent=2))
    for dataset_plan in plan.datasets:
        if results[dataset_plan.dataset].get("schema_change", {}).get("breaking"):
            continue  # refused: its new raw files are read again once the contract is compatible
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

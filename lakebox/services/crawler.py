"""The Glue crawler, run locally: infer schemas and partitions from S3 objects and write them to the Glue catalog."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import re
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import ClientError

from lakebox.services.s3uri import split_s3_uri
from lakebox.sfn.integrations import STATES, client_errors, json_safe

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_glue import GlueClient
    from mypy_boto3_glue.type_defs import PartitionInputTypeDef, StorageDescriptorTypeDef, TableInputTypeDef
    from mypy_boto3_s3 import S3Client

    from lakebox.sfn.registry import Handler, TaskContext

logger = logging.getLogger(__name__)

PARQUET_FORMAT: Final = {
    "input": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "output": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "serde": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
}
TEXT_FORMAT: Final = {
    "input": "org.apache.hadoop.mapred.TextInputFormat",
    "output": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
}
JSON_SERDE: Final = "org.openx.data.jsonserde.JsonSerDe"
JSON_SERDES: Final = frozenset(
    {JSON_SERDE, "org.apache.hive.hcatalog.data.JsonSerDe", "org.apache.hadoop.hive.serde2.JsonSerDe"}
)
LAZY_SIMPLE_SERDE: Final = "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe"
OPEN_CSV_SERDE: Final = "org.apache.hadoop.hive.serde2.OpenCSVSerde"
CSV_SERDES: Final = frozenset({LAZY_SIMPLE_SERDE, OPEN_CSV_SERDE})

SAMPLE_BYTES: Final = 1024 * 1024
"""Bytes read from the start of each sampled object (decompressed), as Glue's classifiers do."""
SAMPLE_FILES: Final = 50
"""Objects sampled per table when the target sets no SampleSize."""
_TAIL_BYTES: Final = 64 * 1024
_PARTITION_BATCH: Final = 100
_HIVE_TIMESTAMP: Final = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,9})?$")
_DATE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INT: Final = re.compile(r"^[-+]?\d{1,18}$")
_FLOAT: Final = re.compile(r"^[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?$")


def hidden_key(relative: str) -> bool:
    """Whether Hive and Athena skip an object: its name starts with `_` or `.`, or it is a folder marker."""
    name = relative.rstrip("/").rsplit("/", 1)[-1]
    return name.startswith(("_", ".")) or name.endswith("_$folder$")


@dataclass(frozen=True)
class TableChange:
    """What one crawl did to one table."""

    table: str
    action: str
    classification: str
    columns: int
    partitions_added: int
    objects: int


@dataclass(frozen=True)
class CrawlResult:
    """The outcome of a crawl: the tables it created or updated and the partitions it added."""

    crawler: str
    database: str
    changes: tuple[TableChange, ...]
    duration_ms: int

    @property
    def tables_created(self) -> int:
        """How many tables the crawl created."""
        return sum(1 for c in self.changes if c.action == "created")

    @property
    def tables_updated(self) -> int:
        """How many existing tables the crawl changed."""
        return sum(1 for c in self.changes if c.action == "updated")

    @property
    def partitions_added(self) -> int:
        """How many partitions the crawl registered, over all tables."""
        return sum(c.partitions_added for c in self.changes)


@dataclass
class _CrawlState:
    state: str = "READY"
    crawl_id: str = ""
    started: dt.datetime | None = None
    status: str | None = None
    error: str | None = None
    elapsed_ms: int = 0
    last_result: CrawlResult | None = None


class Crawlers:
    """The local crawlers' run state (RUNNING or READY, the last crawl), kept by the box that runs them."""

    def __init__(self) -> None:
        self.states: dict[tuple[str, str], _CrawlState] = {}
        self.lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        with self.lock:
            return {"states": dict(self.states)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.states = dict(state["states"])
        self.lock = threading.Lock()
        for crawl_state in self.states.values():
            crawl_state.state = "READY"


_DIRECT = Crawlers()
"""For callers without a box of their own (a box passes its `Crawlers`)."""
START_CRAWLER = f"{STATES}aws-sdk:glue:startCrawler"
GET_CRAWLER = f"{STATES}aws-sdk:glue:getCrawler"


class LocalCrawler:
    """The crawler of one box: its crawls run here, their state kept in the box's `Crawlers`; a TaskService."""

    def __init__(self, session: boto3.Session, crawlers: Crawlers) -> None:
        self.session = session
        self.crawlers = crawlers

    def task_handlers(self) -> dict[str, Handler]:
        """``aws-sdk:glue:startCrawler`` (a crawl run to its end) and ``aws-sdk:glue:getCrawler`` (its state)."""

        def start(parameters: Any, task: TaskContext) -> Any:
            with client_errors("Glue"):
                return json_safe(start_crawler(self.session, str(parameters["Name"]), self.crawlers))

        def get(parameters: Any, task: TaskContext) -> Any:
            with client_errors("Glue"):
                return json_safe(get_crawler(self.session, str(parameters["Name"]), self.crawlers))

        return {START_CRAWLER: start, GET_CRAWLER: get}


def start_crawler(session: boto3.Session, name: str, crawlers: Crawlers | None = None) -> dict[str, Any]:
    """Run the named crawler to completion, as `glue.start_crawler` then waiting would.

    Parameters
    ----------
    session
        A boto3 session reaching the local endpoint.
    name
        The crawler's name in the Glue catalog.
    crawlers
        Where the crawl's state is kept (the box's); a shared one when omitted.

    Returns
    -------
    dict
        StartCrawler's (empty) response. The crawl's outcome is in `get_crawler`'s ``LastCrawl``.

    Raises
    ------
    botocore.exceptions.ClientError
        ``EntityNotFoundException`` for an unknown crawler, ``CrawlerRunningException`` while it runs.
    """
    glue: GlueClient = session.client("glue")
    glue.get_crawler(Name=name)
    key = _state_key(glue, name)
    registry = crawlers or _DIRECT
    with registry.lock:
        state = registry.states.setdefault(key, _CrawlState())
        if state.state == "RUNNING":
            raise ClientError(
                {
                    "Error": {
                        "Code": "CrawlerRunningException",
                        "Message": f"Crawler with name {name} has already started",
                    }
                },
                "StartCrawler",
            )
        state.state, state.crawl_id, state.started = "RUNNING", str(uuid.uuid4()), dt.datetime.now(dt.UTC)
        state.status, state.error = None, None
    began = time.perf_counter()
    status: str = "FAILED"
    error: str | None = "the crawl did not finish"
    result: CrawlResult | None = None
    try:
        result = crawl(session, name)
        status, error = "SUCCEEDED", None
    except (ClientError, ValueError, OSError, pa.ArrowException, zlib.error) as exc:
        error = f"{type(exc).__name__}: {exc}"
        logger.warning("crawler %s failed: %s", name, error)
    finally:
        with registry.lock:
            state.state, state.status, state.error = "READY", status, error
            state.elapsed_ms = int((time.perf_counter() - began) * 1000)
            state.last_result = result
    return {}


def get_crawler(session: boto3.Session, name: str, crawlers: Crawlers | None = None) -> dict[str, Any]:
    """Return GetCrawler's response for the named crawler, with the local crawl's state and ``LastCrawl``.

    Datetimes are ISO-8601 strings so the response can travel through a state machine as JSON.
    """
    glue: GlueClient = session.client("glue")
    crawler: dict[str, Any] = dict(glue.get_crawler(Name=name)["Crawler"])
    registry = crawlers or _DIRECT
    with registry.lock:
        state = registry.states.get(_state_key(glue, name))
        if state is not None:
            crawler["State"] = state.state
            crawler["CrawlElapsedTime"] = state.elapsed_ms
            if state.status is not None and state.started is not None:
                last: dict[str, Any] = {
                    "Status": state.status,
                    "StartTime": state.started,
                    "LogGroup": "/aws-glue/crawlers",
                    "LogStream": name,
                    "MessagePrefix": state.crawl_id,
                }
                if state.error:
                    last["ErrorMessage"] = state.error
                crawler["LastCrawl"] = last
        else:
            crawler["State"] = "READY"
            crawler.pop("LastCrawl", None)
    return {"Crawler": _json_safe(crawler)}


def last_crawl(session: boto3.Session, name: str, crawlers: Crawlers | None = None) -> CrawlResult | None:
    """The result of the named crawler's last local crawl, if any."""
    glue: GlueClient = session.client("glue")
    registry = crawlers or _DIRECT
    with registry.lock:
        state = registry.states.get(_state_key(glue, name))
        return state.last_result if state else None


def crawl(session: boto3.Session, name: str) -> CrawlResult:
    """Crawl the crawler's S3 targets now and write what it finds to its database.

    One table per dataset folder under each target (folders starting with `_` are skipped unless the
    target names them), with the SerDe Athena needs for the format found, and one partition per
    `k=v` (Hive) or plain (``partition_0``…) folder level.
    """
    began = time.perf_counter()
    glue: GlueClient = session.client("glue")
    s3: S3Client = session.client("s3")
    crawler = glue.get_crawler(Name=name)["Crawler"]
    database = crawler["DatabaseName"]
    prefix = crawler.get("TablePrefix") or ""
    update_behavior = (crawler.get("SchemaChangePolicy") or {}).get("UpdateBehavior", "UPDATE_IN_DATABASE")
    new_folders_only = (crawler.get("RecrawlPolicy") or {}).get("RecrawlBehavior") == "CRAWL_NEW_FOLDERS_ONLY"
    configuration = json.loads(crawler.get("Configuration") or "{}")
    level = (configuration.get("Grouping") or {}).get("TableLevelConfiguration")
    table_level = int(level) if level else None
    changes: list[TableChange] = []
    for target in (crawler.get("Targets") or {}).get("S3Targets", []):
        path = target["Path"]
        sample_files = int(target.get("SampleSize") or SAMPLE_FILES)
        objects = _list_objects(s3, path, target.get("Exclusions") or [])
        for dataset in _datasets(path, objects, table_level):
            change = _crawl_dataset(
                glue,
                s3,
                dataset,
                database=database,
                table_name=_table_name(prefix, dataset.name),
                crawler_name=name,
                update_schema=update_behavior != "LOG",
                new_folders_only=new_folders_only,
                sample_files=sample_files,
            )
            if change is not None:
                changes.append(change)
    result = CrawlResult(name, database, tuple(changes), int((time.perf_counter() - began) * 1000))
    logger.info(
        "crawler %s: %d tables created, %d updated, %d partitions added",
        name,
        result.tables_created,
        result.tables_updated,
        result.partitions_added,
    )
    return result


# ----------------------------------------------------------------- listing


@dataclass(frozen=True)
class _Object:
    bucket: str
    key: str
    size: int
    parts: tuple[str, ...]
    """Folders between the dataset root and the object."""


@dataclass
class _Dataset:
    name: str
    bucket: str
    root: str
    objects: list[_Object] = field(default_factory=list)


def _list_objects(s3: S3Client, path: str, exclusions: list[str]) -> list[tuple[str, str, int, str]]:
    """(bucket, key, size, key relative to the target) of every readable object under the target."""
    bucket, prefix = split_s3_uri(path)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    excluded = [glob_regex(pattern) for pattern in exclusions]
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            relative = key[len(prefix) :]
            if not relative or key.endswith("/") or int(item.get("Size", 0)) == 0 or hidden_key(relative):
                continue
            if any(pattern.fullmatch(relative) for pattern in excluded):
                continue
            found.append((bucket, key, int(item["Size"]), relative))
    return found


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A Glue exclusion glob as a regex: `*` and `?` stay within a folder, `**` crosses folders, `{a,b}` alternates."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "{":
            end = pattern.find("}", i)
            if end < 0:
                out.append(re.escape(c))
            else:
                out.append("(?:" + "|".join(re.escape(a) for a in pattern[i + 1 : end].split(",")) + ")")
                i = end
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


def _datasets(path: str, objects: list[tuple[str, str, int, str]], table_level: int | None) -> list[_Dataset]:
    """Group a target's objects into tables.

    With the crawler's ``Grouping.TableLevelConfiguration`` (the bucket is level 1) each folder at that level
    is a table. Otherwise the target itself is the table when it holds files, `k=v` folders or only
    numbered folders (years, dates) at its first level; else each first-level folder is one table. Glue
    compares schemas to decide; these rules give the same answer for datasets laid out one per folder.
    Folders starting with `_` or `.` below the target are never tables.
    """
    bucket, prefix = split_s3_uri(path)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if table_level is not None:
        depth = table_level - 1
        target_depth = prefix.count("/")
        if depth <= target_depth:
            return _one_table(bucket, "/".join(prefix.split("/")[:depth]) + "/" if depth else "", objects, prefix)
        return _tables_at(bucket, prefix, objects, depth - target_depth)
    firsts = {rel.split("/", 1)[0] for _, _, _, rel in objects if "/" in rel}
    whole = any("/" not in rel for _, _, _, rel in objects) or any("=" in f for f in firsts)
    if whole or (firsts and all(f.isdigit() for f in firsts)):
        return _one_table(bucket, prefix, objects, prefix)
    return _tables_at(bucket, prefix, objects, 1)


def _one_table(bucket: str, root: str, objects: list[tuple[str, str, int, str]], prefix: str) -> list[_Dataset]:
    name = root.rstrip("/").rsplit("/", 1)[-1] or bucket
    dataset = _Dataset(name, bucket, root)
    for b, key, size, _ in objects:
        dataset.objects.append(_Object(b, key, size, tuple(key[len(root) :].split("/")[:-1])))
    return [dataset] if dataset.objects else []


def _tables_at(bucket: str, prefix: str, objects: list[tuple[str, str, int, str]], levels: int) -> list[_Dataset]:
    datasets: dict[str, _Dataset] = {}
    for b, key, size, rel in objects:
        parts = rel.split("/")
        if len(parts) <= levels or any(p.startswith(("_", ".")) for p in parts[:levels]):
            continue
        root = prefix + "/".join(parts[:levels]) + "/"
        dataset = datasets.setdefault(root, _Dataset(parts[levels - 1], bucket, root))
        dataset.objects.append(_Object(b, key, size, tuple(parts[levels:-1])))
    return [datasets[k] for k in sorted(datasets)]


def _table_name(prefix: str, folder: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", f"{prefix}{folder}".lower())


# ---------------------------------------------------------------- datasets


@dataclass
class _Inferred:
    classification: str
    compression: str
    columns: list[tuple[str, str]]
    serde: str
    serde_parameters: dict[str, str]
    parameters: dict[str, str]
    records: int
    sample_bytes: int


def _crawl_dataset(
    glue: GlueClient,
    s3: S3Client,
    dataset: _Dataset,
    *,
    database: str,
    table_name: str,
    crawler_name: str,
    update_schema: bool,
    new_folders_only: bool,
    sample_files: int,
) -> TableChange | None:
    depths = Counter(len(o.parts) for o in dataset.objects)
    depth = depths.most_common(1)[0][0]
    objects = [o for o in dataset.objects if len(o.parts) == depth]
    if len(objects) < len(dataset.objects):
        logger.warning(
            "crawler %s: %d objects of %s are not at partition depth %d and are skipped",
            crawler_name,
            len(dataset.objects) - len(objects),
            dataset.name,
            depth,
        )
    keys = _partition_keys(objects, depth)
    partitions: dict[tuple[str, ...], str] = {}
    for obj in objects:
        values = tuple(_partition_value(part) for part in obj.parts)
        partitions.setdefault(values, f"s3://{dataset.bucket}/{dataset.root}{'/'.join(obj.parts)}/")
    existing = _get_table(glue, database, table_name)
    known: set[tuple[str, ...]] = set()
    if existing is not None and keys:
        known = _partition_values(glue, database, table_name)
    sampled = objects
    if existing is not None and new_folders_only:
        sampled = [o for o in objects if tuple(_partition_value(p) for p in o.parts) not in known]
    inferred = _infer(s3, _spread(sampled, sample_files)) if sampled else None
    location = f"s3://{dataset.bucket}/{dataset.root}"
    total = sum(o.size for o in objects)
    action = "unchanged"
    if existing is None:
        if inferred is None:
            return None
        table_input = _table_input(table_name, location, keys, inferred, crawler_name, len(objects), total)
        glue.create_table(DatabaseName=database, TableInput=table_input)
        action = "created"
        columns = inferred.columns
        storage = table_input["StorageDescriptor"]
    else:
        columns = [
            (c["Name"], c.get("Type", "string")) for c in existing.get("StorageDescriptor", {}).get("Columns", [])
        ]
        if inferred is not None and update_schema and not new_folders_only:
            merged = _merge_columns(columns, inferred.columns)
            if merged != columns:
                columns = merged
                inferred.columns = merged
                table_input = _table_input(table_name, location, keys, inferred, crawler_name, len(objects), total)
                existing_keys = existing.get("PartitionKeys", [])
                if existing_keys:
                    table_input["PartitionKeys"] = [
                        {"Name": k["Name"], "Type": k.get("Type", "string")} for k in existing_keys
                    ]
                glue.update_table(DatabaseName=database, TableInput=table_input)
                action = "updated"
        storage = _storage_of(existing, columns)
    new = [(values, loc) for values, loc in sorted(partitions.items()) if values not in known] if keys else []
    table_keys = len(existing.get("PartitionKeys", [])) if existing is not None else len(keys)
    if new and table_keys != len(keys):
        logger.warning(
            "crawler %s: %s has %d partition keys but its folders nest %d deep; partitions not added",
            crawler_name,
            table_name,
            table_keys,
            len(keys),
        )
        new = []
    for start in range(0, len(new), _PARTITION_BATCH):
        batch: list[PartitionInputTypeDef] = [
            {"Values": list(values), "StorageDescriptor": {**storage, "Location": loc}, "Parameters": {}}
            for values, loc in new[start : start + _PARTITION_BATCH]
        ]
        response = glue.batch_create_partition(DatabaseName=database, TableName=table_name, PartitionInputList=batch)
        failed = [
            e
            for e in response.get("Errors", [])
            if e.get("ErrorDetail", {}).get("ErrorCode") != "AlreadyExistsException"
        ]
        if failed:
            detail = failed[0].get("ErrorDetail", {})
            raise ValueError(
                f"partitions of {table_name} not created: {detail.get('ErrorCode')}: {detail.get('ErrorMessage')}"
            )
    if action == "unchanged" and new:
        action = "updated"
    classification = (
        inferred.classification if inferred else (existing or {}).get("Parameters", {}).get("classification", "")
    )
    return TableChange(table_name, action, classification, len(columns), len(new), len(objects))


def _partition_keys(objects: list[_Object], depth: int) -> list[tuple[str, str]]:
    keys = []
    for level in range(depth):
        names = {o.parts[level].split("=", 1)[0].lower() for o in objects if "=" in o.parts[level]}
        hive = len(names) == 1 and all("=" in o.parts[level] for o in objects)
        keys.append((re.sub(r"[^a-z0-9_]", "_", names.pop()) if hive else f"partition_{level}", "string"))
    return keys


def _partition_value(folder: str) -> str:
    return unquote(folder.split("=", 1)[1]) if "=" in folder else unquote(folder)


def _partition_values(glue: GlueClient, database: str, table: str) -> set[tuple[str, ...]]:
    values: set[tuple[str, ...]] = set()
    for page in glue.get_paginator("get_partitions").paginate(DatabaseName=database, TableName=table):
        values.update(tuple(p["Values"]) for p in page.get("Partitions", []))
    return values


def _get_table(glue: GlueClient, database: str, name: str) -> dict[str, Any] | None:
    try:
        return dict(glue.get_table(DatabaseName=database, Name=name)["Table"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "EntityNotFoundException":
            return None
        raise


def _spread(objects: list[_Object], count: int) -> list[_Object]:
    """Up to `count` objects spread evenly over the list (so over partitions, which list in order)."""
    if len(objects) <= count:
        return objects
    step = len(objects) / count
    return [objects[int(i * step)] for i in range(count)]


def _merge_columns(old: list[tuple[str, str]], new: list[tuple[str, str]]) -> list[tuple[str, str]]:
    merged = dict(old)
    for name, kind in new:
        merged[name] = merge_types(merged[name], kind) if name in merged else kind
    return list(merged.items())


def _storage_of(table: dict[str, Any], columns: list[tuple[str, str]]) -> StorageDescriptorTypeDef:
    sd = dict(table.get("StorageDescriptor") or {})
    sd["Columns"] = [{"Name": n, "Type": t} for n, t in columns]
    keep = (
        "Columns",
        "Location",
        "InputFormat",
        "OutputFormat",
        "Compressed",
        "SerdeInfo",
        "Parameters",
        "StoredAsSubDirectories",
    )
    result: StorageDescriptorTypeDef = {k: v for k, v in sd.items() if k in keep}  # type: ignore[assignment]
    return result


def _table_input(
    name: str,
    location: str,
    keys: list[tuple[str, str]],
    inferred: _Inferred,
    crawler: str,
    objects: int,
    size: int,
) -> TableInputTypeDef:
    average = inferred.sample_bytes // inferred.records if inferred.records else 0
    parameters = {
        "classification": inferred.classification,
        "compressionType": inferred.compression,
        "typeOfData": "file",
        "UPDATED_BY_CRAWLER": crawler,
        "CrawlerSchemaDeserializerVersion": "1.0",
        "CrawlerSchemaSerializerVersion": "1.0",
        "averageRecordSize": str(average),
        "objectCount": str(objects),
        "recordCount": str(size // average if average else 0),
        "sizeKey": str(size),
        **inferred.parameters,
    }
    parquet = inferred.classification == "parquet"
    return {
        "Name": name,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": parameters,
        "PartitionKeys": [{"Name": k, "Type": t} for k, t in keys],
        "StorageDescriptor": {
            "Columns": [{"Name": n, "Type": t} for n, t in inferred.columns],
            "Location": location,
            "InputFormat": PARQUET_FORMAT["input"] if parquet else TEXT_FORMAT["input"],
            "OutputFormat": PARQUET_FORMAT["output"] if parquet else TEXT_FORMAT["output"],
            "Compressed": inferred.compression != "none",
            "NumberOfBuckets": -1,
            "SerdeInfo": {"SerializationLibrary": inferred.serde, "Parameters": inferred.serde_parameters},
            "Parameters": dict(parameters),
            "StoredAsSubDirectories": False,
        },
    }


# ----------------------------------------------------------------- schemas


def _infer(s3: S3Client, objects: list[_Object]) -> _Inferred | None:
    """Classify the sampled objects and merge their schemas; the most common format wins."""
    kinds: dict[str, list[tuple[_Object, bytes, str]]] = {}
    for obj in objects:
        kind, head, compression = _classify(s3, obj)
        kinds.setdefault(kind, []).append((obj, head, compression))
    if not kinds:
        return None
    kind, members = max(kinds.items(), key=lambda item: len(item[1]))
    if len(kinds) > 1:
        logger.warning("objects of several formats under one table; classifying it as %s", kind)
    compression = Counter(c for _, _, c in members).most_common(1)[0][0]
    if kind == "parquet":
        columns: list[tuple[str, str]] = []
        rows = 0
        for obj, _, _ in members:
            schema, count = _parquet_schema(s3, obj)
            columns = _merge_columns(columns, schema)
            rows += count
        return _Inferred(
            "parquet",
            "none",
            columns,
            PARQUET_FORMAT["serde"],
            {"serialization.format": "1"},
            {},
            rows,
            sum(o.size for o, _, _ in members),
        )
    if kind == "json":
        columns, records, size = [], 0, 0
        for _, head, _ in members:
            schema, count = infer_json_lines(head)
            columns = _merge_columns(columns, schema)
            records += count
            size += len(head)
        serde_parameters = {"paths": ",".join(n for n, _ in columns)}
        return _Inferred("json", compression, columns, JSON_SERDE, serde_parameters, {}, records, size)
    columns, records, size, quoted, delimiter = [], 0, 0, False, ","
    for _, head, _ in members:
        schema, count, quoted_here, delimiter = infer_csv(head)
        columns = _merge_columns(columns, schema)
        records += count
        size += len(head)
        quoted = quoted or quoted_here
    if quoted:
        columns = [(n, "string" if t in {"timestamp", "date"} else t) for n, t in columns]
        serde, serde_parameters = OPEN_CSV_SERDE, {"separatorChar": delimiter, "quoteChar": '"', "escapeChar": "\\"}
    else:
        serde, serde_parameters = LAZY_SIMPLE_SERDE, {"field.delim": delimiter}
    parameters = {
        "skip.header.line.count": "1",
        "delimiter": delimiter,
        "areColumnsQuoted": str(quoted).lower(),
        "columnsOrdered": "true",
    }
    return _Inferred("csv", compression, columns, serde, serde_parameters, parameters, records, size)


def _classify(s3: S3Client, obj: _Object) -> tuple[str, bytes, str]:
    """(`parquet`|`json`|`csv`, the first decompressed bytes, compression) of an object."""
    lower = obj.key.lower()
    if lower.endswith((".parquet", ".parq")):
        return "parquet", b"", "none"
    raw = s3.get_object(Bucket=obj.bucket, Key=obj.key, Range=f"bytes=0-{SAMPLE_BYTES - 1}")["Body"].read()
    if raw[:4] == b"PAR1":
        return "parquet", b"", "none"
    compression = "none"
    head = raw
    if raw[:2] == b"\x1f\x8b":
        compression = "gzip"
        head = zlib.decompressobj(wbits=31).decompress(raw, SAMPLE_BYTES)
    head = _complete_lines(head, truncated=len(raw) < obj.size or compression == "gzip")
    text = head.lstrip()
    if text[:1] in {b"{", b"["} or re.search(r"\.(jsonl|ndjson|json)(\.gz)?$", lower):
        return "json", head, compression
    return "csv", head, compression


def _complete_lines(head: bytes, *, truncated: bool) -> bytes:
    if not truncated or head.endswith(b"\n"):
        return head
    cut = head.rfind(b"\n")
    return head[: cut + 1] if cut >= 0 else head


def _parquet_schema(s3: S3Client, obj: _Object) -> tuple[list[tuple[str, str]], int]:
    start = max(obj.size - _TAIL_BYTES, 0)
    tail = s3.get_object(Bucket=obj.bucket, Key=obj.key, Range=f"bytes={start}-")["Body"].read()
    footer = int.from_bytes(tail[-8:-4], "little")
    if footer + 8 > len(tail):
        tail = s3.get_object(Bucket=obj.bucket, Key=obj.key)["Body"].read()
    metadata = pq.read_metadata(pa.BufferReader(tail))
    schema = metadata.schema.to_arrow_schema()
    return [(f.name.lower(), arrow_to_glue(f.type)) for f in schema], metadata.num_rows


def arrow_to_glue(kind: pa.DataType) -> str:
    """The Glue type of an Arrow type, as the crawler records it for Parquet columns."""
    if pa.types.is_dictionary(kind):
        return arrow_to_glue(kind.value_type)
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_int8(kind):
        return "tinyint"
    if pa.types.is_int16(kind) or pa.types.is_uint8(kind):
        return "smallint"
    if pa.types.is_int32(kind) or pa.types.is_uint16(kind):
        return "int"
    if pa.types.is_integer(kind):
        return "bigint"
    if pa.types.is_float16(kind) or pa.types.is_float32(kind):
        return "float"
    if pa.types.is_float64(kind):
        return "double"
    if pa.types.is_decimal(kind):
        return f"decimal({kind.precision},{kind.scale})"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return "string"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return "binary"
    if pa.types.is_date(kind):
        return "date"
    if pa.types.is_timestamp(kind):
        return "timestamp"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return f"array<{arrow_to_glue(kind.value_type)}>"
    if pa.types.is_map(kind):
        return f"map<{arrow_to_glue(kind.key_type)},{arrow_to_glue(kind.item_type)}>"
    if pa.types.is_struct(kind):
        fields = ",".join(
            f"{kind.field(i).name.lower()}:{arrow_to_glue(kind.field(i).type)}" for i in range(kind.num_fields)
        )
        return f"struct<{fields}>"
    return "string"


def infer_json_lines(data: bytes) -> tuple[list[tuple[str, str]], int]:
    """Glue columns of JSON lines (or one JSON array) and the number of records read.

    Numbers become ``bigint`` or ``double``, booleans ``boolean``, objects ``struct<…>``, arrays
    ``array<…>``; strings stay ``string`` (Glue does not read timestamps out of JSON strings).
    Lines that do not parse are skipped.
    """
    columns: dict[str, str | None] = {}
    records = 0
    # Merging types is a join (idempotent, commutative, associative), so a record whose keys and scalar value types
    # equal an earlier record's changes nothing: only the first record of each such shape is folded in.
    shapes: set[tuple[tuple[str, type], ...]] = set()
    for record in _json_records(data):
        if not isinstance(record, dict):
            continue
        records += 1
        shape = tuple((key, type(value)) for key, value in record.items())
        if shape in shapes:
            continue
        if all(kind in _SCALARS for _, kind in shape):
            shapes.add(shape)
        for key, value in record.items():
            name = key.lower()
            columns[name] = _merge_nullable(columns.get(name), _json_type(value))
    return [(n, t or "string") for n, t in columns.items()], records


_DECODER: Final = msgspec.json.Decoder()
"""Reads a JSON line to the values `json.loads` gives, five times faster; a line it refuses goes to `json.loads`."""
_SCALARS: Final = frozenset({type(None), bool, int, float, str})
"""JSON values whose Glue type follows from their Python type alone."""


def _json_records(data: bytes) -> Iterator[Any]:
    text = data.decode("utf-8", errors="replace")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            parsed = json.loads(stripped)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list):
            yield from parsed
            return
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            yield _DECODER.decode(line)
            continue
        except msgspec.DecodeError:
            pass  # what msgspec refuses, json.loads may still read (NaN, Infinity, 1e400, lone surrogates): it decides
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            continue


def _json_type(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        element: str | None = None
        for item in value:
            element = _merge_nullable(element, _json_type(item))
        return f"array<{element or 'string'}>"
    if isinstance(value, dict):
        fields: dict[str, str | None] = {}
        for key, item in value.items():
            fields[key.lower()] = _merge_nullable(fields.get(key.lower()), _json_type(item))
        if not fields:
            return "string"
        return "struct<" + ",".join(f"{k}:{t or 'string'}" for k, t in fields.items()) + ">"
    return "string"


def _merge_nullable(left: str | None, right: str | None) -> str | None:
    if left is None:
        return right
    if right is None:
        return left
    return merge_types(left, right)


_NUMERIC_RANK: Final = {"tinyint": 0, "smallint": 1, "int": 2, "bigint": 3, "float": 4, "double": 5}


def merge_types(left: str, right: str) -> str:
    """The narrowest Glue type holding values of both types (`string` when nothing narrower does)."""
    if left == right:
        return left
    if left in _NUMERIC_RANK and right in _NUMERIC_RANK:
        return left if _NUMERIC_RANK[left] > _NUMERIC_RANK[right] else right
    if left.startswith("decimal") and right in _NUMERIC_RANK:
        return "double" if right in {"float", "double"} else left
    if right.startswith("decimal") and left in _NUMERIC_RANK:
        return merge_types(right, left)
    if {left, right} == {"date", "timestamp"}:
        return "timestamp"
    if left.startswith("struct<") and right.startswith("struct<"):
        fields = dict(_struct_fields(left))
        for name, kind in _struct_fields(right):
            fields[name] = merge_types(fields[name], kind) if name in fields else kind
        return "struct<" + ",".join(f"{n}:{t}" for n, t in fields.items()) + ">"
    if left.startswith("array<") and right.startswith("array<"):
        return f"array<{merge_types(left[6:-1], right[6:-1])}>"
    return "string"


def _struct_fields(kind: str) -> list[tuple[str, str]]:
    body = kind[len("struct<") : -1]
    fields, depth, start = [], 0, 0
    for i, c in enumerate(body + ","):
        if c in "<(":
            depth += 1
        elif c in ">)":
            depth -= 1
        elif c == "," and depth == 0:
            name, _, field_type = body[start:i].partition(":")
            fields.append((name, field_type))
            start = i + 1
    return fields


def infer_csv(data: bytes) -> tuple[list[tuple[str, str]], int, bool, str]:
    """Glue columns of CSV with a header row: (columns, rows read, whether fields are quoted, delimiter)."""
    text = data.decode("utf-8", errors="replace")
    try:
        dialect = csv.Sniffer().sniff(text[:65536], delimiters=",\t|;")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = next(reader, [])
    names = [re.sub(r"[^a-z0-9_]", "_", h.strip().lower()) or f"col{i}" for i, h in enumerate(header)]
    types: list[str | None] = [None] * len(names)
    rows = 0
    for row in reader:
        if not row:
            continue
        rows += 1
        for i, value in enumerate(row[: len(names)]):
            types[i] = _merge_nullable(types[i], _csv_type(value))
    quoted = '"' in text.split("\n", 1)[-1][:65536]
    return [(n, t or "string") for n, t in zip(names, types, strict=True)], rows, quoted, delimiter


def _csv_type(value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    if value.lower() in {"true", "false"}:
        return "boolean"
    if _INT.match(value):
        return "bigint"
    if _FLOAT.match(value):
        return "double"
    if _HIVE_TIMESTAMP.match(value):
        return "timestamp"
    if _DATE.match(value):
        return "date"
    return "string"


# ----------------------------------------------------------------- helpers


def _state_key(glue: GlueClient, name: str) -> tuple[str, str]:
    return str(glue.meta.region_name), name


def _json_safe(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value

"""Glue Data Catalog backup: the lake's database, tables and partitions exported to S3, and restored from there."""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError
from pydantic import BaseModel

from datalake.aws import AwsClients, aws_error, error_code
from datalake.exceptions import TerminalError
from datalake.settings import Settings

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

BACKUP_PREFIX: Final = "catalog-backups/"
FORMAT_VERSION: Final = 1
_BATCH: Final = 100
"""Partitions per BatchCreatePartition / BatchUpdatePartition (the API's limit)."""
# The writable fields of each input shape: the rest of a Get* answer is read-only (times, creator, catalog id).
_DATABASE_FIELDS: Final = ("Name", "Description", "LocationUri", "Parameters", "CreateTableDefaultPermissions")
_TABLE_FIELDS: Final = (
    "Name",
    "Description",
    "Owner",
    "Retention",
    "StorageDescriptor",
    "PartitionKeys",
    "ViewOriginalText",
    "ViewExpandedText",
    "TableType",
    "Parameters",
    "TargetTable",
)
_PARTITION_FIELDS: Final = ("Values", "StorageDescriptor", "Parameters")


class BackupSummary(BaseModel):
    """What one export wrote, or one restore changed."""

    key: str
    databases: int
    tables: int
    partitions: int
    created: int = 0
    updated: int = 0
    superseded_folders: int = 0
    """Curated run folders the export no longer references, tagged for expiry (backups only)."""


def _pick(item: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    return {name: item[name] for name in fields if name in item}


def table_input_of(table: Mapping[str, Any]) -> dict[str, Any]:
    """The TableInput that recreates a table as GetTable returned it: its writable fields, read-only ones dropped."""
    return _pick(table, _TABLE_FIELDS)


def _pages(glue: Any, operation: str, result_key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    for page in glue.get_paginator(operation).paginate(**kwargs):
        yield from page[result_key]


def export_catalog(glue: Any, databases: Sequence[str], now: datetime | None = None) -> dict[str, Any]:
    """The catalog's definitions of `databases`: each database, its tables and every partition, as input shapes.

    Partitions are sorted by their values, so two exports of one catalog are equal. The document restores with
    `restore_catalog`; it holds metadata only (no data, no Lake Formation grants, which
    the template declares).
    """
    document: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "exported_at": (now or datetime.now(UTC)).isoformat(),
        "databases": [],
    }
    for name in databases:
        database = glue.get_database(Name=name)["Database"]
        tables = []
        for table in _pages(glue, "get_tables", "TableList", DatabaseName=name):
            partitions = (
                sorted(
                    (
                        _pick(p, _PARTITION_FIELDS)
                        for p in _pages(
                            glue, "get_partitions", "Partitions", DatabaseName=name, TableName=table["Name"]
                        )
                    ),
                    key=lambda p: p["Values"],
                )
                if table.get("PartitionKeys")
                else []
            )
            tables.append({"table": table_input_of(table), "partitions": partitions})
        document["databases"].append({"database": _pick(database, _DATABASE_FIELDS), "tables": tables})
    return document


def _counts(document: Mapping[str, Any]) -> tuple[int, int, int]:
    databases = document["databases"]
    tables = sum(len(d["tables"]) for d in databases)
    partitions = sum(len(t["partitions"]) for d in databases for t in d["tables"])
    return len(databases), tables, partitions


def backup_key(now: datetime) -> str:
    """Where an export made at `now` is kept: ``catalog-backups/YYYY/MM/DD/<time>.json.gz`` (sorts by time)."""
    return f"{BACKUP_PREFIX}{now:%Y/%m/%d}/{now:%Y%m%dT%H%M%SZ}.json.gz"


def backup_catalog(clients: AwsClients, settings: Settings, now: datetime | None = None) -> BackupSummary:
    """Export the lake's database (`glue_database`) to the artifacts bucket, then mark superseded run folders.

    With `curated_bucket` set, the curated run folders that no table or partition of the export references are
    tagged for CuratedBucket's lifecycle (`mark_superseded_runs`).

    Raises
    ------
    TransientError
        When Glue or S3 throttles or fails transiently.
    TerminalError
        When the database is missing or access is denied.
    """
    moment = now or datetime.now(UTC)
    bucket = settings.require("artifacts_bucket")
    glue = clients.glue
    try:
        document = export_catalog(glue, [settings.glue_database], moment)
        key = backup_key(moment)
        body = gzip.compress(json.dumps(document, default=str).encode(), compresslevel=6)
        clients.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json", ContentEncoding="gzip")
    except ClientError as exc:
        raise aws_error(exc, "backing up the catalog") from exc
    databases, tables, partitions = _counts(document)
    logger.info("catalog backup s3://%s/%s: %d tables, %d partitions", bucket, key, tables, partitions)
    superseded = 0
    if settings.curated_bucket:
        try:
            superseded = len(mark_superseded_runs(clients.s3, settings.curated_bucket, document, moment).folders)
        except ClientError as exc:
            raise aws_error(exc, "marking superseded curated run folders") from exc
    return BackupSummary(
        key=key, databases=databases, tables=tables, partitions=partitions, superseded_folders=superseded
    )


def latest_backup(s3: Any, bucket: str) -> str:
    """The key of the newest export in `bucket`; TerminalError when there is none."""
    keys = [
        obj["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=BACKUP_PREFIX)
        for obj in page.get("Contents", [])
        if obj["Key"].endswith(".json.gz")
    ]
    if not keys:
        raise TerminalError(f"no catalog backup under s3://{bucket}/{BACKUP_PREFIX}")
    return str(max(keys))


def load_backup(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    """Read an export; TerminalError when it is not one."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        raise TerminalError(f"cannot read s3://{bucket}/{key}: {error_code(exc)}") from exc
    try:
        document: dict[str, Any] = json.loads(gzip.decompress(body))
    except (OSError, ValueError) as exc:
        raise TerminalError(f"s3://{bucket}/{key} is not a catalog backup: {exc}") from exc
    if document.get("format") != FORMAT_VERSION or "databases" not in document:
        raise TerminalError(f"s3://{bucket}/{key} is not a catalog backup of format {FORMAT_VERSION}")
    return document


def restore_catalog(glue: Any, document: Mapping[str, Any], *, key: str = "") -> BackupSummary:
    """Make the catalog hold what the export holds: databases, tables and partitions created or updated.

    Tables and partitions the export does not know are left as they are, so a restore never removes what was
    created after the export. Running it twice changes nothing the second time.
    """
    created = updated = 0
    for entry in document["databases"]:
        database = entry["database"]
        try:
            glue.create_database(DatabaseInput=database)
            created += 1
        except glue.exceptions.AlreadyExistsException:
            pass
        name = database["Name"]
        existing = {t["Name"]: t for t in _pages(glue, "get_tables", "TableList", DatabaseName=name)}
        for item in entry["tables"]:
            table = item["table"]
            current = existing.get(table["Name"])
            if current is None:
                glue.create_table(DatabaseName=name, TableInput=table)
                created += 1
            elif table_input_of(current) != table:
                glue.update_table(DatabaseName=name, TableInput=table)
                updated += 1
            c, u = _restore_partitions(glue, name, table["Name"], item["partitions"])
            created, updated = created + c, updated + u
    databases, tables, partitions = _counts(document)
    return BackupSummary(
        key=key, databases=databases, tables=tables, partitions=partitions, created=created, updated=updated
    )


def _restore_partitions(glue: Any, database: str, table: str, partitions: list[dict[str, Any]]) -> tuple[int, int]:
    if not partitions:
        return 0, 0
    current = {
        tuple(p["Values"]): _pick(p, _PARTITION_FIELDS)
        for p in _pages(glue, "get_partitions", "Partitions", DatabaseName=database, TableName=table)
    }
    missing = [p for p in partitions if tuple(p["Values"]) not in current]
    changed = [p for p in partitions if tuple(p["Values"]) in current and current[tuple(p["Values"])] != p]
    for start in range(0, len(missing), _BATCH):
        response = glue.batch_create_partition(
            DatabaseName=database, TableName=table, PartitionInputList=missing[start : start + _BATCH]
        )
        _raise_on_errors(response.get("Errors"), f"restoring partitions of {database}.{table}")
    for start in range(0, len(changed), _BATCH):
        entries = [{"PartitionValueList": p["Values"], "PartitionInput": p} for p in changed[start : start + _BATCH]]
        response = glue.batch_update_partition(DatabaseName=database, TableName=table, Entries=entries)
        _raise_on_errors(response.get("Errors"), f"updating partitions of {database}.{table}")
    return len(missing), len(changed)


def _raise_on_errors(errors: list[dict[str, Any]] | None, doing: str) -> None:
    if errors:
        raise TerminalError(f"{doing}: {errors[:3]}")


# ------------------------------------------------------------------------------ superseded curated run folders

SUPERSEDED_TAG: Final = {"Key": "lake:superseded", "Value": "true"}
"""The tag CuratedBucket's lifecycle expires (curated tables are rebuilt into ``<table>/runs/<run>/``, ADR 0003)."""


class SupersededRuns(BaseModel):
    """The run folders nothing in the catalog points at any more, and the objects tagged for expiry."""

    folders: list[str]
    objects_tagged: int


def _referenced_folders(document: Mapping[str, Any], bucket: str) -> set[str]:
    """``<table>/runs/<run>/`` prefixes of `bucket` that a table or partition location of the export names."""
    folders = set()
    for entry in document["databases"]:
        for item in entry["tables"]:
            locations = [item["table"].get("StorageDescriptor", {}).get("Location", "")]
            locations += [p.get("StorageDescriptor", {}).get("Location", "") for p in item["partitions"]]
            for location in locations:
                prefix = f"s3://{bucket}/"
                if not str(location).startswith(prefix):
                    continue
                parts = str(location)[len(prefix) :].split("/")
                if len(parts) >= 3 and parts[1] == "runs":
                    folders.add(f"{parts[0]}/runs/{parts[2]}/")
    return folders


def mark_superseded_runs(
    s3: Any, bucket: str, document: Mapping[str, Any], now: datetime, grace_hours: float = 24.0
) -> SupersededRuns:
    """Tag the objects of curated run folders that no table or partition of `document` references.

    A folder is superseded when the catalog export names none of its locations and its newest object is older
    than `grace_hours` (a run still building its stage has not registered it yet). CuratedBucket's lifecycle
    expires tagged objects; versioning keeps them as noncurrent versions for the noncurrent retention.
    """
    referenced = _referenced_folders(document, bucket)
    superseded: list[str] = []
    tagged = 0
    tables = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Delimiter="/")
    for table_prefix in [p["Prefix"] for page in tables for p in page.get("CommonPrefixes", [])]:
        runs = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{table_prefix}runs/", Delimiter="/")
        for folder in [p["Prefix"] for page in runs for p in page.get("CommonPrefixes", [])]:
            if folder in referenced:
                continue
            objects = [
                obj
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder)
                for obj in page.get("Contents", [])
            ]
            newest = max((obj["LastModified"] for obj in objects), default=None)
            if newest is None or (now - newest).total_seconds() < grace_hours * 3600:
                continue
            for obj in objects:
                s3.put_object_tagging(Bucket=bucket, Key=obj["Key"], Tagging={"TagSet": [SUPERSEDED_TAG]})
            superseded.append(folder)
            tagged += len(objects)
    if superseded:
        logger.info("tagged %d objects of %d superseded curated run folders", tagged, len(superseded))
    return SupersededRuns(folders=superseded, objects_tagged=tagged)

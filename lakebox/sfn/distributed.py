"""Distributed Map: items read from S3 (JSON, JSON Lines, CSV, listings, S3 inventory manifests), batches, results."""

from __future__ import annotations

import csv
import gzip
import io
import json
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from lakebox.sfn.errors import (
    EXCEED_TOLERATED_FAILURE_THRESHOLD,
    ITEM_READER_FAILED,
    RESULT_WRITER_FAILED,
    DefinitionError,
    StatesError,
    UnsupportedFeatureError,
)

GET_OBJECT = "arn:aws:states:::s3:getObject"
LIST_OBJECTS = "arn:aws:states:::s3:listObjectsV2"
PUT_OBJECT = "arn:aws:states:::s3:putObject"
INPUT_TYPES = ("JSON", "JSONL", "CSV", "MANIFEST")
_DELIMITERS = {"COMMA": ",", "PIPE": "|", "SEMICOLON": ";", "SPACE": " ", "TAB": "\t"}


class ObjectStore(Protocol):
    """The S3 operations a Distributed Map needs (the box gives one on its local S3)."""

    def get_object(self, bucket: str, key: str) -> bytes:
        """Return an object's bytes; raise ``LookupError`` when it does not exist."""
        ...

    def list_objects(self, bucket: str, prefix: str) -> list[dict[str, Any]]:
        """Return ListObjectsV2's ``Contents`` entries (``Key``, ``Size``, ``ETag``, ``LastModified``, ...)."""
        ...

    def put_object(self, bucket: str, key: str, body: bytes) -> None:
        """Write an object."""
        ...


class Boto3ObjectStore:
    """An :class:`ObjectStore` over a boto3 session (lakebox's session reaches the local S3).

    The client is made on first use, so an execution without a Distributed Map does not pay for it.
    """

    def __init__(self, session: Any) -> None:
        self._session = session
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def _s3(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._session.client("s3")
            return self._client

    def get_object(self, bucket: str, key: str) -> bytes:
        """Read an object through S3 GetObject."""
        try:
            return bytes(self._s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except self._s3.exceptions.NoSuchKey as exc:
            raise LookupError(f"s3://{bucket}/{key} does not exist") from exc
        except self._s3.exceptions.NoSuchBucket as exc:
            raise LookupError(f"bucket {bucket} does not exist") from exc

    def list_objects(self, bucket: str, prefix: str) -> list[dict[str, Any]]:
        """List objects through ListObjectsV2, every page."""
        entries: list[dict[str, Any]] = []
        try:
            for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                entries.extend(page.get("Contents", []))
        except self._s3.exceptions.NoSuchBucket as exc:
            raise LookupError(f"bucket {bucket} does not exist") from exc
        return entries

    def put_object(self, bucket: str, key: str, body: bytes) -> None:
        """Write an object through PutObject."""
        self._s3.put_object(Bucket=bucket, Key=key, Body=body)


def validate_item_reader(reader: Any, where: str) -> None:
    """Check an ``ItemReader`` field's shape before anything runs."""
    if not isinstance(reader, dict) or reader.get("Resource") not in (GET_OBJECT, LIST_OBJECTS):
        raise DefinitionError(f"{where}: ItemReader.Resource must be {GET_OBJECT} or {LIST_OBJECTS}")
    config = reader.get("ReaderConfig", {})
    input_type = config.get("InputType")
    if reader["Resource"] == GET_OBJECT and input_type not in INPUT_TYPES:
        raise DefinitionError(f"{where}: ItemReader.ReaderConfig.InputType must be one of {', '.join(INPUT_TYPES)}")
    if input_type == "CSV" and config.get("CSVHeaderLocation", "FIRST_ROW") == "GIVEN" and not config.get("CSVHeaders"):
        raise DefinitionError(f"{where}: CSVHeaderLocation GIVEN needs CSVHeaders")
    if config.get("ManifestType", "S3_INVENTORY") != "S3_INVENTORY":
        raise UnsupportedFeatureError(
            f"{where}: ItemReader ManifestType {config['ManifestType']} is not read by the local executor "
            "(only S3 inventory manifests)"
        )
    if config.get("CSVDelimiter", "COMMA") not in _DELIMITERS:
        raise DefinitionError(f"{where}: CSVDelimiter must be one of {', '.join(_DELIMITERS)}")


def read_items(store: ObjectStore | None, reader: Mapping[str, Any], arguments: Mapping[str, Any]) -> list[Any]:
    """Read a Distributed Map's items as its ``ItemReader`` says.

    Parameters
    ----------
    store
        Where the objects are.
    reader
        The ``ItemReader`` field.
    arguments
        Its ``Parameters`` (or ``Arguments``) already evaluated: ``Bucket`` and ``Key`` (or ``Prefix``).

    Returns
    -------
    list
        The items, at most ``ReaderConfig.MaxItems``.

    Raises
    ------
    StatesError
        ``States.ItemReaderFailed`` when the object is missing or does not hold what ``InputType`` says.
    """
    if store is None:
        raise StatesError(ITEM_READER_FAILED, "no object store was given to read the items from")
    config = reader.get("ReaderConfig", {})
    bucket = str(arguments.get("Bucket", ""))
    try:
        if reader["Resource"] == LIST_OBJECTS:
            items: list[Any] = [
                _listing_item(entry) for entry in store.list_objects(bucket, str(arguments.get("Prefix", "")))
            ]
        else:
            body = store.get_object(bucket, str(arguments.get("Key", "")))
            items = _parse(body, config, store, bucket)
    except LookupError as exc:
        raise StatesError(ITEM_READER_FAILED, str(exc)) from exc
    except (ValueError, csv.Error, UnicodeDecodeError, OSError) as exc:
        raise StatesError(ITEM_READER_FAILED, f"s3://{bucket}/{arguments.get('Key')}: {exc}") from exc
    limit = config.get("MaxItems")
    return items[: int(limit)] if limit else items


def _listing_item(entry: Mapping[str, Any]) -> dict[str, Any]:
    modified = entry.get("LastModified")
    return {
        "Etag": entry.get("ETag"),
        "Key": entry.get("Key"),
        "LastModified": int(modified.timestamp()) if isinstance(modified, datetime) else modified,
        "Size": entry.get("Size"),
        "StorageClass": entry.get("StorageClass", "STANDARD"),
    }


def _parse(body: bytes, config: Mapping[str, Any], store: ObjectStore, bucket: str) -> list[Any]:
    input_type = config.get("InputType")
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    text = body.decode("utf-8-sig")
    if input_type == "JSON":
        value = json.loads(text)
        if not isinstance(value, list):
            raise ValueError("a JSON item source must hold an array")
        return value
    if input_type == "JSONL":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if input_type == "CSV":
        return _csv_items(text, config)
    return _inventory_items(json.loads(text), store)


def _csv_items(text: str, config: Mapping[str, Any]) -> list[dict[str, str]]:
    rows = list(csv.reader(io.StringIO(text), delimiter=_DELIMITERS[config.get("CSVDelimiter", "COMMA")]))
    if config.get("CSVHeaderLocation", "FIRST_ROW") == "GIVEN":
        headers = [str(name) for name in config["CSVHeaders"]]
    else:
        if not rows:
            return []
        headers, rows = rows[0], rows[1:]
    items = []
    for number, row in enumerate(rows, start=1):
        if not row:
            continue
        if len(row) != len(headers):
            raise ValueError(f"CSV row {number} has {len(row)} fields for {len(headers)} headers")
        items.append(dict(zip(headers, row, strict=True)))
    return items


def _inventory_items(manifest: Mapping[str, Any], store: ObjectStore) -> list[dict[str, str]]:
    """Rows of an S3 Inventory report (CSV, as Step Functions reads it), named by the manifest's ``fileSchema``."""
    if manifest.get("fileFormat", "CSV") != "CSV":
        raise ValueError(f"S3 inventory format {manifest.get('fileFormat')} is not read (only CSV)")
    columns = [name.strip() for name in str(manifest["fileSchema"]).split(",")]
    bucket = str(manifest.get("destinationBucket", "")).rsplit(":", 1)[-1]
    items: list[dict[str, str]] = []
    for file in manifest.get("files", []):
        text = gzip.decompress(store.get_object(bucket, str(file["key"]))).decode()
        for row in csv.reader(io.StringIO(text)):
            if row:
                items.append(dict(zip(columns, row, strict=True)))
    return items


def batches(items: list[Any], batcher: Mapping[str, Any], batch_input: Any) -> list[dict[str, Any]]:
    """Group items as ``ItemBatcher`` says: ``{"Items": [...], "BatchInput": ...}`` per child workflow."""
    max_items = int(batcher.get("MaxItemsPerBatch", 0)) or len(items) or 1
    max_bytes = int(batcher.get("MaxInputBytesPerBatch", 0)) or 256 * 1024
    groups: list[list[Any]] = []
    current: list[Any] = []
    for item in items:
        candidate = [*current, item]
        too_big = len(json.dumps(_batch(candidate, batch_input)).encode()) > max_bytes
        if current and (len(candidate) > max_items or too_big):
            groups.append(current)
            current = [item]
        else:
            current = candidate
    if current:
        groups.append(current)
    return [_batch(group, batch_input) for group in groups]


def _batch(items: list[Any], batch_input: Any) -> dict[str, Any]:
    return {"Items": items, **({"BatchInput": batch_input} if batch_input is not None else {})}


def check_tolerance(failed: int, total: int, count: Any, percentage: Any) -> None:
    """Fail the Map with ``States.ExceedToleratedFailureThreshold`` past either threshold (none given: no failure)."""
    if count is None and percentage is None:
        exceeded = failed > 0
    else:
        over_count = count is not None and failed > int(count)
        over_percentage = percentage is not None and total > 0 and failed * 100.0 / total > float(percentage)
        exceeded = over_count or over_percentage
    if exceeded:
        raise StatesError(
            EXCEED_TOLERATED_FAILURE_THRESHOLD,
            f"The specified tolerated failure threshold was exceeded: {failed} of {total} items failed",
        )


def write_results(
    store: ObjectStore | None,
    arguments: Mapping[str, Any],
    map_run_arn: str,
    records: list[dict[str, Any]],
) -> dict[str, Any]:
    """Write the child workflows' results as ``ResultWriter`` does and return the Map's output.

    Each status gets a file (``SUCCEEDED_0.json``, ``FAILED_0.json``, ``PENDING_0.json``) under
    ``<Prefix>/<map run id>/``, listed by ``manifest.json``; the Map's output is
    ``{"MapRunArn", "ResultWriterDetails"}``.
    """
    if store is None:
        raise StatesError(RESULT_WRITER_FAILED, "no object store was given to write the results to")
    bucket = str(arguments.get("Bucket", ""))
    prefix = str(arguments.get("Prefix", "")).strip("/")
    run_id = map_run_arn.rsplit(":", 1)[-1]
    folder = f"{prefix}/{run_id}" if prefix else run_id
    files: dict[str, list[dict[str, Any]]] = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
    try:
        for status, listed in files.items():
            chosen = [record for record in records if record["Status"] == status]
            if not chosen:
                continue
            body = json.dumps(chosen).encode()
            key = f"{folder}/{status}_0.json"
            store.put_object(bucket, key, body)
            listed.append({"Key": key, "Size": len(body)})
        manifest = {"DestinationBucket": bucket, "MapRunArn": map_run_arn, "ResultFiles": files}
        manifest_key = f"{folder}/manifest.json"
        store.put_object(bucket, manifest_key, json.dumps(manifest).encode())
    except LookupError as exc:
        raise StatesError(RESULT_WRITER_FAILED, str(exc)) from exc
    return {"MapRunArn": map_run_arn, "ResultWriterDetails": {"Bucket": bucket, "Key": manifest_key}}

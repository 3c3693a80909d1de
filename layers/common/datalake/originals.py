"""The raw zone's originals: every landed object and every stream batch, kept byte for byte beside the records.

Layout (ADR 0018)::

    s3://<raw>/_originals/<dataset>/year=YYYY/month=MM/day=DD/<ingestion id>/<original file name>

The date is the day the object arrived in landing (its `LastModified`, UTC) or the day a stream batch's first record
reached the stream; the ingestion id is the digest that also names the object's raw files (`ObjectRef.output_token`),
so a redelivered event or a retry finds the same key and keeps nothing twice. Each original carries its provenance
as user metadata (`ORIGINAL_METADATA`), and every canonical record derived from it names it in `_original_key`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from botocore.exceptions import ClientError

from datalake.aws import AwsClients, aws_error, error_code
from datalake.landing import day_path
from datalake.settings import Settings

logger = logging.getLogger(__name__)

UTC = dt.UTC
ORIGINALS_PREFIX = "_originals"
SINGLE_COPY_BYTES = 5 * 1024**3
"""The largest object one CopyObject can copy; larger ones are copied in parts (the transfer manager)."""
ORIGINAL_METADATA = (
    "source-bucket",
    "source-key",
    "source-version-id",
    "source-etag",
    "source-version",
    "dataset",
    "ingested-at",
)
"""The user metadata of an original (`x-amz-meta-*`). `source-key` is percent-encoded (metadata is ASCII)."""
_ALREADY_THERE = frozenset({"PreconditionFailed", "412"})


def original_key(dataset: str, arrived: dt.date, ingestion_id: str, name: str) -> str:
    """The raw-zone key of an original: `_originals/<dataset>/year=/month=/day=/<ingestion id>/<name>`."""
    return f"{ORIGINALS_PREFIX}/{dataset}/{day_path(arrived)}/{ingestion_id}/{name}"


def originals_prefix(dataset: str, day: dt.date | None = None) -> str:
    """The prefix of a dataset's originals, or of those that arrived on one day."""
    base = f"{ORIGINALS_PREFIX}/{dataset}/"
    return base if day is None else f"{base}{day_path(day)}/"


def file_name(key: str) -> str:
    """The original file name: the last segment of the landing key (the whole key when it has no `/`)."""
    return key.rsplit("/", 1)[-1] or "object"


@dataclass(frozen=True)
class Provenance:
    """Where an original came from, as its metadata records it."""

    source_bucket: str
    source_key: str
    source_version_id: str | None
    source_etag: str
    dataset: str
    ingested_at: str

    def metadata(self, source_version: str) -> dict[str, str]:
        """The original's user metadata (ASCII only: the key is percent-encoded)."""
        return {
            "source-bucket": self.source_bucket,
            "source-key": quote(self.source_key, safe="/"),
            "source-version-id": self.source_version_id or "",
            "source-etag": self.source_etag,
            "source-version": source_version,
            "dataset": self.dataset,
            "ingested-at": self.ingested_at,
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> Provenance:
        """Read back what `metadata` wrote (S3 returns user metadata keys in lower case)."""
        return cls(
            source_bucket=metadata.get("source-bucket", ""),
            source_key=unquote(metadata.get("source-key", "")),
            source_version_id=metadata.get("source-version-id") or None,
            source_etag=metadata.get("source-etag", ""),
            dataset=metadata.get("dataset", ""),
            ingested_at=metadata.get("ingested-at", ""),
        )


def _retain(
    clients: AwsClients, bucket: str, key: str, version_id: str | None, settings: Settings, now: dt.datetime
) -> None:
    """Give a new original its Object Lock retention, when the stack turned it on (`DL_ORIGINALS_RETENTION_DAYS`).

    Set by PutObjectRetention on the version just written, rather than with the write, so the one call serves copies
    and puts alike; only originals are retained, never the canonical records (a replay rewrites those).
    """
    if not settings.originals_retention_days:
        return
    until = now.astimezone(UTC) + dt.timedelta(days=settings.originals_retention_days)
    kwargs: dict[str, Any] = {"VersionId": version_id} if version_id else {}
    try:
        clients.s3.put_object_retention(
            Bucket=bucket,
            Key=key,
            Retention={"Mode": settings.originals_retention_mode, "RetainUntilDate": until},
            **kwargs,
        )
    except ClientError as exc:
        raise aws_error(exc, f"retaining the original s3://{bucket}/{key}") from exc


def _exists(clients: AwsClients, bucket: str, key: str) -> bool:
    """Whether the original is already kept. Without `s3:ListBucket` S3 answers 403 for a missing key: the
    conditional write that follows then decides."""
    try:
        clients.s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in {"404", "NoSuchKey", "NotFound", "403", "AccessDenied", "Forbidden"}:
            return False
        raise aws_error(exc, f"looking for s3://{bucket}/{key}") from exc
    return True


def keep_object(
    *,
    bucket: str,
    key: str,
    version_id: str | None,
    size: int,
    target: str,
    provenance: Provenance,
    source_version: str,
    settings: Settings,
    clients: AwsClients,
    now: dt.datetime,
) -> bool:
    """Copy one landed object version into the raw zone under `target`, unless it is there already.

    The copy is server side, of the exact version, so its bytes are the landed bytes. It is conditional
    (`If-None-Match: *`): a racing duplicate finds the key taken and keeps nothing. Returns True when this call
    wrote the original.

    Raises
    ------
    TransientError, TerminalError
        The copy failed (the ingestion fails before any record lands, and is retried).
    """
    raw_bucket = settings.require("raw_bucket")
    if _exists(clients, raw_bucket, target):
        return False
    source: dict[str, str] = {"Bucket": bucket, "Key": key}
    if version_id and version_id != "null":
        source["VersionId"] = version_id
    extra: dict[str, Any] = {"Metadata": provenance.metadata(source_version), "MetadataDirective": "REPLACE"}
    version: str | None = None
    try:
        if size <= SINGLE_COPY_BYTES:
            response = clients.s3.copy_object(
                Bucket=raw_bucket,
                Key=target,
                CopySource=source,  # type: ignore[arg-type]
                IfNoneMatch="*",
                **extra,
            )
            version = response.get("VersionId")
        else:
            clients.s3.copy(source, raw_bucket, target, ExtraArgs=extra)  # type: ignore[arg-type]
    except ClientError as exc:
        if error_code(exc) in _ALREADY_THERE:
            return False
        raise aws_error(exc, f"keeping the original s3://{bucket}/{key} as {target}") from exc
    _retain(clients, raw_bucket, target, version, settings, now)
    return True


def keep_bytes(
    body: bytes, *, target: str, metadata: dict[str, str], settings: Settings, clients: AwsClients, now: dt.datetime
) -> bool:
    """Write an original that exists only in memory (a stream batch) under `target`, unless it is there already.

    Returns True when this call wrote it.
    """
    raw_bucket = settings.require("raw_bucket")
    try:
        response = clients.s3.put_object(
            Bucket=raw_bucket,
            Key=target,
            Body=body,
            IfNoneMatch="*",
            ContentType="application/x-ndjson",
            ContentEncoding="gzip",
            Metadata=metadata,
        )
    except ClientError as exc:
        if error_code(exc) in _ALREADY_THERE:
            return False
        raise aws_error(exc, f"keeping the stream batch {target}") from exc
    _retain(clients, raw_bucket, target, response.get("VersionId"), settings, now)
    return True


def provenance_of(clients: AwsClients, bucket: str, key: str) -> Provenance:
    """The provenance an original's metadata records."""
    try:
        head = clients.s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        raise aws_error(exc, f"reading the metadata of s3://{bucket}/{key}") from exc
    return Provenance.from_metadata(head.get("Metadata") or {})


__all__ = [
    "ORIGINALS_PREFIX",
    "ORIGINAL_METADATA",
    "Provenance",
    "file_name",
    "keep_bytes",
    "keep_object",
    "original_key",
    "originals_prefix",
    "provenance_of",
]

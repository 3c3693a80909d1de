"""Raw and quarantine objects: gzip JSON lines with the lineage columns, written under keys that a retry overwrites."""

from __future__ import annotations

import collections
import datetime as dt
import functools
import json
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any

import msgspec
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from isal import igzip

from datalake.aws import AwsClients, aws_error
from datalake.validation import RecordError

UTC = dt.UTC
QUARANTINE_PREFIX = "_quarantine"
SPOOL_BYTES = 8 * 1024 * 1024
PART_SPOOL_BYTES = 2 * 1024 * 1024
"""Compressed bytes an output object keeps in memory before spilling to disk: an ingestion writes one object per event
date, so this times the number of dates bounds what its outputs hold in memory."""
CONTENT_TYPE = "application/x-ndjson"
SINGLE_PUT_BYTES = 8 * 1024 * 1024
"""Objects up to this size are written with one PutObject; larger ones with a managed multipart upload."""
_FLUSH_LINES = 4096
ENCODER = msgspec.json.Encoder(decimal_format="number")


def iso_stamp(moment: dt.datetime) -> str:
    """The `_ingested_at` form: ISO-8601 UTC with microseconds and a `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def day_path(day: dt.date) -> str:
    """The `year=YYYY/month=MM/day=DD` partition path of a date."""
    return f"year={day.year:04d}/month={day.month:02d}/day={day.day:02d}"


def raw_key(dataset: str, day: dt.date, name: str) -> str:
    """Key of a raw object: `<dataset>/year=/month=/day=/<name>`, the day being the records' event date."""
    return f"{dataset}/{day_path(day)}/{name}"


def quarantine_key(dataset: str, day: dt.date, name: str) -> str:
    """Key of a quarantine object: `_quarantine/<dataset>/year=/month=/day=/<name>`."""
    return f"{QUARANTINE_PREFIX}/{dataset}/{day_path(day)}/{name}"


def lineage_prefix(source_key: str, source_version: str) -> bytes:
    """The lineage fields up to `_line`'s value, as appended to a JSON object: `,"_source_key":…,"_line":`."""
    return (
        b',"_source_key":'
        + json.dumps(source_key).encode()
        + b',"_source_version":'
        + json.dumps(source_version).encode()
        + b',"_line":'
    )


def lineage_suffix(ingested_at: dt.datetime, original_key: str | None = None) -> bytes:
    """The lineage fields after `_line`'s value, closing the object and the line.

    `original_key` is the raw-zone key of the original the record was read from (`_original_key`, ADR 0018).
    """
    original = b"" if original_key is None else b',"_original_key":' + json.dumps(original_key).encode()
    return b',"_ingested_at":"' + iso_stamp(ingested_at).encode() + b'"' + original + b"}\n"


def with_lineage(document: bytes, prefix: bytes, line: int, suffix: bytes) -> bytes:
    """A JSON object exactly as received with the lineage fields appended, as one line.

    `document` must be a validated JSON object. Outside strings JSON may hold line breaks only as whitespace, so
    they are turned into spaces to keep one record per line.
    """
    body = document if document[-1] == 0x7D else document.rstrip()
    if b"\n" in body or b"\r" in body:
        body = body.replace(b"\r", b" ").replace(b"\n", b" ")
    return body[:-1] + prefix + b"%d" % line + suffix


def quarantine_line(lineage: dict[str, Any], raw: bytes | str, errors: Sequence[RecordError]) -> bytes:
    """A rejected record: its lineage, the reasons it failed and its original text, as one JSON line."""
    text = raw if isinstance(raw, str) else raw.decode("utf-8", errors="backslashreplace")
    return ENCODER.encode({**lineage, "_errors": [e.as_dict() for e in errors], "_raw": text}) + b"\n"


class Writer:
    """A thread that compresses and spools output objects while the caller judges the next records.

    Work runs in the order given, at most `depth` items behind the caller (each holds a block's text, so memory stays
    within a few blocks); compression (ISA-L) and the spool's writes release the GIL. What a work item raises is
    raised by the next `submit` or by `drain`.
    """

    def __init__(self, depth: int = 1) -> None:
        self._depth = depth
        self._pool: ThreadPoolExecutor | None = None
        self._pending: collections.deque[Future[None]] = collections.deque()

    def submit(self, work: Callable[[], None]) -> None:
        """Run `work` after what was submitted before it; wait while more than `depth` items are queued."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="write-outputs")
        self._pending.append(self._pool.submit(work))
        while len(self._pending) > self._depth:
            self._pending.popleft().result()

    def drain(self) -> None:
        """Wait for every submitted item; raise the first error one raised."""
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self.close()

    def close(self) -> None:
        """Wait for what runs, drop what waits, and end the thread (errors are the caller's to have drained)."""
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class PartitionFile:
    """One output object being built: gzip JSON lines spooled to memory, then to disk past a few MiB.

    With a `writer`, compression runs on the writer's thread: every write goes through it, in order.
    """

    def __init__(self, key: str, level: int, writer: Writer | None = None) -> None:
        self.key = key
        self.records = 0
        self._spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=PART_SPOOL_BYTES)  # noqa: SIM115
        self._gzip: Any = igzip.IGzipFile(fileobj=self._spool, mode="wb", compresslevel=level)  # type: ignore[no-untyped-call]
        self._pending: list[bytes] = []
        self._writer = writer

    def _write(self, data: bytes) -> None:
        if self._writer is None:
            self._gzip.write(data)
        else:
            self._writer.submit(functools.partial(self._gzip.write, data))

    def add(self, line: bytes) -> None:
        """Append one complete line (ending in a newline)."""
        self._pending.append(line)
        self.records += 1
        if len(self._pending) >= _FLUSH_LINES:
            self._flush()

    def add_many(self, lines: list[bytes]) -> None:
        """Append complete lines (each ending in a newline)."""
        self._pending.extend(lines)
        self.records += len(lines)
        if len(self._pending) >= _FLUSH_LINES:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._write(b"".join(self._pending))
            self._pending.clear()

    def reserve(self, records: int) -> None:
        """Count `records` complete lines whose text the caller gives to `write_text` next (through the writer when
        there is one): the lines added before them are handed on first, so the file keeps their order."""
        self._flush()
        self.records += records

    def write_text(self, text: Any) -> None:
        """Compress bytes-like text now, on the calling thread: the writer's own, when the file has a writer."""
        self._gzip.write(text)

    def finish(self) -> IO[bytes]:
        """Close the gzip stream and return the spooled object, rewound."""
        self._flush()
        if self._writer is not None:
            self._writer.drain()
        self._gzip.close()
        self._spool.seek(0)
        return self._spool

    def size(self) -> int:
        """Close the gzip stream (as `finish`) and return the object's size in bytes."""
        body = self.finish()
        size = body.seek(0, 2)
        body.seek(0)
        return size

    def discard(self) -> None:
        """Drop the object without writing it."""
        if self._writer is not None:
            self._writer.close()
        self._gzip.close()
        self._spool.close()


# At most 2 parts of 8 MiB in flight, and 2 read ahead of them: memory stays flat however large the object (the
# defaults are 10 threads and 10 parts read from a file object ahead of the uploads, 80 MiB; with 4 and 4, a 5M-row
# ingestion's peak RSS rose by up to 56 MB while its objects were written, as each thread's allocator arena kept parts).
_MULTIPART = TransferConfig(multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024, max_concurrency=2)
_MULTIPART.max_in_memory_upload_chunks = 2


def upload(clients: AwsClients, bucket: str, part: PartitionFile) -> str:
    """Write one finished object (one PutObject, or a managed multipart upload past 8 MiB) and return its key.

    Raises
    ------
    TransientError
        The write failed in a way worth retrying; the key is unchanged, so a retry overwrites.
    TerminalError
        The write failed in a way retrying cannot fix (no such bucket, access denied).
    """
    body = part.finish()
    try:
        size = body.seek(0, 2)
        body.seek(0)
        if size <= SINGLE_PUT_BYTES:
            clients.s3.put_object(Bucket=bucket, Key=part.key, Body=body.read(), ContentType=CONTENT_TYPE)
        else:
            clients.s3.upload_fileobj(
                body, bucket, part.key, ExtraArgs={"ContentType": CONTENT_TYPE}, Config=_MULTIPART
            )
    except ClientError as exc:
        raise aws_error(exc, f"writing s3://{bucket}/{part.key}") from exc
    finally:
        body.close()
    return part.key


UPLOAD_WORKERS = 4
"""Objects of at most `SINGLE_PUT_BYTES` written at once: an ingestion's files are written in parallel, not one after
the other (each holds at most 8 MiB while written; a larger one is written alone, in parts)."""


def upload_all(clients: AwsClients, bucket: str, parts: Sequence[PartitionFile]) -> list[str]:
    """Write finished objects (`upload`), the small ones `UPLOAD_WORKERS` at a time, and return their keys in order.

    Raises
    ------
    TransientError, TerminalError
        As `upload`: the first write that failed (the others are written or failed too; a retry overwrites all).
    """
    sizes = [part.size() for part in parts]
    small = [part for part, size in zip(parts, sizes, strict=True) if size <= SINGLE_PUT_BYTES]
    if len(small) > 1:
        with ThreadPoolExecutor(max_workers=UPLOAD_WORKERS, thread_name_prefix="upload") as pool:
            list(pool.map(functools.partial(upload, clients, bucket), small))
    elif small:
        upload(clients, bucket, small[0])
    for part, size in zip(parts, sizes, strict=True):
        if size > SINGLE_PUT_BYTES:
            upload(clients, bucket, part)
    return [part.key for part in parts]

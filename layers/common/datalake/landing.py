"""Raw and quarantine objects: gzip JSON lines with the lineage columns, written under keys that a retry overwrites."""

from __future__ import annotations

import collections
import datetime as dt
import functools
import json
import logging
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, Any

import msgspec
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from isal import igzip

from datalake.aws import AwsClients, aws_error
from datalake.validation import RecordError

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

logger = logging.getLogger(__name__)

UTC = dt.UTC
QUARANTINE_PREFIX = "_quarantine"
SPOOL_BYTES = 8 * 1024 * 1024
PART_SPOOL_BYTES = 2 * 1024 * 1024
"""Compressed bytes an output object keeps in memory before spilling to disk: an ingestion writes one object per event
date, so this times the number of dates bounds what its outputs hold in memory."""
CONTENT_TYPE = "application/x-ndjson"
SINGLE_PUT_BYTES = 8 * 1024 * 1024
"""Objects up to this size are written with one PutObject; larger ones with a managed multipart upload."""
PART_BYTES = SINGLE_PUT_BYTES
"""An output object with a `PartUploads` is written in parts of at least this size as its compressed bytes reach it,
while the records that follow are still being judged. The size a single PutObject writes (`SINGLE_PUT_BYTES`): an
object that stays below it is written whole at the end, as before (S3 takes parts from 5 MiB, but an object of a few
parts costs more requests and, on the local endpoint, more work than one PutObject)."""
PARTS_IN_FLIGHT = 2
"""Parts of an ingestion written at once; the thread that fills the next one waits while this many are in flight."""
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

    With a `writer`, compression runs on the writer's thread: every write goes through it, in order. With `parts`,
    the object is written in parts as its compressed bytes pass `PART_BYTES` (a multipart upload, completed by
    `upload`), so the spool holds at most about one part and most of the object is written before the last record is
    judged.
    """

    def __init__(self, key: str, level: int, writer: Writer | None = None, parts: PartUploads | None = None) -> None:
        self.key = key
        self.records = 0
        self._spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=PART_SPOOL_BYTES)  # noqa: SIM115
        self._gzip: Any = igzip.IGzipFile(fileobj=self._spool, mode="wb", compresslevel=level)  # type: ignore[no-untyped-call]
        self._pending: list[bytes] = []
        self._writer = writer
        self._parts = parts
        self._multipart: Multipart | None = None
        self._completed = False

    @property
    def streamed(self) -> bool:
        """Whether parts of the object were handed to a multipart upload (completed by `upload`)."""
        return self._multipart is not None

    def _compress(self, data: Any) -> None:
        self._gzip.write(data)
        if self._parts is not None and self._spool.tell() >= PART_BYTES:
            self._send_part()

    def _send_part(self) -> None:
        """Hand the compressed bytes so far to the multipart upload as its next part, and empty the spool."""
        assert self._parts is not None
        self._spool.seek(0)
        data = self._spool.read()
        self._spool.seek(0)
        self._spool.truncate()
        if self._multipart is None:
            self._multipart = self._parts.start(self.key)
        self._multipart.send(data)

    def _write(self, data: bytes) -> None:
        if self._writer is None:
            self._compress(data)
        else:
            self._writer.submit(functools.partial(self._compress, data))

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
        self._compress(text)

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

    def complete(self) -> None:
        """Write what remains of a streamed object as its last part and complete the upload (`upload` calls it)."""
        assert self._multipart is not None
        body = self.finish()
        try:
            self._multipart.send(body.read())
        finally:
            body.close()
        self._multipart.complete()
        self._completed = True

    def discard(self) -> None:
        """Drop the object without writing it: a multipart upload begun for it and not completed is aborted (a no-op
        once the object is written)."""
        if self._writer is not None:
            self._writer.close()
        self._gzip.close()
        self._spool.close()
        if self._multipart is not None and not self._completed:
            self._completed = True
            self._multipart.abort()


class PartUploads:
    """The multipart uploads of one ingestion's output objects: their parts written by `PARTS_IN_FLIGHT` threads.

    A part is sent by the thread that filled it (the writer's) and written in the background; that thread waits
    while `PARTS_IN_FLIGHT` parts are being written, so at most that many parts are held beyond the spools.
    """

    def __init__(self, clients: AwsClients, bucket: str) -> None:
        self.clients = clients
        self.bucket = bucket
        self._slots = threading.BoundedSemaphore(PARTS_IN_FLIGHT)
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def start(self, key: str) -> Multipart:
        """Begin the multipart upload of `key`.

        Raises
        ------
        TransientError, TerminalError
            S3 refused to begin it.
        """
        try:
            response = self.clients.s3.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=CONTENT_TYPE, ChecksumAlgorithm="CRC32"
            )
        except ClientError as exc:
            raise aws_error(exc, f"writing s3://{self.bucket}/{key}") from exc
        return Multipart(self, key, response["UploadId"])

    def submit(self, work: Callable[[], CompletedPartTypeDef]) -> Future[CompletedPartTypeDef]:
        """Run `work` on a part thread once fewer than `PARTS_IN_FLIGHT` parts are in flight."""
        self._slots.acquire()
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=PARTS_IN_FLIGHT, thread_name_prefix="upload-parts")
            pool = self._pool

        def run() -> CompletedPartTypeDef:
            try:
                return work()
            finally:
                self._slots.release()

        try:
            return pool.submit(run)
        except BaseException:
            self._slots.release()
            raise

    def close(self) -> None:
        """End the part threads once what they write is written."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


class Multipart:
    """One object's multipart upload: its parts in order, written in the background (`PartUploads`)."""

    def __init__(self, uploads: PartUploads, key: str, upload_id: str) -> None:
        self._uploads = uploads
        self.key = key
        self.upload_id = upload_id
        self._parts: list[Future[CompletedPartTypeDef]] = []
        self._aborted = False

    def send(self, data: bytes) -> None:
        """Write `data` as the next part, in the background."""
        number = len(self._parts) + 1
        self._parts.append(self._uploads.submit(functools.partial(self._write_part, number, data)))

    def _write_part(self, number: int, data: bytes) -> CompletedPartTypeDef:
        uploads = self._uploads
        response = uploads.clients.s3.upload_part(
            Bucket=uploads.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=data,
            ChecksumAlgorithm="CRC32",
        )
        part: CompletedPartTypeDef = {"PartNumber": number, "ETag": response["ETag"]}
        if "ChecksumCRC32" in response:
            part["ChecksumCRC32"] = response["ChecksumCRC32"]
        return part

    def complete(self) -> None:
        """Wait for every part and complete the upload: the object then exists whole, as one PutObject makes it.

        Raises
        ------
        TransientError, TerminalError
            A part or the completion failed (the upload is aborted; a retry writes the object again).
        """
        uploads = self._uploads
        try:
            parts = [future.result() for future in self._parts]
            uploads.clients.s3.complete_multipart_upload(
                Bucket=uploads.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": parts}
            )
        except ClientError as exc:
            self.abort()
            raise aws_error(exc, f"writing s3://{uploads.bucket}/{self.key}") from exc

    def abort(self) -> None:
        """Wait for the parts in flight and abort the upload, so no part of it is kept (best effort: a failure is
        logged, and the bucket's lifecycle rule aborts what remains). Once is enough."""
        if self._aborted:
            return
        self._aborted = True
        for future in self._parts:
            future.cancel()
        for future in self._parts:
            if not future.cancelled():
                future.exception()
        uploads = self._uploads
        try:
            uploads.clients.s3.abort_multipart_upload(Bucket=uploads.bucket, Key=self.key, UploadId=self.upload_id)
        except ClientError as exc:
            logger.warning("could not abort the upload of s3://%s/%s: %s", uploads.bucket, self.key, exc)


# At most 2 parts of 8 MiB in flight, and 2 read ahead of them: memory stays flat however large the object (the
# defaults are 10 threads and 10 parts read from a file object ahead of the uploads, 80 MiB; with 4 and 4, a 5M-row
# ingestion's peak RSS rose by up to 56 MB while its objects were written, as each thread's allocator arena kept parts).
_MULTIPART = TransferConfig(multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024, max_concurrency=2)
_MULTIPART.max_in_memory_upload_chunks = 2


def upload(clients: AwsClients, bucket: str, part: PartitionFile) -> str:
    """Write one finished object (one PutObject, or a managed multipart upload past 8 MiB; a streamed object's last
    part and completion) and return its key.

    Raises
    ------
    TransientError
        The write failed in a way worth retrying; the key is unchanged, so a retry overwrites.
    TerminalError
        The write failed in a way retrying cannot fix (no such bucket, access denied).
    """
    if part.streamed:
        part.complete()
        return part.key
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
    sizes = [0 if part.streamed else part.size() for part in parts]
    # a streamed object's rest is at most about one part, written with its completion
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

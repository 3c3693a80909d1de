"""File ingestion: read a landed object, validate every record, land the valid ones and quarantine the rest."""

from __future__ import annotations

import csv
import datetime as dt
import functools
import hashlib
import io
import itertools
import json
import logging
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote_plus

import msgspec
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from datalake.aws import AwsClients, aws_error, error_code
from datalake.columnar import (
    PER_RECORD_LINES,
    SPLIT_WAYS,
    ColumnarPlan,
    ReadBlock,
    blocks,
    columnar_plan,
    lines_ready,
    newline_positions,
    output_groups,
    prefetched_reads,
)
from datalake.contracts import Dataset, Format, get_dataset
from datalake.exceptions import (
    AccountingError,
    ObjectRejectedError,
    TransientError,
    UnknownDatasetError,
)
from datalake.landing import (
    ENCODER,
    QUARANTINE_PREFIX,
    SPOOL_BYTES,
    PartitionFile,
    PartUploads,
    Writer,
    iso_stamp,
    lineage_prefix,
    lineage_suffix,
    quarantine_key,
    quarantine_line,
    raw_key,
    upload_all,
    with_lineage,
)
from datalake.originals import Provenance, file_name, keep_object, original_key
from datalake.readers import (
    UTF8_BOM,
    CappedChunkStream,
    ChunkStream,
    Limits,
    Line,
    OversizedLine,
    StreamStats,
    detect_format,
    iter_line_batches,
    json_shape,
    open_object,
)
from datalake.settings import Settings
from datalake.validation import RecordError, RecordValidator, validator_for

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

UTC = dt.UTC
__all__ = [
    "CONTENT_CLAIM_PREFIX",
    "QUARANTINE_PREFIX",
    "IngestStatus",
    "Manifest",
    "ObjectRef",
    "content_claim_key",
    "dataset_name",
    "ingest_object",
]

CONTENT_CLAIM_PREFIX = "content#"
"""Manifests-table keys of content claims: `content#<dataset>#<sha256>`, owned by the first object with those bytes."""


class IngestStatus(StrEnum):
    """Outcome of one object's ingestion."""

    LANDED = "LANDED"
    PARTIAL = "PARTIAL"
    QUARANTINED = "QUARANTINED"
    SKIPPED = "SKIPPED"
    DUPLICATE = "DUPLICATE"
    """The same bytes as an object already ingested into the dataset (`duplicate_of`): nothing landed."""


@dataclass(frozen=True)
class ObjectRef:
    """One version of one landed object, as an event names it (key already URL-decoded)."""

    bucket: str
    key: str
    version_id: str | None = None
    etag: str = ""
    size: int | None = None

    @classmethod
    def from_event_key(
        cls, bucket: str, encoded_key: str, version_id: str | None, etag: str, size: float | None
    ) -> ObjectRef:
        """Build from an S3 event, whose keys are form-encoded (`+` is a space): decoded here, once."""
        return cls(bucket, unquote_plus(encoded_key), version_id, etag, None if size is None else int(size))

    @property
    def source_version(self) -> str:
        """The version id, or the ETag on an unversioned bucket."""
        return self.version_id or self.etag or "null"

    @property
    def object_id(self) -> str:
        """The manifest key: `s3://bucket/key#version`."""
        return f"s3://{self.bucket}/{self.key}#{self.source_version}"

    @property
    def output_token(self) -> str:
        """A short digest of bucket, key and version: output keys derive from it, so a retry overwrites."""
        return hashlib.sha256(self.object_id.encode()).hexdigest()[:12]


class Manifest(BaseModel):
    """The record of one ingestion; `records_read == records_landed + records_quarantined` always holds."""

    model_config = ConfigDict(frozen=True)

    object_id: str
    bucket: str
    key: str
    version: str
    dataset: str
    status: IngestStatus
    records_read: int = 0
    records_landed: int = 0
    records_quarantined: int = 0
    bytes_read: int = 0
    bytes_decompressed: int = 0
    sha256: str = ""
    format: str | None = None
    contract_version: str | None = None
    output_keys: list[str] = []
    quarantine_keys: list[str] = []
    event_dates: list[str] = []
    reason: str | None = None
    duplicate_of: str | None = None
    original_key: str | None = None
    """Where the raw zone keeps the object byte for byte (`_originals/…`, ADR 0018); None for an object not kept."""
    replayed_from: str | None = None
    """Set when this ingestion re-read the kept original (`datalake.replay.replay_originals`)."""
    ingested_at: str


def dataset_name(key: str) -> str:
    """The dataset an object belongs to: the first segment of its key."""
    return key.split("/", 1)[0] if "/" in key else ""


def _stem(key: str) -> str:
    name = key.rsplit("/", 1)[-1]
    for suffix in (".gz", ".gzip", ".jsonl", ".ndjson", ".json", ".csv", ".parquet"):
        name = name.removesuffix(suffix)
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return cleaned[:80] or "object"


@dataclass
class _Sink:
    """Where one object's records go: raw partitions by event date, quarantine by ingestion date."""

    ref: ObjectRef
    dataset: Dataset
    ingested_at: dt.datetime
    gzip_level: int
    original_key: str | None = None
    read: int = 0
    landed_files: dict[dt.date, PartitionFile] = field(default_factory=dict)
    quarantine_file: PartitionFile | None = None
    writer: Writer = field(default_factory=Writer)
    """Compresses the landed files on a thread of its own while the next block is judged."""
    parts: PartUploads | None = None
    """Writes the parts of large output objects while the records that follow are judged (None: at the end)."""

    def __post_init__(self) -> None:
        self._mid = lineage_prefix(self.ref.key, self.ref.source_version)
        self._end = lineage_suffix(self.ingested_at, self.original_key)
        self._lineage = {
            "_source_key": self.ref.key,
            "_source_version": self.ref.source_version,
            "_ingested_at": iso_stamp(self.ingested_at),
        }
        if self.original_key is not None:
            self._lineage["_original_key"] = self.original_key
        self._name = f"{_stem(self.ref.key)}-{self.ref.output_token}.json.gz"

    def _file_for(self, day: dt.date) -> PartitionFile:
        part = self.landed_files.get(day)
        if part is None:
            key = raw_key(self.dataset.name, day, self._name)
            part = self.landed_files[day] = PartitionFile(key, self.gzip_level, self.writer, self.parts)
        return part

    @property
    def lineage_parts(self) -> tuple[bytes, bytes]:
        """The lineage text around `_line`'s value: what `with_lineage` appends to a JSON object."""
        return self._mid, self._end

    def land_lines(self, day: dt.date, lines: list[bytes]) -> None:
        """Land complete lines (lineage already appended) in one event-date partition."""
        self._file_for(day).add_many(lines)

    def land_groups(self, groups: list[tuple[dt.date, int]], texts: Callable[[], Iterator[Any]]) -> None:
        """Land groups of complete lines (lineage appended), one event date and count of lines each; `texts()` gives
        each group's text in the same order, less its last line's closing `}` and newline (`columnar.output_groups`).
        It runs on the writer's thread, with the compression."""
        parts = [self._file_for(day) for day, _ in groups]
        for part, (_, records) in zip(parts, groups, strict=True):
            part.reserve(records)

        def write() -> None:
            for part, text in zip(parts, texts(), strict=True):
                part.write_text(text)
                part.write_text(b"}\n")

        self.writer.submit(write)

    def land_json(self, line_no: int, document: bytes, event_time: dt.datetime) -> None:
        """Land a JSON object (as received when canonical, else re-encoded: `Verdict.document`) with its lineage."""
        self._file_for(event_time.astimezone(UTC).date()).add(with_lineage(document, self._mid, line_no, self._end))

    def reject(self, line_no: int, raw: bytes | str, errors: list[RecordError] | tuple[RecordError, ...]) -> None:
        """Quarantine a record with the reasons it failed, keeping its original text."""
        if self.quarantine_file is None:
            key = quarantine_key(self.dataset.name, self.ingested_at.date(), self._name)
            self.quarantine_file = PartitionFile(key, self.gzip_level, parts=self.parts)
        self.quarantine_file.add(quarantine_line({**self._lineage, "_line": line_no}, raw, errors))

    @property
    def landed(self) -> int:
        return sum(p.records for p in self.landed_files.values())

    @property
    def quarantined(self) -> int:
        return self.quarantine_file.records if self.quarantine_file else 0

    def upload(self, clients: AwsClients, bucket: str) -> tuple[list[str], list[str]]:
        """Upload every output object (managed multipart for large ones); return raw and quarantine keys."""
        landed = [part for _, part in sorted(self.landed_files.items())]
        quarantined = [self.quarantine_file] if self.quarantine_file else []
        try:
            keys = upload_all(clients, bucket, [*landed, *quarantined])
        finally:
            self.discard()
        return keys[: len(landed)], keys[len(landed) :]

    def discard(self) -> None:
        """Release the output files and threads; objects not written are dropped (their multipart uploads aborted)."""
        self.writer.close()
        for part in self.landed_files.values():
            part.discard()
        if self.quarantine_file:
            self.quarantine_file.discard()
        if self.parts is not None:
            self.parts.close()


_BLANK = frozenset(b" \t\r\n\f\v")


def _read_json_lines(chunks: Iterator[bytes], validator: RecordValidator, sink: _Sink, max_line: int) -> None:
    """Judge and route every line: blocks of lines by the columnar path when the contract maps to one (ADR 0026),
    the lines it cannot judge (and every line of a contract it cannot express) one by one."""
    plan = columnar_plan(validator.dataset)
    if plan is None:
        _judge_lines(iter_line_batches(chunks, max_line), 0, validator, sink, max_line)
        return
    line_no = 0
    for ahead in prefetched_reads(blocks(chunks, max_line), plan, max_line):
        block = ahead.data
        read: ReadBlock | None = ahead
        if line_no == 0 and block.startswith(UTF8_BOM):
            block, read = block.removeprefix(UTF8_BOM), None  # read again, without its mark
        if not block.endswith(b"\n"):
            # a line over the cap is still open: the rest of the object is split line by line, as it streams
            rest = itertools.chain((b"", block), chunks)
            _judge_lines(iter_line_batches(rest, max_line), line_no, validator, sink, max_line)
            return
        line_no = _judge_block(block, line_no, plan, validator, sink, max_line, read)


def _judge_block(
    block: bytes,
    line_no: int,
    plan: ColumnarPlan,
    validator: RecordValidator,
    sink: _Sink,
    max_line: int,
    read: ReadBlock | None = None,
) -> int:
    """Judge a block of complete lines that follows line `line_no`; return the number of its last line.

    A block the columnar path refuses (a value of another type, a blank or oversized line, broken JSON) is judged
    again in smaller blocks, and below `PER_RECORD_LINES` lines one line at a time; rows whose values a vectorised
    check refuses are judged one at a time, the rest land as one text per event date. `read` is what the read-ahead
    found of the block, when it did.
    """
    import numpy as np

    if read is None:
        ends = newline_positions(block)
        table = plan.read(block) if lines_ready(block, ends, max_line) else None
    else:
        ends, table = read.ends, read.table
    verdict = None if table is None else plan.check(block, ends, table)
    if verdict is None:
        if len(ends) <= PER_RECORD_LINES:
            return _judge_lines(iter_line_batches((b"", block), max_line), line_no, validator, sink, max_line)
        starts = [0, *(int(e) + 1 for e in ends)]
        step = -(-len(ends) // SPLIT_WAYS)
        for first in range(0, len(ends), step):
            last = min(first + step, len(ends))
            line_no = _judge_block(block[starts[first] : starts[last]], line_no, plan, validator, sink, max_line)
        return line_no
    good = np.flatnonzero(verdict.ok)
    if len(good):
        good = good[np.argsort(verdict.days[good], kind="stable")]
        days = verdict.days[good]
        cuts = [0, *(int(c) for c in np.flatnonzero(np.diff(days)) + 1), len(good)]
        bounds = list(itertools.pairwise(cuts))
        mid, end = sink.lineage_parts
        groups = [(_EPOCH + dt.timedelta(days=int(days[a])), b - a) for a, b in bounds]
        first_line = line_no + 1
        sink.land_groups(groups, lambda: (t for t, _ in output_groups(block, ends, good, bounds, first_line, mid, end)))
        sink.read += len(good)
    line_starts = np.concatenate(([0], ends[:-1] + 1))
    for row in np.flatnonzero(~verdict.ok):
        line = block[int(line_starts[row]) : int(ends[row])]
        _slow_line(line, line_no + 1 + int(row), validator, sink, max_line)
    return line_no + len(ends)


_EPOCH = dt.date(1970, 1, 1)
_EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=UTC)


def _judge_lines(
    batches: Iterator[list[Line]], line_no: int, validator: RecordValidator, sink: _Sink, max_line: int
) -> int:
    """Judge lines one by one (those after line `line_no`); the common case (valid, fast path) stays in a tight
    per-batch loop. Returns the number of the last line."""
    fast = validator.fast_event_time
    mid, end = sink.lineage_parts
    pending: dict[int, list[bytes]] = {}
    for batch in batches:
        verdicts = [fast(line) if line.__class__ is bytes else None for line in batch]
        for line, event_time in zip(batch, verdicts, strict=True):
            line_no += 1
            if event_time is None:
                _slow_line(line, line_no, validator, sink, max_line)
                continue
            # The lineage is appended inline (what `with_lineage` does, without a call per record): this loop
            # is the ingestion's hot path. A line cannot hold a newline here; a stray carriage return becomes a space.
            # Exact integer days: a float timestamp far from 1970 cannot hold the microsecond before midnight.
            day = (event_time - _EPOCH_UTC).days
            body = cast(bytes, line)
            if body[-1] != 0x7D:
                body = body.rstrip()
            if 0x0D in body:
                body = body.replace(b"\r", b" ")
            out = pending.get(day)
            if out is None:
                out = pending[day] = []
            out.append(body[:-1] + mid + b"%d" % line_no + end)
        sink.read += sum(len(lines) for lines in pending.values())
        for day, lines in pending.items():
            sink.land_lines(_EPOCH + dt.timedelta(days=day), lines)
        pending.clear()
    return line_no


def _slow_line(line: Line, line_no: int, validator: RecordValidator, sink: _Sink, max_line: int) -> None:
    """A line the fast path did not accept: oversized, blank, or to be judged by the contract itself."""
    if isinstance(line, OversizedLine):
        sink.read += 1
        error = RecordError("$", f"line of {line.size} bytes exceeds the {max_line} byte cap", "line_too_long")
        sink.reject(line_no, line.head, [error])
        return
    if not line or (line[0] in _BLANK and not line.strip()):
        return
    sink.read += 1
    verdict = validator.judge_json(line)
    if verdict.event_time is None:
        sink.reject(line_no, line, verdict.errors)
    else:
        sink.land_json(line_no, verdict.document(line), verdict.event_time)


def _read_json_array(chunks: Iterator[bytes], validator: RecordValidator, sink: _Sink) -> None:
    import ijson

    try:
        for index, item in enumerate(ijson.items(ChunkStream(chunks), "item", use_float=False), start=1):
            sink.read += 1
            document = _encoded(index, item, sink)
            if document is not None:
                _route_item(index, item, document, validator, sink)
    except ijson.JSONError as exc:
        raise ObjectRejectedError("malformed JSON array", str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise ObjectRejectedError("not valid UTF-8", str(exc)) from exc


_JSON_BUFFER = 64 * 1024
"""Bytes the streaming JSON parser reads at a time; a document's size is checked to within one buffer."""


def _read_json_documents(chunks: Iterator[bytes], validator: RecordValidator, sink: _Sink, max_bytes: int) -> None:
    """One record per top-level JSON value (a pretty-printed object, or several in a row), `_line` its 1-based index.

    No value may exceed `max_bytes` (the line cap): past it the object is rejected whole (`document too large`),
    before the value is held in memory.
    """
    import ijson

    stream = CappedChunkStream(chunks, max_bytes + _JSON_BUFFER)
    values = ijson.items(stream, "", multiple_values=True, use_float=False, buf_size=_JSON_BUFFER)
    try:
        for index, item in enumerate(values, start=1):
            stream.mark()
            sink.read += 1
            document = _encoded(index, item, sink)
            if document is None:
                continue
            if len(document) > max_bytes:
                raise ObjectRejectedError(
                    "document too large", f"JSON document {index} holds {len(document)} bytes, over the {max_bytes} cap"
                )
            _route_item(index, item, document, validator, sink)
    except ijson.JSONError as exc:
        raise ObjectRejectedError("malformed JSON document", str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise ObjectRejectedError("not valid UTF-8", str(exc)) from exc


NESTING_TOO_DEEP = RecordError(
    "$", "value nested too deep to be re-encoded (recursion limit exceeded)", "nesting_too_deep"
)


def _encoded(index: int, item: object, sink: _Sink) -> bytes | None:
    """A parsed JSON value re-encoded; None when it is nested too deep to encode, and then quarantined as such."""
    try:
        return ENCODER.encode(item)
    except RecursionError:
        sink.reject(index, f"<a JSON value nested deeper than {sys.getrecursionlimit()} levels>", [NESTING_TOO_DEEP])
        return None


def _route_item(index: int, item: object, document: bytes, validator: RecordValidator, sink: _Sink) -> None:
    """Land a parsed JSON value (re-encoded as `document`) its contract accepts; quarantine it otherwise."""
    verdict = validator.check_json(document)
    if verdict.event_time is not None and isinstance(item, dict):
        sink.land_json(index, verdict.document(document), verdict.event_time)
    else:
        sink.reject(index, document, verdict.errors)


def _read_csv(chunks: Iterator[bytes], validator: RecordValidator, sink: _Sink, max_line: int) -> None:
    csv.field_size_limit(max_line)
    text = io.TextIOWrapper(io.BufferedReader(ChunkStream(chunks)), encoding="utf-8-sig", newline="")
    reader = csv.DictReader(text, delimiter=validator.dataset.csv_delimiter, restkey="_unexpected_columns")
    try:
        for row in reader:
            sink.read += 1
            record = {k: (v if v != "" else None) for k, v in row.items()}
            if "_unexpected_columns" in record:
                error = RecordError("$", "row has more columns than the header", "csv_columns")
                sink.reject(reader.line_num, json.dumps(row), [error])
                continue
            verdict = validator.check_text_row(record)
            if verdict.event_time is not None and verdict.canonical is not None:
                sink.land_json(reader.line_num, verdict.canonical, verdict.event_time)
            else:
                sink.reject(reader.line_num, json.dumps(row), verdict.errors)
    except csv.Error as exc:
        raise ObjectRejectedError("malformed CSV", f"line {reader.line_num}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ObjectRejectedError("not valid UTF-8", str(exc)) from exc


PARQUET_BATCH_ROWS = 16_384
"""Rows read from a Parquet object at a time (within a row group): memory stays within one batch."""


def _parquet_value(value: Any) -> Any:
    """JSON for what `to_pylist` gives beyond msgspec's types (a nanosecond timestamp comes as a pandas Timestamp)."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"a Parquet value of type {type(value).__name__} has no JSON form")


_PARQUET_ENCODER = msgspec.json.Encoder(decimal_format="number", enc_hook=_parquet_value)


def _read_parquet(chunks: Iterator[bytes], validator: RecordValidator, sink: _Sink, max_bytes: int) -> None:
    """Judge every row of a Parquet object as the JSON object of its values, `_line` its 1-based row number.

    Parquet keeps its schema in a footer at the end, so the object is spooled to a temporary file (disk past a few
    MiB) and read back in batches of `PARQUET_BATCH_ROWS`. A file whose footer or schema cannot be read, or whose
    pages cannot be decoded, is rejected whole (`unreadable Parquet`).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        for chunk in chunks:
            spool.write(chunk)
        spool.seek(0)
        try:
            parquet = pq.ParquetFile(spool)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise ObjectRejectedError("unreadable Parquet", f"cannot read its footer or schema: {exc}") from exc
        line = 0
        try:
            for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
                for row in batch.to_pylist(maps_as_pydicts="lossy"):
                    line += 1
                    sink.read += 1
                    try:
                        document = _PARQUET_ENCODER.encode(row)
                    except RecursionError:
                        sink.reject(line, "<a Parquet row nested too deep to encode>", [NESTING_TOO_DEEP])
                        continue
                    except TypeError as exc:
                        sink.reject(line, repr(row)[:1024], [RecordError("$", str(exc), "parquet_type")])
                        continue
                    if len(document) > max_bytes:
                        error = RecordError(
                            "$", f"row of {len(document)} bytes exceeds the {max_bytes} byte cap", "line_too_long"
                        )
                        sink.reject(line, document[:1024], [error])
                        continue
                    _route_item(line, row, document, validator, sink)
        except (pa.ArrowException, OSError) as exc:
            raise ObjectRejectedError("unreadable Parquet", f"after row {line}: {exc}") from exc


def _peek(chunks: Iterator[bytes]) -> tuple[bytes, Iterator[bytes]]:
    head = b""
    buffered: list[bytes] = []
    for chunk in chunks:
        buffered.append(chunk)
        head += chunk[:64]
        if head.strip():
            break

    def chained() -> Iterator[bytes]:
        yield from buffered
        yield from chunks

    return head, chained()


def _limits(settings: Settings) -> Limits:
    return Limits(
        max_decompressed_bytes=settings.max_decompressed_bytes,
        max_compression_ratio=settings.max_compression_ratio,
        ratio_check_after_bytes=settings.ratio_check_after_bytes,
        max_line_bytes=settings.max_line_bytes,
    )


def ingest_object(
    ref: ObjectRef,
    *,
    settings: Settings,
    clients: AwsClients,
    now: dt.datetime | None = None,
    replay_from: str | None = None,
) -> Manifest:
    """Ingest one landed object version: land valid records in raw, quarantine the rest, record a manifest.

    Parameters
    ----------
    ref
        The object version to ingest (key decoded).
    settings
        Bucket and table names and the ingestion caps.
    clients
        AWS clients; their endpoint decides whether this is AWS or lakebox.
    now
        The ingestion time (for tests); defaults to the current UTC time.
    replay_from
        The raw-zone key of the object's kept original, to read instead of the landed object (a replay, ADR 0018):
        the ingestion keeps `ref`'s identity, so its outputs overwrite those of the first ingestion.

    Returns
    -------
    Manifest
        Counts, output keys and status. `records_read == records_landed + records_quarantined`.

    Raises
    ------
    TransientError
        An AWS call failed in a way worth retrying; outputs are keyed by the object version, so a retry overwrites.
    """
    ingested_at = now or dt.datetime.now(UTC)
    raw_bucket = settings.require("raw_bucket")
    base = {
        "object_id": ref.object_id,
        "bucket": ref.bucket,
        "key": ref.key,
        "version": ref.source_version,
        "ingested_at": ingested_at.isoformat(),
    }
    if ref.key.endswith("/") or ref.size == 0:
        logger.info("skipping %s: %s", ref.object_id, "folder key" if ref.key.endswith("/") else "zero bytes")
        return Manifest(**base, dataset=dataset_name(ref.key), status=IngestStatus.SKIPPED, reason="empty object")
    try:
        dataset = get_dataset(dataset_name(ref.key))
    except UnknownDatasetError as exc:
        manifest = _reject_object(
            ref, None, ObjectRejectedError("unknown dataset", str(exc)), base, clients, raw_bucket
        )
        return _record(manifest, settings, clients)

    if replay_from is None:
        body, arrived, size = _open(ref, clients)
        target = original_key(dataset.name, arrived.astimezone(UTC).date(), ref.output_token, file_name(ref.key))
        base["original_key"] = target
    else:
        body, _, size = _open(ObjectRef(raw_bucket, replay_from), clients)
        target = base["original_key"] = base["replayed_from"] = replay_from
    chunks, stats = open_object(body, _limits(settings))
    sink = _Sink(ref, dataset, ingested_at, settings.gzip_level, target, parts=PartUploads(clients, raw_bucket))
    keep = functools.partial(_keep_original, ref, dataset, target, size, settings, clients, ingested_at)
    keeping: Future[None] | None = None
    try:
        head, chunks = _peek(chunks)
        if not head.strip():
            logger.info("skipping %s: no content", ref.object_id)
            empty = {**base, "original_key": None}  # nothing but whitespace arrived: no original is kept
            return _record(
                Manifest(**empty, dataset=dataset.name, status=IngestStatus.SKIPPED, reason="empty object"),
                settings,
                clients,
            )
        # The copy is server side: it runs while the records are read, and is awaited before anything names it.
        keeping = _in_background(keep)
        # The clients the ingestion ends with are built (once per process) while the records are read.
        _in_background(functools.partial(_build_clients, clients))
        fmt = detect_format(ref.key, head)
        if fmt is Format.JSON_LINES:
            fmt, chunks = json_shape(chunks, settings.max_line_bytes)
        if fmt is None or fmt not in dataset.formats:
            raise ObjectRejectedError("unsupported format", f"{ref.key} is not one of {sorted(dataset.formats)}")
        validator = validator_for(dataset)
        if fmt is Format.JSON_LINES:
            _read_json_lines(chunks, validator, sink, settings.max_line_bytes)
        elif fmt is Format.JSON_ARRAY:
            _read_json_array(chunks, validator, sink)
        elif fmt is Format.JSON_DOCUMENT:
            _read_json_documents(chunks, validator, sink, settings.max_line_bytes)
        elif fmt is Format.PARQUET:
            _read_parquet(chunks, validator, sink, settings.max_line_bytes)
        else:
            _read_csv(chunks, validator, sink, settings.max_line_bytes)
    except ObjectRejectedError as exc:
        sink.discard()
        if keeping is None:  # refused before its first bytes were judged (a gzip bomb in the first chunk)
            keep()
        else:
            keeping.result()
        manifest = _reject_object(ref, dataset, exc, base, clients, raw_bucket, stats=stats, read=sink.read)
        return _record(manifest, settings, clients)
    except BaseException:
        sink.discard()  # parts already written are aborted, the threads ended; the error is the caller's
        raise

    landed, quarantined = sink.landed, sink.quarantined
    try:
        if sink.read != landed + quarantined:
            raise AccountingError(f"{ref.object_id}: read {sink.read} != landed {landed} + quarantined {quarantined}")
        sha256 = _drained(chunks, stats)
        original = _claim_content(ref, dataset, sha256, settings, clients, ingested_at) if sink.read else None
        if keeping is not None:
            keeping.result()
    except BaseException:
        sink.discard()
        raise
    if original is not None:
        sink.discard()
        return _record(_duplicate_manifest(base, dataset, fmt, stats, original), settings, clients)
    event_dates = sorted(d.isoformat() for d in sink.landed_files)
    output_keys, quarantine_keys = sink.upload(clients, raw_bucket)
    status = (
        IngestStatus.SKIPPED
        if sink.read == 0
        else IngestStatus.LANDED
        if quarantined == 0
        else IngestStatus.QUARANTINED
        if landed == 0
        else IngestStatus.PARTIAL
    )
    manifest = Manifest(
        **base,
        dataset=dataset.name,
        status=status,
        records_read=sink.read,
        records_landed=landed,
        records_quarantined=quarantined,
        bytes_read=stats.bytes_read,
        bytes_decompressed=stats.bytes_decompressed,
        sha256=stats.sha256,
        format=fmt.value,
        contract_version=dataset.version,
        output_keys=output_keys,
        quarantine_keys=quarantine_keys,
        event_dates=event_dates,
    )
    return _record(manifest, settings, clients)


def content_claim_key(dataset: str, sha256: str) -> str:
    """The manifests-table key of the claim on one content (by sha256 of the stored bytes) within a dataset."""
    return f"{CONTENT_CLAIM_PREFIX}{dataset}#{sha256}"


def _drained(chunks: Iterator[bytes], stats: StreamStats) -> str:
    """The sha256 of the whole object: a reader may stop at the end of its JSON before the stream's last bytes."""
    for _ in chunks:
        pass
    return stats.sha256


def _claim_content(
    ref: ObjectRef, dataset: Dataset, sha256: str, settings: Settings, clients: AwsClients, now: dt.datetime
) -> str | None:
    """Claim the object's content for it, atomically; return the object id of the original if another owns it.

    The claim is an item of the manifests table keyed `content#<dataset>#<sha256>` (it has no `dataset` attribute,
    so scans of the manifests by dataset never see it). The conditional write succeeds for the first object with
    those bytes and for that object's retries, which then overwrite their own outputs; every other object, racing or
    late, is a duplicate of the owner.
    """
    table = clients.dynamodb.Table(settings.require("manifests_table"))
    key = content_claim_key(dataset.name, sha256)
    try:
        table.put_item(
            Item={"object_id": key, "claimed_by": ref.object_id, "sha256": sha256, "claimed_at": iso_stamp(now)},
            ConditionExpression="attribute_not_exists(object_id) OR claimed_by = :owner",
            ExpressionAttributeValues={":owner": ref.object_id},
        )
        return None
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise aws_error(exc, f"claiming the content of {ref.object_id}") from exc
    try:
        item = table.get_item(Key={"object_id": key}, ConsistentRead=True).get("Item") or {}
    except ClientError as exc:
        raise aws_error(exc, f"reading the content claim of {ref.object_id}") from exc
    owner = item.get("claimed_by")
    if not owner:
        raise TransientError(f"the content claim {key} changed while {ref.object_id} was claiming it")
    logger.info("%s holds the same bytes as %s: recorded as a duplicate", ref.object_id, owner)
    return str(owner)


def _duplicate_manifest(
    base: dict[str, Any], dataset: Dataset, fmt: Format, stats: StreamStats, original: str
) -> Manifest:
    return Manifest(
        **base,
        dataset=dataset.name,
        status=IngestStatus.DUPLICATE,
        bytes_read=stats.bytes_read,
        bytes_decompressed=stats.bytes_decompressed,
        sha256=stats.sha256,
        format=fmt.value,
        contract_version=dataset.version,
        reason=f"same content as {original}",
        duplicate_of=original,
    )


def _open(ref: ObjectRef, clients: AwsClients) -> tuple[Any, dt.datetime, int]:
    """The object's body, when it arrived (its `LastModified`) and its size."""
    kwargs: dict[str, str] = {"Bucket": ref.bucket, "Key": ref.key}
    if ref.version_id and ref.version_id != "null":
        kwargs["VersionId"] = ref.version_id
    try:
        response = clients.s3.get_object(**kwargs)  # type: ignore[arg-type]
    except ClientError as exc:
        raise aws_error(exc, f"reading {ref.object_id}") from exc
    return response["Body"], response["LastModified"], int(response["ContentLength"])


def _in_background(work: Callable[[], None]) -> Future[None]:
    """Run `work` in a thread of its own; the future's `result()` waits for it and raises what it raised."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keep-original")
    try:
        return pool.submit(work)
    finally:
        pool.shutdown(wait=False)


def _build_clients(clients: AwsClients) -> None:
    """Build the clients that record the manifest and announce it (a no-op once built)."""
    clients.dynamodb  # noqa: B018 - built on first access
    clients.events  # noqa: B018


def _keep_original(
    ref: ObjectRef,
    dataset: Dataset,
    target: str,
    size: int,
    settings: Settings,
    clients: AwsClients,
    ingested_at: dt.datetime,
) -> None:
    """Keep the object byte for byte under `target` in the raw zone (once: a retry or a replay finds it there)."""
    provenance = Provenance(
        source_bucket=ref.bucket,
        source_key=ref.key,
        source_version_id=ref.version_id,
        source_etag=ref.etag,
        dataset=dataset.name,
        ingested_at=iso_stamp(ingested_at),
    )
    keep_object(
        bucket=ref.bucket,
        key=ref.key,
        version_id=ref.version_id,
        size=size,
        target=target,
        provenance=provenance,
        source_version=ref.source_version,
        settings=settings,
        clients=clients,
        now=ingested_at,
    )


def _reject_object(
    ref: ObjectRef,
    dataset: Dataset | None,
    exc: ObjectRejectedError,
    base: dict[str, Any],
    clients: AwsClients,
    raw_bucket: str,
    *,
    stats: StreamStats | None = None,
    read: int = 0,
) -> Manifest:
    """Keep the whole object under `_quarantine/_objects/`, with its reason beside it."""
    name = dataset.name if dataset else "_unknown"
    target = f"{QUARANTINE_PREFIX}/_objects/{name}/{ref.output_token}/{ref.key}"
    logger.warning("quarantining object %s: %s", ref.object_id, exc)
    source: dict[str, str] = {"Bucket": ref.bucket, "Key": ref.key}
    if ref.version_id and ref.version_id != "null":
        source["VersionId"] = ref.version_id
    reason = {"object_id": ref.object_id, "reason": exc.reason, "detail": exc.detail, "records_seen": read}
    try:
        clients.s3.copy(source, raw_bucket, target)  # type: ignore[arg-type]
        clients.s3.put_object(
            Bucket=raw_bucket,
            Key=f"{target}.reason.json",
            Body=json.dumps(reason).encode(),
            ContentType="application/json",
        )
    except ClientError as exc2:
        raise aws_error(exc2, f"quarantining {ref.object_id}") from exc2
    return Manifest(
        **base,
        dataset=name,
        status=IngestStatus.QUARANTINED,
        records_read=read,
        records_quarantined=read,
        bytes_read=stats.bytes_read if stats else 0,
        bytes_decompressed=stats.bytes_decompressed if stats else 0,
        sha256=stats.sha256 if stats else "",
        contract_version=dataset.version if dataset else None,
        quarantine_keys=[target],
        reason=str(exc),
    )


def _record(manifest: Manifest, settings: Settings, clients: AwsClients) -> Manifest:
    """Write the manifest and announce it with a `FileIngested` event."""
    document = manifest.model_dump(mode="json")
    try:
        clients.dynamodb.Table(settings.require("manifests_table")).put_item(Item=document)
        response = clients.events.put_events(
            Entries=[
                {
                    "Source": settings.event_source,
                    "DetailType": "FileIngested",
                    "Detail": json.dumps(document),
                    "EventBusName": settings.event_bus_name,
                    "Resources": [f"arn:aws:s3:::{manifest.bucket}"],
                }
            ]
        )
    except ClientError as exc:
        raise aws_error(exc, f"recording the manifest of {manifest.object_id}") from exc
    if response.get("FailedEntryCount"):
        raise TransientError(f"FileIngested event for {manifest.object_id} was not accepted: {response['Entries']}")
    return manifest

"""Streaming readers for landed objects: decompression with bomb guards, line splitting, format detection."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import msgspec
from isal import isal_zlib

from datalake.contracts.base import Format
from datalake.exceptions import ObjectRejectedError

CHUNK_BYTES = 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
_GZIP_WBITS = 16 + isal_zlib.MAX_WBITS
_ZLIB_ERROR: type[Exception] = isal_zlib.error  # type: ignore[assignment]


class Readable(Protocol):
    """The part of a file or botocore `StreamingBody` the readers use."""

    def read(self, amt: int | None = ..., /) -> bytes:
        """Read up to `amt` bytes."""
        ...


@dataclass(frozen=True)
class Limits:
    """Caps that keep one object from exhausting memory or time."""

    max_decompressed_bytes: int
    max_compression_ratio: float
    ratio_check_after_bytes: int
    max_line_bytes: int


@dataclass
class StreamStats:
    """What was read of one object: stored bytes, their sha256, and bytes after decompression."""

    compressed: bool = False
    bytes_read: int = 0
    bytes_decompressed: int = 0
    _digest: hashlib._Hash = field(default_factory=hashlib.sha256, repr=False)

    @property
    def sha256(self) -> str:
        """Hex sha256 of the stored (possibly compressed) bytes read so far."""
        return self._digest.hexdigest()


def _stored_chunks(body: Readable, stats: StreamStats) -> Iterator[bytes]:
    while chunk := body.read(CHUNK_BYTES):
        stats.bytes_read += len(chunk)
        stats._digest.update(chunk)
        yield chunk


def _gunzip(chunks: Iterator[bytes], stats: StreamStats, limits: Limits) -> Iterator[bytes]:
    """Decompress (possibly multi-member) gzip, enforcing the size and ratio caps as it goes."""
    decoder = isal_zlib.decompressobj(_GZIP_WBITS)
    in_member = False
    for chunk in chunks:
        data = chunk
        while data:
            in_member = True
            try:
                out = decoder.decompress(data, CHUNK_BYTES)
            except _ZLIB_ERROR as exc:
                raise ObjectRejectedError("corrupt gzip", str(exc)) from exc
            stats.bytes_decompressed += len(out)
            _check_caps(stats, limits)
            if out:
                yield out
            if decoder.eof:
                data = decoder.unused_data
                decoder = isal_zlib.decompressobj(_GZIP_WBITS)
                in_member = False
            else:
                data = decoder.unconsumed_tail
    if in_member:
        raise ObjectRejectedError("truncated gzip", "the stream ended before the gzip trailer")


def _check_caps(stats: StreamStats, limits: Limits) -> None:
    if stats.bytes_decompressed > limits.max_decompressed_bytes:
        raise ObjectRejectedError("gzip bomb", f"decompressed size exceeds {limits.max_decompressed_bytes} bytes")
    if (
        stats.bytes_decompressed > limits.ratio_check_after_bytes
        and stats.bytes_decompressed > limits.max_compression_ratio * stats.bytes_read
    ):
        raise ObjectRejectedError("gzip bomb", f"compression ratio exceeds {limits.max_compression_ratio:g}:1")


def open_object(body: Readable, limits: Limits) -> tuple[Iterator[bytes], StreamStats]:
    """Return the object's decompressed bytes as chunks, and the statistics filled while they are read.

    Gzip is recognised by its magic bytes, not the key's suffix.
    """
    stats = StreamStats()
    stored = _stored_chunks(body, stats)
    first = next(stored, b"")
    if not first:
        return iter(()), stats

    def chained() -> Iterator[bytes]:
        yield first
        yield from stored

    if first.startswith(GZIP_MAGIC):
        stats.compressed = True
        return _gunzip(chained(), stats, limits), stats
    return _count_plain(chained(), stats), stats


def _count_plain(chunks: Iterator[bytes], stats: StreamStats) -> Iterator[bytes]:
    for chunk in chunks:
        stats.bytes_decompressed += len(chunk)
        yield chunk


@dataclass(frozen=True, slots=True)
class OversizedLine:
    """A line longer than the cap: only its head is kept, as evidence for the quarantine."""

    head: bytes
    size: int


Line = bytes | OversizedLine


def iter_line_batches(chunks: Iterable[bytes], max_line_bytes: int) -> Iterator[list[Line]]:
    """Split decompressed chunks into lines, a batch per chunk; memory stays within a chunk plus one line.

    A UTF-8 BOM at the start and a `\\r` before each `\\n` are removed. Lines longer than `max_line_bytes` come out
    as `OversizedLine` and their bytes are not kept.
    """
    pending = b""
    skipping: OversizedLine | None = None
    first = True
    for chunk in chunks:
        if first:
            chunk = chunk.removeprefix(UTF8_BOM)
            first = False
        parts = chunk.split(b"\n")
        batch: list[Line] = []
        for part in parts[:-1]:
            if skipping is not None:
                batch.append(OversizedLine(skipping.head, skipping.size + len(part)))
                skipping = None
                continue
            line = pending + part if pending else part
            pending = b""
            if len(line) > max_line_bytes:
                batch.append(OversizedLine(line[:1024], len(line)))
            else:
                batch.append(line[:-1] if line.endswith(b"\r") else line)
        tail = parts[-1]
        if skipping is not None:
            skipping = OversizedLine(skipping.head, skipping.size + len(tail))
        else:
            pending = pending + tail if pending else tail
            if len(pending) > max_line_bytes:
                skipping = OversizedLine(pending[:1024], len(pending))
                pending = b""
        if batch:
            yield batch
    if skipping is not None:
        yield [skipping]
    elif pending:
        yield [pending[:-1] if pending.endswith(b"\r") else pending]


class ChunkStream(io.RawIOBase):
    """A read-only file over an iterator of byte chunks, for parsers that want a file (ijson, csv)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        """Always readable."""
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        """Fill `target` from the chunks; 0 at the end."""
        while not self._buffer:
            nxt = next(self._chunks, None)
            if nxt is None:
                return 0
            self._buffer = nxt
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


class CappedChunkStream(ChunkStream):
    """A `ChunkStream` that refuses to deliver more than `cap` bytes between two `mark()` calls.

    A streaming JSON parser reads through it and the reader marks each value it completes, so no single value can
    make the parser hold more than `cap` bytes (plus the parser's own buffer).
    """

    def __init__(self, chunks: Iterator[bytes], cap: int) -> None:
        super().__init__(chunks)
        self._cap = cap
        self._since_mark = 0

    def mark(self) -> None:
        """A value ended: count the next one's bytes from here."""
        self._since_mark = 0

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        """Fill `target` as `ChunkStream` does; fail once the bytes since the last mark exceed the cap."""
        n = super().readinto(target)
        self._since_mark += n
        if self._since_mark > self._cap:
            raise ObjectRejectedError("document too large", f"a JSON document exceeds the {self._cap} byte cap")
        return n


_SUFFIX_FORMATS = {
    ".jsonl": Format.JSON_LINES,
    ".ndjson": Format.JSON_LINES,
    ".csv": Format.CSV,
    ".parquet": Format.PARQUET,
}
PARQUET_MAGIC = b"PAR1"


def detect_format(key: str, head: bytes) -> Format | None:
    """Tell the format from the content's first significant byte and, failing that, the key's suffix.

    Parquet is known by its magic bytes `PAR1` whatever the key; CSV by its suffix (`.csv`, ignoring `.gz`); any
    other object starting with `[` is a JSON array and with `{` JSON (lines or documents: `json_shape` tells which).
    Content that starts otherwise under a `.jsonl`/`.ndjson` key stays JSON lines, so each line is judged (and
    quarantined) on its own; under a `.parquet` key it is Parquet, and quarantined whole as unreadable.
    """
    if head.startswith(PARQUET_MAGIC):
        return Format.PARQUET
    name = key.lower().removesuffix(".gz").removesuffix(".gzip")
    if name.endswith(".csv"):
        return Format.CSV
    start = head.removeprefix(UTF8_BOM).lstrip()[:1]
    if start == b"[":
        return Format.JSON_ARRAY
    if start == b"{":
        return Format.JSON_LINES
    for suffix, fmt in _SUFFIX_FORMATS.items():
        if name.endswith(suffix):
            return fmt
    return None


def json_shape(chunks: Iterator[bytes], max_line_bytes: int) -> tuple[Format, Iterator[bytes]]:
    """JSON lines or JSON documents, told by the first lines; returns the format and the chunks, unconsumed.

    A first line that is a complete JSON value means JSON lines. So does a first line that does not open an object,
    a broken first line followed by a complete one (a JSON-lines file whose first record is damaged), and a first
    line over `max_line_bytes` (quarantined alone, as any line over the cap). Otherwise the content is one document
    spread over lines (a pretty-printed object), or several in a row. At most two lines of `max_line_bytes` are
    buffered.
    """
    lines, chunks = _first_lines(chunks, 2, max_line_bytes)
    if not lines or lines[0] is None or not lines[0].startswith(b"{") or _complete(lines[0]):
        return Format.JSON_LINES, chunks
    if len(lines) > 1 and lines[1] is not None and _complete(lines[1]):
        return Format.JSON_LINES, chunks
    return Format.JSON_DOCUMENT, chunks


def _complete(line: bytes) -> bool:
    try:
        msgspec.json.decode(line)
    except msgspec.DecodeError:
        return False
    except RecursionError:
        return True  # a value too deep to build, on one line: the line is judged (and quarantined) on its own
    return True


def _first_lines(
    chunks: Iterator[bytes], count: int, max_line_bytes: int
) -> tuple[list[bytes | None], Iterator[bytes]]:
    """The first `count` non-blank lines (None for one over the cap), and the chunks with nothing lost."""
    buffered: list[bytes] = []
    lines: list[bytes | None] = []
    pending = b""
    for chunk in chunks:
        buffered.append(chunk)
        pending += chunk
        *complete, pending = pending.removeprefix(UTF8_BOM).split(b"\n")
        lines.extend(line.strip() for line in complete if line.strip())
        if len(lines) >= count:
            break
        if len(pending) > max_line_bytes:
            lines.append(None)
            break
    else:
        if pending.strip():
            lines.append(pending.strip())

    def chained() -> Iterator[bytes]:
        yield from buffered
        yield from chunks

    return [line if line is None or len(line) <= max_line_bytes else None for line in lines[:count]], chained()

"""Streaming readers: gzip guards, line splitting, format detection."""

from __future__ import annotations

import gzip
import io

import pytest

from datalake.contracts import Format
from datalake.exceptions import ObjectRejectedError
from datalake.readers import (
    CappedChunkStream,
    Limits,
    OversizedLine,
    detect_format,
    iter_line_batches,
    json_shape,
    open_object,
)

LIMITS = Limits(max_decompressed_bytes=10**9, max_compression_ratio=100, ratio_check_after_bytes=0, max_line_bytes=64)


def _read_all(data: bytes, limits: Limits = LIMITS) -> bytes:
    chunks, _ = open_object(io.BytesIO(data), limits)
    return b"".join(chunks)


def test_plain_and_gzip_and_multi_member_gzip_read_the_same() -> None:
    payload = b'{"a":1}\n{"a":2}\n'
    assert _read_all(payload) == payload
    assert _read_all(gzip.compress(payload)) == payload
    assert _read_all(gzip.compress(payload) + gzip.compress(payload)) == payload * 2


def test_stats_report_stored_bytes_digest_and_decompressed_size() -> None:
    import hashlib

    stored = gzip.compress(b"x" * 1000)
    chunks, stats = open_object(io.BytesIO(stored), LIMITS)
    b"".join(chunks)
    assert (stats.compressed, stats.bytes_read, stats.bytes_decompressed) == (True, len(stored), 1000)
    assert stats.sha256 == hashlib.sha256(stored).hexdigest()


def test_truncated_gzip_is_rejected() -> None:
    stored = gzip.compress(b'{"a":1}\n' * 1000)
    with pytest.raises(ObjectRejectedError, match="truncated gzip"):
        _read_all(stored[: len(stored) // 2])


def test_corrupt_gzip_is_rejected() -> None:
    stored = bytearray(gzip.compress(b'{"a":1}\n' * 1000))
    stored[20:40] = b"\x00" * 20
    with pytest.raises(ObjectRejectedError, match="corrupt gzip"):
        _read_all(bytes(stored))


def test_gzip_bomb_is_stopped_by_the_ratio_cap() -> None:
    bomb = gzip.compress(b"\0" * 20_000_000)
    with pytest.raises(ObjectRejectedError, match="compression ratio"):
        _read_all(bomb)


def test_gzip_bomb_is_stopped_by_the_size_cap() -> None:
    limits = Limits(
        max_decompressed_bytes=1_000_000, max_compression_ratio=10**9, ratio_check_after_bytes=0, max_line_bytes=64
    )
    with pytest.raises(ObjectRejectedError, match="decompressed size exceeds 1000000"):
        _read_all(gzip.compress(b"a" * 5_000_000), limits)


def _lines(chunks: list[bytes], cap: int = 64) -> list[bytes | OversizedLine]:
    return [line for batch in iter_line_batches(iter(chunks), cap) for line in batch]


def test_lines_split_across_chunks_bom_and_crlf() -> None:
    chunks = [b'\xef\xbb\xbf{"a"', b':1}\r\n{"b":2}\r', b'\n{"c":3}']
    assert _lines(chunks) == [b'{"a":1}', b'{"b":2}', b'{"c":3}']


def test_line_over_the_cap_is_reported_not_kept() -> None:
    lines = _lines([b"ok\n" + b"x" * 50, b"y" * 50 + b"\nafter\n"], cap=64)
    assert lines[0] == b"ok"
    assert isinstance(lines[1], OversizedLine) and lines[1].size == 100
    assert lines[2] == b"after"


@pytest.mark.parametrize(
    ("key", "head", "expected"),
    [
        ("sales/a.jsonl.gz", b"{", Format.JSON_LINES),
        ("sales/a.csv", b"transaction_id,", Format.CSV),
        ("sales/a.json", b"  [ {", Format.JSON_ARRAY),
        ("sales/a.json", b"\xef\xbb\xbf{", Format.JSON_LINES),
        ("sales/a.bin", b"PK\x03\x04", None),
    ],
)
def test_format_is_detected_from_suffix_and_content(key: str, head: bytes, expected: Format | None) -> None:
    assert detect_format(key, head) is expected


PRETTY = b'{\n  "transaction_id": "T1",\n  "quantity": 2\n}\n'


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a": 1}\n{"a": 2}\n', Format.JSON_LINES),
        (b'\n\n  {"a": 1}\r\n', Format.JSON_LINES),
        (b'{"a": 1}', Format.JSON_LINES),
        (b'{"a": \n{"a": 2}\n', Format.JSON_LINES),  # a JSON-lines file whose first record is broken
        (PRETTY, Format.JSON_DOCUMENT),
        (b"\xef\xbb\xbf" + PRETTY, Format.JSON_DOCUMENT),
        (PRETTY + PRETTY, Format.JSON_DOCUMENT),
        (b'{ "transaction_id": "T1",\n  "nested": {"a": [1,\n 2]}}', Format.JSON_DOCUMENT),
        (b"{" + b" " * 5000 + b"\n}", Format.JSON_LINES),  # a first line over the cap is a line, quarantined alone
    ],
)
def test_json_lines_are_told_from_documents_by_their_first_lines(body: bytes, expected: Format) -> None:
    # GIVEN a body split into small chunks
    chunks = iter([body[i : i + 7] for i in range(0, len(body), 7)])
    # WHEN its shape is sniffed
    fmt, rest = json_shape(chunks, max_line_bytes=4096)
    # THEN the shape is told by content, and the chunks still hold every byte
    assert fmt is expected
    assert b"".join(rest) == body


def test_capped_stream_stops_a_document_over_its_cap() -> None:
    # GIVEN a stream capped at 250 bytes between marks
    stream = CappedChunkStream(iter([b"x" * 100] * 10), cap=250)
    # WHEN 200 bytes are read, a document ends (mark), and the next one runs past the cap
    assert stream.read(100) + stream.read(100) == b"x" * 200
    stream.mark()
    assert len(stream.read(100) + stream.read(100)) == 200
    # THEN the read that crosses the cap fails with the reason
    with pytest.raises(ObjectRejectedError, match="document too large"):
        stream.read(100)

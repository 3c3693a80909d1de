"""The CBOR (RFC 8949) the Smithy RPC v2 protocol carries: what botocore sends and reads, decoded and encoded."""

from __future__ import annotations

import datetime as dt
import struct
from typing import Any

_BREAK = object()


def loads(data: bytes) -> Any:
    """Decode one CBOR item (timestamps, tag 1, come back as epoch seconds)."""
    if not data:
        return {}
    value, end = _item(data, 0)
    if end != len(data):
        raise ValueError(f"{len(data) - end} bytes after the CBOR item")
    return value


def _length(data: bytes, position: int, info: int) -> tuple[int, int]:
    if info < 24:
        return info, position
    size = {24: 1, 25: 2, 26: 4, 27: 8}.get(info)
    if size is None:
        raise ValueError(f"bad CBOR length code {info}")
    return int.from_bytes(data[position : position + size], "big"), position + size


def _item(data: bytes, position: int) -> tuple[Any, int]:
    initial = data[position]
    position += 1
    major, info = initial >> 5, initial & 0x1F
    if major == 7:
        return _simple(data, position, info)
    if info == 31:
        return _indefinite(data, position, major)
    length, position = _length(data, position, info)
    if major == 0:
        return length, position
    if major == 1:
        return -1 - length, position
    if major == 2:
        return bytes(data[position : position + length]), position + length
    if major == 3:
        return data[position : position + length].decode("utf-8"), position + length
    if major == 4:
        items = []
        for _ in range(length):
            item, position = _item(data, position)
            items.append(item)
        return items, position
    if major == 5:
        mapping = {}
        for _ in range(length):
            key, position = _item(data, position)
            mapping[key], position = _item(data, position)
        return mapping, position
    return _item(data, position)  # major 6: a tag; the tagged item stands for itself


def _simple(data: bytes, position: int, info: int) -> tuple[Any, int]:
    if info in (20, 21):
        return info == 21, position
    if info in (22, 23):
        return None, position
    if info == 25:
        return struct.unpack(">e", data[position : position + 2])[0], position + 2
    if info == 26:
        return struct.unpack(">f", data[position : position + 4])[0], position + 4
    if info == 27:
        return struct.unpack(">d", data[position : position + 8])[0], position + 8
    if info == 31:
        return _BREAK, position
    raise ValueError(f"bad CBOR simple value {info}")


def _indefinite(data: bytes, position: int, major: int) -> tuple[Any, int]:
    parts: list[Any] = []
    while True:
        item, position = _item(data, position)
        if item is _BREAK:
            break
        parts.append(item)
    if major == 2:
        return b"".join(parts), position
    if major == 3:
        return "".join(parts), position
    if major == 4:
        return parts, position
    if major == 5:
        return dict(zip(parts[::2], parts[1::2], strict=True)), position
    raise ValueError(f"CBOR major type {major} cannot have an indefinite length")


def _head(major: int, length: int) -> bytes:
    if length < 24:
        return bytes([major << 5 | length])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if length < 1 << (8 * size):
            return bytes([major << 5 | info]) + length.to_bytes(size, "big")
    raise ValueError("integer too large for CBOR")


def dumps(value: Any) -> bytes:
    """Encode a JSON-like value (datetimes as tag 1 epoch seconds)."""
    if value is None:
        return b"\xf6"
    if value is True:
        return b"\xf5"
    if value is False:
        return b"\xf4"
    if isinstance(value, int):
        return _head(0, value) if value >= 0 else _head(1, -1 - value)
    if isinstance(value, float):
        return b"\xfb" + struct.pack(">d", value)
    if isinstance(value, dt.datetime):
        return b"\xc1" + dumps(value.timestamp())
    if isinstance(value, str):
        encoded = value.encode("utf-8")
        return _head(3, len(encoded)) + encoded
    if isinstance(value, bytes):
        return _head(2, len(value)) + value
    if isinstance(value, list | tuple):
        return _head(4, len(value)) + b"".join(dumps(v) for v in value)
    if isinstance(value, dict):
        return _head(5, len(value)) + b"".join(dumps(str(k)) + dumps(v) for k, v in value.items())
    raise TypeError(f"cannot encode {type(value).__name__} as CBOR")

"""The end of an object of the local S3, read in the endpoint's process without a request (ADR 0043).

The local Athena reads the footer of every Parquet file a statement lists, for its columns and the bytes each column
chunk holds (what the statement scans). Read through the endpoint, that is a HEAD and a ranged GET per file, each a
request moto answers in Python, under the engine's lock: for the processed files new in a pipeline run, most of the time
of building the curated tables. In the endpoint's own process the bytes are in moto's store already: this module reads
the last bytes of an object there, with the object's size and ETag, the way moto's own readers do (under the key's
lock). The caller checks the ETag against its listing and reads through S3 when they differ or the object is not
there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ObjectTail:
    """The last bytes of an object, with its whole size and its ETag (quoted, as S3 lists it)."""

    size: int
    etag: str
    data: bytes


def object_tail(bucket: str, key: str, length: int) -> ObjectTail | None:
    """The last `length` bytes (or all, when shorter) of the current version of `key` in `bucket` of this process's
    moto S3; None when there is no such bucket or object (or the latest version is a delete marker)."""
    from moto.s3.models import FakeKey, s3_backends

    owner = s3_backends.bucket_accounts.get(bucket)
    if owner is None:
        return None
    partition, account = owner
    found: Any = s3_backends[account][partition].buckets.get(bucket)
    if found is None:
        return None
    item = found.keys.get(key)
    if not isinstance(item, FakeKey):
        return None
    with item.lock:
        size = int(item.contentsize)
        buffer = item._value_buffer
        buffer.seek(max(0, size - length))
        data = buffer.read(length)
        etag = str(item.etag)
    return ObjectTail(size, etag, data)


__all__ = ["ObjectTail", "object_tail"]

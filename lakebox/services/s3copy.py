"""The local S3's CopyObject done the way S3 does it: on the server, without passing the bytes through Python.

moto copies an object by reading the source's whole value into memory, writing it into the new object's spool
file, then hashing every byte again for the new object's ETag: for a 244 MB landed file, about 1.5 s of CPU in the
endpoint's process, on the same cores as the function that asked for the copy (which on AWS costs it nothing; the
ingestion keeps each landed object's original with one, ADR 0018). Here the bytes go from one spool file to the
other in the kernel (`os.copy_file_range`, a buffered copy where that is refused), and a copy of an object whose
ETag is its content's MD5 takes that ETag instead of hashing again. Everything else moto's `copy_object` does
(conditions, metadata and tag directives, versions, encryption, checksums, notifications) runs unchanged: only the
moment moto reads the source's value and writes it into the new object is replaced, for that one call.
"""

from __future__ import annotations

import os
import shutil
import threading
from typing import Any

_COPY_CHUNK = 8 * 1024 * 1024
_copying = threading.local()
_installed = threading.Lock()


class _SourceValue:
    """What moto's copy reads as the source's value: a reference to the source, filled in by the value's setter."""

    __slots__ = ("key",)

    def __init__(self, key: Any) -> None:
        self.key = key


def install() -> None:
    """Make moto's S3 `copy_object` copy server side (idempotent; affects every moto S3 backend of the process)."""
    from moto.s3.models import FakeKey, S3Backend

    with _installed:
        if getattr(S3Backend.copy_object, "__lakebox__", False):
            return
        value: Any = FakeKey.__dict__["value"]  # the property itself, not a key's value
        copy_object = S3Backend.copy_object

        def read_value(key: Any) -> Any:
            if getattr(_copying, "source", None) is key:
                _copying.source = None  # read once, by the copy: any other read of the source is a real one
                return _SourceValue(key)
            return value.fget(key)

        def write_value(key: Any, new_value: Any) -> None:
            if isinstance(new_value, _SourceValue):
                _copy_content(new_value.key, key)
            else:
                value.fset(key, new_value)

        def server_side_copy(self: Any, src_key: Any, *args: Any, **kwargs: Any) -> Any:
            _copying.source = src_key
            try:
                return copy_object(self, src_key, *args, **kwargs)
            finally:
                _copying.source = None

        server_side_copy.__lakebox__ = True  # type: ignore[attr-defined]
        server_side_copy.__doc__ = copy_object.__doc__
        FakeKey.value = property(read_value, write_value, doc=value.__doc__)  # type: ignore[assignment,method-assign]
        S3Backend.copy_object = server_side_copy  # type: ignore[method-assign]


def _copy_content(source: Any, target: Any) -> None:
    """Give `target` (a new moto key) the bytes of `source`, and its ETag when that is the content's MD5."""
    with source.lock:
        size = int(source.contentsize)
        src, dst = source._value_buffer, target._value_buffer
        dst.seek(0)
        dst.truncate()
        src.seek(0)
        if getattr(src, "_rolled", False) and size > target._max_buffer_size:
            src.flush()
            dst.rollover()
            _copy_file(src, dst, size)
        else:
            shutil.copyfileobj(src, dst, _COPY_CHUNK)
        etag = source._etag
    target.contentsize = size
    if etag and "-" not in etag:  # a multipart upload's ETag is not its content's MD5: the copy's is (moto hashes)
        target._etag = etag


def _copy_file(src: Any, dst: Any, size: int) -> None:
    """Copy `size` bytes between two rolled-over spool files in the kernel; buffered when the kernel refuses."""
    source_fd, target_fd = src.fileno(), dst.fileno()
    copied = 0
    try:
        while copied < size:
            done = os.copy_file_range(source_fd, target_fd, size - copied, copied, copied)
            if done == 0:
                break
            copied += done
    except OSError:
        copied = 0
    if copied != size:
        src.seek(0)
        dst.seek(0)
        dst.truncate()
        shutil.copyfileobj(src, dst, _COPY_CHUNK)
    dst.seek(0, os.SEEK_END)

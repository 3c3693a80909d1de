"""What changed on the endpoint: the state-changing requests it answered, in order, for caches to check against."""

from __future__ import annotations

import io
import ipaddress
import json
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

_KEEP: Final = 4096
"""Changes remembered; a reader that looks further back is told everything may have changed."""


@dataclass(frozen=True)
class Change:
    """One request that may have changed state once it was answered.

    `service` is the signing name (``s3``, ``glue``, ``athena``…), None when the request names none (anything may
    have changed). For S3, `bucket` and `key` narrow it down: no bucket means any bucket, no key any key of the bucket.
    For Glue, `database` and `table` do likewise: no database means anything in the catalog, no table any table of
    the database (and the database itself).
    """

    service: str | None
    bucket: str | None = None
    key: str | None = None
    database: str | None = None
    table: str | None = None

    def touches(self, bucket: str, prefix: str) -> bool:
        """Whether this change may alter what a listing of `prefix` in `bucket` returns."""
        if self.service not in {None, "s3"}:
            return False
        if self.bucket is None or self.key is None:
            return self.bucket in {None, bucket}
        return self.bucket == bucket and self.key.startswith(prefix)

    def touches_table(self, database: str, table: str) -> bool:
        """Whether this change may alter the Glue table `database`.`table` (its entry or its partitions)."""
        if self.service not in {None, "glue"}:
            return False
        if self.database is None:
            return True
        return self.database == database and self.table in {None, table}

    def touches_database(self, database: str) -> bool:
        """Whether this change may create, alter or delete the Glue database `database` itself."""
        if self.service not in {None, "glue"}:
            return False
        return self.database in {None, database} and self.table is None


EVERYTHING: Final = Change(None)


class ChangeLog:
    """The changes the endpoint answered, numbered from 1; `version` is the number of the last one.

    A change is recorded once its request has been answered, so a reader that notes `version` before reading state
    sees, at its next look, every change that reader may have missed.
    """

    def __init__(self, keep: int = _KEEP) -> None:
        self._lock = threading.Lock()
        self._version = 0
        self._recent: deque[tuple[int, Change]] = deque(maxlen=keep)

    @property
    def version(self) -> int:
        """The number of the last change recorded."""
        with self._lock:
            return self._version

    def record(self, change: Change) -> None:
        """Note one answered request that may have changed state."""
        with self._lock:
            self._version += 1
            self._recent.append((self._version, change))

    def since(self, version: int) -> tuple[int, Sequence[Change]]:
        """The current version and the changes after `version` (``[EVERYTHING]`` when they are no longer all kept)."""
        with self._lock:
            if version >= self._version:
                return self._version, ()
            oldest = self._recent[0][0] if self._recent else self._version + 1
            if version + 1 < oldest:
                return self._version, (EVERYTHING,)
            missed: list[Change] = []
            for number, change in reversed(self._recent):
                if number <= version:
                    break
                missed.append(change)
            missed.reverse()
            return self._version, missed


def change_of(environ: dict[str, Any], signing_name: str | None) -> Change:
    """What a state-changing request may have changed, from its WSGI environ and SigV4 signing name."""
    path = str(environ.get("PATH_INFO", ""))
    if path.startswith("/moto-api"):
        return EVERYTHING
    if signing_name == "glue":
        return _glue_change(environ)
    if signing_name != "s3":
        return Change(signing_name)
    host = str(environ.get("HTTP_HOST", "")).rsplit(":", 1)[0].strip("[]")
    if not _names_no_bucket(host):
        return Change("s3")  # a virtual-hosted bucket: any bucket may be the one
    bucket, _, key = path.lstrip("/").partition("/")
    if not bucket:
        return Change("s3")
    if not key or not key.isascii() or "%" in key or "+" in key:
        return Change("s3", bucket)  # any key of the bucket: a bulk delete, or a key spelt in more than one way
    return Change("s3", bucket, key)


_GLUE_TABLE_ACTIONS: Final = {
    "CreateTable": ("TableInput", "Name"),
    "UpdateTable": ("TableInput", "Name"),
    "DeleteTable": ("Name",),
    "CreatePartition": ("TableName",),
    "UpdatePartition": ("TableName",),
    "DeletePartition": ("TableName",),
    "BatchCreatePartition": ("TableName",),
    "BatchDeletePartition": ("TableName",),
    "BatchUpdatePartition": ("TableName",),
}
"""Glue actions that change one table (its entry or its partitions), with where the body names the table."""
_GLUE_DATABASE_ACTIONS: Final = {
    "CreateDatabase": ("DatabaseInput", "Name"),
    "UpdateDatabase": ("Name",),
    "DeleteDatabase": ("Name",),
    "BatchDeleteTable": ("DatabaseName",),
}
"""Glue actions that change one database (itself, or any of its tables), with where the body names it."""
_GLUE_BODY_LIMIT: Final = 1 << 20


def _glue_change(environ: dict[str, Any]) -> Change:
    """A Glue request narrowed to the table or database its body names; anything in the catalog when it names none.

    The body is read here and put back in `environ` for the service to read."""
    action = str(environ.get("HTTP_X_AMZ_TARGET", "")).rsplit(".", 1)[-1]
    if action not in _GLUE_TABLE_ACTIONS and action not in _GLUE_DATABASE_ACTIONS:
        return Change("glue")
    try:
        length = int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        return Change("glue")
    stream = environ.get("wsgi.input")
    if length < 0 or length > _GLUE_BODY_LIMIT or stream is None:
        return Change("glue")
    body = stream.read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return Change("glue")
    if not isinstance(request, dict) or request.get("CatalogId"):
        return Change("glue")
    if action in _GLUE_DATABASE_ACTIONS:
        database = _field(request, _GLUE_DATABASE_ACTIONS[action])
        return Change("glue", database=database.lower()) if database else Change("glue")
    database = _field(request, ("DatabaseName",))
    table = _field(request, _GLUE_TABLE_ACTIONS[action])
    if not database:
        return Change("glue")
    return Change("glue", database=database.lower(), table=table.lower() if table else None)


def _field(request: dict[str, Any], path: tuple[str, ...]) -> str | None:
    value: Any = request
    for name in path:
        value = value.get(name) if isinstance(value, dict) else None
    return value if isinstance(value, str) and value else None


def _names_no_bucket(host: str) -> bool:
    """Whether a request to `host` is path-style (its path starts with the bucket)."""
    if host in {"localhost", ""}:
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True

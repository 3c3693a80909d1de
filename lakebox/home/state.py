"""The local lake kept on disk: a snapshot of the local endpoint's services and lakebox's own emulator state.

The snapshot is one file, `.lakebox/state/snapshot.pickle`, replaced atomically (written beside, flushed to disk,
renamed over the old one), so a process killed at any moment leaves either the previous snapshot or the new one.
See docs/adr/0010-local-state-snapshots.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lakebox.errors import LakeboxError

FORMAT = 1
SERVICES = (
    "s3",
    "dynamodb",
    "glue",
    "sqs",
    "sns",
    "kinesis",
    "kms",
    "athena",
    "events",
    "scheduler",
    "stepfunctions",
    "emr-serverless",
    "secretsmanager",
    "logs",
    "cloudwatch",
    "iam",
    "firehose",
    "lakeformation",
    "sts",
)
"""The services of moto whose state is kept: those the template's resources and lakebox's commands use."""
SNAPSHOT = "snapshot.pickle"

_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))


def _versioned_store(kind: type, lists: list[tuple[str, list[Any]]]) -> Any:
    store = kind()
    for key, versions in lists:
        dict.__setitem__(store, key, versions)
    return store


def _private_key(pem: bytes) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return load_pem_private_key(pem, password=None)


class _Pickler(pickle.Pickler):
    """Pickles moto's models: locks come back as new locks, private keys as their PEM."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _LOCK_TYPES):
            return (threading.RLock if "RLock" in type(obj).__name__ else threading.Lock, ())
        if type(obj).__name__ == "_VersionedKeyStore":
            # A dict subclass whose items() gives only the latest version of each key: keep every version.
            return (_versioned_store, (type(obj), [(key, list(versions)) for key, versions in obj.lists()]))
        if isinstance(obj, _private_key_types()):
            from cryptography.hazmat.primitives import serialization

            key: Any = obj
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            return (_private_key, (pem,))
        return NotImplemented


def _private_key_types() -> tuple[type, ...]:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    return (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)


@dataclass(frozen=True)
class SnapshotInfo:
    """What a snapshot's header says: when it was saved, by which moto, its size."""

    path: Path
    saved_at: str
    moto_version: str
    bytes: int
    objects: int


def _moto_version() -> str:
    import moto

    return str(moto.__version__)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Any) -> int:
    """Write a file so that readers and a crash see the old content or the new, never a mix.

    `write(handle)` writes the content to a temporary file beside `path`, which is flushed to disk and renamed
    over `path`. Returns the bytes written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with temporary.open("wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
            size = handle.tell()
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return size


class StateStore:
    """The `.lakebox/state/` folder of a project: save, load and wipe the snapshot.

    Parameters
    ----------
    folder
        The state folder (`<root>/.lakebox/state`).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / SNAPSHOT

    def info(self) -> SnapshotInfo | None:
        """The saved snapshot's header, without reading its content; `None` when nothing is saved."""
        if not self.path.exists():
            return None
        try:
            with self.path.open("rb") as handle:
                header = pickle.load(handle)
        except (OSError, pickle.UnpicklingError, EOFError) as exc:
            raise LakeboxError(f"{self.path} is not a lakebox snapshot ({exc}): `lakebox reset` starts afresh") from exc
        return SnapshotInfo(
            self.path,
            str(header.get("saved_at")),
            str(header.get("moto")),
            self.path.stat().st_size,
            int(header.get("objects", 0)),
        )

    def save(self, extra: dict[str, Any]) -> tuple[int, float]:
        """Snapshot the services of this process's endpoint and `extra` (lakebox's own state).

        Call it with the endpoint's gate closed, so no request changes the models while they are pickled.
        Returns the bytes written and the seconds taken.
        """
        from moto.backends import get_backend

        began = time.perf_counter()
        backends = {name: dict(get_backend(name)) for name in SERVICES}  # type: ignore[call-overload]
        s3 = backends.get("s3", {})
        buckets = [
            bucket for account in s3.values() for backend in account.values() for bucket in backend.buckets.values()
        ]
        objects = sum(len(bucket.keys) for bucket in buckets)
        header = {
            "format": FORMAT,
            "moto": _moto_version(),
            "saved_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "objects": objects,
        }

        def write(handle: IO[bytes]) -> None:
            pickle.dump(header, handle, protocol=pickle.HIGHEST_PROTOCOL)
            _Pickler(handle, protocol=pickle.HIGHEST_PROTOCOL).dump({"backends": backends, "lakebox": extra})

        size = atomic_write(self.path, write)
        return size, time.perf_counter() - began

    def load(self) -> dict[str, Any] | None:
        """Put the saved services back into this process's endpoint; return lakebox's own saved state.

        `None` when nothing is saved. A snapshot from another moto version, or one that cannot be read, is a
        `LakeboxError` naming `lakebox reset`; the file is left as it is.
        """
        from moto.backends import get_backend

        if not self.path.exists():
            return None
        try:
            with self.path.open("rb") as handle:
                header = pickle.load(handle)
                if header.get("format") != FORMAT or header.get("moto") != _moto_version():
                    raise LakeboxError(
                        f"{self.path} was saved by lakebox format {header.get('format')} on moto {header.get('moto')}"
                        f" (this is format {FORMAT} on moto {_moto_version()}): `lakebox reset` starts afresh"
                    )
                content = pickle.load(handle)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            raise LakeboxError(f"cannot read {self.path} ({exc}): `lakebox reset` starts afresh") from exc
        for name, accounts in content["backends"].items():
            backend = get_backend(name)
            backend.clear()
            backend.update(accounts)
        return dict(content.get("lakebox") or {})

    def wipe(self) -> None:
        """Delete the snapshot."""
        self.path.unlink(missing_ok=True)


class LockSuperseded(Exception):
    """The wait for a lock was given up because what the caller waited for happened another way."""


@contextlib.contextmanager
def exclusive(
    path: Path, *, wait_message: str | None = None, stop_waiting: Callable[[], bool] | None = None
) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) for the block; the lock dies with the process.

    When another process holds it, `wait_message` (if given) is printed once and the call waits, until the lock is
    free or `stop_waiting()` says to give up (`LockSuperseded`); without a message the call fails at once with a
    `LakeboxError`.
    """
    import sys

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            if wait_message is None:
                raise LakeboxError(f"{path.parent} is in use by {holder}") from None
            print(f"lakebox: {wait_message} ({holder})", file=sys.stderr)
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if stop_waiting is not None and stop_waiting():
                        raise LockSuperseded(holder) from None
                    time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(f"lakebox pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)

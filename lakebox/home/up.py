"""`lakebox up`'s record (`.lakebox/endpoint.json`) and the one probe of whether an `up` serves this lake."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from lakebox.errors import LakeboxError
from lakebox.home import LakeHome
from lakebox.home.state import atomic_write

LOCAL_KEY = "lakebox"
"""The box's local credentials (access key, secret and session token alike); the endpoint accepts any, and a command
talking to `up` signs with these without importing the box."""


@dataclass
class UpRecord:
    """What `.lakebox/endpoint.json` says of a running `lakebox up`."""

    endpoint: str
    pid: int
    parameters: dict[str, str] = field(default_factory=dict)
    started_at: str = ""
    datasets: list[str] | None = None
    """The datasets registered when it started: the ones its ingestion knows (None: not recorded)."""
    workgroup: str | None = None
    """The Athena workgroup `lakebox query` runs in by default (the template's AnalyticsWorkGroup)."""
    region: str | None = None
    """The region its endpoint's services answer for."""
    state_machines: dict[str, str] = field(default_factory=dict)
    """The template's state machines on its endpoint: logical id → ARN (`lakebox execute` needs no stack then)."""
    engines: list[str] = field(default_factory=list)
    """The Spark engines the pipeline's Choose Engine state routes (what `--input "engine"` may name)."""

    @classmethod
    def read(cls, home: LakeHome) -> UpRecord | None:
        """The record, if the file exists and can be read (a file that cannot be read is stale)."""
        path = home.endpoint
        try:
            data = json.loads(path.read_text())
            parameters = dict(data.get("parameters") or {})
            datasets = data.get("datasets")
            machines = data.get("state_machines") or {}
            return cls(
                str(data["endpoint"]),
                int(data.get("pid", 0)),
                parameters,
                str(data.get("started_at", "")),
                [str(d) for d in datasets] if isinstance(datasets, list) else None,
                str(data["workgroup"]) if data.get("workgroup") else None,
                str(data["region"]) if data.get("region") else None,
                {str(k): str(v) for k, v in machines.items()} if isinstance(machines, dict) else {},
                [str(e) for e in data.get("engines") or []],
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return cls("", 0)

    def write(self, home: LakeHome) -> Path:
        """Record this `lakebox up` so later commands use its endpoint."""
        path = home.endpoint
        atomic_write(path, lambda handle: handle.write(json.dumps(asdict(self), indent=2).encode()))
        return path

    @property
    def process_alive(self) -> bool:
        """Whether the recorded process still exists."""
        if self.pid <= 0:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def answers(endpoint: str) -> bool:
    """Whether something accepts connections at `endpoint` (cheap: `/moto-api/data.json` would dump every model)."""

    parts = urlsplit(endpoint)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=2):
            return True
    except OSError:
        return False


def running_up(home: LakeHome) -> UpRecord | None:
    """The `lakebox up` that serves this project now, if one does.

    A record whose process is gone is stale: it is removed, with a line on stderr saying so. A record whose process
    lives but does not answer is an error (it is starting, or hung).
    """
    record = UpRecord.read(home)
    if record is None:
        return None
    if record.endpoint and record.process_alive:
        if answers(record.endpoint):
            return record
        raise LakeboxError(
            f"lakebox up (pid {record.pid}) does not answer at {record.endpoint}: wait for it to finish starting, "
            f"or stop it (kill {record.pid})"
        )
    home.endpoint.unlink(missing_ok=True)
    where = f" at {record.endpoint}, pid {record.pid}," if record.endpoint else ""
    print(f"lakebox: removed a stale {home.endpoint} (lakebox up{where} is gone)", file=sys.stderr)
    return None


def wait_for_up(home: LakeHome, timeout: float = 300.0) -> UpRecord:
    """The `lakebox up` whose record just appeared, once it answers."""
    deadline = time.monotonic() + timeout
    while True:
        record = UpRecord.read(home)
        if record is not None and record.process_alive and answers(record.endpoint):
            return record
        if record is None or not record.process_alive or time.monotonic() > deadline:
            raise LakeboxError("lakebox up started and stopped while this command waited: run it again")
        time.sleep(0.2)

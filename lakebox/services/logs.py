"""The functions' logs, locally: Powertools' JSON lines in `.lakebox/logs/<function>.log`, read and followed."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lakebox.cfn.stack import Stack
from lakebox.errors import LakeboxError

LEVELS = {"DEBUG": 10, "INFO": 20, "METRIC": 20, "WARNING": 30, "WARN": 30, "ERROR": 40, "CRITICAL": 50}
"""Powertools' levels, and METRIC for its embedded-metric-format lines (what CloudWatch turns into metrics)."""


def function_log_name(stack: Stack, name: str) -> tuple[str, str]:
    """`(logical id, physical name)` of a function named either way, without resolving anything on an endpoint."""
    for lid, resource in stack.resources.items():
        if resource["Type"] not in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            continue
        physical = stack._prop(lid, "FunctionName") or f"{stack.stack_name}-{lid}"[:64]
        if name in (lid, physical):
            return lid, str(physical)
    known = ", ".join(sorted(lid for lid, r in stack.resources.items() if r["Type"] == "AWS::Serverless::Function"))
    raise LakeboxError(f"no function {name!r} in template.yaml (functions: {known})")


def parse_line(line: str) -> dict[str, Any]:
    """A log line as a record: Powertools' JSON, or plain text as an INFO message."""
    text = line.rstrip("\n")
    try:
        record = json.loads(text)
    except ValueError:
        return {"level": "INFO", "message": text}
    if not isinstance(record, dict):
        return {"level": "INFO", "message": text}
    if "_aws" in record and "level" not in record:
        metadata = record.get("_aws") or {}
        names = [m.get("Name") for block in metadata.get("CloudWatchMetrics", []) for m in block.get("Metrics", [])]
        stamp = metadata.get("Timestamp")
        when = dt.datetime.fromtimestamp(stamp / 1000, dt.UTC).isoformat(timespec="milliseconds") if stamp else ""
        values = {name: record.get(name) for name in names}
        return {"level": "METRIC", "timestamp": when, "message": "metrics", "metrics": values, **record}
    return record


def follow_lines(path: Path, *, follow: bool = False, tail: int | None = None, poll: float = 0.5) -> Iterator[str]:
    """The file's lines (the last `tail` of them), then, with `follow`, each new line as it is written."""
    while follow and not path.exists():
        time.sleep(poll)
    with path.open(encoding="utf-8", errors="replace") as handle:
        lines: Any = deque(handle, maxlen=tail) if tail else handle
        yield from (line for line in lines if line.strip())
        if not follow:
            return
        pending = ""
        while True:
            chunk = handle.readline()
            if not chunk:
                time.sleep(poll)
                continue
            pending += chunk
            if pending.endswith("\n"):
                if pending.strip():
                    yield pending
                pending = ""

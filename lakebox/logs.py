"""The functions' logs, locally: Powertools' JSON lines in `.lakebox/logs/<function>.log`, read and followed."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lakebox.errors import LakeboxError
from lakebox.stack import Stack

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "WARN": 30, "ERROR": 40, "CRITICAL": 50}


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
    return record if isinstance(record, dict) else {"level": "INFO", "message": text}


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

"""The deliveries journal (`.lakebox/deliveries.jsonl`): what the box that watches the buckets delivered."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lakebox.errors import LakeboxError
from lakebox.services.eventbus import Delivery


def object_id_of(bucket: str, key: str, version: str | None, etag: str | None) -> str:
    """How the box names one object version: bucket, key, version id and ETag."""
    return f"{bucket}/{key}#{version or 'null'}:{(etag or '').strip(chr(34))}"


class Journal:
    """`.lakebox/deliveries.jsonl`: what the box that watches the buckets delivered for each new object version.

    Another process that uploaded an object (a `lakebox put` while `lakebox up` runs) reads the outcome here.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, object_id: str, key: str, deliveries: list[Delivery]) -> None:
        """Record the deliveries of one object version."""
        line = json.dumps(
            {
                "object": object_id,
                "key": key,
                "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "deliveries": [asdict(d) for d in deliveries],
            },
            default=str,
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def offset(self) -> int:
        """Where the journal ends now."""
        return self.path.stat().st_size if self.path.exists() else 0

    def wait(self, wanted: set[str], since: int, *, alive: Callable[[], bool], timeout: float) -> dict[str, Any]:
        """Wait until every object of `wanted` is recorded after offset `since`; return the entries by object."""
        found: dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        while True:
            if self.path.exists():
                with self.path.open("rb") as handle:
                    handle.seek(since)
                    for raw in handle:
                        if not raw.endswith(b"\n"):
                            break
                        entry = json.loads(raw)
                        if entry["object"] in wanted:
                            found[entry["object"]] = entry
            if wanted <= set(found):
                return found
            if time.monotonic() > deadline:
                raise LakeboxError(f"lakebox up did not deliver {len(wanted - set(found))} object(s) in {timeout:.0f}s")
            if not alive():
                raise LakeboxError("lakebox up stopped before it delivered the upload")
            time.sleep(0.1)

"""`lakebox replay`: corrected records (a file) or quarantined objects re-ingested through landing, and recorded.

The upload is `datalake.replay.upload_replay`, the one scripts/replay.py uses against a deployed stack; the box
then delivers the object's event (or waits for `lakebox up` to) and the replay is marked in the manifest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datalake.contracts import get_dataset
from datalake.replay import record_replay, replay_body, replay_key, upload_replay
from lakebox.box import summary_row
from lakebox.errors import LakeboxError
from lakebox.home.journal import object_id_of

if TYPE_CHECKING:
    from lakebox.box import Lakebox


@dataclass(frozen=True)
class ReplaySource:
    """What one replay puts in landing: its origin, dataset, body and file name."""

    replay_of: str
    dataset: str
    body: bytes
    name: str


def replay_sources(
    box: Lakebox,
    *,
    file: Path | None = None,
    dataset: str | None = None,
    of: str | None = None,
    objects: Sequence[str] = (),
) -> list[ReplaySource]:
    """A file of corrected records (with its dataset) or quarantined objects as they are (read from the raw zone)."""
    if bool(file) == bool(objects):
        raise LakeboxError("replay takes a FILE of corrected records (with --dataset) or --object QUARANTINE_KEY")
    if file and not dataset:
        raise LakeboxError("replay FILE needs --dataset (the dataset the corrected records belong to)")
    sources: list[ReplaySource] = []
    if file is not None and dataset is not None:
        if not file.is_file():
            raise LakeboxError(f"{file}: no such file")
        get_dataset(dataset)
        sources.append(ReplaySource(of or f"file:{file.name}", dataset, file.read_bytes(), file.name))
    s3 = box.session.client("s3")
    raw = box.bucket("RawBucket")
    for key in objects:
        found, body, name = replay_body(s3, raw, key)
        sources.append(ReplaySource(key, found, body, name))
    return sources


def replay(
    box: Lakebox, sources: Sequence[ReplaySource], progress: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """Put each source in landing, deliver its event, and mark its manifest as a replay; one row a delivery."""
    s3 = box.session.client("s3")
    landing = box.bucket("LandingBucket")
    table = box.session.resource("dynamodb").Table(str(box.stack.ref("ManifestsTable")))
    rows: list[dict[str, Any]] = []
    for source in sources:
        key = replay_key(source.dataset, source.name)
        if progress:
            progress(f"replaying {source.replay_of} as {key}")
        since = box.journal.offset()
        version = upload_replay(s3, landing, key, source.body, source.replay_of).rsplit("#", 1)[1]
        if version == "null":
            head = s3.head_object(Bucket=landing, Key=key)
        else:
            head = s3.head_object(Bucket=landing, Key=key, VersionId=version)
        object_id = object_id_of(landing, key, head.get("VersionId"), head.get("ETag"))
        for delivery in box.await_deliveries([object_id], since)[object_id]:
            row = summary_row(key, delivery) | {"replay of": source.replay_of}
            manifest_id = (delivery.result or {}).get("object_id") if isinstance(delivery.result, dict) else None
            if manifest_id:
                record_replay(table, manifest_id, source.replay_of)
            rows.append(row)
    return rows

"""`lakebox quarantine`: what the quarantine of the local lake holds, and its records exported for correction."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datalake.contracts import get_dataset
from datalake.replay import QuarantineReport, quarantine_objects, records_of, scan_quarantine

if TYPE_CHECKING:
    from lakebox.box import Lakebox


def scan(
    box: Lakebox, *, dataset: str | None = None, since: dt.datetime | None = None, samples: int = 5
) -> QuarantineReport:
    """Counts by dataset and reason, and the first `samples` records of each reason."""
    if dataset:
        get_dataset(dataset)
    return scan_quarantine(
        box.session.client("s3"), box.bucket("RawBucket"), dataset=dataset, since=since, samples=samples
    )


@dataclass(frozen=True)
class QuarantineObject:
    """One quarantine object: its key (what `lakebox replay --object` takes), records, and whether a replay landed."""

    key: str
    dataset: str
    records: int
    replay_manifest: str | None = None
    """The manifest of the newest replay of this object that landed records (None: still outstanding)."""
    replayed_at: str | None = None

    @property
    def state(self) -> str:
        """`replayed` once a replay of it landed records, else `outstanding`."""
        return "replayed" if self.replay_manifest else "outstanding"

    def row(self) -> dict[str, Any]:
        """The object as a row: key, dataset, records, state, replay manifest, replayed at."""
        return {
            "key": self.key,
            "dataset": self.dataset,
            "records": self.records,
            "state": self.state,
            "replay_manifest": self.replay_manifest,
            "replayed_at": self.replayed_at,
        }


def landed_replays(box: Lakebox) -> dict[str, dict[str, Any]]:
    """The newest manifest, by what it replays (`replay_of`), of every replay whose records landed."""
    table = box.session.resource("dynamodb").Table(str(box.stack.ref("ManifestsTable")))
    found: dict[str, dict[str, Any]] = {}
    kwargs: dict[str, Any] = {"FilterExpression": "attribute_exists(replay_of)"}
    while True:
        page = table.scan(**kwargs)
        for item in page.get("Items", []):
            if int(str(item.get("records_landed") or 0)) <= 0:
                continue
            source = str(item["replay_of"])
            if source not in found or str(item.get("replayed_at", "")) > str(found[source].get("replayed_at", "")):
                found[source] = dict(item)
        if "LastEvaluatedKey" not in page:
            return found
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def objects(box: Lakebox, report: QuarantineReport) -> list[QuarantineObject]:
    """The report's quarantine objects with their records, each marked replayed (and by which manifest) or not."""
    replays = landed_replays(box)
    found = []
    for key in report.objects:
        held = report.by_object.get(key, Counter())
        dataset = next(iter(held))[0] if held else key.split("/")[2 if key.split("/")[1] == "_objects" else 1]
        replay = replays.get(key)
        found.append(
            QuarantineObject(
                key,
                dataset,
                sum(held.values()),
                str(replay["object_id"]) if replay else None,
                str(replay.get("replayed_at")) if replay else None,
            )
        )
    return found


def count_rows(report: QuarantineReport, states: list[QuarantineObject]) -> list[dict[str, Any]]:
    """`{"dataset", "reason", "records", "outstanding"}` rows: outstanding leaves out what a landed replay took."""
    outstanding: Counter[tuple[str, str]] = Counter()
    for obj in states:
        if obj.state == "outstanding":
            outstanding.update(report.by_object.get(obj.key, Counter()))
    return [row | {"outstanding": outstanding[(row["dataset"], row["reason"])]} for row in report.rows()]


def export(box: Lakebox, path: Path, *, dataset: str | None = None, since: dt.datetime | None = None) -> int:
    """Write every quarantined record as it arrived, one a line, to `path`; how many were written."""
    s3 = box.session.client("s3")
    raw = box.bucket("RawBucket")
    exported = 0
    with path.open("w", encoding="utf-8") as handle:
        for obj in quarantine_objects(s3, raw, dataset=dataset, since=since):
            for record in records_of(s3, raw, obj):
                if record.raw is not None:
                    handle.write(record.raw.rstrip("\n") + "\n")
                    exported += 1
    return exported


def sample_rows(report: QuarantineReport) -> list[dict[str, Any]]:
    """The report's sample records as rows: dataset, reason, source, line, detail, record, quarantine key."""
    return [
        {
            "dataset": s.dataset,
            "reason": s.reason,
            "source": s.source_key,
            "line": s.line,
            "detail": s.detail,
            "record": s.raw,
            "quarantine_key": s.quarantine_key,
        }
        for s in report.samples
    ]

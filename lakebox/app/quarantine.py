"""`lakebox quarantine`: what the quarantine of the local lake holds, and its records exported for correction."""

from __future__ import annotations

import datetime as dt
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

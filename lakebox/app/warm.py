"""Spark warmed before the first run (ADR 0038): each Glue job's script run once on generated raw records.

`lakebox up` starts this in the background as soon as the stack is up, so its first pipeline run does not pay for a
cold JVM; `bench/pipeline.py` runs it before the run it measures, as `up` would have.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from lakebox.app.sample import SampleSpec, stream_events

if TYPE_CHECKING:
    from lakebox.box import Lakebox
    from lakebox.services.glue import Outcome

logger = logging.getLogger(__name__)

WARM_ROWS = 4_000
"""Records generated per dataset: enough for the JIT to compile the job's hot paths in some 10 s of background work."""
DAYS = 14
"""Event dates the records spread over: the partitioned writes warm on more than one date."""


def write_warm_raw(folder: Path, rows: int = WARM_ROWS, *, now: dt.datetime | None = None) -> dict[str, int]:
    """Write `rows` generated records of every registered dataset under `folder`, laid out as the raw zone.

    Each dataset's records come from its sample generator, or from its contract alone (`stream_events`), spread over
    `DAYS` days, a few of them defective; each line carries the lineage columns ingestion appends. Returns the
    records written per dataset.
    """
    from datalake.contracts import REGISTRY
    from datalake.landing import lineage_prefix, lineage_suffix, raw_key, with_lineage

    now = now or dt.datetime.now(dt.UTC)
    written: dict[str, int] = {}
    for name, dataset in sorted(REGISTRY.items()):
        source_key = f"{name}/warm-up.jsonl"
        prefix, suffix = lineage_prefix(source_key, "warm-up"), lineage_suffix(now)
        by_day: dict[dt.date, list[bytes]] = defaultdict(list)
        line = 0
        for back in range(DAYS):
            spec = SampleSpec(end=now - dt.timedelta(days=back), days=1, seed=7 + back)
            for event, _ in stream_events(dataset)(spec, rows // DAYS, back * rows):
                line += 1
                by_day[_event_day(event.get(dataset.event_time), spec.end)].append(
                    with_lineage(json.dumps(event).encode(), prefix, line, suffix)
                )
        for day, lines in by_day.items():
            path = folder / raw_key(name, day, "warm-up.json.gz")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(gzip.compress(b"".join(lines), compresslevel=1))
        written[name] = line
    return written


def _event_day(moment: object, default: dt.datetime) -> dt.date:
    """The date an event time names (its raw partition), or `default`'s for one missing or not a date."""
    try:
        return dt.date.fromisoformat(str(moment)[:10])
    except ValueError:
        return default.date()


def glue_jobs(box: Lakebox) -> list[str]:
    """The stack's Glue jobs, by name."""
    stack = box.stack
    return [
        str(stack.ref(lid))
        for lid in sorted(stack.resources)
        if stack.resources[lid]["Type"] == "AWS::Glue::Job" and stack.active(lid)
    ]


def warm_spark(box: Lakebox, rows: int = WARM_ROWS) -> list[Outcome]:
    """Run each of the stack's Glue jobs once on `rows` generated records per dataset, nothing written to the lake."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lakebox-warm-raw-") as folder:
        write_warm_raw(Path(folder), rows)
        outcomes = [box.jobs.warm_up(job, Path(folder)) for job in glue_jobs(box)]
    logger.info(
        "Spark warmed in %.1fs: %s",
        time.monotonic() - started,
        ", ".join("ok" if o.succeeded else str(o.error) for o in outcomes),
    )
    return outcomes


def start_warm_spark(box: Lakebox, rows: int = WARM_ROWS) -> threading.Thread:
    """`warm_spark` in a background thread (a daemon: stopping `up` does not wait for it)."""
    thread = threading.Thread(target=warm_spark, args=(box, rows), name="lakebox-spark-warm-up", daemon=True)
    thread.start()
    return thread

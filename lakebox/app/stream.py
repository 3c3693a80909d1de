"""Generated events produced into a stream and delivered the way the deployment chooses (mapping or Firehose)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from lakebox.cfn.stack import Stack
from lakebox.errors import LakeboxError
from lakebox.services.firehose import FirehoseDelivery, FirehoseStats, evaluate_prefix
from lakebox.services.kinesis import (
    EventSourceMapping,
    MappingConfig,
    MappingStats,
    ShardConsumer,
    kinesis_mappings,
    put_records,
)

if TYPE_CHECKING:
    from datalake.contracts import Dataset
    from lakebox.box import Lakebox

logger = logging.getLogger(__name__)


@dataclass
class StreamRun:
    """What one `lakebox stream` run produced and what the functions and outputs made of it."""

    dataset: str
    delivery: str
    produced: int = 0
    produced_bad: int = 0
    seconds: float = 0.0
    stats: MappingStats = field(default_factory=MappingStats)
    manifests: list[dict[str, Any]] = field(default_factory=list)
    firehose: FirehoseStats | None = None

    def summary(self) -> dict[str, Any]:
        """One flat row for a report: what was produced, delivered, landed, quarantined, retried, given up."""
        row: dict[str, Any] = {
            "dataset": self.dataset,
            "delivery": self.delivery,
            "produced": self.produced,
            "produced bad": self.produced_bad,
            "seconds": round(self.seconds, 1),
        }
        if self.firehose is not None:
            totals = self.totals()
            row |= {
                "invocations": self.firehose.invocations,
                "received": totals["records_received"],
                "landed": self.firehose.ok,
                "quarantined": self.firehose.processing_failed,
                "duplicates": self.firehose.dropped,
                "objects": len(self.firehose.objects),
                "manifests": len(self.manifests),
            }
            return row
        totals = self.totals()
        return row | {
            "invocations": self.stats.invocations,
            "landed": totals["records_landed"],
            "quarantined": totals["records_quarantined"],
            "duplicates": totals["duplicates_dropped"],
            "partial failures": self.stats.partial_failures,
            "function errors": self.stats.function_errors,
            "retried": totals["records_failed"],
            "to failure queue": self.stats.records_to_destination,
        }

    def totals(self) -> dict[str, int]:
        """Sums over the batch manifests the run's invocations recorded."""
        keys = (
            "records_received",
            "records_read",
            "records_landed",
            "records_quarantined",
            "duplicates_dropped",
            "records_replayed",
            "records_failed",
        )
        return {k: sum(int(m.get(k, 0)) for m in self.manifests) for k in keys}


def _manifests(box: Lakebox, prefix: str, since: str) -> list[dict[str, Any]]:
    """The manifests whose `object_id` starts with `prefix`, recorded since `since` (ISO time)."""
    if "ManifestsTable" not in box.stack.resources:
        return []
    table = box.session.resource("dynamodb").Table(str(box.stack.ref("ManifestsTable")))
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {}
    while True:
        page = table.scan(**kwargs)
        items += [
            dict(i)
            for i in page.get("Items", [])
            if str(i.get("object_id", "")).startswith(prefix) and str(i.get("ingested_at", "")) >= since
        ]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def stream_manifests(box: Lakebox, stream_name: str, since: str) -> list[dict[str, Any]]:
    """The stream batch manifests recorded since `since` (ISO time) for one stream."""
    return _manifests(box, f"kinesis://{stream_name}/", since)


def firehose_manifests(box: Lakebox, delivery_stream: str, since: str) -> list[dict[str, Any]]:
    """The transformation batch manifests recorded since `since` (ISO time) for one Firehose delivery stream."""
    return _manifests(box, f"firehose://{delivery_stream}/", since)


def event_payloads(
    dataset: Dataset, seed: int, bad_rate: float, count: int, start: int, *, now: dt.datetime | None = None
) -> list[tuple[str, bytes, bool]]:
    """`(partition_key, data, is_bad)` for `count` generated events of a stream-delivered dataset.

    The events come from the dataset's sample generator (`lakebox.app.sample.stream_events`), keyed by the dataset's
    key, and are stamped as a live stream's are: within the last few minutes before `now`, a few arriving late.
    """
    import random

    from lakebox.app.sample import SampleSpec, stream_events

    moment = now or dt.datetime.now(dt.UTC)
    rng = random.Random(seed * 13 + start)
    spec = SampleSpec(seed=seed, bad_rate=bad_rate, end=moment)
    out = []
    for event, defect in stream_events(dataset)(spec, count, start):
        lag = rng.expovariate(1 / 20) if rng.random() < 0.99 else rng.uniform(600, 7200)
        if dataset.event_time in event:
            stamped = moment - dt.timedelta(seconds=lag)
            event[dataset.event_time] = stamped.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        data = json.dumps(event, separators=(",", ":")).encode()
        key = "|".join(str(event.get(name, "")) for name in dataset.key) or str(start)
        out.append((key, data, defect is not None))
    return out


def stream_datasets() -> list[str]:
    """The registry's stream-delivered datasets, by name."""
    from datalake.contracts import Delivery, delivered_by

    return [d.name for d in delivered_by(Delivery.STREAM)]


def default_stream_dataset() -> str:
    """The dataset `lakebox stream` produces when none is named: the registry's one stream-delivered dataset.

    Raises
    ------
    LakeboxError
        When the registry has no stream-delivered dataset, or several (name one with --dataset).
    """
    names = stream_datasets()
    if len(names) != 1:
        raise LakeboxError(
            f"name the dataset to stream with --dataset (stream-delivered datasets: {', '.join(names) or 'none'})"
        )
    return names[0]


def find_mapping(stack: Stack, dataset: str) -> MappingConfig:
    """The Kinesis mapping whose function ingests `dataset`."""
    mappings = kinesis_mappings(stack)
    for mapping in mappings:
        if mapping.dataset == dataset:
            return mapping
    known = ", ".join(f"{m.name} ({m.dataset})" for m in mappings) or "none"
    raise LakeboxError(f"no Kinesis event source mapping ingests {dataset!r} (mappings: {known})")


def run_stream(
    box: Lakebox,
    *,
    dataset: str,
    rate: float,
    seconds: float,
    seed: int = 7,
    bad_rate: float = 0.02,
    window: float | None = None,
    from_start: bool = False,
    progress: Callable[[str], None] | None = None,
) -> StreamRun:
    """Produce generated events into the dataset's stream for `seconds` at `rate` a second, delivering as we go.

    The records reach the raw zone the way the deployment chooses: the event source mapping and its function, or
    (when the mapping is disabled and the template has a Firehose delivery stream) Firehose with its transformation.
    Delivery starts at the records this run produces (a new mapping on a stream that earlier runs already consumed
    would otherwise read them again); `from_start` reads the stream from its oldest record, as the template's
    `TRIM_HORIZON` does for a new deployment.
    """
    from datalake.contracts import Delivery, get_dataset

    declared = get_dataset(dataset)
    if Delivery.STREAM not in declared.deliveries:
        known = ", ".join(stream_datasets()) or "none"
        raise LakeboxError(f"{dataset} is not delivered by stream (stream-delivered datasets: {known})")
    mapping = find_mapping(box.stack, dataset)
    if window is not None:
        mapping = replace(mapping, window_seconds=window)
    if not from_start:
        mapping = replace(mapping, starting_position="LATEST")
    started_at = dt.datetime.now(dt.UTC).isoformat()
    firehose = None if mapping.enabled else FirehoseDelivery.from_template(box.lambdas, mapping.stream_arn, from_start)
    if not mapping.enabled and firehose is None:
        raise LakeboxError(f"{mapping.name} is disabled and no Firehose delivery stream reads {mapping.stream_name}")
    esm = EventSourceMapping(box.lambdas, mapping) if mapping.enabled else None
    run = StreamRun(dataset, "lambda" if esm else "firehose")
    started = time.monotonic()
    tick = min(0.25, max(window if window is not None else mapping.window_seconds, 0.05))
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(rate * min(elapsed + tick, seconds)) - run.produced
        if due > 0:
            batch = event_payloads(declared, seed, bad_rate, due, run.produced)
            put_records(box.session, mapping.stream_name, ((k, d) for k, d, _ in batch))
            run.produced += len(batch)
            run.produced_bad += sum(1 for *_, bad in batch if bad)
        if esm:
            esm.poll()
        elif firehose:
            firehose.poll()
        if progress:
            progress(f"streaming: {run.produced:,} records produced, {int(elapsed)}s of {seconds:g}s")
        time.sleep(max(0.0, tick - (time.monotonic() - started - elapsed)))
    due = int(rate * seconds) - run.produced
    if due > 0:
        batch = event_payloads(declared, seed, bad_rate, due, run.produced)
        put_records(box.session, mapping.stream_name, ((k, d) for k, d, _ in batch))
        run.produced += len(batch)
        run.produced_bad += sum(1 for *_, bad in batch if bad)
    if progress:
        progress("draining the stream")
    if esm:
        esm.drain()
        run.stats = esm.stats
        run.manifests = stream_manifests(box, mapping.stream_name, started_at)
    elif firehose:
        firehose.drain()
        run.firehose = firehose.stats
        run.manifests = firehose_manifests(box, firehose.name, started_at)
    run.seconds = time.monotonic() - started
    return run


__all__ = [
    "EventSourceMapping",
    "FirehoseDelivery",
    "FirehoseStats",
    "MappingConfig",
    "MappingStats",
    "ShardConsumer",
    "StreamRun",
    "default_stream_dataset",
    "evaluate_prefix",
    "event_payloads",
    "find_mapping",
    "firehose_manifests",
    "kinesis_mappings",
    "put_records",
    "run_stream",
    "stream_datasets",
    "stream_manifests",
]

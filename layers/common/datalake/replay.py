"""Quarantine, inspected and repaired: counts by dataset and reason, and replays of corrected records into landing;
and re-ingestion of a dataset's kept originals for a range of days (`replay_originals`).

The same functions serve the local lake (`lakebox quarantine`, `lakebox replay`) and a deployed stack
(`scripts/replay.py`, from the stack's outputs): they take clients, bucket and table names, nothing else.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from datalake.exceptions import DataLakeError
from datalake.landing import QUARANTINE_PREFIX

if TYPE_CHECKING:
    from datalake.aws import AwsClients
    from datalake.settings import Settings

REPLAY_FOLDER = "_replay"
_DAY = re.compile(r"/year=(\d{4})/month=(\d{2})/day=(\d{2})/")


class ReplayError(DataLakeError):
    """A replay that cannot be made: the source is missing, or its records cannot be re-read as they are."""


@dataclass(frozen=True)
class QuarantinedRecord:
    """One quarantined record (or whole object): where it came from, why, and its original text."""

    dataset: str
    quarantine_key: str
    source_key: str | None
    line: int | None
    reason: str
    detail: str
    raw: str | None


@dataclass
class QuarantineReport:
    """Counts by dataset and reason, and a few sample records with their reasons."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    samples: list[QuarantinedRecord] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)
    by_object: dict[str, Counter[tuple[str, str]]] = field(default_factory=dict)
    """Each quarantine object's records, by dataset and reason (what a replay of that object would account for)."""

    def rows(self) -> list[dict[str, Any]]:
        """`{"dataset", "reason", "records"}` rows, largest first."""
        return [
            {"dataset": dataset, "reason": reason, "records": count}
            for (dataset, reason), count in sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))
        ]


def _day_of(key: str) -> dt.date | None:
    match = _DAY.search(key)
    return dt.date(int(match[1]), int(match[2]), int(match[3])) if match else None


def quarantine_objects(
    s3: Any, raw_bucket: str, *, dataset: str | None = None, since: dt.datetime | None = None
) -> Iterator[dict[str, Any]]:
    """The quarantine objects (record files and whole objects, not their `.reason.json`), oldest first."""
    paginator = s3.get_paginator("list_objects_v2")
    found = []
    for page in paginator.paginate(Bucket=raw_bucket, Prefix=f"{QUARANTINE_PREFIX}/"):
        for obj in page.get("Contents", []):
            key = str(obj["Key"])
            if key.endswith(".reason.json"):
                continue
            parts = key.split("/")
            name = parts[2] if parts[1] == "_objects" else parts[1]
            if dataset is not None and name != dataset:
                continue
            if since is not None and obj["LastModified"] < since:
                continue
            found.append({**obj, "dataset": name, "whole_object": parts[1] == "_objects"})
    yield from sorted(found, key=lambda o: (o["LastModified"], o["Key"]))


def _lines(body: bytes) -> Iterator[dict[str, Any]]:
    text = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
    for line in text.splitlines():
        if line.strip():
            yield json.loads(line)


def _reason(errors: list[dict[str, Any]]) -> tuple[str, str]:
    if not errors:
        return "unknown", ""
    first = errors[0]
    loc = str(first.get("loc") or "")
    kind = str(first.get("type") or "invalid")
    return (f"{loc}: {kind}" if loc else kind), "; ".join(str(e.get("msg", "")) for e in errors)


def records_of(s3: Any, raw_bucket: str, obj: dict[str, Any]) -> Iterator[QuarantinedRecord]:
    """The quarantined records of one quarantine object (a whole object is one entry with its reason)."""
    key = str(obj["Key"])
    if obj["whole_object"]:
        try:
            reason = json.loads(s3.get_object(Bucket=raw_bucket, Key=f"{key}.reason.json")["Body"].read())
        except s3.exceptions.NoSuchKey:
            reason = {}
        source = key.split("/", 4)[4] if key.count("/") >= 4 else None
        yield QuarantinedRecord(
            obj["dataset"],
            key,
            source,
            None,
            f"object: {reason.get('reason', 'rejected')}",
            str(reason.get("detail") or ""),
            None,
        )
        return
    body = s3.get_object(Bucket=raw_bucket, Key=key)["Body"].read()
    for record in _lines(body):
        reason, detail = _reason(list(record.get("_errors") or []))
        yield QuarantinedRecord(
            obj["dataset"],
            key,
            record.get("_source_key"),
            record.get("_line"),
            reason,
            detail,
            record.get("_raw"),
        )


def scan_quarantine(
    s3: Any, raw_bucket: str, *, dataset: str | None = None, since: dt.datetime | None = None, samples: int = 5
) -> QuarantineReport:
    """Count the quarantine by dataset and reason; keep the first `samples` records of each reason."""
    report = QuarantineReport()
    kept: Counter[tuple[str, str]] = Counter()
    for obj in quarantine_objects(s3, raw_bucket, dataset=dataset, since=since):
        report.objects.append(str(obj["Key"]))
        held = report.by_object.setdefault(str(obj["Key"]), Counter())
        for record in records_of(s3, raw_bucket, obj):
            group = (record.dataset, record.reason)
            report.counts[group] += 1
            held[group] += 1
            if kept[group] < samples:
                kept[group] += 1
                report.samples.append(record)
    return report


def replay_body(s3: Any, raw_bucket: str, quarantine_key: str) -> tuple[str, bytes, str]:
    """What replaying a quarantine object as it is sends to landing: `(dataset, body, file name)`.

    A whole quarantined object goes back byte for byte; a file of quarantined records gives their original
    JSON text, one per line (CSV rows lose their header, so they need a corrected file instead).
    """
    parts = quarantine_key.split("/")
    if len(parts) < 3 or parts[0] != QUARANTINE_PREFIX:
        raise ReplayError(f"{quarantine_key!r} is not a quarantine key (they start with {QUARANTINE_PREFIX}/)")
    try:
        body = s3.get_object(Bucket=raw_bucket, Key=quarantine_key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        raise ReplayError(f"s3://{raw_bucket}/{quarantine_key} does not exist") from None
    if parts[1] == "_objects":
        if parts[2] == "_unknown":
            raise ReplayError(
                f"{quarantine_key} did not name a known dataset: replay it as a FILE with --dataset DATASET"
            )
        return parts[2], body, parts[-1]
    lines = []
    for record in _lines(body):
        raw = record.get("_raw")
        if str(record.get("_source_key", "")).lower().split("?")[0].endswith((".csv", ".csv.gz")):
            raise ReplayError(
                f"{quarantine_key} holds CSV rows, which need their header: export them with "
                "`lakebox quarantine --export FILE`, fix and add the header, then replay the file"
            )
        if raw is not None:
            lines.append(str(raw).rstrip("\n"))
    name = parts[-1].removesuffix(".gz").removesuffix(".json") + ".jsonl"
    return parts[1], ("\n".join(lines) + "\n").encode(), name


def replay_key(dataset: str, name: str, *, now: dt.datetime | None = None) -> str:
    """The landing key of a replay: `<dataset>/_replay/<UTC stamp>/<name>` (the dataset's prefix, so it is ingested)."""
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{dataset}/{REPLAY_FOLDER}/{stamp}/{name}"


def upload_replay(s3: Any, landing_bucket: str, key: str, body: bytes, replay_of: str) -> str:
    """Put a replay object in landing, its origin in its metadata; return the manifest id it will have."""
    response = s3.put_object(Bucket=landing_bucket, Key=key, Body=body, Metadata={"replay-of": replay_of[:1024]})
    version = response.get("VersionId") or "null"
    return f"s3://{landing_bucket}/{key}#{version}"


def wait_for_manifest(table: Any, object_id: str, *, timeout: float = 300.0, poll: float = 2.0) -> dict[str, Any]:
    """Wait until the ingestion of `object_id` has written its manifest (a deployed stack ingests asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        item = table.get_item(Key={"object_id": object_id}, ConsistentRead=True).get("Item")
        if item is not None:
            return dict(item)
        if time.monotonic() > deadline:
            raise ReplayError(f"no manifest for {object_id} after {timeout:.0f}s: see the ingest function's logs")
        time.sleep(poll)


def record_replay(table: Any, object_id: str, replay_of: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Mark the replay's manifest with what it replays and when; return the updated manifest."""
    stamp = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    response = table.update_item(
        Key={"object_id": object_id},
        UpdateExpression="SET replay_of = :source, replayed_at = :at",
        ConditionExpression="attribute_exists(object_id)",
        ExpressionAttributeValues={":source": replay_of, ":at": stamp},
        ReturnValues="ALL_NEW",
    )
    return dict(response["Attributes"])


# ----------------------------------------------------------------------------------- re-ingestion from originals

_ARCHIVED = frozenset({"GLACIER", "DEEP_ARCHIVE"})


@dataclass(frozen=True)
class ReplayedOriginal:
    """One original re-ingested: its key, the manifest it produced, and the stale outputs it removed."""

    original_key: str
    object_id: str
    status: str
    records_read: int
    records_landed: int
    records_quarantined: int
    removed: tuple[str, ...] = ()


@dataclass
class OriginalsReplay:
    """What `replay_originals` did: the originals re-ingested, and those it could not read yet."""

    replayed: list[ReplayedOriginal] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)
    """Originals in S3 Glacier: restore them (`aws s3api restore-object`), then replay again."""


def _days(start: dt.date, end: dt.date) -> Iterator[dt.date]:
    day = start
    while day <= end:
        yield day
        day += dt.timedelta(days=1)


def _original_keys(s3: Any, bucket: str, dataset: str, start: dt.date, end: dt.date) -> Iterator[dict[str, Any]]:
    from datalake.originals import originals_prefix

    paginator = s3.get_paginator("list_objects_v2")
    for day in _days(start, end):
        for page in paginator.paginate(Bucket=bucket, Prefix=originals_prefix(dataset, day)):
            yield from sorted(page.get("Contents", []), key=lambda o: str(o["Key"]))


def _restored(head: Mapping[str, Any]) -> bool:
    return head.get("StorageClass") not in _ARCHIVED or 'ongoing-request="false"' in str(head.get("Restore", ""))


def _remove_stale(s3: Any, bucket: str, before: dict[str, Any] | None, after: Iterable[str]) -> tuple[str, ...]:
    """Delete the outputs the earlier ingestion wrote that the replay did not write again (a record that moved from
    raw to quarantine or back, a whole-object quarantine the replay now reads)."""
    if not before:
        return ()
    kept = set(after)
    stale = [str(k) for k in [*(before.get("output_keys") or []), *(before.get("quarantine_keys") or [])]]
    stale = [k for k in stale if k not in kept]
    stale += [f"{k}.reason.json" for k in stale if k.startswith(f"{QUARANTINE_PREFIX}/_objects/")]
    for key in stale:
        s3.delete_object(Bucket=bucket, Key=key)
    return tuple(stale)


def replay_originals(
    dataset: str,
    start: dt.date,
    end: dt.date,
    *,
    settings: Settings,
    clients: AwsClients,
    now: dt.datetime | None = None,
) -> OriginalsReplay:
    """Re-ingest, with the dataset's current contract, every original of `dataset` that arrived from `start` to `end`.

    Each original is read from the raw zone (`_originals/…`, ADR 0018) under the identity of the object or stream
    batch it was kept from, so its outputs overwrite those of the first ingestion: nothing is duplicated, and outputs
    the replay no longer writes are removed. A file's manifest is recorded again with `replayed_from` and announced
    with a `FileIngested` event; the pipeline then rebuilds the dates it names. Originals already moved to S3 Glacier
    are listed in `archived`, to be restored first.

    Parameters
    ----------
    dataset
        The dataset whose originals to replay.
    start, end
        The first and last day (UTC) the originals arrived, inclusive: the layout's `year=/month=/day=`.
    settings, clients
        The stack's raw bucket, manifests table and event bus, and the clients to reach them.
    now
        The ingestion time recorded (for tests).

    Raises
    ------
    ReplayError
        When `start` is after `end`, or the dataset is unknown.
    """
    from datalake.contracts import get_dataset
    from datalake.exceptions import UnknownDatasetError
    from datalake.ingest import ObjectRef, ingest_object
    from datalake.originals import Provenance

    if start > end:
        raise ReplayError(f"the range starts after it ends ({start} > {end})")
    try:
        get_dataset(dataset)
    except UnknownDatasetError as exc:
        raise ReplayError(str(exc)) from exc
    raw = settings.require("raw_bucket")
    table = clients.dynamodb.Table(settings.require("manifests_table"))
    report = OriginalsReplay()
    for obj in _original_keys(clients.s3, raw, dataset, start, end):
        key = str(obj["Key"])
        head = clients.s3.head_object(Bucket=raw, Key=key)
        if not _restored(head):
            report.archived.append(key)
            continue
        metadata = head.get("Metadata") or {}
        if "source-bucket" not in metadata:
            report.replayed.append(_replay_batch(key, dataset, metadata, settings, clients, now))
            continue
        provenance = Provenance.from_metadata(metadata)
        ref = ObjectRef(
            provenance.source_bucket,
            provenance.source_key,
            provenance.source_version_id,
            provenance.source_etag,
            int(head["ContentLength"]),
        )
        before = table.get_item(Key={"object_id": ref.object_id}, ConsistentRead=True).get("Item")
        manifest = ingest_object(ref, settings=settings, clients=clients, now=now, replay_from=key)
        removed = _remove_stale(clients.s3, raw, before, [*manifest.output_keys, *manifest.quarantine_keys])
        report.replayed.append(
            ReplayedOriginal(
                key,
                manifest.object_id,
                manifest.status.value,
                manifest.records_read,
                manifest.records_landed,
                manifest.records_quarantined,
                removed,
            )
        )
    return report


def _replay_batch(
    key: str, dataset: str, metadata: dict[str, str], settings: Settings, clients: AwsClients, now: dt.datetime | None
) -> ReplayedOriginal:
    """Re-ingest a kept stream batch: its records, as delivered, through the stream ingestion again."""
    import base64
    from urllib.parse import unquote

    from datalake.contracts import get_dataset
    from datalake.streaming import StreamIngestion, StreamRecord

    source_key = unquote(metadata.get("source", ""))
    source, _, partition = source_key.rpartition("/")
    if not source or not partition:
        raise ReplayError(f"{key} records no source stream (metadata `source`)")
    raw = settings.require("raw_bucket")
    body = clients.s3.get_object(Bucket=raw, Key=key)["Body"].read()
    ingestion = StreamIngestion(get_dataset(dataset), settings=settings, clients=clients, now=now)
    table = clients.dynamodb.Table(settings.require("manifests_table"))
    records = [json.loads(line) for line in gzip.decompress(body).splitlines() if line.strip()]
    for record in records:
        ingestion.add(
            StreamRecord(
                source, partition, int(record["position"]), base64.b64decode(record["data"]), record["arrived_at"]
            )
        )
    object_id = f"{source_key}#{records[0]['position']}-{records[-1]['position']}" if records else key
    before = table.get_item(Key={"object_id": object_id}, ConsistentRead=True).get("Item")
    result = ingestion.flush()
    if result.failed or result.terminal:
        raise ReplayError(f"{key}: {len(result.failed)} records could not be written; replay it again")
    (manifest,) = result.manifests
    removed = _remove_stale(clients.s3, raw, before, [*manifest.output_keys, *manifest.quarantine_keys])
    return ReplayedOriginal(
        key,
        manifest.object_id,
        manifest.status.value,
        manifest.records_read,
        manifest.records_landed,
        manifest.records_quarantined,
        removed,
    )

"""Firehose data transformation: the contract applied to each record, valid ones keyed by event hour and batch,
and one manifest per batch accounting for every record (ADR 0014)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import gzip
import hashlib
import json
import logging
from dataclasses import dataclass, field
from urllib.parse import quote

from aws_lambda_powertools.utilities.data_classes.kinesis_firehose_event import (
    KinesisFirehoseDataTransformationRecord,
    KinesisFirehoseDataTransformationRecordMetadata,
    KinesisFirehoseDataTransformationResponse,
    KinesisFirehoseEvent,
)
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from datalake.aws import AwsClients, aws_error
from datalake.contracts import Dataset
from datalake.exceptions import TransientError
from datalake.landing import iso_stamp, lineage_prefix, lineage_suffix, with_lineage
from datalake.originals import keep_bytes, original_key
from datalake.settings import Settings
from datalake.streaming import key_decoder_for, stream_dataset
from datalake.validation import RecordError, validator_for

logger = logging.getLogger(__name__)

UTC = dt.UTC


@dataclass
class TransformCounts:
    """How one invocation's records were judged; `records == ok + failed + dropped`.

    `batch` is the token every `Ok` record carries as its `batch` partition key; `partitions` counts the `Ok`
    records by the raw prefix Firehose writes them under (`output_prefix`).
    """

    records: int = 0
    ok: int = 0
    failed: int = 0
    dropped: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    batch: str = ""
    partitions: dict[str, int] = field(default_factory=dict)


def partition_keys(event_time: dt.datetime, batch: str | None = None) -> dict[str, str]:
    """The `partitionKeyFromLambda` values of a record: its event date and hour in UTC, zero-padded, and its batch."""
    moment = event_time.astimezone(UTC)
    keys = {
        "year": f"{moment.year:04d}",
        "month": f"{moment.month:02d}",
        "day": f"{moment.day:02d}",
        "hour": f"{moment.hour:02d}",
    }
    if batch is not None:
        keys["batch"] = batch
    return keys


def batch_token(record_ids: list[str]) -> str:
    """The batch partition key: a digest of the batch's record ids, the same when Firehose retries the batch."""
    digest = hashlib.sha256()
    for record_id in record_ids:
        digest.update(record_id.encode() + b",")
    return digest.hexdigest()[:16]


def output_prefix(dataset: str, keys: dict[str, str]) -> str:
    """The raw key prefix Firehose writes a record under: the delivery stream's `Prefix` with the record's keys.

    `<dataset>/year=YYYY/month=MM/day=DD/hour=HH/<batch>-` (the template's `Prefix`; a test holds the two equal).
    """
    return f"{dataset}/year={keys['year']}/month={keys['month']}/day={keys['day']}/hour={keys['hour']}/{keys['batch']}-"


def transform_records(
    event: KinesisFirehoseEvent, dataset: Dataset, *, now: dt.datetime | None = None, original_key: str | None = None
) -> tuple[KinesisFirehoseDataTransformationResponse, TransformCounts]:
    """Judge each record of a Firehose transformation batch against the dataset's contract.

    Valid records come back `Ok`, as received plus the lineage columns and a line break, with partition keys
    `year`, `month`, `day`, `hour` of their event time and `batch`, the batch's token. Invalid ones come back
    `ProcessingFailed` with their original data, so Firehose writes them under the error prefix; their reasons are
    logged with the record id. A second record with the same dataset key in one invocation is `Dropped`.

    Parameters
    ----------
    event
        The transformation event Firehose sends.
    dataset
        The dataset of every record of the delivery stream.
    now
        The ingestion time (for tests); defaults to the current UTC time.
    original_key
        Where the raw zone keeps the batch as delivered (`_original_key` of every `Ok` record, ADR 0018).

    Returns
    -------
    tuple
        The response to return to Firehose, and the counts.
    """
    validator = validator_for(dataset)
    keys = key_decoder_for(dataset)
    suffix = lineage_suffix(now or dt.datetime.now(UTC), original_key)
    stream = (event.source_kinesis_stream_arn or event.delivery_stream_arn).rsplit("/", 1)[-1]
    scheme = "kinesis" if event.source_kinesis_stream_arn else "firehose"
    response = KinesisFirehoseDataTransformationResponse()
    counts = TransformCounts(batch=batch_token([r.record_id for r in event.records]))
    seen: set[tuple[object, ...]] = set()
    for record in event.records:
        counts.records += 1
        metadata = record.metadata
        source_key = f"{scheme}://{stream}/{metadata.shard_id}" if metadata else f"{scheme}://{stream}"
        version = metadata.sequence_number if metadata else record.record_id
        try:
            data = base64.b64decode(record.data, validate=True)
        except binascii.Error as exc:
            _fail(response, counts, record.record_id, record.data, [RecordError("$", str(exc), "base64_invalid")])
            continue
        verdict = validator.check_json(data)
        if verdict.event_time is None:
            _fail(response, counts, record.record_id, record.data, list(verdict.errors))
            continue
        decoded = keys.decode(data)
        key = tuple(getattr(decoded, name) for name in dataset.key)
        if key in seen:
            counts.dropped += 1
            response.add_record(KinesisFirehoseDataTransformationRecord(record.record_id, "Dropped", record.data))
            continue
        seen.add(key)
        line = with_lineage(verdict.document(data), lineage_prefix(source_key, version), 1, suffix)
        counts.ok += 1
        partition = partition_keys(verdict.event_time, counts.batch)
        prefix = output_prefix(dataset.name, partition)
        counts.partitions[prefix] = counts.partitions.get(prefix, 0) + 1
        response.add_record(
            KinesisFirehoseDataTransformationRecord(
                record_id=record.record_id,
                result="Ok",
                data=base64.b64encode(line).decode(),
                metadata=KinesisFirehoseDataTransformationRecordMetadata(partition),
            )
        )
    return response, counts


class FirehoseManifest(BaseModel):
    """The record of one Firehose transformation batch: what came in, and where each record went.

    `records_received == records_read + duplicates_dropped` and `records_read == records_landed +
    records_quarantined` (quarantined: marked `ProcessingFailed`, written by Firehose under the error prefix).
    `output_prefixes` counts the landed records by the raw prefix their objects' keys start with, so the quality
    gate matches the raw files the Spark job read to the batches that landed them.
    """

    model_config = ConfigDict(frozen=True)

    object_id: str
    origin: str = "firehose"
    dataset: str
    delivery_stream: str
    source: str
    batch: str
    status: str
    records_received: int
    records_read: int
    records_landed: int
    records_quarantined: int
    duplicates_dropped: int
    contract_version: str
    output_prefixes: dict[str, int]
    errors: dict[str, int] = {}
    original_key: str | None = None
    """Where the raw zone keeps the batch's records as delivered (`_originals/…`, ADR 0018)."""
    ingested_at: str


def batch_manifest(
    event: KinesisFirehoseEvent,
    dataset: Dataset,
    counts: TransformCounts,
    ingested_at: dt.datetime,
    original_key: str | None = None,
) -> FirehoseManifest:
    """The manifest of one transformation batch, from its counts."""
    delivery_stream = event.delivery_stream_arn.rsplit("/", 1)[-1]
    read = counts.ok + counts.failed
    status = (
        "SKIPPED" if read == 0 else "LANDED" if counts.failed == 0 else "QUARANTINED" if counts.ok == 0 else "PARTIAL"
    )
    return FirehoseManifest(
        object_id=f"firehose://{delivery_stream}/{counts.batch}",
        dataset=dataset.name,
        delivery_stream=delivery_stream,
        source=event.source_kinesis_stream_arn or event.delivery_stream_arn,
        batch=counts.batch,
        status=status,
        records_received=counts.records,
        records_read=read,
        records_landed=counts.ok,
        records_quarantined=counts.failed,
        duplicates_dropped=counts.dropped,
        contract_version=dataset.version,
        output_prefixes=dict(sorted(counts.partitions.items())),
        errors=dict(sorted(counts.errors.items())),
        original_key=original_key,
        ingested_at=ingested_at.isoformat(),
    )


def delivery_dataset(event: KinesisFirehoseEvent, prefix: str) -> Dataset:
    """The dataset of a delivery stream's records, named by its source stream (or, for Direct PUT, by itself)."""
    return stream_dataset(event.source_kinesis_stream_arn or event.delivery_stream_arn, prefix)


def transform_batch(
    event: KinesisFirehoseEvent, *, settings: Settings, clients: AwsClients, now: dt.datetime | None = None
) -> tuple[KinesisFirehoseDataTransformationResponse, TransformCounts, FirehoseManifest]:
    """Transform one Firehose batch and record its manifest before answering (see `transform_records`).

    Raises
    ------
    TransientError
        The manifest could not be recorded: the invocation fails and Firehose retries the batch, which has the same
        token, so the retry writes the same manifest and the same prefixes.
    """
    ingested_at = now or dt.datetime.now(UTC)
    dataset = delivery_dataset(event, settings.stream_prefix)
    original = keep_batch(event, dataset, settings=settings, clients=clients, now=ingested_at)
    response, counts = transform_records(event, dataset, now=ingested_at, original_key=original)
    manifest = batch_manifest(event, dataset, counts, ingested_at, original)
    try:
        clients.dynamodb.Table(settings.require("manifests_table")).put_item(Item=manifest.model_dump(mode="json"))
    except ClientError as exc:
        raise TransientError(str(aws_error(exc, f"recording the manifest of {manifest.object_id}"))) from exc
    return response, counts, manifest


def keep_batch(
    event: KinesisFirehoseEvent, dataset: Dataset, *, settings: Settings, clients: AwsClients, now: dt.datetime
) -> str | None:
    """Keep the batch's records as delivered under `_originals/` (once: a retried batch has the same token).

    One JSON line per record: its id, arrival time, shard and sequence number when read from Kinesis, and its data
    in base64 (the exact bytes). Returns the original's key; None for an empty batch.

    Raises
    ------
    TransientError, TerminalError
        The original could not be written: the invocation fails and Firehose retries the batch.
    """
    records = list(event.records)
    if not records:
        return None
    delivery_stream = event.delivery_stream_arn.rsplit("/", 1)[-1]
    token = batch_token([r.record_id for r in records])
    arrived = dt.datetime.fromtimestamp(records[0].approximate_arrival_timestamp / 1000, UTC)
    target = original_key(dataset.name, arrived.date(), token, f"{delivery_stream}-{token}.jsonl.gz")
    lines = []
    for record in records:
        metadata = record.metadata
        line = {"record_id": record.record_id, "arrived_at": record.approximate_arrival_timestamp, "data": record.data}
        if metadata:
            line |= {"shard": metadata.shard_id, "sequence_number": metadata.sequence_number}
        lines.append(json.dumps(line).encode() + b"\n")
    keep_bytes(
        gzip.compress(b"".join(lines), compresslevel=6, mtime=0),
        target=target,
        metadata={
            "source": quote(event.source_kinesis_stream_arn or event.delivery_stream_arn, safe="/:"),
            "delivery-stream": delivery_stream,
            "records": str(len(records)),
            "dataset": dataset.name,
            "ingested-at": iso_stamp(now),
        },
        settings=settings,
        clients=clients,
        now=now,
    )
    return target


def _fail(
    response: KinesisFirehoseDataTransformationResponse,
    counts: TransformCounts,
    record_id: str,
    data: str,
    errors: list[RecordError],
) -> None:
    counts.failed += 1
    for error in errors:
        counts.errors[error.type] = counts.errors.get(error.type, 0) + 1
    logger.warning("record %s fails its contract: %s", record_id, [e.as_dict() for e in errors])
    response.add_record(KinesisFirehoseDataTransformationRecord(record_id, "ProcessingFailed", data))

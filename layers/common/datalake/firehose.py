"""Firehose data transformation: the contract applied to each record, valid ones keyed by event hour."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
from dataclasses import dataclass, field

from aws_lambda_powertools.utilities.data_classes.kinesis_firehose_event import (
    KinesisFirehoseDataTransformationRecord,
    KinesisFirehoseDataTransformationRecordMetadata,
    KinesisFirehoseDataTransformationResponse,
    KinesisFirehoseEvent,
)

from datalake.contracts import Dataset
from datalake.landing import lineage_prefix, lineage_suffix, with_lineage
from datalake.streaming import key_decoder_for
from datalake.validation import RecordError, validator_for

logger = logging.getLogger(__name__)

UTC = dt.UTC


@dataclass
class TransformCounts:
    """How one invocation's records were judged; `records == ok + failed + dropped`."""

    records: int = 0
    ok: int = 0
    failed: int = 0
    dropped: int = 0
    errors: dict[str, int] = field(default_factory=dict)


def partition_keys(event_time: dt.datetime) -> dict[str, str]:
    """The `partitionKeyFromLambda` values of a record: its event date and hour in UTC, zero-padded."""
    moment = event_time.astimezone(UTC)
    return {
        "year": f"{moment.year:04d}",
        "month": f"{moment.month:02d}",
        "day": f"{moment.day:02d}",
        "hour": f"{moment.hour:02d}",
    }


def transform_records(
    event: KinesisFirehoseEvent, dataset: Dataset, *, now: dt.datetime | None = None
) -> tuple[KinesisFirehoseDataTransformationResponse, TransformCounts]:
    """Judge each record of a Firehose transformation batch against the dataset's contract.

    Valid records come back `Ok`, as received plus the lineage columns and a line break, with partition keys
    `year`, `month`, `day`, `hour` of their event time. Invalid ones come back `ProcessingFailed` with their original
    data, so Firehose writes them under the error prefix; their reasons are logged with the record id. A second
    record with the same dataset key in one invocation is `Dropped`.

    Parameters
    ----------
    event
        The transformation event Firehose sends.
    dataset
        The dataset of every record of the delivery stream.
    now
        The ingestion time (for tests); defaults to the current UTC time.

    Returns
    -------
    tuple
        The response to return to Firehose, and the counts.
    """
    validator = validator_for(dataset)
    keys = key_decoder_for(dataset)
    suffix = lineage_suffix(now or dt.datetime.now(UTC))
    stream = (event.source_kinesis_stream_arn or event.delivery_stream_arn).rsplit("/", 1)[-1]
    scheme = "kinesis" if event.source_kinesis_stream_arn else "firehose"
    response = KinesisFirehoseDataTransformationResponse()
    counts = TransformCounts()
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
        response.add_record(
            KinesisFirehoseDataTransformationRecord(
                record_id=record.record_id,
                result="Ok",
                data=base64.b64encode(line).decode(),
                metadata=KinesisFirehoseDataTransformationRecordMetadata(partition_keys(verdict.event_time)),
            )
        )
    return response, counts


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

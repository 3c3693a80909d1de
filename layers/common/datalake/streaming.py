"""Stream ingestion: Kinesis or Kafka records validated, deduplicated and landed as one object per partition."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import gzip
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeAlias, cast
from urllib.parse import quote

import msgspec
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.kafka_event import KafkaEventRecord
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from boto3.dynamodb.types import Binary
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from datalake.aws import AwsClients, aws_error
from datalake.contracts import Dataset, get_dataset
from datalake.exceptions import ConfigurationError, DataLakeError, TerminalError, TransientError
from datalake.landing import (
    PartitionFile,
    iso_stamp,
    lineage_prefix,
    lineage_suffix,
    quarantine_key,
    quarantine_line,
    raw_key,
    upload,
    with_lineage,
)
from datalake.originals import keep_bytes, original_key
from datalake.settings import Settings
from datalake.validation import RecordError, validator_for

logger = logging.getLogger(__name__)

UTC = dt.UTC
UPLOAD_THREADS = 8
"""Objects of one partition written at once (a batch spanning many event hours writes one object per hour)."""
LEDGER_PREFIX = "ingest_stream#replay#"
"""Id prefix of the replay ledger items kept in the idempotency table (one item per shard or topic partition)."""

ExceptionInfo: TypeAlias = tuple[type[BaseException], BaseException, Any]
StreamEventRecord: TypeAlias = KinesisStreamRecord | KafkaEventRecord
Identity: TypeAlias = tuple[str, int]
"""A record's place in its source: `(source_key, position)`."""


class Outcome(StrEnum):
    """What happened to one staged record (before its object is written)."""

    LANDED = "LANDED"
    QUARANTINED = "QUARANTINED"
    DUPLICATE = "DUPLICATE"
    REPLAYED = "REPLAYED"


class BatchStatus(StrEnum):
    """Outcome of one partition's records in one invocation."""

    LANDED = "LANDED"
    PARTIAL = "PARTIAL"
    QUARANTINED = "QUARANTINED"
    SKIPPED = "SKIPPED"
    RETRYING = "RETRYING"


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One record of a shard or topic partition, whatever the source.

    Parameters
    ----------
    source
        `kinesis://<stream name>` or `kafka://<topic>`.
    partition
        The shard id or the topic partition number.
    position
        The sequence number (Kinesis) or offset (Kafka); increasing within the partition.
    data
        The payload, decoded from base64.
    arrived_at
        When the record reached the stream (seconds since the epoch).
    problem
        Why the payload could not be decoded, if it could not.
    """

    source: str
    partition: str
    position: int
    data: bytes
    arrived_at: float
    problem: RecordError | None = None

    @property
    def source_key(self) -> str:
        """The `_source_key` lineage value: the shard or topic partition."""
        return f"{self.source}/{self.partition}"


def _decode(value: Any) -> tuple[bytes, RecordError | None]:
    if value is None:
        return b"", RecordError("$", "record has no value", "value_missing")
    try:
        return binascii.a2b_base64(str(value), strict_mode=True), None
    except binascii.Error as exc:
        return str(value).encode(), RecordError("$", f"payload is not base64: {exc}", "base64_invalid")


def from_kinesis(record: KinesisStreamRecord) -> StreamRecord:
    """A Kinesis Data Streams record as the event source mapping delivers it."""
    raw = record.raw_event
    payload = raw["kinesis"]
    data, problem = _decode(payload.get("data"))
    return StreamRecord(
        source=f"kinesis://{raw['eventSourceARN'].rsplit('/', 1)[-1]}",
        partition=raw["eventID"].split(":", 1)[0],
        position=int(payload["sequenceNumber"]),
        data=data,
        arrived_at=float(payload["approximateArrivalTimestamp"]),
        problem=problem,
    )


def from_kafka(record: KafkaEventRecord) -> StreamRecord:
    """A Kafka record (Amazon MSK or self-managed) as the event source mapping delivers it."""
    data, problem = _decode(record.raw_event.get("value"))
    return StreamRecord(
        source=f"kafka://{record.topic}",
        partition=str(record.partition),
        position=int(record.offset),
        data=data,
        arrived_at=record.timestamp / 1000,
        problem=problem,
    )


def to_stream_record(record: StreamEventRecord) -> StreamRecord:
    """Either source's record as a `StreamRecord`."""
    return from_kafka(record) if isinstance(record, KafkaEventRecord) else from_kinesis(record)


def identity(record: StreamEventRecord) -> Identity:
    """The `(source_key, position)` of a delivered record, without decoding its payload."""
    if isinstance(record, KafkaEventRecord):
        return f"kafka://{record.topic}/{record.partition}", int(record.offset)
    stream = record.event_source_arn.rsplit("/", 1)[-1]
    return f"kinesis://{stream}/{record.event_id.split(':', 1)[0]}", int(record.kinesis.sequence_number)


def stream_dataset(source: str, prefix: str) -> Dataset:
    """The dataset a stream's records belong to: the stream (or Kafka topic) is named `<prefix><dataset>`.

    Parameters
    ----------
    source
        The stream's name or ARN, or the Kafka topic.
    prefix
        What the stack's stream names start with (`DL_STREAM_PREFIX`); a topic may also be the bare dataset name.

    Raises
    ------
    UnknownDatasetError
        When the name, less the prefix, is not a registered dataset.
    """
    name = source.rsplit("/", 1)[-1]
    return get_dataset(name.removeprefix(prefix))


def batch_dataset(event: Mapping[str, Any], prefix: str) -> Dataset:
    """The dataset of an event source mapping's batch, named by its stream or topic (one per batch).

    Raises
    ------
    TerminalError
        When the batch holds no record, or records of two datasets.
    UnknownDatasetError
        When its stream or topic names no registered dataset.
    """
    if event_type_of(event) is EventType.Kafka:
        sources = {str(r.get("topic", "")) for records in (event.get("records") or {}).values() for r in records}
    else:
        sources = {str(r.get("eventSourceARN", "")) for r in event.get("Records") or []}
    datasets = {stream_dataset(source, prefix).name for source in sources}
    if len(datasets) != 1:
        raise TerminalError(f"a batch must hold the records of one dataset, not {sorted(datasets) or 'none'}")
    return get_dataset(datasets.pop())


def event_type_of(event: Mapping[str, Any]) -> EventType:
    """Whether a batch event comes from Kafka (MSK or self-managed) or Kinesis Data Streams."""
    if event.get("eventSource") in ("aws:kafka", "SelfManagedKafka") or isinstance(event.get("records"), dict):
        return EventType.Kafka
    return EventType.KinesisDataStreams


class StreamManifest(BaseModel):
    """The record of one partition's records in one invocation.

    `records_received == records_read + duplicates_dropped + records_replayed + records_failed` and
    `records_read == records_landed + records_quarantined` always hold.
    """

    model_config = ConfigDict(frozen=True)

    object_id: str
    origin: str = "stream"
    source: str
    partition: str
    first_position: str
    last_position: str
    dataset: str
    status: BatchStatus
    records_received: int
    records_read: int
    records_landed: int
    records_quarantined: int
    duplicates_dropped: int
    records_replayed: int
    records_failed: int
    contract_version: str
    output_keys: list[str] = []
    quarantine_keys: list[str] = []
    event_hours: list[str] = []
    failure: str | None = None
    original_key: str | None = None
    """Where the raw zone keeps this batch's records byte for byte (`_originals/…`, ADR 0018)."""
    ingested_at: str


_BATCH_LINE = msgspec.json.Encoder()
_EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=UTC)
_HOUR = dt.timedelta(hours=1)


def _hour(number: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(number * 3600, UTC)


def _clean(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:96]


def _token(source_key: str, positions: Iterable[int]) -> str:
    digest = hashlib.sha256(source_key.encode())
    for position in positions:
        digest.update(b"%d," % position)
    return digest.hexdigest()[:16]


@dataclass
class _Output:
    """Lines bound for one object, with the positions of the records they hold."""

    positions: list[int] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)

    def add(self, position: int, line: bytes) -> None:
        self.positions.append(position)
        self.lines.append(line)


@dataclass
class _Partition:
    """One shard's (or topic partition's) records in this invocation."""

    source: str
    partition: str
    handled_before: frozenset[int]
    ledger_found: bool
    positions: list[int] = field(default_factory=list)
    received: list[StreamRecord] = field(default_factory=list)
    """Every record delivered, as delivered: the batch's original."""
    landed: dict[int, _Output] = field(default_factory=dict)
    """Outputs by event hour (hours since the epoch)."""
    quarantined: _Output = field(default_factory=_Output)
    keys_seen: set[tuple[Any, ...]] = field(default_factory=set)
    duplicates: list[int] = field(default_factory=list)
    replayed: list[int] = field(default_factory=list)
    first_arrival: float | None = None
    blocked: DataLakeError | None = None
    """Set when the ledger could not be read: every record of the partition then fails and is retried."""
    lineage_head: bytes = field(init=False)
    """`lineage_prefix(source_key, version)` up to the version's digits (positions need no JSON escaping)."""

    def __post_init__(self) -> None:
        self.lineage_head = lineage_prefix(self.source_key, "").removesuffix(b'","_line":')

    @property
    def source_key(self) -> str:
        return f"{self.source}/{self.partition}"


class ReplayLedger:
    """Which records at or after a shard's retry point an earlier attempt already landed or quarantined.

    An event source mapping retries a shard from the lowest failed record, so records after it that were written
    come again. The ledger, one small item per shard in the idempotency table, lets the retry skip them.
    """

    def __init__(self, clients: AwsClients, table: str, ttl_seconds: int) -> None:
        self._table = clients.dynamodb.Table(table)
        self._ttl = ttl_seconds

    @staticmethod
    def _id(source_key: str) -> str:
        return f"{LEDGER_PREFIX}{source_key}"

    def load(self, source_key: str) -> frozenset[int] | None:
        """Positions recorded as handled for this shard, or None when there is no ledger item."""
        try:
            item = self._table.get_item(Key={"id": self._id(source_key)}, ConsistentRead=True).get("Item")
        except ClientError as exc:
            raise aws_error(exc, f"reading the replay ledger of {source_key}") from exc
        if not item:
            return None
        blob = item["handled"]
        if isinstance(blob, Binary):
            raw = bytes(blob.value)
        elif isinstance(blob, bytes | bytearray):
            raw = bytes(blob)
        else:
            raise TerminalError(f"replay ledger of {source_key} holds {type(blob).__name__}, not binary")
        text = gzip.decompress(raw).decode()
        return frozenset(int(p) for p in text.split()) if text else frozenset()

    def save(self, source_key: str, resume_from: int, handled: Iterable[int], now: dt.datetime) -> None:
        """Record the handled positions at or after `resume_from`, the point the source will retry from."""
        kept = sorted(p for p in handled if p >= resume_from)
        if not kept:
            self.clear(source_key)
            return
        try:
            self._table.put_item(
                Item={
                    "id": self._id(source_key),
                    "resume_from": str(resume_from),
                    "handled": gzip.compress("\n".join(map(str, kept)).encode(), compresslevel=6),
                    "records": len(kept),
                    "updated_at": now.isoformat(),
                    "expiration": int(now.timestamp()) + self._ttl,
                }
            )
        except ClientError as exc:
            raise aws_error(exc, f"writing the replay ledger of {source_key}") from exc

    def clear(self, source_key: str) -> None:
        """Forget the shard's ledger (its retry is done)."""
        try:
            self._table.delete_item(Key={"id": self._id(source_key)})
        except ClientError as exc:
            raise aws_error(exc, f"clearing the replay ledger of {source_key}") from exc


@dataclass
class FlushResult:
    """What a flush wrote and which records must be retried, with the error that failed each."""

    manifests: list[StreamManifest]
    failed: dict[Identity, ExceptionInfo]
    terminal: TerminalError | None = None


class StreamIngestion:
    """One invocation's records: staged one by one (`add`), then written together (`flush`).

    Parameters
    ----------
    dataset
        The dataset every record of the stream belongs to.
    settings
        Raw bucket, manifests and idempotency tables, the line cap and the gzip level.
    clients
        AWS clients; their endpoint decides whether this is AWS or lakebox.
    now
        The ingestion time (for tests); defaults to the current UTC time.
    retries_whole_batch
        The source retries a failed batch from its first record (an MSK mapping without partial batch responses),
        rather than from the lowest failed record (Kinesis).
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        settings: Settings,
        clients: AwsClients,
        now: dt.datetime | None = None,
        retries_whole_batch: bool = False,
    ) -> None:
        self.dataset = dataset
        self.retries_whole_batch = retries_whole_batch
        self.settings = settings
        self.clients = clients
        self.ingested_at = now or dt.datetime.now(UTC)
        self._raw_bucket = settings.require("raw_bucket")
        self._manifests_table = settings.require("manifests_table")
        self._ledger = ReplayLedger(clients, settings.require("idempotency_table"), settings.idempotency_ttl_seconds)
        self._validator = validator_for(dataset)
        self._key_decoder = key_decoder_for(dataset)
        self._suffix = lineage_suffix(self.ingested_at)
        self._stamp = iso_stamp(self.ingested_at)
        self._max_bytes = settings.max_line_bytes
        self.partitions: dict[str, _Partition] = {}

    def _partition(self, record: StreamRecord) -> _Partition:
        part = self.partitions.get(record.source_key)
        if part is None:
            try:
                handled = self._ledger.load(record.source_key)
            except DataLakeError as exc:
                logger.error("replay ledger of %s unavailable, its records will be retried: %s", record.source_key, exc)
                part = _Partition(record.source, record.partition, frozenset(), False, blocked=exc)
            else:
                part = _Partition(record.source, record.partition, handled or frozenset(), handled is not None)
            self.partitions[record.source_key] = part
        return part

    def add(self, record: StreamRecord) -> Outcome:
        """Judge one record and stage it for raw or quarantine (nothing is written until `flush`).

        Raises
        ------
        DataLakeError
            The shard's replay ledger could not be read; the record is reported as failed and retried.
        """
        part = self._partition(record)
        part.positions.append(record.position)
        part.received.append(record)
        if part.blocked is not None:
            raise part.blocked
        if part.first_arrival is None:
            part.first_arrival = record.arrived_at
        if record.position in part.handled_before:
            part.replayed.append(record.position)
            return Outcome.REPLAYED
        data = record.data
        if record.problem is not None:
            return self._reject(part, record, data, (record.problem,))
        if len(data) > self._max_bytes:
            error = RecordError("$", f"record of {len(data)} bytes exceeds the {self._max_bytes} byte cap", "too_long")
            return self._reject(part, record, data[:1024], (error,))
        verdict = self._validator.check_json(data)
        if verdict.event_time is None:
            return self._reject(part, record, data, verdict.errors)
        key = self._key(data)
        if key in part.keys_seen:
            part.duplicates.append(record.position)
            return Outcome.DUPLICATE
        part.keys_seen.add(key)
        hour = (verdict.event_time - _EPOCH_UTC) // _HOUR  # exact: no float far from 1970
        output = part.landed.get(hour)
        if output is None:
            output = part.landed[hour] = _Output()
        prefix = part.lineage_head + b"%d" % record.position + b'","_line":'
        output.add(record.position, with_lineage(verdict.document(data), prefix, 1, self._suffix))
        return Outcome.LANDED

    def _key(self, data: bytes) -> tuple[Any, ...]:
        decoded = self._key_decoder.decode(data)
        return tuple(getattr(decoded, name) for name in self.dataset.key)

    def _reject(
        self, part: _Partition, record: StreamRecord, raw: bytes, errors: tuple[RecordError, ...] | list[RecordError]
    ) -> Outcome:
        lineage = {
            "_source_key": record.source_key,
            "_source_version": str(record.position),
            "_line": 1,
            "_ingested_at": self._stamp,
        }
        part.quarantined.add(record.position, quarantine_line(lineage, raw, errors))
        return Outcome.QUARANTINED

    def flush(self) -> FlushResult:
        """Write every staged object, settle the replay ledger and record one manifest per partition.

        Returns
        -------
        FlushResult
            The manifests, and the records to report as failed: those whose object could not be written.

        Raises
        ------
        TransientError
            A manifest could not be recorded; the ledger then holds every handled record, so the retry skips them.
        """
        result = FlushResult([], {})
        for part in self.partitions.values():
            manifest, failed, terminal = self._flush_partition(part)
            result.manifests.append(manifest)
            result.failed.update(failed)
            result.terminal = result.terminal or terminal
        return result

    def _flush_partition(
        self, part: _Partition
    ) -> tuple[StreamManifest, dict[Identity, ExceptionInfo], TerminalError | None]:
        if part.blocked is not None:
            manifest = self._manifest(part, 0, 0, len(part.positions), [], [], None)
            self._record(manifest)
            return manifest, {}, None
        name = f"{_clean(part.source.split('://', 1)[-1])}-{_clean(part.partition)}"
        original, problem = self._keep_batch(part, name)
        if problem is not None:
            # Nothing is written without its original: every record of the partition is retried.
            failed_all = {(part.source_key, p): problem for p in part.positions}
            terminal_all = problem[1] if isinstance(problem[1], TerminalError) else None
            manifest = self._manifest(part, 0, 0, len(part.positions), [], [], terminal_all)
            self._settle(part, min(part.positions), part.handled_before)
            self._record(manifest)
            return manifest, failed_all, terminal_all
        tail = b',"_original_key":' + json.dumps(original).encode() + b"}\n"
        failed: dict[Identity, ExceptionInfo] = {}
        handled: set[int] = {*part.duplicates, *part.replayed}
        output_keys: list[str] = []
        quarantine_keys: list[str] = []
        terminal: TerminalError | None = None
        landed = quarantined = 0
        outputs: list[tuple[str, _Output, bool]] = []
        for hour_number, output in sorted(part.landed.items()):
            hour = _hour(hour_number)
            object_name = f"h{hour.hour:02d}-{name}-{_token(part.source_key, output.positions)}.json.gz"
            outputs.append((raw_key(self.dataset.name, hour.date(), object_name), output, True))
        if part.quarantined.positions:
            arrival = part.first_arrival
            day = dt.datetime.fromtimestamp(arrival, UTC) if arrival is not None else self.ingested_at.astimezone(UTC)
            token = _token(part.source_key, part.quarantined.positions)
            name_q = f"h{day.hour:02d}-{name}-{token}.json.gz"
            outputs.append((quarantine_key(self.dataset.name, day.date(), name_q), part.quarantined, False))
        with ThreadPoolExecutor(max_workers=max(1, min(UPLOAD_THREADS, len(outputs)))) as pool:
            written = list(pool.map(lambda o: self._write(o[0], o[1], tail), outputs))
        for (key, output, is_raw), info in zip(outputs, written, strict=True):
            if info is not None:
                logger.warning("writing %s failed: %s", key, info[1])
                if isinstance(info[1], TerminalError):
                    terminal = terminal or info[1]
                failed.update({(part.source_key, p): info for p in output.positions})
                continue
            handled.update(output.positions)
            if is_raw:
                output_keys.append(key)
                landed += len(output.positions)
            else:
                quarantine_keys.append(key)
                quarantined += len(output.positions)

        manifest = self._manifest(
            part, landed, quarantined, len(failed), output_keys, quarantine_keys, terminal, original
        )
        handled |= part.handled_before
        if terminal is not None or (failed and self.retries_whole_batch):
            # The whole batch fails and comes back from its first record (perhaps bisected).
            self._settle(part, min(part.positions), handled)
        elif failed:
            # The source retries from the lowest failed record; everything after it comes again.
            self._settle(part, min(p for _, p in failed), handled)
        elif part.ledger_found:
            self._settle(part, max(part.positions) + 1, part.handled_before)
        try:
            self._record(manifest)
        except TransientError:
            self._settle(part, min(part.positions), handled)
            raise
        return manifest, failed, terminal

    def _keep_batch(self, part: _Partition, name: str) -> tuple[str, ExceptionInfo | None]:
        """Keep the partition's delivered records byte for byte under `_originals/` (once per distinct batch).

        One JSON line per record: its position, arrival time and payload in base64 (the payload's exact bytes).
        The key derives from the batch's positions, so a redelivered batch finds its original there already.
        """
        first, last = min(part.positions), max(part.positions)
        arrival = part.received[0].arrived_at
        day = dt.datetime.fromtimestamp(arrival, UTC).date()
        target = original_key(
            self.dataset.name, day, _token(part.source_key, part.positions), f"{name}-{first}-{last}.jsonl.gz"
        )
        lines = b"".join(
            _BATCH_LINE.encode(
                {"position": str(r.position), "arrived_at": r.arrived_at, "data": base64.b64encode(r.data).decode()}
            )
            + b"\n"
            for r in part.received
        )
        metadata = {
            "source": quote(part.source_key, safe="/:"),
            "first-position": str(first),
            "last-position": str(last),
            "records": str(len(part.received)),
            "dataset": self.dataset.name,
            "ingested-at": self._stamp,
        }
        try:
            keep_bytes(
                gzip.compress(lines, compresslevel=6, mtime=0),
                target=target,
                metadata=metadata,
                settings=self.settings,
                clients=self.clients,
                now=self.ingested_at,
            )
        except (TransientError, TerminalError) as exc:
            logger.warning("keeping the batch %s failed: %s", target, exc)
            return target, (type(exc), exc, exc.__traceback__)
        return target, None

    def _write(self, key: str, output: _Output, tail: bytes) -> ExceptionInfo | None:
        """Write one object, each line closed by `tail` (the `_original_key`); return the error that stopped it."""
        object_file = PartitionFile(key, self.settings.gzip_level)
        for line in output.lines:
            object_file.add(line[:-2] + tail)
        try:
            upload(self.clients, self._raw_bucket, object_file)
        except (TransientError, TerminalError) as exc:
            return type(exc), exc, exc.__traceback__
        return None

    def _settle(self, part: _Partition, resume_from: int, handled: set[int] | frozenset[int]) -> None:
        try:
            self._ledger.save(part.source_key, resume_from, handled, self.ingested_at)
        except DataLakeError as exc:
            logger.error("replay ledger of %s not updated, a retry may land records again: %s", part.source_key, exc)

    def _record(self, manifest: StreamManifest) -> None:
        try:
            self.clients.dynamodb.Table(self._manifests_table).put_item(Item=manifest.model_dump(mode="json"))
        except ClientError as exc:
            raise TransientError(str(aws_error(exc, f"recording the manifest of {manifest.object_id}"))) from exc

    def _manifest(
        self,
        part: _Partition,
        landed: int,
        quarantined: int,
        failed: int,
        output_keys: list[str],
        quarantine_keys: list[str],
        terminal: TerminalError | None,
        original: str | None = None,
    ) -> StreamManifest:
        first, last = min(part.positions), max(part.positions)
        read = landed + quarantined
        status = (
            BatchStatus.RETRYING
            if failed
            else BatchStatus.SKIPPED
            if read == 0
            else BatchStatus.LANDED
            if quarantined == 0
            else BatchStatus.QUARANTINED
            if landed == 0
            else BatchStatus.PARTIAL
        )
        hours = sorted(_hour(h).strftime("%Y-%m-%dT%H") for h in part.landed)
        return StreamManifest(
            object_id=f"{part.source_key}#{first}-{last}",
            source=part.source,
            partition=part.partition,
            first_position=str(first),
            last_position=str(last),
            dataset=self.dataset.name,
            status=status,
            records_received=len(part.positions),
            records_read=read,
            records_landed=landed,
            records_quarantined=quarantined,
            duplicates_dropped=len(part.duplicates),
            records_replayed=len(part.replayed),
            records_failed=failed,
            contract_version=self.dataset.version,
            output_keys=output_keys,
            quarantine_keys=quarantine_keys,
            event_hours=hours,
            failure=str(terminal) if terminal else None,
            original_key=original,
            ingested_at=self.ingested_at.isoformat(),
        )


_KEY_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {}


def key_decoder_for(dataset: Dataset) -> msgspec.json.Decoder[Any]:
    """A decoder reading only the dataset's key fields of a JSON record (for deduplication)."""
    decoder = _KEY_DECODERS.get(dataset.name)
    if decoder is None:
        struct = msgspec.defstruct(f"{dataset.contract.__name__}Key", [(name, Any) for name in dataset.key])
        decoder = _KEY_DECODERS[dataset.name] = msgspec.json.Decoder(struct)
    return decoder


class StreamBatchProcessor(BatchProcessor):
    """Powertools' `BatchProcessor` with a micro-batch: each record is judged and staged by the record handler,
    then the staged objects are written together and only records whose object failed are reported.

    Parameters
    ----------
    event_type
        `EventType.KinesisDataStreams` or `EventType.Kafka`.
    start
        Makes the `StreamIngestion` of one invocation.
    """

    def __init__(self, event_type: EventType, start: Callable[[], StreamIngestion]) -> None:
        super().__init__(event_type, raise_on_entire_batch_failure=False)
        self._start = start
        self.ingestion: StreamIngestion | None = None
        self.result: FlushResult | None = None

    def stage(self, record: StreamEventRecord) -> Outcome:
        """The record handler, the same for Kinesis and Kafka records: decode, judge and stage one record."""
        if self.ingestion is None:
            raise ConfigurationError("stage() called outside process()")
        return self.ingestion.add(to_stream_record(record))

    def process(self) -> list[tuple[Any, ...]]:
        """Stage every record, write the micro-batch, then move records whose object failed to the failures."""
        self.ingestion = self._start()
        self.result = None
        results: list[tuple[Any, ...]] = super().process()
        self.result = self.ingestion.flush()
        failed = self.result.failed
        if failed:
            # Powertools keeps successes as the raw records and reports failures from the data classes.
            wrap = KafkaEventRecord if self.event_type is EventType.Kafka else KinesisStreamRecord
            kept = []
            for raw in self.success_messages:
                record = raw if isinstance(raw, StreamEventRecord) else wrap(cast(dict[str, Any], raw))
                info = failed.get(identity(record))
                if info is None:
                    kept.append(raw)
                else:
                    self.failure_handler(record, info)
            self.success_messages[:] = kept
        if self.result.terminal is not None:
            raise self.result.terminal
        return results


def ingest_batch(
    event: Mapping[str, Any],
    dataset: Dataset,
    *,
    settings: Settings,
    clients: AwsClients,
    context: Any = None,
    now: dt.datetime | None = None,
) -> tuple[PartialItemFailureResponse, list[StreamManifest]]:
    """Ingest one event source mapping batch (Kinesis or Kafka) and return the partial batch response.

    Parameters
    ----------
    event
        The Lambda event, as the Kinesis or MSK/Kafka event source mapping sends it.
    dataset
        The dataset of every record of the stream.
    settings, clients
        Configuration and AWS clients.
    context
        The Lambda context (passed to Powertools).
    now
        The ingestion time (for tests).

    Returns
    -------
    tuple
        `{"batchItemFailures": [...]}` listing only records whose output could not be written, and the manifests.

    Raises
    ------
    TerminalError
        An output could not be written for a reason retrying cannot fix (the whole batch fails and is retried).
    TransientError
        A Kafka batch had records whose output could not be written. An MSK event source mapping acts on partial
        batch responses only when configured for them, so the batch fails as a whole and comes back; the replay
        ledger makes the retry skip what this attempt wrote.
    """
    from aws_lambda_powertools.utilities.batch import process_partial_response

    event_type = event_type_of(event)
    kafka = event_type is EventType.Kafka
    processor = StreamBatchProcessor(
        event_type,
        lambda: StreamIngestion(dataset, settings=settings, clients=clients, now=now, retries_whole_batch=kafka),
    )
    response = process_partial_response(
        event=dict(event), record_handler=processor.stage, processor=processor, context=context
    )
    manifests = processor.result.manifests if processor.result else []
    failures = response.get("batchItemFailures") or []
    if kafka and failures:
        raise TransientError(f"{len(failures)} Kafka records could not be written; the batch will be retried")
    return response, manifests


__all__ = [
    "BatchStatus",
    "Outcome",
    "ReplayLedger",
    "StreamBatchProcessor",
    "StreamIngestion",
    "StreamManifest",
    "StreamRecord",
    "batch_dataset",
    "event_type_of",
    "from_kafka",
    "from_kinesis",
    "ingest_batch",
    "key_decoder_for",
    "stream_dataset",
]

"""Kinesis event source mappings, locally: shards polled, batches handed to the functions as Lambda would."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from lakebox.cfn.stack import ACCOUNT_ID, REGION, Stack
from lakebox.errors import LakeboxError

if TYPE_CHECKING:
    import boto3

    from lakebox.services.lambdas import LambdaRuntime


logger = logging.getLogger(__name__)

Clock = Callable[[], float]
PUT_RECORDS_LIMIT = 500
UNBOUNDED_RETRY_CAP = 100
"""Retries lakebox allows a record when the mapping sets neither a retry limit nor a record age (AWS would retry
until the record leaves the stream)."""
GET_RECORDS_LIMIT = 10_000


@dataclass(frozen=True)
class MappingConfig:
    """A Kinesis event source mapping as the template declares it (a function's `Kinesis` event)."""

    name: str
    function: str
    stream_name: str
    stream_arn: str
    batch_size: int = 100
    window_seconds: float = 0.0
    bisect: bool = False
    report_failures: bool = False
    max_retries: int = -1
    max_record_age: int = -1
    on_failure: str | None = None
    starting_position: str = "TRIM_HORIZON"
    enabled: bool = True
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def dataset(self) -> str:
        """The dataset of the stream's records: the stream is named `<DL_STREAM_PREFIX><dataset>` (ADR 0014)."""
        return self.stream_name.removeprefix(self.environment.get("DL_STREAM_PREFIX", ""))


def _mapping(stack: Stack, name: str, function: str, props: dict[str, Any]) -> MappingConfig:
    spec = stack.function(function)
    arn = str(props.get("Stream") or props["EventSourceArn"])
    destination = (props.get("DestinationConfig") or {}).get("OnFailure", {}).get("Destination")
    return MappingConfig(
        name=name,
        function=spec.logical_id,
        stream_name=arn.rsplit("/", 1)[-1],
        stream_arn=arn,
        batch_size=int(props.get("BatchSize", 100)),
        window_seconds=float(props.get("MaximumBatchingWindowInSeconds", 0)),
        bisect=bool(props.get("BisectBatchOnFunctionError", False)),
        report_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
        max_retries=int(props.get("MaximumRetryAttempts", -1)),
        max_record_age=int(props.get("MaximumRecordAgeInSeconds", -1)),
        on_failure=str(destination) if destination else None,
        starting_position=str(props.get("StartingPosition", "TRIM_HORIZON")),
        enabled=props.get("Enabled", True) not in (False, "false", "False"),
        environment=dict(spec.environment),
    )


def kinesis_mappings(stack: Stack) -> list[MappingConfig]:
    """Every Kinesis event source mapping of the template, with its settings resolved.

    Both shapes count: a function's SAM `Kinesis` event, and an `AWS::Lambda::EventSourceMapping` resource whose
    source is a Kinesis stream (as the template's `Fn::ForEach` over the stream-delivered datasets declares them).
    """
    found = []
    for spec in stack.functions.values():
        for event_name, event in spec.events.items():
            if event.get("Type") == "Kinesis":
                props = stack.resolve(event.get("Properties", {})) or {}
                found.append(_mapping(stack, f"{spec.logical_id}.{event_name}", spec.logical_id, props))
    for logical_id, resource in stack.resources.items():
        if resource["Type"] != "AWS::Lambda::EventSourceMapping" or not stack.active(logical_id):
            continue
        props = stack.resolve(resource.get("Properties", {})) or {}
        if ":kinesis:" in str(props.get("EventSourceArn", "")):
            found.append(_mapping(stack, logical_id, str(props["FunctionName"]), props))
    return found


@dataclass
class MappingStats:
    """What an event source mapping did: invocations and their outcomes, retries and records given up."""

    invocations: int = 0
    records_delivered: int = 0
    records_checkpointed: int = 0
    partial_failures: int = 0
    function_errors: int = 0
    retries: int = 0
    bisections: int = 0
    records_to_destination: int = 0
    records_expired: int = 0
    failure_messages: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class _Pending:
    """A record read from a shard and not yet checkpointed, with how often it has been retried."""

    record: dict[str, Any]
    retries: int = 0

    @property
    def sequence(self) -> str:
        return str(self.record["SequenceNumber"])

    @property
    def arrived(self) -> dt.datetime:
        moment: dt.datetime = self.record["ApproximateArrivalTimestamp"]
        return moment.astimezone(dt.UTC)


class ShardConsumer:
    """One shard under one mapping: reads in order, invokes in batches, checkpoints what is done.

    Honours the mapping's settings as Lambda does: a partial batch response moves the checkpoint to the lowest
    failed record and retries from there; a function error retries the batch, split in two first when
    `BisectBatchOnFunctionError` is on; records past `MaximumRetryAttempts` or `MaximumRecordAgeInSeconds` are
    described to the on-failure destination and skipped, so the shard never stalls.
    """

    def __init__(self, lambdas: LambdaRuntime, mapping: MappingConfig, shard_id: str, stats: MappingStats) -> None:
        self.lambdas = lambdas
        self.stack = lambdas.stack
        self.mapping = mapping
        self.shard_id = shard_id
        self.stats = stats
        self.kinesis = lambdas.session.client("kinesis")
        self.checkpoint: str | None = None
        self.buffer: list[_Pending] = []
        self._oldest_buffered: float | None = None
        kind: Literal["LATEST", "TRIM_HORIZON"] = "LATEST" if mapping.starting_position == "LATEST" else "TRIM_HORIZON"
        self._iterator: str | None = self.kinesis.get_shard_iterator(
            StreamName=mapping.stream_name, ShardId=shard_id, ShardIteratorType=kind
        )["ShardIterator"]

    def fetch(self, clock: Clock) -> int:
        """Read every record available past what was read before; return how many arrived."""
        count = 0
        while self._iterator:
            out = self.kinesis.get_records(ShardIterator=self._iterator, Limit=GET_RECORDS_LIMIT)
            self._iterator = out.get("NextShardIterator")
            records = out.get("Records", [])
            if not records:
                break
            if not self.buffer:
                self._oldest_buffered = clock()
            self.buffer.extend(_Pending(dict(r)) for r in records)
            count += len(records)
        return count

    def ready(self, clock: Clock, *, drain: bool) -> bool:
        """Whether a batch should go now: full, its batching window passed, or draining."""
        if not self.buffer:
            return False
        if drain or len(self.buffer) >= self.mapping.batch_size:
            return True
        return self._oldest_buffered is not None and clock() - self._oldest_buffered >= self.mapping.window_seconds

    def process(self, clock: Clock, *, drain: bool = False) -> None:
        """Invoke the function for every batch that is ready, in shard order."""
        while self.ready(clock, drain=drain):
            batch = self.buffer[: self.mapping.batch_size]
            self._handle(batch)
            done = len(batch)
            self.checkpoint = batch[-1].sequence
            self.stats.records_checkpointed += done
            del self.buffer[:done]
            self._oldest_buffered = clock() if self.buffer else None

    def _handle(self, batch: list[_Pending]) -> None:
        """Deliver `batch` until every record succeeded or was given up (never returns with a record stuck)."""
        now = dt.datetime.now(dt.UTC)
        if self.mapping.max_record_age >= 0:
            old = [p for p in batch if (now - p.arrived).total_seconds() > self.mapping.max_record_age]
            if old:
                self.stats.records_expired += len(old)
                self._give_up(old, "RecordAgeExceeded", None)
                batch = [p for p in batch if p not in old]
        if not batch:
            return
        self.stats.invocations += 1
        self.stats.records_delivered += len(batch)
        try:
            response = self.lambdas.invoke(self.mapping.function, self._event(batch))
        except Exception as exc:  # noqa: BLE001 - any handler failure is a function error to the mapping
            self.stats.function_errors += 1
            self.stats.errors.append(f"{type(exc).__name__}: {exc}")
            logger.warning("%s failed on %d records: %s", self.mapping.function, len(batch), exc)
            self._retry(batch, "Unhandled", split=self.mapping.bisect and len(batch) > 1)
            return
        failed_from = self._lowest_failure(batch, response)
        if failed_from is None:
            return
        self.stats.partial_failures += 1
        self._retry(batch[failed_from:], None, split=False)

    def _lowest_failure(self, batch: list[_Pending], response: Any) -> int | None:
        """Index in `batch` of the lowest reported failure, 0 when the report is invalid, None on success."""
        if not self.mapping.report_failures or not isinstance(response, dict):
            return None
        failures = response.get("batchItemFailures") or []
        if not failures:
            return None
        index = {p.sequence: i for i, p in enumerate(batch)}
        positions = []
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if identifier not in index:
                return 0
            positions.append(index[str(identifier)])
        return min(positions)

    def _retry(self, records: list[_Pending], function_error: str | None, *, split: bool) -> None:
        limit = self.mapping.max_retries
        if limit < 0 and self.mapping.max_record_age < 0:
            limit = UNBOUNDED_RETRY_CAP
        if any(0 <= limit <= p.retries for p in records):
            self._give_up(records, "RetryAttemptsExhausted", function_error)
            return
        for pending in records:
            pending.retries += 1
        self.stats.retries += 1
        if split:
            self.stats.bisections += 1
            middle = len(records) // 2
            self._handle(records[:middle])
            self._handle(records[middle:])
        else:
            self._handle(records)

    def _give_up(self, records: list[_Pending], condition: str, function_error: str | None) -> None:
        """Describe the records to the on-failure destination (as Lambda does: shard and sequence range)."""
        self.stats.records_to_destination += len(records)
        destination = self.mapping.on_failure
        if not destination:
            return
        spec = self.stack.function(self.mapping.function)
        message = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": spec.arn,
                "condition": condition,
                "approximateInvokeCount": max(p.retries for p in records) + 1,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                **({"functionError": function_error} if function_error else {}),
            },
            "version": "1.0",
            "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "KinesisBatchInfo": {
                "shardId": self.shard_id,
                "startSequenceNumber": records[0].sequence,
                "endSequenceNumber": records[-1].sequence,
                "approximateArrivalOfFirstRecord": _iso(records[0].arrived),
                "approximateArrivalOfLastRecord": _iso(records[-1].arrived),
                "batchSize": len(records),
                "streamArn": self.mapping.stream_arn,
            },
        }
        sqs = self.lambdas.session.client("sqs")
        url = sqs.get_queue_url(QueueName=destination.rsplit(":", 1)[-1])["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(message))
        self.stats.failure_messages += 1

    def _event(self, batch: Sequence[_Pending]) -> dict[str, Any]:
        role = f"arn:aws:iam::{ACCOUNT_ID}:role/{self.stack.stack_name}-{self.mapping.function}Role"
        return {
            "Records": [
                {
                    "kinesis": {
                        "kinesisSchemaVersion": "1.0",
                        "partitionKey": p.record["PartitionKey"],
                        "sequenceNumber": p.sequence,
                        "data": base64.b64encode(p.record["Data"]).decode(),
                        "approximateArrivalTimestamp": round(p.arrived.timestamp(), 3),
                    },
                    "eventSource": "aws:kinesis",
                    "eventVersion": "1.0",
                    "eventID": f"{self.shard_id}:{p.sequence}",
                    "eventName": "aws:kinesis:record",
                    "invokeIdentityArn": role,
                    "awsRegion": REGION,
                    "eventSourceARN": self.mapping.stream_arn,
                }
                for p in batch
            ]
        }


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stream_shards(session: boto3.Session, stream: str) -> list[str]:
    """The shard ids of a stream."""
    kinesis = session.client("kinesis")
    shards = [s["ShardId"] for s in kinesis.list_shards(StreamName=stream)["Shards"]]
    if not shards:
        raise LakeboxError(f"stream {stream} has no shards")
    return shards


class EventSourceMapping:
    """A Kinesis event source mapping run locally: one consumer per shard, polled on demand."""

    def __init__(self, lambdas: LambdaRuntime, mapping: MappingConfig, *, clock: Clock = time.monotonic) -> None:
        self.lambdas = lambdas
        self.mapping = mapping
        self.clock = clock
        self.stats = MappingStats()
        self.consumers = [
            ShardConsumer(lambdas, mapping, s, self.stats) for s in stream_shards(lambdas.session, mapping.stream_name)
        ]

    def poll(self, *, drain: bool = False) -> int:
        """Read every shard and invoke for each ready batch; return the records read."""
        read = 0
        for consumer in self.consumers:
            read += consumer.fetch(self.clock)
            consumer.process(self.clock, drain=drain)
        return read

    def drain(self) -> None:
        """Deliver everything in the stream now, whatever the batching window."""
        while True:
            self.poll(drain=True)
            if not any(c.buffer for c in self.consumers):
                return


def put_records(session: boto3.Session, stream: str, payloads: Iterable[tuple[str, bytes]]) -> int:
    """Write `(partition_key, data)` records to a stream, 500 to a request, retrying any the stream refused."""
    kinesis = session.client("kinesis")
    chunk: list[tuple[str, bytes]] = []
    written = 0

    def send(records: list[tuple[str, bytes]]) -> int:
        pending = records
        for _ in range(5):
            entries = [{"PartitionKey": key, "Data": data} for key, data in pending]
            out = kinesis.put_records(StreamName=stream, Records=entries)  # type: ignore[arg-type]
            pending = [pending[i] for i, r in enumerate(out["Records"]) if "ErrorCode" in r]
            if not pending:
                return len(records)
        raise LakeboxError(f"stream {stream} refused {len(pending)} records five times")

    for item in payloads:
        chunk.append(item)
        if len(chunk) == PUT_RECORDS_LIMIT:
            written += send(chunk)
            chunk = []
    if chunk:
        written += send(chunk)
    return written

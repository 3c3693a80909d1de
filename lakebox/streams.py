"""Kinesis event source mappings and Firehose delivery, locally: shards polled, batches handed to the functions."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from lakebox.errors import LakeboxError
from lakebox.stack import ACCOUNT_ID, REGION, Stack

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
    def dataset(self) -> str | None:
        """The dataset the target function ingests (its `DL_STREAM_DATASET`)."""
        return self.environment.get("DL_STREAM_DATASET")


def kinesis_mappings(stack: Stack) -> list[MappingConfig]:
    """Every Kinesis event source mapping of the template's functions, with its settings resolved."""
    found = []
    for spec in stack.functions.values():
        for event_name, event in spec.events.items():
            if event.get("Type") != "Kinesis":
                continue
            props = stack.resolve(event.get("Properties", {})) or {}
            arn = str(props["Stream"])
            destination = (props.get("DestinationConfig") or {}).get("OnFailure", {}).get("Destination")
            found.append(
                MappingConfig(
                    name=f"{spec.logical_id}.{event_name}",
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
            )
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

    def __init__(self, stack: Stack, mapping: MappingConfig, shard_id: str, stats: MappingStats) -> None:
        self.stack = stack
        self.mapping = mapping
        self.shard_id = shard_id
        self.stats = stats
        self.kinesis = stack.session.client("kinesis")
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
            response = self.stack.invoke(self.mapping.function, self._event(batch))
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
        sqs = self.stack.session.client("sqs")
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


def _shards(stack: Stack, stream: str) -> list[str]:
    kinesis = stack.session.client("kinesis")
    shards = [s["ShardId"] for s in kinesis.list_shards(StreamName=stream)["Shards"]]
    if not shards:
        raise LakeboxError(f"stream {stream} has no shards")
    return shards


class EventSourceMapping:
    """A Kinesis event source mapping run locally: one consumer per shard, polled on demand."""

    def __init__(self, stack: Stack, mapping: MappingConfig, *, clock: Clock = time.monotonic) -> None:
        self.stack = stack
        self.mapping = mapping
        self.clock = clock
        self.stats = MappingStats()
        self.consumers = [ShardConsumer(stack, mapping, s, self.stats) for s in _shards(stack, mapping.stream_name)]

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


def put_records(stack: Stack, stream: str, payloads: Iterable[tuple[str, bytes]]) -> int:
    """Write `(partition_key, data)` records to a stream, 500 to a request, retrying any the stream refused."""
    kinesis = stack.session.client("kinesis")
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
            row |= {
                "invocations": self.firehose.invocations,
                "landed": self.firehose.ok,
                "quarantined": self.firehose.processing_failed,
                "duplicates": self.firehose.dropped,
                "objects": len(self.firehose.objects),
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


def stream_manifests(stack: Stack, stream_name: str, since: str) -> list[dict[str, Any]]:
    """The stream batch manifests recorded since `since` (ISO time) for one stream."""
    table_id = next(
        (lid for lid in stack.resources if lid == "ManifestsTable"),
        None,
    )
    if table_id is None:
        return []
    table = stack.session.resource("dynamodb").Table(str(stack.ref(table_id)))
    prefix = f"kinesis://{stream_name}/"
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


def click_payloads(
    seed: int, bad_rate: float, count: int, start: int, *, now: dt.datetime | None = None
) -> list[tuple[str, bytes, bool]]:
    """`(partition_key, data, is_bad)` for `count` generated clickstream events, keyed by session.

    Events are stamped as a live stream's are: within the last few minutes before `now`, a few arriving late.
    """
    import random

    from lakebox.sample import SampleSpec, click_events

    moment = now or dt.datetime.now(dt.UTC)
    rng = random.Random(seed * 13 + start)
    spec = SampleSpec(seed=seed, bad_rate=bad_rate, end=moment)
    out = []
    for event, defect in click_events(spec, count, start=start):
        lag = rng.expovariate(1 / 20) if rng.random() < 0.99 else rng.uniform(600, 7200)
        event["event_time"] = (moment - dt.timedelta(seconds=lag)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        data = json.dumps(event, separators=(",", ":")).encode()
        out.append((str(event["session_id"]), data, defect is not None))
    return out


def find_mapping(stack: Stack, dataset: str) -> MappingConfig:
    """The Kinesis mapping whose function ingests `dataset`."""
    mappings = kinesis_mappings(stack)
    for mapping in mappings:
        if mapping.dataset == dataset:
            return mapping
    known = ", ".join(f"{m.name} ({m.dataset})" for m in mappings) or "none"
    raise LakeboxError(f"no Kinesis event source mapping ingests {dataset!r} (mappings: {known})")


def run_stream(
    stack: Stack,
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
    if dataset != "clickstream":
        raise LakeboxError(f"lakebox generates stream events for clickstream only, not {dataset!r}")
    mapping = find_mapping(stack, dataset)
    if window is not None:
        mapping = replace(mapping, window_seconds=window)
    if not from_start:
        mapping = replace(mapping, starting_position="LATEST")
    started_at = dt.datetime.now(dt.UTC).isoformat()
    firehose = None if mapping.enabled else FirehoseDelivery.from_template(stack, mapping.stream_arn, from_start)
    if not mapping.enabled and firehose is None:
        raise LakeboxError(f"{mapping.name} is disabled and no Firehose delivery stream reads {mapping.stream_name}")
    esm = EventSourceMapping(stack, mapping) if mapping.enabled else None
    run = StreamRun(dataset, "lambda" if esm else "firehose")
    started = time.monotonic()
    tick = min(0.25, max(window if window is not None else mapping.window_seconds, 0.05))
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(rate * min(elapsed + tick, seconds)) - run.produced
        if due > 0:
            batch = click_payloads(seed, bad_rate, due, run.produced)
            put_records(stack, mapping.stream_name, ((k, d) for k, d, _ in batch))
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
        batch = click_payloads(seed, bad_rate, due, run.produced)
        put_records(stack, mapping.stream_name, ((k, d) for k, d, _ in batch))
        run.produced += len(batch)
        run.produced_bad += sum(1 for *_, bad in batch if bad)
    if progress:
        progress("draining the stream")
    if esm:
        esm.drain()
        run.stats = esm.stats
        run.manifests = stream_manifests(stack, mapping.stream_name, started_at)
    elif firehose:
        firehose.drain()
        run.firehose = firehose.stats
    run.seconds = time.monotonic() - started
    return run


# ---------------------------------------------------------------------- Firehose (StreamDelivery=firehose)
@dataclass
class FirehoseStats:
    """What the local Firehose delivered: transformation invocations, records by result, objects written."""

    invocations: int = 0
    records: int = 0
    ok: int = 0
    processing_failed: int = 0
    dropped: int = 0
    objects: list[str] = field(default_factory=list)
    error_objects: list[str] = field(default_factory=list)


_EXPRESSION = re.compile(r"!\{([a-zA-Z]+):([^}]+)\}")
_JAVA_TIME = (("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S"))


def evaluate_prefix(prefix: str, *, keys: dict[str, str], moment: dt.datetime, error_type: str | None = None) -> str:
    """A Firehose S3 prefix with its `!{partitionKeyFromLambda:…}`, `!{timestamp:…}`, `!{firehose:…}` evaluated."""

    def replace(match: re.Match[str]) -> str:
        namespace, value = match.group(1), match.group(2)
        if namespace == "partitionKeyFromLambda":
            if value not in keys:
                raise LakeboxError(f"the transformation returned no partition key {value!r}")
            return keys[value]
        if namespace == "timestamp":
            pattern = value
            for java, strf in _JAVA_TIME:
                pattern = pattern.replace(java, strf)
            return moment.strftime(pattern)
        if namespace == "firehose" and value == "error-output-type":
            return error_type or "processing-failed"
        if namespace == "firehose" and value == "random-string":
            return uuid.uuid4().hex[:11]
        raise LakeboxError(f"Firehose prefix expression {match.group(0)} is not emulated")

    return _EXPRESSION.sub(replace, prefix)


class FirehoseDelivery:
    """A Firehose delivery stream reading a Kinesis stream, transforming with a function, writing S3 objects."""

    def __init__(
        self, stack: Stack, logical_id: str, config: dict[str, Any], stream_arn: str, *, from_start: bool = True
    ) -> None:
        self.stack = stack
        self.logical_id = logical_id
        self.name = str(stack.ref(logical_id))
        self.stream_arn = stream_arn
        self.stream_name = stream_arn.rsplit("/", 1)[-1]
        self.bucket = str(config["BucketARN"]).split(":::", 1)[-1]
        self.prefix = str(config.get("Prefix", ""))
        self.error_prefix = str(config.get("ErrorOutputPrefix", ""))
        self.extension = str(config.get("FileExtension", ".gz" if config.get("CompressionFormat") == "GZIP" else ""))
        self.gzip = config.get("CompressionFormat") == "GZIP"
        processors = ((config.get("ProcessingConfiguration") or {}).get("Processors")) or []
        arns = [
            p["ParameterValue"]
            for proc in processors
            if proc.get("Type") == "Lambda"
            for p in proc.get("Parameters", [])
            if p.get("ParameterName") == "LambdaArn"
        ]
        self.function = stack.function(str(arns[0])).logical_id if arns else None
        self.stats = FirehoseStats()
        self.consumers = {
            shard: stack.session.client("kinesis").get_shard_iterator(
                StreamName=self.stream_name, ShardId=shard, ShardIteratorType="TRIM_HORIZON" if from_start else "LATEST"
            )["ShardIterator"]
            for shard in _shards(stack, self.stream_name)
        }

    @classmethod
    def from_template(cls, stack: Stack, stream_arn: str, from_start: bool = True) -> FirehoseDelivery | None:
        """The active delivery stream that reads `stream_arn`, if the template has one."""
        for lid, resource in stack.resources.items():
            if resource["Type"] != "AWS::KinesisFirehose::DeliveryStream" or not stack.active(lid):
                continue
            props = stack.resolve(resource.get("Properties", {}))
            source = (props.get("KinesisStreamSourceConfiguration") or {}).get("KinesisStreamARN")
            if source == stream_arn:
                return cls(stack, lid, props["ExtendedS3DestinationConfiguration"], stream_arn, from_start=from_start)
        return None

    def poll(self) -> None:
        """Read what arrived on every shard, transform it, and write the objects (the buffer flushes each poll)."""
        kinesis = self.stack.session.client("kinesis")
        for shard, iterator in list(self.consumers.items()):
            records: list[dict[str, Any]] = []
            while iterator:
                out = kinesis.get_records(ShardIterator=iterator, Limit=GET_RECORDS_LIMIT)
                iterator = out.get("NextShardIterator") or ""
                if not out.get("Records"):
                    break
                records += [dict(r) for r in out["Records"]]
            self.consumers[shard] = iterator
            if records:
                self._deliver(shard, records)

    def drain(self) -> None:
        """Deliver everything still in the stream."""
        self.poll()

    def _deliver(self, shard: str, records: list[dict[str, Any]]) -> None:
        by_id = {f"{r['SequenceNumber']}-{i}": r for i, r in enumerate(records)}
        event = {
            "invocationId": str(uuid.uuid4()),
            "deliveryStreamArn": f"arn:aws:firehose:{REGION}:{ACCOUNT_ID}:deliverystream/{self.name}",
            "sourceKinesisStreamArn": self.stream_arn,
            "region": REGION,
            "records": [
                {
                    "recordId": record_id,
                    "approximateArrivalTimestamp": int(r["ApproximateArrivalTimestamp"].timestamp() * 1000),
                    "data": base64.b64encode(r["Data"]).decode(),
                    "kinesisRecordMetadata": {
                        "shardId": shard,
                        "partitionKey": r["PartitionKey"],
                        "approximateArrivalTimestamp": int(r["ApproximateArrivalTimestamp"].timestamp() * 1000),
                        "sequenceNumber": r["SequenceNumber"],
                        "subsequenceNumber": 0,
                    },
                }
                for record_id, r in by_id.items()
            ],
        }
        self.stats.invocations += 1
        self.stats.records += len(records)
        results: list[dict[str, Any]]
        if self.function is None:
            results = [
                {"recordId": rid, "result": "Ok", "data": base64.b64encode(r["Data"]).decode()}
                for rid, r in by_id.items()
            ]
        else:
            results = self.stack.invoke(self.function, event)["records"]
        now = dt.datetime.now(dt.UTC)
        groups: dict[str, list[bytes]] = {}
        failed: list[bytes] = []
        for result in results:
            status = result.get("result")
            if status == "Ok":
                self.stats.ok += 1
                keys = (result.get("metadata") or {}).get("partitionKeys") or {}
                prefix = evaluate_prefix(self.prefix, keys=keys, moment=now)
                groups.setdefault(prefix, []).append(base64.b64decode(result["data"]))
            elif status == "Dropped":
                self.stats.dropped += 1
            else:
                self.stats.processing_failed += 1
                original = by_id[result["recordId"]]
                failed.append(
                    json.dumps(
                        {
                            "attemptsMade": 1,
                            "arrivalTimestamp": int(original["ApproximateArrivalTimestamp"].timestamp() * 1000),
                            "errorCode": "Lambda.ProcessingFailed",
                            "errorMessage": "The record was marked ProcessingFailed by the transformation function.",
                            "attemptEndingTimestamp": int(now.timestamp() * 1000),
                            "rawData": base64.b64encode(original["Data"]).decode(),
                            "lambdaArn": self.stack.function(self.function).arn if self.function else "",
                        }
                    ).encode()
                    + b"\n"
                )
        for prefix, lines in groups.items():
            self.stats.objects.append(self._write(prefix, b"".join(lines), now))
        if failed:
            prefix = evaluate_prefix(self.error_prefix, keys={}, moment=now, error_type="processing-failed")
            self.stats.error_objects.append(self._write(prefix, b"".join(failed), now))

    def _write(self, prefix: str, body: bytes, now: dt.datetime) -> str:
        key = f"{prefix}{self.name}-1-{now.strftime('%Y-%m-%d-%H-%M-%S')}-{uuid.uuid4()}{self.extension}"
        data = gzip.compress(body) if self.gzip else body
        self.stack.session.client("s3").put_object(Bucket=self.bucket, Key=key, Body=data)
        return key

"""Firehose delivery, locally: a Kinesis stream read, records transformed by a function, S3 objects written."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakebox.cfn.stack import ACCOUNT_ID, REGION
from lakebox.errors import LakeboxError
from lakebox.services.kinesis import GET_RECORDS_LIMIT, stream_shards

if TYPE_CHECKING:
    from lakebox.services.lambdas import LambdaRuntime


logger = logging.getLogger(__name__)


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
        self,
        lambdas: LambdaRuntime,
        logical_id: str,
        config: dict[str, Any],
        stream_arn: str,
        *,
        from_start: bool = True,
    ) -> None:
        self.lambdas = lambdas
        self.stack = stack = lambdas.stack
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
            shard: lambdas.session.client("kinesis").get_shard_iterator(
                StreamName=self.stream_name, ShardId=shard, ShardIteratorType="TRIM_HORIZON" if from_start else "LATEST"
            )["ShardIterator"]
            for shard in stream_shards(lambdas.session, self.stream_name)
        }

    @classmethod
    def from_template(cls, lambdas: LambdaRuntime, stream_arn: str, from_start: bool = True) -> FirehoseDelivery | None:
        """The active delivery stream that reads `stream_arn`, if the template has one."""
        stack = lambdas.stack
        for lid, resource in stack.resources.items():
            if resource["Type"] != "AWS::KinesisFirehose::DeliveryStream" or not stack.active(lid):
                continue
            props = stack.resolve(resource.get("Properties", {}))
            source = (props.get("KinesisStreamSourceConfiguration") or {}).get("KinesisStreamARN")
            if source == stream_arn:
                return cls(lambdas, lid, props["ExtendedS3DestinationConfiguration"], stream_arn, from_start=from_start)
        return None

    def poll(self) -> None:
        """Read what arrived on every shard, transform it, and write the objects (the buffer flushes each poll)."""
        kinesis = self.lambdas.session.client("kinesis")
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
            results = self.lambdas.invoke(self.function, event)["records"]
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
        self.lambdas.session.client("s3").put_object(Bucket=self.bucket, Key=key, Body=data)
        return key

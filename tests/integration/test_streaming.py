"""Streaming through the local stack: the template's Kinesis mapping, polled shards, the real stream handler."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from datalake.contracts import get_dataset
from lakebox.app.pipeline import execute
from lakebox.app.stream import (
    EventSourceMapping,
    MappingConfig,
    StreamRun,
    event_payloads,
    find_mapping,
    put_records,
    run_stream,
    stream_manifests,
)
from lakebox.sfn import Execution
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

NOW = dt.datetime.now(dt.UTC).replace(minute=30, second=0, microsecond=0)


def _mapping(box: Any, **overrides: Any) -> MappingConfig:
    """The template's clickstream mapping, reading from now on (so tests sharing the stream stay apart)."""
    mapping = find_mapping(box.stack, "clickstream")
    return replace(mapping, starting_position="LATEST", window_seconds=0.0, **overrides)


def _click(n: int, hour_offset: int = 0, **fields: Any) -> tuple[str, bytes]:
    moment = NOW - dt.timedelta(hours=hour_offset)
    event = {
        "event_id": f"EIT{n:07d}",
        "event_time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "session_id": "SES1",
        "event_type": "page_view",
        "page": "/",
        "device": "desktop",
        **fields,
    }
    return "SES1", json.dumps(event).encode()


def _landed_ids(box: Any, manifests: list[dict[str, Any]]) -> list[str]:
    s3 = box.session.client("s3")
    bucket = box.bucket("RawBucket")
    ids = []
    for key in sorted({k for m in manifests for k in m.get("output_keys", [])}):
        body = gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        ids += [json.loads(line)["event_id"] for line in body.splitlines()]
    return sorted(ids)


@pytest.fixture
def since() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


@pytest.fixture
def inject(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[str, bytes], str | None]], list[str]]:
    """Fail S3 PutObject with the code the rule returns for a (key, uncompressed body); returns the refused keys."""

    def install(rule: Callable[[str, bytes], str | None]) -> list[str]:
        refused: list[str] = []
        original = BaseClient._make_api_call

        def call(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
            if operation == "PutObject" and isinstance(params.get("Body"), bytes):
                code = rule(str(params["Key"]), gzip.decompress(params["Body"]))
                if code:
                    refused.append(str(params["Key"]))
                    raise ClientError({"Error": {"Code": code, "Message": "injected"}}, operation)
            return original(self, operation, params)

        monkeypatch.setattr(BaseClient, "_make_api_call", call)
        return refused

    return install


def test_a_poison_record_is_quarantined_and_the_shard_moves_on(local_stack: Any, since: str) -> None:
    # GIVEN 300 generated events (some of an unknown type) and a record that is not JSON, then more events
    mapping = _mapping(local_stack)
    esm = EventSourceMapping(local_stack.lambdas, mapping)
    generated = event_payloads(get_dataset("clickstream"), 21, 0.05, 300, 0)
    records = [(k, d) for k, d, _ in generated[:150]] + [("SES1", b"\x00\x01 not json")]
    records += [(k, d) for k, d, _ in generated[150:]]
    put_records(local_stack.session, mapping.stream_name, records)
    # WHEN the mapping polls the shard until it is drained
    esm.drain()
    # THEN no invocation failed, every bad record is quarantined, every good one landed, and the shard is done
    assert (esm.stats.function_errors, esm.stats.partial_failures, esm.stats.records_to_destination) == (0, 0, 0)
    manifests = stream_manifests(local_stack, mapping.stream_name, since)
    bad = sum(1 for *_, is_bad in generated if is_bad)
    assert sum(int(m["records_quarantined"]) for m in manifests) == bad + 1
    assert sum(int(m["records_landed"]) for m in manifests) == 300 - bad
    assert all(int(m["records_read"]) == int(m["records_landed"]) + int(m["records_quarantined"]) for m in manifests)
    assert all(not c.buffer for c in esm.consumers) and esm.stats.records_checkpointed == 301


def test_a_transient_write_failure_is_retried_only_for_the_failed_records(
    local_stack: Any, since: str, inject: Callable[..., list[str]]
) -> None:
    # GIVEN ten events over two event hours, and the first write of the earlier hour's object throttled
    mapping = _mapping(local_stack)
    esm = EventSourceMapping(local_stack.lambdas, mapping)
    earlier = (NOW - dt.timedelta(hours=1)).strftime("/h%H-")
    refused = inject(lambda key, body: "SlowDown" if earlier in key and not refused else None)
    put_records(local_stack.session, mapping.stream_name, [_click(100 + n, n % 2) for n in range(10)])
    # WHEN the mapping delivers the batch
    esm.drain()
    # THEN one partial failure: the retry starts at the first failed record and lands only the failed ones
    assert len(refused) == 1
    assert (esm.stats.invocations, esm.stats.partial_failures, esm.stats.function_errors) == (2, 1, 0)
    first, retry = sorted(stream_manifests(local_stack, mapping.stream_name, since), key=lambda m: m["ingested_at"])
    assert (int(first["records_landed"]), int(first["records_failed"])) == (5, 5)
    assert int(retry["records_received"]) == 9
    assert (int(retry["records_landed"]), int(retry["records_replayed"])) == (5, 4)
    assert _landed_ids(local_stack, [first, retry]) == [f"EIT{100 + n:07d}" for n in range(10)]


def test_a_function_error_bisects_the_batch_and_gives_up_only_the_poison_record(
    local_stack: Any, since: str, inject: Callable[..., list[str]]
) -> None:
    # GIVEN one record that makes every write holding it fail in a way retries cannot fix
    mapping = _mapping(local_stack)
    esm = EventSourceMapping(local_stack.lambdas, mapping)
    inject(lambda key, body: "AccessDenied" if b"EIT0000207" in body else None)
    put_records(local_stack.session, mapping.stream_name, [_click(200 + n) for n in range(8)])
    # WHEN the mapping delivers it
    esm.drain()
    # THEN the batch is split until the record is alone, which goes to the failure queue after its retries
    assert esm.stats.function_errors >= mapping.max_retries + 1 and esm.stats.bisections >= 1
    assert esm.stats.records_to_destination == 1
    manifests = stream_manifests(local_stack, mapping.stream_name, since)
    assert _landed_ids(local_stack, manifests) == [f"EIT{200 + n:07d}" for n in range(8) if n != 7]
    sqs = local_stack.session.client("sqs")
    url = sqs.get_queue_url(QueueName=local_stack.stack.get_att("StreamFailureQueue", "QueueName"))["QueueUrl"]
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    info = json.loads(messages[-1]["Body"])
    assert info["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert info["KinesisBatchInfo"]["batchSize"] == 1 and info["KinesisBatchInfo"]["streamArn"] == mapping.stream_arn


def test_a_batch_delivered_again_lands_nothing_twice(local_stack: Any, since: str) -> None:
    # GIVEN a batch the function has ingested
    mapping = _mapping(local_stack)
    esm = EventSourceMapping(local_stack.lambdas, mapping)
    seen: list[Any] = []
    local_stack.lambdas.hooks.append(lambda function, event: seen.append(event))
    try:
        put_records(local_stack.session, mapping.stream_name, [_click(300 + n, n % 3) for n in range(12)])
        esm.drain()
        before = stream_manifests(local_stack, mapping.stream_name, since)
        # WHEN the mapping delivers the same batch again (as after a timeout)
        response = local_stack.lambdas.invoke(mapping.function, seen[0])
    finally:
        local_stack.lambdas.hooks.clear()
    # THEN the same objects are overwritten and each event is in the raw zone once
    assert response == {"batchItemFailures": []}
    after = stream_manifests(local_stack, mapping.stream_name, since)
    assert len(after) == len(before) == 1
    assert after[0]["output_keys"] == before[0]["output_keys"]
    assert _landed_ids(local_stack, after) == [f"EIT{300 + n:07d}" for n in range(12)]


def test_the_stream_command_produces_and_delivers(local_stack: Any) -> None:
    run = run_stream(local_stack, dataset="clickstream", rate=100, seconds=1.5, seed=22, window=0.5)
    summary = run.summary()
    assert summary["produced"] == 150 and summary["to failure queue"] == 0
    assert summary["landed"] + summary["quarantined"] == 150


@dataclass
class FirehoseRun:
    """Events streamed through Firehose on a stack of its own, then one pipeline run over their dataset."""

    box: Any
    stream: StreamRun
    execution: Execution


@pytest.fixture(scope="module")
def firehose_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirehoseRun]:
    """The stack deployed with StreamDelivery=firehose (the mapping disabled, Firehose and its transformation on):
    300 events streamed (a few invalid, a few arriving hours late), then the pipeline run over them and small files
    of the other datasets (the curated tables the run rebuilds read them all)."""
    from lakebox.app.sample import SampleSpec, write_customers, write_products, write_sales
    from lakebox.runtime import lakebox

    saved = dict(os.environ)
    folder = tmp_path_factory.mktemp("reference")
    end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    spec = SampleSpec(seed=23, sales=200, products=20, customers=50, bad_rate=0.0, end=end)
    with lakebox(ROOT, parameters={"StreamDelivery": "firehose", "RawSettleSeconds": "0"}, reuse=False) as box:
        for generated in (
            write_products(folder / "p.csv", spec),
            write_customers(folder / "c.csv", spec),
            write_sales(folder / "s.jsonl", spec),
        ):
            _, deliveries = box.put_file(generated.path, generated.dataset)
            assert all(delivery.ok for delivery in deliveries), deliveries
        stream = run_stream(box, dataset="clickstream", rate=300, seconds=1, seed=23, bad_rate=0.05, window=0.5)
        datasets = ["products", "customers", "sales", "clickstream"]
        execution = execute(box, "PipelineStateMachine", {"datasets": datasets, "forecast": False})
        yield FirehoseRun(box, stream, execution)
    os.environ.clear()
    os.environ.update(saved)


FIREHOSE_KEY = re.compile(
    r"^clickstream/year=(\d{4})/month=(\d{2})/day=(\d{2})/hour=(\d{2})/([0-9a-f]{16})-lakebox-clickstream-1-.+\.json\.gz$"
)


def test_firehose_delivery_lands_hour_partitions_accounted_for_and_the_pipeline_processes_them(
    firehose_run: FirehoseRun,
) -> None:
    # GIVEN StreamDelivery=firehose  WHEN events are streamed into the dataset's stream
    box, run = firehose_run.box, firehose_run.stream
    stats = run.firehose
    assert stats is not None and run.delivery == "firehose"
    # THEN valid records land in event-hour partitions, each object named by its transformation batch
    s3 = box.session.client("s3")
    raw = box.bucket("RawBucket")
    lines_by_prefix: dict[str, int] = {}
    for key in stats.objects:
        match = FIREHOSE_KEY.match(key)
        assert match, key
        body = gzip.decompress(s3.get_object(Bucket=raw, Key=key)["Body"].read())
        events = [json.loads(line) for line in body.splitlines()]
        hour = "{}-{}-{}T{}".format(*match.groups()[:4])
        assert all(e["event_time"].startswith(hour) for e in events), key
        assert all(e["_source_key"].startswith("kinesis://lakebox-clickstream/") for e in events)
        prefix = key[: key.index("-", key.rindex("/")) + 1]
        lines_by_prefix[prefix] = lines_by_prefix.get(prefix, 0) + len(events)
    assert len({k.split("/hour=")[1][:2] for k in stats.objects}) >= 2
    assert all(k.startswith("_quarantine/_firehose/clickstream/processing-failed/") for k in stats.error_objects)
    # AND every record is accounted for by the batches' manifests: received = landed + quarantined (+ repeats)
    assert run.manifests and all(m["origin"] == "firehose" for m in run.manifests)
    totals = run.totals()
    assert totals["records_received"] == run.produced == 300
    assert totals["records_received"] == totals["records_landed"] + totals["records_quarantined"]
    assert totals["records_landed"] == stats.ok and totals["records_quarantined"] == stats.processing_failed
    assert totals["records_quarantined"] == run.produced_bad > 0
    counted = {p: int(n) for m in run.manifests for p, n in m["output_prefixes"].items()}
    assert counted == lines_by_prefix

    # AND WHEN the pipeline runs over the dataset
    execution = firehose_run.execution
    # THEN it succeeds: the Spark job read the hour partitions, the quality gate reconciled them with the manifests
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    (report,) = [d for d in execution.output["quality"]["datasets"] if d["dataset"] == "clickstream"]
    row_count = next(r for r in report["rules"] if r["rule"] == "row_count")
    assert row_count["passed"] and row_count["observed"]["raw_files_without_manifest"] == 0
    assert row_count["observed"]["records_landed"] == stats.ok == row_count["observed"]["rows_read"]
    primary = str(box.stack.ref("PrimaryWorkGroup"))
    processed = box.athena.query("SELECT count(*) AS n FROM clickstream", workgroup=primary).rows
    assert processed == [(stats.ok,)]

"""Benchmark: records/s through the stream ingestion at batch sizes 100, 1,000 and 10,000 beside the file path.

Run with `.venv/bin/python bench/stream.py [--records N] [--repeat K]`. The same generated clickstream events go
through `ingest_batch` (what IngestStreamFunction runs: Powertools' batch processor, decoding, validation,
deduplication, one object per event hour, the replay ledger and the manifest) in Kinesis batches as the event source
mapping sends them, and through `ingest_object` (what IngestFileFunction runs) as one JSON-lines object. AWS is a
moto server in this process, so every S3 and DynamoDB call is a real HTTP round trip. Prints a table, then one line
of `key=value` figures.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import io
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "common")]

BATCH_SIZES = (100, 1_000, 10_000)
STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/bench-clickstream"
SHARD = "shardId-000000000000"
NOW = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)


def kinesis_batches(payloads: list[bytes], size: int, first: int) -> Iterator[dict[str, Any]]:
    """The payloads as Kinesis events of `size` records, sequence numbers from `first`."""
    arrival = NOW.timestamp()
    for start in range(0, len(payloads), size):
        records = []
        for offset, data in enumerate(payloads[start : start + size]):
            seq = str(first + start + offset)
            records.append(
                {
                    "kinesis": {
                        "kinesisSchemaVersion": "1.0",
                        "partitionKey": "bench",
                        "sequenceNumber": seq,
                        "data": base64.b64encode(data).decode(),
                        "approximateArrivalTimestamp": arrival,
                    },
                    "eventSource": "aws:kinesis",
                    "eventVersion": "1.0",
                    "eventID": f"{SHARD}:{seq}",
                    "eventName": "aws:kinesis:record",
                    "invokeIdentityArn": "arn:aws:iam::123456789012:role/bench",
                    "awsRegion": "us-east-1",
                    "eventSourceARN": STREAM_ARN,
                }
            )
        yield {"Records": records}


def _median_run(repeat: int, run: Callable[[int], tuple[float, int, int]]) -> tuple[float, int, int]:
    results = [run(i) for i in range(repeat)]
    seconds = statistics.median(r[0] for r in results)
    return seconds, results[0][1], results[0][2]


def main() -> None:
    """Measure and print the table."""
    import boto3
    from moto.server import ThreadedMotoServer

    from datalake.aws import AwsClients
    from datalake.contracts import get_dataset
    from datalake.ingest import ObjectRef, content_claim_key, ingest_object
    from datalake.settings import Settings
    from datalake.streaming import ingest_batch
    from lakebox.app.stream import event_payloads

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bad-rate", type=float, default=0.02)
    args = parser.parse_args()

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        POWERTOOLS_TRACE_DISABLED="true",
    )
    session = boto3.Session(region_name="us-east-1")
    for bucket in ("landing", "raw"):
        session.client("s3").create_bucket(Bucket=bucket)
    for table, key in (("manifests", "object_id"), ("idempotency", "id")):
        session.client("dynamodb").create_table(
            TableName=table,
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    clients = AwsClients.from_session(session)
    settings = Settings(raw_bucket="raw", manifests_table="manifests", idempotency_table="idempotency")
    dataset = get_dataset("clickstream")
    payloads = [data for _, data, _ in event_payloads(dataset, 7, args.bad_rate, args.records, 0, now=NOW)]
    body = b"\n".join(payloads) + b"\n"

    def file_run(i: int) -> tuple[float, int, int]:
        key = f"clickstream/bench-{i}.jsonl"
        put = clients.s3.put_object(Bucket="landing", Key=key, Body=body)
        ref = ObjectRef("landing", key, put.get("VersionId"), put["ETag"].strip('"'), len(body))
        start = time.perf_counter()
        manifest = ingest_object(ref, settings=settings, clients=clients, now=NOW)
        seconds = time.perf_counter() - start
        # every run puts the same bytes: drop the content claim, so the next run is a first ingestion, not a duplicate
        claim = {"object_id": content_claim_key(dataset.name, manifest.sha256)}
        clients.dynamodb.Table("manifests").delete_item(Key=claim)
        return seconds, 1, len(manifest.output_keys) + len(manifest.quarantine_keys)

    def stream_run(size: int) -> Callable[[int], tuple[float, int, int]]:
        def run(i: int) -> tuple[float, int, int]:
            events = list(kinesis_batches(payloads, size, first=10**12 * (i + 1)))
            objects = 0
            start = time.perf_counter()
            for event in events:
                response, manifests = ingest_batch(event, dataset, settings=settings, clients=clients, now=NOW)
                if response["batchItemFailures"]:
                    raise SystemExit(f"unexpected failures: {response['batchItemFailures'][:3]}")
                objects += sum(len(m.output_keys) + len(m.quarantine_keys) for m in manifests)
            return time.perf_counter() - start, len(events), objects

        return run

    rows: list[dict[str, Any]] = []
    with contextlib.redirect_stdout(io.StringIO()):
        ingest_batch(next(kinesis_batches(payloads[:10], 10, first=1)), dataset, settings=settings, clients=clients)
        seconds, calls, objects = _median_run(args.repeat, file_run)
        rows.append({"path": "file (ingest_object)", "batch": args.records, "calls": calls, "seconds": seconds})
        rows[-1]["objects"] = objects
        for size in BATCH_SIZES:
            seconds, calls, objects = _median_run(args.repeat, stream_run(size))
            rows.append({"path": "stream (ingest_batch)", "batch": size, "calls": calls, "seconds": seconds})
            rows[-1]["objects"] = objects
    server.stop()

    load = os.getloadavg()[0]
    print(
        f"{args.records:,} clickstream events ({args.bad_rate:.0%} invalid), median of {args.repeat} runs; "
        f"{os.cpu_count()} CPUs, load average {load:.1f}"
    )
    header = f"{'path':<24}{'batch size':>12}{'invocations':>13}{'objects':>10}{'seconds':>10}{'records/s':>12}"
    print(header)
    print("-" * len(header))
    figures = {"records": str(args.records)}
    for row in rows:
        rate = args.records / row["seconds"]
        print(
            f"{row['path']:<24}{row['batch']:>12,}{row['calls']:>13,}{row['objects']:>10,}"
            f"{row['seconds']:>10.2f}{rate:>12,.0f}"
        )
        name = "file_rps" if row["path"].startswith("file") else f"stream_rps_{row['batch']}"
        figures[name] = f"{rate:.0f}"
    print(" ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()

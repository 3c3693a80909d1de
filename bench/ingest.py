"""Benchmark: the file-ingestion engine beside pyarrow's JSON-to-Parquet streaming, its memory, init and size.

Run with `make bench` (or `.venv/bin/python bench/ingest.py [--rows N] [--repeat K] [--big-rows N]`). Each
measurement runs in a fresh child process so its peak RSS is its own; S3 is lakebox's local endpoint (moto) in this
process. Both the baseline and the engine import pyarrow before their clocks start. Handler init is the time a fresh
process takes to import `functions/ingest_file/app.py` (module init included) with the variables Lambda sets, against
a bare `import boto3; boto3.client("s3")`.
The ingest function's unzipped size is its code, CommonLayer (the closure of `layers/common/requirements.txt` as
installed here, plus the datalake package) and the AWS SDK for pandas layer's published size.
Prints a table; the CPU each side spent within its clock (the engine's process, and the local endpoint serving it from
this process on the same cores: on a shared machine the wall-clock ratio swings with the load, the CPU much less);
then one line of `key=value` figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "common")]

PEAK_RSS = """
def peak_rss_mb():
    # VmHWM belongs to this process image (getrusage's maxrss would include the forking parent's)
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0
"""

CHILD_ENGINE = (
    PEAK_RSS
    + """
import json, sys, time, boto3
import numpy, pyarrow.compute, pyarrow.json  # imported before the clock, as the baseline imports pyarrow
from datalake.aws import AwsClients
from datalake.ingest import ObjectRef, ingest_object
from datalake.settings import Settings
bucket, key, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
clients = AwsClients.from_session(boto3.Session(region_name="us-east-1"))
settings = Settings(raw_bucket="raw", manifests_table="manifests")
head = clients.s3.head_object(Bucket=bucket, Key=key)
ref = ObjectRef(bucket, key, head.get("VersionId"), head["ETag"].strip('"'), size)
start, cpu = time.perf_counter(), time.process_time()
manifest = ingest_object(ref, settings=settings, clients=clients)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"seconds": seconds, "cpu": cpu, "records": manifest.records_read, "landed": manifest.records_landed,
                  "rss_mb": peak_rss_mb()}))
"""
)

CHILD_BASELINE = (
    PEAK_RSS
    + """
import json, sys, time
import pyarrow.json as pj, pyarrow.parquet as pq
path, out = sys.argv[1], sys.argv[2]
start, cpu = time.perf_counter(), time.process_time()
reader = pj.open_json(path, read_options=pj.ReadOptions(block_size=16 << 20))
rows = 0
writer = None
for batch in reader:
    if writer is None:
        writer = pq.ParquetWriter(out, batch.schema)
    writer.write_batch(batch, row_group_size=65536)
    rows += batch.num_rows
writer.close()
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"seconds": seconds, "cpu": cpu, "records": rows, "rss_mb": peak_rss_mb()}))
"""
)


CHILD_BOTO3 = """
import time
start = time.perf_counter()
import boto3
boto3.client("s3")
print(time.perf_counter() - start)
"""

CHILD_HANDLER = """
import sys, time
start = time.perf_counter()
sys.path.insert(0, sys.argv[1])
import app
print(time.perf_counter() - start)
"""

SDK_PANDAS_LAYER_MB = 204.0
"""Unzipped size of the AWS SDK for pandas layer, the largest recent release (3.16.1: 204 MB; 3.15 and 3.16.0:
167 MB), as measured in aws/aws-sdk-pandas issue 3331. Lambda's limit is 262,144,000 bytes for a function with
its layers."""
LAMBDA_UNZIPPED_LIMIT_MB = 262.144


def _installed_mb(requirements: list[str]) -> float:
    """Bytes (MB) the requirements and everything they require take once installed, as installed here."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen: dict[str, int] = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue
        name = dist.metadata["Name"].lower()
        if name in seen:
            continue
        seen[name] = sum(f.size or 0 for f in dist.files or [])
        for spec in dist.requires or []:
            dep = Requirement(spec)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in (req.extras or {""})):
                todo.append(dep)
    return sum(seen.values()) / 1e6


def _tree_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts) / 1e6


def function_size_mb() -> dict[str, float]:
    """The ingest function's unzipped size, by part: its code, CommonLayer, the SDK for pandas layer."""
    lines = (ROOT / "layers" / "common" / "requirements.txt").read_text().splitlines()
    requirements = [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]
    common = _installed_mb(requirements) + _tree_mb(ROOT / "layers" / "common" / "datalake")
    return {
        "function": _tree_mb(ROOT / "functions" / "ingest_file"),
        "common_layer": common,
        "sdk_pandas_layer": SDK_PANDAS_LAYER_MB,
    }


def _timed(code: str, *args: str, env: dict[str, str], repeat: int) -> float:
    """The median of `repeat` fresh processes' own timing of `code` (printed as its last line)."""
    runs = []
    for _ in range(repeat):
        result = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=False, timeout=300
        )
        if result.returncode != 0:
            raise SystemExit(f"benchmark child failed:\n{result.stderr[-3000:]}")
        runs.append(float(result.stdout.strip().splitlines()[-1]))
    return statistics.median(runs)


def init_seconds(env: dict[str, str], repeat: int) -> tuple[float, float]:
    """Handler init and a bare boto3 S3 client's init, each the median over fresh processes."""
    handler_env = {
        **env,
        # What Lambda sets in every function's environment and the libraries read at import: with it the X-Ray SDK
        # takes its Lambda path (no sampling-rule poller, so no X-Ray clients built) and Tracer is on, patching the
        # AWS SDK as it does under the template's `Tracing: Active`.
        "LAMBDA_TASK_ROOT": str(ROOT / "functions" / "ingest_file"),
        "AWS_LAMBDA_FUNCTION_NAME": "ingest_file",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
        "DL_RAW_BUCKET": "raw",
        "DL_MANIFESTS_TABLE": "manifests",
        "DL_IDEMPOTENCY_TABLE": "idempotency",
        "POWERTOOLS_SERVICE_NAME": "ingest_file",
    }
    handler = _timed(CHILD_HANDLER, str(ROOT / "functions" / "ingest_file"), env=handler_env, repeat=repeat)
    bare = _timed(CHILD_BOTO3, env=env, repeat=repeat)
    return handler, bare


def _write_clean_sales(path: Path, rows: int) -> None:
    """A JSON-lines sales file with no defects (pyarrow's reader rejects a whole file on one bad row)."""
    from lakebox.app.sample import SampleSpec, sales_lines

    block = [line for line, _ in sales_lines(SampleSpec(sales=min(rows, 1_000_000), bad_rate=0.0, duplicate_rate=0))]
    with path.open("wb") as out:
        written = 0
        while written < rows:
            take = block[: rows - written]
            out.write(b"\n".join(take) + b"\n")
            written += len(take)


def _child(code: str, *args: str, env: dict[str, str]) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=False, timeout=1800
    )
    if result.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{result.stderr[-3000:]}")
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def _forget_originals(s3: Any) -> None:
    """Remove the original an earlier run kept (ADR 0018), so every run pays for keeping it, as a new object does."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="raw", Prefix="_originals/"):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket="raw", Key=obj["Key"])


def main() -> None:
    """Measure and print the table."""
    import logging

    import boto3

    from lakebox.services.endpoint import LocalEndpoint

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=5_000_000, help="rows of the peak-memory run (0 skips it)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    server = LocalEndpoint().start()
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": server.url,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "layers" / "common")]),
    }
    session = boto3.Session(aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1")
    s3 = session.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])
    for bucket in ("landing", "raw"):
        s3.create_bucket(Bucket=bucket)
    session.client("dynamodb", endpoint_url=env["AWS_ENDPOINT_URL"]).create_table(
        TableName="manifests",
        KeySchema=[{"AttributeName": "object_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "object_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )

    rows_out = []
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "sales.jsonl"
        print(f"generating {args.rows:,} rows ...", file=sys.stderr)
        _write_clean_sales(source, args.rows)
        size = source.stat().st_size
        s3.upload_file(str(source), "landing", "sales/bench.jsonl")
        engine, baseline = [], []
        for attempt in range(args.repeat):
            print(f"run {attempt + 1}/{args.repeat} ...", file=sys.stderr)
            baseline.append(_child(CHILD_BASELINE, str(source), str(Path(folder) / "out.parquet"), env=env))
            _forget_originals(s3)
            endpoint_cpu = time.process_time()  # the local S3 serves the engine from threads of this process
            engine.append(_child(CHILD_ENGINE, "landing", "sales/bench.jsonl", str(size), env=env))
            engine[-1]["endpoint_cpu"] = time.process_time() - endpoint_cpu
            assert engine[-1]["records"] == args.rows == baseline[-1]["records"]
        big: dict[str, float] | None = None
        if args.big_rows:
            print(f"peak-memory run on {args.big_rows:,} rows ...", file=sys.stderr)
            big_source = Path(folder) / "big.jsonl"
            _write_clean_sales(big_source, args.big_rows)
            s3.upload_file(str(big_source), "landing", "sales/big.jsonl")
            big_source.unlink()
            big = _child(CHILD_ENGINE, "landing", "sales/big.jsonl", str(args.big_rows), env=env)
            assert big["records"] == args.big_rows
    server.stop()
    print("handler init ...", file=sys.stderr)
    handler_init, boto3_init = init_seconds(env, max(args.repeat, 5))
    sizes = function_size_mb()

    mb = size / 1e6
    for name, runs in (
        ("baseline: pyarrow open_json -> ParquetWriter (local file)", baseline),
        ("ingest engine (S3 in, validate, gzip JSON lines out)", engine),
    ):
        seconds = statistics.median(r["seconds"] for r in runs)
        rows_out.append((name, seconds, args.rows / seconds, mb / seconds, max(r["rss_mb"] for r in runs)))
    ratio = rows_out[0][1] / rows_out[1][1]
    print(f"\n{args.rows:,} sales rows, {mb:,.0f} MB of JSON lines; median of {args.repeat} runs\n")
    print(f"| {'path':<58} | {'median s':>8} | {'records/s':>11} | {'MB/s':>7} | {'peak RSS MB':>11} |")
    print(f"|{'-' * 60}|{'-' * 10}|{'-' * 13}|{'-' * 9}|{'-' * 13}|")
    for name, seconds, rps, mbps, rss in rows_out:
        print(f"| {name:<58} | {seconds:>8.2f} | {rps:>11,.0f} | {mbps:>7.1f} | {rss:>11.0f} |")
    if big:
        print(
            f"| {'ingest engine, ' + format(args.big_rows, ',') + ' rows':<58} | {big['seconds']:>8.2f} | "
            f"{args.big_rows / big['seconds']:>11,.0f} | {'':>7} | {big['rss_mb']:>11.0f} |"
        )
    print(
        f"\nCPU within the clock (medians): baseline {statistics.median(r['cpu'] for r in baseline):.2f} s; engine "
        f"{statistics.median(r['cpu'] for r in engine):.2f} s in its process and "
        f"{statistics.median(r['endpoint_cpu'] for r in engine):.2f} s in the local endpoint, on the same cores"
    )
    print(
        f"handler init {handler_init * 1000:.0f} ms, bare boto3.client('s3') {boto3_init * 1000:.0f} ms"
        " (medians over fresh processes)"
    )
    total = sum(sizes.values())
    parts = ", ".join(f"{name} {value:.1f}" for name, value in sizes.items())
    verdict = "within" if total <= LAMBDA_UNZIPPED_LIMIT_MB else "OVER"
    print(f"ingest function unzipped with its layers: {total:.1f} MB ({parts}); {verdict} Lambda's 262.1 MB")
    rss_big = f"{big['rss_mb']:.0f}" if big else "n/a"
    print(
        f"\ningest_vs_baseline={ratio:.2f} peak_rss_mb_1m={rows_out[1][4]:.0f} peak_rss_mb_5m={rss_big} "
        f"init_vs_boto3={handler_init / boto3_init:.2f}"
    )


if __name__ == "__main__":
    main()

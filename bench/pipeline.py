"""Benchmark: the whole local pipeline (`lakebox run` style) per stage, and what the curated queries scan.

Run with `.venv/bin/python bench/pipeline.py [--rows 100000 1000000]`. For each size: generate sample data, ingest
it through the template's rules, run the pipeline state machine, and time each stage by its task calls (stages that
run at once, such as the raw crawl beside the quality gate and the curation plan of ADR 0042, each count their own
time, so the stage rows may add up to more than the run). Then the bytes each curated table's queries scanned, beside
the raw JSON bytes of the sales they summarize (target: 1% or less), and the forecast step: its wall time (export,
SageMaker training and batch transform run locally) and both backtest errors (sMAPE of the model and of the
seasonal-naive baseline, measured on the same held-out days). Prints a table per size, then one line of `key=value`
figures.

Each size also prints where the time went: every state of the execution with its wall time (from the execution's
history: the sum over its entries of exit minus entry), the Spark job's actions (every DataFrame action, read and write
the job script calls, grouped by its line in the script, with the Spark jobs it launched, plus the staging between the
local S3 and the job's folders; the job processes its datasets in threads at once, so their actions' seconds overlap and
may add up to more than the stage, and a Spark job counts under every action running while it started), and a bare
PySpark job run in the same process on the same raw files (read the JSON, write Parquet) as the floor the Spark stage is
compared with (`spark_vs_bare`). Both sides run warm: the box's SparkSession is started before the run, as `lakebox up`
holds it, the bare job runs once on a cold JVM before the pipeline (printed as the warm-up) and is measured after
it, and the job itself has run once on generated records, as `lakebox up` runs it in the background (ADR 0038). The
last line is `pipeline_s=S spark_vs_bare=R max_curated_scan_pct=P` for the last size. Then the same pipeline runs again
on the same box with nothing new (`nothing_new_s`, target 10 s or less, and the forecast not retrained), with its
states.

`.venv/bin/python bench/pipeline.py --history-days 0 1 10 30 [--rows 100000 1000000]` measures the processed
stage alone (the Spark job's `run` on local files) as history grows: for each size, a processed zone holding that
many rows per day for each number of days (0 is the baseline in the same run), then a new raw batch of that many
rows for one new day, 1% of them corrections of keys already in history (moved from their dates). It prints the
job's wall time (median of `--repeat`) and the bytes it read from disk (Hadoop's file-system counters), with ratios
to the baseline, so the cost of deduplicating across all of history is visible.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import gzip
import inspect
import logging
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "common")]

STAGES = {
    "Catalog Raw": "catalog",
    "Get Crawler": "catalog",
    "Run Spark Job": "spark",
    "Run Spark On EMR Serverless": "spark",
    "Check Quality": "quality",
    "Plan Curation": "ctas",
    "Run Curated Query": "ctas",
    "Plan Forecast": "forecast",
    "Run Export Query": "forecast",
    "Run Publish Query": "forecast",
    "Write Transform Request": "forecast",
    "Train Forecast Model": "forecast",
    "Create Forecast Model": "forecast",
    "Predict Forecast": "forecast",
}


def _timed(seconds: dict[str, float]) -> Callable[[Any], Any]:
    """Middleware adding each stage's wall time to `seconds`: while any of its tasks runs (tasks of a stage that run
    at once, such as a wave's curated queries, count once)."""
    from lakebox.sfn import TaskContext

    running: dict[str, int] = defaultdict(int)
    since: dict[str, float] = {}
    lock = threading.Lock()

    def middleware(handler: Any) -> Any:
        def timed(parameters: Any, task: TaskContext) -> Any:
            stage = STAGES.get(task.state_name, "notify")
            with lock:
                if not running[stage]:
                    since[stage] = time.perf_counter()
                running[stage] += 1
            try:
                return handler(parameters, task)
            finally:
                with lock:
                    running[stage] -= 1
                    if not running[stage]:
                        seconds[stage] += time.perf_counter() - since[stage]

        return timed

    return middleware


DATASETS = ["sales", "products", "customers", "clickstream"]

# What launches Spark work from a job script: actions, reads (schema inference, listing) and writes.
SPARK_ACTIONS = {
    "pyspark.sql.dataframe.DataFrame": (
        "count",
        "collect",
        "take",
        "first",
        "head",
        "tail",
        "toPandas",
        "toLocalIterator",
        "isEmpty",
        "show",
        "foreach",
        "foreachPartition",
        "checkpoint",
        "localCheckpoint",
    ),
    "pyspark.sql.readwriter.DataFrameReader": ("load", "json", "parquet", "csv", "text", "orc", "table"),
    "pyspark.sql.readwriter.DataFrameWriter": (
        "save",
        "parquet",
        "json",
        "csv",
        "text",
        "orc",
        "insertInto",
        "saveAsTable",
    ),
    "pyspark.sql.session.SparkSession": ("sql",),
}


@dataclass
class ActionProfile:
    """Wall time and Spark jobs per (action, call site in the job script), and the staging around the job."""

    seconds: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    jobs: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    order: list[tuple[str, str]] = field(default_factory=list)

    def add(self, action: str, site: str, seconds: float, jobs: int) -> None:
        key = (action, site)
        if key not in self.seconds:
            self.order.append(key)
        self.seconds[key] += seconds
        self.calls[key] += 1
        self.jobs[key] += jobs


def _call_site() -> str:
    """The innermost frame outside PySpark and this file: the job script's line that called the action."""
    for frame in inspect.stack()[2:]:
        name = frame.filename
        if "/pyspark/" in name or name == __file__:
            continue
        return f"{Path(name).name}:{frame.lineno} {frame.function}"
    return "?"


@contextmanager
def spark_action_profile() -> Iterator[ActionProfile]:
    """Time every Spark action, read and write made in this process (outermost call only) and the job's staging.

    The methods are wrapped on their classes for the duration, so the job script runs unchanged; the jobs an action
    launched are counted with Spark's status tracker (jobs outside any job group). The SparkSession is not started
    here: its start stays in the Spark stage, where the pipeline pays it, and shows as its own row.
    """
    import importlib

    from lakebox.services import glue as local_glue
    from lakebox.services.glue import local_spark

    profile = ActionProfile()
    depth = threading.local()
    originals: list[tuple[Any, str, Any]] = []

    def jobs() -> int:
        # Only called inside a Spark method, so the session exists and this is the cached one.
        return len(local_spark().sparkContext.statusTracker().getJobIdsForGroup())

    def wrap(action: str, method: Any, *, count_jobs: bool = True) -> Any:
        @functools.wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if getattr(depth, "n", 0):
                return method(*args, **kwargs)
            depth.n = 1
            before = jobs() if count_jobs else 0
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                launched = jobs() - before if count_jobs else 0
                depth.n = 0
                profile.add(action, _call_site(), elapsed, launched)

        return timed

    for qualified, names in SPARK_ACTIONS.items():
        module_name, class_name = qualified.rsplit(".", 1)
        cls = getattr(importlib.import_module(module_name), class_name)
        for name in names:
            if name in cls.__dict__:
                label = f"{'write.' if 'Writer' in class_name else 'read.' if 'Reader' in class_name else ''}{name}"
                originals.append((cls, name, cls.__dict__[name]))
                setattr(cls, name, wrap(label, cls.__dict__[name]))
    for owner, name, label in (
        (local_glue, "local_spark", "SparkSession (start once)"),
        (local_glue, "_plan", "plan inputs (S3 listing)"),
        (local_glue, "stage", "stage inputs from S3"),
        (local_glue.Mirror, "sync_back", "sync outputs to S3"),
    ):
        original = owner.__dict__[name]
        originals.append((owner, name, original))
        setattr(owner, name, wrap(label, original, count_jobs=False))
    try:
        yield profile
    finally:
        for owner, name, original in reversed(originals):
            setattr(owner, name, original)


def state_profile(execution: Any) -> list[tuple[str, int, float]]:
    """Each state entered, in order of first entry, with its entries and wall seconds from the execution history.

    A state's seconds are the sum over its entries of exit minus entry, which is the sum of exit timestamps minus the
    sum of entry timestamps whatever the pairing (so Map iterations running at once count each iteration's time).
    """
    entered: dict[str, list[float]] = defaultdict(list)
    exited: dict[str, list[float]] = defaultdict(list)
    for event in execution.history:
        if event.state is None:
            continue
        if event.type.endswith("StateEntered"):
            entered[event.state].append(event.timestamp.timestamp())
        elif event.type.endswith("StateExited"):
            exited[event.state].append(event.timestamp.timestamp())
    return [
        (state, len(starts), sum(exited[state]) - sum(starts[: len(exited[state])]))
        for state, starts in entered.items()
    ]


def bare_spark_job(session: Any, raw_bucket: str, datasets: list[str]) -> dict[str, float]:
    """The floor for the Spark stage: plain PySpark reading the same raw files and writing Parquet, nothing else.

    The raw zone's objects of `datasets` are copied to a local folder first (timed apart, as the job's own staging
    is); then each dataset's JSON lines are read (schema inferred) and written as Parquet partitioned like the raw
    zone (year/month/day), on the process's one SparkSession.
    """
    from lakebox.services.glue import local_spark

    spark = local_spark()
    s3 = session.client("s3")
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as folder:
        root = Path(folder)
        start = time.perf_counter()
        present = []
        for dataset in datasets:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=raw_bucket, Prefix=f"{dataset}/")
            for item in (item for page in pages for item in page.get("Contents", [])):
                key = str(item["Key"])
                if key.endswith("/") or "/_" in key or "/." in key:
                    continue
                dest = root / "raw" / key
                dest.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(raw_bucket, key, str(dest))
                if dataset not in present:
                    present.append(dataset)
        staging = time.perf_counter() - start
        start = time.perf_counter()
        for dataset in present:
            frame = spark.read.json(str(root / "raw" / dataset))
            partitions = [c for c in ("year", "month", "day") if c in frame.columns]
            frame.write.mode("overwrite").partitionBy(*partitions).parquet(str(root / "parquet" / dataset))
        return {"seconds": time.perf_counter() - start, "staging": staging, "datasets": len(present)}


def measure(rows: int, days: int = 56) -> dict[str, Any]:
    """Run the pipeline once on `rows` generated sales; return stage seconds and bytes."""
    from lakebox.app.sample import SampleSpec, generate
    from lakebox.runtime import lakebox
    from lakebox.sfn import run_execution

    end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    spec = SampleSpec(sales=rows, end=end, days=days, weekly_amplitude=0.3)
    seconds: dict[str, float] = defaultdict(float)
    with (
        tempfile.TemporaryDirectory() as folder,
        lakebox(ROOT, reuse=False, parameters={"RawSettleSeconds": "0"}) as box,
    ):
        files = generate(Path(folder), spec)
        sales = next(f for f in files if f.dataset == "sales")
        with gzip.open(sales.path, "rb") as raw:
            raw_json_bytes = sum(len(chunk) for chunk in iter(lambda: raw.read(1 << 20), b""))
        start = time.perf_counter()
        for generated in files:
            box.put_file(generated.path, generated.dataset)
        seconds["ingest"] = time.perf_counter() - start
        # The box's one SparkSession is up before the run, as under `lakebox up` (ADR 0025), and the JVM has run a
        # job (the bare one, on the same files) so that neither side of `spark_vs_bare` pays a cold JVM.
        from lakebox.services.glue import local_spark

        start = time.perf_counter()
        local_spark()
        session_start = time.perf_counter() - start
        warm_up = bare_spark_job(box.session, box.bucket("RawBucket"), DATASETS)
        # ... and the job has run once on generated records, as `lakebox up` runs it in the background (ADR 0038)
        from lakebox.app.warm import warm_spark

        start = time.perf_counter()
        if not all(outcome.succeeded for outcome in warm_spark(box)):
            raise SystemExit("the Spark warm-up failed: see the log")
        job_warm_up = time.perf_counter() - start
        definition, _ = box.stack.state_machine("PipelineStateMachine")
        integrations = box.integrations()
        with spark_action_profile() as actions:
            start = time.perf_counter()
            execution = run_execution(
                definition,
                {"datasets": DATASETS},
                integrations.with_middleware(_timed(seconds)),
                state_machine_arn=str(box.stack.ref("PipelineStateMachine")),
            )
            seconds["pipeline total"] = time.perf_counter() - start
        again: Any = None
        if execution.succeeded:
            start = time.perf_counter()
            again = run_execution(
                definition,
                {"datasets": DATASETS},
                integrations,
                state_machine_arn=str(box.stack.ref("PipelineStateMachine")),
            )
            seconds["nothing new"] = time.perf_counter() - start
        bare = bare_spark_job(box.session, box.bucket("RawBucket"), DATASETS) if execution.succeeded else {}
        bare["session_start"], bare["cold"], bare["job_warm_up"] = session_start, warm_up["seconds"], job_warm_up
    if execution.status != "SUCCEEDED":
        raise SystemExit(f"pipeline {execution.status}: {execution.error}: {execution.cause}")
    scanned: dict[str, int] = defaultdict(int)
    for query in execution.output.get("queries") or []:
        scanned[str(query.get("table"))] += int(query.get("bytes_scanned") or 0)
    forecast = execution.output.get("forecast") or {}
    if forecast.get("status") != "SUCCEEDED":
        raise SystemExit(f"forecast {forecast.get('status')}: {forecast.get('error')}: {forecast.get('cause')}")
    metrics = {str(m["MetricName"]): float(m["Value"]) for m in forecast.get("metrics") or []}
    if again.status != "SUCCEEDED":
        raise SystemExit(f"second run {again.status}: {again.error}: {again.cause}")
    return {
        "again": again,
        "seconds": dict(seconds),
        "scanned": dict(scanned),
        "raw_json_bytes": raw_json_bytes,
        "metrics": metrics,
        "states": state_profile(execution),
        "actions": actions,
        "bare": bare,
    }


def print_profile(result: dict[str, Any]) -> None:
    """Print the per-state and per-Spark-action tables and the bare job beside the Spark stage."""
    total = result["seconds"]["pipeline total"]
    print(f"\n| {'state':<30} | {'entries':>7} | {'wall s':>8} | {'% of run':>8} |")
    print(f"|{'-' * 32}|{'-' * 9}|{'-' * 10}|{'-' * 10}|")
    for state, entries, seconds in result["states"]:
        print(f"| {state:<30} | {entries:>7} | {seconds:>8.2f} | {100 * seconds / total:>7.1f}% |")
    actions: ActionProfile = result["actions"]
    print(f"\n| {'Spark action':<26} | {'call site':<44} | {'calls':>5} | {'jobs':>4} | {'wall s':>7} |")
    print(f"|{'-' * 28}|{'-' * 46}|{'-' * 7}|{'-' * 6}|{'-' * 9}|")
    for key in sorted(actions.order, key=lambda k: -actions.seconds[k]):
        action, site = key
        print(
            f"| {action:<26} | {site[:44]:<44} | {actions.calls[key]:>5} | {actions.jobs[key]:>4} | "
            f"{actions.seconds[key]:>7.2f} |"
        )
    spark, bare = result["seconds"].get("spark", 0.0), result["bare"]
    print(f"\n| {'Spark stage vs bare job':<40} | {'wall s':>8} |")
    print(f"|{'-' * 42}|{'-' * 10}|")
    print(f"| {'Spark stage (Run Spark Job state)':<40} | {spark:>8.2f} |")
    print(f"| {'of which: profiled actions and staging':<40} | {sum(actions.seconds.values()):>8.2f} |")
    print(f"| {'bare job: JSON read, Parquet write':<40} | {bare['seconds']:>8.2f} |")
    print(f"| {'bare job: copying its raw files first':<40} | {bare['staging']:>8.2f} |")
    print(f"| {'SparkSession start (before the run)':<40} | {bare['session_start']:>8.2f} |")
    print(f"| {'bare job on a cold JVM (warm-up)':<40} | {bare['cold']:>8.2f} |")
    print(f"| {'job warm-up, generated records (as up)':<40} | {bare['job_warm_up']:>8.2f} |")
    print(f"| {'spark_vs_bare':<40} | {spark / bare['seconds']:>8.2f} |")
    again = result["again"]
    forecast = (again.output.get("forecast") or {}).get("status")
    print(f"\nThe same pipeline again, nothing new: {result['seconds']['nothing new']:.2f} s, forecast {forecast}")
    print(f"\n| {'state (nothing new)':<30} | {'entries':>7} | {'wall s':>8} |")
    print(f"|{'-' * 32}|{'-' * 9}|{'-' * 10}|")
    for state, entries, seconds in state_profile(again):
        print(f"| {state:<30} | {entries:>7} | {seconds:>8.2f} |")


HISTORY_START = dt.date(2026, 1, 1)


def _sales_frame(spark: Any, rows: int, day: dt.date, first_id: int, ingested: str) -> Any:
    """`rows` synthetic typed sales on `day` (ids from `first_id`), with lineage, as the processed zone holds them."""
    from pyspark.sql import functions as F

    start = dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()
    return spark.range(first_id, first_id + rows).select(
        F.format_string("T%010d", "id").alias("transaction_id"),
        F.timestamp_seconds(F.lit(start) + F.col("id") % 86_400).alias("event_time"),
        F.format_string("C%06d", F.col("id") % 5_000).alias("customer_id"),
        F.format_string("P%05d", F.col("id") % 300).alias("product_id"),
        F.format_string("S%03d", F.col("id") % 40).alias("store_id"),
        F.element_at(F.array(*map(F.lit, ["north", "south", "east", "west"])), (F.col("id") % 4 + 1).cast("int")).alias(
            "region"
        ),
        (F.col("id") % 5 + 1).cast("int").alias("quantity"),
        (F.col("id") % 9_000 / 100 + 1).cast("decimal(12,2)").alias("unit_price"),
        F.lit("USD").alias("currency"),
        F.lit("card").alias("payment_method"),
        F.lit("store").alias("channel"),
        F.lit("bench/history").alias("_source_key"),
        F.lit("v1").alias("_source_version"),
        F.col("id").alias("_line"),
        F.to_timestamp(F.lit(ingested)).alias("_ingested_at"),
    )


def _filesystem(spark: Any) -> Any:
    jvm = spark.sparkContext._jvm
    if jvm is None:
        raise RuntimeError("the SparkSession has no JVM")
    return jvm.org.apache.hadoop.fs.FileSystem


def _bytes_read(spark: Any) -> int:
    statistics = _filesystem(spark).getAllStatistics()
    return sum(int(s.getBytesRead()) for s in statistics if s.getScheme() == "file")


def measure_history(rows: int, days: int, repeat: int) -> dict[str, float]:
    """The Spark job's wall time and bytes read for a new batch of `rows` over `days` days of `rows` each."""
    import statistics

    from pyspark.sql import functions as F

    from datalake.contracts import get_dataset
    from glue import raw_to_processed as job
    from lakebox.services.glue import local_spark

    spark = local_spark()
    sales = get_dataset("sales")
    seconds, read = [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="bench-history-") as folder:
            root = Path(folder)
            processed = root / "processed" / "sales"
            for n in range(days):
                day = HISTORY_START + dt.timedelta(days=n)
                typed = _sales_frame(spark, rows, day, n * rows, "2026-06-01T00:00:00Z")
                frame = job.transform_derive(typed, sales).select(*job.processed_columns(sales))
                frame.coalesce(1).write.mode("overwrite").parquet(str(processed / f"event_date={day.isoformat()}"))
            new_day = HISTORY_START + dt.timedelta(days=days)
            corrections = min(rows // 100, days * rows)
            fresh = _sales_frame(spark, rows - corrections, new_day, days * rows, "2026-07-01T00:00:00Z")
            moved = _sales_frame(spark, corrections, new_day, 0, "2026-07-01T00:00:00Z") if corrections else None
            batch = fresh if moved is None else fresh.unionByName(moved)
            raw = root / "raw" / "sales" / f"year={new_day:%Y}" / f"month={new_day:%m}" / f"day={new_day:%d}"
            text = batch.select(*(F.col(c).cast("string").alias(c) for c in batch.columns))
            text.write.option("compression", "gzip").json(str(raw))
            args = {
                "raw_path": (root / "raw").as_uri(),
                "processed_path": (root / "processed").as_uri(),
                "datasets": "sales",
                "update_catalog": "false",
            }
            _filesystem(spark).clearStatistics()
            before = _bytes_read(spark)
            start = time.perf_counter()
            summary = job.run(spark, args)
            seconds.append(time.perf_counter() - start)
            read.append(_bytes_read(spark) - before)
            counts = summary["datasets"]["sales"]
            if counts["rows_quarantined"] or counts["rows_out"] - counts["rows_existing"] != rows - corrections:
                raise SystemExit(f"unexpected counts: {counts}")
    return {"seconds": statistics.median(seconds), "bytes": statistics.median(read)}


def main_history(sizes: list[int], days: list[int], repeat: int) -> None:
    """Measure the processed stage per size and history length; print the table and the figures."""
    figures = []
    print("warming Spark up (JVM start and first-job compilation are not the job's cost) ...", file=sys.stderr)
    measure_history(1_000, 1, 1)
    print(
        f"\n| {'new rows':>9} | {'history days':>12} | {'history rows':>12} | {'job s':>7} | {'x base':>6} | "
        f"{'MB read':>8} | {'x base':>6} |"
    )
    print(f"|{'-' * 11}|{'-' * 14}|{'-' * 14}|{'-' * 9}|{'-' * 8}|{'-' * 10}|{'-' * 8}|")
    for rows in sizes:
        base: dict[str, float] | None = None
        for n in sorted(set([0, *days])):
            print(f"processed stage: {rows:,} new rows over {n} days of history ...", file=sys.stderr)
            result = measure_history(rows, n, repeat)
            base = base or result
            print(
                f"| {rows:>9,} | {n:>12} | {rows * n:>12,} | {result['seconds']:>7.1f} | "
                f"{result['seconds'] / base['seconds']:>6.2f} | {result['bytes'] / 1e6:>8.1f} | "
                f"{result['bytes'] / max(base['bytes'], 1):>6.2f} |"
            )
            figures.append(f"processed_s_{rows}_{n}d={result['seconds']:.1f}")
            figures.append(f"processed_mb_{rows}_{n}d={result['bytes'] / 1e6:.1f}")
    print("\n" + " ".join(figures))


def main() -> None:
    """Measure each size and print the tables."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--days", type=int, default=56, help="days of history the sample spans")
    parser.add_argument("--history-days", type=int, nargs="+", help="measure the processed stage over history")
    parser.add_argument("--repeat", type=int, default=3, help="runs per history measurement (median)")
    args = parser.parse_args()
    if args.history_days:
        main_history(args.rows, args.history_days, args.repeat)
        return
    figures = []
    last = ""
    for rows in args.rows:
        print(f"running the pipeline on {rows:,} sales rows ...", file=sys.stderr)
        result = measure(rows, args.days)
        raw = result["raw_json_bytes"]
        print(f"\n{rows:,} sales rows ({raw / 1e6:,.1f} MB of raw JSON)\n")
        print(f"| {'stage':<16} | {'wall s':>8} |")
        print(f"|{'-' * 18}|{'-' * 10}|")
        for stage in ("ingest", "catalog", "spark", "quality", "ctas", "forecast", "notify", "pipeline total"):
            print(f"| {stage:<16} | {result['seconds'].get(stage, 0.0):>8.1f} |")
        print_profile(result)
        print(f"\n| {'curated table':<24} | {'bytes scanned':>14} | {'% of raw JSON':>13} |")
        print(f"|{'-' * 26}|{'-' * 16}|{'-' * 15}|")
        for table, scanned in sorted(result["scanned"].items()):
            if not scanned:  # views and DDL: nothing read
                continue
            print(f"| {table:<24} | {scanned:>14,} | {100 * scanned / raw:>12.2f}% |")
            figures.append(f"scan_pct_{table}_{rows}={100 * scanned / raw:.2f}")
        model = result["metrics"]["backtest:smape_model"]
        naive = result["metrics"]["backtest:smape_seasonal_naive"]
        print(f"\n| {'forecast backtest':<24} | {'sMAPE %':>8} |")
        print(f"|{'-' * 26}|{'-' * 10}|")
        print(f"| {'model (huber, weekday)':<24} | {model:>8.2f} |")
        print(f"| {'seasonal naive':<24} | {naive:>8.2f} |")
        print(f"| {'ratio model / naive':<24} | {model / naive:>8.3f} |")
        figures.append(f"pipeline_s_{rows}={result['seconds']['pipeline total']:.1f}")
        figures.append(f"forecast_s_{rows}={result['seconds'].get('forecast', 0.0):.1f}")
        figures.append(f"nothing_new_s_{rows}={result['seconds']['nothing new']:.1f}")
        figures.append(f"smape_model_{rows}={model:.2f} smape_naive_{rows}={naive:.2f}")
        spark_vs_bare = result["seconds"].get("spark", 0.0) / result["bare"]["seconds"]
        max_scan = max((100 * scanned / raw for scanned in result["scanned"].values()), default=0.0)
        figures.append(f"spark_vs_bare_{rows}={spark_vs_bare:.2f} max_curated_scan_pct_{rows}={max_scan:.2f}")
        last = (
            f"pipeline_s={result['seconds']['pipeline total']:.1f} spark_vs_bare={spark_vs_bare:.2f} "
            f"max_curated_scan_pct={max_scan:.2f}"
        )
    print("\n" + " ".join(figures))
    print(last)


if __name__ == "__main__":
    main()

"""`lakebox run`: the whole pipeline on generated sample data for the example datasets, kept in the local lake.

Generates the sample files (`lakebox.sample`), puts them through the landing rules, streams events for a few
seconds, fires the scheduled pull from the sample source API, runs the pipeline with its defaults, then prints what
landed, the curated headline tables and the forecast, and writes the dashboard.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

from lakebox.cli import (
    EXIT_FAILED,
    PULL_COLUMNS,
    SUMMARY_COLUMNS,
    _box,
    _print_json,
    _print_table,
    _progress,
    _run_summary,
    non_negative_float,
    positive_int,
    share,
)


def add_run_arguments(run: argparse.ArgumentParser) -> None:
    """The options of `lakebox run`: the sample's size and shape, the streaming phase, the dashboard's path."""
    run.add_argument("--rows", type=positive_int, default=20_000, help="sales rows to generate")
    run.add_argument("--bad-rate", type=share, default=0.02, help="share of invalid records")
    run.add_argument("--seed", type=int, default=7)
    run.add_argument(
        "--stream-seconds", type=non_negative_float, default=3.0, help="length of the streaming phase (0: none)"
    )
    run.add_argument(
        "--stream-rate", type=non_negative_float, default=200.0, help="events a second per stream while streaming"
    )
    run.add_argument("--api-rows", type=positive_int, default=2_000, help="sales the sample source API serves")
    run.add_argument(
        "--days", type=positive_int, default=56, help="days of history the sample spans (the forecast needs 42)"
    )
    run.add_argument(
        "--weekly-amplitude",
        type=non_negative_float,
        default=0.3,
        help="weekly seasonality of the sample (0: every day alike)",
    )
    run.add_argument("--dashboard", metavar="PATH", help="where to write the dashboard (.lakebox/dashboard.html)")


def run_demo(args: argparse.Namespace) -> int:
    """Generate sample data, ingest every file through the stack, run the pipeline, and print what happened."""
    import tempfile

    from lakebox.box import summary_row
    from lakebox.dashboard import write_dashboard
    from lakebox.pipeline import forecast_rows, headline_rows
    from lakebox.sample import SampleSpec, generate
    from lakebox.source_api import API_ID_OFFSET, install_secret, sample_sales, serve
    from lakebox.streams import StreamRun, run_stream, stream_datasets

    spec = SampleSpec(
        sales=args.rows,
        bad_rate=args.bad_rate,
        end=dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0),
        seed=args.seed,
        days=args.days,
        weekly_amplitude=args.weekly_amplitude,
    )
    rows: list[dict[str, Any]] = []
    streamed: list[StreamRun] = []
    pulled: list[dict[str, Any]] = []
    with (
        serve(sample_sales(spec, args.api_rows, start=API_ID_OFFSET)) as source_api,
        _progress() as progress,
    ):
        progress("starting the local stack")
        with _box(args, progress, parameters={"SourceApiBaseUrl": source_api.url}) as box:
            progress(f"generating sample data ({args.rows:,} sales)")
            with tempfile.TemporaryDirectory() as folder:
                files = generate(Path(folder), spec)
                for generated in files:
                    progress(f"ingesting {generated.path.name} ({generated.records:,} records)")
                    key, deliveries = box.put_file(generated.path, generated.dataset)
                    for delivery in deliveries:
                        row = summary_row(key, delivery)
                        row["expected bad"] = generated.bad
                        rows.append(row)
            for stream_dataset in stream_datasets() if args.stream_seconds > 0 else []:
                streamed.append(
                    run_stream(
                        box.stack,
                        dataset=stream_dataset,
                        rate=args.stream_rate,
                        seconds=args.stream_seconds,
                        seed=args.seed,
                        bad_rate=args.bad_rate,
                        window=1.0,
                        progress=progress,
                    )
                )
            progress("firing the scheduled pull from the sample source API")
            install_secret(box.session, str(box.stack.ref("SourceApiSecretName")), source_api.token)
            firing, landed = box.fire_schedule("IngestApiFunction.DailyPull")
            pulled.append({"schedule": firing.schedule.name, **(firing.result or {}), "error": firing.error})
            rows.extend(summary_row(key, delivery) | {"expected bad": None} for key, delivery in landed)
            execution = box.execute(
                "PipelineStateMachine",
                {},
                progress=lambda s: progress(f"pipeline: {s}"),
            )
            progress("reading the curated tables")
            curated = headline_rows(box) if execution.status == "SUCCEEDED" else {}
            forecast = forecast_rows(box, execution.output) if execution.status == "SUCCEEDED" else None
            progress("writing the dashboard")
            dashboard = write_dashboard(box, Path(args.dashboard) if args.dashboard else None)
    stream_rows = [s.summary() for s in streamed]
    run_summary = _run_summary(execution)
    if args.json:
        _print_json(
            {
                "ingested": rows,
                "streamed": stream_rows,
                "pulled": pulled,
                "pipeline": run_summary,
                "curated": {t: {"columns": c, "rows": r} for t, (c, r) in curated.items()},
                "forecast": {"columns": forecast[0], "rows": forecast[1]} if forecast else None,
                "dashboard": str(dashboard),
            }
        )
    else:
        _print_table("ingested", rows, (*SUMMARY_COLUMNS[:-1], "expected bad"))
        if stream_rows:
            _print_table("streamed", stream_rows, list(stream_rows[0]))
        _print_table("scheduled pull", pulled, PULL_COLUMNS)
        for table, (columns, values) in curated.items():
            _print_table(f"curated.{table}", [dict(zip(columns, v, strict=True)) for v in values], columns)
        if forecast:
            columns, values = forecast
            _print_table("curated.sales_forecast", [dict(zip(columns, v, strict=True)) for v in values], columns)
        _print_table("pipeline run", [run_summary], list(run_summary))
        print(f"dashboard: {dashboard}")
        print('the lake is kept: try `lakebox query "SELECT * FROM daily_sales_by_region LIMIT 5"`, `lakebox runs`')
    stream_ok = all(row.get("to failure queue", 0) == 0 for row in stream_rows)
    pull_ok = all(not p["error"] for p in pulled)
    pipeline_ok = execution.status == "SUCCEEDED"
    ingest_ok = all(r["status"] not in ("FAILED", None) for r in rows)
    return 0 if ingest_ok and stream_ok and pull_ok and pipeline_ok else EXIT_FAILED

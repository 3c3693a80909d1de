"""The `lakebox` command: the data lake's SAM stack on this machine."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Command = Callable[[argparse.Namespace], int]


def _parameters(values: Sequence[str]) -> dict[str, str]:
    pairs = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"lakebox: --parameter takes NAME=VALUE, got {item!r}")
        pairs[name] = value
    return pairs


def _print_table(title: str, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left", expand=False)
    for column in columns:
        numeric = bool(rows) and all(isinstance(r.get(column), (int, float)) for r in rows)
        table.add_column(column, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in columns))
    Console(width=200 if not sys.stdout.isatty() else None).print(table)


SUMMARY_COLUMNS = ("key", "dataset", "status", "read", "landed", "quarantined", "reason")
PULL_COLUMNS = ("schedule", "status", "records", "pages", "landing_key", "watermark_after", "error")
API_ID_OFFSET = 500_000_000
"""Sales served by the sample source API are numbered from here, apart from the generated files' sales."""


def cmd_up(args: argparse.Namespace) -> int:
    """Start the local endpoint, create the stack on it, and keep it running until Ctrl-C."""
    import time

    from lakebox.runtime import lakebox, record_endpoint

    with lakebox(parameters=_parameters(args.parameter), port=args.port, reuse=False) as box:
        state = record_endpoint(box.root, box.endpoint)
        stack = box.stack
        rows = [
            {"resource": lid, "type": stack.resources[lid]["Type"], "name": str(stack.ref(lid))}
            for lid in sorted(stack.resources)
            if stack.active(lid) and not stack.resources[lid]["Type"].startswith("AWS::IAM")
        ]
        _print_table("stack resources", rows, ("resource", "type", "name"))
        print(f"lakebox is up at {box.endpoint}: export AWS_ENDPOINT_URL={box.endpoint}. Ctrl-C stops it.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            state.unlink(missing_ok=True)
            print("lakebox stopped")
    return 0


def cmd_put(args: argparse.Namespace) -> int:
    """Upload a file to the landing bucket and run what its event triggers."""
    from lakebox.runtime import lakebox, summary_row

    with lakebox(parameters=_parameters(args.parameter)) as box:
        rows: list[dict[str, Any]] = []
        for path in args.files:
            key, deliveries = box.put_file(Path(path), args.dataset, args.key)
            rows.extend(summary_row(key, d) for d in deliveries)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table("ingested", rows, SUMMARY_COLUMNS)
    return 0 if all(r["status"] != "FAILED" for r in rows) else 1


def cmd_invoke(args: argparse.Namespace) -> int:
    """Invoke a function with an event file, like `sam local invoke`, with no Docker."""
    from lakebox.errors import LakeboxError
    from lakebox.runtime import lakebox

    event_path = Path(args.event) if args.event else None
    if event_path is not None and not event_path.is_file():
        raise LakeboxError(f"{event_path}: no such event file")
    event = json.loads(event_path.read_text()) if event_path else {}
    with lakebox(parameters=_parameters(args.parameter)) as box:
        result = box.stack.invoke(args.function, event)
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Generate sample data, ingest every file through the stack, and print what happened."""
    import datetime as dt
    import tempfile

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from lakebox.dashboard import write_dashboard
    from lakebox.pipeline import execute, forecast_rows, headline_rows
    from lakebox.runtime import lakebox, summary_row
    from lakebox.sample import SampleSpec, generate
    from lakebox.schedules import fire_and_deliver
    from lakebox.source_api import install_secret, sample_sales, serve
    from lakebox.streams import StreamRun, run_stream

    spec = SampleSpec(
        sales=args.rows,
        bad_rate=args.bad_rate,
        end=dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0),
        seed=args.seed,
        days=args.days,
        weekly_amplitude=args.weekly_amplitude,
    )
    rows: list[dict[str, Any]] = []
    streamed: StreamRun | None = None
    pulled: list[dict[str, Any]] = []
    with (
        serve(sample_sales(spec, args.api_rows, start=API_ID_OFFSET)) as source_api,
        Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True) as bar,
    ):
        task = bar.add_task("starting the local stack", total=None)
        with lakebox(
            parameters={"SourceApiBaseUrl": source_api.url, "RawSettleSeconds": "0", **_parameters(args.parameter)},
            reuse=False,
            progress=lambda lid: bar.update(task, description=f"creating {lid}"),
        ) as box:
            bar.update(task, description="generating sample data")
            with tempfile.TemporaryDirectory() as folder:
                files = generate(Path(folder), spec)
                for generated in files:
                    bar.update(task, description=f"ingesting {generated.path.name} ({generated.records:,} records)")
                    key, deliveries = box.put_file(generated.path, generated.dataset)
                    for delivery in deliveries:
                        row = summary_row(key, delivery)
                        row["expected bad"] = generated.bad
                        rows.append(row)
            if args.stream_seconds > 0:
                streamed = run_stream(
                    box.stack,
                    dataset="clickstream",
                    rate=args.stream_rate,
                    seconds=args.stream_seconds,
                    seed=args.seed,
                    bad_rate=args.bad_rate,
                    window=1.0,
                    progress=lambda text: bar.update(task, description=text),
                )
            bar.update(task, description="firing the scheduled pull from the sample source API")
            install_secret(box.session, str(box.stack.ref("SourceApiSecretName")), source_api.token)
            firing, landed = fire_and_deliver(
                box.stack, box.bus, "IngestApiFunction.DailyPull", start_execution=box.bus.start_execution
            )
            pulled.append({"schedule": firing.schedule.name, **(firing.result or {}), "error": firing.error or ""})
            rows.extend(summary_row(key, delivery) | {"expected bad": ""} for key, delivery in landed)
            bar.update(task, description="running the pipeline: crawler, Spark, quality gate, Athena CTAS")
            execution = execute(box, "PipelineStateMachine", {"datasets": list(PIPELINE_DATASETS)})
            curated = headline_rows(box) if execution.status == "SUCCEEDED" else {}
            forecast = forecast_rows(box, execution.output) if execution.status == "SUCCEEDED" else None
            bar.update(task, description="writing the dashboard")
            dashboard = write_dashboard(box, Path(args.dashboard) if args.dashboard else None)
    stream_row = streamed.summary() if streamed else None
    run_summary = _run_summary(execution)
    if args.json:
        document = {
            "ingested": rows,
            "streamed": stream_row,
            "pulled": pulled,
            "pipeline": run_summary,
            "curated": {t: {"columns": c, "rows": r} for t, (c, r) in curated.items()},
            "forecast": {"columns": forecast[0], "rows": forecast[1]} if forecast else None,
            "dashboard": str(dashboard),
        }
        print(json.dumps(document, indent=2, default=str))
    else:
        _print_table("ingested", rows, (*SUMMARY_COLUMNS[:-1], "expected bad"))
        if stream_row:
            _print_table("streamed", [stream_row], list(stream_row))
        _print_table("scheduled pull", pulled, PULL_COLUMNS)
        for table, (columns, values) in curated.items():
            _print_table(f"curated.{table}", [dict(zip(columns, v, strict=True)) for v in values], columns)
        if forecast:
            columns, values = forecast
            _print_table("curated.sales_forecast", [dict(zip(columns, v, strict=True)) for v in values], columns)
        _print_table("pipeline run", [run_summary], list(run_summary))
        print(f"dashboard: {dashboard}")
    stream_ok = stream_row is None or stream_row.get("to failure queue", 0) == 0
    pull_ok = all(not p["error"] for p in pulled)
    pipeline_ok = execution.status == "SUCCEEDED"
    ingest_ok = all(r["status"] not in ("FAILED", "") for r in rows)
    return 0 if ingest_ok and stream_ok and pull_ok and pipeline_ok else 1


PIPELINE_DATASETS = ("sales", "products", "customers", "clickstream")


def _run_summary(execution: Any) -> dict[str, Any]:
    """The pipeline run in one row: status, what it processed, what the curated queries scanned."""
    output = execution.output if isinstance(execution.output, dict) else {}
    queries = output.get("queries") or []
    scanned = sum(int(q.get("bytes_scanned", 0) or 0) for q in queries if isinstance(q, dict))
    forecast = output.get("forecast") or {}
    metrics = {m.get("MetricName"): m.get("Value") for m in forecast.get("metrics") or [] if isinstance(m, dict)}
    return {
        "run": execution.name,
        "status": execution.status,
        "datasets": ",".join(output.get("datasets") or []),
        "dates": len(output.get("dates") or []),
        "curated queries": len(queries),
        "bytes scanned": scanned,
        "forecast": forecast.get("status", ""),
        "smape model": metrics.get("backtest:smape_model", ""),
        "smape seasonal naive": metrics.get("backtest:smape_seasonal_naive", ""),
        "error": f"{execution.error}: {execution.cause}" if execution.error else forecast.get("cause", ""),
    }


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Write the dashboard page from the running stack's curated tables and pipeline records."""
    from lakebox.dashboard import write_dashboard
    from lakebox.runtime import lakebox

    with lakebox(parameters=_parameters(args.parameter)) as box:
        path = write_dashboard(box, Path(args.out) if args.out else None)
    print(f"dashboard: {path}")
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    """Produce generated events into a stream and deliver them as the event source mapping (or Firehose) would."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from lakebox.runtime import lakebox
    from lakebox.streams import run_stream

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task("starting the local stack", total=None)
        with lakebox(parameters=_parameters(args.parameter)) as box:
            run = run_stream(
                box.stack,
                dataset=args.dataset,
                rate=args.rate,
                seconds=args.seconds,
                seed=args.seed,
                bad_rate=args.bad_rate,
                window=args.window,
                from_start=args.from_start,
                progress=lambda text: bar.update(task, description=text),
            )
    row = run.summary()
    if args.json:
        print(json.dumps(row, indent=2))
    else:
        _print_table("streamed", [row], list(row))
    return 0 if row.get("to failure queue", 0) == 0 else 1


def cmd_schedule(args: argparse.Namespace) -> int:
    """List the template's schedules, or fire one now and run what it triggers."""
    import contextlib
    import datetime as dt

    from lakebox.errors import LakeboxError
    from lakebox.runtime import lakebox, summary_row
    from lakebox.sample import SampleSpec
    from lakebox.schedules import fire_and_deliver, schedules
    from lakebox.source_api import install_secret, sample_sales, serve

    parameters = _parameters(args.parameter)
    if args.action == "fire" and not args.name:
        raise LakeboxError("schedule fire needs the NAME of a schedule (see: lakebox schedule list)")
    with contextlib.ExitStack() as scope:
        api = None
        if args.action == "fire" and args.sample_api and "SourceApiBaseUrl" not in parameters:
            end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
            records = sample_sales(SampleSpec(seed=args.seed, end=end), args.api_rows, start=API_ID_OFFSET)
            api = scope.enter_context(serve(records))
            parameters["SourceApiBaseUrl"] = api.url
        box = scope.enter_context(lakebox(parameters=parameters))
        if args.action == "list":
            found = [
                {"name": s.name, "kind": s.kind, "expression": s.expression, "target": s.target, "enabled": s.enabled}
                for s in schedules(box.stack)
            ]
            _print_table("schedules", found, ("name", "kind", "expression", "target", "enabled"))
            return 0
        if api is not None:
            install_secret(box.session, str(box.stack.ref("SourceApiSecretName")), api.token)
        firing, landed = fire_and_deliver(box.stack, box.bus, args.name, start_execution=box.bus.start_execution)
        rows = [summary_row(key, delivery) for key, delivery in landed]
    outcome = {"schedule": firing.schedule.name, "ok": firing.ok, "result": firing.result, "error": firing.error}
    if args.json:
        print(json.dumps({**outcome, "ingested": rows}, indent=2, default=str))
    else:
        print(json.dumps(outcome, indent=2, default=str))
        if rows:
            _print_table("ingested", rows, SUMMARY_COLUMNS)
    return 0 if firing.ok and all(r["status"] != "FAILED" for r in rows) else 1


def _execution_rows(execution: Any) -> list[dict[str, Any]]:
    rows = []
    for state in dict.fromkeys(execution.states_entered()):
        attempts = execution.attempts(state)
        rows.append({"state": state, "attempts": attempts or "", "retries": execution.retries(state) or ""})
    return rows


def cmd_execute(args: argparse.Namespace) -> int:
    """Run one of the template's state machines on the local stack, from its ASL file."""
    from lakebox.errors import LakeboxError
    from lakebox.pipeline import execute
    from lakebox.runtime import lakebox

    try:
        input_ = json.loads(args.input) if args.input else {}
    except json.JSONDecodeError as exc:
        raise LakeboxError(f"--input is not JSON: {exc}") from exc
    with lakebox(parameters=_parameters(args.parameter)) as box:
        execution = execute(box, args.state_machine, input_, execution_name=args.name)
    if args.json:
        print(
            json.dumps(
                {
                    "status": execution.status,
                    "error": execution.error,
                    "cause": execution.cause,
                    "output": execution.output,
                },
                indent=2,
                default=str,
            )
        )
    else:
        _print_table(
            f"{args.state_machine}: {execution.status}", _execution_rows(execution), ("state", "attempts", "retries")
        )
        if execution.error:
            print(f"{execution.error}: {execution.cause}")
        else:
            print(json.dumps(execution.output, indent=2, default=str))
    return 0 if execution.status == "SUCCEEDED" else 1


def cmd_query(args: argparse.Namespace) -> int:
    """Run Athena SQL on the local stack's catalog (DuckDB underneath) and print the rows."""
    from lakebox.runtime import lakebox

    with lakebox(parameters=_parameters(args.parameter)) as box:
        if args.as_persona:
            from lakebox import governance

            access = governance.access_for(box.stack, args.as_persona)
            workgroup = args.workgroup or access.workgroups[0]
            governance.check_workgroup(access, workgroup)
            database = str(box.stack.parameters.get("GlueDatabaseName", "default"))
            governance.check_statement(args.sql, access, database)
            engine = governance.engine_for(box.stack, access, database)
            try:
                result = engine.query(args.sql, workgroup=workgroup)
            finally:
                engine.close()
        else:
            workgroup = args.workgroup or str(box.stack.ref("AnalyticsWorkGroup"))
            result = box.athena.query(args.sql, workgroup=workgroup)
    rows = [dict(zip(result.columns, (str(v) for v in row), strict=True)) for row in result.rows]
    if args.json:
        print(
            json.dumps(
                {"columns": list(result.columns), "rows": rows, "bytes_scanned": result.bytes_scanned},
                indent=2,
                default=str,
            )
        )
    else:
        _print_table(f"{len(rows)} rows, {result.bytes_scanned:,} bytes scanned", rows, result.columns)
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    """Back the local catalog up now, list the backups, or restore one (the newest by default)."""
    from lakebox import catalog_backup
    from lakebox.runtime import lakebox

    with lakebox(parameters=_parameters(args.parameter)) as box:
        if args.action == "list":
            for key in catalog_backup.backups(box):
                print(key)
            return 0
        summary = catalog_backup.backup(box) if args.action == "backup" else catalog_backup.restore(box, args.key)
    row = summary.model_dump()
    if args.json:
        print(json.dumps(row, indent=2))
    else:
        _print_table(f"catalog {args.action}", [row], list(row))
    return 0


ALARM_COLUMNS = ("alarm", "state", "value", "threshold", "reason")


def cmd_alarms(args: argparse.Namespace) -> int:
    """Evaluate the template's CloudWatch alarms on the metrics the local stack recorded."""
    from lakebox.alarms import ALARM, alarm_states, running_endpoint
    from lakebox.runtime import LocalSession, find_root
    from lakebox.stack import Stack

    root = find_root()
    endpoint = running_endpoint(root)
    session = LocalSession(endpoint or "http://127.0.0.1:1")
    stack = Stack(root, session, parameters=_parameters(args.parameter))
    states = alarm_states(stack, session if endpoint else None)
    if args.alarm_only:
        states = [s for s in states if s.state == ALARM]
    rows = [
        {
            "alarm": s.name,
            "state": s.state,
            "value": "" if s.value is None else round(s.value, 3),
            "threshold": f"{s.comparison} {s.threshold:g}",
            "reason": s.reason,
        }
        for s in states
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        firing = sum(1 for s in states if s.state == ALARM)
        _print_table(f"alarms: {firing} in ALARM of {len(states)}", rows, ALARM_COLUMNS)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line: one sub-command a verb."""
    parser = argparse.ArgumentParser(prog="lakebox", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(func=func)
        command.add_argument(
            "--parameter", "-p", action="append", default=[], metavar="NAME=VALUE", help="override a template parameter"
        )
        return command

    up = add("up", cmd_up, "start the local endpoint with the stack on it and keep it running")
    up.add_argument("--port", type=int, default=4566)

    put = add("put", cmd_put, "upload files to the landing bucket and run what their events trigger")
    put.add_argument("files", nargs="+", metavar="FILE")
    put.add_argument("--dataset", required=True, help="dataset name: the landing key prefix")
    put.add_argument("--key", help="landing key (default: DATASET/FILENAME)")
    put.add_argument("--json", action="store_true", help="print the summary as JSON")

    invoke = add("invoke", cmd_invoke, "invoke a function in-process with an event file (like sam local invoke)")
    invoke.add_argument("function", help="logical id or name of the function")
    invoke.add_argument("--event", "-e", help="path of the event JSON file")

    run = add("run", cmd_run, "the whole pipeline on generated sample data")
    run.add_argument("--rows", type=int, default=20_000, help="sales rows to generate")
    run.add_argument("--bad-rate", type=float, default=0.02, help="share of invalid records")
    run.add_argument("--seed", type=int, default=7)
    run.add_argument("--days", type=int, default=56, help="days of history the sample spans (the forecast needs 42)")
    run.add_argument(
        "--weekly-amplitude", type=float, default=0.3, help="weekly seasonality of the sample (0: every day alike)"
    )
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.add_argument("--stream-seconds", type=float, default=3.0, help="length of the streaming phase (0: none)")
    run.add_argument("--stream-rate", type=float, default=200.0, help="clickstream events a second while streaming")
    run.add_argument("--api-rows", type=int, default=2_000, help="sales the sample source API serves")
    run.add_argument("--dashboard", metavar="PATH", help="where to write the dashboard (.lakebox/dashboard.html)")

    dashboard = add("dashboard", cmd_dashboard, "write the dashboard page (KPIs, charts, pipeline health) as one HTML")
    dashboard.add_argument("--out", metavar="PATH", help="the HTML file to write (default: .lakebox/dashboard.html)")

    execute = add("execute", cmd_execute, "run a state machine of the template on the local stack")
    execute.add_argument("state_machine", help="logical id or name, e.g. PipelineStateMachine")
    execute.add_argument("--input", help="execution input (JSON)")
    execute.add_argument("--name", help="execution name (default: a new unique name)")
    execute.add_argument("--json", action="store_true", help="print the outcome as JSON")

    query = add("query", cmd_query, "run Athena SQL against the local catalog")
    query.add_argument("sql")
    query.add_argument("--workgroup", help="Athena workgroup (default: the template's AnalyticsWorkGroup)")
    query.add_argument(
        "--as",
        dest="as_persona",
        metavar="PERSONA",
        help="run as a persona's role (analyst, ml, bi): its Lake Formation grants and workgroups apply",
    )
    query.add_argument("--json", action="store_true", help="print the rows as JSON")

    stream = add("stream", cmd_stream, "produce generated events into a stream and deliver them in batches")
    stream.add_argument("--dataset", default="clickstream", help="the dataset of the stream (clickstream)")
    stream.add_argument("--rate", type=float, default=100.0, help="events produced a second")
    stream.add_argument("--seconds", type=float, default=10.0, help="how long to produce")
    stream.add_argument("--bad-rate", type=float, default=0.02, help="share of invalid events")
    stream.add_argument("--window", type=float, help="batching window in seconds (default: the template's)")
    stream.add_argument("--from-start", action="store_true", help="also deliver what earlier runs put in the stream")
    stream.add_argument("--seed", type=int, default=7)
    stream.add_argument("--json", action="store_true", help="print the summary as JSON")

    alarms = add("alarms", cmd_alarms, "evaluate the template's alarms on the metrics lakebox recorded")
    alarms.add_argument("--alarm-only", action="store_true", help="list only the alarms in state ALARM")
    alarms.add_argument("--json", action="store_true", help="print the alarms as JSON")

    catalog = add("catalog", cmd_catalog, "back up the Glue catalog to the artifacts bucket, list or restore backups")
    catalog.add_argument("action", choices=("backup", "list", "restore"))
    catalog.add_argument("--key", help="the backup to restore (default: the newest)")
    catalog.add_argument("--json", action="store_true", help="print the outcome as JSON")

    schedule = add("schedule", cmd_schedule, "list the template's schedules or fire one now")
    schedule.add_argument("action", choices=("list", "fire"))
    schedule.add_argument("name", nargs="?", help="schedule to fire: <LogicalId>.<EventName> or the event name")
    schedule.add_argument(
        "--no-sample-api",
        dest="sample_api",
        action="store_false",
        help="do not serve the sample source API (by default it serves the pull unless SourceApiBaseUrl is given)",
    )
    schedule.add_argument("--api-rows", type=int, default=2_000, help="sales the sample source API serves")
    schedule.add_argument("--seed", type=int, default=7)
    schedule.add_argument("--json", action="store_true", help="print the outcome as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a sub-command; errors are one clear line and a non-zero exit."""
    from botocore.exceptions import BotoCoreError, ClientError

    from datalake.exceptions import DataLakeError
    from lakebox.errors import LakeboxError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except (LakeboxError, DataLakeError, OSError, ValueError, ClientError, BotoCoreError) as exc:
        print(f"lakebox: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

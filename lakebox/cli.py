"""The `lakebox` command: the data lake's SAM stack on this machine, kept between commands under `.lakebox/`."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    pass

Command = Callable[[argparse.Namespace], int]

EXIT_FAILED = 1
"""A run, execution, delivery or check that did not succeed; or a user error (one line on stderr)."""
EXIT_USAGE = 2
"""The command line itself is wrong (argparse), or `put` refused it before uploading (an unknown dataset)."""
EXIT_ALL_QUARANTINED = 3
"""`put`: an object landed nothing because it was quarantined, whole (malformed, unsupported) or record by record."""

SUMMARY_COLUMNS = ("key", "dataset", "status", "read", "landed", "quarantined", "reason")
SHORT_VALUE = 12
"""Values up to this many characters (dates, statuses, counts) keep one line in a table; longer ones fold."""
NARROWEST = 6
"""The fewest characters a folding column is given; a one-row table with more columns than fit so is turned."""
PULL_COLUMNS = ("schedule", "status", "records", "pages", "landing_key", "watermark_after", "error")
SHOWN = 20
"""Rows a long listing shows (the newest first) unless `--all`; a last line says how many more there are."""
PAGER = "less -FRX"
"""The pager when `$PAGER` is unset: it quits at once when the output fits the screen."""


# ---------------------------------------------------------------------- argument types and output
def _parameters(values: Sequence[str]) -> dict[str, str]:
    from lakebox.errors import LakeboxError

    pairs = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise LakeboxError(f"--parameter takes NAME=VALUE, got {item!r}")
        pairs[name] = value
    return pairs


def positive_int(text: str) -> int:
    """An argparse type: a whole number above zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not above zero")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a number of zero or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value:g} is below zero")
    return value


def share(text: str) -> float:
    """An argparse type: a share between 0 and 1."""
    value = non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{value:g} is above 1 (a share is between 0 and 1)")
    return value


def moment(text: str) -> dt.datetime:
    """An argparse type: an ISO date or time (UTC when it names no zone), or a duration back from now (`2h`, `3d`)."""
    units = {"m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].isdigit():
        return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither an ISO date/time nor a duration like 2h or 3d") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def json_value(value: Any) -> Any:
    """A value as JSON gives it: numbers stay numbers (decimals too), times are ISO-8601 text, missing is null."""
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        return int(value) if isinstance(exponent, int) and exponent >= 0 else float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [json_value(v) for v in value]
    if value == "":
        return None
    return value


def _print_json(document: Any) -> None:
    print(json.dumps(json_value(document), indent=2, default=str))


def _print_table(title: str, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=_width())
    cells = [["" if row.get(c) is None else str(row.get(c)) for c in columns] for row in rows]
    if len(rows) == 1 and len(columns) * (NARROWEST + 3) + 1 > console.width:
        # one record too wide for the screen reads better as a field a line than as columns cut to slivers
        _print_table(title, [{"field": c, "value": cells[0][i]} for i, c in enumerate(columns)], ("field", "value"))
        return
    table = Table(title=title, title_justify="left", expand=False)
    for column, fixed in zip(columns, _column_widths(columns, cells, console.width), strict=True):
        numeric = bool(rows) and all(isinstance(r.get(column), int | float | Decimal) for r in rows)
        table.add_column(column, justify="right" if numeric else "left", overflow="fold", width=fixed)
    for cell in cells:
        table.add_row(*(escape(value) for value in cell))
    console.print(table)


def _column_widths(columns: Sequence[str], cells: list[list[str]], width: int) -> list[int | None]:
    """Each column's width when the table would be wider than the screen (None: its natural width, it fits).

    A short value (a date, a status, a number) is never split, a header may wrap at its spaces, and the columns of
    longer values share what is left, folding; when even the short ones do not fit, the widest of them fold too.
    """
    natural = [max([len(column), *(len(cell[i]) for cell in cells)]) for i, column in enumerate(columns)]
    room = width - 3 * len(columns) - 1  # what the borders and padding leave
    if sum(natural) <= room:
        return [None] * len(columns)
    least: list[int | None] = []
    for index, column in enumerate(columns):
        widest = max([*(len(word) for word in column.split() or [column]), *(len(cell[index]) for cell in cells)])
        least.append(widest if widest <= SHORT_VALUE else None)
    while sum(w or NARROWEST for w in least) > room and any(least):
        least[max(range(len(least)), key=lambda i: least[i] or 0)] = None
    folding = [i for i, w in enumerate(least) if w is None]
    left = max(room - sum(w or 0 for w in least), NARROWEST * len(folding))
    widths = [w or NARROWEST for w in least]
    while folding and left > sum(widths[i] for i in folding):  # share what is left, none past its natural width
        growing = [i for i in folding if widths[i] < natural[i]]
        if not growing:
            break
        for i in growing[: left - sum(widths[j] for j in folding)]:
            widths[i] += 1
    return list(widths)


def _width() -> int | None:
    """The width tables fit: the terminal's (or `COLUMNS`); 200 when printing to a pipe or file."""
    import os

    paged = getattr(sys.stdout, "columns", None)  # output held for the pager keeps the terminal's width
    if isinstance(paged, int):
        return paged
    return None if sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit() else 200


def _more(shown: int, total: int, how: str = "--all to show all") -> None:
    """The line under a listing cut to its first rows: how many more, and how to see them."""
    if total > shown:
        print(f"… and {total - shown:,} more; {how}")


class _PagerBuffer:
    """Standard output held for the pager: text, with the width of the terminal it stands in for."""

    def __init__(self, columns: int) -> None:
        import io

        self.columns = columns
        self.text = io.StringIO()

    def write(self, text: str) -> int:
        return self.text.write(text)

    def flush(self) -> None:
        """Nothing to flush: the text goes out when the command ends."""

    def isatty(self) -> bool:
        return False


@contextlib.contextmanager
def paged(enabled: bool = True) -> Iterator[None]:
    """Print through `$PAGER` (`less -FRX` when unset) what is taller than the terminal.

    Only when standard output is a terminal: never to a pipe or a file, never with `CI` set (a CI log), and not when
    `PAGER` is empty or `cat`. Shorter output, and output when the pager cannot be started, is printed as it is.
    """
    import os
    import shlex
    import shutil
    import subprocess

    pager = os.environ.get("PAGER", PAGER)
    if not enabled or not sys.stdout.isatty() or os.environ.get("CI") or pager.strip() in ("", "cat"):
        yield
        return
    size = shutil.get_terminal_size()
    real, buffer = sys.stdout, _PagerBuffer(size.columns)
    sys.stdout = buffer
    try:
        yield
    finally:
        sys.stdout = real
        text = buffer.text.getvalue()
        shown = False
        if text.count("\n") >= size.lines:
            try:
                subprocess.run(shlex.split(pager), input=text, text=True, check=False)
                shown = True
            except OSError:  # no such pager: print it
                shown = False
        if not shown:
            real.write(text)
            real.flush()


@contextlib.contextmanager
def _progress(enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """Per-stage progress with the elapsed time, on stderr.

    A live line in a terminal; elsewhere nothing (stderr then holds only errors), unless `LAKEBOX_PROGRESS=lines`
    asks for one `[  12.3s] stage` line a stage (CI logs).
    """
    import os

    if not enabled or not sys.stderr.isatty():
        began = time.monotonic()
        lines = enabled and os.environ.get("LAKEBOX_PROGRESS") == "lines"

        def log(text: str) -> None:
            if lines:
                print(f"[{time.monotonic() - began:7.1f}s] {text}", file=sys.stderr, flush=True)

        yield log
        return
    from rich.console import Console

    with stage_progress(Console(stderr=True), time.monotonic) as show:
        yield show


@contextlib.contextmanager
def stage_progress(console: Any, clock: Callable[[], float]) -> Iterator[Callable[[str], None]]:
    """A live line: spinner, the stage's own elapsed time (restarted at each stage), the stage, the whole's time.

    Both times tick while a stage runs (a Spark job of minutes shows its minutes), read from `clock`.
    """
    from rich.progress import Progress, ProgressColumn, SpinnerColumn, Task, TextColumn, TimeElapsedColumn
    from rich.text import Text

    began = clock()

    class InAll(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(f"({clock() - began:,.0f}s in all)", style="dim")

    with Progress(
        SpinnerColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        InAll(),
        console=console,
        transient=True,
        get_time=clock,
    ) as bar:
        task = bar.add_task("starting", total=None)
        yield lambda text: bar.reset(task, description=text)


def _box(args: argparse.Namespace, progress: Callable[[str], None] | None = None, **kwargs: Any) -> Any:
    """The box a command works on: `lakebox up`'s while it runs, else one of its own that keeps the lake."""
    from lakebox.box import open_box

    trusted = kwargs.pop("parameters", {})
    return open_box(
        parameters=_parameters(args.parameter), trusted_parameters=trusted, persist=True, progress=progress, **kwargs
    )


# ---------------------------------------------------------------------- up, reset, status
def cmd_up(args: argparse.Namespace) -> int:
    """Start the local endpoint with the stack on it (and the saved lake in it); keep it running until Ctrl-C."""
    import os
    import signal
    import threading

    from lakebox.app.pipeline import engine_names
    from lakebox.app.put import registered_datasets
    from lakebox.app.up import start_watch
    from lakebox.box import LOCAL_DEFAULTS, open_box
    from lakebox.cfn.stack import REGION
    from lakebox.errors import LakeboxError
    from lakebox.home import LakeHome, find_root
    from lakebox.home.up import UpRecord, running_up

    root = find_root()
    home = LakeHome.of(root)
    already = running_up(home)
    if already is not None:
        raise LakeboxError(f"lakebox up is already running at {already.endpoint} (pid {already.pid})")
    parameters = _parameters(args.parameter)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    began = time.monotonic()
    with (
        _progress() as progress,
        open_box(root, parameters=parameters, port=args.port, reuse=False, persist=True, progress=progress) as box,
    ):
        record = UpRecord(
            box.endpoint,
            os.getpid(),
            {**LOCAL_DEFAULTS, **parameters},
            dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            registered_datasets(),
            workgroup=str(box.stack.ref("AnalyticsWorkGroup")),
            region=REGION,
            state_machines={lid: str(box.stack.ref(lid)) for lid in box.stack.state_machines()},
            engines=engine_names(box.stack),
        )
        path = record.write(home)
        stack = box.stack
        rows = [
            {"resource": lid, "type": stack.resources[lid]["Type"], "name": str(stack.ref(lid))}
            for lid in sorted(stack.resources)
            if stack.active(lid) and not stack.resources[lid]["Type"].startswith("AWS::IAM")
        ]
        if not args.quiet:
            _print_table("stack resources", rows, ("resource", "type", "name"))
        info = box.store.info()
        kept = f"{info.objects:,} objects saved {info.saved_at}" if info else "a new lake"
        print(
            f"lakebox is up at {box.endpoint} in {time.monotonic() - began:.1f}s ({kept}, kept in "
            f"{home.path}).\nexport AWS_ENDPOINT_URL={box.endpoint}  # any S3 client's upload to "
            f"s3://{box.bucket('LandingBucket')}/<dataset>/ is ingested. Ctrl-C stops it.",
            flush=True,
        )
        stopping = threading.Event()

        def delivered(key: str, delivery: Any, row: dict[str, Any]) -> None:
            print(
                f"{dt.datetime.now().strftime('%H:%M:%S')} {delivery.rule}: {key} {row['status']} "
                f"read {row['read']}, landed {row['landed']}, quarantined {row['quarantined']}"
                + (f" ({row['reason']})" if row["reason"] else ""),
                flush=True,
            )

        def failed(exc: Exception) -> None:
            print(f"lakebox: the watch failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

        watcher = start_watch(box, args.poll, stopping, delivered, failed)
        if not args.no_warm_up:
            from lakebox.app.warm import start_warm_spark

            start_warm_spark(box)  # the first run finds Spark warm (ADR 0038)
        try:
            while watcher.is_alive():
                watcher.join(3600)
        except KeyboardInterrupt:
            print("lakebox: stopping, saving the lake", file=sys.stderr, flush=True)
        finally:
            stopping.set()
            watcher.join(30)
            path.unlink(missing_ok=True)
    print("lakebox stopped")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    """Delete the local lake (`.lakebox/`): saved state, run history, logs."""
    from lakebox.app.reset import check_resettable, reset
    from lakebox.errors import LakeboxError
    from lakebox.home import LakeHome, find_root

    lake = LakeHome.of(find_root())
    home = lake.path
    if not check_resettable(lake):
        print(f"nothing to reset: {home} does not exist")
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise LakeboxError(f"reset deletes {home} and asks first: pass --yes to confirm without a terminal")
        answer = input(f"Delete the local lake in {home} (objects, tables, run history, logs)? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("kept")
            return EXIT_FAILED
    reset(lake)
    print(f"reset: {home} is empty")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """What is running and where the lake is kept."""
    from lakebox.app.status import status
    from lakebox.home import find_root

    document = status(find_root())
    if args.json:
        _print_json(document)
        return 0
    up, snapshot, last = document["up"], document["snapshot"], document["last_run"]
    running = f"running at {up['endpoint']} (pid {up['pid']}, since {up['started_at']})" if up else "not running"
    print(f"lakebox up: {running}")
    print(f"state:      {document['state_dir']}")
    if snapshot:
        print(
            f"snapshot:   {snapshot['objects']:,} objects, {snapshot['bytes'] / 1e6:,.1f} MB, "
            f"saved {snapshot['saved_at']}"
        )
    else:
        print("snapshot:   none yet (the first command that changes the lake saves one)")
    if last:
        print(f"last run:   {last['name']} {last['status']} ({last['started']}, {last['seconds']}s)")
    firing = document["alarms_in_alarm"]
    print(f"alarms:     {len(firing)} in ALARM" + "".join(f"\n  {a['alarm']}: {a['reason']}" for a in firing))
    return 0


# ---------------------------------------------------------------------- put, invoke
def put_exit_code(rows: Sequence[dict[str, Any]]) -> int:
    """`put`'s exit status from its summary rows: `EXIT_FAILED` when an ingestion failed, `EXIT_ALL_QUARANTINED` when
    an object landed nothing because it was quarantined (whole, or every record), else 0."""
    if any(r["status"] == "FAILED" or r["status"] is None for r in rows):
        return EXIT_FAILED
    if any(r["status"] == "QUARANTINED" or (r["landed"] == 0 and r["quarantined"] > 0) for r in rows):
        return EXIT_ALL_QUARANTINED
    return 0


def cmd_put(args: argparse.Namespace) -> int:
    """Upload files to the landing bucket and show what their events triggered."""
    from lakebox.app.put import put_refusal
    from lakebox.box import summary_row
    from lakebox.home import LakeHome, find_root
    from lakebox.home.up import running_up

    refusal = put_refusal(args.dataset, running_up(LakeHome.of(find_root())))
    if refusal:
        print(f"lakebox: error: {refusal}", file=sys.stderr)
        return EXIT_USAGE
    rows: list[dict[str, Any]] = []
    with _progress() as progress, _box(args, progress) as box:
        for path in args.files:
            key, deliveries = box.put_file(Path(path), args.dataset, args.key, progress=progress)
            rows.extend(summary_row(key, d) for d in deliveries)
    if args.json:
        _print_json(rows)
    else:
        _print_table("ingested", rows, SUMMARY_COLUMNS)
    code = put_exit_code(rows)
    if code == EXIT_ALL_QUARANTINED:
        nothing = ", ".join(r["key"] for r in rows if r["landed"] == 0)
        print(
            f"lakebox: nothing landed from {nothing}: quarantined (see: lakebox quarantine --dataset {args.dataset})",
            file=sys.stderr,
        )
    return code


def _read_event(source: str | None) -> Any:
    from lakebox.errors import LakeboxError

    if source is None:
        return {}
    if source == "-":
        text, where = sys.stdin.read(), "stdin"
    else:
        path = Path(source)
        if not path.is_file():
            raise LakeboxError(f"{path}: no such event file")
        text, where = path.read_text(encoding="utf-8"), str(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LakeboxError(f"the event in {where} is not JSON: {exc}") from exc


def cmd_invoke(args: argparse.Namespace) -> int:
    """Invoke a function with an event (a file, or `-` for stdin), like `sam local invoke`, with no Docker."""
    from lakebox.app.invoke import implied_parameters, invoke, sample_source_api
    from lakebox.app.source_api import install_secret

    event = _read_event(args.event)
    given = _parameters(args.parameter)
    with contextlib.ExitStack() as scope:
        parameters = implied_parameters(event, given)
        api = scope.enter_context(sample_source_api(args.function, given))
        if api is not None:
            parameters["SourceApiBaseUrl"] = api.url  # a scheduled pull reaches the local sample API
        box = scope.enter_context(_box(args, parameters=parameters))
        if api is not None:
            install_secret(box.session, str(box.stack.ref("SourceApiSecretName")), api.token)
        result = invoke(
            box,
            args.function,
            event,
            stage=args.stage,
            event_path=args.event,
            notice=lambda text: print(f"lakebox: {text}", file=sys.stderr),
        )
    print(json.dumps(result, indent=2, default=str))
    return 0


# ---------------------------------------------------------------------- run
def add_run_arguments(run: argparse.ArgumentParser) -> None:
    """The options of `lakebox run`: the sample's size and shape, the streaming phase, the dashboard's path."""
    from lakebox.app.options import OPTION_HELP

    run.add_argument("--rows", type=positive_int, default=20_000, help=OPTION_HELP["rows"])
    run.add_argument("--bad-rate", type=share, default=0.02, help="share of invalid records")
    run.add_argument("--seed", type=int, default=7)
    run.add_argument(
        "--stream-seconds", type=non_negative_float, default=3.0, help="length of the streaming phase (0: none)"
    )
    run.add_argument(
        "--stream-rate", type=non_negative_float, default=200.0, help="events a second per stream while streaming"
    )
    run.add_argument("--api-rows", type=positive_int, default=2_000, help=OPTION_HELP["api_rows"])
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


def cmd_sample(args: argparse.Namespace) -> int:
    """Write the sample files the README's workflow puts (sales, products, customers, clickstream) to a folder."""
    from lakebox.app.sample import put_sample_spec, write_sample

    spec = put_sample_spec(args.rows, bad_rate=args.bad_rate, seed=args.seed)
    written = [
        {"file": str(g.path), "dataset": g.dataset, "records": g.records, "bad": g.bad}
        for g in write_sample(Path(args.folder), spec)
    ]
    if args.json:
        _print_json(written)
    else:
        _print_table(f"sample data in {args.folder}", written, ("file", "dataset", "records", "bad"))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """The whole pipeline on generated sample data (see `lakebox.app.demo`), printed."""
    from lakebox.app.demo import DemoParams, run_demo

    params = DemoParams(
        rows=args.rows,
        bad_rate=args.bad_rate,
        seed=args.seed,
        stream_seconds=args.stream_seconds,
        stream_rate=args.stream_rate,
        api_rows=args.api_rows,
        days=args.days,
        weekly_amplitude=args.weekly_amplitude,
        dashboard=Path(args.dashboard) if args.dashboard else None,
    )
    with _progress() as progress:
        report = run_demo(params, lambda trusted: _box(args, progress, parameters=dict(trusted)), progress)
    stream_rows = report.stream_rows
    run_summary = _run_summary(report.execution)
    curated, forecast = report.curated, report.forecast
    if args.json:
        _print_json(
            {
                "ingested": report.ingested,
                "streamed": stream_rows,
                "pulled": report.pulled,
                "pipeline": run_summary,
                "curated": {t: {"columns": c, "rows": r} for t, (c, r) in curated.items()},
                "forecast": {"columns": forecast[0], "rows": forecast[1]} if forecast else None,
                "dashboard": str(report.dashboard),
            }
        )
    else:
        _print_table("ingested", report.ingested, (*SUMMARY_COLUMNS[:-1], "expected bad"))
        if stream_rows:
            _print_table("streamed", stream_rows, list(stream_rows[0]))
        _print_table("scheduled pull", report.pulled, PULL_COLUMNS)
        for table, (columns, values) in curated.items():
            _print_table(f"curated.{table}", [dict(zip(columns, v, strict=True)) for v in values], columns)
        if forecast:
            title, rows = forecast_by_region(*forecast)
            _print_table(title, rows, list(rows[0]) if rows else ["forecast_date"])
        _print_table("pipeline run", [run_summary], list(run_summary))
        print(f"dashboard: {report.dashboard}")
        print(kept_lake_hint())
    return 0 if report.ok else EXIT_FAILED


def forecast_by_region(columns: Sequence[str], values: Sequence[Sequence[Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The forecast summarised for a terminal: one row a date, one column a region (and currency, when there are
    several) holding `yhat` rounded to whole units; its intervals are a query away (the title says which)."""
    rows = [dict(zip(columns, v, strict=True)) for v in values]
    several = len({r["currency"] for r in rows}) > 1
    table: dict[str, dict[str, Any]] = {}
    for row in rows:
        column = f"{row['region']} {row['currency']}" if several else str(row["region"])
        line = table.setdefault(str(row["forecast_date"]), {"forecast_date": str(row["forecast_date"])})
        line[column] = round(float(row["yhat"])) if row["yhat"] is not None else None
    currency = "" if several or not rows else f" {rows[0]['currency']}"
    title = (
        f"curated.sales_forecast: revenue{currency} forecast by region (intervals: {invocation()} query "
        '"SELECT * FROM sales_forecast ORDER BY forecast_date, region")'
    )
    return title, [table[day] for day in sorted(table)]


def invocation() -> str:
    """How this shell runs lakebox: `lakebox` when it is on PATH, else the venv's script (`.venv/bin/lakebox`)."""
    import os
    import shutil

    script = Path(sys.executable).parent / "lakebox"
    if not script.exists():
        return f"{sys.executable} -m lakebox.cli"
    on_path = shutil.which("lakebox")
    if on_path and Path(on_path).resolve() == script.resolve():
        return "lakebox"
    relative = os.path.relpath(script.absolute(), Path.cwd())
    return relative if not relative.startswith("..") else str(script.absolute())


def kept_lake_hint() -> str:
    """What `lakebox run` ends with: commands to try, spelled as this shell can run them."""
    command = invocation()
    return f'the lake is kept: try `{command} query "SELECT * FROM daily_sales_by_region LIMIT 5"`, `{command} runs`'


def _run_summary(execution: Any) -> dict[str, Any]:
    """The pipeline run in one row: status, what it processed, what the curated queries scanned."""
    output = execution.output if isinstance(execution.output, dict) else {}
    queries = output.get("queries") or []
    scanned = sum(int(q.get("bytes_scanned", 0) or 0) for q in queries if isinstance(q, dict))
    forecast = output.get("forecast") or {}
    published = forecast.get("published")
    in_use: dict[str, Any] = published if isinstance(published, dict) else forecast  # the kept one when UNCHANGED
    metrics = {m.get("MetricName"): m.get("Value") for m in in_use.get("metrics") or [] if isinstance(m, dict)}
    return {
        "run": execution.name,
        "status": execution.status,
        "datasets": ",".join(output.get("datasets") or []),
        "dates": len(output.get("dates") or []),
        "curated queries": len(queries),
        "bytes scanned": scanned,
        "forecast": forecast.get("status") or None,
        "smape model": metrics.get("backtest:smape_model"),
        "smape seasonal naive": metrics.get("backtest:smape_seasonal_naive"),
        "error": f"{execution.error}: {execution.cause}" if execution.error else forecast.get("cause") or None,
    }


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Write the dashboard page from the lake's curated tables and pipeline records (reused when nothing changed)."""
    from lakebox.app.dashboard import build_dashboard

    with _progress() as progress, _box(args, progress) as box:
        report = build_dashboard(box, Path(args.out) if args.out else None, progress=progress)
    generated = report.generated_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    if args.json:
        _print_json(
            {
                "dashboard": str(report.path),
                "reused": report.reused,
                "generated_at": report.generated_at.isoformat(),
                "queries": report.queries,
            }
        )
    elif report.reused:
        print(f"dashboard: {report.path} (nothing changed since it was written at {generated})")
    else:
        print(f"dashboard: {report.path} ({report.queries} queries, {report.seconds:.1f}s)")
    return 0


# ---------------------------------------------------------------------- stream, schedule
def cmd_stream(args: argparse.Namespace) -> int:
    """Produce generated events into a stream and deliver them as the event source mapping (or Firehose) would."""
    from lakebox.app.stream import default_stream_dataset, run_stream

    dataset = args.dataset or default_stream_dataset()
    with _progress() as progress, _box(args, progress) as box:
        run = run_stream(
            box,
            dataset=dataset,
            rate=args.rate,
            seconds=args.seconds,
            seed=args.seed,
            bad_rate=args.bad_rate,
            window=args.window,
            from_start=args.from_start,
            progress=progress,
        )
    row = run.summary()
    if args.json:
        _print_json(row)
    else:
        _print_table("streamed", [row], list(row))
    return 0 if row.get("to failure queue", 0) == 0 else EXIT_FAILED


def cmd_schedule(args: argparse.Namespace) -> int:
    """List the template's schedules, or fire one now and run what it triggers."""
    from lakebox.app.schedule import fire_schedule, list_schedules, sample_api
    from lakebox.errors import LakeboxError

    parameters: dict[str, str] = {}
    given = _parameters(args.parameter)
    if args.action == "fire" and not args.name:
        raise LakeboxError("schedule fire needs the NAME of a schedule (see: lakebox schedule list)")
    with contextlib.ExitStack() as scope:
        api = None
        if args.action == "fire" and args.sample_api and "SourceApiBaseUrl" not in given:
            api = scope.enter_context(sample_api(args.seed, args.api_rows))
            parameters["SourceApiBaseUrl"] = api.url
        box = scope.enter_context(_box(args, parameters=parameters))
        if args.action == "list":
            found = list_schedules(box)
            if args.json:
                _print_json(found)
            else:
                _print_table("schedules", found, ("name", "kind", "expression", "target", "enabled"))
            return 0
        report = fire_schedule(box, args.name, api)
    if args.json:
        _print_json({**report.outcome, "ingested": report.ingested})
    else:
        print(json.dumps(report.outcome, indent=2, default=str))
        if report.ingested:
            _print_table("ingested", report.ingested, SUMMARY_COLUMNS)
    return 0 if report.ok else EXIT_FAILED


# ---------------------------------------------------------------------- execute, runs, query
def cmd_execute(args: argparse.Namespace) -> int:
    """Run one of the template's state machines on the local stack, from its ASL file."""
    from lakebox.app.execute_up import RunReport
    from lakebox.errors import LakeboxError

    try:
        input_ = json.loads(args.input) if args.input else {}
    except json.JSONDecodeError as exc:
        raise LakeboxError(f"--input is not JSON: {exc}") from exc
    from lakebox.app.pipeline import check_pipeline_input
    from lakebox.home import LakeHome, find_root
    from lakebox.home.up import running_up

    home = LakeHome.of(find_root())
    up = None if args.parameter else running_up(home)
    if up is not None and up.state_machines and up.region:
        # up's record names its state machines: hand the run over without loading the stack here (ADR 0025)
        from lakebox.app.execute_up import execute_with_record, resolve_state_machine

        logical_id, arn = resolve_state_machine(up, args.state_machine)
        if logical_id == "PipelineStateMachine":
            check_pipeline_input(input_, up.engines)
        with _progress() as progress:
            report = execute_with_record(up, home.runs, arn, input_, name=args.name, progress=progress)
    else:
        with _progress() as progress, _box(args, progress) as box:
            logical_id = box.state_machine_id(args.state_machine)
            if logical_id == "PipelineStateMachine":
                from lakebox.app.pipeline import engine_names

                check_pipeline_input(input_, engine_names(box.stack, logical_id))
            if box.up is not None:  # the run goes to up's process: its SparkSession serves every run (ADR 0025)
                from lakebox.app.execute_up import execute_on_up

                report = execute_on_up(box, logical_id, input_, name=args.name, progress=progress)
            else:
                report = RunReport.of(box.execute(logical_id, input_, execution_name=args.name, progress=progress))
    if args.json:
        _print_json(
            {
                "name": report.name,
                "status": report.run_status,
                "note": report.note,
                "error": report.error,
                "cause": report.cause,
                "output": report.output,
                "states": report.states,
            }
        )
    else:
        _print_table(
            f"{args.state_machine} {report.name}: {report.run_status}",
            report.states,
            ("state", "seconds", "attempts", "retries"),
        )
        if report.error:
            print(f"{report.error}: {report.cause}")
        elif report.note:
            print(f"{report.run_status}: {report.note}")
        else:
            print(json.dumps(report.output, indent=2, default=str))
    return 0 if report.status == "SUCCEEDED" else EXIT_FAILED


def cmd_runs(args: argparse.Namespace) -> int:
    """Pipeline history: each execution's status, per-state timings and error."""
    from lakebox.errors import LakeboxError
    from lakebox.home import LakeHome, find_root
    from lakebox.home.runs import list_runs

    recorded = list_runs(LakeHome.of(find_root()).runs)
    limit = None if args.all or args.name else args.limit
    runs = recorded[:limit] if limit else recorded
    if args.name:
        runs = [r for r in runs if r["name"] == args.name]
        if not runs:
            raise LakeboxError(f"no recorded run named {args.name!r} (see: lakebox runs)")
    if args.json:
        _print_json(runs)
        return 0
    if args.name:
        run = runs[0]
        _print_table(
            f"{run['name']}: {run['status']}", run["states"], ("state", "started", "seconds", "attempts", "retries")
        )
        if run.get("error"):
            print(f"{run['error']}: {run['cause']}")
        return 0
    rows = [
        {
            "run": r["name"],
            "state machine": r["state_machine"],
            "status": r["status"],
            "started": r["started"],
            "seconds": r["seconds"],
            "slowest state": max(r["states"], key=lambda s: s["seconds"] or 0)["state"] if r["states"] else None,
            "note or error": r.get("note")
            or (f"{r['error']}: {str(r.get('cause') or '')[:80]}" if r.get("error") else None),
        }
        for r in runs
    ]
    _print_table(
        f"{len(recorded)} runs (newest first; lakebox runs NAME for per-state timings)",
        rows,
        list(rows[0]) if rows else ["run"],
    )
    _more(len(rows), len(recorded), "--all to show all, --limit N for the newest N")
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    """Run Athena SQL on the local stack's catalog (DuckDB underneath) and print the rows.

    With `lakebox up` running, the query goes to its endpoint's Athena (no stack is loaded here); as a persona
    (`--as`), or with `--parameter`, it runs in this process, where the persona's grants are enforced.
    """
    from lakebox.home import LakeHome, find_root
    from lakebox.home.up import running_up

    up = None if args.as_persona or args.parameter else running_up(LakeHome.of(find_root()))
    if up is not None and up.workgroup:
        from lakebox.app.query_up import query_up

        result = query_up(up, args.sql, workgroup=args.workgroup)
    else:
        from lakebox.app.query import query

        with _box(args) as box:
            result = query(box, args.sql, workgroup=args.workgroup, persona=args.as_persona)
    columns = list(result.columns)
    rows = [dict(zip(columns, row, strict=True)) for row in result.rows]
    if args.json:
        print(json.dumps(result.to_json(), indent=2))  # decimals as exact strings, '' apart from null
    else:
        _print_table(f"{len(rows)} rows, {result.bytes_scanned:,} bytes scanned", rows, columns)
    return 0


# ---------------------------------------------------------------------- quarantine, replay, logs
def cmd_quarantine(args: argparse.Namespace) -> int:
    """What the quarantine holds: counts by dataset and reason, and sample records with their reasons."""
    from datalake.contracts import get_dataset
    from lakebox.app import quarantine

    if args.dataset:
        get_dataset(args.dataset)
    with _box(args) as box:
        report = quarantine.scan(box, dataset=args.dataset, since=args.since, samples=args.samples)
        exported = 0
        if args.export:
            exported = quarantine.export(box, Path(args.export), dataset=args.dataset, since=args.since)
        states = quarantine.objects(box, report)
    samples = quarantine.sample_rows(report)
    counts = quarantine.count_rows(report, states)
    if args.json:
        _print_json(
            {
                "counts": counts,
                "samples": samples,
                "objects": report.objects,
                "object_states": [o.row() for o in states],
                "exported": exported or None,
            }
        )
        return 0
    total = sum(report.counts.values())
    left = sum(r["outstanding"] for r in counts)
    _print_table(
        f"quarantine: {total:,} records in {len(report.objects)} objects, {left:,} outstanding (not replayed)",
        counts,
        ("dataset", "reason", "records", "outstanding"),
    )
    if states:
        listed = sorted(states, key=lambda o: o.state != "outstanding")  # outstanding first, in the report's order
        listed = listed if args.all else listed[:SHOWN]
        _print_table(
            f"{len(states)} objects (QUARANTINE_KEY; outstanding first)",
            [o.row() for o in listed],
            ("key", "records", "state", "replay_manifest"),
        )
        _more(len(listed), len(states))
    if samples:
        _print_table(
            "samples",
            [{**s, "record": str(s["record"] or "")[:100]} for s in samples],
            ("dataset", "reason", "source", "line", "detail", "record"),
        )
    if any(o.state == "outstanding" for o in states):
        command = invocation()
        print("replay an object as it is (QUARANTINE_KEY: a key above):")
        print(f"  {command} replay --object QUARANTINE_KEY")
        print("or fix its records (--export FILE), then:")
        print(f"  {command} replay FILE --dataset DATASET --of QUARANTINE_KEY")
    if args.export:
        print(f"exported {exported:,} records to {args.export}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Re-ingest corrected records (a file) or quarantined objects as they are, recording the replay in the manifest."""
    from lakebox.app.replay import replay, replay_sources
    from lakebox.errors import LakeboxError

    if bool(args.file) == bool(args.object):
        raise LakeboxError("replay takes a FILE of corrected records (with --dataset) or --object QUARANTINE_KEY")
    if args.file and not args.dataset:
        raise LakeboxError("replay FILE needs --dataset (the dataset the corrected records belong to)")
    with _progress() as progress, _box(args, progress) as box:
        sources = replay_sources(
            box,
            file=Path(args.file) if args.file else None,
            dataset=args.dataset,
            of=args.of,
            objects=args.object or [],
        )
        rows = replay(box, sources, progress)
    if args.json:
        _print_json(rows)
    else:
        _print_table("replayed", rows, (*SUMMARY_COLUMNS, "replay of"))
    return 0 if rows and all(r["status"] not in ("FAILED", None) for r in rows) else EXIT_FAILED


def cmd_logs(args: argparse.Namespace) -> int:
    """A function's structured logs (what CloudWatch would hold), optionally filtered by level and followed."""
    from lakebox.cfn.stack import Stack
    from lakebox.errors import LakeboxError
    from lakebox.home import LakeHome, find_root
    from lakebox.services.logs import LEVELS, follow_lines, function_log_name, parse_line

    root = find_root()
    logical_id, name = function_log_name(Stack(root), args.function)
    path = LakeHome.of(root).logs / f"{name}.log"
    if not path.exists() and not args.follow:
        raise LakeboxError(f"{logical_id} has not logged anything yet ({path} does not exist)")
    threshold = LEVELS[args.level.upper()] if args.level else 0
    for line in follow_lines(path, follow=args.follow, tail=args.tail):
        record = parse_line(line)
        if LEVELS.get(str(record.get("level", "INFO")).upper(), 20) < threshold:
            continue
        if args.json:
            print(json.dumps(record), flush=True)
        else:
            stamp = str(record.get("timestamp", ""))[:23]
            extra = {k: v for k, v in record.items() if k not in _LOG_NOISE}
            tail = f" {json.dumps(extra, default=str)[:300]}" if extra else ""
            print(f"{stamp} {record.get('level', '')!s:<7} {record.get('message', '')}{tail}", flush=True)
    return 0


_LOG_NOISE = frozenset(
    {
        "level",
        "timestamp",
        "message",
        "location",
        "service",
        "xray_trace_id",
        "cold_start",
        "function_arn",
        "function_memory_size",
        "function_name",
        "function_request_id",
        "sampling_rate",
        "_aws",
    }
)


# ---------------------------------------------------------------------- datasets
DATASET_COLUMNS = ("dataset", "key", "event_time", "formats", "deliveries", "curated", "version", "module")
FIELD_COLUMNS = ("field", "type", "null", "note")


def dataset_name(text: str) -> str:
    """An argparse type: a dataset name (lower-case letters, digits and `_`, starting with a letter)."""
    from lakebox.app.scaffold import valid_name

    try:
        return valid_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def field_names(text: str) -> tuple[str, ...]:
    """An argparse type: field names separated by commas."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("name at least one field")
    return names


def delimiter(text: str) -> str:
    """An argparse type: one field separator character (`\\t` or `tab` for a tab)."""
    value = {"\\t": "\t", "tab": "\t"}.get(text, text)
    if len(value) != 1 or value in '"\r\n':
        raise argparse.ArgumentTypeError(f"{text!r} is not one separator character (tab: \\t)")
    return value


def cmd_dataset(args: argparse.Namespace) -> int:
    """`dataset new`: a contract module inferred from a sample; `dataset list`: the registered datasets."""
    if args.action == "list":
        return _dataset_list(args)
    return _dataset_new(args)


def _dataset_list(args: argparse.Namespace) -> int:
    from datalake.contracts import REGISTRY

    rows = [
        {
            "dataset": d.name,
            "key": list(d.key),
            "event_time": d.event_time,
            "formats": sorted(f.value for f in d.formats),
            "deliveries": sorted(v.value for v in d.deliveries),
            "curated": [table.name for table in d.curated],
            "version": d.version,
            "module": d.contract.__module__,
        }
        for _, d in sorted(REGISTRY.items())
    ]
    if args.json:
        _print_json(rows)
    else:
        shown = [{k: ", ".join(v) if isinstance(v, list) else v for k, v in row.items()} for row in rows]
        _print_table(f"{len(rows)} registered datasets", shown, DATASET_COLUMNS)
    return 0


def _dataset_new(args: argparse.Namespace) -> int:
    from lakebox.app import scaffold
    from lakebox.errors import LakeboxError
    from lakebox.home import find_root

    try:
        root: Path | None = find_root()
    except LakeboxError:
        if not args.out:
            raise
        root = None  # --out outside any project
    contracts = (root or Path.cwd()) / scaffold.CONTRACTS_FOLDER
    out = Path(args.out) if args.out else contracts / f"{args.name}.py"
    scaffold.check_name(args.name, out, args.force)
    sample = scaffold.read_sample(Path(getattr(args, "from")), rows=args.rows, delimiter=args.delimiter)
    inferred = scaffold.infer(args.name, sample, key=args.key, event_time=args.event_time)
    dataset = scaffold.build(inferred)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(inferred.source)
    try:
        shown = out.resolve().relative_to(root) if root else out
    except ValueError:
        shown = out
    registered = root is not None and out.resolve().parent == contracts.resolve()
    declared = _declare_in_template(root, dataset) if registered and root is not None else None
    fields = [
        {
            "field": f.name,
            "type": f.annotation(),
            "null": "yes" if f.nullable else "",
            "note": "; ".join([*(["key"] if f.key else []), *(["event time"] if f.event_time else []), *f.notes]),
        }
        for f in inferred.model.fields
    ]
    # the sample as the user named it, so that the `put` step runs where `dataset new` ran
    put_name = str(sample.path) if sample.path.suffix.lower() in {".csv", ".jsonl", ".json", ".ndjson"} else None
    steps = [
        f"review {shown}: every guess is marked in a comment",
        "make test  (the registry finds the new module; every contract is checked)",
        f".venv/bin/lakebox put {put_name or str(sample.path) + ' (named *.csv)'} --dataset {args.name}",
        ".venv/bin/lakebox execute PipelineStateMachine",
    ]
    if not registered:
        steps.insert(1, f"move it to {scaffold.CONTRACTS_FOLDER}/ for the registry to find it")
        steps.insert(2, "declare it in template.yaml (Mappings.Datasets and its alarms; `make test` says what)")
    if args.json:
        _print_json(
            {
                "dataset": args.name,
                "module": str(out),
                "records": len(sample.records),
                "format": sample.format.value,
                "delimiter": sample.delimiter,
                "key": list(dataset.key),
                "key_reason": inferred.guess.key_reason,
                "event_time": dataset.event_time,
                "event_time_reason": inferred.guess.event_time_reason,
                "fields": fields,
                "notes": inferred.notes,
                "loosened": inferred.loosened,
                "template": declared,
                "next": steps,
            }
        )
        return 0
    print(f"wrote {shown}: {len(fields)} fields of {sample.path.name} ({scaffold.describe(sample)})")
    _print_table(f"{dataset.contract.__name__} (contract of {args.name})", fields, FIELD_COLUMNS)
    print(f"guessed key: {', '.join(dataset.key)} ({inferred.guess.key_reason}) — review")
    print(f"guessed event time: {dataset.event_time} ({inferred.guess.event_time_reason}) — review")
    for note in inferred.notes:
        print(f"note: {note}")
    for loosened in inferred.loosened:
        print(f"loosened: {loosened}")
    print(f"checked: the contract accepts all {len(sample.records):,} sample records, as ingestion judges them")
    if declared:
        print(declared)
    print("next:")
    for number, step in enumerate(steps, start=1):
        print(f"  {number}. {step}")
    return 0


def _declare_in_template(root: Path, dataset: Any) -> str:
    """Declare a new dataset's alarms and retention in the project's template.yaml (ADR 0021)."""
    from lakebox.cfn.datasets import declare_file

    return declare_file(root / "template.yaml", dataset)


# ---------------------------------------------------------------------- the parser
def cmd_catalog(args: argparse.Namespace) -> int:
    """Back the local catalog up now, list the backups, or restore one (the newest by default)."""
    from lakebox.app import catalog_backup

    with _box(args) as box:
        if args.action == "list":
            keys = catalog_backup.backups(box)
            if args.json:
                _print_json(keys)
            else:
                for key in keys:
                    print(key)
            return 0
        summary = catalog_backup.backup(box) if args.action == "backup" else catalog_backup.restore(box, args.key)
    row = summary.model_dump()
    if args.json:
        _print_json(row)
    else:
        _print_table(f"catalog {args.action}", [row], list(row))
    return 0


ALARM_COLUMNS = ("alarm", "state", "value", "threshold", "reason")


def _alarm_states(parameters: dict[str, str]) -> list[Any]:
    """The template's alarms evaluated on what lakebox recorded (queue depths too while `up` runs)."""
    from lakebox.app.alarms import alarm_states
    from lakebox.home import find_root

    return alarm_states(find_root(), parameters)


def cmd_alarms(args: argparse.Namespace) -> int:
    """Evaluate the template's CloudWatch alarms on the metrics the local stack recorded."""
    from lakebox.services.alarms import ALARM

    states = _alarm_states(_parameters(args.parameter))
    if args.alarm_only:
        states = [s for s in states if s.state == ALARM]
    rows = [
        {
            "alarm": s.name,
            "state": s.state,
            "value": None if s.value is None else round(s.value, 3),
            "threshold": f"{s.comparison} {s.threshold:g}",
            "reason": s.reason,
        }
        for s in states
    ]
    if args.json:
        _print_json(rows)
    else:
        firing = sum(1 for s in states if s.state == ALARM)
        _print_table(f"alarms: {firing} in ALARM of {len(states)}", rows, ALARM_COLUMNS)
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line: what is wrong, and the command that shows the help."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {' '.join(message.split())} (help: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The command line: one sub-command a verb (sub-commands are `_Parser`s too)."""
    parser = _Parser(
        prog="lakebox",
        description=__doc__,
        epilog="Exit status: 0 ok, 1 failed or refused (one line on stderr), 2 bad command line, "
        "3 put: every record quarantined.",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(
        name: str,
        func: Command,
        help_text: str,
        *,
        parameters: bool = True,
        json_flag: bool = True,
        pages: bool = False,
    ) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(func=func, parameter=[], pages=pages)
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error"
        )
        if parameters:
            command.add_argument(
                "--parameter",
                "-p",
                action="append",
                default=[],
                metavar="NAME=VALUE",
                help="override a template parameter",
            )
        if json_flag:
            command.add_argument("--json", action="store_true", help="print JSON (typed values, null for none)")
        return command

    up = add(
        "up",
        cmd_up,
        "start the local endpoint with the stack (and the saved lake) on it; keep it running",
        json_flag=False,
    )
    up.add_argument("--port", type=int, default=4566, help="port on 127.0.0.1 (default 4566)")
    up.add_argument("--poll", type=non_negative_float, default=0.5, help="seconds between looks for new uploads")
    up.add_argument("--quiet", action="store_true", help="do not print the resource table")
    up.add_argument(
        "--no-warm-up",
        action="store_true",
        help="do not warm Spark in the background (a run of the Glue job on generated records, some 10 s of CPU)",
    )

    reset = add(
        "reset",
        cmd_reset,
        "delete the local lake (.lakebox/): objects, tables, run history, logs",
        parameters=False,
        json_flag=False,
    )
    reset.add_argument("--yes", "-y", action="store_true", help="do not ask")

    add("status", cmd_status, "what is running and where the lake is kept", parameters=False)

    put = add("put", cmd_put, "upload files to the landing bucket and run what their events trigger")
    put.add_argument("files", nargs="+", metavar="FILE")
    put.add_argument("--dataset", required=True, help="dataset name: the landing key prefix")
    put.add_argument("--key", help="landing key (default: DATASET/FILENAME)")

    invoke = add(
        "invoke", cmd_invoke, "invoke a function in-process with an event (like sam local invoke)", json_flag=False
    )
    invoke.add_argument("function", help="logical id or name of the function")
    invoke.add_argument("--event", "-e", help="event JSON file, or - to read it from stdin")
    invoke.add_argument(
        "--stage", metavar="FILE", help="upload FILE under the key the (S3) event names, and point the event at it"
    )

    from lakebox.app.options import SAMPLE_HELP

    sample = add(
        "sample",
        cmd_sample,
        SAMPLE_HELP["command"],
        parameters=False,
    )
    sample.add_argument("folder", nargs="?", default=".", metavar="FOLDER", help="where to write them (default: .)")
    sample.add_argument("--rows", type=positive_int, default=1_000, help=SAMPLE_HELP["rows"])
    sample.add_argument("--bad-rate", type=share, default=0.02, help="share of invalid records (quarantined)")
    sample.add_argument("--seed", type=int, default=7)

    add_run_arguments(add("run", cmd_run, "the whole pipeline on generated sample data, kept in the local lake"))

    dashboard = add("dashboard", cmd_dashboard, "write the dashboard page (KPIs, charts, pipeline health) as one HTML")
    dashboard.add_argument("--out", metavar="PATH", help="the HTML file to write (default: .lakebox/dashboard.html)")

    execute = add("execute", cmd_execute, "run a state machine of the template on the local stack")
    execute.add_argument("state_machine", help="logical id or name, e.g. PipelineStateMachine")
    execute.add_argument("--input", help="execution input (JSON)")
    execute.add_argument("--name", help="execution name (default: a new unique name)")

    runs = add("runs", cmd_runs, "pipeline history: status, per-state timings, error", parameters=False, pages=True)
    runs.add_argument("name", nargs="?", help="one run's per-state timings")
    runs.add_argument("--limit", type=positive_int, default=SHOWN, help=f"newest runs to show (default {SHOWN})")
    runs.add_argument("--all", action="store_true", help="show every recorded run")

    query = add("query", cmd_query, "run Athena SQL against the local catalog", pages=True)
    query.add_argument("sql")
    query.add_argument("--workgroup", help="Athena workgroup (default: the template's AnalyticsWorkGroup)")
    query.add_argument(
        "--as",
        dest="as_persona",
        metavar="PERSONA",
        help="run as a persona's role (analyst, ml, bi): its Lake Formation grants and workgroups apply (this runs "
        "in this process even with lakebox up running: the endpoint's Athena does not apply a persona's grants)",
    )

    quarantine = add(
        "quarantine", cmd_quarantine, "quarantined records: counts by dataset and reason, samples", pages=True
    )
    quarantine.add_argument("--dataset", help="one dataset only")
    quarantine.add_argument("--since", type=moment, help="quarantined since (ISO date/time, or 2h, 3d)")
    quarantine.add_argument("--samples", type=int, default=3, help="sample records for each reason")
    quarantine.add_argument(
        "--export", metavar="FILE", help="write the quarantined records' original text to FILE, one a line"
    )
    quarantine.add_argument("--all", action="store_true", help=f"list every object (default: the first {SHOWN})")

    replay = add(
        "replay", cmd_replay, "re-ingest corrected records or quarantined objects; the manifest records the replay"
    )
    replay.add_argument("file", nargs="?", metavar="FILE", help="corrected records (any format the dataset accepts)")
    replay.add_argument("--dataset", help="the dataset of FILE")
    replay.add_argument("--of", help="what FILE corrects (a quarantine key), recorded in the manifest")
    replay.add_argument(
        "--object", action="append", metavar="QUARANTINE_KEY", help="replay a quarantine object as it is (repeatable)"
    )

    logs = add("logs", cmd_logs, "a function's structured logs", parameters=False, pages=True)
    logs.add_argument("function", help="logical id or name of the function")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new lines")
    logs.add_argument(
        "--level",
        choices=("debug", "info", "warning", "error", "DEBUG", "INFO", "WARNING", "ERROR"),
        help="this level and above",
    )
    logs.add_argument("--tail", type=positive_int, help="only the last N lines")

    stream = add("stream", cmd_stream, "produce generated events into a stream and deliver them in batches")
    stream.add_argument(
        "--dataset", help="the stream-delivered dataset to produce (default: the registry's one, if it has one)"
    )
    stream.add_argument("--rate", type=non_negative_float, default=100.0, help="events produced a second")
    stream.add_argument("--seconds", type=non_negative_float, default=10.0, help="how long to produce")
    stream.add_argument("--bad-rate", type=share, default=0.02, help="share of invalid events")
    stream.add_argument(
        "--window", type=non_negative_float, help="batching window in seconds (default: the template's)"
    )
    stream.add_argument("--from-start", action="store_true", help="also deliver what earlier runs put in the stream")
    stream.add_argument("--seed", type=int, default=7)

    alarms = add("alarms", cmd_alarms, "evaluate the template's alarms on the metrics lakebox recorded", pages=True)
    alarms.add_argument("--alarm-only", action="store_true", help="list only the alarms in state ALARM")

    catalog = add("catalog", cmd_catalog, "back up the Glue catalog to the artifacts bucket, list or restore backups")
    catalog.add_argument("action", choices=("backup", "list", "restore"))
    catalog.add_argument("--key", help="the backup to restore (default: the newest)")

    dataset = add(
        "dataset",
        cmd_dataset,
        "write a dataset's contract module from a sample file, or list the registry",
        parameters=False,
        json_flag=False,
    )
    actions = dataset.add_subparsers(dest="action", required=True)
    new = actions.add_parser(
        "new",
        help="write a contract module inferred from a sample (CSV or JSON)",
        description="Write layers/common/datalake/contracts/NAME.py from a sample: field types, nullability, enums, "
        "and guesses for the key and the event time, each marked for review. The module is checked to accept "
        "every sample record as ingestion judges them.",
    )
    new.add_argument("name", type=dataset_name, metavar="NAME", help="the dataset's name (its landing prefix)")
    new.add_argument("--from", required=True, metavar="SAMPLE", help="a sample file: .csv, or JSON lines / array")
    new.add_argument("--out", metavar="PATH", help="where to write the module (default: the contracts package)")
    new.add_argument("--force", action="store_true", help="overwrite the module if it exists")
    new.add_argument("--key", type=field_names, metavar="FIELD[,FIELD]", help="the key (default: guessed)")
    new.add_argument("--event-time", metavar="FIELD", help="the event-time field (default: guessed)")
    new.add_argument("--delimiter", type=delimiter, help="the CSV separator (default: sniffed from the sample)")
    new.add_argument("--rows", type=positive_int, default=10_000, help="sample records to read (default 10,000)")
    new.add_argument("--json", action="store_true", help="print JSON (typed values, null for none)")
    listing = actions.add_parser("list", help="the registered datasets: key, event time, formats, deliveries")
    listing.set_defaults(pages=True)
    listing.add_argument("--json", action="store_true", help="print JSON (typed values, null for none)")
    for action in (new, listing):
        action.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error"
        )

    schedule = add("schedule", cmd_schedule, "list the template's schedules or fire one now")
    schedule.add_argument("action", choices=("list", "fire"))
    schedule.add_argument("name", nargs="?", help="schedule to fire: <LogicalId>.<EventName> or the event name")
    schedule.add_argument(
        "--no-sample-api",
        dest="sample_api",
        action="store_false",
        help="do not serve the sample source API (by default it serves the pull unless SourceApiBaseUrl is given)",
    )
    schedule.add_argument("--api-rows", type=positive_int, default=2_000, help="records the sample source API serves")
    schedule.add_argument("--seed", type=int, default=7)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a sub-command; an error is one line on stderr and a non-zero exit (`--debug`: traceback)."""
    from lakebox.errors import RunAborted

    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    try:
        with paged(bool(getattr(args, "pages", False)) and not getattr(args, "follow", False)):
            return int(args.func(args))
    except RunAborted as exc:
        print(f"lakebox: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if debug:
            raise
        if isinstance(exc, _user_errors()):
            print(f"lakebox: error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_FAILED
        print(
            f"lakebox: internal error: {type(exc).__name__}: {_one_line(exc)} (--debug shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILED


def _user_errors() -> tuple[type[BaseException], ...]:
    """The errors told as one line: lakebox's and the project's, and those of botocore and pydantic when the command
    loaded them (an exception of a library not imported cannot have been raised, so none is imported here)."""
    from lakebox.errors import LakeboxError

    kinds: list[type[BaseException]] = [LakeboxError, OSError, ValueError]
    for module, names in (
        ("datalake.exceptions", ("DataLakeError",)),
        ("botocore.exceptions", ("ClientError", "BotoCoreError")),
        ("pydantic", ("ValidationError",)),
    ):
        loaded = sys.modules.get(module)
        kinds.extend(getattr(loaded, name) for name in names if loaded is not None and hasattr(loaded, name))
    return tuple(kinds)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 500 else text[:497] + "..."


if __name__ == "__main__":
    sys.exit(main())

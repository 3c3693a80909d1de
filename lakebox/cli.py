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

    from lakebox.runtime import lakebox, summary_row
    from lakebox.sample import SampleSpec, generate

    spec = SampleSpec(
        sales=args.rows,
        bad_rate=args.bad_rate,
        end=dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0),
        seed=args.seed,
    )
    rows: list[dict[str, Any]] = []
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task("starting the local stack", total=None)
        with lakebox(
            parameters=_parameters(args.parameter),
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
    if args.json:
        print(json.dumps({"ingested": rows}, indent=2))
    else:
        _print_table("ingested", rows, (*SUMMARY_COLUMNS[:-1], "expected bad"))
    return 0 if all(r["status"] not in ("FAILED", "") for r in rows) else 1


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
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a sub-command; errors are one clear line and a non-zero exit."""
    from botocore.exceptions import BotoCoreError, ClientError

    from lakebox.errors import LakeboxError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except (LakeboxError, OSError, ValueError, ClientError, BotoCoreError) as exc:
        print(f"lakebox: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

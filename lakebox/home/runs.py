"""Pipeline run history: each state machine execution on a box, with per-state timings, kept under `.lakebox/runs/`."""

from __future__ import annotations

import glob
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakebox.home.state import atomic_write

if TYPE_CHECKING:
    from lakebox.sfn import Execution, Integrations
    from lakebox.sfn.registry import Handler, TaskContext


def _iso(moment: Any) -> str | None:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z") if moment is not None else None


def state_timings(execution: Execution) -> list[dict[str, Any]]:
    """Each top-level and nested state entered, in order, with its seconds, attempts and outcome."""
    entered: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for event in execution.events():
        if not event.state:
            continue
        if event.type.endswith("StateEntered"):
            entered.setdefault(event.state, event.timestamp)
        elif event.type.endswith("StateExited") and event.state in entered:
            began = entered.pop(event.state)
            rows.append(
                {
                    "state": event.state,
                    "started": _iso(began),
                    "seconds": round((event.timestamp - began).total_seconds(), 3),
                    "attempts": execution.attempts(event.state) or None,
                    "retries": execution.retries(event.state) or None,
                }
            )
    for state, began in entered.items():
        rows.append({"state": state, "started": _iso(began), "seconds": None, "attempts": None, "retries": None})
    return rows


def note_of(execution: Execution) -> str | None:
    """ "nothing to do" for a successful run that found nothing new to process."""
    output = execution.output if isinstance(execution.output, dict) else {}
    if execution.status != "SUCCEEDED" or "changed" not in output:
        return None
    if not output.get("changed") and not output.get("queries"):
        forecast = output.get("forecast")
        unchanged = isinstance(forecast, dict) and forecast.get("status") == "UNCHANGED"
        return "nothing to do: no new data since the last run" + ("; the forecast is unchanged" if unchanged else "")
    return None


def run_status(execution: Execution) -> str:
    """The run's status: the execution's, except PARTIAL for a successful run that held datasets back (ADR 0017)."""
    output = execution.output if isinstance(execution.output, dict) else {}
    if execution.status == "SUCCEEDED" and output.get("status") == "PARTIAL":
        return "PARTIAL"
    return execution.status


def held_note(execution: Execution) -> str | None:
    """`held: table (dataset: rule), …` for a PARTIAL run."""
    output = execution.output if isinstance(execution.output, dict) else {}
    held = output.get("held") or []
    if run_status(execution) != "PARTIAL" or not isinstance(held, list):
        return None
    parts = [f"{h.get('table')} ({'; '.join(h.get('reasons') or [])})" for h in held if isinstance(h, dict)]
    return "held: " + ", ".join(parts) if parts else "held: " + ", ".join(output.get("held_datasets") or {})


def waiting_note(execution: Execution) -> str | None:
    """`waiting: table (waiting for input: dataset), …` for a successful run that left tables waiting for inputs."""
    output = execution.output if isinstance(execution.output, dict) else {}
    waiting = output.get("waiting") or []
    if execution.status != "SUCCEEDED" or not isinstance(waiting, list):
        return None
    parts = [f"{w.get('table')} ({w.get('reason')})" for w in waiting if isinstance(w, dict)]
    return "waiting: " + ", ".join(parts) if parts else None


def run_note(execution: Execution) -> str | None:
    """What a reader should know of the run in one line: the tables it held and those waiting for inputs, or that
    there was nothing to do."""
    notes = [note for note in (held_note(execution), waiting_note(execution)) if note]
    return "; ".join(notes) if notes else note_of(execution)


def run_document(state_machine: str, execution: Execution) -> dict[str, Any]:
    """The run as `lakebox runs --json` shows it."""
    output = execution.output if isinstance(execution.output, dict) else {}
    seconds = (execution.stop_date - execution.start_date).total_seconds() if execution.stop_date else None
    return {
        "name": execution.name,
        "state_machine": state_machine,
        "status": run_status(execution),
        "started": _iso(execution.start_date),
        "stopped": _iso(execution.stop_date),
        "seconds": round(seconds, 3) if seconds is not None else None,
        "input": execution.input,
        "datasets": output.get("datasets"),
        "note": run_note(execution),
        "held": output.get("held") or None,
        "waiting": output.get("waiting") or None,
        "error": execution.error,
        "cause": execution.cause,
        "states": state_timings(execution),
    }


def record_run(folder: Path, state_machine: str, execution: Execution) -> Path:
    """Write the run's document to `<folder>/<started>-<name>.json` (atomically)."""
    document = run_document(state_machine, execution)
    stamp = execution.start_date.strftime("%Y%m%dT%H%M%S%f")
    path = folder / f"{stamp}-{execution.name}.json"
    atomic_write(path, lambda handle: handle.write(json.dumps(document, indent=2, default=str).encode()))
    return path


def list_runs(folder: Path, *, limit: int | None = None) -> list[dict[str, Any]]:
    """The recorded runs, newest first."""
    if not folder.exists():
        return []
    paths = sorted(folder.glob("*.json"), reverse=True)
    runs = []
    for path in paths[:limit] if limit else paths:
        try:
            runs.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return runs


def find_run(folder: Path, name: str) -> dict[str, Any] | None:
    """The recorded run named `name` (the newest, should a name repeat), reading only its own file."""
    for path in sorted(folder.glob(f"*-{glob.escape(name)}.json"), reverse=True):
        try:
            document: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if document.get("name") == name:
            return document
    return None


def with_progress(integrations: Integrations, progress: Callable[[str], None]) -> Integrations:
    """The registry, reporting each task as it starts (its state name; the progress line keeps the times)."""
    last: list[str] = [""]

    def middleware(handler: Handler) -> Handler:
        def reporting(parameters: Any, task: TaskContext) -> Any:
            retry = f" (retry {task.retry_count})" if task.retry_count else ""
            text = f"{task.state_name}{retry}"
            if text != last[0]:
                last[0] = text
                progress(text)
            return handler(parameters, task)

        return reporting

    return integrations.with_middleware(middleware)

"""`lakebox execute` while `lakebox up` runs: the execution runs in `up`, on its endpoint's Step Functions.

`up` keeps one process for the box, so its one SparkSession (and DuckDB, and the imported handlers) serve every
run: a command that ran the execution in its own process paid the JVM's start every time. The command starts the
execution with StartExecution, waits on DescribeExecution, stops it with StopExecution on Ctrl-C, and reads the
run's record (`lakebox runs`: states, timings, note) that `up` writes when it ends.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lakebox.errors import LakeboxError, RunAborted
from lakebox.home.runs import find_run, run_note, run_status, state_timings
from lakebox.home.up import LOCAL_KEY

if TYPE_CHECKING:
    from pathlib import Path

    from lakebox.box import Lakebox
    from lakebox.home.up import UpRecord
    from lakebox.sfn import Execution

POLL_SECONDS = 0.2


@dataclass(frozen=True)
class RunReport:
    """A finished run as `lakebox execute` prints it."""

    name: str
    status: str
    """The execution's status (SUCCEEDED, FAILED, TIMED_OUT, ABORTED)."""
    run_status: str
    """The run's: PARTIAL for a successful run that held datasets back (ADR 0017)."""
    note: str | None
    error: str | None
    cause: str | None
    output: Any
    states: list[dict[str, Any]]

    @classmethod
    def of(cls, execution: Execution) -> RunReport:
        """The report of an execution run in this process."""
        return cls(
            name=execution.name,
            status=execution.status,
            run_status=run_status(execution),
            note=run_note(execution),
            error=execution.error,
            cause=execution.cause,
            output=execution.output,
            states=state_timings(execution),
        )


def execute_on_up(
    box: Lakebox,
    logical_id: str,
    input_: Any,
    *,
    name: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> RunReport:
    """Run one of the template's state machines in the running `up` and wait for its end (see `run_on_up`)."""
    sfn = box.session.client("stepfunctions")
    return run_on_up(sfn, str(box.stack.ref(logical_id)), box.home.runs, input_, name=name, progress=progress)


def resolve_state_machine(up: UpRecord, name: str) -> tuple[str, str]:
    """`(logical id, ARN)` of the template's state machine `up` recorded under `name`: logical id, name or ARN.

    Raises
    ------
    LakeboxError
        When `up` has no such state machine (the message names those it has).
    """
    for logical_id, arn in up.state_machines.items():
        if name in (logical_id, arn, arn.rpartition(":")[2]):
            return logical_id, arn
    raise LakeboxError(
        f"no state machine {name!r} in template.yaml (state machines: {', '.join(sorted(up.state_machines))})"
    )


def execute_with_record(
    up: UpRecord,
    runs: Path,
    arn: str,
    input_: Any,
    *,
    name: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> RunReport:
    """`execute_on_up` from `up`'s record alone: no stack, engine or moto is imported in this process."""
    import boto3

    session = boto3.session.Session(
        aws_access_key_id=LOCAL_KEY, aws_secret_access_key=LOCAL_KEY, region_name=up.region or "us-east-1"
    )
    sfn = session.client("stepfunctions", endpoint_url=up.endpoint)
    return run_on_up(sfn, arn, runs, input_, name=name, progress=progress)


def run_on_up(
    sfn: Any,
    arn: str,
    runs: Path,
    input_: Any,
    *,
    name: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> RunReport:
    """Start state machine `arn` on `up`'s Step Functions, wait for its end, and read the run `up` recorded in `runs`.

    Raises
    ------
    RunAborted
        When Ctrl-C stopped it (StopExecution; `up` records it ABORTED).
    LakeboxError
        When `up` finished the run without recording it.
    """
    name = name or f"lakebox-{uuid.uuid4().hex[:12]}"
    started = sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps(input_ if input_ else {}))
    arn = started["executionArn"]
    if progress is not None:
        progress(f"running in lakebox up ({name})")
    try:
        while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        sfn.stop_execution(executionArn=arn, cause="stopped by Ctrl-C")
        raise RunAborted(
            f"run {name} stopped by Ctrl-C and recorded ABORTED; the next run picks up what it processed"
        ) from None
    record = find_run(runs, name)
    if record is None:
        raise LakeboxError(f"lakebox up ended run {name} ({described['status']}) without recording it")
    output = json.loads(described["output"]) if described.get("output") else None
    return RunReport(
        name=name,
        status=str(described["status"]),
        run_status=str(record.get("status") or described["status"]),
        note=record.get("note"),
        error=described.get("error"),
        cause=described.get("cause"),
        output=output,
        states=list(record.get("states") or []),
    )

"""Step Functions on the endpoint: the template's state machines and those created there, run by lakebox's ASL
executor with the run records `lakebox execute` writes; executions start at once and run in a thread of their own."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from lakebox.services.serve import AwsRequest, AwsResponse, ServiceError, unsupported

if TYPE_CHECKING:
    from lakebox.cfn.stack import Stack
    from lakebox.sfn import Execution, HistoryEvent

logger = logging.getLogger(__name__)

_PAGE: Final = 100
_NAME: Final = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")


@dataclass(frozen=True)
class StateMachineInfo:
    """A state machine as the endpoint lists it: one of the template's (its logical id), or one created on the
    endpoint (no logical id)."""

    logical_id: str
    arn: str
    definition: str
    role_arn: str
    type: str
    created: dt.datetime

    @property
    def name(self) -> str:
        """The state machine's name (the last part of its ARN)."""
        return self.arn.rsplit(":", 1)[-1]


class TaskCallbacks(Protocol):
    """Where SendTaskSuccess/SendTaskFailure/SendTaskHeartbeat go: the executor's tasks waiting for a token."""

    def send_task_success(self, token: str, output: str) -> None:
        """Complete the task waiting for `token` with `output` (JSON text)."""
        ...

    def send_task_failure(self, token: str, error: str = "", cause: str = "") -> None:
        """Fail the task waiting for `token`."""
        ...

    def send_task_heartbeat(self, token: str) -> None:
        """Record a heartbeat of the task waiting for `token`."""
        ...


@dataclass
class _Run:
    arn: str
    name: str
    machine: StateMachineInfo
    input: Any
    started: dt.datetime
    execution: Execution | None = None
    failure: tuple[str, str] | None = None
    aborted: dt.datetime | None = None
    done: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)


@dataclass
class StepFunctionsApi:
    """Step Functions' API (JSON 1.0) over the box's executor.

    Parameters
    ----------
    machines
        The template's state machines.
    execute
        Runs one to completion on the box and records the run: (state machine, input, execution name, stop event) to
        the finished execution (`Lakebox.execute`); setting the event stops it (ABORTED).
    callbacks
        The executor's waiting tasks, for SendTaskSuccess/Failure/Heartbeat; without it those operations answer
        `UnsupportedOperation`.
    validate
        Checks a definition given to CreateStateMachine/UpdateStateMachine (the executor's `validate_definition` with
        the box's integrations); without it those operations answer `UnsupportedOperation`.
    recorded_runs
        The runs recorded in the home (`lakebox.home.runs.list_runs`), listed by ListExecutions beside the runs
        started here.
    """

    machines: Callable[[], list[StateMachineInfo]]
    execute: Callable[[StateMachineInfo, Any, str, threading.Event], Execution]
    callbacks: TaskCallbacks | None = None
    validate: Callable[[dict[str, Any]], None] | None = None
    recorded_runs: Callable[[], list[dict[str, Any]]] | None = None
    signing_names: tuple[str, ...] = ("states",)
    target_prefixes: tuple[str, ...] = ("AWSStepFunctions",)
    _runs: dict[str, _Run] = field(default_factory=dict)
    _created: dict[str, StateMachineInfo] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, request: AwsRequest) -> AwsResponse | AwsRequest:
        """Answer a Step Functions request."""
        operation = request.target
        if operation is None:
            raise unsupported("Step Functions", f"{request.method} {request.path}")
        handler = self._handlers().get(operation)
        if handler is None:
            raise unsupported("Step Functions", operation)
        return AwsResponse.of_json(handler(request.json()), "application/x-amz-json-1.0")

    def _handlers(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "ListStateMachines": self.list_state_machines,
            "DescribeStateMachine": self.describe_state_machine,
            "CreateStateMachine": self.create_state_machine,
            "UpdateStateMachine": self.update_state_machine,
            "DeleteStateMachine": self.delete_state_machine,
            "StartExecution": self.start_execution,
            "DescribeExecution": self.describe_execution,
            "ListExecutions": self.list_executions,
            "GetExecutionHistory": self.get_execution_history,
            "StopExecution": self.stop_execution,
            "SendTaskSuccess": self.send_task_success,
            "SendTaskFailure": self.send_task_failure,
            "SendTaskHeartbeat": self.send_task_heartbeat,
        }

    # ------------------------------------------------------------------ state machines
    def _all_machines(self) -> list[StateMachineInfo]:
        with self._lock:
            created = list(self._created.values())
        return [*self.machines(), *created]

    def _machine(self, arn: str | None) -> StateMachineInfo:
        for machine in self._all_machines():
            if machine.arn == arn:
                return machine
        raise ServiceError("StateMachineDoesNotExist", f"State Machine Does Not Exist: '{arn}'")

    def list_state_machines(self, params: dict[str, Any]) -> dict[str, Any]:
        """ListStateMachines: the template's and those created on the endpoint."""
        items = [
            {"stateMachineArn": m.arn, "name": m.name, "type": m.type, "creationDate": m.created.isoformat()}
            for m in sorted(self._all_machines(), key=lambda m: m.name)
        ]
        return _page(items, params, "stateMachines")

    def _checked_definition(self, operation: str, text: Any) -> str:
        """The definition as the executor will run it, or Step Functions' InvalidDefinition naming the problem."""
        from lakebox.sfn.errors import DefinitionError, UnsupportedFeatureError

        if self.validate is None:
            raise unsupported("Step Functions", operation)
        try:
            document = json.loads(str(text))
        except ValueError as exc:
            raise ServiceError("InvalidDefinition", f"Invalid State Machine Definition: 'INVALID_JSON: {exc}'") from exc
        if not isinstance(document, dict):
            raise ServiceError(
                "InvalidDefinition", "Invalid State Machine Definition: 'the definition is not an object'"
            )
        try:
            self.validate(document)
        except (DefinitionError, UnsupportedFeatureError) as exc:
            raise ServiceError("InvalidDefinition", f"Invalid State Machine Definition: '{exc}'") from exc
        return json.dumps(document, indent=2)

    def create_state_machine(self, params: dict[str, Any]) -> dict[str, Any]:
        """CreateStateMachine: a state machine of the user's, kept by this endpoint (not across a restart).

        Its definition is checked by the executor's validation with the box's integrations: Lambda tasks reach the
        template's functions, `aws-sdk` tasks the endpoint. Creating the same machine again answers its ARN; the same
        name with another definition or role is StateMachineAlreadyExists, as on AWS.
        """
        from lakebox.cfn.stack import ACCOUNT_ID, REGION

        name = str(params.get("name") or "")
        if not _NAME.match(name):
            raise ServiceError("InvalidName", f"Invalid Name: '{name}'")
        role_arn = _role_arn(params.get("roleArn"))
        kind = str(params.get("type") or "STANDARD")
        if kind not in {"STANDARD", "EXPRESS"}:
            raise ServiceError("ValidationException", f"Value '{kind}' at 'type' must be STANDARD or EXPRESS")
        definition = self._checked_definition("CreateStateMachine", params.get("definition"))
        arn = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{name}"
        machine = StateMachineInfo("", arn, definition, role_arn, kind, dt.datetime.now(dt.UTC))
        existing = next((m for m in self.machines() if m.arn == arn), None)
        with self._lock:
            existing = existing or self._created.get(arn)
            if existing is not None:
                same = (existing.definition, existing.role_arn, existing.type) == (definition, role_arn, kind)
                if not same:
                    raise ServiceError("StateMachineAlreadyExists", f"State Machine Already Exists: '{arn}'")
                machine = existing
            else:
                self._created[arn] = machine
        return {"stateMachineArn": machine.arn, "creationDate": machine.created.isoformat()}

    def _created_machine(self, operation: str, arn: Any) -> StateMachineInfo:
        machine = self._machine(arn)
        if machine.logical_id:
            raise ServiceError(
                "ValidationException",
                f"{operation}: '{arn}' is the template's state machine {machine.logical_id}; change it in "
                "template.yaml and restart `lakebox up`",
            )
        return machine

    def update_state_machine(self, params: dict[str, Any]) -> dict[str, Any]:
        """UpdateStateMachine of a machine created on the endpoint: new executions run the new definition or role."""
        machine = self._created_machine("UpdateStateMachine", params.get("stateMachineArn"))
        if params.get("definition") is None and params.get("roleArn") is None:
            raise ServiceError("MissingRequiredParameter", "Either the definition or the roleArn must be specified")
        definition = machine.definition
        if params.get("definition") is not None:
            definition = self._checked_definition("UpdateStateMachine", params["definition"])
        role_arn = _role_arn(params["roleArn"]) if params.get("roleArn") is not None else machine.role_arn
        updated = StateMachineInfo("", machine.arn, definition, role_arn, machine.type, machine.created)
        with self._lock:
            if machine.arn not in self._created:
                raise ServiceError("StateMachineDoesNotExist", f"State Machine Does Not Exist: '{machine.arn}'")
            self._created[machine.arn] = updated
        return {"updateDate": dt.datetime.now(dt.UTC).isoformat()}

    def delete_state_machine(self, params: dict[str, Any]) -> dict[str, Any]:
        """DeleteStateMachine of a machine created on the endpoint (its running executions run to their end)."""
        machine = self._created_machine("DeleteStateMachine", params.get("stateMachineArn"))
        with self._lock:
            self._created.pop(machine.arn, None)
        return {}

    def describe_state_machine(self, params: dict[str, Any]) -> dict[str, Any]:
        """DescribeStateMachine: the definition with its substitutions applied, as deployed."""
        machine = self._machine(params.get("stateMachineArn"))
        return {
            "stateMachineArn": machine.arn,
            "name": machine.name,
            "status": "ACTIVE",
            "definition": machine.definition,
            "roleArn": machine.role_arn,
            "type": machine.type,
            "creationDate": machine.created.isoformat(),
        }

    # ------------------------------------------------------------------ executions
    def start_execution(self, params: dict[str, Any]) -> dict[str, Any]:
        """StartExecution: the run starts now on the executor, in a thread; its ARN answers at once."""
        machine = self._machine(params.get("stateMachineArn"))
        name = str(params.get("name") or uuid.uuid4())
        if not _NAME.match(name):
            raise ServiceError("InvalidName", f"Invalid Name: '{name}'")
        text = params.get("input")
        try:
            document = json.loads(text) if text else {}
        except ValueError as exc:
            raise ServiceError("InvalidExecutionInput", f"Invalid State Machine Execution Input: '{exc}'") from exc
        arn = _execution_arn(machine, name)
        run = _Run(arn, name, machine, document, dt.datetime.now(dt.UTC))
        with self._lock:
            if arn in self._runs:
                raise ServiceError("ExecutionAlreadyExists", f"Execution Already Exists: '{arn}'")
            self._runs[arn] = run
        threading.Thread(target=self._run, args=(run,), name=f"sfn-{name[:20]}", daemon=True).start()
        return {"executionArn": arn, "startDate": run.started.isoformat()}

    def _run(self, run: _Run) -> None:
        try:
            run.execution = self.execute(run.machine, run.input, run.name, run.stop)
        except Exception as exc:  # the executor refused the definition or an integration broke: the run fails
            logger.exception("execution %s could not run", run.arn)
            run.failure = ("States.Runtime", f"{type(exc).__name__}: {exc}")
        finally:
            run.done.set()

    def _find(self, arn: str | None) -> _Run:
        with self._lock:
            run = self._runs.get(str(arn))
        if run is None:
            raise ServiceError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'")
        return run

    def describe_execution(self, params: dict[str, Any]) -> dict[str, Any]:
        """DescribeExecution: RUNNING until the executor finishes, then its status, output or error and cause."""
        return _describe(self._find(params.get("executionArn")))

    def list_executions(self, params: dict[str, Any]) -> dict[str, Any]:
        """ListExecutions of one state machine, newest first, optionally of one status: the runs started here and
        those `lakebox execute` (or an earlier `up`) recorded in the home's runs."""
        machine = self._machine(params.get("stateMachineArn"))
        wanted = params.get("statusFilter")
        with self._lock:
            runs = [r for r in self._runs.values() if r.machine.arn == machine.arn]
        listed: list[tuple[dt.datetime, dict[str, Any]]] = []
        for run in runs:
            described = _describe(run)
            listed.append(
                (run.started, {k: described[k] for k in described if k not in {"input", "output", "error", "cause"}})
            )
        served = {run.arn for run in runs}
        for item in self._recorded(machine):
            if item["executionArn"] not in served:
                listed.append((dt.datetime.fromisoformat(item["startDate"]), item))
        items = [item for _, item in sorted(listed, key=lambda pair: pair[0], reverse=True)]
        if wanted:
            items = [item for item in items if item["status"] == wanted]
        return _page(items, params, "executions")

    def _recorded(self, machine: StateMachineInfo) -> list[dict[str, Any]]:
        """The machine's runs recorded in the home, as ListExecutions lists them.

        A record names a template's machine by logical id and a machine created on the endpoint by its name.
        """
        if self.recorded_runs is None:
            return []
        template_ids = {m.logical_id for m in self.machines()}
        mine = {machine.logical_id} if machine.logical_id else {machine.name} - template_ids
        items = []
        for record in self.recorded_runs():
            name, started = record.get("name"), record.get("started")
            if record.get("state_machine") not in mine or not name or not started:
                continue
            status = str(record.get("status") or "")
            item: dict[str, Any] = {
                "executionArn": _execution_arn(machine, str(name)),
                "stateMachineArn": machine.arn,
                "name": str(name),
                "status": "SUCCEEDED" if status == "PARTIAL" else status,  # PARTIAL is lakebox's, of a success
                "startDate": _timestamp(str(started)),
            }
            if record.get("stopped"):
                item["stopDate"] = _timestamp(str(record["stopped"]))
            items.append(item)
        return items

    def get_execution_history(self, params: dict[str, Any]) -> dict[str, Any]:
        """GetExecutionHistory: the executor's events in Step Functions' shape (only ExecutionStarted while running)."""
        run = self._find(params.get("executionArn"))
        include_data = params.get("includeExecutionData", True)
        if run.execution is None or not run.done.is_set():
            events = [
                {
                    "id": 1,
                    "previousEventId": 0,
                    "type": "ExecutionStarted",
                    "timestamp": run.started.isoformat(),
                    "executionStartedEventDetails": {"input": json.dumps(run.input) if include_data else ""},
                }
            ]
        else:
            events = [_event(e, include_data) for e in run.execution.events()]
        if params.get("reverseOrder"):
            events.reverse()
        return _page(events, params, "events")

    def stop_execution(self, params: dict[str, Any]) -> dict[str, Any]:
        """StopExecution: a running execution ends ABORTED. The executor stops it at the next state (a task waiting
        for its token stops waiting at once; another task running now completes, its result unused); a finished one
        is refused as Step Functions refuses it."""
        run = self._find(params.get("executionArn"))
        now = dt.datetime.now(dt.UTC)
        if run.done.is_set():
            raise ServiceError("ValidationException", f"Execution is not running: '{run.arn}'")
        run.aborted = now
        run.failure = (str(params.get("error") or ""), str(params.get("cause") or ""))
        run.stop.set()
        return {"stopDate": now.isoformat()}

    # ------------------------------------------------------------------ callbacks
    def _callbacks(self, operation: str) -> TaskCallbacks:
        if self.callbacks is None:
            raise unsupported("Step Functions", operation)
        return self.callbacks

    def send_task_success(self, params: dict[str, Any]) -> dict[str, Any]:
        """SendTaskSuccess to the executor's task waiting for the token."""
        callbacks = self._callbacks("SendTaskSuccess")
        with _token_errors():
            callbacks.send_task_success(str(params.get("taskToken")), str(params.get("output")))
        return {}

    def send_task_failure(self, params: dict[str, Any]) -> dict[str, Any]:
        """SendTaskFailure to the executor's task waiting for the token."""
        callbacks = self._callbacks("SendTaskFailure")
        with _token_errors():
            callbacks.send_task_failure(
                str(params.get("taskToken")), str(params.get("error") or ""), str(params.get("cause") or "")
            )
        return {}

    def send_task_heartbeat(self, params: dict[str, Any]) -> dict[str, Any]:
        """SendTaskHeartbeat to the executor's task waiting for the token."""
        callbacks = self._callbacks("SendTaskHeartbeat")
        with _token_errors():
            callbacks.send_task_heartbeat(str(params.get("taskToken")))
        return {}

    def join(self, timeout: float | None = None) -> None:
        """Wait for the executions running now."""
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.done.wait(timeout)


def _describe(run: _Run) -> dict[str, Any]:
    view: dict[str, Any] = {
        "executionArn": run.arn,
        "stateMachineArn": run.machine.arn,
        "name": run.name,
        "status": "RUNNING",
        "startDate": run.started.isoformat(),
        "input": json.dumps(run.input),
    }
    if run.aborted is not None:
        view.update(status="ABORTED", stopDate=run.aborted.isoformat())
        error, cause = run.failure or ("", "")
        if error:
            view["error"] = error
        if cause:
            view["cause"] = cause
        return view
    if not run.done.is_set():
        return view
    execution = run.execution
    if execution is None:
        error, cause = run.failure or ("States.Runtime", "the execution could not run")
        view.update(status="FAILED", stopDate=dt.datetime.now(dt.UTC).isoformat(), error=error, cause=cause)
        return view
    view["status"] = execution.status
    if execution.stop_date is not None:
        view["stopDate"] = execution.stop_date.isoformat()
    if execution.status == "SUCCEEDED":
        view["output"] = json.dumps(execution.output)
    if execution.error is not None:
        view["error"] = execution.error
        view["cause"] = execution.cause or ""
    return view


_EXECUTION_DETAILS: Final = {
    "ExecutionStarted": ("executionStartedEventDetails", ("input",)),
    "ExecutionSucceeded": ("executionSucceededEventDetails", ("output",)),
    "ExecutionFailed": ("executionFailedEventDetails", ("error", "cause")),
    "TaskScheduled": ("taskScheduledEventDetails", ("resource", "parameters")),
    "TaskStarted": ("taskStartedEventDetails", ("resource",)),
    "TaskSucceeded": ("taskSucceededEventDetails", ("resource", "output")),
    "TaskFailed": ("taskFailedEventDetails", ("resource", "error", "cause")),
    "MapStateStarted": ("mapStateStartedEventDetails", ("length",)),
    "MapIterationStarted": ("mapIterationStartedEventDetails", ("index",)),
    "MapIterationSucceeded": ("mapIterationSucceededEventDetails", ("index",)),
    "MapIterationFailed": ("mapIterationFailedEventDetails", ("index",)),
    "MapIterationAborted": ("mapIterationAbortedEventDetails", ("index",)),
}


def _event(event: HistoryEvent, include_data: bool) -> dict[str, Any]:
    """One executor event in GetExecutionHistory's shape."""
    out: dict[str, Any] = {
        "id": event.id,
        "previousEventId": max(event.id - 1, 0),
        "type": event.type,
        "timestamp": event.timestamp.isoformat(),
    }
    details = event.details
    if event.type.endswith("StateEntered"):
        entered: dict[str, Any] = {"name": event.state}
        if include_data:
            entered["input"] = json.dumps(details.get("input"), default=str)
        out["stateEnteredEventDetails"] = entered
    elif event.type.endswith("StateExited"):
        exited: dict[str, Any] = {"name": event.state}
        if include_data:
            exited["output"] = json.dumps(details.get("output"), default=str)
        out["stateExitedEventDetails"] = exited
    elif event.type in _EXECUTION_DETAILS:
        key, fields = _EXECUTION_DETAILS[event.type]
        shaped: dict[str, Any] = {}
        for name in fields:
            value = details.get(name)
            if name in {"input", "output", "parameters"}:
                if include_data:
                    shaped[name] = json.dumps(value, default=str)
            elif name in {"length", "index"}:
                shaped[name] = int(value or 0)
            elif value is not None:
                shaped[name] = str(value)
        if event.type.startswith("Task"):
            resource = str(details.get("resource", ""))
            parts = resource.split(":")
            shaped["resourceType"] = parts[5] if len(parts) > 6 else resource
            shaped["resource"] = ":".join(parts[6:]) if len(parts) > 6 else resource
        out[key] = shaped
    return out


def _execution_arn(machine: StateMachineInfo, name: str) -> str:
    return machine.arn.replace(":stateMachine:", ":execution:", 1) + f":{name}"


def _timestamp(text: str) -> str:
    """A run record's time (`...Z`) as the API's ISO 8601."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).isoformat()


def _role_arn(value: Any) -> str:
    text = str(value or "")
    if not re.match(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+", text):
        raise ServiceError("InvalidArn", f"Invalid Arn: 'Resource type not valid in this context: {text}'")
    return text


def _page(items: list[Any], params: dict[str, Any], key: str) -> dict[str, Any]:
    start = int(params.get("nextToken") or 0)
    size = int(params.get("maxResults") or _PAGE) or _PAGE
    response: dict[str, Any] = {key: items[start : start + size]}
    if start + size < len(items):
        response["nextToken"] = str(start + size)
    return response


def state_machines_of(stack: Stack, created: dt.datetime) -> list[StateMachineInfo]:
    """The template's active state machines, their definitions with DefinitionSubstitutions applied."""
    from lakebox.cfn.stack import ACCOUNT_ID

    machines = []
    for logical_id, resource in stack.resources.items():
        if "StateMachine" not in resource["Type"] or not stack.active(logical_id):
            continue
        definition, _ = stack.state_machine(logical_id)
        arn = str(stack.ref(logical_id))
        props = resource.get("Properties", {})
        role = props.get("Role") or props.get("RoleArn")
        role_arn = str(stack.resolve(role)) if isinstance(role, str | dict) and role else ""
        if not role_arn.startswith("arn:"):
            role_arn = f"arn:aws:iam::{ACCOUNT_ID}:role/{arn.rsplit(':', 1)[-1]}Role"
        machines.append(
            StateMachineInfo(
                logical_id,
                arn,
                json.dumps(definition, indent=2),
                role_arn,
                str(props.get("Type", "STANDARD")),
                created,
            )
        )
    return machines


@contextlib.contextmanager
def _token_errors() -> Iterator[None]:
    """The executor's refusal of a token or an output, as Step Functions' API error of the same name."""
    from lakebox.sfn.callbacks import TaskTokenError

    try:
        yield
    except TaskTokenError as exc:
        raise ServiceError(exc.code, str(exc).removeprefix(f"{exc.code}: ")) from exc

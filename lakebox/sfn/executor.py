"""A compact Amazon States Language interpreter (JSONPath and JSONata): states, data flow, variables, errors."""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NoReturn

from lakebox.sfn import distributed, jsonata_expr
from lakebox.sfn.callbacks import TaskTokens
from lakebox.sfn.choice import evaluate_rule, parse_timestamp
from lakebox.sfn.clock import Clock, CompressedClock
from lakebox.sfn.errors import (
    DATA_LIMIT_EXCEEDED,
    LAMBDA_RESOURCE_NOT_FOUND,
    NO_CHOICE_MATCHED,
    QUERY_EVALUATION_ERROR,
    RESULT_PATH_MATCH_FAILURE,
    RUNTIME,
    TIMEOUT,
    StatesError,
    TaskError,
    error_matches,
)
from lakebox.sfn.history import Execution
from lakebox.sfn.intrinsics import evaluate_intrinsic, is_intrinsic
from lakebox.sfn.paths import PathNotFoundError, ResultPathError, read_path, write_reference_path
from lakebox.sfn.payload import render_template
from lakebox.sfn.registry import Integrations, TaskContext
from lakebox.sfn.validation import is_lambda_resource, validate_definition
from lakebox.sfn.variables import VariableScope

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "123456789012"
MAX_PAYLOAD_BYTES = 256 * 1024  # Step Functions' quota on a state's input, output and task result
_MAX_THREADS = 16
JSONATA = "JSONata"
WAIT_FOR_TASK_TOKEN = ".waitForTaskToken"


class _Aborted(Exception):
    """Stops a branch or iteration because a sibling failed."""


class _ExecutionTimedOut(StatesError):
    """The execution ran past the state machine's TimeoutSeconds: no Retry or Catch handles it."""


@dataclass
class _Scope:
    """A cancellation scope: a Map or Parallel aborts its running children when one of them fails."""

    parent: _Scope | None = None
    _flag: threading.Event = field(default_factory=threading.Event)

    def abort(self) -> None:
        self._flag.set()

    def check(self) -> None:
        scope: _Scope | None = self
        while scope is not None:
            if scope._flag.is_set():
                raise _Aborted
            scope = scope.parent


@dataclass
class _Run:
    """Everything one execution shares across its states, branches and iterations."""

    execution: Execution
    integrations: Integrations
    clock: Clock
    rng: random.Random
    max_workers: int | None
    base_context: dict[str, Any]
    language: str
    callbacks: TaskTokens
    objects: distributed.ObjectStore | None
    deadline: datetime | None = None

    def check_deadline(self) -> None:
        if self.deadline is not None and self.clock.now() > self.deadline:
            raise _ExecutionTimedOut(TIMEOUT, "The execution ran longer than the state machine's TimeoutSeconds")

    def record(self, event_type: str, state: str | None = None, **details: Any) -> None:
        self.execution.record(self.clock.now(), event_type, state, **details)

    def context(self, state: str, entered: datetime, **extra: Any) -> dict[str, Any]:
        context = dict(self.base_context)
        context["State"] = {"Name": state, "EnteredTime": _iso(entered), "RetryCount": 0}
        context.update(extra)
        return context


@dataclass
class _Env:
    """What one state sees besides its input: its query language and the variables as they were at its entry."""

    language: str
    variables: dict[str, Any]
    scope: VariableScope
    pending: dict[str, Any] = field(default_factory=dict)

    @property
    def jsonata(self) -> bool:
        return self.language == JSONATA


def _account_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 and parts[4] else DEFAULT_ACCOUNT


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run_execution(
    definition: dict[str, Any] | str,
    input: Any = None,
    integrations: Integrations | None = None,
    name: str | None = None,
    *,
    state_machine_arn: str | None = None,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    max_workers: int | None = None,
    callbacks: TaskTokens | None = None,
    objects: distributed.ObjectStore | None = None,
    stop: threading.Event | None = None,
) -> Execution:
    """Run a state machine to completion and return its execution record.

    Parameters
    ----------
    definition
        The ASL definition (object or JSON text), DefinitionSubstitutions already applied.
    input
        The execution input (any JSON value; ``None`` means ``{}`` as StartExecution does).
    integrations
        The task resources this definition may call; every Task resource must resolve, except Lambda
        functions, which fail at run time with ``Lambda.ResourceNotFoundException`` as on AWS.
    name
        The execution name (as StartExecution's ``name``); a UUID when omitted.
    state_machine_arn
        The ARN ``$$.StateMachine.Id`` reports; its last part is ``$$.StateMachine.Name``.
    clock
        Time source for ``Wait`` states, retry delays and timestamps; defaults to a clock that compresses
        every wait to nothing while advancing virtual time.
    rng
        Random source for retry jitter, ``States.MathRandom`` and ``States.UUID`` (seed it for tests).
    max_workers
        Upper bound on threads for Map and Parallel; ``1`` runs branches and iterations sequentially.
        ``None`` honours each state's MaxConcurrency (capped at 16).
    callbacks
        The task tokens ``.waitForTaskToken`` tasks wait on; whoever holds it answers with
        ``send_task_success``/``send_task_failure``/``send_task_heartbeat``.
    objects
        The S3 a Distributed Map's ``ItemReader`` reads and its ``ResultWriter`` writes.
    stop
        Set to stop the execution (as StopExecution does): no further state starts, and the execution ends
        ``ABORTED``. A ``KeyboardInterrupt`` that reaches the executor stops it the same way.

    Returns
    -------
    Execution
        Status ``SUCCEEDED`` with its output, ``FAILED`` with error and cause, ``TIMED_OUT`` or ``ABORTED``; and the
        event history.

    Raises
    ------
    DefinitionError
        The definition is invalid.
    UnsupportedFeatureError
        The definition uses a feature the executor does not run; the message names the state.

    Notes
    -----
    ``TimeoutSeconds`` and ``HeartbeatSeconds`` bound the wait of a ``.waitForTaskToken`` task. Other local tasks
    run to completion in process and then fail with ``States.Timeout`` when they took longer than their
    ``TimeoutSeconds``. The machine's own ``TimeoutSeconds`` ends the execution as ``TIMED_OUT`` at the first state
    boundary past it. An exception other than :class:`StatesError` raised by an integration is a defect of the
    local service and propagates.
    """
    document: dict[str, Any] = json.loads(definition) if isinstance(definition, str) else definition
    registry = integrations if integrations is not None else Integrations()
    validate_definition(document, registry)
    clock = clock if clock is not None else CompressedClock(0.0)
    execution_input = _json_copy({} if input is None else input)
    sm_arn = state_machine_arn or f"arn:aws:states:{DEFAULT_REGION}:{DEFAULT_ACCOUNT}:stateMachine:StateMachine"
    sm_name = sm_arn.rsplit(":", 1)[-1]
    execution_name = name or str(uuid.uuid4())
    prefix = sm_arn.split(":stateMachine:", 1)[0]
    started = clock.now()
    execution = Execution(
        execution_arn=f"{prefix}:execution:{sm_name}:{execution_name}",
        name=execution_name,
        state_machine_arn=sm_arn,
        input=execution_input,
        start_date=started,
    )
    base_context = {
        "Execution": {
            "Id": execution.execution_arn,
            "Name": execution_name,
            "StartTime": _iso(started),
            "Input": execution_input,
            "RoleArn": f"arn:aws:iam::{_account_of(sm_arn)}:role/{sm_name}Role",
        },
        "StateMachine": {"Id": sm_arn, "Name": sm_name},
    }
    run = _Run(
        execution,
        registry,
        clock,
        rng or random.Random(),
        max_workers,
        base_context,
        str(document.get("QueryLanguage", "JSONPath")),
        callbacks if callbacks is not None else TaskTokens(),
        objects,
    )
    if document.get("TimeoutSeconds") is not None:
        run.deadline = started + timedelta(seconds=float(document["TimeoutSeconds"]))
    run.record("ExecutionStarted", input=execution_input)
    root = _Scope() if stop is None else _Scope(_flag=stop)
    try:
        output = _run_machine(run, document, execution_input, root, VariableScope())
        run.check_deadline()
    except _ExecutionTimedOut as err:
        execution.status, execution.error, execution.cause = "TIMED_OUT", err.error, err.cause
        execution.stop_date = clock.now()
        execution.record(execution.stop_date, "ExecutionTimedOut", None, error=err.error, cause=err.cause)
        return execution
    except (_Aborted, KeyboardInterrupt):
        root.abort()
        execution.status = "ABORTED"
        execution.stop_date = clock.now()
        execution.record(execution.stop_date, "ExecutionAborted", None)
        return execution
    except StatesError as err:
        execution.status, execution.error, execution.cause = "FAILED", err.error, err.cause
        execution.stop_date = clock.now()
        execution.record(execution.stop_date, "ExecutionFailed", None, error=err.error, cause=err.cause)
        return execution
    execution.status, execution.output = "SUCCEEDED", output
    execution.stop_date = clock.now()
    execution.record(execution.stop_date, "ExecutionSucceeded", None, output=output)
    return execution


def _run_machine(run: _Run, machine: dict[str, Any], data: Any, scope: _Scope, variables: VariableScope) -> Any:
    """Run ``machine`` (the top level, a branch or an iteration) from StartAt to its end."""
    name: str = machine["StartAt"]
    while True:
        scope.check()
        run.check_deadline()
        state = machine["States"][name]
        kind = state["Type"]
        context = run.context(name, run.clock.now())
        env = _Env(str(state.get("QueryLanguage", run.language)), variables.visible(), variables)
        run.record(f"{kind}StateEntered", name, input=data)
        output, following = _RUNNERS[kind](run, name, state, data, context, scope, env)
        _check_size(output, f"the output of state '{name}'")
        assigned = {"assignedVariables": env.pending} if env.pending else {}  # as StateExited reports them
        variables.assign(env.pending)
        run.record(f"{kind}StateExited", name, output=output, **assigned)
        if following is None:
            return output
        data, name = output, following


# --- input and output processing -------------------------------------------------------------------------


def _select(state: dict[str, Any], key: str, data: Any, context: Any, env: _Env) -> Any:
    """Apply InputPath or OutputPath: absent keeps the document, null gives ``{}``."""
    if key not in state:
        return data
    if state[key] is None:
        return {}
    try:
        return read_path(state[key], data, context, env.variables)
    except PathNotFoundError as exc:
        raise StatesError(RUNTIME, f"Invalid path '{state[key]}' in {key}: no results in the state's data") from exc


def _effective_input(run: _Run, state: dict[str, Any], data: Any, context: Any, env: _Env) -> Any:
    """JSONPath: InputPath, then Parameters. JSONata: Arguments (the state input when absent)."""
    if env.jsonata:
        if "Arguments" not in state:
            return data
        return jsonata_expr.render(
            state["Arguments"], _states(data, context), env.variables, run.rng, field="Arguments"
        )
    selected = _select(state, "InputPath", data, context, env)
    if "Parameters" in state:
        return render_template(state["Parameters"], selected, context, run.rng, env.variables)
    return selected


def _states(data: Any, context: Any, **extra: Any) -> dict[str, Any]:
    """The reserved ``$states`` variable of a JSONata state."""
    return {"input": data, "context": context, **extra}


def _place_result(state: dict[str, Any], raw_input: Any, result: Any, key: str = "ResultPath") -> Any:
    if key in state and state[key] is None:
        return raw_input
    try:
        return write_reference_path(raw_input, state.get(key, "$"), result)
    except ResultPathError as exc:
        raise StatesError(RESULT_PATH_MATCH_FAILURE, str(exc)) from exc


def _assign(run: _Run, holder: Mapping[str, Any], env: _Env, data: Any, context: Any, states: dict[str, Any]) -> None:
    """Evaluate ``holder``'s Assign with the variables of the state's entry; they take effect when it ends.

    JSONPath: values are templates (``.$`` keys) on ``data`` (the state's raw result, before ResultSelector; the
    effective input of a Choice or Wait; the error output in a Catch). JSONata: values are ``{% %}`` templates
    over ``$states``.
    """
    if "Assign" not in holder:
        return
    if env.jsonata:
        assigned = jsonata_expr.render(holder["Assign"], states, env.variables, run.rng, field="Assign")
    else:
        assigned = render_template(holder["Assign"], data, context, run.rng, env.variables)
    env.pending.update(assigned)


def _state_output(run: _Run, state: dict[str, Any], raw_input: Any, result: Any, context: Any, env: _Env) -> Any:
    """JSONPath: Assign, ResultSelector, ResultPath (on the raw input), OutputPath. JSONata: Assign and Output."""
    if env.jsonata:
        states = _states(raw_input, context, result=result)
        _assign(run, state, env, result, context, states)
        if "Output" not in state:
            return result
        return jsonata_expr.render(state["Output"], states, env.variables, run.rng, field="Output")
    _assign(run, state, env, result, context, {})  # Assign reads the raw result, before ResultSelector
    if "ResultSelector" in state:
        result = render_template(state["ResultSelector"], result, context, run.rng, env.variables)
    return _select(state, "OutputPath", _place_result(state, raw_input, result), context, env)


def _plain_output(run: _Run, state: dict[str, Any], data: Any, effective: Any, context: Any, env: _Env) -> Any:
    """The output of a state without a result (Choice, Wait, Succeed): Assign, then OutputPath or Output."""
    if env.jsonata:
        states = _states(data, context)
        _assign(run, state, env, data, context, states)
        if "Output" not in state:
            return data
        return jsonata_expr.render(state["Output"], states, env.variables, run.rng, field="Output")
    _assign(run, state, env, effective, context, {})
    return _select(state, "OutputPath", effective, context, env)


def _next(state: dict[str, Any]) -> str | None:
    return None if state.get("End") is True else str(state["Next"])


def _json_copy(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise StatesError(RUNTIME, f"the value is not JSON: {exc}") from exc


def _check_size(value: Any, what: str) -> None:
    size = len(json.dumps(value, ensure_ascii=False).encode())
    if size > MAX_PAYLOAD_BYTES:
        raise StatesError(DATA_LIMIT_EXCEEDED, f"{what} has {size} bytes, over the {MAX_PAYLOAD_BYTES} byte quota")


def _number_field(run: _Run, state: dict[str, Any], key: str, data: Any, context: Any, env: _Env) -> float | None:
    """A number a state gives as ``key`` (a literal or a JSONata expression) or as ``keyPath``."""
    if key in state:
        value = state[key]
        if jsonata_expr.is_expression(value):
            value = jsonata_expr.evaluate(value, _states(data, context), env.variables, run.rng)
    elif f"{key}Path" in state:
        try:
            value = read_path(state[f"{key}Path"], data, context, env.variables)
        except PathNotFoundError as exc:
            raise StatesError(RUNTIME, f"Invalid path '{state[f'{key}Path']}' in {key}Path") from exc
    else:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        error = QUERY_EVALUATION_ERROR if env.jsonata else RUNTIME
        raise StatesError(error, f"{key} must be a non-negative number, got {json.dumps(value)}")
    return float(value)


# --- Retry and Catch ------------------------------------------------------------------------------------

_Attempt = Callable[[int], Any]


def _with_error_handling(
    run: _Run, name: str, state: dict[str, Any], raw_input: Any, context: Any, env: _Env, attempt: _Attempt
) -> tuple[Any, str | None]:
    """Run ``attempt`` (given the retry count) under the state's Retry and Catch fields."""
    retriers: list[dict[str, Any]] = state.get("Retry", [])
    used = [0] * len(retriers)
    retry_count = 0
    while True:
        try:
            return attempt(retry_count), _next(state)
        except _ExecutionTimedOut:
            raise
        except StatesError as err:
            position = next((i for i, r in enumerate(retriers) if error_matches(r["ErrorEquals"], err.error)), None)
            if position is not None and used[position] < retriers[position].get("MaxAttempts", 3):
                delay = retry_delay(retriers[position], used[position], run.rng)
                used[position] += 1
                retry_count += 1
                run.record(
                    f"{state['Type']}Retry",
                    name,
                    error=err.error,
                    cause=err.cause,
                    retrier=position,
                    attempt=retry_count,
                    delaySeconds=delay,
                )
                run.clock.sleep(delay)
                continue
            catcher = next((c for c in state.get("Catch", []) if error_matches(c["ErrorEquals"], err.error)), None)
            if catcher is None:
                raise
            run.record(f"{state['Type']}Caught", name, error=err.error, cause=err.cause, next=catcher["Next"])
            return _caught_output(run, catcher, raw_input, err, context, env), str(catcher["Next"])


def _caught_output(
    run: _Run, catcher: dict[str, Any], raw_input: Any, err: StatesError, context: Any, env: _Env
) -> Any:
    """A Catcher's output and Assign: the state's own Assign is dropped, the Catcher's applies instead."""
    env.pending.clear()
    error_output = err.as_output()
    if env.jsonata:
        states = _states(raw_input, context, errorOutput=error_output)
        _assign(run, catcher, env, error_output, context, states)
        if "Output" not in catcher:
            return error_output
        return jsonata_expr.render(catcher["Output"], states, env.variables, run.rng, field="Catch Output")
    _assign(run, catcher, env, error_output, context, {})
    return _place_result(catcher, raw_input, error_output)


def retry_delay(retrier: dict[str, Any], retries_so_far: int, rng: random.Random) -> float:
    """Compute the wait before the next retry.

    Parameters
    ----------
    retrier
        The Retrier: ``IntervalSeconds`` (default 1), ``BackoffRate`` (default 2.0), ``MaxDelaySeconds``,
        ``JitterStrategy`` (``FULL`` draws uniformly between 0 and the computed delay).
    retries_so_far
        How many retries this Retrier has already made.
    rng
        The random source for jitter.

    Returns
    -------
    float
        Seconds to wait.
    """
    delay = float(retrier.get("IntervalSeconds", 1)) * float(retrier.get("BackoffRate", 2.0)) ** retries_so_far
    if "MaxDelaySeconds" in retrier:
        delay = min(delay, float(retrier["MaxDelaySeconds"]))
    if retrier.get("JitterStrategy") == "FULL":
        delay = rng.uniform(0, delay)
    return delay


# --- concurrency for Map and Parallel -------------------------------------------------------------------


def _run_all(run: _Run, jobs: list[Callable[[_Scope], Any]], concurrency: int, scope: _Scope) -> list[Any]:
    """Run jobs (branches or iterations) with at most ``concurrency`` at once (0: no limit); keep order."""
    child = _Scope(parent=scope)
    limit = len(jobs) if concurrency == 0 else concurrency
    if run.max_workers is not None:
        limit = min(limit, run.max_workers)
    limit = max(1, min(limit, len(jobs), _MAX_THREADS))
    if limit == 1:
        return [job(child) for job in jobs]
    with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="sfn") as pool:
        futures = [pool.submit(job, child) for job in jobs]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        if any(future.exception() is not None for future in done):
            child.abort()
            wait(futures)
            errors = [error for future in futures if (error := future.exception()) is not None]
            raise next((error for error in errors if not isinstance(error, _Aborted)), errors[0])
    return [future.result() for future in futures]


# --- the states -----------------------------------------------------------------------------------------

_Outcome = tuple[Any, str | None]


def _run_pass(
    run: _Run, name: str, state: dict[str, Any], data: Any, context: Any, scope: _Scope, env: _Env
) -> _Outcome:
    if env.jsonata:
        return _plain_output(run, state, data, data, context, env), _next(state)
    effective = _effective_input(run, state, data, context, env)
    result = state.get("Result", effective)
    _assign(run, state, env, result, context, {})
    return _select(state, "OutputPath", _place_result(state, data, result), context, env), _next(state)


def _run_task(
    run: _Run, name: str, state: dict[str, Any], data: Any, context: Any, scope: _Scope, env: _Env
) -> _Outcome:
    resource: str = state["Resource"]
    callback = resource.endswith(WAIT_FOR_TASK_TOKEN)
    handler = run.integrations.resolve(resource)
    if handler is None and callback:
        handler = run.integrations.resolve(resource.removesuffix(WAIT_FOR_TASK_TOKEN))

    def attempt(retry_count: int) -> Any:
        token = str(uuid.UUID(int=run.rng.getrandbits(128), version=4))
        attempt_context = {
            **context,
            "State": {**context["State"], "RetryCount": retry_count},
            "Task": {"Token": token},
        }
        parameters = _effective_input(run, state, data, attempt_context, env)
        run.record("TaskScheduled", name, resource=resource, parameters=parameters)
        run.record("TaskStarted", name, resource=resource)
        task = TaskContext(name, resource, attempt_context, retry_count)
        try:
            if handler is None:
                _no_handler(resource)
            timeout = _number_field(run, state, "TimeoutSeconds", data, attempt_context, env)
            if callback:
                heartbeat = _number_field(run, state, "HeartbeatSeconds", data, attempt_context, env)
                run.callbacks.open(token)
                handler(parameters, task)  # the resource hands the token on; its own answer is not the result
                run.record("TaskSubmitted", name, resource=resource, taskToken=token)
                result = _json_copy(run.callbacks.wait(token, run.clock, timeout, heartbeat, scope.check))
            else:
                called = run.clock.now()
                result = _json_copy(handler(parameters, task))
                took = (run.clock.now() - called).total_seconds()
                if timeout is not None and took > timeout:  # a local task runs to its end; it failed all the same
                    raise StatesError(TIMEOUT, f"the task took {took:.1f} s, over its TimeoutSeconds of {timeout:g}")
            _check_size(result, f"the result of task '{name}'")
        except StatesError as err:
            run.record("TaskFailed", name, resource=resource, error=err.error, cause=err.cause)
            raise
        run.record("TaskSucceeded", name, resource=resource, output=result)
        return _state_output(run, state, data, result, attempt_context, env)

    return _with_error_handling(run, name, state, data, context, env, attempt)


def _no_handler(resource: str) -> NoReturn:
    """A resource with nothing to serve it: a Lambda function that does not exist fails as Lambda reports it."""
    if is_lambda_resource(resource):
        raise TaskError(LAMBDA_RESOURCE_NOT_FOUND, f"Function not found: {resource}")
    raise StatesError(RUNTIME, f"no local integration for resource {resource}")


def _run_choice(
    run: _Run, name: str, state: dict[str, Any], data: Any, context: Any, scope: _Scope, env: _Env
) -> _Outcome:
    effective = data if env.jsonata else _select(state, "InputPath", data, context, env)
    matched = next((rule for rule in state["Choices"] if _rule_matches(run, rule, effective, context, env)), None)
    following = matched["Next"] if matched is not None else state.get("Default")
    if following is None:
        raise StatesError(NO_CHOICE_MATCHED, f"no Choice rule of state '{name}' matched and there is no Default")
    # the matched rule's Assign (and, in JSONata, Output) apply; the state's own only when Default is taken
    holder = matched if matched is not None else state
    if env.jsonata:
        return _plain_output(run, holder, data, effective, context, env), str(following)
    _assign(run, holder, env, effective, context, {})
    return _select(state, "OutputPath", effective, context, env), str(following)


def _rule_matches(run: _Run, rule: dict[str, Any], data: Any, context: Any, env: _Env) -> bool:
    if not env.jsonata:
        return evaluate_rule(rule, data, context, env.variables)
    value = jsonata_expr.evaluate(rule["Condition"], _states(data, context), env.variables, run.rng)
    if not isinstance(value, bool):
        raise StatesError(
            QUERY_EVALUATION_ERROR, f"the Condition {rule['Condition']!r} returned {value!r}, not a boolean"
        )
    return value


def _run_wait(
    run: _Run, name: str, state: dict[str, Any], data: Any, context: Any, scope: _Scope, env: _Env
) -> _Outcome:
    effective = data if env.jsonata else _select(state, "InputPath", data, context, env)
    seconds = _number_field(run, state, "Seconds", effective, context, env)
    if seconds is not None:
        delay = seconds
    else:
        if "Timestamp" in state:
            raw = state["Timestamp"]
            if jsonata_expr.is_expression(raw):
                raw = jsonata_expr.evaluate(raw, _states(data, context), env.variables, run.rng)
        else:
            raw = _read_wait(state["TimestampPath"], effective, context, env)
        until = parse_timestamp(raw)
        if until is None:
            error = QUERY_EVALUATION_ERROR if env.jsonata else RUNTIME
            raise StatesError(error, f"state '{name}': {raw!r} is not an RFC 3339 timestamp")
        delay = max(0.0, (until - run.clock.now()).total_seconds())
    run.record("WaitStarted", name, seconds=delay)
    run.clock.sleep(delay)
    return _plain_output(run, state, data, effective, context, env), _next(state)


def _read_wait(path: str, data: Any, context: Any, env: _Env) -> Any:
    try:
        return read_path(path, data, context, env.variables)
    except PathNotFoundError as exc:
        raise StatesError(RUNTIME, f"Invalid path '{path}': no results in the state's input") from exc


def _run_succeed(
    run: _Run, name: str, state: dict[str, Any], data: Any, context: Any, scope: _Scope, env: _Env
) -> _Outcome:
    effective = data if env.jsonata else _select(state, "InputPath", data, context, env)
    return _plain_output(run, {k: v for k, v in state.items() if k != "Assign"}, data, effective, context, env), None


def _run_fail(
    run: _Run, name: str, state: dict[str, Any], data: Any, context: Any, scope: _Scope, env: _Env
) -> _Outcome:
    error = _fail_field(run, state, "Error", data, context, env)
    cause = _fail_field(run, state, "Cause", data, context, env)
    raise StatesError(error or "", cause or "")


def _fail_field(run: _Run, state: dict[str, Any], key: str, data: Any, context: Any, env: _Env) -> str | None:
    if key in state:
        if not jsonata_expr.is_expression(state[key]):
            return str(state[key])
        value = jsonata_expr.evaluate(state[key], _states(data, context), env.variables, run.rng)
        if not isinstance(value, str):
            raise StatesError(QUERY_EVALUATION_ERROR, f"{key} must evaluate to a string, got {value!r}")
        return value
    computed = state.get(f"{key}Path")
    if computed is None:
        return None
    if is_intrinsic(computed):
        value = evaluate_intrinsic(computed, data, context, run.rng, env.variables)
    else:
        try:
            value = read_path(computed, data, context, env.variables)
        except PathNotFoundError as exc:
            raise StatesError(RUNTIME, f"Invalid path '{computed}' in {key}Path") from exc
    if not isinstance(value, str):
        raise StatesError(RUNTIME, f"{key}Path '{computed}' must select a string, got {json.dumps(value)}")
    return value


def _numbers(
    run: _Run, holder: Mapping[str, Any], keys: tuple[str, ...], data: Any, context: Any, env: _Env
) -> dict[str, Any]:
    """``holder`` with each of ``keys`` given as a number: ``keyPath`` read, a JSONata expression evaluated."""
    resolved = {key: value for key, value in holder.items() if key.removesuffix("Path") not in keys}
    for key in keys:
        value = _number_field(run, dict(holder), key, data, context, env)
        if value is not None:
            resolved[key] = int(value)
    return resolved


def _map_items(run: _Run, name: str, state: dict[str, Any], data: Any, context: Any, env: _Env) -> list[Any]:
    """The items a Map iterates: ItemReader (S3), ItemsPath (JSONPath), Items (JSONata), or the input itself."""
    if "ItemReader" in state:
        reader = state["ItemReader"]
        if env.jsonata:
            arguments = jsonata_expr.render(
                reader.get("Arguments", {}), _states(data, context), env.variables, run.rng, field="ItemReader"
            )
        else:
            arguments = render_template(reader.get("Parameters", {}), data, context, run.rng, env.variables)
        config = _numbers(run, reader.get("ReaderConfig", {}), ("MaxItems",), data, context, env)
        return distributed.read_items(run.objects, {**reader, "ReaderConfig": config}, arguments)
    if env.jsonata:
        items = state.get("Items", data)
        items = jsonata_expr.render(items, _states(data, context), env.variables, run.rng, field="Items")
        error = QUERY_EVALUATION_ERROR
    else:
        items = data
        if state.get("ItemsPath") is not None:
            try:
                items = read_path(state["ItemsPath"], data, context, env.variables)
            except PathNotFoundError as exc:
                raise StatesError(RUNTIME, f"Invalid path '{state['ItemsPath']}' in ItemsPath") from exc
        error = RUNTIME
    if not isinstance(items, list):
        raise StatesError(error, f"state '{name}': the items must be an array, got {json.dumps(items)}")
    return items


def _run_map(
    run: _Run, name: str, state: dict[str, Any], data: Any, context: Any, scope: _Scope, env: _Env
) -> _Outcome:
    processor: dict[str, Any] = state.get("ItemProcessor", state.get("Iterator", {}))
    distributed_mode = (processor.get("ProcessorConfig") or {}).get("Mode") == "DISTRIBUTED"
    selector = state.get("ItemSelector", state.get("Parameters"))

    def attempt(retry_count: int) -> Any:
        attempt_context = {**context, "State": {**context["State"], "RetryCount": retry_count}}
        effective = data if env.jsonata else _select(state, "InputPath", data, attempt_context, env)
        items = _map_items(run, name, state, effective, attempt_context, env)
        run.record("MapStateStarted", name, length=len(items))

        def item_input(index: int, item: Any) -> Any:
            item_context = {**attempt_context, "Map": {"Item": {"Index": index, "Value": item}}}
            if selector is None:
                return item
            if env.jsonata:
                states = _states(effective, item_context)
                return jsonata_expr.render(selector, states, env.variables, run.rng, field="ItemSelector")
            return render_template(selector, effective, item_context, run.rng, env.variables)

        inputs = [item_input(index, item) for index, item in enumerate(items)]
        if "ItemBatcher" in state:
            batcher = state["ItemBatcher"]
            batch_input = batcher.get("BatchInput")
            if batch_input is not None and env.jsonata:
                batch_input = jsonata_expr.render(batch_input, _states(effective, attempt_context), env.variables)
            elif batch_input is not None:
                batch_input = render_template(batch_input, effective, attempt_context, run.rng, env.variables)
            limits = _numbers(
                run, batcher, ("MaxItemsPerBatch", "MaxInputBytesPerBatch"), effective, attempt_context, env
            )
            inputs = distributed.batches(inputs, limits, batch_input)
        concurrency = int(_number_field(run, state, "MaxConcurrency", effective, attempt_context, env) or 0)
        if distributed_mode:
            result = _run_distributed(
                run, name, state, processor, inputs, concurrency, scope, effective, attempt_context, env
            )
        else:
            result = _run_inline(run, name, processor, inputs, concurrency, scope, env)
        run.record("MapStateSucceeded", name)
        return _state_output(run, state, data, result, attempt_context, env)

    return _with_error_handling(run, name, state, data, context, env, attempt)


def _run_inline(
    run: _Run,
    name: str,
    processor: dict[str, Any],
    inputs: list[Any],
    concurrency: int,
    scope: _Scope,
    env: _Env,
) -> list[Any]:
    def iteration(index: int, item_input: Any) -> Callable[[_Scope], Any]:
        def job(child: _Scope) -> Any:
            child.check()
            run.record("MapIterationStarted", name, index=index)
            try:
                output = _run_machine(run, processor, item_input, child, env.scope.child())
            except StatesError as err:
                run.record("MapIterationFailed", name, index=index, error=err.error, cause=err.cause)
                raise
            except _Aborted:
                run.record("MapIterationAborted", name, index=index)
                raise
            run.record("MapIterationSucceeded", name, index=index)
            return output

        return job

    try:
        return _run_all(run, [iteration(i, item) for i, item in enumerate(inputs)], concurrency, scope)
    except StatesError as err:
        run.record("MapStateFailed", name, error=err.error, cause=err.cause)
        raise


def _run_distributed(
    run: _Run,
    name: str,
    state: dict[str, Any],
    processor: dict[str, Any],
    inputs: list[Any],
    concurrency: int,
    scope: _Scope,
    data: Any,
    context: Any,
    env: _Env,
) -> Any:
    """Each item (or batch) is a child workflow of its own: no outer variables, and failures counted, not fatal."""
    execution = run.execution
    map_run_arn = execution.execution_arn.replace(":execution:", ":mapRun:", 1) + f"/{name}:{uuid.uuid4()}"
    run.record("MapRunStarted", name, mapRunArn=map_run_arn, length=len(inputs))

    def child_workflow(index: int, item_input: Any) -> Callable[[_Scope], dict[str, Any]]:
        def job(child: _Scope) -> dict[str, Any]:
            started = run.clock.now()
            record: dict[str, Any] = {
                "ExecutionArn": f"{map_run_arn}:{index}",
                "Input": json.dumps(item_input),
                "Name": str(index),
                "StartDate": _iso(started),
                "StateMachineArn": map_run_arn,
            }
            try:
                output = _run_machine(run, processor, item_input, child, VariableScope())
            except StatesError as err:
                run.record("MapIterationFailed", name, index=index, error=err.error, cause=err.cause)
                return {
                    **record,
                    "Status": "FAILED",
                    "Error": err.error,
                    "Cause": err.cause,
                    "StopDate": _iso(run.clock.now()),
                }
            run.record("MapIterationSucceeded", name, index=index)
            return {**record, "Status": "SUCCEEDED", "Output": json.dumps(output), "StopDate": _iso(run.clock.now())}

        return job

    records = _run_all(run, [child_workflow(i, item) for i, item in enumerate(inputs)], concurrency, scope)
    failed = sum(1 for record in records if record["Status"] == "FAILED")
    count = _number_field(run, state, "ToleratedFailureCount", data, context, env)
    percentage = _number_field(run, state, "ToleratedFailurePercentage", data, context, env)
    try:
        distributed.check_tolerance(failed, len(records), count, percentage)
    except StatesError as err:
        run.record("MapRunFailed", name, error=err.error, cause=err.cause)
        raise
    run.record("MapRunSucceeded", name, failed=failed)
    if "ResultWriter" in state:
        writer = state["ResultWriter"]
        if env.jsonata:
            arguments = jsonata_expr.render(writer.get("Arguments", {}), _states(data, context), env.variables)
        else:
            arguments = render_template(writer.get("Parameters", {}), data, context, run.rng, env.variables)
        return distributed.write_results(run.objects, arguments, map_run_arn, records)
    # a tolerated failure leaves null in its place: the child workflow has no output
    return [json.loads(record["Output"]) if record["Status"] == "SUCCEEDED" else None for record in records]


def _run_parallel(
    run: _Run, name: str, state: dict[str, Any], data: Any, context: Any, scope: _Scope, env: _Env
) -> _Outcome:
    def attempt(retry_count: int) -> Any:
        attempt_context = {**context, "State": {**context["State"], "RetryCount": retry_count}}
        effective = _effective_input(run, state, data, attempt_context, env)
        run.record("ParallelStateStarted", name, branches=len(state["Branches"]))

        def branch(machine: dict[str, Any]) -> Callable[[_Scope], Any]:
            return lambda child: _run_machine(run, machine, effective, child, env.scope.child())

        try:
            results = _run_all(run, [branch(machine) for machine in state["Branches"]], 0, scope)
        except StatesError as err:
            run.record("ParallelStateFailed", name, error=err.error, cause=err.cause)
            raise
        run.record("ParallelStateSucceeded", name)
        return _state_output(run, state, data, results, attempt_context, env)

    return _with_error_handling(run, name, state, data, context, env, attempt)


_Runner = Callable[[_Run, str, dict[str, Any], Any, Any, _Scope, _Env], _Outcome]
_RUNNERS: dict[str, _Runner] = {
    "Pass": _run_pass,
    "Task": _run_task,
    "Choice": _run_choice,
    "Wait": _run_wait,
    "Succeed": _run_succeed,
    "Fail": _run_fail,
    "Map": _run_map,
    "Parallel": _run_parallel,
}

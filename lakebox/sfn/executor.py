"""A compact Amazon States Language interpreter (JSONPath): states, input/output processing, Retry and Catch."""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lakebox.sfn.choice import evaluate_rule, parse_timestamp
from lakebox.sfn.clock import Clock, CompressedClock
from lakebox.sfn.errors import (
    DATA_LIMIT_EXCEEDED,
    NO_CHOICE_MATCHED,
    RESULT_PATH_MATCH_FAILURE,
    RUNTIME,
    StatesError,
    error_matches,
)
from lakebox.sfn.history import Execution
from lakebox.sfn.intrinsics import evaluate_intrinsic, is_intrinsic
from lakebox.sfn.paths import PathNotFoundError, ResultPathError, read_path, write_reference_path
from lakebox.sfn.payload import render_template
from lakebox.sfn.registry import Integrations, TaskContext
from lakebox.sfn.validation import validate_definition

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "123456789012"
MAX_PAYLOAD_BYTES = 256 * 1024  # Step Functions' quota on a state's input, output and task result
_MAX_THREADS = 16


class _Aborted(Exception):
    """Stops a branch or iteration because a sibling failed."""


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

    def record(self, event_type: str, state: str | None = None, **details: Any) -> None:
        self.execution.record(self.clock.now(), event_type, state, **details)

    def context(self, state: str, entered: datetime, **extra: Any) -> dict[str, Any]:
        context = dict(self.base_context)
        context["State"] = {"Name": state, "EnteredTime": _iso(entered), "RetryCount": 0}
        context.update(extra)
        return context


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
        The task resources this definition may call; every Task resource must resolve.
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

    stop
        Set to stop the execution (as StopExecution does): no further state starts, and the execution ends
        ``ABORTED``. A ``KeyboardInterrupt`` that reaches the executor stops it the same way.

    Returns
    -------
    Execution
        Status ``SUCCEEDED`` with its output, ``FAILED`` with error and cause, or ``ABORTED``; and the event history.

    Raises
    ------
    DefinitionError
        The definition is invalid.
    UnsupportedFeatureError
        The definition uses a feature the executor does not run; the message names the state.

    Notes
    -----
    ``TimeoutSeconds`` and ``HeartbeatSeconds`` (and their ``...Path`` forms, and the machine's own
    ``TimeoutSeconds``) are accepted and ignored: local tasks run to completion in process. An exception
    other than :class:`StatesError` raised by an integration is a defect of the local service and propagates.
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
    run = _Run(execution, registry, clock, rng or random.Random(), max_workers, base_context)
    run.record("ExecutionStarted", input=execution_input)
    root = _Scope() if stop is None else _Scope(_flag=stop)
    try:
        output = _run_machine(run, document, execution_input, root)
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


def _run_machine(run: _Run, machine: dict[str, Any], data: Any, scope: _Scope) -> Any:
    """Run ``machine`` (the top level, a branch or an iteration) from StartAt to its end."""
    name: str = machine["StartAt"]
    while True:
        scope.check()
        state = machine["States"][name]
        kind = state["Type"]
        context = run.context(name, run.clock.now())
        run.record(f"{kind}StateEntered", name, input=data)
        output, following = _RUNNERS[kind](run, name, state, data, context, scope)
        _check_size(output, f"the output of state '{name}'")
        run.record(f"{kind}StateExited", name, output=output)
        if following is None:
            return output
        data, name = output, following


# --- input and output processing -------------------------------------------------------------------------


def _select(state: dict[str, Any], key: str, data: Any, context: Any) -> Any:
    """Apply InputPath or OutputPath: absent keeps the document, null gives ``{}``."""
    if key not in state:
        return data
    if state[key] is None:
        return {}
    try:
        return read_path(state[key], data, context)
    except PathNotFoundError as exc:
        raise StatesError(RUNTIME, f"Invalid path '{state[key]}' in {key}: no results in the state's data") from exc


def _effective_input(run: _Run, state: dict[str, Any], data: Any, context: Any) -> Any:
    """InputPath, then Parameters."""
    selected = _select(state, "InputPath", data, context)
    if "Parameters" in state:
        return render_template(state["Parameters"], selected, context, run.rng)
    return selected


def _place_result(state: dict[str, Any], raw_input: Any, result: Any, key: str = "ResultPath") -> Any:
    if key in state and state[key] is None:
        return raw_input
    try:
        return write_reference_path(raw_input, state.get(key, "$"), result)
    except ResultPathError as exc:
        raise StatesError(RESULT_PATH_MATCH_FAILURE, str(exc)) from exc


def _state_output(run: _Run, state: dict[str, Any], raw_input: Any, result: Any, context: Any) -> Any:
    """ResultSelector, then ResultPath (on the raw input), then OutputPath."""
    if "ResultSelector" in state:
        result = render_template(state["ResultSelector"], result, context, run.rng)
    return _select(state, "OutputPath", _place_result(state, raw_input, result), context)


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


# --- Retry and Catch ------------------------------------------------------------------------------------

_Attempt = Callable[[int], Any]


def _with_error_handling(
    run: _Run, name: str, state: dict[str, Any], raw_input: Any, attempt: _Attempt
) -> tuple[Any, str | None]:
    """Run ``attempt`` (given the retry count) under the state's Retry and Catch fields."""
    retriers: list[dict[str, Any]] = state.get("Retry", [])
    used = [0] * len(retriers)
    retry_count = 0
    while True:
        try:
            return attempt(retry_count), _next(state)
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
            return _place_result(catcher, raw_input, err.as_output()), str(catcher["Next"])


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


def _run_pass(run: _Run, name: str, state: dict[str, Any], data: Any, context: Any, scope: _Scope) -> _Outcome:
    effective = _effective_input(run, state, data, context)
    result = state.get("Result", effective)
    return _select(state, "OutputPath", _place_result(state, data, result), context), _next(state)


def _run_task(run: _Run, name: str, state: dict[str, Any], data: Any, context: Any, scope: _Scope) -> _Outcome:
    resource: str = state["Resource"]
    handler = run.integrations.resolve(resource)
    if handler is None:  # validated before the run; kept for registries changed meanwhile
        raise StatesError(RUNTIME, f"no local integration for resource {resource}")

    def attempt(retry_count: int) -> Any:
        attempt_context = {
            **context,
            "State": {**context["State"], "RetryCount": retry_count},
            "Task": {"Token": str(uuid.UUID(int=run.rng.getrandbits(128), version=4))},
        }
        parameters = _effective_input(run, state, data, attempt_context)
        run.record("TaskScheduled", name, resource=resource, parameters=parameters)
        run.record("TaskStarted", name, resource=resource)
        task = TaskContext(name, resource, attempt_context, retry_count)
        try:
            result = _json_copy(handler(parameters, task))
            _check_size(result, f"the result of task '{name}'")
        except StatesError as err:
            run.record("TaskFailed", name, resource=resource, error=err.error, cause=err.cause)
            raise
        run.record("TaskSucceeded", name, resource=resource, output=result)
        return _state_output(run, state, data, result, attempt_context)

    return _with_error_handling(run, name, state, data, attempt)


def _run_choice(run: _Run, name: str, state: dict[str, Any], data: Any, context: Any, scope: _Scope) -> _Outcome:
    effective = _select(state, "InputPath", data, context)
    following = next((rule["Next"] for rule in state["Choices"] if evaluate_rule(rule, effective, context)), None)
    if following is None:
        following = state.get("Default")
    if following is None:
        raise StatesError(NO_CHOICE_MATCHED, f"no Choice rule of state '{name}' matched and there is no Default")
    return _select(state, "OutputPath", effective, context), str(following)


def _run_wait(run: _Run, name: str, state: dict[str, Any], data: Any, context: Any, scope: _Scope) -> _Outcome:
    effective = _select(state, "InputPath", data, context)
    if "Seconds" in state or "SecondsPath" in state:
        seconds = state["Seconds"] if "Seconds" in state else _read_wait(state["SecondsPath"], effective, context)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise StatesError(RUNTIME, f"state '{name}': the wait must be a non-negative number, got {seconds!r}")
        delay = float(seconds)
    else:
        raw = state["Timestamp"] if "Timestamp" in state else _read_wait(state["TimestampPath"], effective, context)
        until = parse_timestamp(raw)
        if until is None:
            raise StatesError(RUNTIME, f"state '{name}': {raw!r} is not an RFC 3339 timestamp")
        delay = max(0.0, (until - run.clock.now()).total_seconds())
    run.record("WaitStarted", name, seconds=delay)
    run.clock.sleep(delay)
    return _select(state, "OutputPath", effective, context), _next(state)


def _read_wait(path: str, data: Any, context: Any) -> Any:
    try:
        return read_path(path, data, context)
    except PathNotFoundError as exc:
        raise StatesError(RUNTIME, f"Invalid path '{path}': no results in the state's input") from exc


def _run_succeed(run: _Run, name: str, state: dict[str, Any], data: Any, context: Any, scope: _Scope) -> _Outcome:
    effective = _select(state, "InputPath", data, context)
    return _select(state, "OutputPath", effective, context), None


def _run_fail(run: _Run, name: str, state: dict[str, Any], data: Any, context: Any, scope: _Scope) -> _Outcome:
    error = _fail_field(run, state, "Error", data, context)
    cause = _fail_field(run, state, "Cause", data, context)
    raise StatesError(error or "", cause or "")


def _fail_field(run: _Run, state: dict[str, Any], key: str, data: Any, context: Any) -> str | None:
    if key in state:
        return str(state[key])
    computed = state.get(f"{key}Path")
    if computed is None:
        return None
    if is_intrinsic(computed):
        value = evaluate_intrinsic(computed, data, context, run.rng)
    else:
        try:
            value = read_path(computed, data, context)
        except PathNotFoundError as exc:
            raise StatesError(RUNTIME, f"Invalid path '{computed}' in {key}Path") from exc
    if not isinstance(value, str):
        raise StatesError(RUNTIME, f"{key}Path '{computed}' must select a string, got {json.dumps(value)}")
    return value


def _run_map(run: _Run, name: str, state: dict[str, Any], data: Any, context: Any, scope: _Scope) -> _Outcome:
    processor: dict[str, Any] = state.get("ItemProcessor", state.get("Iterator", {}))
    selector = state.get("ItemSelector", state.get("Parameters"))

    def attempt(retry_count: int) -> Any:
        effective = _select(state, "InputPath", data, context)
        items = effective
        if state.get("ItemsPath") is not None:
            try:
                items = read_path(state["ItemsPath"], effective, context)
            except PathNotFoundError as exc:
                raise StatesError(RUNTIME, f"Invalid path '{state['ItemsPath']}' in ItemsPath") from exc
        if not isinstance(items, list):
            raise StatesError(RUNTIME, f"state '{name}': ItemsPath must select an array, got {json.dumps(items)}")
        run.record("MapStateStarted", name, length=len(items))

        def iteration(index: int, item: Any) -> Callable[[_Scope], Any]:
            def job(child: _Scope) -> Any:
                child.check()
                item_context = {**context, "Map": {"Item": {"Index": index, "Value": item}}}
                item_input = item if selector is None else render_template(selector, effective, item_context, run.rng)
                run.record("MapIterationStarted", name, index=index)
                try:
                    output = _run_machine(run, processor, item_input, child)
                except StatesError as err:
                    run.record("MapIterationFailed", name, index=index, error=err.error, cause=err.cause)
                    raise
                except _Aborted:
                    run.record("MapIterationAborted", name, index=index)
                    raise
                run.record("MapIterationSucceeded", name, index=index)
                return output

            return job

        jobs = [iteration(index, item) for index, item in enumerate(items)]
        try:
            results = _run_all(run, jobs, int(state.get("MaxConcurrency", 0)), scope)
        except StatesError as err:
            run.record("MapStateFailed", name, error=err.error, cause=err.cause)
            raise
        run.record("MapStateSucceeded", name)
        return _state_output(run, state, data, results, context)

    return _with_error_handling(run, name, state, data, attempt)


def _run_parallel(run: _Run, name: str, state: dict[str, Any], data: Any, context: Any, scope: _Scope) -> _Outcome:
    def attempt(retry_count: int) -> Any:
        effective = _effective_input(run, state, data, context)
        run.record("ParallelStateStarted", name, branches=len(state["Branches"]))

        def branch(machine: dict[str, Any]) -> Callable[[_Scope], Any]:
            return lambda child: _run_machine(run, machine, effective, child)

        try:
            results = _run_all(run, [branch(machine) for machine in state["Branches"]], 0, scope)
        except StatesError as err:
            run.record("ParallelStateFailed", name, error=err.error, cause=err.cause)
            raise
        run.record("ParallelStateSucceeded", name)
        return _state_output(run, state, data, results, context)

    return _with_error_handling(run, name, state, data, attempt)


_RUNNERS: dict[str, Callable[[_Run, str, dict[str, Any], Any, Any, _Scope], _Outcome]] = {
    "Pass": _run_pass,
    "Task": _run_task,
    "Choice": _run_choice,
    "Wait": _run_wait,
    "Succeed": _run_succeed,
    "Fail": _run_fail,
    "Map": _run_map,
    "Parallel": _run_parallel,
}

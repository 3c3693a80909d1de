"""State semantics of the local ASL executor: Map, Parallel, Wait, Fail, Retry with backoff, Catch, validation."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from lakebox.sfn import (
    DefinitionError,
    Fault,
    Integrations,
    ManualClock,
    TaskContext,
    TaskError,
    UnsupportedFeatureError,
    inject_faults,
    run_execution,
)
from lakebox.sfn.executor import retry_delay
from lakebox.sfn.history import MAX_HISTORY_EVENTS


def _failing(error: str, times: int | None = None) -> tuple[Integrations, list[int]]:
    """A resource that fails `times` times (always when None) with `error`, then returns "ok"."""
    calls: list[int] = []

    def handler(parameters: Any, task: TaskContext) -> Any:
        calls.append(task.retry_count)
        if times is None or len(calls) <= times:
            raise TaskError(error, f"failure {len(calls)}")
        return "ok"

    return Integrations({"arn:local:work": handler}), calls


def _task(**fields: Any) -> dict[str, Any]:
    return {
        "StartAt": "Work",
        "States": {"Work": {"Type": "Task", "Resource": "arn:local:work", "End": True, **fields}},
    }


# --- Retry ------------------------------------------------------------------------------------------------


def test_retry_waits_with_exponential_backoff_capped_by_max_delay_and_counts_attempts() -> None:
    # GIVEN a task that fails three times, with a retrier of 2 s, rate 3, cap 10 s
    integrations, calls = _failing("Throttled", times=3)
    retrier = {
        "ErrorEquals": ["Throttled"],
        "IntervalSeconds": 2,
        "BackoffRate": 3,
        "MaxAttempts": 5,
        "MaxDelaySeconds": 10,
    }
    clock = ManualClock()

    # WHEN it runs
    execution = run_execution(_task(Retry=[retrier]), {}, integrations, clock=clock)

    # THEN it succeeds on the fourth attempt after waits of 2, 6 and 10 (capped) seconds, all on the clock
    assert execution.status == "SUCCEEDED"
    assert execution.output == "ok"
    assert calls == [0, 1, 2, 3]
    assert clock.sleeps == [2.0, 6.0, 10.0]
    assert execution.attempts("Work") == 4
    assert execution.retries("Work") == 3
    assert [event.details["delaySeconds"] for event in execution.events("TaskRetry")] == [2.0, 6.0, 10.0]
    assert clock.now() == datetime(2026, 1, 1, 0, 0, 18, tzinfo=UTC)


def test_full_jitter_draws_each_delay_between_zero_and_the_backoff() -> None:
    # GIVEN a retrier with full jitter
    retrier = {"ErrorEquals": ["X"], "IntervalSeconds": 4, "BackoffRate": 2, "JitterStrategy": "FULL"}
    rng = random.Random(11)

    # WHEN delays are drawn for the first retries, many times
    draws = [[retry_delay(retrier, attempt, rng) for attempt in range(3)] for _ in range(200)]

    # THEN each lies within [0, 4 * 2**attempt] and they vary
    for attempt, ceiling in enumerate((4, 8, 16)):
        values = [row[attempt] for row in draws]
        assert all(0 <= value <= ceiling for value in values)
        assert max(values) > ceiling / 2 > min(values)


def test_retries_exhausted_fall_through_to_catch_with_error_output_at_result_path() -> None:
    # GIVEN a task that always fails, with two retries and a Catch
    integrations, calls = _failing("Boom")
    definition = {
        "StartAt": "Work",
        "States": {
            "Work": {
                "Type": "Task",
                "Resource": "arn:local:work",
                "Retry": [{"ErrorEquals": ["Boom"], "MaxAttempts": 2, "IntervalSeconds": 1}],
                "Catch": [{"ErrorEquals": ["Boom"], "ResultPath": "$.error", "Next": "Handle"}],
                "End": True,
            },
            "Handle": {"Type": "Pass", "End": True},
        },
    }

    # WHEN it runs
    execution = run_execution(definition, {"keep": 1}, integrations, clock=ManualClock())

    # THEN three attempts were made and the Catch put {Error, Cause} under $.error next to the input
    assert len(calls) == 3
    assert execution.output == {"keep": 1, "error": {"Error": "Boom", "Cause": "failure 3"}}
    assert execution.states_entered() == ["Work", "Handle"]


def test_only_the_first_matching_retrier_counts_and_max_attempts_zero_never_retries() -> None:
    # GIVEN a first retrier with MaxAttempts 0 for the error and a later one that would retry it
    integrations, calls = _failing("Fatal")
    retry = [
        {"ErrorEquals": ["Fatal"], "MaxAttempts": 0},
        {"ErrorEquals": ["States.ALL"], "MaxAttempts": 5},
    ]

    # WHEN it runs
    execution = run_execution(_task(Retry=retry), {}, integrations, clock=ManualClock())

    # THEN it is not retried and the execution fails with the task's error
    assert calls == [0]
    assert (execution.status, execution.error, execution.cause) == ("FAILED", "Fatal", "failure 1")


@pytest.mark.parametrize(
    ("error", "error_equals", "caught"),
    [
        ("Custom.Error", ["States.ALL"], True),
        ("Custom.Error", ["States.TaskFailed"], True),
        ("States.Timeout", ["States.TaskFailed"], False),
        ("States.Timeout", ["States.ALL"], True),
        ("Other", ["Custom.Error"], False),
        ("States.Runtime", ["States.ALL"], False),
        ("States.DataLimitExceeded", ["States.ALL"], False),
    ],
)
def test_catch_matches_error_names_as_step_functions_does(error: str, error_equals: list[str], caught: bool) -> None:
    # GIVEN a task failing with `error` and a Catch on `error_equals`
    integrations, _ = _failing(error)
    definition = {
        "StartAt": "Work",
        "States": {
            "Work": {
                "Type": "Task",
                "Resource": "arn:local:work",
                "Catch": [{"ErrorEquals": error_equals, "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Succeed"},
        },
    }

    # WHEN it runs THEN the error is caught or ends the execution
    execution = run_execution(definition, {}, integrations, clock=ManualClock())
    assert (execution.status == "SUCCEEDED") is caught


def test_fault_injection_fails_a_resource_n_times_without_editing_the_definition() -> None:
    # GIVEN a working resource wrapped by a fault that fails it twice
    integrations = Integrations({"arn:local:work": lambda parameters, task: {"done": True}})
    fault = Fault("arn:local:*", "Transient", times=2)
    retry = [{"ErrorEquals": ["Transient"], "MaxAttempts": 3, "IntervalSeconds": 1}]

    # WHEN the task runs through the faulty registry
    execution = run_execution(_task(Retry=retry), {}, inject_faults(integrations, fault), clock=ManualClock())

    # THEN two injected failures were retried and the third call went through
    assert execution.output == {"done": True}
    assert fault.triggered == 2
    assert [event.details["error"] for event in execution.events("TaskFailed")] == ["Transient", "Transient"]


def test_fault_can_target_one_state_only() -> None:
    # GIVEN two states calling the same resource and a fault for the second one, always
    integrations = Integrations({"arn:local:work": lambda parameters, task: task.state_name})
    definition = {
        "StartAt": "First",
        "States": {
            "First": {"Type": "Task", "Resource": "arn:local:work", "ResultPath": "$.first", "Next": "Second"},
            "Second": {"Type": "Task", "Resource": "arn:local:work", "End": True},
        },
    }

    # WHEN it runs
    faulty = inject_faults(integrations, Fault("arn:local:work", "Down", state="Second"))
    execution = run_execution(definition, {}, faulty, clock=ManualClock())

    # THEN the first state succeeded and the second failed
    assert execution.events("TaskSucceeded")[0].state == "First"
    assert (execution.status, execution.error) == ("FAILED", "Down")


# --- Map and Parallel -------------------------------------------------------------------------------------


def _map(max_concurrency: int, **extra: Any) -> dict[str, Any]:
    return {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemSelector": {"value.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index", "tag.$": "$.tag"},
                "MaxConcurrency": max_concurrency,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "Work",
                    "States": {"Work": {"Type": "Task", "Resource": "arn:local:work", "End": True}},
                },
                "ResultPath": "$.results",
                "End": True,
                **extra,
            }
        },
    }


class _Gauge:
    """Counts how many calls run at the same time."""

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.lock = threading.Lock()

    def __call__(self, parameters: Any, task: TaskContext) -> Any:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(0.02)
        with self.lock:
            self.active -= 1
        return {"doubled": parameters["value"] * 2, "index": parameters["index"], "tag": parameters["tag"]}


def test_map_runs_each_item_through_item_selector_and_keeps_the_order_of_results() -> None:
    # GIVEN a Map over five items with concurrency 2
    gauge = _Gauge()

    # WHEN it runs
    execution = run_execution(_map(2), {"items": [1, 2, 3, 4, 5], "tag": "t"}, Integrations({"arn:local:work": gauge}))

    # THEN results are in item order, built from $$.Map.Item and the Map's input, with at most 2 at once
    assert execution.output["results"] == [{"doubled": 2 * v, "index": v - 1, "tag": "t"} for v in range(1, 6)]
    assert gauge.peak == 2
    assert len(execution.events("MapIterationSucceeded")) == 5


def test_map_concurrency_can_be_forced_sequential_by_the_executor() -> None:
    # GIVEN a Map allowing any concurrency
    gauge = _Gauge()

    # WHEN the executor is limited to one worker
    run_execution(_map(0), {"items": [1, 2, 3], "tag": "t"}, Integrations({"arn:local:work": gauge}), max_workers=1)

    # THEN iterations ran one at a time
    assert gauge.peak == 1


def test_a_failing_iteration_fails_the_map_and_its_catch_takes_over() -> None:
    # GIVEN a Map whose third item fails
    def handler(parameters: Any, task: TaskContext) -> Any:
        if parameters["value"] == 3:
            raise TaskError("BadItem", "item 3")
        return parameters["value"]

    definition = _map(1, Catch=[{"ErrorEquals": ["BadItem"], "ResultPath": "$.error", "Next": "Recover"}])
    definition["States"]["Each"].pop("End")
    definition["States"]["Each"]["Next"] = "Recover"
    definition["States"]["Recover"] = {"Type": "Pass", "End": True}

    # WHEN it runs sequentially
    execution = run_execution(
        definition, {"items": [1, 2, 3, 4], "tag": "t"}, Integrations({"arn:local:work": handler})
    )

    # THEN the fourth item never ran and the Catch received the iteration's error
    assert [event.details["index"] for event in execution.events("MapIterationStarted")] == [0, 1, 2]
    assert execution.output["error"] == {"Error": "BadItem", "Cause": "item 3"}
    assert "results" not in execution.output


def test_map_items_path_must_select_an_array() -> None:
    # WHEN ItemsPath selects an object THEN the execution fails with States.Runtime
    execution = run_execution(
        _map(1), {"items": {"not": "a list"}, "tag": "t"}, Integrations({"arn:local:work": _Gauge()})
    )
    assert execution.error == "States.Runtime"


def test_parallel_gives_each_branch_the_input_and_outputs_the_array_of_branch_outputs() -> None:
    # GIVEN a Parallel with two branches and a ResultSelector
    definition = {
        "StartAt": "Both",
        "States": {
            "Both": {
                "Type": "Parallel",
                "Parameters": {"n.$": "$.n"},
                "Branches": [
                    {"StartAt": "A", "States": {"A": {"Type": "Pass", "Parameters": {"a.$": "$.n"}, "End": True}}},
                    {
                        "StartAt": "B",
                        "States": {"B": {"Type": "Pass", "Result": "b", "ResultPath": "$.b", "End": True}},
                    },
                ],
                "ResultSelector": {"first.$": "$[0].a", "second.$": "$[1]"},
                "ResultPath": "$.both",
                "End": True,
            }
        },
    }

    # WHEN it runs
    execution = run_execution(definition, {"n": 5, "x": 0}, clock=ManualClock())

    # THEN the branch outputs are collected in branch order
    assert execution.output == {"n": 5, "x": 0, "both": {"first": 5, "second": {"n": 5, "b": "b"}}}


def test_a_parallel_result_selector_merges_the_branch_outputs_and_a_succeed_ends_only_its_branch() -> None:
    # GIVEN a Parallel whose first branch ends in a Succeed after a Choice, whose second records a failure as data,
    # and whose ResultSelector merges the branch outputs (the first's winning a shared key) into the state
    definition = {
        "StartAt": "Both",
        "States": {
            "Both": {
                "Type": "Parallel",
                "Branches": [
                    {
                        "StartAt": "A",
                        "States": {
                            "A": {"Type": "Pass", "Result": {"path": "a"}, "ResultPath": "$.catalog", "Next": "Check"},
                            "Check": {
                                "Type": "Choice",
                                "Choices": [{"Variable": "$.catalog.path", "StringEquals": "x", "Next": "A Failed"}],
                                "Default": "A Done",
                            },
                            "A Done": {"Type": "Succeed"},
                            "A Failed": {"Type": "Pass", "Result": "A", "ResultPath": "$.failure", "End": True},
                        },
                    },
                    {
                        "StartAt": "B",
                        "States": {
                            "B": {"Type": "Pass", "Result": 6, "ResultPath": "$.n", "Next": "B Failed"},
                            "B Failed": {"Type": "Pass", "Result": "B", "ResultPath": "$.failure", "End": True},
                        },
                    },
                ],
                "ResultSelector": {"merged.$": "States.JsonMerge($[1], $[0], false)"},
                "OutputPath": "$.merged",
                "Next": "After",
            },
            "After": {"Type": "Pass", "ResultPath": "$.after", "Result": True, "End": True},
        },
    }

    # WHEN it runs
    execution = run_execution(definition, {"n": 5}, clock=ManualClock())

    # THEN the Succeed ended the first branch only, and the state after the Parallel sees both branches' keys, the
    # first branch's value where both set one
    assert execution.status == "SUCCEEDED", execution.cause
    assert execution.output == {"n": 5, "catalog": {"path": "a"}, "failure": "B", "after": True}
    entered = execution.states_entered()
    assert sorted(entered) == sorted(["Both", "A", "Check", "A Done", "B", "B Failed", "After"])
    assert entered[0] == "Both" and entered[-1] == "After"


def test_a_failing_branch_fails_the_parallel_with_the_branch_error_and_stops_the_others() -> None:
    # GIVEN a Parallel where one branch fails at once and the other waits then would run a task
    ran: list[str] = []
    definition = {
        "StartAt": "Both",
        "States": {
            "Both": {
                "Type": "Parallel",
                "Branches": [
                    {"StartAt": "Boom", "States": {"Boom": {"Type": "Fail", "Error": "BranchBroke", "Cause": "b1"}}},
                    {
                        "StartAt": "Slow",
                        "States": {
                            "Slow": {"Type": "Task", "Resource": "arn:local:slow", "Next": "After"},
                            "After": {"Type": "Task", "Resource": "arn:local:after", "End": True},
                        },
                    },
                ],
                "End": True,
            }
        },
    }

    def slow(parameters: Any, task: TaskContext) -> Any:
        time.sleep(0.1)
        return {}

    integrations = Integrations(
        {"arn:local:slow": slow, "arn:local:after": lambda parameters, task: ran.append("after")}
    )

    # WHEN it runs
    execution = run_execution(definition, {}, integrations)

    # THEN the Parallel fails with the branch's error and the other branch stopped before its next state
    assert (execution.error, execution.cause) == ("BranchBroke", "b1")
    assert ran == []


# --- Wait, Fail, Succeed -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wait", "data", "seconds"),
    [
        ({"Seconds": 90}, {}, 90.0),
        ({"SecondsPath": "$.delay"}, {"delay": 15}, 15.0),
        ({"Timestamp": "2026-01-01T01:00:00Z"}, {}, 3600.0),
        ({"TimestampPath": "$.until"}, {"until": "2026-01-01T00:00:30+00:00"}, 30.0),
        ({"Timestamp": "2025-12-31T00:00:00Z"}, {}, 0.0),
    ],
)
def test_wait_lets_the_injected_clock_pass_the_time(wait: dict[str, Any], data: dict[str, Any], seconds: float) -> None:
    # GIVEN a Wait state and a manual clock at 2026-01-01T00:00:00Z
    clock = ManualClock()

    # WHEN it runs
    execution = run_execution(
        {"StartAt": "W", "States": {"W": {"Type": "Wait", "End": True, **wait}}}, data, clock=clock
    )

    # THEN no real time passed, the clock advanced by the wait, and the input flows through
    assert clock.sleeps == [seconds]
    assert execution.output == data


def test_wait_with_a_negative_seconds_path_fails_with_states_runtime() -> None:
    # WHEN SecondsPath selects a negative number THEN the execution fails
    execution = run_execution(
        {"StartAt": "W", "States": {"W": {"Type": "Wait", "SecondsPath": "$.s", "End": True}}},
        {"s": -1},
        clock=ManualClock(),
    )
    assert execution.error == "States.Runtime"


@pytest.mark.parametrize(
    ("fail", "expected"),
    [
        ({"Error": "E", "Cause": "C"}, ("E", "C")),
        ({"ErrorPath": "$.e", "CausePath": "$.c"}, ("FromInput", "because")),
        (
            {"ErrorPath": "$.e", "CausePath": "States.Format('run {} failed: {}', $$.Execution.Name, $.c)"},
            ("FromInput", "run x failed: because"),
        ),
    ],
)
def test_fail_reports_error_and_cause_from_fields_paths_or_intrinsics(
    fail: dict[str, Any], expected: tuple[str, str]
) -> None:
    # WHEN a Fail state is reached THEN the execution fails with its error and cause
    execution = run_execution(
        {"StartAt": "F", "States": {"F": {"Type": "Fail", **fail}}},
        {"e": "FromInput", "c": "because"},
        name="x",
        clock=ManualClock(),
    )
    assert (execution.status, execution.error, execution.cause) == ("FAILED", *expected)
    assert execution.events()[-1].type == "ExecutionFailed"


def test_succeed_applies_input_and_output_paths() -> None:
    # WHEN a Succeed state with InputPath and OutputPath runs THEN its output is the selection
    execution = run_execution(
        {"StartAt": "S", "States": {"S": {"Type": "Succeed", "InputPath": "$.a", "OutputPath": "$.b"}}}, {"a": {"b": 1}}
    )
    assert execution.output == 1


# --- limits and validation --------------------------------------------------------------------------------


def test_a_state_machine_that_never_ends_is_stopped_by_the_history_limit() -> None:
    # GIVEN a loop with no exit
    definition = {"StartAt": "Loop", "States": {"Loop": {"Type": "Pass", "Next": "Loop"}}}

    # WHEN it runs
    execution = run_execution(definition, {}, clock=ManualClock())

    # THEN it fails with States.Runtime once the history is full
    assert execution.error == "States.Runtime"
    assert len(execution.history) == MAX_HISTORY_EVENTS + 1


def test_a_task_result_over_the_payload_quota_fails_with_data_limit_exceeded_which_cannot_be_caught() -> None:
    # GIVEN a task returning more than 256 KB, with a Catch on States.ALL
    integrations = Integrations({"arn:local:work": lambda parameters, task: "x" * 300_000})
    definition = _task(Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Never"}])
    definition["States"]["Never"] = {"Type": "Succeed"}

    # WHEN it runs THEN the execution fails regardless of the Catch
    execution = run_execution(definition, {}, integrations, clock=ManualClock())
    assert execution.error == "States.DataLimitExceeded"


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"Type": "Task", "Resource": "arn:aws:states:::unknown:thing", "End": True}, "no local integration"),
        ({"Type": "Task", "Resource": "arn:aws:states:us-east-1:123456789012:activity:a", "End": True}, "activities"),
        (
            {"Type": "Task", "Resource": "arn:aws:states:::unknown:thing", "Credentials": {}, "End": True},
            "Credentials",
        ),
        (
            {
                "Type": "Map",
                "ItemReader": {
                    "Resource": "arn:aws:states:::s3:getObject",
                    "ReaderConfig": {"InputType": "JSON"},
                    "Parameters": {"Bucket": "b", "Key": "k"},
                },
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "P",
                    "States": {"P": {"Type": "Pass", "End": True}},
                },
                "ResultWriter": {
                    "Resource": "arn:aws:states:::s3:putObject",
                    "Parameters": {"Bucket": "b"},
                    "WriterConfig": {"OutputType": "JSONL"},
                },
                "End": True,
            },
            "WriterConfig",
        ),
    ],
)
def test_unsupported_features_fail_before_running_with_a_message_naming_the_state(
    state: dict[str, Any], message: str
) -> None:
    # WHEN a definition uses a feature the executor does not run THEN it is refused, naming the state and the feature
    with pytest.raises(UnsupportedFeatureError) as raised:
        run_execution({"StartAt": "Fancy State", "States": {"Fancy State": state}}, {}, Integrations())
    assert "Fancy State" in str(raised.value)
    assert message in str(raised.value)


def test_top_level_jsonata_runs() -> None:
    # WHEN the whole machine asks for JSONata THEN its expressions are evaluated
    definition = {
        "QueryLanguage": "JSONata",
        "StartAt": "P",
        "States": {"P": {"Type": "Pass", "Output": "{% $states.input.n * 2 %}", "End": True}},
    }
    assert run_execution(definition, {"n": 21}).output == 42


@pytest.mark.parametrize(
    "definition",
    [
        {"StartAt": "Nowhere", "States": {"P": {"Type": "Pass", "End": True}}},
        {"StartAt": "P", "States": {"P": {"Type": "Pass", "Next": "Missing"}}},
        {"StartAt": "P", "States": {"P": {"Type": "Pass", "Resource": "arn:${Unresolved}", "End": True}}},
        {"StartAt": "P", "States": {"P": {"Type": "Pass", "ResultPath": "$.a[*]", "End": True}}},
        {"StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": {"x.$": "States.Nope()"}, "End": True}}},
        {
            "StartAt": "T",
            "States": {
                "T": {
                    "Type": "Task",
                    "Resource": "arn:local:work",
                    "Retry": [{"ErrorEquals": ["States.ALL", "X"]}],
                    "End": True,
                }
            },
        },
        {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 1, "SecondsPath": "$.s", "End": True}}},
    ],
)
def test_invalid_definitions_are_refused_before_running(definition: dict[str, Any]) -> None:
    # WHEN an invalid definition is run THEN a DefinitionError is raised and nothing runs
    with pytest.raises(DefinitionError):
        run_execution(definition, {}, Integrations({"arn:local:work": lambda parameters, task: None}))


def test_history_records_every_state_and_task_event_in_order() -> None:
    # GIVEN a Pass then a task
    definition = {
        "StartAt": "Prepare",
        "States": {
            "Prepare": {"Type": "Pass", "Result": {"x": 1}, "Next": "Work"},
            "Work": {"Type": "Task", "Resource": "arn:local:work", "End": True},
        },
    }

    # WHEN it runs
    execution = run_execution(
        definition, {}, Integrations({"arn:local:work": lambda p, t: p}), name="e1", clock=ManualClock()
    )

    # THEN the history reads like GetExecutionHistory
    assert [event.type for event in execution.history] == [
        "ExecutionStarted",
        "PassStateEntered",
        "PassStateExited",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskSucceeded",
        "TaskStateExited",
        "ExecutionSucceeded",
    ]
    assert [event.id for event in execution.history] == list(range(1, 10))
    assert execution.describe()["status"] == "SUCCEEDED"
    assert execution.describe()["output"] == {"x": 1}


# --- Stop (Ctrl-C) ----------------------------------------------------------------------------------------


def _stopped_in_work(raise_interrupt: bool) -> tuple[Any, list[str]]:
    """A task that is stopped while it runs (the stop event set, then an error or an interrupt), with a Catch."""
    stop = threading.Event()
    reached: list[str] = []

    def work(parameters: Any, task: TaskContext) -> Any:
        stop.set()
        if raise_interrupt:
            raise KeyboardInterrupt
        raise TaskError("States.TaskFailed", "Py4JError: An error occurred while calling o1.collectToPython")

    def record_failure(parameters: Any, task: TaskContext) -> Any:
        reached.append("Record Failure")
        return {}

    definition = {
        "StartAt": "Work",
        "States": {
            "Work": {
                "Type": "Task",
                "Resource": "arn:local:work",
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Record Failure"}],
                "End": True,
            },
            "Record Failure": {"Type": "Task", "Resource": "arn:local:record", "End": True},
        },
    }
    integrations = Integrations({"arn:local:work": work, "arn:local:record": record_failure})
    return run_execution(definition, {}, integrations, clock=ManualClock(), stop=stop), reached


@pytest.mark.parametrize("raise_interrupt", [False, True], ids=["task-failed-by-the-interrupt", "keyboard-interrupt"])
def test_a_stopped_execution_ends_aborted_without_taking_its_catch(raise_interrupt: bool) -> None:
    # GIVEN a run stopped while a task runs (the task then fails, or the interrupt reaches the executor)
    execution, reached = _stopped_in_work(raise_interrupt)

    # THEN the execution is ABORTED, as StopExecution leaves it, and no later state ran
    assert execution.status == "ABORTED"
    assert (execution.error, execution.output) == (None, None)
    assert reached == []
    assert [e.type for e in execution.events()][-1] == "ExecutionAborted"

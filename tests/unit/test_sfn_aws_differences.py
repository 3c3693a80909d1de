"""Places where the local executor used to differ silently from Step Functions, each pinned as AWS behaves."""

from __future__ import annotations

from typing import Any

from lakebox.sfn import Integrations, ManualClock, TaskContext, TaskError, run_execution


def _single(state: dict[str, Any], **extra_states: Any) -> dict[str, Any]:
    return {"StartAt": "S", "States": {"S": state, **extra_states}}


def test_a_parameters_path_that_matches_nothing_is_an_uncatchable_states_runtime() -> None:
    # GIVEN a Pass whose Parameters read a missing field, under a Catch of States.ALL
    definition = _single(
        {
            "Type": "Parallel",
            "Branches": [
                {"StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": {"x.$": "$.missing"}, "End": True}}}
            ],
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
            "End": True,
        },
        Caught={"Type": "Succeed"},
    )

    # WHEN it runs
    execution = run_execution(definition, {}, clock=ManualClock())

    # THEN the execution fails with States.Runtime, which States.ALL does not catch, naming the path and field
    assert execution.status == "FAILED"
    assert execution.error == "States.Runtime"
    assert "'$.missing'" in (execution.cause or "") and "'x.$'" in (execution.cause or "")


def test_retry_count_increments_when_a_parallel_or_map_state_is_retried() -> None:
    # GIVEN a Parallel and a Map whose branch fails until the third attempt, each passing $$.State.RetryCount on
    seen: list[int] = []

    def flaky(parameters: Any, task: TaskContext) -> Any:
        seen.append(parameters["retry"])
        if parameters["retry"] < 2:
            raise TaskError("Flaky", "not yet")
        return parameters["retry"]

    branch = {
        "StartAt": "T",
        "States": {
            "T": {"Type": "Task", "Resource": "arn:local:flaky", "Parameters": {"retry.$": "$.retry"}, "End": True}
        },
    }
    retry = [{"ErrorEquals": ["Flaky"], "MaxAttempts": 3}]
    for state in (
        {"Type": "Parallel", "Branches": [branch], "Parameters": {"retry.$": "$$.State.RetryCount"}},
        {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemProcessor": branch,
            "ItemSelector": {"retry.$": "$$.State.RetryCount"},
        },
    ):
        seen.clear()
        definition = _single({**state, "Retry": retry, "End": True})

        # WHEN it runs
        execution = run_execution(
            definition, {"items": [1]}, Integrations({"arn:local:flaky": flaky}), clock=ManualClock()
        )

        # THEN each retry sees the count of retries so far, as Step Functions reports it
        assert seen == [0, 1, 2], state["Type"]
        assert execution.output == [2]


def test_a_lambda_arn_with_no_function_fails_at_run_time_with_a_catchable_lambda_error() -> None:
    # GIVEN a Task on a Lambda function ARN no integration serves, caught by name
    definition = _single(
        {
            "Type": "Task",
            "Resource": "arn:aws:lambda:us-east-1:123456789012:function:not-in-the-template",
            "Catch": [{"ErrorEquals": ["Lambda.ResourceNotFoundException"], "Next": "Caught"}],
            "End": True,
        },
        Caught={"Type": "Pass", "End": True},
    )

    # WHEN it runs (rather than being refused before running)
    execution = run_execution(definition, {}, Integrations(), clock=ManualClock())

    # THEN the Catch took the Lambda error
    assert execution.status == "SUCCEEDED"
    assert execution.output["Error"] == "Lambda.ResourceNotFoundException"


def test_choice_string_comparisons_order_by_utf16_code_units() -> None:
    # GIVEN U+FFFF and U+1F600: by code point U+FFFF is smaller, by UTF-16 code unit (0xFFFF vs 0xD83D) larger
    definition = _single(
        {
            "Type": "Choice",
            "Choices": [{"Variable": "$.s", "StringGreaterThan": "\U0001f600", "Next": "Greater"}],
            "Default": "NotGreater",
        },
        Greater={"Type": "Pass", "Result": "greater", "End": True},
        NotGreater={"Type": "Pass", "Result": "not greater", "End": True},
    )

    # WHEN it compares THEN it orders as Step Functions does, by UTF-16 code units
    assert run_execution(definition, {"s": "\uffff"}, clock=ManualClock()).output == "greater"


def test_a_task_that_runs_past_its_timeout_fails_with_states_timeout() -> None:
    # GIVEN a task that takes 90 s of (virtual) time, with a 60 s TimeoutSeconds and a Catch on States.Timeout
    clock = ManualClock()

    def slow(parameters: Any, task: TaskContext) -> Any:
        clock.advance(90)
        return "late"

    definition = _single(
        {
            "Type": "Task",
            "Resource": "arn:local:slow",
            "TimeoutSeconds": 60,
            "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "TimedOut"}],
            "End": True,
        },
        TimedOut={"Type": "Pass", "Result": "timed out", "End": True},
    )

    # WHEN it runs THEN the task failed with States.Timeout as Step Functions would have failed it
    execution = run_execution(definition, {}, Integrations({"arn:local:slow": slow}), clock=clock)
    assert execution.output == "timed out"


def test_an_execution_past_the_machine_timeout_times_out_whatever_its_catchers() -> None:
    # GIVEN a machine with a 1 hour TimeoutSeconds whose Wait lasts 2 hours, inside a Parallel catching States.ALL
    definition = {
        "TimeoutSeconds": 3600,
        "StartAt": "Both",
        "States": {
            "Both": {
                "Type": "Parallel",
                "Branches": [
                    {
                        "StartAt": "Long Wait",
                        "States": {
                            "Long Wait": {"Type": "Wait", "Seconds": 7200, "Next": "After"},
                            "After": {"Type": "Pass", "End": True},
                        },
                    }
                ],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Succeed"},
        },
    }

    # WHEN it runs THEN the execution ends TIMED_OUT with States.Timeout
    execution = run_execution(definition, {}, clock=ManualClock())
    assert (execution.status, execution.error) == ("TIMED_OUT", "States.Timeout")


def test_a_choice_applies_the_matched_rules_assign_and_keeps_the_states_output_path() -> None:
    # GIVEN a JSONPath Choice with an OutputPath, a rule that assigns, and a state-level Assign for the Default
    definition = {
        "StartAt": "C",
        "States": {
            "C": {
                "Type": "Choice",
                "OutputPath": "$.keep",
                "Assign": {"route": "default"},
                "Choices": [
                    {"Variable": "$.n", "NumericEquals": 1, "Assign": {"route": "one"}, "Next": "Done"},
                    {"Variable": "$.n", "NumericEquals": 2, "Next": "Done"},
                ],
                "Default": "Done",
            },
            "Done": {"Type": "Pass", "Parameters": {"out.$": "$", "route.$": "$route"}, "End": True},
        },
    }

    # WHEN the first rule matches THEN its Assign applied and the state's OutputPath too
    execution = run_execution(definition, {"n": 1, "keep": {"k": 1}}, clock=ManualClock())
    assert execution.output == {"out": {"k": 1}, "route": "one"}

    # WHEN no rule matches THEN the state's own Assign applied
    execution = run_execution(definition, {"n": 3, "keep": {"k": 1}}, clock=ManualClock())
    assert execution.output == {"out": {"k": 1}, "route": "default"}

    # WHEN a rule without Assign matches THEN nothing is assigned
    execution = run_execution(definition, {"n": 2, "keep": {"k": 1}}, clock=ManualClock())
    assert execution.error == "States.Runtime"

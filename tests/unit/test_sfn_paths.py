"""Input and output processing of the local ASL executor: InputPath, Parameters, ResultSelector, ResultPath."""

from __future__ import annotations

import random
from typing import Any

import pytest

from lakebox.sfn import DefinitionError, Integrations, ManualClock, TaskContext, run_execution
from lakebox.sfn.paths import parse_reference_path, read_path, write_reference_path


def _single(state: dict[str, Any]) -> dict[str, Any]:
    return {"StartAt": "Only", "States": {"Only": {**state, "End": True}}}


def _echo_task(**fields: Any) -> tuple[dict[str, Any], Integrations, list[Any]]:
    received: list[Any] = []

    def handler(parameters: Any, task: TaskContext) -> Any:
        received.append(parameters)
        return {"echo": parameters, "meta": {"code": 200}}

    definition = _single({"Type": "Task", "Resource": "arn:local:echo", **fields})
    return definition, Integrations({"arn:local:echo": handler}), received


def test_task_applies_input_path_parameters_result_selector_result_path_and_output_path_in_order() -> None:
    # GIVEN a task using every input/output processing field
    definition, integrations, received = _echo_task(
        InputPath="$.order",
        Parameters={"id.$": "$.id", "fixed": 1, "nested": {"items.$": "$.items[*].sku"}},
        ResultSelector={"sent.$": "$.echo", "code.$": "$.meta.code"},
        ResultPath="$.order.result",
        OutputPath="$.order",
    )
    data = {"order": {"id": "o-1", "items": [{"sku": "a"}, {"sku": "b"}]}, "other": True}

    # WHEN it runs
    execution = run_execution(definition, data, integrations, clock=ManualClock())

    # THEN the task saw the Parameters built from the InputPath, and the output is the OutputPath of
    # the raw input with the selected result at ResultPath
    assert received == [{"id": "o-1", "fixed": 1, "nested": {"items": ["a", "b"]}}]
    assert execution.output == {
        "id": "o-1",
        "items": [{"sku": "a"}, {"sku": "b"}],
        "result": {"sent": {"id": "o-1", "fixed": 1, "nested": {"items": ["a", "b"]}}, "code": 200},
    }


def test_result_path_null_keeps_the_input_and_discards_the_result() -> None:
    # GIVEN a task with ResultPath null
    definition, integrations, _ = _echo_task(ResultPath=None)

    # WHEN it runs
    execution = run_execution(definition, {"keep": "me"}, integrations, clock=ManualClock())

    # THEN the state's output is its input
    assert execution.output == {"keep": "me"}


def test_result_path_creates_missing_intermediate_objects() -> None:
    # GIVEN a Pass whose ResultPath goes through objects that do not exist yet
    definition = _single({"Type": "Pass", "Result": 42, "ResultPath": "$.a.b.c"})

    # WHEN it runs
    execution = run_execution(definition, {"x": 1}, Integrations(), clock=ManualClock())

    # THEN the nested objects are created around the result
    assert execution.output == {"x": 1, "a": {"b": {"c": 42}}}


def test_result_path_through_a_scalar_fails_with_result_path_match_failure() -> None:
    # GIVEN a ResultPath whose parent is a string in the input
    definition = _single({"Type": "Pass", "Result": 1, "ResultPath": "$.a.b"})

    # WHEN it runs
    execution = run_execution(definition, {"a": "text"}, Integrations(), clock=ManualClock())

    # THEN the execution fails with the reserved error
    assert execution.status == "FAILED"
    assert execution.error == "States.ResultPathMatchFailure"


def test_input_path_and_output_path_null_give_an_empty_object() -> None:
    # GIVEN a Pass with InputPath null (so its result, the effective input, is {})
    definition = _single({"Type": "Pass", "InputPath": None, "ResultPath": "$.seen"})

    # WHEN it runs
    execution = run_execution(definition, {"a": 1}, Integrations(), clock=ManualClock())

    # THEN the state saw {} and the raw input is kept around it
    assert execution.output == {"a": 1, "seen": {}}

    # AND an OutputPath null sends {} onwards
    execution = run_execution(_single({"Type": "Pass", "OutputPath": None}), {"a": 1}, clock=ManualClock())
    assert execution.output == {}


def test_missing_parameters_path_fails_with_states_runtime_naming_the_field() -> None:
    # GIVEN Parameters reading a field the input lacks
    definition = _single({"Type": "Pass", "Parameters": {"x.$": "$.missing"}})

    # WHEN it runs
    execution = run_execution(definition, {}, clock=ManualClock())

    # THEN the error is States.Runtime (as Step Functions reports it) and names the path and the field
    assert execution.error == "States.Runtime"
    assert "'$.missing'" in (execution.cause or "")
    assert "'x.$'" in (execution.cause or "")


def test_missing_input_path_fails_with_states_runtime() -> None:
    # GIVEN an InputPath the input does not have
    definition = _single({"Type": "Pass", "InputPath": "$.nope"})

    # WHEN it runs
    execution = run_execution(definition, {}, clock=ManualClock())

    # THEN the execution fails with States.Runtime
    assert execution.error == "States.Runtime"


def test_parameters_read_the_context_object() -> None:
    # GIVEN Parameters taken from the context object
    definition = {
        "StartAt": "Context",
        "States": {
            "Context": {
                "Type": "Pass",
                "Parameters": {
                    "id.$": "$$.Execution.Id",
                    "name.$": "$$.Execution.Name",
                    "start.$": "$$.Execution.StartTime",
                    "input.$": "$$.Execution.Input.k",
                    "machine.$": "$$.StateMachine.Name",
                    "machine_id.$": "$$.StateMachine.Id",
                    "state.$": "$$.State.Name",
                    "entered.$": "$$.State.EnteredTime",
                },
                "End": True,
            }
        },
    }
    arn = "arn:aws:states:eu-west-1:111122223333:stateMachine:Pipeline"

    # WHEN it runs under a known name, machine and clock
    execution = run_execution(definition, {"k": "v"}, name="run-1", state_machine_arn=arn, clock=ManualClock())

    # THEN every context field has the value Step Functions would give
    assert execution.output == {
        "id": "arn:aws:states:eu-west-1:111122223333:execution:Pipeline:run-1",
        "name": "run-1",
        "start": "2026-01-01T00:00:00.000Z",
        "input": "v",
        "machine": "Pipeline",
        "machine_id": arn,
        "state": "Context",
        "entered": "2026-01-01T00:00:00.000Z",
    }


def test_task_token_is_in_the_context_of_task_states() -> None:
    # GIVEN a task passing its own token along
    definition, integrations, received = _echo_task(Parameters={"token.$": "$$.Task.Token"})

    # WHEN it runs twice with the same seed
    run_execution(definition, {}, integrations, clock=ManualClock(), rng=random.Random(7))
    run_execution(definition, {}, integrations, clock=ManualClock(), rng=random.Random(7))

    # THEN the token is a UUID, reproducible from the seed
    assert len(received[0]["token"]) == 36
    assert received[0] == received[1]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$", {"a": {"b": [1, 2, 3]}, "items": [{"n": 1}, {"n": 2}], "key with space": 5}),
        ("$.a.b", [1, 2, 3]),
        ("$.a.b[0]", 1),
        ("$.a.b[-1]", 3),
        ("$['key with space']", 5),
        ("$.items[*].n", [1, 2]),
        ("$.items[?(@.n > 1)]", [{"n": 2}]),
        ("$..n", [1, 2]),
        ("$.a.b[0:2]", [1, 2]),
        ("$.items[?(@.n > 5)]", []),
    ],
)
def test_paths_return_a_value_when_definite_and_a_list_when_not(path: str, expected: Any) -> None:
    # GIVEN a document
    document = {"a": {"b": [1, 2, 3]}, "items": [{"n": 1}, {"n": 2}], "key with space": 5}

    # WHEN the path is read
    value = read_path(path, document, {})

    # THEN definite paths give the node and indefinite ones the list of matches
    assert value == expected


@pytest.mark.parametrize(
    ("path", "steps"),
    [("$", ()), ("$.a.b", ("a", "b")), ("$['a b'].c", ("a b", "c")), ("$.list[2].x", ("list", 2, "x"))],
)
def test_reference_paths_parse_into_fields_and_indices(path: str, steps: tuple[str | int, ...]) -> None:
    # WHEN a Reference Path is parsed THEN it gives its steps
    assert parse_reference_path(path) == steps


@pytest.mark.parametrize("path", ["$.a[*]", "$..a", "$.a[?(@.x)]", "a.b", "$$.Execution"])
def test_reference_paths_reject_wildcards_filters_and_context_paths(path: str) -> None:
    # WHEN an indefinite or context path is used as a Reference Path THEN it is refused
    with pytest.raises(DefinitionError):
        parse_reference_path(path)


def test_write_reference_path_does_not_modify_the_input() -> None:
    # GIVEN an input document
    document = {"a": {"b": 1}, "list": [{"x": 0}]}

    # WHEN a value is written into a nested field and a list element
    written = write_reference_path(write_reference_path(document, "$.a.c", 2), "$.list[0].x", 9)

    # THEN the copy holds the values and the original is untouched
    assert written == {"a": {"b": 1, "c": 2}, "list": [{"x": 9}]}
    assert document == {"a": {"b": 1}, "list": [{"x": 0}]}

"""Definitions the newer language features make invalid, refused before running with the state named."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from moto import mock_aws

from lakebox.sfn import DefinitionError, ManualClock, run_execution
from lakebox.sfn.distributed import Boto3ObjectStore, batches
from lakebox.sfn.variables import MAX_ASSIGN_BYTES

PASS_END = {"Type": "Pass", "End": True}


def _one(state: dict[str, Any], language: str | None = None) -> dict[str, Any]:
    machine: dict[str, Any] = {"StartAt": "The State", "States": {"The State": state}}
    if language:
        machine["QueryLanguage"] = language
    return machine


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        (_one({"Type": "Pass", "InputPath": "$.a", "End": True}, "JSONata"), "InputPath"),
        (_one({"Type": "Pass", "Output": "{% $states.input.a + %}", "End": True}, "JSONata"), "does not parse"),
        (_one({"Type": "Pass", "Output": "{% $eval('1') %}", "End": True}, "JSONata"), "$eval"),
        (_one({"Type": "Pass", "QueryLanguage": "JSONPath", "End": True}, "JSONata"), "JSONPath"),
        (_one({"Type": "Pass", "Output": {"a": 1}, "End": True}), "Output"),
        (_one({"Type": "Pass", "Assign": {"states": 1}, "End": True}), "reserved"),
        (_one({"Type": "Pass", "Assign": {"1bad": 1}, "End": True}), "variable name"),
        (_one({"Type": "Succeed", "Assign": {"x": 1}}), "cannot Assign"),
        (
            _one(
                {
                    "Type": "Map",
                    "ToleratedFailureCount": 1,
                    "ItemProcessor": {"StartAt": "P", "States": {"P": PASS_END}},
                    "End": True,
                }
            ),
            "DISTRIBUTED",
        ),
        (_one({"Type": "Pass", "QueryLanguage": "Python", "End": True}), "QueryLanguage"),
        (
            _one({"Type": "Choice", "Choices": [{"Variable": "$.a", "IsNull": True, "Next": "The State"}]}, "JSONata"),
            "needs a Condition",
        ),
        (_one({"Type": "Choice", "Choices": [{"Condition": "{% true %}", "Next": "The State"}]}), "belongs to JSONata"),
    ],
)
def test_invalid_uses_of_jsonata_variables_and_distributed_map_are_refused(
    definition: dict[str, Any], message: str
) -> None:
    # WHEN the definition is run THEN it is refused before running, naming the state and the fault
    with pytest.raises(DefinitionError) as refused:
        run_execution(definition, {})
    assert "The State" in str(refused.value)
    assert message in str(refused.value)


def test_a_state_assigning_over_256_kib_fails_with_states_runtime() -> None:
    # GIVEN a blob just over half the per-state quota
    blob = "x" * (MAX_ASSIGN_BYTES // 2 + 10)

    # WHEN one state assigns it once THEN that is within the quota
    once = _one({"Type": "Pass", "Assign": {"a.$": "$.blob"}, "End": True})
    assert run_execution(once, {"blob": blob}, clock=ManualClock()).status == "SUCCEEDED"

    # WHEN one state assigns it twice THEN the execution fails with States.Runtime
    twice = _one({"Type": "Pass", "Assign": {"a.$": "$.blob", "b.$": "$.blob"}, "End": True})
    assert run_execution(twice, {"blob": blob}, clock=ManualClock()).error == "States.Runtime"


def test_an_item_reader_on_a_missing_object_fails_with_item_reader_failed() -> None:
    # GIVEN a Distributed Map reading an object that does not exist
    definition = _one(
        {
            "Type": "Map",
            "ItemReader": {
                "Resource": "arn:aws:states:::s3:getObject",
                "ReaderConfig": {"InputType": "JSON"},
                "Parameters": {"Bucket": "items", "Key": "missing.json"},
            },
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                "StartAt": "P",
                "States": {"P": PASS_END},
            },
            "End": True,
        }
    )
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="items")
        # WHEN it runs THEN the Map fails with States.ItemReaderFailed naming the object
        store = Boto3ObjectStore(boto3.Session(region_name="us-east-1"))
        execution = run_execution(definition, {}, clock=ManualClock(), objects=store)
    assert execution.error == "States.ItemReaderFailed"
    assert "missing.json" in (execution.cause or "")


def test_item_batches_respect_both_the_item_and_the_byte_limits() -> None:
    # WHEN 10 items of ~100 bytes are batched by at most 4 items or 250 bytes THEN no batch breaks either limit
    items = [{"n": n, "pad": "x" * 90} for n in range(10)]
    groups = batches(items, {"MaxItemsPerBatch": 4, "MaxInputBytesPerBatch": 250}, None)
    assert [len(group["Items"]) for group in groups] == [2, 2, 2, 2, 2]
    assert [item for group in groups for item in group["Items"]] == items


def test_a_state_no_transition_reaches_is_refused_as_step_functions_refuses_it() -> None:
    # WHEN a definition holds a state nothing leads to THEN it is refused, naming it
    definition = {"StartAt": "A", "States": {"A": PASS_END, "Orphan": PASS_END}}
    with pytest.raises(DefinitionError, match="'Orphan' is not reachable"):
        run_execution(definition, {})


@pytest.mark.parametrize(
    "expression", ["{% function($x){$x} %}", "{% $sum %}", "{% $number('x') %}", "{% $states.input.missing %}"]
)
def test_jsonata_outputs_that_are_not_json_values_fail_with_query_evaluation_error(expression: str) -> None:
    # WHEN an Output evaluates to a function, fails, or selects nothing THEN the state fails as Step Functions says
    definition = _one({"Type": "Pass", "Output": expression, "End": True}, "JSONata")
    execution = run_execution(definition, {}, clock=ManualClock())
    assert execution.error == "States.QueryEvaluationError"


def test_the_history_reports_assigned_variables_on_the_state_exit() -> None:
    # WHEN a state assigns variables THEN its StateExited event lists them, as GetExecutionHistory does
    execution = run_execution(_one({"Type": "Pass", "Assign": {"x": 1, "y.$": "$.v"}, "End": True}), {"v": "w"})
    (exited,) = execution.events("PassStateExited")
    assert exited.details["assignedVariables"] == {"x": 1, "y": "w"}

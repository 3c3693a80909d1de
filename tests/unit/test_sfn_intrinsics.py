"""Intrinsic functions of the local ASL executor, evaluated as Step Functions documents them."""

from __future__ import annotations

import hashlib
import random
import uuid
from typing import Any

import pytest

from lakebox.sfn import DefinitionError, StatesError, run_execution
from lakebox.sfn.clock import ManualClock
from lakebox.sfn.intrinsics import evaluate_intrinsic, parse_intrinsic

DATA = {
    "name": "Arnav",
    "template": "Hello, my name is {}.",
    "escaped": '{"foo": "bar"}',
    "object": {"foo": "bar"},
    "list": [1, 2, 3, 4, 5],
    "dupes": [1, 1, "a", "a", {"k": 1}, {"k": 1}, True, 1.0],
    "csv": "a,b,,c",
    "n": 3,
    "json1": {"a": {"a1": 1}, "b": 2},
    "json2": {"a": {"a3": 1}, "c": 3},
}


def _eval(expression: str, rng: random.Random | None = None) -> Any:
    return evaluate_intrinsic(expression, DATA, {"Execution": {"Name": "run-1"}}, rng or random.Random(0))


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("States.Format('Hello, my name is {}.', $.name)", "Hello, my name is Arnav."),
        ("States.Format($.template, $.name)", "Hello, my name is Arnav."),
        ("States.Format('{} {} {} {}', 1, true, null, $.list)", "1 true null [1, 2, 3, 4, 5]"),
        ("States.Format('{}', $.object)", "{foo=bar}"),
        (
            "States.Format('braces \\{\\} and a quote \\' and a backslash \\\\')",
            "braces {} and a quote ' and a backslash \\",
        ),
        ("States.Format('run {}', $$.Execution.Name)", "run run-1"),
        ("States.StringToJson($.escaped)", {"foo": "bar"}),
        ("States.JsonToString($.object)", '{"foo":"bar"}'),
        ("States.Array($.name, 1, 'x', States.Array())", ["Arnav", 1, "x", []]),
        ("States.ArrayPartition($.list, 2)", [[1, 2], [3, 4], [5]]),
        ("States.ArrayContains($.list, 3)", True),
        ("States.ArrayContains($.list, '3')", False),
        ("States.ArrayRange(1, 9, 2)", [1, 3, 5, 7, 9]),
        ("States.ArrayRange(5, 1, -2)", [5, 3, 1]),
        ("States.ArrayGetItem($.list, 1)", 2),
        ("States.ArrayLength($.list)", 5),
        ("States.ArrayUnique($.dupes)", [1, "a", {"k": 1}, True]),
        ("States.Base64Encode('Data to encode')", "RGF0YSB0byBlbmNvZGU="),
        ("States.Base64Decode('RGF0YSB0byBlbmNvZGU=')", "Data to encode"),
        ("States.Hash('input data', 'SHA-1')", hashlib.sha1(b"input data").hexdigest()),
        ("States.Hash($.name, 'SHA-256')", hashlib.sha256(b"Arnav").hexdigest()),
        ("States.JsonMerge($.json1, $.json2, false)", {"a": {"a3": 1}, "b": 2, "c": 3}),
        ("States.MathAdd($.n, -1)", 2),
        ("States.MathAdd(1.5, 1)", 3),
        ("States.StringSplit($.csv, ',')", ["a", "b", "c"]),
        ("States.StringSplit('This.is+a,test=string', '.+,=')", ["This", "is", "a", "test", "string"]),
        ("States.ArrayGetItem(States.StringSplit(States.Format('{}-x', $.name), '-'), 0)", "Arnav"),
        ("States.ArrayLength( States.Array( 1 , 2 ) )", 2),
    ],
)
def test_intrinsic_functions_compute_the_documented_values(expression: str, expected: Any) -> None:
    # WHEN the intrinsic is evaluated against the sample input THEN it gives the documented value
    assert _eval(expression) == expected


def test_math_random_stays_in_range_and_is_reproducible_with_a_seed() -> None:
    # WHEN random numbers are drawn between 1 (inclusive) and 999 (exclusive)
    values = [_eval("States.MathRandom(1, 999)", random.Random(seed)) for seed in range(50)]

    # THEN they stay in the range, and a seeded call repeats itself
    assert all(1 <= value < 999 for value in values)
    assert _eval("States.MathRandom(1, 999, 42)") == _eval("States.MathRandom(1, 999, 42)")


def test_uuid_is_a_version_4_uuid_drawn_from_the_executor_random_source() -> None:
    # WHEN two UUIDs are drawn from equally seeded sources
    first, second = _eval("States.UUID()", random.Random(3)), _eval("States.UUID()", random.Random(3))

    # THEN they are equal version-4 UUIDs
    assert first == second
    assert uuid.UUID(first).version == 4


@pytest.mark.parametrize(
    "expression",
    [
        "States.Format('{} {}', $.name)",
        "States.StringToJson($.name)",
        "States.ArrayGetItem($.list, 9)",
        "States.ArrayPartition($.list, 0)",
        "States.ArrayRange(1, 2000, 1)",
        "States.JsonMerge($.json1, $.json2, true)",
        "States.JsonMerge($.json1, $.list, false)",
        "States.MathAdd($.name, 1)",
        "States.Hash($.name, 'CRC32')",
        "States.Base64Decode('%%%')",
        "States.ArrayLength($.missing)",
    ],
)
def test_bad_arguments_fail_with_intrinsic_failure(expression: str) -> None:
    # WHEN an intrinsic gets arguments it cannot use THEN it fails with States.IntrinsicFailure
    with pytest.raises(StatesError) as raised:
        _eval(expression)
    assert raised.value.error == "States.IntrinsicFailure"


@pytest.mark.parametrize(
    "expression",
    [
        "States.Unknown($.x)",
        "States.Format('unterminated)",
        "States.ArrayLength($.a, $.b)",
        "States.UUID(1)",
        "States.Format('bad \\escape')",
        "States.Array(1,)",
        "States.Array(1) trailing",
    ],
)
def test_malformed_invocations_are_definition_errors(expression: str) -> None:
    # WHEN a malformed invocation is parsed THEN it is refused before anything runs
    with pytest.raises(DefinitionError):
        parse_intrinsic(expression)


def test_intrinsic_failure_in_parameters_can_be_caught() -> None:
    # GIVEN a Pass whose Parameters call an intrinsic that fails, inside a Parallel with a Catch
    definition = {
        "StartAt": "Guard",
        "States": {
            "Guard": {
                "Type": "Parallel",
                "Branches": [
                    {
                        "StartAt": "Bad",
                        "States": {
                            "Bad": {"Type": "Pass", "Parameters": {"x.$": "States.StringToJson($.s)"}, "End": True}
                        },
                    }
                ],
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Done"}],
                "Next": "Done",
            },
            "Done": {"Type": "Succeed"},
        },
    }

    # WHEN it runs on a string that is not JSON
    execution = run_execution(definition, {"s": "not json"}, clock=ManualClock())

    # THEN the Catch receives States.IntrinsicFailure
    assert execution.status == "SUCCEEDED"
    assert execution.output["error"]["Error"] == "States.IntrinsicFailure"

"""Choice rules of the local ASL executor: operators, their Path forms, type tests and boolean combinators."""

from __future__ import annotations

from typing import Any

import pytest

from lakebox.sfn import DefinitionError, ManualClock, StatesError, run_execution
from lakebox.sfn.choice import evaluate_rule, string_matches, validate_rule

DATA = {
    "s": "apple",
    "n": 10,
    "f": 2.5,
    "b": True,
    "t": "2026-03-01T12:00:00Z",
    "t_offset": "2026-03-01T13:00:00+01:00",
    "none": None,
    "other": {"s": "apple", "n": 10, "t": "2026-03-02T00:00:00Z", "b": True},
    "file": "log-2026.txt",
    "star": "a*b",
}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"Variable": "$.s", "StringEquals": "apple"}, True),
        ({"Variable": "$.s", "StringEquals": "pear"}, False),
        ({"Variable": "$.s", "StringLessThan": "banana"}, True),
        ({"Variable": "$.s", "StringGreaterThan": "banana"}, False),
        ({"Variable": "$.s", "StringLessThanEquals": "apple"}, True),
        ({"Variable": "$.s", "StringGreaterThanEquals": "apple"}, True),
        ({"Variable": "$.s", "StringEqualsPath": "$.other.s"}, True),
        ({"Variable": "$.s", "StringLessThanPath": "$.other.s"}, False),
        ({"Variable": "$.file", "StringMatches": "log-*.txt"}, True),
        ({"Variable": "$.file", "StringMatches": "*.csv"}, False),
        ({"Variable": "$.star", "StringMatches": "a\\*b"}, True),
        ({"Variable": "$.s", "StringMatches": "a\\*b"}, False),
        ({"Variable": "$.n", "NumericEquals": 10}, True),
        ({"Variable": "$.n", "NumericEquals": 10.0}, True),
        ({"Variable": "$.n", "NumericLessThan": 11}, True),
        ({"Variable": "$.n", "NumericGreaterThan": 11}, False),
        ({"Variable": "$.f", "NumericLessThanEquals": 2.5}, True),
        ({"Variable": "$.f", "NumericGreaterThanEquals": 3}, False),
        ({"Variable": "$.n", "NumericEqualsPath": "$.other.n"}, True),
        ({"Variable": "$.f", "NumericGreaterThanPath": "$.other.n"}, False),
        ({"Variable": "$.b", "BooleanEquals": True}, True),
        ({"Variable": "$.b", "BooleanEqualsPath": "$.other.b"}, True),
        ({"Variable": "$.t", "TimestampEquals": "2026-03-01T12:00:00Z"}, True),
        ({"Variable": "$.t", "TimestampEqualsPath": "$.t_offset"}, True),
        ({"Variable": "$.t", "TimestampLessThan": "2026-03-01T12:00:01Z"}, True),
        ({"Variable": "$.t", "TimestampGreaterThan": "2026-03-01T12:00:01Z"}, False),
        ({"Variable": "$.t", "TimestampLessThanEquals": "2026-03-01T12:00:00Z"}, True),
        ({"Variable": "$.t", "TimestampGreaterThanEquals": "2026-03-02T00:00:00Z"}, False),
        ({"Variable": "$.t", "TimestampLessThanPath": "$.other.t"}, True),
        ({"Variable": "$.none", "IsNull": True}, True),
        ({"Variable": "$.s", "IsNull": False}, True),
        ({"Variable": "$.s", "IsPresent": True}, True),
        ({"Variable": "$.missing", "IsPresent": True}, False),
        ({"Variable": "$.missing", "IsPresent": False}, True),
        ({"Variable": "$.n", "IsNumeric": True}, True),
        ({"Variable": "$.b", "IsNumeric": True}, False),
        ({"Variable": "$.s", "IsString": True}, True),
        ({"Variable": "$.b", "IsBoolean": True}, True),
        ({"Variable": "$.t", "IsTimestamp": True}, True),
        ({"Variable": "$.s", "IsTimestamp": True}, False),
        ({"And": [{"Variable": "$.n", "NumericGreaterThan": 1}, {"Variable": "$.s", "StringEquals": "apple"}]}, True),
        ({"And": [{"Variable": "$.n", "NumericGreaterThan": 1}, {"Variable": "$.s", "StringEquals": "pear"}]}, False),
        ({"Or": [{"Variable": "$.n", "NumericLessThan": 1}, {"Variable": "$.s", "StringEquals": "apple"}]}, True),
        ({"Not": {"Variable": "$.s", "StringEquals": "apple"}}, False),
        (
            {"And": [{"Variable": "$.missing", "IsPresent": True}, {"Variable": "$.missing", "StringEquals": "x"}]},
            False,
        ),
    ],
)
def test_choice_rules_compare_as_step_functions_does(rule: dict[str, Any], expected: bool) -> None:
    # GIVEN a rule (validated as a nested rule) WHEN it is evaluated on the data THEN it gives the expected answer
    validate_rule(rule, top_level=False)
    assert evaluate_rule(rule, DATA, {}) is expected


@pytest.mark.parametrize(
    "rule",
    [
        {"Variable": "$.n", "StringEquals": "10"},
        {"Variable": "$.s", "NumericEquals": 10},
        {"Variable": "$.b", "NumericEquals": 1},
        {"Variable": "$.n", "BooleanEquals": True},
        {"Variable": "$.s", "TimestampEquals": "2026-03-01T12:00:00Z"},
    ],
)
def test_comparing_values_of_different_types_is_false(rule: dict[str, Any]) -> None:
    # WHEN the variable's type differs from the operator's THEN the rule does not match (and does not fail)
    assert evaluate_rule(rule, DATA, {}) is False


def test_a_missing_variable_is_a_runtime_error() -> None:
    # WHEN a comparison reads a variable the input lacks THEN the execution fails with States.Runtime
    with pytest.raises(StatesError) as raised:
        evaluate_rule({"Variable": "$.missing", "StringEquals": "x"}, DATA, {})
    assert raised.value.error == "States.Runtime"


@pytest.mark.parametrize(
    ("value", "pattern", "expected"),
    [("abc", "*", True), ("abc", "a*c", True), ("a\\c", "a\\\\c", True), ("abc", "a?c", False), ("", "*", True)],
)
def test_string_matches_treats_only_star_as_a_wildcard(value: str, pattern: str, expected: bool) -> None:
    # WHEN a StringMatches pattern is applied THEN only * is special (\\* and \\\\ escape it)
    assert string_matches(value, pattern) is expected


def test_choice_without_a_match_goes_to_default_or_fails_with_no_choice_matched() -> None:
    # GIVEN a Choice with a Default and one without
    def machine(default: bool) -> dict[str, Any]:
        choice: dict[str, Any] = {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "One"}]}
        if default:
            choice["Default"] = "Other"
        states: dict[str, Any] = {"Pick": choice, "One": {"Type": "Pass", "Result": "one", "End": True}}
        if default:  # without a Default, "Other" would be unreachable, which Step Functions refuses
            states["Other"] = {"Type": "Pass", "Result": "other", "End": True}
        return {"StartAt": "Pick", "States": states}

    # WHEN no rule matches
    with_default = run_execution(machine(True), {"n": 2}, clock=ManualClock())
    without_default = run_execution(machine(False), {"n": 2}, clock=ManualClock())

    # THEN the Default is taken, or the execution fails with States.NoChoiceMatched
    assert with_default.output == "other"
    assert without_default.error == "States.NoChoiceMatched"


def test_malformed_rules_are_refused_before_running() -> None:
    # WHEN a rule has two operators, or a top-level rule lacks Next THEN validation refuses it
    with pytest.raises(DefinitionError):
        validate_rule({"Variable": "$.a", "StringEquals": "x", "NumericEquals": 1, "Next": "X"}, top_level=True)
    with pytest.raises(DefinitionError):
        validate_rule({"Variable": "$.a", "StringEquals": "x"}, top_level=True)
    with pytest.raises(DefinitionError):
        validate_rule({"Not": {"Variable": "$.a", "StringEquals": "x", "Next": "X"}, "Next": "X"}, top_level=True)

"""Checks a definition before it runs, so an invalid or unsupported one fails naming the state."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from lakebox.sfn import jsonata_expr
from lakebox.sfn.choice import validate_rule
from lakebox.sfn.distributed import PUT_OBJECT, validate_item_reader
from lakebox.sfn.errors import ALL, DefinitionError, UnsupportedFeatureError
from lakebox.sfn.intrinsics import is_intrinsic, parse_intrinsic
from lakebox.sfn.paths import parse_reference_path, validate_path
from lakebox.sfn.payload import validate_template
from lakebox.sfn.registry import Integrations
from lakebox.sfn.variables import validate_name

STATE_TYPES = ("Pass", "Task", "Choice", "Wait", "Succeed", "Fail", "Map", "Parallel")
_TERMINAL_TYPES = ("Choice", "Succeed", "Fail")
_PLACEHOLDER = re.compile(r"\$\{[A-Za-z0-9_:.-]+\}")

_State = dict[str, Any]
_States = dict[str, Any]
_Registry = Integrations | None

QUERY_LANGUAGES = ("JSONPath", "JSONata")
_JSONATA_ONLY = ("Arguments", "Output", "Items")
_JSONPATH_ONLY = (
    "InputPath",
    "OutputPath",
    "Parameters",
    "ResultSelector",
    "ResultPath",
    "Result",
    "ItemsPath",
    "SecondsPath",
    "TimestampPath",
    "ErrorPath",
    "CausePath",
    "TimeoutSecondsPath",
    "HeartbeatSecondsPath",
    "MaxConcurrencyPath",
    "ToleratedFailurePercentagePath",
    "ToleratedFailureCountPath",
)
_DISTRIBUTED_ONLY = (
    "ItemReader",
    "ResultWriter",
    "ItemBatcher",
    "ToleratedFailurePercentage",
    "ToleratedFailureCount",
    "ToleratedFailurePercentagePath",
    "ToleratedFailureCountPath",
    "Label",
)
_ASSIGN_TYPES = ("Pass", "Task", "Map", "Parallel", "Choice", "Wait")
_TOKEN_REFERENCES = ("$$.Task.Token", "$states.context.Task.Token")
_LAMBDA_FUNCTION = re.compile(r"arn:aws[a-z-]*:lambda:[^:]*:[^:]*:function:.+")


def is_lambda_resource(resource: str) -> bool:
    """Tell whether a Task resource calls Lambda (a function ARN, or the ``lambda:invoke`` integration)."""
    return bool(_LAMBDA_FUNCTION.fullmatch(resource)) or resource.startswith("arn:aws:states:::lambda:invoke")


def validate_definition(definition: dict[str, Any], integrations: Integrations | None = None) -> None:
    """Check a state machine definition for what this executor runs.

    Parameters
    ----------
    definition
        The parsed ASL document, DefinitionSubstitutions already applied.
    integrations
        When given, every Task resource must resolve to a handler.

    Raises
    ------
    DefinitionError
        The definition is invalid (dangling ``Next``, bad Path, malformed rule, unresolved ``${...}``).
    UnsupportedFeatureError
        The definition uses activities, cross-account ``Credentials``, or a resource with no local integration
        (other than a Lambda function, which fails at run time as on AWS). The message names the state.
    """
    leftovers = sorted(set(_PLACEHOLDER.findall(json.dumps(definition))))
    if leftovers:
        raise DefinitionError(f"the definition has unresolved placeholders: {', '.join(leftovers)}")
    language = definition.get("QueryLanguage", "JSONPath")
    if language not in QUERY_LANGUAGES:
        raise DefinitionError(f"QueryLanguage must be JSONPath or JSONata, not {language!r}")
    _validate_machine(definition, integrations, "", language)


def _validate_machine(machine: Any, integrations: Integrations | None, where: str, language: str) -> None:
    if not isinstance(machine, dict) or not isinstance(machine.get("States"), dict) or not machine["States"]:
        raise DefinitionError(f"{where or 'the definition'} needs a non-empty 'States' object")
    states: dict[str, Any] = machine["States"]
    if machine.get("StartAt") not in states:
        raise DefinitionError(f"{where or 'the definition'}: StartAt {machine.get('StartAt')!r} names no state")
    for name, state in states.items():
        _validate_state(name, state, states, integrations, language)
    unreachable = sorted(set(states) - _reachable(machine["StartAt"], states))
    if unreachable:
        raise DefinitionError(f"{where or 'the definition'}: state {unreachable[0]!r} is not reachable from StartAt")
    for name, state in states.items():
        _validate_nested(name, state, integrations, language)


def _reachable(start: str, states: dict[str, Any]) -> set[str]:
    """The states a run can enter from ``start`` (Next, Choice rules and Default, Catch)."""
    seen: set[str] = set()
    pending = [start]
    while pending:
        name = pending.pop()
        if name in seen or name not in states:
            continue
        seen.add(name)
        state = states[name]
        targets = [state.get("Next"), state.get("Default")]
        targets += [rule.get("Next") for rule in state.get("Choices", []) if isinstance(rule, dict)]
        targets += [catcher.get("Next") for catcher in state.get("Catch", []) if isinstance(catcher, dict)]
        pending.extend(target for target in targets if isinstance(target, str))
    return seen


def _validate_nested(name: str, state: dict[str, Any], integrations: Integrations | None, language: str) -> None:
    label = f"State '{name}'"
    if state["Type"] == "Parallel":
        for position, branch in enumerate(state["Branches"]):
            _validate_machine(branch, integrations, f"{label} Branches[{position}]", language)
    elif state["Type"] == "Map":
        processor = state.get("ItemProcessor", state.get("Iterator"))
        _validate_machine(processor, integrations, f"{label} ItemProcessor", language)


def _validate_state(
    name: str,
    state: Any,
    states: dict[str, Any],
    integrations: Integrations | None,
    top_language: str,
) -> None:
    label = f"State '{name}'"
    if not isinstance(state, dict):
        raise DefinitionError(f"{label} must be an object")
    kind = state.get("Type")
    if kind not in STATE_TYPES:
        raise DefinitionError(f"{label}: unknown Type {kind!r}")
    language = state.get("QueryLanguage", top_language)
    if language not in QUERY_LANGUAGES:
        raise DefinitionError(f"{label}: QueryLanguage must be JSONPath or JSONata, not {language!r}")
    if top_language == "JSONata" and language == "JSONPath":
        raise DefinitionError(f"{label}: a state cannot use JSONPath when the state machine's QueryLanguage is JSONata")
    if "Credentials" in state:
        raise UnsupportedFeatureError(f"{label}: cross-account Credentials are not supported by the local executor")
    _validate_transition(label, kind, state, states)
    if language == "JSONata":
        _validate_jsonata_fields(label, state)
    else:
        _validate_jsonpath_fields(label, state)
    _validate_assign(label, state, language)
    _validate_errors(label, state, states, language)
    checker = _KIND_CHECKS.get(kind)
    if checker is not None:
        checker(label, state, states, integrations)


def _validate_jsonpath_fields(label: str, state: dict[str, Any]) -> None:
    for key in _JSONATA_ONLY:
        if key in state:
            raise DefinitionError(f"{label}: '{key}' belongs to JSONata; this state's QueryLanguage is JSONPath")
    for key in ("InputPath", "OutputPath", "ItemsPath", "SecondsPath", "TimestampPath"):
        if state.get(key) is not None:
            _check(label, key, validate_path, state[key])
    if state.get("ResultPath") is not None:
        _check(label, "ResultPath", parse_reference_path, state["ResultPath"])
    for key in ("Parameters", "ResultSelector", "ItemSelector"):
        if key in state:
            validate_template(state[key], f"{label} {key}")
    for position, rule in enumerate(state.get("Choices", []) if state.get("Type") == "Choice" else []):
        if isinstance(rule, dict) and "Condition" in rule:
            raise DefinitionError(f"{label}: Choices[{position}] has a Condition, which belongs to JSONata")


def _validate_jsonata_fields(label: str, state: dict[str, Any]) -> None:
    for key in _JSONPATH_ONLY:
        if key in state:
            raise DefinitionError(f"{label}: '{key}' belongs to JSONPath; in a JSONata state use Arguments and Output")
    for key, value in state.items():
        if key in ("Type", "Next", "End", "Comment", "QueryLanguage", "Retry", "Catch", "Branches", "Choices"):
            continue
        if key in ("ItemProcessor", "Iterator", "Default", "Resource"):
            continue
        jsonata_expr.validate_template(value, f"{label} {key}")
    for position, rule in enumerate(state.get("Choices", []) if state.get("Type") == "Choice" else []):
        if not isinstance(rule, dict) or "Condition" not in rule:
            raise DefinitionError(f"{label}: Choices[{position}] of a JSONata Choice needs a Condition")
        jsonata_expr.validate_template(rule, f"{label} Choices[{position}]")


def _validate_assign(label: str, state: dict[str, Any], language: str) -> None:
    holders = [("Assign", state)]
    holders += [(f"Catch[{i}].Assign", c) for i, c in enumerate(state.get("Catch", [])) if isinstance(c, dict)]
    if state.get("Type") == "Choice":
        holders += [(f"Choices[{i}].Assign", r) for i, r in enumerate(state.get("Choices", [])) if isinstance(r, dict)]
    for where, holder in holders:
        if "Assign" not in holder:
            continue
        if holder is state and state["Type"] not in _ASSIGN_TYPES:
            raise DefinitionError(f"{label}: a {state['Type']} state cannot Assign variables")
        assign = holder["Assign"]
        if not isinstance(assign, dict):
            raise DefinitionError(f"{label} {where} must be an object of variable names")
        for key in assign:
            validate_name(key.removesuffix(".$") if language == "JSONPath" else key, f"{label} {where}")
        if language == "JSONPath":
            validate_template(assign, f"{label} {where}")


def _check(label: str, key: str, check: Callable[[str], object], value: str) -> None:
    try:
        check(value)
    except DefinitionError as exc:
        raise DefinitionError(f"{label} {key}: {exc}") from exc


def _validate_transition(label: str, kind: str, state: dict[str, Any], states: dict[str, Any]) -> None:
    if kind in _TERMINAL_TYPES:
        return
    if state.get("End") is True:
        if "Next" in state:
            raise DefinitionError(f"{label} has both 'Next' and 'End'")
        return
    if state.get("Next") not in states:
        raise DefinitionError(f"{label}: Next {state.get('Next')!r} names no state (and End is not true)")


def _validate_errors(label: str, state: dict[str, Any], states: dict[str, Any], language: str) -> None:
    for field in ("Retry", "Catch"):
        handlers = state.get(field, [])
        if handlers and state["Type"] not in ("Task", "Map", "Parallel"):
            raise DefinitionError(f"{label}: {field} is only allowed on Task, Map and Parallel states")
        if not isinstance(handlers, list):
            raise DefinitionError(f"{label}: {field} must be an array")
        for position, handler in enumerate(handlers):
            names = handler.get("ErrorEquals") if isinstance(handler, dict) else None
            if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
                raise DefinitionError(f"{label}: {field}[{position}] needs a non-empty ErrorEquals of strings")
            if ALL in names and (len(names) > 1 or position != len(handlers) - 1):
                raise DefinitionError(f"{label}: States.ALL must appear alone in the last {field} entry")
            if field == "Catch":
                if handler.get("Next") not in states:
                    raise DefinitionError(f"{label}: Catch[{position}] Next {handler.get('Next')!r} names no state")
                if language == "JSONata" and "ResultPath" in handler:
                    raise DefinitionError(f"{label}: Catch[{position}] ResultPath belongs to JSONPath (use Output)")
                if language == "JSONPath" and "Output" in handler:
                    raise DefinitionError(f"{label}: Catch[{position}] Output belongs to JSONata (use ResultPath)")
                if handler.get("ResultPath") is not None:
                    _check(label, f"Catch[{position}] ResultPath", parse_reference_path, handler["ResultPath"])
            else:
                _validate_retrier(label, position, handler)


def _validate_retrier(label: str, position: int, retrier: dict[str, Any]) -> None:
    numbers = {"IntervalSeconds": 1, "MaxAttempts": 0, "BackoffRate": 1, "MaxDelaySeconds": 1}
    for key, minimum in numbers.items():
        if key in retrier:
            value = retrier[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
                raise DefinitionError(f"{label}: Retry[{position}].{key} must be a number >= {minimum}")
    if retrier.get("JitterStrategy", "NONE") not in ("FULL", "NONE"):
        raise DefinitionError(f"{label}: Retry[{position}].JitterStrategy must be FULL or NONE")


def _validate_task(label: str, state: _State, states: _States, registry: _Registry) -> None:
    resource = state.get("Resource")
    if not isinstance(resource, str) or not resource:
        raise DefinitionError(f"{label}: a Task needs a Resource")
    if ":activity:" in resource:
        raise UnsupportedFeatureError(f"{label}: activities ({resource}) are not supported by the local executor")
    base = resource.removesuffix(".waitForTaskToken")
    if base != resource:
        payload = json.dumps(state.get("Parameters", state.get("Arguments")))
        if not any(reference in payload for reference in _TOKEN_REFERENCES):
            raise DefinitionError(
                f"{label}: a .waitForTaskToken task must pass the task token ($$.Task.Token, or "
                "$states.context.Task.Token in JSONata) in its Parameters or Arguments"
            )
    if is_lambda_resource(base):
        return  # a function the template lacks fails at run time with Lambda.ResourceNotFoundException, as on AWS
    if registry is not None and registry.resolve(resource) is None and registry.resolve(base) is None:
        raise UnsupportedFeatureError(f"{label}: no local integration is registered for resource {resource}")


def _validate_choice(label: str, state: _State, states: _States, registry: _Registry) -> None:
    choices = state.get("Choices")
    if not isinstance(choices, list) or not choices:
        raise DefinitionError(f"{label}: a Choice needs a non-empty Choices array")
    for position, rule in enumerate(choices):
        if isinstance(rule, dict) and "Condition" in rule:
            if "Next" not in rule or not jsonata_expr.is_expression(rule["Condition"]):
                raise DefinitionError(f"{label}: Choices[{position}] needs Next and a {{% %}} Condition")
            if rule["Next"] not in states:
                raise DefinitionError(f"{label}: Choices[{position}] Next {rule['Next']!r} names no state")
            continue
        try:
            validate_rule(rule, top_level=True)
        except DefinitionError as exc:
            raise DefinitionError(f"{label}: Choices[{position}]: {exc}") from exc
        if rule["Next"] not in states:
            raise DefinitionError(f"{label}: Choices[{position}] Next {rule['Next']!r} names no state")
    if "Default" in state and state["Default"] not in states:
        raise DefinitionError(f"{label}: Default {state['Default']!r} names no state")


def _validate_wait(label: str, state: _State, states: _States, registry: _Registry) -> None:
    given = [key for key in ("Seconds", "SecondsPath", "Timestamp", "TimestampPath") if key in state]
    if len(given) != 1:
        raise DefinitionError(f"{label}: a Wait needs exactly one of Seconds, SecondsPath, Timestamp, TimestampPath")


def _validate_fail(label: str, state: _State, states: _States, registry: _Registry) -> None:
    for plain, computed in (("Error", "ErrorPath"), ("Cause", "CausePath")):
        if plain in state and computed in state:
            raise DefinitionError(f"{label}: {plain} and {computed} are exclusive")
        value = state.get(computed)
        if value is None:
            continue
        if is_intrinsic(value):
            _check(label, computed, parse_intrinsic, value)
        else:
            _check(label, computed, validate_path, value)


def _validate_map(label: str, state: _State, states: _States, registry: _Registry) -> None:
    processor = state.get("ItemProcessor", state.get("Iterator"))
    if not isinstance(processor, dict):
        raise DefinitionError(f"{label}: a Map needs ItemProcessor (or Iterator)")
    mode = (processor.get("ProcessorConfig") or {}).get("Mode", "INLINE")
    if mode not in ("INLINE", "DISTRIBUTED"):
        raise DefinitionError(f"{label}: Map ProcessorConfig Mode must be INLINE or DISTRIBUTED, not {mode!r}")
    if mode == "INLINE":
        for key in _DISTRIBUTED_ONLY:
            if key in state:
                raise DefinitionError(f"{label}: '{key}' needs ProcessorConfig Mode DISTRIBUTED")
    if "ItemReader" in state:
        validate_item_reader(state["ItemReader"], label)
        if "ItemsPath" in state or "Items" in state:
            raise DefinitionError(f"{label}: ItemReader and ItemsPath/Items are exclusive")
    writer = state.get("ResultWriter")
    if writer is not None:
        if not isinstance(writer, dict) or writer.get("Resource") != PUT_OBJECT:
            raise DefinitionError(f"{label}: ResultWriter.Resource must be {PUT_OBJECT}")
        if "WriterConfig" in writer:
            raise UnsupportedFeatureError(f"{label}: ResultWriter.WriterConfig is not supported by the local executor")
    batcher = state.get("ItemBatcher")
    if batcher is not None and not isinstance(batcher, dict):
        raise DefinitionError(f"{label}: ItemBatcher must be an object")
    if "ItemSelector" in state and "Parameters" in state:
        raise DefinitionError(f"{label}: ItemSelector and Parameters are exclusive")
    concurrency = state.get("MaxConcurrency", 0)
    if not jsonata_expr.is_expression(concurrency) and (
        isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 0
    ):
        raise DefinitionError(f"{label}: MaxConcurrency must be an integer >= 0")


def _validate_parallel(label: str, state: _State, states: _States, registry: _Registry) -> None:
    branches = state.get("Branches")
    if not isinstance(branches, list) or not branches:
        raise DefinitionError(f"{label}: a Parallel needs a non-empty Branches array")


_KIND_CHECKS = {
    "Task": _validate_task,
    "Choice": _validate_choice,
    "Wait": _validate_wait,
    "Fail": _validate_fail,
    "Map": _validate_map,
    "Parallel": _validate_parallel,
}

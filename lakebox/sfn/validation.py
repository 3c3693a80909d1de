"""Checks a definition before it runs, so an invalid or unsupported one fails naming the state."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from lakebox.sfn.choice import validate_rule
from lakebox.sfn.errors import ALL, DefinitionError, UnsupportedFeatureError
from lakebox.sfn.intrinsics import is_intrinsic, parse_intrinsic
from lakebox.sfn.paths import parse_reference_path, validate_path
from lakebox.sfn.payload import validate_template
from lakebox.sfn.registry import Integrations

STATE_TYPES = ("Pass", "Task", "Choice", "Wait", "Succeed", "Fail", "Map", "Parallel")
_TERMINAL_TYPES = ("Choice", "Succeed", "Fail")
_PLACEHOLDER = re.compile(r"\$\{[A-Za-z0-9_:.-]+\}")

_State = dict[str, Any]
_States = dict[str, Any]
_Registry = Integrations | None

_JSONATA_FIELDS = ("Arguments", "Output")
_UNSUPPORTED_MAP_FIELDS = (
    "ItemReader",
    "ResultWriter",
    "ItemBatcher",
    "ToleratedFailurePercentage",
    "ToleratedFailureCount",
    "ToleratedFailurePercentagePath",
    "ToleratedFailureCountPath",
    "Label",
)


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
        The definition uses JSONata, variables, ``.waitForTaskToken``, a Distributed Map feature, or a
        resource with no local integration. The message names the state.
    """
    leftovers = sorted(set(_PLACEHOLDER.findall(json.dumps(definition))))
    if leftovers:
        raise DefinitionError(f"the definition has unresolved placeholders: {', '.join(leftovers)}")
    if definition.get("QueryLanguage", "JSONPath") != "JSONPath":
        raise UnsupportedFeatureError("QueryLanguage JSONata is not supported by the local executor")
    _validate_machine(definition, integrations, "")


def _validate_machine(machine: Any, integrations: Integrations | None, where: str) -> None:
    if not isinstance(machine, dict) or not isinstance(machine.get("States"), dict) or not machine["States"]:
        raise DefinitionError(f"{where or 'the definition'} needs a non-empty 'States' object")
    states: dict[str, Any] = machine["States"]
    if machine.get("StartAt") not in states:
        raise DefinitionError(f"{where or 'the definition'}: StartAt {machine.get('StartAt')!r} names no state")
    for name, state in states.items():
        _validate_state(name, state, states, integrations)


def _validate_state(name: str, state: Any, states: dict[str, Any], integrations: Integrations | None) -> None:
    label = f"State '{name}'"
    if not isinstance(state, dict):
        raise DefinitionError(f"{label} must be an object")
    kind = state.get("Type")
    if kind not in STATE_TYPES:
        raise DefinitionError(f"{label}: unknown Type {kind!r}")
    if state.get("QueryLanguage", "JSONPath") != "JSONPath":
        raise UnsupportedFeatureError(f"{label}: QueryLanguage JSONata is not supported by the local executor")
    for key in _JSONATA_FIELDS:
        if key in state:
            raise UnsupportedFeatureError(f"{label}: '{key}' belongs to JSONata, which the local executor does not run")
    if "Assign" in state:
        raise UnsupportedFeatureError(f"{label}: variables (Assign) are not supported by the local executor")
    if "Credentials" in state:
        raise UnsupportedFeatureError(f"{label}: cross-account Credentials are not supported by the local executor")
    _validate_transition(label, kind, state, states)
    for key in ("InputPath", "OutputPath", "ItemsPath", "SecondsPath", "TimestampPath"):
        if state.get(key) is not None:
            _check(label, key, validate_path, state[key])
    if state.get("ResultPath") is not None:
        _check(label, "ResultPath", parse_reference_path, state["ResultPath"])
    for key in ("Parameters", "ResultSelector", "ItemSelector"):
        if key in state:
            validate_template(state[key], f"{label} {key}")
    _validate_errors(label, state, states)
    checker = _KIND_CHECKS.get(kind)
    if checker is not None:
        checker(label, state, states, integrations)


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


def _validate_errors(label: str, state: dict[str, Any], states: dict[str, Any]) -> None:
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
    if resource.endswith(".waitForTaskToken"):
        raise UnsupportedFeatureError(
            f"{label}: the callback pattern (.waitForTaskToken) of {resource} is not supported by the local executor"
        )
    if ":activity:" in resource:
        raise UnsupportedFeatureError(f"{label}: activities ({resource}) are not supported by the local executor")
    if registry is not None and registry.resolve(resource) is None:
        raise UnsupportedFeatureError(f"{label}: no local integration is registered for resource {resource}")


def _validate_choice(label: str, state: _State, states: _States, registry: _Registry) -> None:
    choices = state.get("Choices")
    if not isinstance(choices, list) or not choices:
        raise DefinitionError(f"{label}: a Choice needs a non-empty Choices array")
    for position, rule in enumerate(choices):
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
    for key in _UNSUPPORTED_MAP_FIELDS:
        if key in state:
            raise UnsupportedFeatureError(
                f"{label}: the Distributed Map field '{key}' is not supported by the local executor"
            )
    processor = state.get("ItemProcessor", state.get("Iterator"))
    if processor is None:
        raise DefinitionError(f"{label}: a Map needs ItemProcessor (or Iterator)")
    mode = (processor.get("ProcessorConfig") or {}).get("Mode", "INLINE") if isinstance(processor, dict) else None
    if mode != "INLINE":
        raise UnsupportedFeatureError(
            f"{label}: Map ProcessorConfig Mode {mode} is not supported by the local executor (only INLINE)"
        )
    if "ItemSelector" in state and "Parameters" in state:
        raise DefinitionError(f"{label}: ItemSelector and Parameters are exclusive")
    concurrency = state.get("MaxConcurrency", 0)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 0:
        raise DefinitionError(f"{label}: MaxConcurrency must be an integer >= 0")
    _validate_machine(processor, registry, f"{label} ItemProcessor")


def _validate_parallel(label: str, state: _State, states: _States, registry: _Registry) -> None:
    branches = state.get("Branches")
    if not isinstance(branches, list) or not branches:
        raise DefinitionError(f"{label}: a Parallel needs a non-empty Branches array")
    for position, branch in enumerate(branches):
        _validate_machine(branch, registry, f"{label} Branches[{position}]")


_KIND_CHECKS = {
    "Task": _validate_task,
    "Choice": _validate_choice,
    "Wait": _validate_wait,
    "Fail": _validate_fail,
    "Map": _validate_map,
    "Parallel": _validate_parallel,
}

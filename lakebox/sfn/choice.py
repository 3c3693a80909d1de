"""Choice rules: comparison operators (with their ``...Path`` forms), type tests, And/Or/Not."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from lakebox.sfn.errors import RUNTIME, DefinitionError, StatesError
from lakebox.sfn.paths import PathNotFoundError, read_path, validate_path

_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": operator.eq,
    "LessThan": operator.lt,
    "GreaterThan": operator.gt,
    "LessThanEquals": operator.le,
    "GreaterThanEquals": operator.ge,
}
_TYPES = ("String", "Numeric", "Boolean", "Timestamp")
_TESTS = ("IsNull", "IsPresent", "IsNumeric", "IsString", "IsBoolean", "IsTimestamp")


def _comparison_operators() -> dict[str, tuple[str, str]]:
    operators: dict[str, tuple[str, str]] = {}
    for kind in _TYPES:
        for order in _ORDERINGS:
            if kind == "Boolean" and order != "Equals":
                continue
            operators[f"{kind}{order}"] = (kind, order)
    operators["StringMatches"] = ("String", "Matches")
    return operators


COMPARISONS = _comparison_operators()


def _operator_of(rule: dict[str, Any]) -> str:
    names = [key for key in rule if key in COMPARISONS or key.removesuffix("Path") in COMPARISONS or key in _TESTS]
    if len(names) != 1:
        raise DefinitionError(f"a Choice rule needs exactly one comparison operator, found {names or 'none'}")
    return names[0]


def validate_rule(rule: Any, top_level: bool) -> None:
    """Check a Choice rule's shape.

    Parameters
    ----------
    rule
        The rule object.
    top_level
        Whether the rule is a member of ``Choices`` (it then needs ``Next``; nested rules must not have one).

    Raises
    ------
    DefinitionError
        The rule is malformed.
    """
    if not isinstance(rule, dict):
        raise DefinitionError("a Choice rule must be an object")
    if top_level and "Next" not in rule:
        raise DefinitionError("a Choice rule at the top level needs 'Next'")
    if not top_level and "Next" in rule:
        raise DefinitionError("a nested Choice rule must not have 'Next'")
    if "And" in rule or "Or" in rule:
        combinator = "And" if "And" in rule else "Or"
        members = rule[combinator]
        if not isinstance(members, list) or not members:
            raise DefinitionError(f"'{combinator}' needs a non-empty array of rules")
        for member in members:
            validate_rule(member, top_level=False)
        return
    if "Not" in rule:
        validate_rule(rule["Not"], top_level=False)
        return
    if "Variable" not in rule:
        raise DefinitionError("a Choice rule needs 'Variable' (or And/Or/Not)")
    validate_path(rule["Variable"])
    name = _operator_of(rule)
    if name.endswith("Path") and name not in _TESTS:
        validate_path(rule[name])
    if name == "StringMatches" and not isinstance(rule[name], str):
        raise DefinitionError("StringMatches needs a string pattern")


def evaluate_rule(rule: dict[str, Any], data: Any, context: Any, variables: Mapping[str, Any] | None = None) -> bool:
    """Evaluate a Choice rule against the Choice state's effective input.

    Parameters
    ----------
    rule
        A (validated) Choice rule.
    data
        The document ``$`` refers to.
    context
        The context object (``$$``).
    variables
        The workflow variables (``Variable: "$name"``).

    Returns
    -------
    bool
        Whether the rule matches. A comparison between values of different types is false.

    Raises
    ------
    StatesError
        ``States.Runtime`` when ``Variable`` (other than for ``IsPresent``) or a ``...Path`` operand names
        nothing.
    """
    if "And" in rule:
        return all(evaluate_rule(member, data, context, variables) for member in rule["And"])
    if "Or" in rule:
        return any(evaluate_rule(member, data, context, variables) for member in rule["Or"])
    if "Not" in rule:
        return not evaluate_rule(rule["Not"], data, context, variables)
    variable = rule["Variable"]
    name = _operator_of(rule)
    if name == "IsPresent":
        try:
            read_path(variable, data, context, variables)
        except PathNotFoundError:
            return rule[name] is False
        return rule[name] is True
    value = _read(variable, data, context, variables)
    if name in _TESTS:
        return _type_test(name, value) is rule[name]
    if name.endswith("Path"):
        name = name.removesuffix("Path")
        expected = _read(rule[f"{name}Path"], data, context, variables)
    else:
        expected = rule[name]
    kind, order = COMPARISONS[name]
    return _compare(kind, order, value, expected)


def _read(path: str, data: Any, context: Any, variables: Mapping[str, Any] | None) -> Any:
    try:
        return read_path(path, data, context, variables)
    except PathNotFoundError as exc:
        raise StatesError(
            RUNTIME, f"Invalid path '{path}': the choice state's condition path references an invalid value"
        ) from exc


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_timestamp(value: Any) -> datetime | None:
    """Parse an RFC 3339 timestamp (``2026-01-01T00:00:00Z``); return ``None`` when it is not one."""
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _type_test(name: str, value: Any) -> bool:
    if name == "IsNull":
        return value is None
    if name == "IsNumeric":
        return _is_number(value)
    if name == "IsString":
        return isinstance(value, str)
    if name == "IsBoolean":
        return isinstance(value, bool)
    return parse_timestamp(value) is not None


def _compare(kind: str, order: str, value: Any, expected: Any) -> bool:
    if kind == "String":
        if not isinstance(value, str) or not isinstance(expected, str):
            return False
        if order == "Matches":
            return string_matches(value, expected)
        return _ORDERINGS[order](utf16_key(value), utf16_key(expected))
    if kind == "Numeric":
        return _is_number(value) and _is_number(expected) and _ORDERINGS[order](value, expected)
    if kind == "Boolean":
        return isinstance(value, bool) and isinstance(expected, bool) and value is expected
    left, right = parse_timestamp(value), parse_timestamp(expected)
    return left is not None and right is not None and _ORDERINGS[order](left, right)


def utf16_key(text: str) -> bytes:
    """Return the sort key Step Functions orders strings by: their UTF-16 code units (big-endian bytes compare alike).

    Code point order and UTF-16 order differ above U+FFFF: a surrogate pair (0xD800-0xDFFF) sorts below U+E000-U+FFFF.
    """
    return text.encode("utf-16-be", "surrogatepass")


def string_matches(value: str, pattern: str) -> bool:
    """Match ``value`` against a StringMatches pattern: ``*`` is a wildcard, ``\\*`` and ``\\\\`` are literals."""
    regex: list[str] = []
    position = 0
    while position < len(pattern):
        char = pattern[position]
        if char == "\\" and position + 1 < len(pattern) and pattern[position + 1] in "*\\":
            regex.append(re.escape(pattern[position + 1]))
            position += 2
            continue
        regex.append(".*" if char == "*" else re.escape(char))
        position += 1
    return re.fullmatch("".join(regex), value, flags=re.DOTALL) is not None

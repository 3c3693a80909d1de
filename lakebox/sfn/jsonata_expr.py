"""JSONata as Step Functions evaluates it: ``{% %}`` templates, ``$states``, variables and the added functions."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
import threading
import uuid
from collections.abc import Mapping
from typing import Any

import jsonata
from jsonata.jexception import JException
from jsonata.utils import Utils

from lakebox.sfn.errors import QUERY_EVALUATION_ERROR, DefinitionError, StatesError

_HASH_ALGORITHMS = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}
_EVALUATION_ERRORS = (JException, ValueError, TypeError, ArithmeticError, LookupError, RecursionError, AttributeError)


class _Undefined:
    """What an expression that selects nothing returns (JSONata's ``undefined``)."""

    def __repr__(self) -> str:
        return "undefined"


UNDEFINED = _Undefined()


def is_expression(value: Any) -> bool:
    """Tell whether a field value is a JSONata expression: a string that opens with ``{%`` and closes with ``%}``."""
    return isinstance(value, str) and value.startswith("{%") and value.endswith("%}") and len(value) >= 4


def _body(text: str) -> str:
    return text[2:-2].strip()


_PARSE_LOCK = threading.Lock()


@functools.lru_cache(maxsize=2048)
def _check_syntax(body: str) -> None:
    with _PARSE_LOCK:
        jsonata.Jsonata(body)


def validate_expression(text: str, where: str) -> None:
    """Raise :class:`DefinitionError` naming ``where`` when a ``{% %}`` expression does not parse."""
    body = _body(text)
    if not body:
        raise DefinitionError(f"{where}: the JSONata expression {text!r} is empty")
    if "$eval(" in body.replace(" ", ""):
        raise DefinitionError(f"{where}: Step Functions does not provide $eval (use $parse)")
    try:
        _check_syntax(body)
    except JException as exc:
        raise DefinitionError(f"{where}: the JSONata expression {text!r} does not parse: {exc}") from exc


def validate_template(template: Any, where: str) -> None:
    """Check every ``{% %}`` expression inside a field value (objects and arrays are walked)."""
    if isinstance(template, dict):
        for key, value in template.items():
            validate_template(value, f"{where}.{key}")
    elif isinstance(template, list):
        for position, value in enumerate(template):
            validate_template(value, f"{where}[{position}]")
    elif is_expression(template):
        validate_expression(template, where)


def _to_jsonata(value: Any) -> Any:
    if value is None:
        return Utils.NULL_VALUE
    if isinstance(value, dict):
        return {key: _to_jsonata(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_to_jsonata(item) for item in value]
    return value


def _from_jsonata(value: Any) -> Any:
    if value is None:
        return UNDEFINED
    if isinstance(value, Utils.NullValue):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise StatesError(QUERY_EVALUATION_ERROR, "the JSONata expression returned a number JSON cannot carry")
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, dict):
        converted = {key: _from_jsonata(item) for key, item in value.items()}
        return {key: item for key, item in converted.items() if item is not UNDEFINED}
    if isinstance(value, list | tuple):
        return [item for item in (_from_jsonata(item) for item in value) if item is not UNDEFINED]
    if isinstance(value, str | int):
        return value
    raise StatesError(QUERY_EVALUATION_ERROR, f"the JSONata expression returned a {type(value).__name__}, not JSON")


def _partition(array: Any, size: Any) -> list[Any]:
    items = list(array) if isinstance(array, list) else [array]
    chunk = int(size)
    if chunk <= 0:
        raise ValueError("$partition needs a chunk size above 0")
    return [items[start : start + chunk] for start in range(0, len(items), chunk)]


def _range(start: Any, end: Any, step: Any) -> list[Any]:
    first, last, stride = int(start), int(end), int(step)
    if stride == 0:
        raise ValueError("$range needs a step other than 0")
    values = list(range(first, last + (1 if stride > 0 else -1), stride))
    if len(values) > 1000:
        raise ValueError("$range returns at most 1000 items")
    return values


def _hash(data: Any, algorithm: Any) -> str:
    name = _HASH_ALGORITHMS.get(str(algorithm))
    if name is None:
        raise ValueError(f"$hash supports {', '.join(_HASH_ALGORITHMS)}, not {algorithm!r}")
    text = data if isinstance(data, str) else json.dumps(_from_jsonata(data), separators=(",", ":"))
    return hashlib.new(name, text.encode()).hexdigest()


def _parse(text: Any) -> Any:
    if not isinstance(text, str):
        raise ValueError("$parse takes a JSON string")
    return _to_jsonata(json.loads(text))


def evaluate(
    text: str,
    states: Mapping[str, Any],
    variables: Mapping[str, Any] | None = None,
    rng: random.Random | None = None,
) -> Any:
    """Evaluate one ``{% %}`` expression.

    Parameters
    ----------
    text
        The expression with its ``{%``/``%}`` delimiters.
    states
        The reserved ``$states`` variable: ``input``, ``context`` and, where the field allows, ``result`` or
        ``errorOutput``.
    variables
        The workflow variables the state sees.
    rng
        Random source for ``$random()`` and ``$uuid()``.

    Returns
    -------
    Any
        The JSON value, or :data:`UNDEFINED` when the expression selects nothing.

    Raises
    ------
    StatesError
        ``States.QueryEvaluationError`` when the expression fails (type errors, functions as values, ...).
    """
    source = rng or random.Random()
    try:
        with _PARSE_LOCK:
            expression = jsonata.Jsonata(_body(text))
        expression.set_output_convert_nulls(False)
        expression.register_lambda("partition", _partition)
        expression.register_lambda("range", _range)
        expression.register_lambda("hash", _hash)
        expression.register_lambda("parse", _parse)
        expression.register_lambda("uuid", lambda: str(uuid.UUID(int=source.getrandbits(128), version=4)))
        expression.register_lambda("random", lambda *seed: random.Random(seed[0]).random() if seed else source.random())
        bindings = {name: _to_jsonata(value) for name, value in (variables or {}).items()}
        bindings["states"] = _to_jsonata(dict(states))
        return _from_jsonata(expression.evaluate(None, bindings))
    except StatesError:
        raise
    except _EVALUATION_ERRORS as exc:
        raise StatesError(
            QUERY_EVALUATION_ERROR, f"An error occurred while evaluating the expression {text!r}: {_describe(exc)}"
        ) from exc


def _describe(exc: Exception) -> str:
    """The library's message; some of its exceptions cannot render themselves, so fall back to their code."""
    try:
        return str(exc)
    except TypeError:
        return " ".join(str(arg) for arg in exc.args if arg is not None) or type(exc).__name__


def render(
    template: Any,
    states: Mapping[str, Any],
    variables: Mapping[str, Any] | None = None,
    rng: random.Random | None = None,
    *,
    field: str = "the field",
) -> Any:
    """Build a field's value (Arguments, Output, Assign, ItemSelector...): every ``{% %}`` string is evaluated.

    Raises
    ------
    StatesError
        ``States.QueryEvaluationError`` when an expression fails or yields nothing where a value is needed.
    """
    if isinstance(template, dict):
        return {key: render(value, states, variables, rng, field=f"{field}.{key}") for key, value in template.items()}
    if isinstance(template, list):
        return [render(value, states, variables, rng, field=f"{field}[{i}]") for i, value in enumerate(template)]
    if not is_expression(template):
        return template
    value = evaluate(template, states, variables, rng)
    if value is UNDEFINED:
        raise StatesError(
            QUERY_EVALUATION_ERROR, f"The JSONata expression {template!r} in {field} returned nothing (undefined)"
        )
    return value

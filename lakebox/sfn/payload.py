"""Payload templates (Parameters, ItemSelector, ResultSelector): fields ending in ``.$`` are computed."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from typing import Any

from lakebox.sfn.errors import RUNTIME, DefinitionError, StatesError
from lakebox.sfn.intrinsics import evaluate_intrinsic, is_intrinsic, parse_intrinsic
from lakebox.sfn.paths import PathNotFoundError, read_path, validate_path


def validate_template(template: Any, where: str) -> None:
    """Check every computed field of a payload template before anything runs.

    Parameters
    ----------
    template
        The template (object, array or scalar) as written in the definition.
    where
        The state and field, for the error message (``"State 'X' Parameters"``).

    Raises
    ------
    DefinitionError
        A computed field's value is not a Path or an intrinsic function, or does not parse.
    """
    if isinstance(template, list):
        for item in template:
            validate_template(item, where)
        return
    if not isinstance(template, dict):
        return
    for key, value in template.items():
        if not key.endswith(".$"):
            validate_template(value, where)
            continue
        if not isinstance(value, str):
            raise DefinitionError(f"{where}: the value of '{key}' must be a Path or an intrinsic function")
        try:
            if is_intrinsic(value):
                parse_intrinsic(value)
            else:
                validate_path(value)
        except DefinitionError as exc:
            raise DefinitionError(f"{where}: field '{key}': {exc}") from exc


def render_template(
    template: Any, data: Any, context: Any, rng: random.Random, variables: Mapping[str, Any] | None = None
) -> Any:
    """Build a payload from its template.

    Parameters
    ----------
    template
        The template; keys ending in ``.$`` take the value of a Path (``$...`` on ``data``, ``$$...`` on the
        context object) or of an intrinsic function, under the key without the suffix. Nested objects and
        arrays are processed too.
    data
        The document ``$`` refers to.
    context
        The context object.
    rng
        Random source for intrinsic functions.
    variables
        The workflow variables the state sees (``$name`` Paths and intrinsic arguments).

    Returns
    -------
    Any
        The payload.

    Raises
    ------
    StatesError
        ``States.Runtime`` when a Path selects nothing (Step Functions fails the execution with this uncatchable
        error, not with the ``States.ParameterPathFailure`` its language specification names);
        ``States.IntrinsicFailure`` when an intrinsic function fails.
    """
    if isinstance(template, list):
        return [render_template(item, data, context, rng, variables) for item in template]
    if not isinstance(template, dict):
        return template
    rendered: dict[str, Any] = {}
    for key, value in template.items():
        if not key.endswith(".$"):
            rendered[key] = render_template(value, data, context, rng, variables)
        elif is_intrinsic(value):
            rendered[key[:-2]] = evaluate_intrinsic(value, data, context, rng, variables)
        else:
            try:
                rendered[key[:-2]] = read_path(value, data, context, variables)
            except PathNotFoundError as exc:
                raise StatesError(
                    RUNTIME,
                    f"The JSONPath '{value}' specified for the field '{key}' could not be found in the input "
                    f"'{_abbreviated(data)}'",
                ) from exc
    return rendered


def _abbreviated(data: Any, limit: int = 200) -> str:
    text = json.dumps(data, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."

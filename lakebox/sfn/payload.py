"""Payload templates (Parameters, ItemSelector, ResultSelector): fields ending in ``.$`` are computed."""

from __future__ import annotations

import random
from typing import Any

from lakebox.sfn.errors import PARAMETER_PATH_FAILURE, DefinitionError, StatesError, UnsupportedFeatureError
from lakebox.sfn.intrinsics import evaluate_intrinsic, is_intrinsic, parse_intrinsic
from lakebox.sfn.paths import PathNotFoundError, is_variable_reference, read_path, validate_path


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
    UnsupportedFeatureError
        A computed field refers to a workflow variable.
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
        if is_variable_reference(value):
            raise UnsupportedFeatureError(
                f"{where}: '{key}' refers to the workflow variable {value!r}; "
                "variables (Assign) are not supported by the local executor"
            )
        try:
            if is_intrinsic(value):
                parse_intrinsic(value)
            else:
                validate_path(value)
        except DefinitionError as exc:
            raise DefinitionError(f"{where}: field '{key}': {exc}") from exc


def render_template(template: Any, data: Any, context: Any, rng: random.Random) -> Any:
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

    Returns
    -------
    Any
        The payload.

    Raises
    ------
    StatesError
        ``States.ParameterPathFailure`` when a Path selects nothing; ``States.IntrinsicFailure`` when an
        intrinsic function fails.
    """
    if isinstance(template, list):
        return [render_template(item, data, context, rng) for item in template]
    if not isinstance(template, dict):
        return template
    rendered: dict[str, Any] = {}
    for key, value in template.items():
        if not key.endswith(".$"):
            rendered[key] = render_template(value, data, context, rng)
        elif is_intrinsic(value):
            rendered[key[:-2]] = evaluate_intrinsic(value, data, context, rng)
        else:
            try:
                rendered[key[:-2]] = read_path(value, data, context)
            except PathNotFoundError as exc:
                raise StatesError(
                    PARAMETER_PATH_FAILURE, f"The JSONPath '{value}' specified for the field '{key}' could not be found"
                ) from exc
    return rendered

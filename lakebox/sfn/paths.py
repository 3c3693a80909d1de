"""JSONPath as the Amazon States Language uses it: Paths to read, Reference Paths to write (ResultPath)."""

from __future__ import annotations

import copy
import functools
import re
import threading
from collections.abc import Mapping
from typing import Any

from jsonpath_ng import jsonpath
from jsonpath_ng.exceptions import JSONPathError
from jsonpath_ng.ext.parser import parse as _jsonpath_parse

from lakebox.sfn.errors import DefinitionError

_PARSE_LOCK = threading.Lock()  # the PLY-based parser keeps state: parse under a lock, then cache

_MISSING = object()


class PathNotFoundError(LookupError):
    """A definite Path selects nothing in its document."""

    def __init__(self, path: str) -> None:
        super().__init__(f"the JSONPath '{path}' could not be found in the input")
        self.path = path


@functools.lru_cache(maxsize=4096)
def _compile(expression: str) -> tuple[jsonpath.JSONPath, bool]:
    with _PARSE_LOCK:
        try:
            parsed = _jsonpath_parse(expression)
        except JSONPathError as exc:
            raise DefinitionError(f"invalid JSONPath '{expression}': {exc}") from exc
    return parsed, _is_definite(parsed)


def _is_definite(node: jsonpath.JSONPath) -> bool:
    """A Path is definite when it names one node: only fields, single indices and the root."""
    if isinstance(node, jsonpath.Root | jsonpath.This):
        return True
    if isinstance(node, jsonpath.Child):
        return _is_definite(node.left) and _is_definite(node.right)
    if isinstance(node, jsonpath.Fields):
        return len(node.fields) == 1 and node.fields[0] != "*"
    if isinstance(node, jsonpath.Index):
        return len(node.indices) == 1
    return False


def validate_path(expression: str) -> None:
    """Raise :class:`DefinitionError` when ``expression`` is not a Path starting at ``$`` or ``$$``.

    Parameters
    ----------
    expression
        The Path text as written in the definition.
    """
    if not expression.startswith("$"):
        raise DefinitionError(f"'{expression}' is not a JSONPath (it must start with '$')")
    if _is_variable(expression):
        from lakebox.sfn.variables import split_reference

        expression = split_reference(expression)[1]
    _compile(expression[1:] if expression.startswith("$$") else expression)


def _is_variable(expression: str) -> bool:
    return len(expression) > 1 and expression[1] not in ".[$"


def is_variable_reference(expression: str) -> bool:
    """Tell whether a ``$``-string names a workflow variable (``$name``) rather than a Path."""
    return expression.startswith("$") and _is_variable(expression)


def read_path(expression: str, data: Any, context: Any, variables: Mapping[str, Any] | None = None) -> Any:
    """Evaluate a Path against the state's data (``$...``), the context object (``$$...``) or a variable (``$name...``).

    Parameters
    ----------
    expression
        A Path such as ``$.a.b[0]``, ``$.items[?(@.n > 1)]`` or ``$$.Execution.Id``.
    data
        The JSON document ``$`` refers to.
    context
        The context object ``$$`` refers to.
    variables
        The workflow variables visible to the state (``$name`` and ``$name.field``).

    Returns
    -------
    Any
        For a definite Path, the value it names; for an indefinite one (wildcards, filters, slices,
        descendants), the list of every value it selects, possibly empty.

    Raises
    ------
    PathNotFoundError
        A definite Path selects nothing.
    StatesError
        ``States.Runtime`` when the variable is not defined.
    """
    document = data
    if expression.startswith("$$"):
        document, expression = context, expression[1:]
    elif _is_variable(expression):
        from lakebox.sfn.variables import lookup, split_reference

        name, expression = split_reference(expression)
        document = lookup(variables, name)
    if expression == "$":
        return document
    parsed, definite = _compile(expression)
    matches = [match.value for match in parsed.find(document)]
    if not definite:
        return matches
    if not matches:
        raise PathNotFoundError(expression)
    return matches[0]


def path_exists(expression: str, data: Any, context: Any, variables: Mapping[str, Any] | None = None) -> bool:
    """Tell whether a definite Path names a node (used by ``IsPresent``)."""
    try:
        read_path(expression, data, context, variables)
    except PathNotFoundError:
        return False
    return True


_REFERENCE_TOKEN = re.compile(
    r"""\.(?P<field>[^.\[\]]+)|\[\s*'(?P<quoted>(?:[^'\\]|\\.)*)'\s*\]|\[\s*"(?P<dquoted>[^"]*)"\s*\]|\[\s*(?P<index>\d+)\s*\]"""
)


@functools.lru_cache(maxsize=1024)
def parse_reference_path(expression: str) -> tuple[str | int, ...]:
    """Split a Reference Path (``$``, ``$.a.b``, ``$['a b']``, ``$.list[0]``) into its steps.

    Parameters
    ----------
    expression
        The Reference Path, as ResultPath takes it.

    Returns
    -------
    tuple of str or int
        Field names and list indices from the root.

    Raises
    ------
    DefinitionError
        The text is not a Reference Path (wildcards, filters and slices are not allowed).
    """
    if not expression.startswith("$") or expression.startswith("$$"):
        raise DefinitionError(f"'{expression}' is not a Reference Path (it must start with '$')")
    steps: list[str | int] = []
    position = 1
    while position < len(expression):
        match = _REFERENCE_TOKEN.match(expression, position)
        if match is None:
            raise DefinitionError(f"'{expression}' is not a Reference Path (only fields and indices are allowed)")
        if match.group("field") is not None:
            field = match.group("field")
            if field == "*" or field.endswith("()"):
                raise DefinitionError(f"'{expression}' is not a Reference Path (only fields and indices are allowed)")
            steps.append(field)
        elif match.group("quoted") is not None:
            steps.append(re.sub(r"\\(.)", r"\1", match.group("quoted")))
        elif match.group("dquoted") is not None:
            steps.append(match.group("dquoted"))
        else:
            steps.append(int(match.group("index")))
        position = match.end()
    return tuple(steps)


class ResultPathError(ValueError):
    """The Reference Path cannot be applied to the document (an intermediate node is not an object)."""


def write_reference_path(document: Any, expression: str, value: Any) -> Any:
    """Return a copy of ``document`` with ``value`` placed at the Reference Path, as ResultPath does.

    Parameters
    ----------
    document
        The state's raw input.
    expression
        The Reference Path; ``$`` replaces the whole document.
    value
        The value to place (the task result, or the error output of a Catch).

    Returns
    -------
    Any
        The combined document; missing intermediate objects are created.

    Raises
    ------
    ResultPathError
        An intermediate node exists but is not an object (or a list for an index step), or an index is
        out of range.
    """
    steps = parse_reference_path(expression)
    if not steps:
        return value
    result = copy.deepcopy(document)
    if not isinstance(result, dict):
        raise ResultPathError(f"cannot apply ResultPath '{expression}' to a non-object input")
    node: Any = result
    for position, step in enumerate(steps):
        last = position == len(steps) - 1
        if isinstance(step, int):
            if not isinstance(node, list) or step >= len(node):
                raise ResultPathError(f"cannot apply ResultPath '{expression}': no list element {step}")
            if last:
                node[step] = value
            else:
                node = node[step]
            continue
        if not isinstance(node, dict):
            raise ResultPathError(f"cannot apply ResultPath '{expression}': '{step}' is below a non-object")
        if last:
            node[step] = value
        else:
            child = node.get(step, _MISSING)
            if child is _MISSING:
                child = node[step] = {}
            node = child
    return result

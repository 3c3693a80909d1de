"""Intrinsic functions (``States.Format``, ``States.JsonMerge``, ...): a parser and an evaluator."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import math
import random
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lakebox.sfn.errors import INTRINSIC_FAILURE, DefinitionError, StatesError
from lakebox.sfn.paths import PathNotFoundError, read_path, validate_path

# Escaped braces inside a string literal survive parsing as these private-use characters, so that
# States.Format can tell a literal "\{\}" from a "{}" placeholder.
_OPEN, _CLOSE = "\ue000", "\ue001"
_MAX_ENCODED_CHARS = 10_000
_MAX_ARRAY_ITEMS = 1_000


@dataclass(frozen=True)
class Literal:
    """A literal argument; ``template`` keeps escaped braces apart for ``States.Format``."""

    value: Any
    template: str | None = None


@dataclass(frozen=True)
class PathArgument:
    """A Path argument (``$.x`` or ``$$.Execution.Id``)."""

    path: str


@dataclass(frozen=True)
class Call:
    """An intrinsic function invocation."""

    name: str
    args: tuple[Literal | PathArgument | Call, ...]


Node = Literal | PathArgument | Call


def is_intrinsic(text: str) -> bool:
    """Tell whether a payload value is an intrinsic function invocation."""
    return text.startswith("States.")


class _Parser:
    _NAME = re.compile(r"States\.[A-Za-z0-9]+")
    _NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
    _KEYWORD = re.compile(r"(true|false|null)\b")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str) -> DefinitionError:
        return DefinitionError(f"invalid intrinsic function '{self.text}': {message} at position {self.pos}")

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def parse(self) -> Call:
        call = self.call()
        self.skip_spaces()
        if self.pos != len(self.text):
            raise self.fail("unexpected text after the invocation")
        return call

    def call(self) -> Call:
        match = self._NAME.match(self.text, self.pos)
        if match is None:
            raise self.fail("expected a States.<Function> name")
        name = match.group(0)
        if name not in _FUNCTIONS:
            raise self.fail(f"unknown intrinsic function {name}")
        self.pos = match.end()
        self.skip_spaces()
        if self.text[self.pos : self.pos + 1] != "(":
            raise self.fail("expected '('")
        self.pos += 1
        args: list[Node] = []
        self.skip_spaces()
        if self.text[self.pos : self.pos + 1] == ")":
            self.pos += 1
        else:
            while True:
                args.append(self.argument())
                self.skip_spaces()
                token = self.text[self.pos : self.pos + 1]
                self.pos += 1
                if token == ")":
                    break
                if token != ",":
                    raise self.fail("expected ',' or ')'")
                self.skip_spaces()
        low, high, _ = _FUNCTIONS[name]
        if len(args) < low or (high is not None and len(args) > high):
            expected = str(low) if low == high else f"{low}..{high if high is not None else 'n'}"
            raise self.fail(f"{name} takes {expected} arguments, got {len(args)}")
        return Call(name, tuple(args))

    def argument(self) -> Node:
        rest = self.text[self.pos :]
        if rest.startswith("'"):
            return self.string()
        if rest.startswith("States."):
            return self.call()
        if rest.startswith("$"):
            return self.path()
        for pattern in (self._NUMBER, self._KEYWORD):
            match = pattern.match(self.text, self.pos)
            if match is not None:
                self.pos = match.end()
                return Literal(json.loads(match.group(0)))
        raise self.fail("expected a string, number, boolean, null, Path or intrinsic function")

    def string(self) -> Literal:
        self.pos += 1
        chars: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "'":
                self.pos += 1
                template = "".join(chars)
                return Literal(template.replace(_OPEN, "{").replace(_CLOSE, "}"), template)
            if char == "\\":
                escaped = self.text[self.pos + 1 : self.pos + 2]
                mapping = {"'": "'", "\\": "\\", "{": _OPEN, "}": _CLOSE}
                if escaped not in mapping:
                    raise self.fail("open escape backslash (only \\' \\{ \\} \\\\ are escapes)")
                chars.append(mapping[escaped])
                self.pos += 2
                continue
            chars.append(char)
            self.pos += 1
        raise self.fail("unterminated string literal")

    def path(self) -> PathArgument:
        start, depth, quote = self.pos, 0, ""
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if quote:
                if char == quote:
                    quote = ""
            elif char in "'\"":
                quote = char
            elif char in "[(":
                depth += 1
            elif char in "])":
                if depth == 0:
                    break
                depth -= 1
            elif char == "," and depth == 0:
                break
            self.pos += 1
        path = self.text[start : self.pos].strip()
        try:
            validate_path(path)
        except DefinitionError as exc:
            raise self.fail(str(exc)) from exc
        return PathArgument(path)


@functools.lru_cache(maxsize=1024)
def parse_intrinsic(text: str) -> Call:
    """Parse an intrinsic function invocation.

    Parameters
    ----------
    text
        The payload value, e.g. ``States.Format('run {}', $.id)``.

    Returns
    -------
    Call
        The invocation tree.

    Raises
    ------
    DefinitionError
        Syntax error, unknown function, wrong number of arguments or an invalid escape.
    """
    return _Parser(text).parse()


def evaluate_intrinsic(
    text: str, data: Any, context: Any, rng: random.Random, variables: Mapping[str, Any] | None = None
) -> Any:
    """Evaluate an intrinsic function invocation against the state's data and context object.

    Parameters
    ----------
    text
        The invocation.
    data
        The document ``$`` refers to.
    context
        The context object ``$$`` refers to.
    rng
        The random source for ``States.MathRandom`` (without a seed) and ``States.UUID``.

    Returns
    -------
    Any
        The function's value.

    Raises
    ------
    StatesError
        ``States.IntrinsicFailure`` when an argument has the wrong type or value, or a Path is missing.
    """
    return _evaluate(parse_intrinsic(text), data, context, rng, variables)


def _evaluate(node: Node, data: Any, context: Any, rng: random.Random, variables: Mapping[str, Any] | None) -> Any:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, PathArgument):
        try:
            return read_path(node.path, data, context, variables)
        except PathNotFoundError as exc:
            raise StatesError(INTRINSIC_FAILURE, str(exc)) from exc
    args = [_evaluate(arg, data, context, rng, variables) for arg in node.args]
    function = _FUNCTIONS[node.name][2]
    try:
        return function(_Invocation(node, args, rng))
    except _ArgumentError as exc:
        raise StatesError(INTRINSIC_FAILURE, f"{node.name}: {exc}") from exc


class _ArgumentError(ValueError):
    pass


@dataclass(frozen=True)
class _Invocation:
    call: Call
    args: list[Any]
    rng: random.Random

    def string(self, position: int) -> str:
        value = self.args[position]
        if not isinstance(value, str):
            raise _ArgumentError(f"argument {position + 1} must be a string, got {_type_name(value)}")
        return value

    def integer(self, position: int) -> int:
        value = self.args[position]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _ArgumentError(f"argument {position + 1} must be a number, got {_type_name(value)}")
        return math.floor(value + 0.5) if isinstance(value, float) else value

    def array(self, position: int) -> list[Any]:
        value = self.args[position]
        if not isinstance(value, list):
            raise _ArgumentError(f"argument {position + 1} must be an array, got {_type_name(value)}")
        return value

    def obj(self, position: int) -> dict[str, Any]:
        value = self.args[position]
        if not isinstance(value, dict):
            raise _ArgumentError(f"argument {position + 1} must be an object, got {_type_name(value)}")
        return value


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def json_equal(left: Any, right: Any) -> bool:
    """Compare two JSON values as JSON does (``true`` is not ``1``, ``1`` equals ``1.0``)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(json_equal(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[key], right[key]) for key in left)
    return type(left) is type(right) and left == right


def _format_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + ", ".join(_format_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}={_format_value(item)}" for key, item in value.items()) + "}"
    return json.dumps(value)


def _format(inv: _Invocation) -> str:
    first = inv.call.args[0]
    template = first.template if isinstance(first, Literal) and first.template is not None else inv.string(0)
    parts = template.split("{}")
    values = inv.args[1:]
    if len(parts) - 1 != len(values):
        raise _ArgumentError(f"the template has {len(parts) - 1} placeholders but {len(values)} values were given")
    pieces = [parts[0]]
    for value, part in zip(values, parts[1:], strict=True):
        pieces.extend((_format_value(value), part))
    return "".join(pieces).replace(_OPEN, "{").replace(_CLOSE, "}")


def _string_to_json(inv: _Invocation) -> Any:
    text = inv.string(0)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _ArgumentError(f"not a JSON text: {exc}") from exc


def _json_to_string(inv: _Invocation) -> str:
    return json.dumps(inv.args[0], separators=(",", ":"), ensure_ascii=False)


def _array_partition(inv: _Invocation) -> list[list[Any]]:
    items, size = inv.array(0), inv.integer(1)
    if size <= 0:
        raise _ArgumentError("the chunk size must be a positive integer")
    return [items[start : start + size] for start in range(0, len(items), size)]


def _array_contains(inv: _Invocation) -> bool:
    return any(json_equal(item, inv.args[1]) for item in inv.array(0))


def _array_range(inv: _Invocation) -> list[int]:
    first, last, step = inv.integer(0), inv.integer(1), inv.integer(2)
    if step == 0:
        raise _ArgumentError("the step must not be 0")
    values = list(range(first, last + (1 if step > 0 else -1), step))
    if len(values) > _MAX_ARRAY_ITEMS:
        raise _ArgumentError(f"the range has {len(values)} items; at most {_MAX_ARRAY_ITEMS} are allowed")
    return values


def _array_get_item(inv: _Invocation) -> Any:
    items, index = inv.array(0), inv.integer(1)
    if not 0 <= index < len(items):
        raise _ArgumentError(f"index {index} is out of range for an array of {len(items)} items")
    return items[index]


def _array_unique(inv: _Invocation) -> list[Any]:
    unique: list[Any] = []
    for item in inv.array(0):
        if not any(json_equal(item, seen) for seen in unique):
            unique.append(item)
    return unique


def _base64_encode(inv: _Invocation) -> str:
    text = inv.string(0)
    if len(text) > _MAX_ENCODED_CHARS:
        raise _ArgumentError(f"the input is longer than {_MAX_ENCODED_CHARS} characters")
    return base64.b64encode(text.encode()).decode("ascii")


def _base64_decode(inv: _Invocation) -> str:
    text = inv.string(0)
    if len(text) > _MAX_ENCODED_CHARS:
        raise _ArgumentError(f"the input is longer than {_MAX_ENCODED_CHARS} characters")
    try:
        return base64.b64decode(text, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise _ArgumentError(f"not valid base64 of UTF-8 text: {exc}") from exc


_HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}


def _hash(inv: _Invocation) -> str:
    text, algorithm = inv.string(0), inv.string(1)
    if algorithm not in _HASHES:
        raise _ArgumentError(f"unknown algorithm {algorithm!r}; use one of {', '.join(_HASHES)}")
    if len(text) > _MAX_ENCODED_CHARS:
        raise _ArgumentError(f"the input is longer than {_MAX_ENCODED_CHARS} characters")
    return hashlib.new(_HASHES[algorithm], text.encode()).hexdigest()


def _json_merge(inv: _Invocation) -> dict[str, Any]:
    first, second, deep = inv.obj(0), inv.obj(1), inv.args[2]
    if not isinstance(deep, bool):
        raise _ArgumentError("argument 3 (deep merge) must be a boolean")
    if deep:
        raise _ArgumentError("only the shallow merge is supported: the third argument must be false")
    return {**first, **second}


def _math_random(inv: _Invocation) -> int:
    start, end = inv.integer(0), inv.integer(1)
    if end <= start:
        raise _ArgumentError("the end must be greater than the start")
    source = random.Random(inv.integer(2)) if len(inv.args) == 3 else inv.rng
    return source.randrange(start, end)


def _math_add(inv: _Invocation) -> int:
    return inv.integer(0) + inv.integer(1)


def _string_split(inv: _Invocation) -> list[str]:
    text, delimiters = inv.string(0), inv.string(1)
    if not delimiters:
        return [text] if text else []
    pattern = "|".join(re.escape(char) for char in delimiters)
    return [part for part in re.split(pattern, text) if part]


def _uuid(inv: _Invocation) -> str:
    return str(uuid.UUID(int=inv.rng.getrandbits(128), version=4))


# name -> (minimum arguments, maximum arguments or None, implementation)
_FUNCTIONS: dict[str, tuple[int, int | None, Callable[[_Invocation], Any]]] = {
    "States.Format": (1, None, _format),
    "States.StringToJson": (1, 1, _string_to_json),
    "States.JsonToString": (1, 1, _json_to_string),
    "States.Array": (0, None, lambda inv: list(inv.args)),
    "States.ArrayPartition": (2, 2, _array_partition),
    "States.ArrayContains": (2, 2, _array_contains),
    "States.ArrayRange": (3, 3, _array_range),
    "States.ArrayGetItem": (2, 2, _array_get_item),
    "States.ArrayLength": (1, 1, lambda inv: len(inv.array(0))),
    "States.ArrayUnique": (1, 1, _array_unique),
    "States.Base64Encode": (1, 1, _base64_encode),
    "States.Base64Decode": (1, 1, _base64_decode),
    "States.Hash": (2, 2, _hash),
    "States.JsonMerge": (3, 3, _json_merge),
    "States.MathRandom": (2, 3, _math_random),
    "States.MathAdd": (2, 2, _math_add),
    "States.StringSplit": (2, 2, _string_split),
    "States.UUID": (0, 0, _uuid),
}

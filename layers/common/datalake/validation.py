"""Record validation: a compiled msgspec fast path for the common case, the pydantic contract as the judge."""

from __future__ import annotations

import datetime as dt
import enum
import functools
import re
import types
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from operator import attrgetter
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
import msgspec
from pydantic import AwareDatetime, BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic.functional_validators import AfterValidator

from datalake.contracts.base import Contract, Dataset, to_utc, utc_if_naive

UTC = dt.UTC

CANONICAL_TIME_PATTERN = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-](?:0\d|1[0-7]):[0-5]\d)"
CANONICAL_TIME = re.compile(CANONICAL_TIME_PATTERN)
"""Timestamp text the fast path lands as received: RFC 3339 with seconds, at most six fraction digits, an
upper-case `T` and `Z` or an offset below 18 hours. Spark's cast reads exactly the instant Python does from it;
every other spelling the contract accepts is re-encoded from the contract's value (ADR 0006). The fast path also
leaves the years 0001 and 9999 to the contract, where an offset can move the instant out of any date."""
_ENCODER = msgspec.json.Encoder(decimal_format="number")


@dataclass(frozen=True, slots=True)
class RecordError:
    """One reason a record was rejected, in the shape pydantic reports it."""

    loc: str
    msg: str
    type: str

    def as_dict(self) -> dict[str, str]:
        """Return the error as a JSON-ready dict."""
        return {"loc": self.loc, "msg": self.msg, "type": self.type}


class _Unsupported(TypeError):
    """A contract uses a type the fast path cannot express; the contract is then judged by pydantic alone."""


@dataclass(frozen=True, slots=True)
class _DecimalRule:
    max_digits: int | None = None
    decimal_places: int | None = None
    gt: Any = None
    ge: Any = None
    lt: Any = None
    le: Any = None
    nullable: bool = False

    def raw_pattern(self) -> re.Pattern[bytes]:
        """A pattern of the decimal's JSON text (number or string) that only values obeying the rule match.

        Plain notation only, whole digits within `max_digits - decimal_places`: stricter than the contract, never
        looser, so what matches is valid and what does not is left to pydantic.
        """
        places = self.decimal_places if self.decimal_places is not None else 30
        whole = (self.max_digits - places) if self.max_digits is not None else 30
        if whole < 1 or (self.gt, self.ge, self.lt, self.le) not in ((0, None, None, None), (None, None, None, None)):
            return re.compile(rb"(?!)")
        sign = b"" if self.gt == 0 else b"-?"
        nonzero = rb"(?!0*(?:\.0*)?$)" if self.gt == 0 else b""
        number = sign + nonzero + rb"\d{1,%d}" % whole + (rb"(?:\.\d{1,%d})?" % places if places else b"")
        alternatives = [number, b'"' + number.replace(b"$)", b'")') + b'"']
        if self.nullable:
            alternatives.append(b"null")
        return re.compile(b"|".join(b"(?:" + a + b")" for a in alternatives))


def _rule_fields(rule: _DecimalRule) -> dict[str, Any]:
    return {name: getattr(rule, name) for name in _DecimalRule.__slots__}


def _meta_kwargs(metadata: list[Any]) -> tuple[dict[str, Any], _DecimalRule | None]:
    kwargs: dict[str, Any] = {}
    max_digits = decimal_places = None
    for item in metadata:
        if isinstance(item, at.Gt):
            kwargs["gt"] = item.gt
        elif isinstance(item, at.Ge):
            kwargs["ge"] = item.ge
        elif isinstance(item, at.Lt):
            kwargs["lt"] = item.lt
        elif isinstance(item, at.Le):
            kwargs["le"] = item.le
        elif isinstance(item, at.MinLen):
            kwargs["min_length"] = item.min_length
        elif isinstance(item, at.MaxLen):
            kwargs["max_length"] = item.max_length
        elif hasattr(item, "__dict__") and type(item).__name__ in {"_PydanticGeneralMetadata", "StringConstraints"}:
            for name, value in vars(item).items():
                if value is None:
                    continue
                if name == "pattern":
                    kwargs["pattern"] = value if str(value).startswith("^") else None
                    if kwargs["pattern"] is None:
                        raise _Unsupported("only anchored patterns are compiled")
                elif name in {"min_length", "max_length"}:
                    kwargs[name] = value
                elif name == "max_digits":
                    max_digits = value
                elif name == "decimal_places":
                    decimal_places = value
                else:
                    raise _Unsupported(f"constraint {name}")
        else:
            raise _Unsupported(f"metadata {item!r}")
    rule = _DecimalRule(max_digits, decimal_places) if (max_digits, decimal_places) != (None, None) else None
    return kwargs, rule


@dataclass(frozen=True, slots=True)
class _TimeRule:
    """A timestamp field: decoded as text, landed as received only when `CANONICAL_TIME` matches it."""

    nullable: bool = False


@dataclass(frozen=True, slots=True)
class _Fallback:
    """A field the fast path cannot express (a nested model, a list, a constraint it does not know): decoded as raw
    JSON (any value as text), and a record with a value there is judged by pydantic, which lands it canonically."""


_Rule = _DecimalRule | _TimeRule | _Fallback | re.Pattern[str]
_CANONICAL_TIME_ANCHORED = re.compile(f"^{CANONICAL_TIME_PATTERN}$")
"""On the JSON path a timestamp is checked like any patterned string (grouped with fields of the same pattern),
then parsed with `datetime.fromisoformat`."""


def _compile_type(tp: Any, metadata: list[Any], raw_decimals: bool = False) -> tuple[Any, _Rule | None]:
    """Translate a pydantic annotation into an msgspec type that accepts no more than pydantic does."""
    origin = get_origin(tp)
    if origin is Annotated:
        base, *extra = get_args(tp)
        # a `Field(...)` pydantic did not lift (under `| None`, in a list) carries its constraints in its metadata
        flat = [m for item in extra for m in (item.metadata if isinstance(item, FieldInfo) else [item])]
        return _compile_type(base, [*metadata, *flat], raw_decimals)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if len(args) == 2 and type(None) in args and not metadata:
            inner, rule = _compile_type(next(a for a in args if a is not type(None)), [], raw_decimals)
            if inner is msgspec.Raw and isinstance(rule, _DecimalRule):
                return msgspec.Raw, _DecimalRule(**{**_rule_fields(rule), "nullable": True})
            if isinstance(rule, _TimeRule):
                return str | None, _TimeRule(nullable=True)
            return inner | None, rule
        raise _Unsupported(f"union {tp}")
    if origin is Literal:
        kinds = {type(a) for a in get_args(tp)}
        if metadata or len(kinds) != 1 or kinds.pop() not in (str, int):
            raise _Unsupported("literal of mixed or non-str/int values")
        return tp, None
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if metadata or not all(isinstance(m.value, str | int) and not isinstance(m.value, bool) for m in tp):
            raise _Unsupported(f"enum {tp.__name__}")
        return tp, None
    if tp is dt.date:
        if metadata:
            raise _Unsupported("constrained date")
        return dt.date, None
    if tp is float:
        kwargs, rule = _meta_kwargs(metadata)
        if set(kwargs) - {"gt", "ge", "lt", "le"}:
            raise _Unsupported("float constraints")
        return (Annotated[float, msgspec.Meta(**kwargs)] if kwargs else float), None
    if tp is AwareDatetime or tp is dt.datetime:
        # `EventTime`, and `NaiveAsUtc` (a plain datetime only with its validator): canonical text names its zone,
        # and both read it as the same instant
        utc = to_utc if tp is AwareDatetime else utc_if_naive
        if any(not (isinstance(m, AfterValidator) and m.func is utc) for m in metadata) or (
            tp is dt.datetime and not metadata
        ):
            raise _Unsupported("constrained datetime")
        return str, (_CANONICAL_TIME_ANCHORED if raw_decimals else _TimeRule())
    if tp is Decimal:
        kwargs, rule = _meta_kwargs(metadata)
        bounds = {k: kwargs.pop(k) for k in ("gt", "ge", "lt", "le") if k in kwargs}
        if kwargs:
            raise _Unsupported(f"decimal constraints {sorted(kwargs)}")
        base = rule or _DecimalRule()
        return (msgspec.Raw if raw_decimals else Decimal), _DecimalRule(base.max_digits, base.decimal_places, **bounds)
    if tp in (str, int, bool):
        kwargs, rule = _meta_kwargs(metadata)
        if tp is bool and kwargs:
            raise _Unsupported("constrained bool")
        if raw_decimals and "pattern" in kwargs:
            # msgspec checks a pattern with a Python `re.search` per value; one bound `fullmatch` per field,
            # called by the validator, costs a fraction of that.
            pattern = re.compile(kwargs.pop("pattern"))
            return (Annotated[tp, msgspec.Meta(**kwargs)] if kwargs else tp), pattern
        return (Annotated[tp, msgspec.Meta(**kwargs)] if kwargs else tp), rule
    raise _Unsupported(f"type {tp}")


def compile_fast_path(
    contract: type[Contract], *, raw_decimals: bool = False
) -> tuple[type[msgspec.Struct], dict[str, _Rule]]:
    """Build an msgspec Struct equivalent to (never looser than) the contract, and the checks left to the caller.

    The checks are the decimal rules, and with `raw_decimals` (the JSON path) also the string patterns. There,
    decimal fields decode as their raw JSON text, judged by `_DecimalRule.raw_pattern`, which is several times
    cheaper than building a `Decimal` for every value; and patterns are matched by the validator, not msgspec.

    A field whose type or constraint the fast path cannot express gets a `_Fallback` rule: a record with a value
    there is left to pydantic; the rest of the contract keeps its fast path.

    Raises
    ------
    TypeError
        When a field's default is not None (the fast path cannot fill it in as pydantic would).
    """
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    decimal_rules: dict[str, _Rule] = {}
    for name, info in contract.model_fields.items():
        try:
            tp, rule = _compile_type(info.annotation, list(info.metadata), raw_decimals)
        except _Unsupported:
            tp, rule = (msgspec.Raw if raw_decimals else Any), _Fallback()
        if rule is not None:
            decimal_rules[name] = rule
        if info.is_required():
            fields.append((name, tp))
        elif info.default is None:
            fields.append((name, tp, None))
        else:
            raise _Unsupported(f"default of {name}")
    name = f"{contract.__name__}{'Json' if raw_decimals else 'Text'}"
    struct = msgspec.defstruct(name, fields, forbid_unknown_fields=True, kw_only=True)
    return struct, decimal_rules


def _decimal_ok(value: Decimal, rule: _DecimalRule) -> bool:
    if not value.is_finite():
        return False
    if (
        (rule.gt is not None and not value > rule.gt)
        or (rule.ge is not None and not value >= rule.ge)
        or (rule.lt is not None and not value < rule.lt)
        or (rule.le is not None and not value <= rule.le)
    ):
        return False
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    places = max(0, -exponent)
    if rule.decimal_places is not None and places > rule.decimal_places:
        return False
    whole = max(len(digits) + exponent, 0)
    return rule.max_digits is None or whole + places <= rule.max_digits


_CONTEXT_SENSITIVE = ("$", "\\b", "\\B", "\\A", "\\Z", "(?=", "(?!", "(?<", "^")


def _group_patterns(
    patterns: dict[str, re.Pattern[str]], optional: set[str]
) -> tuple[list[tuple[Callable[[Any], Any], Callable[[str], Any], int]], list[tuple[str, re.Pattern[str]]]]:
    """Fold required fields that share a pattern into one match over their values joined by NUL.

    Each field's pattern becomes one segment of a combined pattern with literal NUL separators; a joined string
    with exactly as many NULs as separators can only match with every segment matching its own value, so one
    `fullmatch` judges all of them. Optional fields and patterns that look around their match stay single,
    each with a pattern whose `fullmatch` accepts no more than the contract's search does (a pattern anchored at
    the start only, such as `^/`, is extended to the end of the value).
    """
    by_pattern: dict[str, list[str]] = {}
    single: list[tuple[str, re.Pattern[str]]] = []
    for name, pattern in patterns.items():
        body = pattern.pattern.removeprefix("^")
        body = body.removesuffix("$") if body.endswith("$") else body
        sensitive = any(token in body for token in _CONTEXT_SENSITIVE)
        body = body if pattern.pattern.endswith("$") else body + "[^\\x00]*"
        if sensitive:
            single.append((name, pattern))
        elif name in optional:
            single.append((name, re.compile(body)))
        else:
            by_pattern.setdefault(body, []).append(name)
    groups: list[tuple[Callable[[Any], Any], Callable[[str], Any], int]] = []
    for body, names in by_pattern.items():
        if len(names) == 1:
            single.append((names[0], re.compile(body)))
            continue
        combined = re.compile("\\x00".join(f"(?:{body})" for _ in names))
        groups.append((attrgetter(*names), combined.fullmatch, len(names) - 1))
    return groups, single


def _errors(exc: ValidationError) -> list[RecordError]:
    return [
        RecordError(".".join(str(p) for p in e["loc"]) or "$", e["msg"], e["type"])
        for e in exc.errors(include_url=False, include_input=False)
    ]


def _utf8_error(document: bytes) -> tuple[RecordError, ...]:
    """Name the real problem when a document's bytes are not UTF-8 (parsers report it as bad JSON)."""
    try:
        document.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (RecordError("$", f"not valid UTF-8 at byte {exc.start}", "utf8_invalid"),)
    return ()


def canonical_time(value: dt.datetime) -> str:
    """A timestamp as raw and processed data store it: UTC, six fraction digits, `Z` (`0001-01-01T00:00:00.000000Z`)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _canonical_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return canonical_time(value)
    if isinstance(value, Decimal):
        return msgspec.Raw(format(value, "f").encode())
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, BaseModel):
        return {name: _canonical_value(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, list | tuple):
        return [_canonical_value(v) for v in value]
    if isinstance(value, dict):
        return {key: _canonical_value(v) for key, v in value.items()}
    return value


def canonical_json(values: dict[str, Any]) -> bytes:
    """A record's values as one canonical JSON object: UTC timestamps, fixed-point decimals, `true`/`false`.

    This is the form the Spark job reads (ADR 0006): whatever spelling the contract accepted, processed data gets
    the value the contract parsed.
    """
    return _ENCODER.encode({name: _canonical_value(value) for name, value in values.items()})


def _model_json(model: Contract) -> bytes:
    return canonical_json({name: getattr(model, name) for name in type(model).model_fields})


_FROM_ISO = dt.datetime.fromisoformat


def _parse_time(text: str) -> dt.datetime | None:
    """The instant of canonical timestamp text (years 0002-9998), or None to leave the value to the contract."""
    if CANONICAL_TIME.fullmatch(text) is None:
        return None
    try:
        parsed = _FROM_ISO(text)
    except ValueError:
        return None
    return parsed if 1 < parsed.year < 9999 else None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The judgement on one record: accepted with its event time, or rejected with its errors.

    `canonical` is the record re-encoded from the contract's values when its text as received is not the
    canonical form (then it is what lands); None when the text as received is canonical, or the record was rejected.
    """

    event_time: dt.datetime | None
    errors: tuple[RecordError, ...] = ()
    canonical: bytes | None = None

    @property
    def ok(self) -> bool:
        """True when the record satisfies its contract."""
        return not self.errors

    def document(self, received: bytes) -> bytes:
        """What lands for an accepted record: the canonical re-encoding, or the text as received when canonical."""
        return received if self.canonical is None else self.canonical


class RecordValidator:
    """Validates records of one dataset against its contract.

    The msgspec fast path accepts only records pydantic also accepts, and only in their canonical spelling, so
    the text it passes can land as received; anything else goes to pydantic, which has the last word, supplies
    the error messages and, for a record it accepts, the canonical values that land instead of the text. So the
    fast path changes speed, never verdicts nor values.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self._contract = dataset.contract
        self._time_field = dataset.event_time
        self._raw_checks: list[tuple[Callable[[Any], Any], Callable[[bytes], Any]]] = []
        self._pattern_checks: list[tuple[Callable[[Any], Any], Callable[[str], Any]]] = []
        self._pattern_groups: list[tuple[Callable[[Any], Any], Callable[[str], Any], int]] = []
        self._time_checks: list[tuple[str, Callable[[Any], Any]]] = []
        self._fallbacks: list[Callable[[Any], Any]] = []
        self._decode: Callable[[bytes], Any] | None = None
        self._struct: type[msgspec.Struct] | None = None
        try:
            json_struct, json_rules = compile_fast_path(dataset.contract, raw_decimals=True)
            text_struct, self._text_rules = compile_fast_path(dataset.contract)
        except _Unsupported:
            return
        self._decode = msgspec.json.Decoder(json_struct).decode
        self._struct = text_struct
        self._raw_checks = [
            (attrgetter(name), rule.raw_pattern().fullmatch)
            for name, rule in json_rules.items()
            if isinstance(rule, _DecimalRule)
        ]
        times = [name for name, rule in self._text_rules.items() if isinstance(rule, _TimeRule)]
        self._time_checks = [(name, attrgetter(name)) for name in times]
        if self._time_field not in times:
            raise TypeError(f"dataset {dataset.name}: event time field {self._time_field} is not a timestamp")
        self._event_text = attrgetter(self._time_field)
        self._other_times = [attrgetter(name) for name in times if name != self._time_field]
        self._fallbacks = [attrgetter(name) for name, rule in json_rules.items() if isinstance(rule, _Fallback)]
        patterns = {name: rule for name, rule in json_rules.items() if isinstance(rule, re.Pattern)}
        optional = {name for name, info in dataset.contract.model_fields.items() if not info.is_required()}
        self._pattern_groups, single = _group_patterns(patterns, optional)
        self._pattern_checks = [(attrgetter(name), pattern.fullmatch) for name, pattern in single]

    def check_json(self, line: bytes) -> Verdict:
        """Judge one JSON document (a JSON-lines line, a stream record or an array item re-encoded)."""
        event_time = self.fast_event_time(line)
        if event_time is not None:
            return Verdict(event_time)
        return self.judge_json(line)

    def fast_event_time(self, line: bytes) -> dt.datetime | None:
        """The record's event time if the fast path accepts its text as canonical, else None (`judge_json` decides).

        The time is aware but not necessarily in UTC (`+05:30` as received): callers date it in UTC.
        """
        if self._decode is None:
            return None
        try:
            record = self._decode(line)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            # RecursionError: a value nested too deep for msgspec; pydantic's parser stops it with its own reason
            return None
        for get, match in self._raw_checks:
            raw = get(record)  # None: an optional decimal the record leaves out (a JSON null is Raw(b"null"))
            if raw is not None and match(bytes(raw)) is None:
                return None
        for get_values, match_joined, separators in self._pattern_groups:
            joined = "\x00".join(get_values(record))
            if joined.count("\x00") != separators or match_joined(joined) is None:
                return None
        for get_text, match_text in self._pattern_checks:
            value = get_text(record)
            if value is not None and match_text(value) is None:
                return None
        for get_raw in self._fallbacks:
            value = get_raw(record)
            if value is not None and bytes(value) != b"null":
                return None
        # Every timestamp's text matched CANONICAL_TIME above; it must also name a real date and time.
        try:
            event_time: dt.datetime = _FROM_ISO(self._event_text(record))
            for get_time in self._other_times:
                other = get_time(record)
                if other is not None and not 1 < _FROM_ISO(other).year < 9999:
                    return None
        except ValueError:
            return None
        return event_time if 1 < event_time.year < 9999 else None

    def judge_json(self, line: bytes) -> Verdict:
        """The contract's own verdict on a JSON document: its error messages, or its values re-encoded canonically."""
        try:
            model = self._contract.model_validate_json(line)
        except ValidationError as exc:
            return Verdict(None, _utf8_error(line) or tuple(_errors(exc)))
        except UnicodeDecodeError:
            return Verdict(None, _utf8_error(line))
        return Verdict(getattr(model, self._time_field), canonical=_model_json(model))

    def check_text_row(self, row: dict[str, Any]) -> Verdict:
        """Judge one row whose values are all text (CSV), converted as the contract's types say.

        The verdict always carries the canonical JSON of the converted values: CSV text (`on`, `24.5`) never
        lands as such.
        """
        if self._struct is not None:
            try:
                fast = msgspec.convert(row, self._struct, strict=False)
            except msgspec.ValidationError:
                pass
            else:
                if all(
                    value is None or (isinstance(rule, _DecimalRule) and _decimal_ok(value, rule))
                    for value, rule in ((getattr(fast, name), rule) for name, rule in self._text_rules.items())
                    if not isinstance(rule, _TimeRule)
                ):  # a `_Fallback` field holding a value fails here too: pydantic judges that row
                    values = {name: getattr(fast, name) for name in fast.__struct_fields__}
                    times = {name: _parse_time(values[name]) for name, _ in self._time_checks if values[name]}
                    if all(t is not None for t in times.values()):
                        values.update(times)
                        return Verdict(times[self._time_field], canonical=canonical_json(values))
        try:
            model = self._contract.model_validate(row, strict=False)
        except ValidationError as exc:
            return Verdict(None, tuple(_errors(exc)))
        return Verdict(getattr(model, self._time_field), canonical=_model_json(model))


@functools.cache
def validator_for(dataset: Dataset) -> RecordValidator:
    """The dataset's validator, built once per process (compiling the fast path takes a few milliseconds)."""
    return RecordValidator(dataset)

"""Record validation: a compiled msgspec fast path for the common case, the pydantic contract as the judge."""

from __future__ import annotations

import datetime as dt
import types
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
import msgspec
from pydantic import AwareDatetime, ValidationError

from datalake.contracts.base import Contract, Dataset

UTC = dt.UTC


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


def _compile_type(tp: Any, metadata: list[Any]) -> tuple[Any, _DecimalRule | None]:
    """Translate a pydantic annotation into an msgspec type that accepts no more than pydantic does."""
    origin = get_origin(tp)
    if origin is Annotated:
        base, *extra = get_args(tp)
        return _compile_type(base, [*metadata, *extra])
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if len(args) == 2 and type(None) in args and not metadata:
            inner, rule = _compile_type(next(a for a in args if a is not type(None)), [])
            return inner | None, rule
        raise _Unsupported(f"union {tp}")
    if origin is Literal:
        if metadata or not all(isinstance(a, str) for a in get_args(tp)):
            raise _Unsupported("non-string literal")
        return tp, None
    if tp is AwareDatetime:
        if metadata:
            raise _Unsupported("constrained datetime")
        return Annotated[dt.datetime, msgspec.Meta(tz=True)], None
    if tp is Decimal:
        kwargs, rule = _meta_kwargs(metadata)
        bounds = {k: kwargs.pop(k) for k in ("gt", "ge", "lt", "le") if k in kwargs}
        if kwargs:
            raise _Unsupported(f"decimal constraints {sorted(kwargs)}")
        base = rule or _DecimalRule()
        return Decimal, _DecimalRule(base.max_digits, base.decimal_places, **bounds)
    if tp in (str, int, bool):
        kwargs, rule = _meta_kwargs(metadata)
        if tp is bool and kwargs:
            raise _Unsupported("constrained bool")
        return (Annotated[tp, msgspec.Meta(**kwargs)] if kwargs else tp), rule
    raise _Unsupported(f"type {tp}")


def compile_fast_path(contract: type[Contract]) -> tuple[type[msgspec.Struct], dict[str, _DecimalRule]]:
    """Build an msgspec Struct equivalent to (never looser than) the contract, and its decimal rules.

    Raises
    ------
    TypeError
        When the contract uses a type or constraint the fast path cannot express.
    """
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    decimal_rules: dict[str, _DecimalRule] = {}
    for name, info in contract.model_fields.items():
        tp, rule = _compile_type(info.annotation, list(info.metadata))
        if rule is not None:
            decimal_rules[name] = rule
        if info.is_required():
            fields.append((name, tp))
        elif info.default is None:
            fields.append((name, tp, None))
        else:
            raise _Unsupported(f"default of {name}")
    struct = msgspec.defstruct(f"{contract.__name__}Fast", fields, forbid_unknown_fields=True, kw_only=True)
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


@dataclass(frozen=True, slots=True)
class Verdict:
    """The judgement on one record: accepted with its event time, or rejected with its errors."""

    event_time: dt.datetime | None
    errors: tuple[RecordError, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the record satisfies its contract."""
        return not self.errors


class RecordValidator:
    """Validates records of one dataset against its contract.

    The msgspec fast path accepts only records pydantic also accepts; anything it rejects goes to pydantic, which
    has the last word and supplies the error messages. So the fast path changes speed, never verdicts.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self._contract = dataset.contract
        self._time_field = dataset.event_time
        try:
            struct, self._decimal_rules = compile_fast_path(dataset.contract)
        except _Unsupported:
            self._json_decoder: msgspec.json.Decoder[Any] | None = None
            self._struct: type[msgspec.Struct] | None = None
        else:
            self._json_decoder = msgspec.json.Decoder(struct)
            self._struct = struct

    def _fast_ok(self, record: Any) -> dt.datetime | None:
        for name, rule in self._decimal_rules.items():
            value = getattr(record, name)
            if value is not None and not _decimal_ok(value, rule):
                return None
        event_time: dt.datetime = getattr(record, self._time_field)
        return event_time

    def check_json(self, line: bytes) -> Verdict:
        """Judge one JSON document (a JSON-lines line or an array item re-encoded)."""
        if self._json_decoder is not None:
            try:
                fast = self._json_decoder.decode(line)
            except (msgspec.DecodeError, UnicodeDecodeError):
                pass
            else:
                event_time = self._fast_ok(fast)
                if event_time is not None:
                    return Verdict(event_time)
        try:
            model = self._contract.model_validate_json(line)
        except ValidationError as exc:
            return Verdict(None, _utf8_error(line) or tuple(_errors(exc)))
        except UnicodeDecodeError:
            return Verdict(None, _utf8_error(line))
        return Verdict(getattr(model, self._time_field))

    def check_text_row(self, row: dict[str, Any]) -> Verdict:
        """Judge one row whose values are all text (CSV): values are converted as their contract types say."""
        if self._struct is not None:
            try:
                fast = msgspec.convert(row, self._struct, strict=False)
            except msgspec.ValidationError:
                pass
            else:
                event_time = self._fast_ok(fast)
                if event_time is not None:
                    return Verdict(event_time)
        try:
            model = self._contract.model_validate(row, strict=False)
        except ValidationError as exc:
            return Verdict(None, tuple(_errors(exc)))
        return Verdict(getattr(model, self._time_field))

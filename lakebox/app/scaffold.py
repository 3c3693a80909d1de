"""`lakebox dataset new`: a contract module inferred from a sample file, with every guess marked for review.

CSV columns are typed by pyarrow's CSV reader (ints, floats, booleans, dates, timestamps, nulls) over the rows as
ingestion reads them; JSON values carry their own types (pyarrow's JSON reader fails on a field that changes type
and reads zoned or fractional timestamps as text, so it adds nothing there). The project's rules come on top:
numbers in plain notation with few decimals are `Decimal` with their scale, digits with leading zeros stay text,
identifier-like text is `Identifier`, timestamps are `EventTime` (or `NaiveAsUtc` when the sample names no zone),
low-cardinality text is a `Literal`, text gets a length bound. The module is then imported through the registry's
own discovery and every sample record judged by the ingestion's validator: a field that rejects a sample value is
loosened until the whole sample is accepted.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import importlib
import io
import itertools
import json
import keyword
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO, cast, get_args

from pydantic import BaseModel, TypeAdapter

from datalake.contracts import REGISTRY, Dataset, Format, discover
from datalake.contracts.base import Identifier
from lakebox.errors import LakeboxError

DATASET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
"""A dataset name: the landing prefix, the raw folder, the catalog table and the module's name."""
CONTRACTS_FOLDER = Path("layers/common/datalake/contracts")
DEFAULT_ROWS = 10_000
ENUM_MAX_VALUES = 12
"""Text with at most this many distinct values (each seen at least twice on average) becomes a `Literal`."""
ENUM_MAX_LENGTH = 40
DECIMAL_MAX_SCALE = 4
"""Numbers in plain notation with at most this many decimals are fixed-point (`Decimal`); more or an exponent: float."""
DECIMAL_MIN_DIGITS = 18
LENGTH_BOUNDS = (16, 32, 64, 128, 256, 512, 1024, 4096, 65_536, 1_048_576)
"""A text field's `max_length`: the first of these at least twice the longest sample value."""
DELIMITERS = ",;\t|"
MAX_LOOSENING_ROUNDS = 8

IDENTIFIER_PATTERN = re.compile(next(m.pattern for m in get_args(Identifier)[1:] if getattr(m, "pattern", None)))
_ONE_ID = IDENTIFIER_PATTERN.pattern.removeprefix("^").removesuffix("$")
_IDENTIFIER_LINES = re.compile(f"(?:{_ONE_ID})(?:\\n(?:{_ONE_ID}))*")
"""Identifiers, one a line: every value of a column checked by one match."""
IDENTIFIER_MAX_LENGTH = next(m.max_length for m in get_args(Identifier)[1:] if getattr(m, "max_length", None))
_DATETIME_TEXT = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)?$"
)
_DATE_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ZONE_LINES = re.compile(r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$", re.MULTILINE)
_LEADING_ZERO_LINE = re.compile(r"^[+-]?0\d", re.MULTILINE)
_NOT_PLAIN_LINE = re.compile(r"^(?![+-]?\d*(?:\.\d*)?$)", re.MULTILINE)
_FRACTIONS = re.compile(r"\.(\d*)")
_WHOLES = re.compile(r"^[+-]?0*(\d*)", re.MULTILINE)
_ID_NAME = re.compile(r"(^|_)(id|key|uuid|guid|code|number|no|ref)$|[a-z](Id|ID|Key|Uuid|Code)$")
_TIME_NAMES = ("event_time", "event_ts", "occurred_at", "timestamp", "ts", "created_at", "time", "datetime")
_RESERVED = frozenset(dir(BaseModel)) | {"model_config", "model_fields"}
_IMPORTED = frozenset(
    {"Annotated", "Contract", "DATASET", "Dataset", "Decimal", "EventTime", "Field", "Format", "Identifier", "Literal"}
    | {"NaiveAsUtc", "StringConstraints"}
)
"""Names the module imports or defines: a field of that name would shadow them in its class."""
_PARSE_DATETIME = TypeAdapter(dt.datetime).validate_python
_ARROW_KINDS = {"int64": "int", "double": "number", "bool": "bool", "date32[day]": "date", "null": "null"}


# ---------------------------------------------------------------------- reading the sample
@dataclass
class Sample:
    """A sample's records as ingestion reads them (CSV: text or None; JSON: decoded values, numbers exact)."""

    path: Path
    format: Format
    records: list[dict[str, Any]]
    columns: list[str]
    delimiter: str | None = None
    truncated: bool = False
    arrow_kinds: dict[str, str] = field(default_factory=dict)

    @property
    def is_csv(self) -> bool:
        """True for a CSV sample."""
        return self.format is Format.CSV


HEAD_BYTES = 1 << 20
"""What is read first: enough to tell the format and sniff the separator; the rest is streamed up to `--rows`."""


def _open(path: Path) -> BinaryIO:
    """The sample's bytes as a stream (a gzip decompressed as it is read), so a big sample is never loaded whole."""
    try:
        raw = path.open("rb")
    except FileNotFoundError:
        raise LakeboxError(f"no sample file {path}") from None
    except IsADirectoryError:
        raise LakeboxError(f"{path} is a folder, not a sample file") from None
    if raw.peek(2)[:2] == b"\x1f\x8b":
        raw.close()
        return cast(BinaryIO, gzip.open(path, "rb"))
    return raw


def read_sample(path: Path, rows: int = DEFAULT_ROWS, delimiter: str | None = None) -> Sample:
    """Read up to `rows` records of a CSV or JSON (lines, array, documents) sample, gzip or plain.

    Raises
    ------
    LakeboxError
        When the file is missing, empty, not UTF-8, or not CSV or JSON objects.
    """
    with _open(path) as stream:
        try:
            head = stream.read(HEAD_BYTES)
        except (OSError, EOFError) as exc:
            raise LakeboxError(f"{path}: not a readable gzip file ({exc})") from None
        if not head.strip():
            raise LakeboxError(f"{path} is empty: a sample needs records")
        whole = io.BufferedReader(_Rejoined(head, stream))
        name = path.name.lower().removesuffix(".gz").removesuffix(".gzip")
        start = head.removeprefix(b"\xef\xbb\xbf").lstrip()[:1]
        if not name.endswith((".csv", ".tsv", ".txt", ".psv")) and start in (b"{", b"["):
            return _read_json(path, head, whole, rows)
        return _read_csv(path, head, whole, rows, delimiter)


class _Rejoined(io.RawIOBase):
    """The head already read, then the rest of the stream."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        try:
            data = self._head or self._rest.read(len(target))
        except (OSError, EOFError) as exc:
            raise LakeboxError(f"not a readable gzip file ({exc})") from None
        taken, self._head = data[: len(target)], data[len(target) :]
        target[: len(taken)] = taken
        return len(taken)


def _sniff_delimiter(text: str) -> str:
    head = "\n".join(text[:65_536].splitlines()[:50])
    try:
        return csv.Sniffer().sniff(head, delimiters=DELIMITERS).delimiter
    except csv.Error:
        counts = {d: head.splitlines()[0].count(d) for d in DELIMITERS} if head else {}
        best = max(counts, key=lambda d: counts[d], default=",")
        return best if counts.get(best) else ","


def _read_csv(path: Path, head: bytes, stream: BinaryIO, rows: int, delimiter: str | None) -> Sample:
    delimiter = delimiter or _sniff_delimiter(head.decode("utf-8-sig", errors="ignore"))
    csv.field_size_limit(sys.maxsize)
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    reader = csv.DictReader(text, delimiter=delimiter, restkey="_unexpected_columns")
    try:
        header = list(reader.fieldnames or [])
    except UnicodeDecodeError as exc:
        raise LakeboxError(f"{path} is not UTF-8 text ({exc}); ingestion reads UTF-8 only") from None
    if not header:
        raise LakeboxError(f"{path} has no header row")
    blank = [i + 1 for i, c in enumerate(header) if not c.strip()]
    if blank:
        raise LakeboxError(f"{path}: header column(s) {blank} have no name")
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise LakeboxError(f"{path}: the header names {duplicated} more than once")
    records: list[dict[str, Any]] = []
    truncated = False
    try:
        for row in reader:
            if len(records) == rows:
                truncated = True
                break
            if "_unexpected_columns" in row:
                raise LakeboxError(
                    f"{path} line {reader.line_num}: more columns than the header's {len(header)} "
                    f"(separator {delimiter!r}; --delimiter sets another)"
                )
            records.append({k: (v if v != "" else None) for k, v in row.items()})
    except csv.Error as exc:
        raise LakeboxError(f"{path} line {reader.line_num}: malformed CSV ({exc})") from None
    except UnicodeDecodeError as exc:
        raise LakeboxError(f"{path} is not UTF-8 text ({exc}); ingestion reads UTF-8 only") from None
    if not records:
        raise LakeboxError(f"{path} has a header and no rows: a sample needs records")
    return Sample(path, Format.CSV, records, header, delimiter, truncated, _arrow_kinds(header, records))


def _arrow_kinds(header: list[str], records: list[dict[str, Any]]) -> dict[str, str]:
    """What pyarrow's CSV reader infers for each column of the rows as read (empty text is null, as in ingestion)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([r.get(c) for c in header] for r in records)
    table = pacsv.read_csv(
        io.BytesIO(buffer.getvalue().encode()),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(null_values=[""], strings_can_be_null=True),
    )
    kinds = {}
    for name, column_type in zip(header, table.schema.types, strict=True):
        if pa.types.is_timestamp(column_type):
            kinds[name] = "datetime"
        else:
            kinds[name] = _ARROW_KINDS.get(str(column_type), "str")
    return kinds


def _read_json(path: Path, head: bytes, stream: BinaryIO, rows: int) -> Sample:
    import ijson

    from datalake.readers import detect_format, json_shape

    fmt = detect_format(path.name, head[:64])
    if fmt is Format.JSON_LINES:
        fmt, _ = json_shape(iter([head]), len(head) + 1)
    prefix = "item" if fmt is Format.JSON_ARRAY else ""
    records: list[dict[str, Any]] = []
    truncated = False
    if head.startswith(b"\xef\xbb\xbf"):
        stream.read(3)
    try:
        items = ijson.items(stream, prefix, multiple_values=True)
        for index, item in enumerate(items, start=1):
            if len(records) == rows:
                truncated = True
                break
            if not isinstance(item, dict):
                raise LakeboxError(f"{path}: record {index} is a JSON {type(item).__name__}, not an object")
            records.append(item)
    except ijson.JSONError as exc:
        raise LakeboxError(f"{path}: malformed JSON after record {len(records)} ({exc})") from None
    except UnicodeDecodeError as exc:
        raise LakeboxError(f"{path} is not UTF-8 text ({exc})") from None
    if not records:
        raise LakeboxError(f"{path} holds no JSON object: a sample needs records")
    columns = list(dict.fromkeys(k for r in records for k in r))
    return Sample(path, fmt or Format.JSON_LINES, records, columns, truncated=truncated)


# ---------------------------------------------------------------------- what the values say
@dataclass
class Profile:
    """What the sample's values of one field say: their kinds, nulls, and what the contract's rules need."""

    name: str
    kinds: set[str] = field(default_factory=set)
    seen: int = 0
    nulls: int = 0
    missing: int = 0
    max_length: int = 0
    empty: bool = False
    identifier: bool = True
    leading_zero: bool = False
    datetime_text: bool = True
    date_text: bool = True
    aware: int = 0
    naive: int = 0
    scale: int = 0
    whole: int = 0
    float_only: bool = False
    values: dict[Any, int] = field(default_factory=dict)
    unique: set[Any] | None = field(default_factory=set)
    children: dict[str, Profile] = field(default_factory=dict)
    objects: int = 0
    item: Profile | None = None

    def observe(self, value: Any) -> None:
        """Take one JSON value (dict, list, str, int, Decimal, bool, None)."""
        if value is None:
            self.nulls += 1
            return
        self.seen += 1
        if self.unique is not None:
            if not isinstance(value, str | int) or isinstance(value, bool) or value in self.unique:
                self.unique = None
            else:
                self.unique.add(value)
        if isinstance(value, bool):
            self.kinds.add("bool")
        elif isinstance(value, int):
            self.kinds.add("int")
            self.whole = max(self.whole, len(str(abs(value))))
        elif isinstance(value, Decimal):
            self.kinds.add("number")
            _, digits, exponent = value.as_tuple()
            if not isinstance(exponent, int) or exponent > 0:
                self.float_only = True
            else:
                self.scale = max(self.scale, -exponent)
                self.whole = max(self.whole, len(digits) + exponent)
        elif isinstance(value, str):
            self.kinds.add("str")
            self._string(value)
        elif isinstance(value, dict):
            self.kinds.add("object")
            self.objects += 1
            for key in value:
                if key not in self.children:  # the objects before this one had no such key
                    self.children[key] = Profile(key, unique=None, missing=self.objects - 1)
            for key, child in self.children.items():
                if key in value:
                    child.observe(value[key])
                else:
                    child.missing += 1
        elif isinstance(value, list):
            self.kinds.add("list")
            self.item = self.item or Profile("item", unique=None)
            for element in value:
                self.item.observe(element)

    def _string(self, text: str) -> None:
        self.max_length = max(self.max_length, len(text))
        self.empty = self.empty or text == ""
        if self.identifier and (len(text) > IDENTIFIER_MAX_LENGTH or not IDENTIFIER_PATTERN.match(text)):
            self.identifier = False
        if len(self.values) <= ENUM_MAX_VALUES:
            self.values[text] = self.values.get(text, 0) + 1
        if self.date_text and not _date_ok(text):
            self.date_text = False
        if self.datetime_text:
            instant = _datetime_of(text)
            if instant is None:
                self.datetime_text = False
            elif instant.tzinfo is None:
                self.naive += 1
            else:
                self.aware += 1

    @property
    def nullable(self) -> bool:
        """True when some record has null or nothing here."""
        return bool(self.nulls or self.missing) or self.seen == 0


def _date_ok(text: str) -> bool:
    if not _DATE_TEXT.match(text):
        return False
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _datetime_of(text: str) -> dt.datetime | None:
    if not _DATETIME_TEXT.match(text):
        return None
    try:
        value: dt.datetime = _PARSE_DATETIME(text, strict=False)
    except ValueError:
        return None
    return value


def profile(sample: Sample) -> dict[str, Profile]:
    """Every top-level field of the sample, profiled over all its records."""
    if sample.is_csv:
        return {
            name: profile_column(name, sample.arrow_kinds.get(name, "str"), [r.get(name) for r in sample.records])
            for name in sample.columns
        }
    fields = {name: Profile(name) for name in sample.columns}
    for record in sample.records:
        for name, prof in fields.items():
            if name not in record:
                prof.missing += 1
            else:
                prof.observe(record[name])
    return fields


def profile_column(name: str, kind: str, texts: list[str | None]) -> Profile:
    """A CSV column at once: what the rules of the kind pyarrow gave it need, over all its texts (None for empty)."""
    prof = Profile(name, date_text=False, datetime_text=False)
    values = [t for t in texts if t is not None]
    prof.nulls, prof.seen = len(texts) - len(values), len(values)
    if not values:
        return prof
    prof.kinds.add(kind)
    distinct = set(values)
    prof.unique = distinct if len(distinct) == len(values) else None
    joined = "\n".join(values)
    prof.values = dict(Counter(values).most_common(ENUM_MAX_VALUES + 1))  # text too, should digits stay text
    prof.max_length = max(map(len, values))
    prof.identifier = prof.max_length <= IDENTIFIER_MAX_LENGTH and _IDENTIFIER_LINES.fullmatch(joined) is not None
    if kind in ("int", "number"):
        prof.leading_zero = _LEADING_ZERO_LINE.search(joined) is not None
        prof.float_only = _NOT_PLAIN_LINE.search(joined) is not None
        prof.scale = max(map(len, _FRACTIONS.findall(joined)), default=0)
        prof.whole = max(map(len, _WHOLES.findall(joined)), default=0)
    elif kind == "datetime":
        prof.aware = len(_ZONE_LINES.findall(joined))
        prof.naive = prof.seen - prof.aware
    elif kind == "str":
        prof.date_text = all(map(_date_ok, values))
        if not prof.date_text:
            instants = []
            for value in values:
                instant = _datetime_of(value)
                if instant is None:
                    break
                instants.append(instant)
            else:
                prof.datetime_text = True
                prof.aware = sum(1 for i in instants if i.tzinfo is not None)
                prof.naive = prof.seen - prof.aware
    return prof


# ---------------------------------------------------------------------- from profiles to field types
@dataclass
class FieldSpec:
    """One field of the module to write: its type's source text, nullability and the comments it carries."""

    name: str
    kind: str
    profile: Profile
    nullable: bool
    notes: list[str] = field(default_factory=list)
    enum: list[str] | None = None
    identifier: bool = False
    scale: int = 0
    digits: int = 0
    bound: int | None = None
    min_length: int = 0
    model: ModelSpec | None = None
    item: FieldSpec | None = None
    key: bool = False
    event_time: bool = False

    def annotation(self, date_type: str = "dt.date") -> str:
        """The type as source text (`date_type`: how the module names `datetime.date`)."""
        return f"{self._base(date_type)} | None" if self.nullable else self._base(date_type)

    def _base(self, date_type: str) -> str:
        if self.kind == "list":
            assert self.item is not None
            return f"list[{self.item.annotation(date_type)}]"
        if self.kind == "object":
            assert self.model is not None
            return self.model.class_name
        if self.kind == "decimal":
            return f"Annotated[Decimal, Field(max_digits={self.digits}, decimal_places={self.scale})]"
        if self.kind == "str":
            if self.enum is not None:
                return "Literal[" + ", ".join(_quoted(v) for v in self.enum) + "]"
            if self.identifier:
                return "Identifier"
            bounds = [f"min_length={self.min_length}"] if self.min_length else []
            bounds += [f"max_length={self.bound}"] if self.bound else []
            return f"Annotated[str, StringConstraints({', '.join(bounds)})]" if bounds else "str"
        return {
            "int": "int",
            "float": "float",
            "bool": "bool",
            "date": date_type,
            "datetime": "EventTime",
            "naive": "NaiveAsUtc",
        }[self.kind]

    def loosen(self) -> bool:
        """Accept more than now (after the sample's own validation rejected a value here); False if it cannot."""
        if self.kind == "str" and self.enum is not None:
            self.enum = None
        elif self.kind == "str" and self.identifier:
            self.identifier = False
            self.bound = _length_bound(self.profile.max_length)
        elif self.kind == "str" and (self.bound or self.min_length):
            self.bound, self.min_length = None, 0
        elif self.kind == "decimal":
            self.kind = "float"
        elif self.kind in ("int", "float", "bool", "date", "datetime", "naive") and not self.event_time:
            self.kind = "str"
        elif self.kind == "datetime":
            self.kind = "naive"
        else:
            return False
        self.notes.append("loosened: the first guess rejected a sample value")
        return True


@dataclass
class ModelSpec:
    """A contract class to write: the top-level record or a nested object."""

    class_name: str
    doc: str
    fields: list[FieldSpec]


def _quoted(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a Python string literal


def _length_bound(longest: int) -> int:
    return next((b for b in LENGTH_BOUNDS if b >= 2 * longest), LENGTH_BOUNDS[-1])


def _id_like(name: str) -> bool:
    return bool(_ID_NAME.search(name))


class _Names:
    """Class names of the module, unique and clear of the names it imports."""

    def __init__(self, fields: set[str]) -> None:
        self.used = set(_IMPORTED) | fields

    def take(self, name: str) -> str:
        words = [w for w in re.split(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])", name) if w]
        base = "".join(w[:1].upper() + w[1:] for w in words) or "Record"
        if base[0].isdigit():
            base = "N" + base
        candidate = base
        for n in itertools.count(2):
            if candidate not in self.used:
                break
            candidate = f"{base}{n}"
        self.used.add(candidate)
        return candidate


def singular(name: str) -> str:
    """`orders` → `order`, `categories` → `category`; a name that does not look plural is kept."""
    if name.endswith("ies") and len(name) > 4:
        return name[:-3] + "y"
    if name.endswith("sses") or name.endswith(("xes", "ches", "shes")):
        return name[:-2]
    if name.endswith("s") and not name.endswith(("ss", "us", "is")) and len(name) > 3:
        return name[:-1]
    return name


def _check_names(names: list[str], where: str) -> None:
    bad = [
        n
        for n in names
        if not n.isidentifier() or keyword.iskeyword(n) or n.startswith("_") or n in _RESERVED or n in _IMPORTED
    ]
    if bad:
        raise LakeboxError(
            f"{where}: field names {bad} cannot be contract fields (a Python identifier that does not start with _ "
            "and is no pydantic attribute nor a name the module imports); rename them in the sample and at the source"
        )
    folded: dict[str, str] = {}
    for n in names:
        if n.lower() in folded:
            raise LakeboxError(
                f"{where}: fields {folded[n.lower()]!r} and {n!r} differ only in case (the catalog "
                "lower-cases column names)"
            )
        folded[n.lower()] = n


def field_spec(prof: Profile, names: _Names, parent: str, *, csv_text: bool, path: str | None = None) -> FieldSpec:
    """The type a field's profile suggests, under the contract rules (`path`: where it is, for messages)."""
    path = path or f"{parent}{prof.name}"
    kinds = prof.kinds - {"null"}
    spec = FieldSpec(prof.name, "str", prof, prof.nullable)
    if not kinds:
        spec.notes.append("always empty in the sample: its type is a guess (text)")
        return spec
    if kinds in ({"int", "number"}, {"number"}):
        kinds = {"number"}
    if len(kinds) > 1:
        raise LakeboxError(
            f"field {path} holds {' and '.join(sorted(kinds))} values in the sample: a contract gives a "
            "field one type (make the producer consistent, or fix the sample)"
        )
    kind = kinds.pop()
    if kind in ("int", "number") and prof.leading_zero:
        spec.notes.append("digits with leading zeros: kept as text")
        kind = "str"
    if kind == "int":
        spec.kind = "int"
    elif kind == "number":
        if prof.float_only or prof.scale > DECIMAL_MAX_SCALE:
            spec.kind = "float"
        else:
            spec.kind, spec.scale = "decimal", prof.scale
            spec.digits = min(38, max(DECIMAL_MIN_DIGITS, prof.whole + prof.scale))
            spec.notes.append(
                f"fixed-point: at most {prof.scale} decimal(s) in the sample (review: float if it is a measurement)"
            )
    elif kind == "bool":
        spec.kind = "bool"
    elif kind == "date" or (kind == "str" and prof.date_text):
        spec.kind = "date"
    elif kind == "datetime" or (kind == "str" and prof.datetime_text):
        if prof.naive:
            spec.kind = "naive"
            spec.notes.append(
                f"{prof.naive} of {prof.seen} sample timestamps name no zone: read as UTC (review: if the "
                "producer writes local time, have it write the offset and use EventTime)"
            )
        else:
            spec.kind = "datetime"
    elif kind == "object":
        spec.kind = "object"
        spec.model = model_spec(prof.children, names.take(prof.name), names, path, csv_text=csv_text, nested=True)
    elif kind == "list":
        spec.kind = "list"
        assert prof.item is not None
        prof.item.name = singular(prof.name)
        spec.item = field_spec(prof.item, names, parent, csv_text=csv_text, path=f"{path}[]")
        if not (prof.item.kinds - {"null"}):
            spec.notes.append("only empty lists in the sample: the item type is a guess (text)")
            spec.item.notes.clear()
    if spec.kind == "str":
        _text_rules(spec, prof, csv_text=csv_text)
    return spec


def _text_rules(spec: FieldSpec, prof: Profile, *, csv_text: bool) -> None:
    distinct = len(prof.values)
    if (
        not _id_like(prof.name)
        and 0 < distinct <= ENUM_MAX_VALUES
        and prof.seen >= 2 * distinct
        and prof.max_length <= ENUM_MAX_LENGTH
        and not prof.empty
    ):
        spec.enum = sorted(prof.values)
        spec.notes.append(f"an enum of the {distinct} value(s) in the sample (review: another value is quarantined)")
        return
    if _id_like(prof.name) and prof.identifier and prof.seen:
        spec.identifier = True
        return
    spec.min_length = 0 if prof.empty else 1
    spec.bound = _length_bound(prof.max_length)
    spec.notes.append(f"longest in the sample: {prof.max_length} characters")


def model_spec(
    profiles: dict[str, Profile], class_name: str, names: _Names, owner: str, *, csv_text: bool, nested: bool = False
) -> ModelSpec:
    """A contract class for a record (`owner` the dataset) or a nested object (`owner` its field path)."""
    _check_names(list(profiles), f"the fields of {owner}")
    prefix = f"{owner.removesuffix('[]')}." if nested else ""
    fields = [field_spec(p, names, prefix, csv_text=csv_text) for p in profiles.values()]
    doc = f"One `{owner}` record, as in the sample."
    if nested:
        doc = f"An item of `{owner[:-2]}`, as in the sample." if owner.endswith("[]") else f"The `{owner}` object."
    return ModelSpec(class_name, doc, fields)


# ---------------------------------------------------------------------- the guesses
@dataclass
class Guess:
    """The key and event time chosen, each with why."""

    key: tuple[str, ...]
    key_reason: str
    event_time: str
    event_time_reason: str


def guess_key(
    fields: dict[str, FieldSpec], records: list[dict[str, Any]], given: tuple[str, ...] | None
) -> tuple[tuple[str, ...], str]:
    """A unique, non-null, identifier-like column (or pair of columns), or the one given."""
    if given:
        missing = [f for f in given if f not in fields]
        if missing:
            raise LakeboxError(f"--key names {missing}, which the sample does not have (fields: {sorted(fields)})")
        nullable = [f for f in given if fields[f].nullable]
        if nullable:
            raise LakeboxError(
                f"--key {','.join(given)}: {nullable} have nulls or gaps in the sample; a key is never null"
            )
        return given, "given with --key"
    count = len(records)
    eligible = [
        s
        for s in fields.values()
        if not s.nullable and (s.kind == "int" or (s.kind == "str" and s.enum is None and s.profile.identifier))
    ]
    named = [s for s in eligible if _id_like(s.name)]
    # an id-like name first (`order_id`, `sku_code`, `line_no`), then any identifier text; never a mere number
    for spec in [*named, *(s for s in eligible if s.kind == "str" and s not in named)]:
        if spec.profile.unique is not None and len(spec.profile.unique) == count:
            return (spec.name,), f"unique and non-null in all {count:,} sample records"
    for first, second in itertools.combinations(named[:12], 2):
        if len({(r.get(first.name), r.get(second.name)) for r in records}) == count:
            return (first.name, second.name), f"unique together and non-null in all {count:,} sample records"
    raise LakeboxError(
        "no column (or pair of identifier-like columns) is unique and non-null in the sample, so no key can be "
        "guessed; name it with --key FIELD[,FIELD]"
    )


def guess_event_time(fields: dict[str, FieldSpec], given: str | None) -> tuple[str, str]:
    """A non-null timestamp column, preferring event-like names, or the one given."""
    timestamps = [s for s in fields.values() if s.kind in ("datetime", "naive")]
    if given:
        if given not in fields:
            raise LakeboxError(f"--event-time {given}: the sample has no such field (fields: {sorted(fields)})")
        if fields[given].kind not in ("datetime", "naive"):
            raise LakeboxError(f"--event-time {given}: its sample values are not all timestamps")
        if fields[given].nullable:
            raise LakeboxError(f"--event-time {given}: it has nulls or gaps in the sample; every record needs one")
        return given, "given with --event-time"
    required = [s for s in timestamps if not s.nullable]
    if not required:
        found = f" ({', '.join(s.name for s in timestamps)} have nulls or gaps)" if timestamps else ""
        raise LakeboxError(
            "no timestamp field is set in every sample record" + found + ": a dataset is partitioned by its event "
            "time; add one to the sample, or name one with --event-time"
        )

    def rank(spec: FieldSpec) -> tuple[int, int]:
        name = spec.name.lower()
        if name in _TIME_NAMES:
            return (0, _TIME_NAMES.index(name))
        if name.endswith(("_at", "_time", "_ts", "_timestamp")):
            return (1, 0)
        return (2, 0)

    best = min(required, key=rank)
    others = [s.name for s in required if s is not best]
    why = "a timestamp in every sample record" + (f"; other candidates: {', '.join(others)}" if others else "")
    return best.name, why


# ---------------------------------------------------------------------- the module
@dataclass
class Scaffold:
    """A contract module inferred from a sample, and what was guessed on the way."""

    name: str
    sample: Sample
    model: ModelSpec
    guess: Guess
    notes: list[str]
    source: str = ""
    loosened: list[str] = field(default_factory=list)

    @property
    def fields(self) -> dict[str, FieldSpec]:
        """The top-level fields by name."""
        return {f.name: f for f in self.model.fields}


def infer(
    name: str,
    sample: Sample,
    *,
    key: tuple[str, ...] | None = None,
    event_time: str | None = None,
) -> Scaffold:
    """The contract a sample suggests, with its key and event-time guesses."""
    profiles = profile(sample)
    names = _Names(set(_field_names(profiles)))
    model = model_spec(profiles, names.take(singular(name)), names, name, csv_text=sample.is_csv)
    fields = {f.name: f for f in model.fields}
    key_fields, key_reason = guess_key(fields, sample.records, key)
    time_field, time_reason = guess_event_time(fields, event_time)
    for field_name in key_fields:
        spec = fields[field_name]
        spec.key = True
        if spec.kind == "str":
            spec.enum = None
            spec.identifier = spec.profile.identifier
            if not spec.identifier:
                spec.notes.append("not all values are identifiers (letters, digits, _ and -, at most 64)")
    fields[time_field].event_time = True
    notes = []
    if sample.truncated:
        notes.append(f"inferred from the first {len(sample.records):,} records (--rows reads more)")
    naive = [s.name for s in _walk(model.fields) if s.kind == "naive"]
    if naive:
        notes.append(
            f"timestamps with no zone in {', '.join(naive)}: typed NaiveAsUtc, read as UTC (a zone they name is "
            "kept); if the producer writes local time, have it write the offset and use EventTime"
        )
    return Scaffold(name, sample, model, Guess(key_fields, key_reason, time_field, time_reason), notes)


def _field_names(profiles: dict[str, Profile]) -> Iterator[str]:
    for name, prof in profiles.items():
        yield name
        inner: Profile | None = prof
        while inner is not None:
            yield from _field_names(inner.children)
            inner = inner.item


def _comment(text: str, indent: str) -> list[str]:
    return [f"{indent}# {line}" for line in textwrap.wrap(text, width=116 - len(indent))]


def _models_in_order(model: ModelSpec) -> Iterator[ModelSpec]:
    for spec in model.fields:
        inner = spec
        while inner.kind == "list" and inner.item is not None:
            inner = inner.item
        if inner.model is not None:
            yield from _models_in_order(inner.model)
    yield model


def _walk(specs: list[FieldSpec]) -> Iterator[FieldSpec]:
    for spec in specs:
        yield spec
        if spec.item is not None:
            yield from _walk([spec.item])
        if spec.model is not None:
            yield from _walk(spec.model.fields)


def render(scaffold: Scaffold) -> str:
    """The module's source text (run through `ruff format` by `write` when ruff is at hand)."""
    sample = scaffold.sample
    all_specs = list(_walk(scaffold.model.fields))
    used = {spec.name for spec in all_specs}
    alias = next(a for a in ("dt", "datetime", "datetime_") if a not in used)
    date_type = f"{alias}.date"
    source = "\n".join(spec.annotation(date_type) for spec in all_specs)
    base_names = ["Contract", "Dataset", "Format"]
    base_names += [n for n in ("EventTime", "Identifier", "NaiveAsUtc") if re.search(rf"\b{n}\b", source)]
    typing_names = [n for n in ("Annotated", "Literal") if f"{n}[" in source]
    pydantic_names = [n for n in ("Field", "StringConstraints") if f"{n}(" in source]
    lines = [
        _docstring(scaffold.name),
        "",
        *_comment(f"Sample: {sample.path.name} ({describe(sample)}), {len(sample.records):,} records.", ""),
        "",
        "from __future__ import annotations",
        "",
    ]
    stdlib = []
    if date_type in source:
        stdlib.append("import datetime" if alias == "datetime" else f"import datetime as {alias}")
    if "Decimal" in source:
        stdlib.append("from decimal import Decimal")
    if typing_names:
        stdlib.append(f"from typing import {', '.join(typing_names)}")
    if stdlib:
        lines += [*stdlib, ""]
    if pydantic_names:
        lines += [f"from pydantic import {', '.join(pydantic_names)}", ""]
    lines += [f"from datalake.contracts.base import {', '.join(sorted(set(base_names)))}", ""]
    for model in _models_in_order(scaffold.model):
        lines += ["", f"class {model.class_name}(Contract):", f'    """{model.doc}"""', ""]
        for spec in model.fields:
            notes = list(spec.notes)
            if spec.key:
                notes.insert(0, f"key (guessed: {scaffold.guess.key_reason}; review)")
            if spec.event_time:
                notes.insert(0, f"event time (guessed: {scaffold.guess.event_time_reason}; review)")
            for note in notes:
                lines += _comment(note, "    ")
            default = " = None" if spec.nullable else ""
            lines.append(f"    {spec.name}: {spec.annotation(date_type)}{default}")
    formats = ["Format.CSV"] if sample.is_csv else ["Format.JSON_LINES", "Format.JSON_ARRAY", "Format.JSON_DOCUMENT"]
    key_text = ", ".join(_quoted(k) for k in scaffold.guess.key) + ("," if len(scaffold.guess.key) == 1 else "")
    lines += [
        "",
        "",
        "DATASET = Dataset(",
        f"    name={_quoted(scaffold.name)},",
        f"    contract={scaffold.model.class_name},",
        *_comment("key and event time are guesses: review them (see the fields' comments)", "    "),
        f"    key=({key_text}),",
        f"    event_time={_quoted(scaffold.guess.event_time)},",
        *_comment("the sample's format; add the others its producers send", "    "),
        f"    formats=frozenset({{{', '.join(formats)}}}),",
    ]
    if sample.is_csv and sample.delimiter != ",":
        lines.append(f"    csv_delimiter={_quoted(sample.delimiter or ',')},")
    lines += ['    version="1.0.0",', ")", ""]
    return "\n".join(lines)


def _docstring(name: str) -> str:
    text = f'"""Contract for `{name}`: inferred from a sample by `lakebox dataset new`; review the guesses."""'
    return text if len(text) <= 120 else f'"""Contract for `{name}`: inferred from a sample."""'


def describe(sample: Sample) -> str:
    if sample.is_csv:
        separator = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}.get(sample.delimiter or ",")
        return f"CSV, {separator or repr(sample.delimiter)}-separated"
    return {
        Format.JSON_LINES: "JSON lines",
        Format.JSON_ARRAY: "a JSON array",
        Format.JSON_DOCUMENT: "JSON documents",
    }.get(sample.format, "JSON")


def ruff_format(source: str) -> str:
    """The source as `ruff format` writes it (line length 120, as the project's), or as it is without ruff."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        return source
    done = subprocess.run(
        [ruff, "format", "--line-length", "120", "--stdin-filename", "contract.py", "-"],
        input=source,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout if done.returncode == 0 else source


# ---------------------------------------------------------------------- proving it accepts its own sample
def load_dataset(source: str, name: str) -> Dataset:
    """Import the module's source as a package module, through the registry's own discovery."""
    with tempfile.TemporaryDirectory(prefix="lakebox-dataset-") as folder:
        package = f"_lakebox_scaffold_{abs(hash((source, folder)))}"
        root = Path(folder) / package
        root.mkdir()
        (root / "__init__.py").write_text("")
        (root / f"{name}.py").write_text(source)
        sys.path.insert(0, folder)
        try:
            found = discover([str(root)], package)
        except (SyntaxError, TypeError, ValueError, NameError) as exc:
            raise LakeboxError(f"the inferred module does not import: {exc}") from exc
        finally:
            sys.path.remove(folder)
            for module in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
                del sys.modules[module]
            importlib.invalidate_caches()
    return found[name]


def rejections(dataset: Dataset, sample: Sample) -> dict[str, tuple[int, str, str]]:
    """Each field path that rejects a sample record: the first such record (1-based), the reason and its type."""
    import msgspec

    from datalake.validation import RecordValidator

    validator = RecordValidator(dataset)
    encode = msgspec.json.Encoder(decimal_format="number").encode
    failed: dict[str, tuple[int, str, str]] = {}
    for index, record in enumerate(sample.records, start=1):
        verdict = validator.check_text_row(record) if sample.is_csv else validator.check_json(encode(record))
        for error in verdict.errors:
            failed.setdefault(error.loc, (index, error.msg, error.type))
    return failed


def _spec_at(model: ModelSpec, loc: str) -> FieldSpec | None:
    """The field a validation error's location names (`items.0.sku`: the `sku` of the items' model)."""
    specs, found = model.fields, None
    for part in loc.split("."):
        if part.isdigit():
            continue
        found = next((s for s in specs if s.name == part), None)
        if found is None:
            return None
        while found.item is not None:
            found = found.item
        if found.model is not None:
            specs = found.model.fields
    return found


def build(scaffold: Scaffold) -> Dataset:
    """Render the module and judge the sample with it; loosen a field that rejects a value until all is accepted.

    Raises
    ------
    LakeboxError
        When a field cannot be loosened further and the sample is still rejected.
    """
    for _ in range(MAX_LOOSENING_ROUNDS):
        scaffold.source = ruff_format(render(scaffold))
        dataset = load_dataset(scaffold.source, scaffold.name)
        failed = rejections(dataset, scaffold.sample)
        if not failed:
            return dataset
        for loc, (index, message, kind) in failed.items():
            spec = _spec_at(scaffold.model, loc)
            if spec is not None and kind == "missing" and not spec.nullable and not (spec.key or spec.event_time):
                spec.nullable = True
            elif spec is None or not spec.loosen():
                raise LakeboxError(f"the inferred contract rejects sample record {index} at {loc}: {message}")
            scaffold.loosened.append(f"{loc} (record {index}: {message})")
    raise LakeboxError("the inferred contract still rejects sample records after loosening its fields")


def check_name(name: str, out: Path, force: bool) -> None:
    """Refuse a name already registered (unless `force` overwrites the module that declares it) or a file in the way.

    Raises
    ------
    LakeboxError
        When `name` is registered, or `out` exists without `force`.
    """
    existing = REGISTRY.get(name)
    if existing is not None:
        module = sys.modules[existing.contract.__module__].__file__ or ""
        if not (force and Path(module).resolve() == out.resolve()):
            raise LakeboxError(
                f"dataset {name!r} is already registered (declared in {module}); choose another name"
                + (f", or --force to overwrite {out}" if Path(module).resolve() == out.resolve() else "")
            )
    if out.suffix != ".py":
        raise LakeboxError(f"{out}: a contract module is a .py file")
    for other in REGISTRY.values():
        module = sys.modules[other.contract.__module__].__file__ or ""
        if other.name != name and Path(module).resolve() == out.resolve():
            raise LakeboxError(f"{out} declares dataset {other.name!r}; write {name!r} to a module of its own")
    if out.exists() and not force:
        raise LakeboxError(f"{out} exists; --force overwrites it")


def valid_name(text: str) -> str:
    """A dataset name, or ValueError saying why not."""
    if not DATASET_NAME.match(text) or keyword.iskeyword(text) or text == "base":
        raise ValueError(
            f"{text!r} is not a dataset name: lower-case letters, digits and _, starting with a letter, at most 63 "
            "(it names the landing prefix, the raw folder, the catalog table and the module)"
        )
    return text

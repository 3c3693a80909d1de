"""A finished query's result, and its values carried over the wire without loss.

Kept apart from the `athena` package (DuckDB, sqlglot) so that `lakebox query` against a running `lakebox up`
reads results without importing the engine. Athena's `GetQueryResults` gives every value as text (`VarCharValue`),
which loses what the CLI prints (a string inside an array, a map's key type, a timestamp's zone). The endpoint's
Athena therefore also answers `GetQueryResults` with `LakeboxTypedRows: true` in the request: the whole result at
once, each value in a tagged JSON form (`encode_value`) that `decode_value` turns back into the very Python value
the engine produced. Other clients never ask for it and never see it.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class QueryResult:
    """A finished query: its columns, Python rows, the bytes it scanned and its execution id."""

    columns: tuple[str, ...]
    types: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    bytes_scanned: int
    execution_id: str
    output_location: str | None = None

    def to_rows(self) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        """Return `(column names, rows)` as the CLI prints them."""
        return self.columns, self.rows

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON document: columns with their Athena types, rows as objects, decimals as exact
        strings (``"2.50"``, never the float 2.5), times as ISO-8601 text, an empty string kept apart from null."""
        return {
            "columns": list(self.columns),
            "types": list(self.types),
            "rows": [{c: json_value(v) for c, v in zip(self.columns, row, strict=True)} for row in self.rows],
            "bytes_scanned": self.bytes_scanned,
        }


def json_value(value: Any) -> Any:
    """A result value in `QueryResult.to_json`'s form."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):  # NaN and infinities have no JSON form
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


# ------------------------------------------------------------------ values on the wire
def encode_value(value: Any) -> Any:
    """A result value as JSON that `decode_value` turns back into an equal value of the same type.

    JSON's own null, booleans, integers and strings stand for themselves; every other value is a one-key object
    naming its type (a float is tagged too, so that NaN and the infinities travel and 1.0 stays a float).
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return {"f": repr(value)}
    if isinstance(value, Decimal):
        return {"d": str(value)}
    if isinstance(value, dt.datetime):
        zone = value.tzinfo
        name = None if zone is None else ("UTC" if zone is dt.UTC else getattr(zone, "key", None))
        return {"ts": value.isoformat(), "z": name}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, dt.time):
        return {"time": value.isoformat()}
    if isinstance(value, bytes):
        return {"b": value.hex()}
    if isinstance(value, list):
        return {"l": [encode_value(v) for v in value]}
    if isinstance(value, tuple):
        return {"t": [encode_value(v) for v in value]}
    if isinstance(value, dict):
        return {"m": [[encode_value(k), encode_value(v)] for k, v in value.items()]}
    return {"s": str(value)}


def decode_value(value: Any) -> Any:
    """The value `encode_value` carried."""
    if not isinstance(value, dict):
        return value
    if "ts" in value:
        moment = dt.datetime.fromisoformat(value["ts"])
        zone = value.get("z")
        if zone == "UTC":
            return moment.astimezone(dt.UTC)
        if zone:
            from zoneinfo import ZoneInfo

            return moment.astimezone(ZoneInfo(zone))
        return moment
    ((tag, body),) = value.items()
    if tag == "f":
        return float(body)
    if tag == "d":
        return Decimal(body)
    if tag == "date":
        return dt.date.fromisoformat(body)
    if tag == "time":
        return dt.time.fromisoformat(body)
    if tag == "b":
        return bytes.fromhex(body)
    if tag == "l":
        return [decode_value(v) for v in body]
    if tag == "t":
        return tuple(decode_value(v) for v in body)
    if tag == "m":
        return {decode_value(k): decode_value(v) for k, v in body}
    if tag == "s":
        return str(body)
    raise ValueError(f"unknown value tag {tag!r}")

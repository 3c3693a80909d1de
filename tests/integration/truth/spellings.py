"""Legal but unusual spellings of timestamps, decimals and booleans, and JSON lines that keep number text as written."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

UTC = dt.UTC

CSV_BOOLEANS = {True: ("true", "on", "yes", "y", "t", "1"), False: ("false", "off", "no", "n", "f", "0")}
"""What pydantic's lax mode reads as a boolean (case-insensitively): the spellings a CSV producer may use."""


@dataclass(frozen=True)
class Raw:
    """A JSON value written verbatim (a number token such as `12.50` or `1.25e1`)."""

    text: str


def json_line(fields: Iterable[tuple[str, object]]) -> bytes:
    """One JSON object on one line; `Raw` values are written as given, everything else with `json.dumps`."""
    parts = [
        f"{json.dumps(name)}:{value.text if isinstance(value, Raw) else json.dumps(value)}" for name, value in fields
    ]
    return ("{" + ",".join(parts) + "}").encode()


def timestamp(
    moment: dt.datetime,
    *,
    offset_minutes: int = 0,
    zone: str = "Z",
    separator: str = "T",
    digits: int = 0,
    extra: str = "",
) -> str:
    """Spell an aware instant as RFC 3339 / ISO 8601 text, as some producer would.

    Parameters
    ----------
    moment
        The instant (aware).
    offset_minutes
        The wall-clock offset the text is written in (-1439..1439); 0 with `zone` "Z" or "z" writes a zulu suffix.
    zone
        "Z" or "z" for zulu, "+" for a numeric `+HH:MM` even at offset 0, "-0" for `-00:00`, "" for no zone
        (a naive spelling, which the contracts reject).
    separator
        Between date and time: "T", "t", " " or "_".
    digits
        -1: minutes only (`HH:MM`, seconds dropped); 0: whole seconds; 1..6: that many fraction digits.
    extra
        Digits appended beyond the microseconds (a nanosecond-precision producer), with `digits` == 6.
    """
    local = moment.astimezone(dt.timezone(dt.timedelta(minutes=offset_minutes)))
    text = f"{local.year:04d}-{local.month:02d}-{local.day:02d}{separator}{local.hour:02d}:{local.minute:02d}"
    if digits >= 0:
        text += f":{local.second:02d}"
    if digits > 0:
        text += "." + f"{local.microsecond:06d}"[:digits] + extra
    if zone in ("Z", "z") and offset_minutes == 0:
        return text + zone
    if zone == "":
        return text
    if zone == "-0" and offset_minutes == 0:
        return text + "-00:00"
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


def epoch_seconds(moment: dt.datetime) -> str:
    """The instant as a string of whole Unix seconds (what some exporters write)."""
    return str(int(moment.timestamp() // 1))


def decimal_text(value: Decimal, *, places: int | None = None, style: str = "plain") -> str:
    """Spell a decimal: `plain` (`12.5`, or with `places` fixed digits `12.50`), `exponent` (`1.25E+1`)."""
    if style == "exponent":
        return f"{value:E}"
    if places is None:
        return format(value.normalize(), "f")
    return f"{value:.{places}f}"

"""How Athena's Hive JSON SerDe reads timestamp text, as DuckDB SQL: `timestamp.formats` patterns, else Hive's forms.

Athena (Trino's Hive formats) parses a `timestamp` column of a table read by `org.apache.hive.hcatalog.data.JsonSerDe`
with the Joda patterns of the SerDe's `timestamp.formats` (comma-separated, to the millisecond); text no pattern
takes whole is parsed as `yyyy-M-d[ H:m:s[.fffffffff]]` or as a zone-less ISO local date-time; anything else fails
the query (`HIVE_BAD_DATA`). A table declared without the formats its data needs therefore fails locally as it
would on Athena, instead of reading as if every spelling were understood.
"""

from __future__ import annotations

import re
from typing import Final

HIVE_JSON_SERDE: Final = "org.apache.hive.hcatalog.data.JsonSerDe"
_DEFAULT_FORMS: Final = (
    r"\d{1,10}-\d{1,2}-\d{1,2}(?: \d{1,2}:\d{1,2}:\d{1,2}(?:\.\d{1,9})?)?",
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?",
)
_JODA_TOKEN: Final = re.compile(r"'(?:[^']|'')*'|([A-Za-z])\1*|.")
_JODA_FIELDS: Final = {
    "y": r"\d{{{n},9}}",
    "M": r"\d{{1,2}}",
    "d": r"\d{{1,2}}",
    "H": r"\d{{1,2}}",
    "m": r"\d{{1,2}}",
    "s": r"\d{{1,2}}",
    "S": r"\d{{1,9}}",
}


def split_formats(value: str) -> list[str]:
    """The patterns of a `timestamp.formats` value: comma-separated, `\\,` for a comma and `\\\\` for a backslash."""
    patterns, current, escaped = [], [], False
    for char in value:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            if current:
                patterns.append("".join(current))
            current = []
        else:
            current.append(char)
    if current:
        patterns.append("".join(current))
    return patterns


def joda_regex(pattern: str) -> str:
    """A regex matching the text a Joda pattern parses (the fields this lake's formats use; others refused).

    Raises
    ------
    ValueError
        For a pattern letter this emulation does not know.
    """
    out = []
    for match in _JODA_TOKEN.finditer(pattern):
        token = match.group(0)
        if token.startswith("'"):
            out.append(re.escape(token[1:-1].replace("''", "'")) if len(token) > 2 else "'")
        elif token[0] in _JODA_FIELDS:
            out.append(_JODA_FIELDS[token[0]].format(n=min(len(token), 4) if token[0] == "y" else 1))
        elif token[0] == "Z":
            out.append(r"(?:Z|[+-]\d{2}:\d{2})" if len(token) >= 2 else r"(?:Z|[+-]\d{4})")
        elif token[0].isalpha():
            raise ValueError(f"Joda pattern letter {token[0]!r} in {pattern!r} is not emulated")
        else:
            out.append(re.escape(token))
    return "".join(out)


def timestamp_sql(column: str, formats: str | None, qualified: str) -> str:
    """DuckDB SQL reading the text `column` as the Hive JSON SerDe reads a `timestamp` (UTC), or failing the query.

    Parameters
    ----------
    column
        The quoted column holding the JSON value's text.
    formats
        The SerDe's `timestamp.formats`, if any.
    qualified
        The table's name, for the error.
    """
    checks = []
    for pattern in split_formats(formats or ""):
        regex = joda_regex(pattern).replace("'", "''")
        # Joda keeps milliseconds; an offset or `Z` names the instant, which Athena shows in UTC
        checks.append(
            f"WHEN regexp_full_match({column}, '{regex}') "
            f"THEN date_trunc('millisecond', CAST(CAST({column} AS TIMESTAMPTZ) AS TIMESTAMP))"
        )
    checks += [
        f"WHEN regexp_full_match({column}, '{form}') THEN CAST({column} AS TIMESTAMP)" for form in _DEFAULT_FORMS
    ]
    failure = (
        f"'HIVE_BAD_DATA: Error Parsing a column in the table {qualified}: "
        f"cannot read ''' || {column} || ''' as a timestamp'"
    )
    return f"(CASE WHEN {column} IS NULL THEN NULL {' '.join(checks)} ELSE error({failure}) END)"

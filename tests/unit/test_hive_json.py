"""The local Athena reads Hive JSON SerDe timestamps as Athena does: the table's `timestamp.formats`, else Hive's."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from datalake.schemas import TIMESTAMP_FORMATS
from lakebox.services.athena.hive_json import joda_regex, split_formats, timestamp_sql


def _read(text: str, formats: str | None) -> dt.datetime | None:
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    row = connection.execute(f"SELECT {timestamp_sql('v', formats, 'lake.t')} FROM (SELECT ? AS v)", [text]).fetchone()
    assert row is not None
    value: dt.datetime | None = row[0]
    return value


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        ("2026-11-20T10:00:00.123456Z", dt.datetime(2026, 11, 20, 10, 0, 0, 123000)),
        ("2026-11-20T10:00:00.5Z", dt.datetime(2026, 11, 20, 10, 0, 0, 500000)),
        ("2026-11-20T10:00:00Z", dt.datetime(2026, 11, 20, 10, 0)),
        ("2026-11-20T01:00:00+02:00", dt.datetime(2026, 11, 19, 23, 0)),
        ("2026-11-20T01:00:00.25-17:30", dt.datetime(2026, 11, 20, 18, 30, 0, 250000)),
    ],
)
def test_every_raw_timestamp_spelling_reads_as_its_instant_with_the_declared_formats(
    text: str, instant: dt.datetime
) -> None:
    assert _read(text, TIMESTAMP_FORMATS) == instant


def test_without_formats_a_zoned_timestamp_fails_the_query_as_on_athena() -> None:
    # Hive's own forms have no zone: the property is what makes raw's canonical timestamps readable
    assert _read("2026-11-20 10:00:00.5", None) == dt.datetime(2026, 11, 20, 10, 0, 0, 500000)
    assert _read("2026-11-20T10:00:00", None) == dt.datetime(2026, 11, 20, 10, 0)
    with pytest.raises(duckdb.Error, match=r"HIVE_BAD_DATA.*lake\.t.*2026-11-20T10:00:00Z"):
        _read("2026-11-20T10:00:00Z", None)


def test_null_reads_null() -> None:
    assert _read(None, TIMESTAMP_FORMATS) is None  # type: ignore[arg-type]


def test_formats_split_on_unescaped_commas_and_unknown_letters_are_refused() -> None:
    assert split_formats(r"yyyy-MM-dd,HH\,mm,,") == ["yyyy-MM-dd", "HH,mm"]
    with pytest.raises(ValueError, match="'E'"):
        joda_regex("EEE, dd MMM yyyy")

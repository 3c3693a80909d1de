"""The contract's verdict on records, reached the way ingestion reaches it, independently of the ingestion code.

A JSON-lines line is valid iff `Contract.model_validate_json(line)` accepts it; a CSV row iff
`Contract.model_validate(row, strict=False)` accepts the row read by `csv.DictReader` with empty fields as None
(a row with more fields than the header is invalid). The record's value of each field is the contract's parsed
value; its event date is the UTC date of the contract's event-time field.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from datalake.contracts import Contract, Dataset

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Judged:
    """One delivered record: its text, its position in the object, and the contract's parsed model when valid."""

    line: int
    text: str
    model: Contract | None

    @property
    def valid(self) -> bool:
        """Whether the contract accepts the record."""
        return self.model is not None


def judge_json_lines(dataset: Dataset, body: bytes) -> list[Judged]:
    """The verdict on every non-blank line of a JSON-lines object (lines numbered from 1)."""
    judged = []
    for number, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            model: Contract | None = dataset.contract.model_validate_json(line)
        except ValidationError:
            model = None
        judged.append(Judged(number, line.decode("utf-8", errors="backslashreplace"), model))
    return judged


def judge_csv(dataset: Dataset, text: str) -> list[Judged]:
    """The verdict on every row of a CSV object with a header line (rows numbered by their last physical line)."""
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey="_unexpected_columns")
    judged = []
    for row in reader:
        record: dict[str, Any] = {k: (v if v != "" else None) for k, v in row.items()}
        model: Contract | None = None
        if "_unexpected_columns" not in record:
            try:
                model = dataset.contract.model_validate(record, strict=False)
            except ValidationError:
                model = None
        judged.append(Judged(reader.line_num, repr(row), model))
    return judged


def csv_text(rows: Sequence[dict[str, str]], header: Sequence[str]) -> str:
    """Rows written as CSV (RFC 4180 quoting, CRLF line ends) under `header`; a row may carry extra cells."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        extra = row.get("_extra_cells", "")
        writer.writerow([*(row.get(name, "") for name in header), *([extra] if extra else [])])
    return out.getvalue()


def micros(moment: dt.datetime) -> int:
    """An aware instant as microseconds since the Unix epoch (exact for every year 1..9999)."""
    return (moment - EPOCH) // dt.timedelta(microseconds=1)


def utc_instant(value: dt.datetime) -> dt.datetime:
    """An aware datetime as a UTC datetime (its offset applied)."""
    return EPOCH + dt.timedelta(microseconds=micros(value))


def event_date(dataset: Dataset, model: Contract) -> dt.date:
    """The UTC date of the record's event time: the raw and processed partition it belongs to."""
    return utc_instant(getattr(model, dataset.event_time)).date()

"""The local crawler's JSON schema inference: folding each record shape once gives the fold over every record."""

from __future__ import annotations

import json
import random
from typing import Any

from lakebox.services.crawler import _json_type, _merge_nullable, infer_json_lines


def fold_every_record(data: bytes) -> tuple[list[tuple[str, str]], int]:
    """The reference: every record's every value merged into the columns, in order."""
    columns: dict[str, str | None] = {}
    records = 0
    for line in data.decode().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        records += 1
        for key, value in record.items():
            columns[key.lower()] = _merge_nullable(columns.get(key.lower()), _json_type(value))
    return [(n, t or "string") for n, t in columns.items()], records


VALUES: list[Any] = [None, True, 0, 7, 1.5, "x", "2026-01-01", [1, 2.5], [], {"A": 1}, {"a": None, "b": "y"}]


def test_repeated_shapes_give_the_columns_of_the_fold_over_every_record() -> None:
    # GIVEN thousands of records drawn from a few keys (one differing only in case) and values of every JSON kind,
    # so that most records repeat an earlier record's shape and later ones widen earlier types
    rng = random.Random(7)
    keys = ["id", "amount", "Amount", "tags", "detail", "flag"]
    lines = []
    for _ in range(3000):
        record = {key: rng.choice(VALUES[:7]) for key in rng.sample(keys, rng.randint(1, len(keys)))}
        if rng.random() < 0.05:
            record[rng.choice(keys)] = rng.choice(VALUES[7:])
        lines.append(json.dumps(record))
    # AND lines only Python's json module reads, and lines no JSON reader takes
    lines += ['{"id": NaN, "amount": Infinity}', '{"detail": 1e400}', '{"flag": "\\ud800"}', '{"new": 01}']
    lines += ['{"new": "a\tb"}', "[1, 2]", "not json"]
    data = "\n".join(lines).encode()

    # WHEN the schema is inferred
    columns, records = infer_json_lines(data)

    # THEN it equals the fold over every record: same columns, order, types and record count
    assert (columns, records) == fold_every_record(data)
    assert records == 3003
    assert "new" not in dict(columns)

"""A Parquet footer read from a file's last bytes gives the columns and chunk bytes DuckDB's `parquet_metadata` gives,
which the local Athena counts bytes scanned with (ADR 0043)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakebox.services.athena.model import _FileMeta
from lakebox.services.athena.scan import _FOOTER_READ, _footer_meta, _top_level


def _duckdb_meta(path: Path) -> _FileMeta:
    """What the engine took from DuckDB before (`ScanMixin._footers_of`'s query, on a local file)."""
    con = duckdb.connect()
    rows = con.execute(
        "SELECT split_part(path_in_schema, ', ', 1) AS name, sum(total_compressed_size), min(column_id) AS position "
        f"FROM parquet_metadata('{path}') GROUP BY ALL ORDER BY position"
    ).fetchall()
    if not rows:
        schema = con.execute(f"SELECT name, num_children FROM parquet_schema('{path}')").fetchall()
        return _FileMeta(_top_level([(str(n), int(c or 0)) for n, c in schema]), {})
    return _FileMeta(tuple(str(r[0]) for r in rows), {str(r[0]).lower(): int(r[1] or 0) for r in rows})


def _nested() -> pa.Table:
    return pa.table(
        {
            "order_id": pa.array(["a", "b", "c"]),
            "items": pa.array(
                [[{"sku": "x", "qty": 1}], [], None], pa.list_(pa.struct([("sku", pa.string()), ("qty", pa.int32())]))
            ),
            "attributes": pa.array([[("k", 1.5)], None, []], pa.map_(pa.string(), pa.float64())),
            "Amount": pa.array([1.25, None, 3.0], pa.float64()),
        }
    )


TABLES = {
    "flat": (pa.table({"n": pa.array(range(1000), pa.int64()), "s": pa.array([str(i) for i in range(1000)])}), {}),
    "nested": (_nested(), {}),
    "row-groups": (pa.table({"n": pa.array(range(1000), pa.int64())}), {"row_group_size": 100}),
    "no-rows": (_nested().slice(0, 0), {}),
    "dotted-name": (pa.table({"a.b": [1, 2], "a": [3, 4]}), {}),
    "footer-past-the-first-read": (
        pa.table({f"column_{i:03d}": pa.array(range(50), pa.int64()) for i in range(300)}),
        {"row_group_size": 10},
    ),
}


@pytest.mark.parametrize("name", list(TABLES))
def test_a_footer_read_from_the_files_end_gives_what_duckdb_gives(tmp_path: Path, name: str) -> None:
    # GIVEN a Parquet file (nested columns, several row groups, no rows, a dotted name, a footer past 64 KiB)
    table, options = TABLES[name]
    path = tmp_path / "part-0.parquet"
    pq.write_table(table, path, **options)
    data = path.read_bytes()
    footer = int.from_bytes(data[-8:-4], "little") + 8
    # WHEN its footer is read from the file's last bytes holding it, with nothing before it
    meta = _footer_meta(data[-footer:])
    # THEN its columns and each column's compressed bytes are DuckDB's
    assert meta == _duckdb_meta(path)
    if name == "footer-past-the-first-read":
        assert footer > _FOOTER_READ


def test_bytes_that_are_not_a_whole_footer_are_left_to_duckdb(tmp_path: Path) -> None:
    # GIVEN a Parquet file
    path = tmp_path / "part-0.parquet"
    pq.write_table(_nested(), path)
    data = path.read_bytes()
    # WHEN only part of its footer, or bytes that are no Parquet at all, are given
    # THEN no footer is made up from them
    assert _footer_meta(data[-20:]) is None
    assert _footer_meta(b"not a parquet file at all") is None

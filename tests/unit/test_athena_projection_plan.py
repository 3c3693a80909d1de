"""Partition projection planned from table properties (no S3): ranges, digits, intervals, NOW, templates, and the
values an injected column takes from a WHERE clause."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlglot
from sqlglot import exp

from lakebox.services.athena.model import _QueryError, _Table
from lakebox.services.athena.projection import injected_values, is_projected, projected_partitions

NOW = dt.datetime(2026, 3, 3, 12, 0, tzinfo=dt.UTC)


def _table(keys: list[str], **properties: str) -> _Table:
    return _Table(
        database="lake",
        name="t",
        table_type="EXTERNAL_TABLE",
        columns=(("amount", "bigint"),),
        partition_keys=tuple((k, "string") for k in keys),
        location="s3://data/t/",
        serde="",
        serde_parameters={},
        parameters={"projection.enabled": "true", **properties},
        view=None,
    )


def test_a_table_without_projection_enabled_is_read_from_the_catalog() -> None:
    table = _table(["dt"])
    assert is_projected(table)
    assert not is_projected(_table(["dt"], **{"projection.enabled": "false"}))


def test_integer_projection_pads_digits_and_steps_by_its_interval() -> None:
    table = _table(
        ["n"],
        **{
            "projection.n.type": "integer",
            "projection.n.range": "0,10",
            "projection.n.interval": "5",
            "projection.n.digits": "3",
        },
    )
    assert [p.values for p in projected_partitions(table, {}, NOW)] == [("000",), ("005",), ("010",)]
    assert projected_partitions(table, {}, NOW)[0].location == "s3://data/t/n=000/"


def test_date_projection_relative_to_now_in_its_own_format() -> None:
    table = _table(
        ["dt"],
        **{
            "projection.dt.type": "date",
            "projection.dt.format": "yyyy-MM-dd",
            "projection.dt.range": "NOW-2DAYS,NOW",
            "storage.location.template": "s3://data/t/${dt}/x",
        },
    )
    partitions = projected_partitions(table, {}, NOW)
    assert [p.values[0] for p in partitions] == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert partitions[0].location == "s3://data/t/2026-03-01/x"


def test_monthly_date_projection_clamps_to_the_month_end() -> None:
    table = _table(
        ["m"],
        **{
            "projection.m.type": "date",
            "projection.m.format": "yyyy/MM",
            "projection.m.range": "2025/11,2026/02",
            "projection.m.interval.unit": "MONTHS",
        },
    )
    assert [p.values[0] for p in projected_partitions(table, {}, NOW)] == ["2025/11", "2025/12", "2026/01", "2026/02"]


def test_enum_and_injected_columns_cross() -> None:
    table = _table(
        ["region", "device"],
        **{
            "projection.region.type": "enum",
            "projection.region.values": "eu, us",
            "projection.device.type": "injected",
        },
    )
    values = [p.values for p in projected_partitions(table, {"device": ["a", "b"]}, NOW)]
    assert values == [("eu", "a"), ("eu", "b"), ("us", "a"), ("us", "b")]


def test_injected_column_without_a_value_is_athenas_constraint_violation() -> None:
    table = _table(["device"], **{"projection.device.type": "injected"})
    with pytest.raises(_QueryError, match="CONSTRAINT_VIOLATION"):
        projected_partitions(table, {}, NOW)


def test_unknown_projection_type_names_the_column() -> None:
    table = _table(["x"], **{"projection.x.type": "geohash"})
    with pytest.raises(_QueryError, match="projected column x: unknown projection type 'geohash'"):
        projected_partitions(table, {}, NOW)


def test_injected_values_come_from_equalities_and_in_lists_of_the_where_clause() -> None:
    select = sqlglot.parse_one("SELECT * FROM t WHERE t.device IN ('a', 'b') AND x > 1 AND 'c' = t.kind", read="athena")
    where = select.args["where"]
    assert isinstance(where, exp.Where)
    assert injected_values(where, "t", {"device", "kind"}) == {"device": ["a", "b"], "kind": ["c"]}
    assert injected_values(None, "t", {"device"}) == {}

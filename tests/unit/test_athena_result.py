"""Query results carried over the endpoint: every value comes back equal and of the same type."""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from lakebox.services.athena_result import decode_value, encode_value

VALUES = [
    None,
    True,
    0,
    -(2**63),
    "",
    "a, b = c",
    1.0,
    0.1 + 0.2,
    Decimal("2.50"),
    Decimal("-0.000"),
    dt.date(2024, 2, 29),
    dt.datetime(2024, 1, 2, 3, 4, 5, 123000),
    dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    dt.datetime(2024, 7, 2, 3, 4, 5, tzinfo=ZoneInfo("Europe/Berlin")),
    dt.datetime(2024, 7, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=-3))),
    dt.time(1, 2, 3, 4),
    b"\x00\xab",
    ["x", None, [1, 2]],
    (1, "x"),
    {"k": Decimal("1.5"), "n": None},
    {1: [dt.date(2024, 1, 1)]},
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_a_value_comes_back_equal_and_of_the_same_type(value: object) -> None:
    carried = decode_value(json.loads(json.dumps(encode_value(value))))
    assert repr(carried) == repr(value)
    assert str(carried) == str(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinities_travel_as_floats(value: float) -> None:
    carried = decode_value(json.loads(json.dumps(encode_value(value), allow_nan=False)))
    assert isinstance(carried, float) and repr(carried) == repr(value)

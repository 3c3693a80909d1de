"""Strict mode of the local Athena (on by default): what Athena refuses is refused with its error category and
message; turned off, DuckDB's lenient answers come back. Query results as JSON keep decimals exact."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal

import boto3
import pytest
from moto import mock_aws

from lakebox.services.athena import AthenaEngine, QueryFailedError, QueryResult
from lakebox.services.athena.functions import PatternError, java_to_strftime


@pytest.fixture(scope="module")
def session() -> Iterator[boto3.Session]:
    with mock_aws():
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        session.client("s3").create_bucket(Bucket="strict-results")
        yield session


@pytest.fixture(scope="module")
def strict(session: boto3.Session) -> Iterator[AthenaEngine]:
    engine = AthenaEngine(session, default_output="s3://strict-results/")
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def lenient(session: boto3.Session) -> Iterator[AthenaEngine]:
    engine = AthenaEngine(session, default_output="s3://strict-results/", strict=False)
    yield engine
    engine.close()


REFUSED = [
    ("SELECT '1' = 1", "TYPE_MISMATCH: Cannot apply operator: varchar(1) = integer"),
    ("SELECT concat('a', 1)", "FUNCTION_NOT_FOUND: Unexpected parameters (varchar(1), integer) for function concat"),
    ("SELECT 'a' || 1", "TYPE_MISMATCH: Cannot apply operator: varchar(1) || integer"),
    (
        "SELECT date_add('day', 1, '2020-01-01')",
        "FUNCTION_NOT_FOUND: Unexpected parameters (varchar(3), integer, varchar(10)) for function date_add",
    ),
    (
        "SELECT ARRAY[1, 2][3]",
        "INVALID_FUNCTION_ARGUMENT: Array subscript must be less than or equal to array length: 3 > 2",
    ),
    ("SELECT MAP(ARRAY['a'], ARRAY[1])['b']", "INVALID_FUNCTION_ARGUMENT: Key not present in map: b"),
    ("SELECT frobnicate(1)", "FUNCTION_NOT_FOUND: Function 'frobnicate' not registered"),
    ("SELECT nvl(NULL, 1)", "FUNCTION_NOT_FOUND: Function 'nvl' not registered"),
    ("SELECT DATE '2020-01-01' = '2020-01-01'", "TYPE_MISMATCH: Cannot apply operator: date = varchar(10)"),
    ("SELECT 1 IN ('1', '2')", "TYPE_MISMATCH: IN value and list items must be the same type: varchar(1)"),
    ("SELECT 3 BETWEEN '2' AND 6", "TYPE_MISMATCH: Cannot check if integer is BETWEEN varchar(1) and integer"),
]


@pytest.mark.parametrize(("sql", "reason"), REFUSED, ids=[sql for sql, _ in REFUSED])
def test_strict_mode_refuses_what_athena_refuses(strict: AthenaEngine, sql: str, reason: str) -> None:
    with pytest.raises(QueryFailedError) as failure:
        strict.query(sql)
    assert failure.value.reason == reason


LENIENT = [
    ("SELECT '1' = 1", [(True,)]),
    ("SELECT ARRAY[1, 2][3]", [(None,)]),
    ("SELECT MAP(ARRAY['a'], ARRAY[1])['b']", [(None,)]),
]


@pytest.mark.parametrize(("sql", "rows"), LENIENT, ids=[sql for sql, _ in LENIENT])
def test_lenient_mode_answers_as_duckdb(lenient: AthenaEngine, sql: str, rows: list[tuple[object, ...]]) -> None:
    assert lenient.query(sql).rows == rows


def test_result_json_keeps_decimal_scale_types_and_empty_strings(strict: AthenaEngine) -> None:
    # GIVEN a query with a decimal, a date, an empty string and a null
    result = strict.query("SELECT 2.50 AS price, DATE '2026-11-02' AS day, '' AS blank, NULL AS nothing")
    # WHEN it is turned into JSON
    document = json.loads(json.dumps(result.to_json()))
    # THEN the decimal is its exact text, the types are Athena's and '' stays apart from null
    assert document["rows"] == [{"price": "2.50", "day": "2026-11-02", "blank": "", "nothing": None}]
    assert document["types"][:3] == ["decimal(3,2)", "date", "varchar"]


def test_result_json_of_nested_values() -> None:
    result = QueryResult(
        columns=("m", "a", "t"),
        types=("map", "array", "timestamp"),
        rows=[({"k": Decimal("1.10")}, [Decimal("0.5"), None], dt.datetime(2026, 1, 2, 3, 4, 5))],
        bytes_scanned=0,
        execution_id="x",
    )
    assert result.to_json()["rows"] == [{"m": {"k": "1.10"}, "a": ["0.5", None], "t": "2026-01-02T03:04:05"}]


@pytest.mark.parametrize(
    ("pattern", "strftime"),
    [
        ("yyyy-MM-dd HH:mm:ss", "%Y-%m-%d %H:%M:%S"),
        ("yyyy-MM-dd'T'HH:mm:ss.SSS", "%Y-%m-%dT%H:%M:%S.%g"),
        ("EEEE, MMMM d", "%A, %B %-d"),
        ("hh:mm a", "%I:%M %p"),
        ("'100%' yyyy", "100%% %Y"),
    ],
)
def test_joda_patterns_translate_to_strftime(pattern: str, strftime: str) -> None:
    assert java_to_strftime(pattern) == strftime


def test_a_joda_letter_without_strftime_equivalent_is_named() -> None:
    with pytest.raises(PatternError, match="'G'"):
        java_to_strftime("G yyyy")


def test_names_that_are_not_calls_pass_the_function_check(strict: AthenaEngine) -> None:
    # GIVEN table aliases with columns, a WITH query's column list and a sampling method, each followed by "("
    sql = (
        "WITH q(a) AS (SELECT 1) "
        "SELECT a, x FROM q CROSS JOIN (VALUES 2) t(x) CROSS JOIN UNNEST(ARRAY[3]) u(y) TABLESAMPLE BERNOULLI (100)"
    )
    # THEN the query runs
    assert strict.query(sql).rows == [(1, 2)]

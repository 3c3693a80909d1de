"""The endpoint's record of changes: what each state-changing request may have changed, and what a reader missed."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from lakebox.services.changes import EVERYTHING, Change, ChangeLog, change_of


def _environ(path: str, host: str = "127.0.0.1:5000") -> dict[str, Any]:
    return {"PATH_INFO": path, "HTTP_HOST": host, "REQUEST_METHOD": "PUT"}


@pytest.mark.parametrize(
    ("environ", "signing_name", "expected"),
    [
        (_environ("/lake/sales/d=1/a.parquet"), "s3", Change("s3", "lake", "sales/d=1/a.parquet")),
        (_environ("/lake/sales/a.parquet", "localhost:5000"), "s3", Change("s3", "lake", "sales/a.parquet")),
        (_environ("/lake"), "s3", Change("s3", "lake")),  # a bucket made, or a bulk delete (its keys in the body)
        (_environ("/lake/caf%C3%A9+1.parquet"), "s3", Change("s3", "lake")),  # a key spelt more than one way
        (_environ("/sales/a.parquet", "lake.s3.localhost.localstack.cloud"), "s3", Change("s3")),  # virtual-hosted
        (_environ("/"), "glue", Change("glue")),
        (_environ("/"), None, EVERYTHING),
        (_environ("/moto-api/reset"), None, EVERYTHING),
        (_environ("/moto-api/reset"), "s3", EVERYTHING),
    ],
)
def test_a_request_names_what_it_may_change(
    environ: dict[str, Any], signing_name: str | None, expected: Change
) -> None:
    # WHEN a state-changing request is classified THEN it names the narrowest part of the state it may change
    assert change_of(environ, signing_name) == expected


@pytest.mark.parametrize(
    ("change", "touched"),
    [
        (Change("s3", "lake", "sales/d=2/b.parquet"), True),
        (Change("s3", "lake", "sales"), False),  # the folder's own marker object is not listed under it
        (Change("s3", "lake", "results/x.csv"), False),
        (Change("s3", "other", "sales/d=2/b.parquet"), False),
        (Change("s3", "lake"), True),
        (Change("s3"), True),
        (Change("glue"), False),
        (EVERYTHING, True),
    ],
)
def test_a_change_touches_the_listings_it_may_alter(change: Change, touched: bool) -> None:
    # GIVEN the listing of s3://lake/sales/ THEN a change touches it only when it may alter what it returns
    assert change.touches("lake", "sales/") is touched


def test_a_reader_gets_what_it_missed_and_everything_past_what_is_kept() -> None:
    # GIVEN a log keeping three changes, read at version 0
    log = ChangeLog(keep=3)
    version, missed = log.since(0)
    assert (version, list(missed)) == (0, [])
    # WHEN two changes are recorded THEN a reader at 0 gets both, in order, and one at 2 gets none
    log.record(Change("glue"))
    log.record(Change("s3", "lake", "a"))
    assert log.since(0) == (2, [Change("glue"), Change("s3", "lake", "a")])
    assert log.since(2) == (2, ())
    # WHEN more changes were recorded than the log keeps THEN a reader at 0 is told everything may have changed
    for key in "bcd":
        log.record(Change("s3", "lake", key))
    assert log.since(0) == (5, (EVERYTHING,))
    assert log.since(2) == (5, [Change("s3", "lake", "b"), Change("s3", "lake", "c"), Change("s3", "lake", "d")])


def _glue(action: str, body: dict[str, Any] | bytes) -> dict[str, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return {
        "PATH_INFO": "/",
        "HTTP_HOST": "127.0.0.1:5000",
        "REQUEST_METHOD": "POST",
        "HTTP_X_AMZ_TARGET": f"AWSGlue.{action}",
        "CONTENT_LENGTH": str(len(data)),
        "wsgi.input": io.BytesIO(data),
    }


@pytest.mark.parametrize(
    ("action", "body", "expected"),
    [
        (
            "CreateTable",
            {"DatabaseName": "Lake", "TableInput": {"Name": "Sales"}},
            Change("glue", database="lake", table="sales"),
        ),
        (
            "UpdateTable",
            {"DatabaseName": "lake", "TableInput": {"Name": "sales"}},
            Change("glue", database="lake", table="sales"),
        ),
        ("DeleteTable", {"DatabaseName": "lake", "Name": "sales"}, Change("glue", database="lake", table="sales")),
        (
            "BatchCreatePartition",
            {"DatabaseName": "lake", "TableName": "sales"},
            Change("glue", database="lake", table="sales"),
        ),
        ("BatchDeleteTable", {"DatabaseName": "lake", "TablesToDelete": ["a"]}, Change("glue", database="lake")),
        ("DeleteDatabase", {"Name": "lake"}, Change("glue", database="lake")),
        ("CreateDatabase", {"DatabaseInput": {"Name": "lake"}}, Change("glue", database="lake")),
        (
            "CreateTable",
            {"CatalogId": "123456789012", "DatabaseName": "lake", "TableInput": {"Name": "s"}},
            Change("glue"),
        ),
        ("CreateTable", {"TableInput": {"Name": "sales"}}, Change("glue")),  # no database named
        ("CreateTable", b"not json", Change("glue")),
        ("StartCrawler", {"Name": "sales"}, Change("glue")),  # what a crawler changes its body does not say
    ],
)
def test_a_glue_request_names_the_table_or_database_it_may_change(
    action: str, body: dict[str, Any] | bytes, expected: Change
) -> None:
    # WHEN a Glue request is classified THEN it names the table (or database) its body names, or the whole catalog
    environ = _glue(action, body)
    sent = environ["wsgi.input"].getvalue()
    assert change_of(environ, "glue") == expected
    # AND the service still reads the whole body
    assert environ["wsgi.input"].read() == sent


@pytest.mark.parametrize(
    ("change", "table", "database"),
    [
        (Change("glue", database="lake", table="sales"), True, False),
        (Change("glue", database="lake", table="other"), False, False),
        (Change("glue", database="other", table="sales"), False, False),
        (Change("glue", database="lake"), True, True),
        (Change("glue"), True, True),
        (EVERYTHING, True, True),
        (Change("s3", "lake", "sales/a.parquet"), False, False),
    ],
)
def test_a_glue_change_touches_the_tables_and_database_it_may_alter(
    change: Change, table: bool, database: bool
) -> None:
    # GIVEN the table lake.sales and the database lake THEN a change touches them only when it may alter them
    assert (change.touches_table("lake", "sales"), change.touches_database("lake")) == (table, database)

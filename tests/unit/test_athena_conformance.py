"""Athena SQL conformance: each query of tests/unit/athena_conformance/*.yaml answers on the local engine with the
values and types Trino's function and operator reference documents (the section each case cites)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lakebox.services.athena import AthenaEngine
from tests.unit.athena_conformance import Case, differences, load_cases, result_of

CASES = load_cases()


@pytest.fixture(scope="module")
def engine() -> Iterator[AthenaEngine]:
    with mock_aws():
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        session.client("s3").create_bucket(Bucket="conformance-results")
        athena = AthenaEngine(session, default_output="s3://conformance-results/")
        yield athena
        athena.close()


def run(engine: AthenaEngine, sql: str) -> tuple[list[tuple[str | None, ...]] | None, list[str] | None, str | None]:
    """Rows and types of a query through the query API, or its failure reason."""
    described = engine.start_query_execution(QueryString=sql)["QueryExecution"]
    if described["Status"]["State"] != "SUCCEEDED":
        return None, None, str(described["Status"].get("StateChangeReason"))
    execution_id = described["QueryExecutionId"]
    pages: list[dict[str, Any]] = [engine.get_query_results(QueryExecutionId=execution_id)]
    while "NextToken" in pages[-1]:
        pages.append(engine.get_query_results(QueryExecutionId=execution_id, NextToken=pages[-1]["NextToken"]))
    rows, types = result_of(pages)
    return rows, types, None


def test_corpus_is_large_and_cites_its_sources() -> None:
    # GIVEN the corpus THEN it holds at least 150 queries, each citing a section of Trino's reference
    assert len(CASES) >= 150
    assert all("#" in case.ref and case.ref.split("#")[0].endswith(".md") for case in CASES)
    assert all(case.error or (case.types is not None and (case.values or case.rows)) for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_query_answers_as_trino_documents(engine: AthenaEngine, case: Case) -> None:
    # WHEN the query runs on the local Athena
    rows, types, error = run(engine, case.sql)
    # THEN its values and types (or its error) are the documented ones
    assert differences(case, rows, types, error) == [], case.ref

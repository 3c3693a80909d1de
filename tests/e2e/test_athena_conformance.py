"""A sample of the Athena SQL conformance corpus on a deployed workgroup, compared with the corpus and the local
engine; every difference is printed (skipped unless AWS_SAM_STACK_NAME names a deployed stack).

`ATHENA_CORPUS_SAMPLE` sets how many cases run (every case when it is ``all``; 40 spread over the files by default).
"""

from __future__ import annotations

import os
import time
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lakebox.services.athena import AthenaEngine
from tests.unit.athena_conformance import Case, differences, load_cases, result_of

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not os.environ.get("AWS_SAM_STACK_NAME"), reason="AWS_SAM_STACK_NAME is not set"),
]

Answer = tuple[list[tuple[str | None, ...]] | None, list[str] | None, str | None]


def _sample(cases: list[Case]) -> list[Case]:
    wanted = os.environ.get("ATHENA_CORPUS_SAMPLE", "40")
    if wanted == "all":
        return cases
    step = max(len(cases) // max(int(wanted), 1), 1)
    return cases[::step]


@pytest.fixture(scope="module")
def workgroup() -> str:
    stack = boto3.client("cloudformation").describe_stacks(StackName=os.environ["AWS_SAM_STACK_NAME"])["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return outputs["AnalyticsWorkGroupName"]


def _local_answers(cases: list[Case]) -> list[Answer]:
    """The local engine's answers, computed first: moto's in-memory AWS must not be active while AWS is called."""
    answers: list[Answer] = []
    with mock_aws():
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        session.client("s3").create_bucket(Bucket="conformance-results")
        engine = AthenaEngine(session, default_output="s3://conformance-results/")
        try:
            for case in cases:
                described = engine.start_query_execution(QueryString=case.sql)["QueryExecution"]
                if described["Status"]["State"] != "SUCCEEDED":
                    answers.append((None, None, str(described["Status"].get("StateChangeReason"))))
                    continue
                execution_id = described["QueryExecutionId"]
                pages = [engine.get_query_results(QueryExecutionId=execution_id)]
                while "NextToken" in pages[-1]:
                    token = pages[-1]["NextToken"]
                    pages.append(engine.get_query_results(QueryExecutionId=execution_id, NextToken=token))
                rows, types = result_of(pages)
                answers.append((rows, types, None))
        finally:
            engine.close()
    return answers


def _answer(client: Any, sql: str, workgroup: str, timeout: float = 120) -> Answer:
    started = client.start_query_execution(QueryString=sql, WorkGroup=workgroup)
    execution_id = started["QueryExecutionId"]
    deadline = time.monotonic() + timeout
    while True:
        status = client.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]["Status"]
        if status["State"] in {"SUCCEEDED", "FAILED", "CANCELLED"}:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"{sql!r} still {status['State']} after {timeout:.0f} s")
        time.sleep(0.5)
    if status["State"] != "SUCCEEDED":
        return None, None, str(status.get("StateChangeReason", status["State"]))
    pages = list(client.get_paginator("get_query_results").paginate(QueryExecutionId=execution_id))
    rows, types = result_of(pages)
    return rows, types, None


def test_corpus_sample_answers_the_same_on_the_deployed_workgroup(workgroup: str) -> None:
    # GIVEN a sample of the corpus and the local engine's answers
    cases = _sample(load_cases())
    local = _local_answers(cases)
    cloud = boto3.client("athena")
    report: list[str] = []
    for case, here in zip(cases, local, strict=True):
        # WHEN each query runs on the deployed workgroup
        remote = _answer(cloud, case.sql, workgroup)
        # THEN Athena answers as the corpus says, and as lakebox answers
        for difference in differences(case, *remote):
            report.append(f"{case.id} [{case.ref}] Athena vs corpus: {difference}")
        if remote[2] is None and here[2] is None and (remote[0], remote[1]) != (here[0], here[1]):
            report.append(f"{case.id} [{case.ref}] Athena {remote[:2]} vs lakebox {here[:2]}")
        elif (remote[2] is None) != (here[2] is None):
            report.append(f"{case.id} [{case.ref}] Athena {remote} vs lakebox {here}")
    print("\n".join(report) or f"{len(cases)} corpus queries: no difference")
    assert report == []

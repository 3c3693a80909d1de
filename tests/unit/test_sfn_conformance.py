"""The ASL conformance corpus (tests/unit/sfn_conformance): each documented behaviour as Step Functions runs it."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from lakebox.sfn.distributed import Boto3ObjectStore
from tests.unit.sfn_conformance.corpus import Case, differences, load_cases, run_locally, seed_s3

CASES = load_cases()


def test_the_corpus_covers_every_topic_with_enough_cases() -> None:
    # GIVEN the corpus THEN it is large enough and every case cites the developer guide
    assert len(CASES) >= 60
    assert len({case.id for case in CASES}) == len(CASES)
    assert {case.topic for case in CASES} >= {
        "input_output",
        "intrinsics",
        "choice",
        "map_parallel",
        "errors",
        "jsonata",
        "variables",
        "distributed_map",
        "callbacks",
    }
    assert all("docs.aws.amazon.com/step-functions/latest/dg/" in case.source for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_the_local_executor_conforms(case: Case) -> None:
    # GIVEN a documented state machine, its input and (for a Distributed Map) its objects in S3
    if case.s3:
        with mock_aws():
            s3 = boto3.client("s3", region_name="us-east-1")
            seed_s3(case, s3)
            # WHEN it runs locally
            outcome = run_locally(case, Boto3ObjectStore(boto3.Session(region_name="us-east-1")))
            written = {
                bucket: [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
                for bucket, prefix in case.expected_s3_prefix.items()
            }
    else:
        outcome = run_locally(case)
        written = {}

    # THEN it gives what Step Functions documents: the same output, or the same error
    assert list(differences(case, outcome)) == [], case.source
    for keys in written.values():
        assert any(key.endswith("manifest.json") for key in keys), keys

"""The endpoint finds the service of a request's host once, and still routes every request to its service."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from unittest import mock

import boto3
import pytest
from moto import backends

from lakebox.services.endpoint import LocalEndpoint


@pytest.fixture
def session() -> Iterator[boto3.Session]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = LocalEndpoint().start()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", server.url)
        yield boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    server.stop()


def test_moto_lists_its_modules_once_per_host_not_once_per_request(session: boto3.Session) -> None:
    # GIVEN an endpoint whose S3 and Glue have answered once
    s3, glue = session.client("s3"), session.client("glue")
    s3.create_bucket(Bucket="dispatch")
    glue.create_database(DatabaseInput={"Name": "dispatch"})
    real = backends.list_of_moto_modules
    with mock.patch.object(backends, "list_of_moto_modules", side_effect=real) as listed:
        # WHEN many more requests of both services arrive
        for n in range(20):
            s3.put_object(Bucket="dispatch", Key=f"k{n}", Body=b"x")
            s3.head_object(Bucket="dispatch", Key=f"k{n}")
            glue.get_database(Name="dispatch")
        # THEN moto's list of modules is not read again: the service of each host was kept
        assert listed.call_count == 0
    # AND every request still reached its own service
    assert len(s3.list_objects_v2(Bucket="dispatch")["Contents"]) == 20
    assert glue.get_database(Name="dispatch")["Database"]["Name"] == "dispatch"
    assert session.client("sqs").list_queues().get("QueueUrls", []) == []

"""The local endpoint keeps a client's connection open from one request to the next (HTTP/1.1 keep-alive)."""

from __future__ import annotations

import http.client
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError

from lakebox.services.endpoint import LocalEndpoint

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@pytest.fixture
def endpoint() -> Iterator[LocalEndpoint]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = LocalEndpoint().start()
    yield server
    server.stop()


def _s3(endpoint: LocalEndpoint) -> S3Client:
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    return session.client("s3", endpoint_url=endpoint.url, config=Config(retries={"total_max_attempts": 1}))


def test_requests_of_one_connection_are_answered_on_it_without_a_close() -> None:
    server = LocalEndpoint().start()
    try:
        # GIVEN one HTTP/1.1 connection to the endpoint
        connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
        connection.request("PUT", "/kept")  # S3 CreateBucket
        created = connection.getresponse()
        created.read()
        socket = connection.sock
        # WHEN further requests follow on it
        answers = []
        for key in ("a", "b", "c"):
            connection.request("PUT", f"/kept/{key}", body=key.encode() * 10)
            put = connection.getresponse()
            put.read()
            connection.request("GET", "/kept?list-type=2")
            listed = connection.getresponse()
            answers.append((put.status, listed.status, f"<Key>{key}</Key>" in listed.read().decode()))
        # THEN each is answered on the same socket, none saying it closes
        assert created.status == 200
        assert created.getheader("Connection") != "close"
        assert answers == [(200, 200, True)] * 3
        assert connection.sock is socket
        connection.close()
    finally:
        server.stop()


def test_a_body_the_service_leaves_unread_does_not_become_the_next_request(endpoint: LocalEndpoint) -> None:
    # GIVEN a bucket, and a request whose body the endpoint does not read (moto's own page), shaped like a request
    # deleting the bucket
    connection = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=10)
    connection.request("PUT", "/unread")
    connection.getresponse().read()
    smuggled = b"DELETE /unread HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    connection.request("GET", "/moto-api/", body=smuggled)
    page = connection.getresponse()
    page.read()
    socket = connection.sock
    # WHEN the next request follows on the same connection
    connection.request("HEAD", "/unread")
    headed = connection.getresponse()
    headed.read()
    # THEN it is answered as itself (HeadBucket's 200, not DeleteBucket's 204), on that connection
    assert (page.status, headed.status) == (200, 200)
    assert connection.sock is socket
    connection.close()
    # AND the bucket is still there
    assert "unread" in {b["Name"] for b in _s3(endpoint).list_buckets()["Buckets"]}


def test_an_sdk_client_reuses_its_connection_and_stop_ends_it(endpoint: LocalEndpoint) -> None:
    # GIVEN a boto3 client making a series of calls one after another
    s3 = _s3(endpoint)
    s3.create_bucket(Bucket="series")
    for n in range(20):
        s3.put_object(Bucket="series", Key=f"k{n}", Body=b"x" * n)
        s3.get_object(Bucket="series", Key=f"k{n}")["Body"].read()
    # THEN the endpoint holds the one connection it used for all of them
    assert endpoint.open_connections == 1
    # AND stopping the endpoint ends it: the client's next call reaches nothing
    endpoint.stop()
    with pytest.raises(BotoCoreError):
        s3.list_buckets()

"""The end of an object of the local S3 read in the endpoint's process: the bytes, size and ETag S3 answers with."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
import pytest

from lakebox.services.endpoint import LocalEndpoint

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BIG = 9 * 1024 * 1024 + 5  # past moto's 8 MiB in-memory spool: read from the spool's file


@pytest.fixture
def endpoint() -> Iterator[tuple[LocalEndpoint, S3Client]]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = LocalEndpoint().start()
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    client = session.client("s3", endpoint_url=server.url)
    client.create_bucket(Bucket="tails")
    yield server, client
    server.stop()


def _listed(s3: S3Client, key: str) -> tuple[int, str]:
    item = s3.list_objects_v2(Bucket="tails", Prefix=key)["Contents"][0]
    return item["Size"], item["ETag"]


@pytest.mark.parametrize("size", [10, 70_000, BIG], ids=["shorter-than-asked", "in-memory", "spooled-to-disk"])
def test_the_tail_is_the_objects_last_bytes_with_its_listed_size_and_etag(
    endpoint: tuple[LocalEndpoint, S3Client], size: int
) -> None:
    # GIVEN an object written through the endpoint
    server, s3 = endpoint
    body = os.urandom(size)
    s3.put_object(Bucket="tails", Key="data/part-0.parquet", Body=body)
    # WHEN its last 64 KiB are read in the endpoint's process
    tail = server.object_tail("tails", "data/part-0.parquet", 65_536)
    # THEN they are the object's last bytes (all of it when shorter), with the size and ETag S3 lists
    assert tail is not None
    assert tail.data == body[-65_536:]
    assert (tail.size, tail.etag) == _listed(s3, "data/part-0.parquet")


def test_an_overwritten_object_reads_as_its_new_version(endpoint: tuple[LocalEndpoint, S3Client]) -> None:
    # GIVEN an object overwritten in a versioned bucket
    server, s3 = endpoint
    s3.put_bucket_versioning(Bucket="tails", VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket="tails", Key="k", Body=b"first")
    s3.put_object(Bucket="tails", Key="k", Body=b"second!")
    # WHEN its tail is read
    tail = server.object_tail("tails", "k", 100)
    # THEN it is the current version's, whose ETag the listing gives
    assert tail is not None
    assert tail.data == b"second!"
    assert (tail.size, tail.etag) == _listed(s3, "k")


def test_a_missing_object_a_deleted_one_and_an_unknown_bucket_have_no_tail(
    endpoint: tuple[LocalEndpoint, S3Client],
) -> None:
    # GIVEN an object deleted in a versioned bucket (its latest version is a delete marker)
    server, s3 = endpoint
    s3.put_bucket_versioning(Bucket="tails", VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket="tails", Key="gone", Body=b"bytes")
    s3.delete_object(Bucket="tails", Key="gone")
    # WHEN the tails of it, of a key never written and of a bucket that does not exist are read
    # THEN there are none: the caller reads through S3 and gets S3's answer
    assert server.object_tail("tails", "gone", 10) is None
    assert server.object_tail("tails", "never", 10) is None
    assert server.object_tail("no-such-bucket", "k", 10) is None

"""The local endpoint's CopyObject copies on the server's side and answers as S3 (and moto) did: same bytes, ETags,
metadata and versions."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
import pytest

from lakebox.services.endpoint import LocalEndpoint

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BIG = 20 * 1024 * 1024 + 7  # past moto's 8 MiB in-memory spool: the copy goes file to file
SMALL = 1000


@pytest.fixture
def s3() -> Iterator[S3Client]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = LocalEndpoint().start()
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    client = session.client("s3", endpoint_url=server.url)
    client.create_bucket(Bucket="landing")
    client.create_bucket(Bucket="raw")
    yield client
    server.stop()


def _body(s3: S3Client, bucket: str, key: str, version: str | None = None) -> bytes:
    extra = {"VersionId": version} if version else {}
    return s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()  # type: ignore[arg-type]


def _md5_etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


@pytest.mark.parametrize("size", [SMALL, BIG])
def test_a_copy_has_the_sources_bytes_etag_and_the_metadata_it_was_given(s3: S3Client, size: int) -> None:
    # GIVEN a landed object with metadata of its own
    data = os.urandom(size)
    s3.put_object(Bucket="landing", Key="sales/a.jsonl", Body=data, Metadata={"kept": "no"})

    # WHEN it is copied as the ingestion keeps an original, with new metadata
    copied = s3.copy_object(
        Bucket="raw",
        Key="_originals/a.jsonl",
        CopySource={"Bucket": "landing", "Key": "sales/a.jsonl"},
        IfNoneMatch="*",
        Metadata={"dataset": "sales"},
        MetadataDirective="REPLACE",
    )

    # THEN the copy holds the same bytes, its ETag is their MD5 (the source's), and it carries the new metadata
    head = s3.head_object(Bucket="raw", Key="_originals/a.jsonl")
    assert _body(s3, "raw", "_originals/a.jsonl") == data
    assert copied["CopyObjectResult"]["ETag"] == head["ETag"] == _md5_etag(data)
    assert head["ETag"] == s3.head_object(Bucket="landing", Key="sales/a.jsonl")["ETag"]
    assert head["ContentLength"] == size and head["Metadata"] == {"dataset": "sales"}


def test_a_copy_is_its_own_object_once_made(s3: S3Client) -> None:
    # GIVEN a big object and its copy
    data = os.urandom(BIG)
    s3.put_object(Bucket="landing", Key="k", Body=data)
    s3.copy_object(Bucket="raw", Key="k", CopySource={"Bucket": "landing", "Key": "k"})

    # WHEN the source is overwritten, then deleted
    s3.put_object(Bucket="landing", Key="k", Body=b"other")
    s3.delete_object(Bucket="landing", Key="k")

    # THEN the copy keeps its bytes; and a copy of the copy has them too (a source read as a value elsewhere is real)
    assert _body(s3, "raw", "k") == data
    s3.copy_object(Bucket="raw", Key="k2", CopySource={"Bucket": "raw", "Key": "k"})
    assert _body(s3, "raw", "k2") == _body(s3, "raw", "k") == data


def test_a_copy_of_a_multipart_upload_hashes_its_content(s3: S3Client) -> None:
    # GIVEN an object uploaded in two parts (its ETag is not its content's MD5)
    parts = [os.urandom(5 * 1024 * 1024), os.urandom(4 * 1024 * 1024 + 1)]
    upload = s3.create_multipart_upload(Bucket="landing", Key="mp")["UploadId"]
    done = [
        {
            "PartNumber": n,
            "ETag": s3.upload_part(Bucket="landing", Key="mp", UploadId=upload, PartNumber=n, Body=p)["ETag"],
        }
        for n, p in enumerate(parts, 1)
    ]
    s3.complete_multipart_upload(Bucket="landing", Key="mp", UploadId=upload, MultipartUpload={"Parts": done})
    assert s3.head_object(Bucket="landing", Key="mp")["ETag"].endswith('-2"')

    # WHEN it is copied
    s3.copy_object(Bucket="raw", Key="mp", CopySource={"Bucket": "landing", "Key": "mp"})

    # THEN the copy has the bytes, and an ETag that is their MD5, as a single-part object's
    data = b"".join(parts)
    assert _body(s3, "raw", "mp") == data
    assert s3.head_object(Bucket="raw", Key="mp")["ETag"] == _md5_etag(data)


def test_a_copy_of_an_older_version_copies_that_version(s3: S3Client) -> None:
    # GIVEN a versioned bucket with two versions of one key
    s3.put_bucket_versioning(Bucket="landing", VersioningConfiguration={"Status": "Enabled"})
    first, second = os.urandom(BIG), os.urandom(SMALL)
    old = s3.put_object(Bucket="landing", Key="v", Body=first)["VersionId"]
    s3.put_object(Bucket="landing", Key="v", Body=second)

    # WHEN the older version is copied
    s3.copy_object(Bucket="raw", Key="v", CopySource={"Bucket": "landing", "Key": "v", "VersionId": old})

    # THEN the copy is that version's bytes, and both versions stay as they were
    assert _body(s3, "raw", "v") == first
    assert _body(s3, "landing", "v", old) == first and _body(s3, "landing", "v") == second

"""The AWS clients the engine uses, built once per process from a boto3 session."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from datalake.exceptions import TerminalError, TransientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.service_resource import DynamoDBServiceResource
    from mypy_boto3_events.client import EventBridgeClient
    from mypy_boto3_glue.client import GlueClient
    from mypy_boto3_lakeformation.client import LakeFormationClient
    from mypy_boto3_s3.client import S3Client

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=60)
_BUILDING = threading.Lock()
"""Held while a client is built: a boto3 session is not safe to build clients from in two threads at once, and the
engine's worker threads may be the first to ask for one."""


@dataclass(frozen=True)
class AwsClients:
    """The engine's AWS clients, sharing one session (and so one endpoint, credentials and loaded service models),
    each built once per process on first use.

    A handler builds this object at module level, so a function pays for the clients it calls and no others: a
    function that never sends an event builds no EventBridge client, one that reads only DynamoDB loads no S3 model.
    """

    session: boto3.Session

    @classmethod
    def from_session(cls, session: boto3.Session | None = None) -> AwsClients:
        """The clients of `session` (a new default session when none); the endpoint comes from the standard
        `AWS_ENDPOINT_URL` variables when set."""
        return cls(session=session or boto3.Session())

    @cached_property
    def s3(self) -> S3Client:
        """The S3 client."""
        with _BUILDING:
            return self.session.client("s3", config=_CONFIG)

    @cached_property
    def dynamodb(self) -> DynamoDBServiceResource:
        """The DynamoDB resource (tables)."""
        with _BUILDING:
            return self.session.resource("dynamodb", config=_CONFIG)

    @cached_property
    def dynamodb_client(self) -> DynamoDBClient:
        """The low-level DynamoDB client (typed attribute values), for a library that wants one: the idempotency store.
        The resource's own client is not: the resource converts every call's values."""
        with _BUILDING:
            return self.session.client("dynamodb", config=_CONFIG)

    @cached_property
    def events(self) -> EventBridgeClient:
        """The EventBridge client."""
        with _BUILDING:
            return self.session.client("events", config=_CONFIG)

    @cached_property
    def glue(self) -> GlueClient:
        """The Glue client (the catalog)."""
        with _BUILDING:
            return self.session.client("glue", config=_CONFIG)

    @cached_property
    def lakeformation(self) -> LakeFormationClient:
        """The Lake Formation client (LF-Tags)."""
        with _BUILDING:
            return self.session.client("lakeformation", config=_CONFIG)


def read_object(s3: S3Client, bucket: str, key: str) -> bytes | None:
    """The object's bytes, or None when there is no such object.

    Raises
    ------
    TransientError, TerminalError
        When S3 fails otherwise than with a missing object.
    """
    try:
        body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if error_code(exc) in {"NoSuchKey", "404"}:
            return None
        raise aws_error(exc, f"reading s3://{bucket}/{key}") from exc
    return body


def error_code(exc: Any) -> str:
    """The AWS error code of a botocore `ClientError`."""
    return str(exc.response.get("Error", {}).get("Code", ""))


TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "SlowDown",
        "InternalError",
        "InternalServerError",
        "InternalFailure",
    }
)


def aws_error(exc: Any, doing: str) -> TransientError | TerminalError:
    """Our error for a failed AWS call (a botocore `ClientError`): `TransientError` when its code is worth retrying
    (the ASL `Retry` lists it), else `TerminalError`. The one mapping of AWS errors in the engine."""
    code = error_code(exc)
    cls = TransientError if code in TRANSIENT_CODES else TerminalError
    return cls(f"{doing}: {code or exc}")

"""Lambda handler: ingest an object dropped in the landing bucket (S3 "Object Created" via EventBridge)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import PydanticSerializer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from datalake.aws import AwsClients
from datalake.ingest import IngestStatus, Manifest, ObjectRef, ingest_object
from datalake.settings import Settings

logger = Logger()
# Only the AWS SDK: this function calls nothing else a tracer could patch, and patching everything would import
# requests, sqlite3 and the SQL drivers the SDK for pandas layer ships just to wrap them.
tracer = Tracer(patch_modules=("botocore",))
metrics = Metrics()
settings = Settings()
clients = AwsClients.from_session()
idempotency = IdempotencyConfig(
    event_key_jmespath="[bucket, key, version_id || etag]", expires_after_seconds=settings.idempotency_ttl_seconds
)
idempotency_table = settings.require("idempotency_table")


@functools.cache
def persistence() -> DynamoDBPersistenceLayer:
    """The idempotency store, on the session's low-level DynamoDB client, built with the first event: init builds no
    AWS client (the engine's clients too are built on first use)."""
    return DynamoDBPersistenceLayer(table_name=idempotency_table, boto3_client=clients.dynamodb_client)


@functools.cache
def ingest() -> Callable[..., Manifest]:
    """`ingest_object` at most once per object version (a redelivered event returns the stored manifest)."""

    @idempotent_function(  # type: ignore[untyped-decorator]
        data_keyword_argument="ref",
        config=idempotency,
        persistence_store=persistence(),
        output_serializer=PydanticSerializer(model=Manifest),
    )
    def once(ref: ObjectRef) -> Manifest:
        return ingest_object(ref, settings=settings, clients=clients)

    return once  # type: ignore[no-any-return]


@logger.inject_lambda_context(correlation_id_path="id", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=S3EventNotificationEventBridgeModel)
def lambda_handler(event: S3EventNotificationEventBridgeModel, context: LambdaContext) -> dict[str, Any]:
    """Ingest the object the event names and return its manifest."""
    idempotency.register_lambda_context(context)
    obj = event.detail.object
    ref = ObjectRef.from_event_key(event.detail.bucket.name, obj.key, obj.version_id, obj.etag, obj.size)
    manifest = ingest()(ref=ref)
    metrics.add_dimension(name="dataset", value=manifest.dataset or "_unknown")
    metrics.add_metric(name="RecordsRead", unit=MetricUnit.Count, value=manifest.records_read)
    metrics.add_metric(name="RecordsLanded", unit=MetricUnit.Count, value=manifest.records_landed)
    metrics.add_metric(name="RecordsQuarantined", unit=MetricUnit.Count, value=manifest.records_quarantined)
    metrics.add_metric(
        name="DuplicateObjects", unit=MetricUnit.Count, value=int(manifest.status is IngestStatus.DUPLICATE)
    )
    logger.info("ingested", extra={"manifest": manifest.model_dump(mode="json", exclude={"output_keys"})})
    document: dict[str, Any] = manifest.model_dump(mode="json")
    return document

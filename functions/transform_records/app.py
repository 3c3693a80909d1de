"""Lambda handler: Firehose data transformation that applies the stream's contract to each record."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import KinesisFirehoseEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from datalake.aws import AwsClients
from datalake.firehose import transform_batch
from datalake.settings import Settings

logger = Logger()
tracer = Tracer()
metrics = Metrics()
settings = Settings()
clients = AwsClients.from_session()


@logger.inject_lambda_context(correlation_id_path="invocationId", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_source(data_class=KinesisFirehoseEvent)
def lambda_handler(event: KinesisFirehoseEvent, context: LambdaContext) -> dict[str, Any]:
    """Return each record `Ok` (with partition keys), `ProcessingFailed` (fails the contract) or `Dropped` (repeat)."""
    response, counts, manifest = transform_batch(event, settings=settings, clients=clients)
    metrics.add_dimension(name="dataset", value=manifest.dataset)
    metrics.add_metric(name="RecordsRead", unit=MetricUnit.Count, value=manifest.records_read)
    metrics.add_metric(name="RecordsTransformed", unit=MetricUnit.Count, value=counts.ok)
    metrics.add_metric(name="RecordsQuarantined", unit=MetricUnit.Count, value=counts.failed)
    metrics.add_metric(name="DuplicatesDropped", unit=MetricUnit.Count, value=counts.dropped)
    logger.info("transformed", extra={"manifest": manifest.model_dump(mode="json")})
    result: dict[str, Any] = response.asdict()
    return result

"""Lambda handler: ingest a batch of stream records (Kinesis Data Streams or Amazon MSK) into raw and quarantine."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from datalake.aws import AwsClients
from datalake.settings import Settings
from datalake.streaming import batch_dataset, ingest_batch

logger = Logger()
tracer = Tracer()
metrics = Metrics()
settings = Settings()
clients = AwsClients.from_session()
COUNTS = {
    "RecordsRead": "records_read",
    "RecordsLanded": "records_landed",
    "RecordsQuarantined": "records_quarantined",
    "DuplicatesDropped": "duplicates_dropped",
    "RecordsReplayed": "records_replayed",
    "RecordsRetried": "records_failed",
}


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Validate and land the batch; report only records whose output could not be written as batch item failures."""
    dataset = batch_dataset(event, settings.stream_prefix)
    response, manifests = ingest_batch(event, dataset, settings=settings, clients=clients, context=context)
    metrics.add_dimension(name="dataset", value=dataset.name)
    for metric, count in COUNTS.items():
        metrics.add_metric(name=metric, unit=MetricUnit.Count, value=sum(getattr(m, count) for m in manifests))
    logger.info(
        "ingested", extra={"manifests": [m.model_dump(mode="json", exclude={"output_keys"}) for m in manifests]}
    )
    return response

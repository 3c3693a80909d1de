"""Lambda handler: the scheduled pull of new records from the source API into the landing bucket."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from datalake.api_pull import PullEvent, pull_to_landing, run_id_for, source_api_from_secret
from datalake.aws import AwsClients
from datalake.settings import Settings

logger = Logger()
tracer = Tracer()
metrics = Metrics()
settings = Settings()
clients = AwsClients.from_session()
secrets = SecretsProvider(boto3_session=clients.session)
SAFETY_MARGIN_SECONDS = 60


@logger.inject_lambda_context(correlation_id_path="id", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=PullEvent)
def lambda_handler(event: PullEvent, context: LambdaContext) -> dict[str, Any]:
    """Pull what changed since the watermark (the run named by the scheduled time) and land it as one object."""
    dataset = str(event.detail.dataset)
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - SAFETY_MARGIN_SECONDS
    api = source_api_from_secret(settings, secrets)
    result = pull_to_landing(
        run_id_for(event.time), dataset=dataset, api=api, settings=settings, clients=clients, deadline=deadline
    )
    metrics.add_dimension(name="dataset", value=dataset)
    metrics.add_metric(name="RecordsPulled", unit=MetricUnit.Count, value=result.records)
    metrics.add_metric(name="PagesPulled", unit=MetricUnit.Count, value=result.pages)
    logger.info("pulled", extra={"result": result.model_dump(mode="json")})
    return result.model_dump(mode="json")

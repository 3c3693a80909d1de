"""Lambda handler: the scheduled pull of new records from the source API into the landing bucket."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from datalake.api_pull import SourceApi, pull_to_landing, run_id_for, token_from_secret
from datalake.aws import AwsClients
from datalake.contracts import get_dataset
from datalake.exceptions import TerminalError
from datalake.settings import Settings

logger = Logger()
tracer = Tracer()
metrics = Metrics()
settings = Settings()
clients = AwsClients.from_session()
secrets = SecretsProvider(boto3_session=clients.session)
SECRET_MAX_AGE_SECONDS = 300
SAFETY_MARGIN_SECONDS = 60


class PullDetail(BaseModel):
    """The schedule's input detail: which dataset to pull (the API resource and landing prefix)."""

    dataset: str = "sales"
    attempt: str | None = None


class PullEvent(EventBridgeModel):
    """The scheduled event: an EventBridge-shaped input whose `time` is the scheduled time."""

    detail: PullDetail


def source_api() -> SourceApi:
    """The source API with its token from Secrets Manager (cached for a few minutes across invocations)."""
    name = settings.require("source_api_secret_name")
    try:
        secret = secrets.get(name, max_age=SECRET_MAX_AGE_SECONDS)
    except GetParameterError as exc:
        raise TerminalError(f"reading secret {name}: {exc}") from exc
    text = secret.decode() if isinstance(secret, bytes) else str(secret)
    return SourceApi(
        base_url=settings.require("source_api_base_url"),
        token=token_from_secret(text),
        page_size=settings.source_api_page_size,
        timeout_seconds=settings.source_api_timeout_seconds,
    )


@logger.inject_lambda_context(correlation_id_path="id", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=PullEvent)
def lambda_handler(event: PullEvent, context: LambdaContext) -> dict[str, Any]:
    """Pull what changed since the watermark (the run named by the scheduled time) and land it as one object."""
    dataset = get_dataset(event.detail.dataset).name
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - SAFETY_MARGIN_SECONDS
    result = pull_to_landing(
        run_id_for(event.time), dataset=dataset, api=source_api(), settings=settings, clients=clients, deadline=deadline
    )
    metrics.add_dimension(name="dataset", value=dataset)
    metrics.add_metric(name="RecordsPulled", unit=MetricUnit.Count, value=result.records)
    metrics.add_metric(name="PagesPulled", unit=MetricUnit.Count, value=result.pages)
    logger.info("pulled", extra={"result": result.model_dump(mode="json")})
    return result.model_dump(mode="json")

"""Lambda handler: the pipeline's quality gate on the processed partitions a run wrote, before curation."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from datalake.aws import AwsClients
from datalake.quality import QualityGateRequest, check_quality
from datalake.settings import Settings

logger = Logger()
tracer = Tracer()
settings = Settings()
clients = AwsClients.from_session()


@logger.inject_lambda_context(correlation_id_path="execution_id", clear_state=True)
@tracer.capture_lambda_handler
@event_parser(model=QualityGateRequest)
def lambda_handler(event: QualityGateRequest, context: LambdaContext) -> dict[str, Any]:
    """Check the run's datasets; return the report, or raise `QualityGateFailed` carrying it."""
    report = check_quality(clients.session, settings, event.datasets, event.run_id, now=event.as_of)
    logger.info("quality gate passed", extra={"run_id": event.run_id, "datasets": event.datasets})
    document: dict[str, Any] = report.model_dump(mode="json")
    return document

"""Lambda handler: plan the Athena statements that rebuild the curated tables for a pipeline run."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from datalake.aws import AwsClients
from datalake.curation import CurationRequest, plan_curation
from datalake.settings import Settings

logger = Logger()
tracer = Tracer()
settings = Settings()
clients = AwsClients.from_session()


@logger.inject_lambda_context(correlation_id_path="execution_id", clear_state=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Return `{"queries": [{"name", "table", "step", "query"}, …]}` to run in order, with the dates they rebuild."""
    plan = plan_curation(CurationRequest.model_validate(event), settings=settings, clients=clients)
    logger.info(
        "curation planned", extra={"dates": len(plan.dates), "changed": plan.changed, "queries": len(plan.queries)}
    )
    document: dict[str, Any] = plan.model_dump(mode="json")
    return document

"""Lambda handler: plan the Athena statements that rebuild the curated tables for a pipeline run."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from datalake.aws import AwsClients
from datalake.curation import CurationRequest, plan_curation
from datalake.observability import HELD_TABLES_METRIC
from datalake.settings import Settings

logger = Logger()
tracer = Tracer()
settings = Settings()
clients = AwsClients.from_session()
DIMENSIONS = {"service": "plan_curation"}


@logger.inject_lambda_context(correlation_id_path="execution_id", clear_state=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Return the statements as waves of tables to build at once (`waves`), what they rebuild, what is held, and the
    ledger to write.

    The statements are in the answer once: the plan's flat `queries` (the same statements in one order) is left
    out, so a backfill's plan stays twice as far from the 256 KB a Lambda answer and a state may hold."""
    plan = plan_curation(CurationRequest.model_validate(event), settings=settings, clients=clients)
    logger.info(
        "curation planned",
        extra={
            "dates": len(plan.dates),
            "tables": plan.tables,
            "held": [held.table for held in plan.held],
            "queries": len(plan.queries),
        },
    )
    with single_metric(HELD_TABLES_METRIC, MetricUnit.Count, len(plan.held), default_dimensions=DIMENSIONS):
        pass
    document: dict[str, Any] = plan.model_dump(mode="json", exclude={"queries"})
    return document

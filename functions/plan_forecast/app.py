"""Lambda handler: plan the sales forecast step of a pipeline run (export, SageMaker job names, publication)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from datalake.aws import AwsClients
from datalake.forecast import ForecastRequest, plan_forecast_run
from datalake.settings import Settings

logger = Logger()
tracer = Tracer()
settings = Settings()
clients = AwsClients.from_session()


@logger.inject_lambda_context(correlation_id_path="execution_id", clear_state=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Return the forecast plan: export statements, job base name, S3 locations, publish statements, and whether
    the published forecast was trained on this very input (then the run skips training)."""
    request = ForecastRequest.model_validate(event)
    plan = plan_forecast_run(
        request, database=settings.glue_database, curated_bucket=settings.require("curated_bucket"), s3=clients.s3
    )
    logger.info(
        "forecast planned",
        extra={"job": plan.training_job_name, "window_start": str(plan.training_start), "unchanged": plan.unchanged},
    )
    document: dict[str, Any] = plan.model_dump(mode="json")
    return document

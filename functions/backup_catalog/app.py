"""Lambda handler: export the lake's Glue catalog (database, tables, partitions) to the artifacts bucket."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from datalake.aws import AwsClients
from datalake.catalog_backup import backup_catalog
from datalake.settings import Settings

logger = Logger()
tracer = Tracer()
settings = Settings()
clients = AwsClients.from_session()


@logger.inject_lambda_context(correlation_id_path="id", clear_state=True)
@tracer.capture_lambda_handler
@event_parser(model=EventBridgeModel)
def lambda_handler(event: EventBridgeModel, context: LambdaContext) -> dict[str, Any]:
    """Write one export, named by the schedule's time; return where it went and what it holds."""
    summary = backup_catalog(clients, settings, now=event.time)
    logger.info("catalog backed up", extra={"backup": summary.model_dump()})
    document: dict[str, Any] = summary.model_dump(mode="json")
    return document

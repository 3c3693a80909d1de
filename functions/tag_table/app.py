"""Lambda handler: tag each new catalog table with its zone (LF-Tag zone) when Glue reports it created."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from datalake.aws import AwsClients
from datalake.governance import CatalogChange, tag_tables
from datalake.settings import Settings

logger = Logger()
tracer = Tracer()
settings = Settings()
clients = AwsClients.from_session()


class CatalogChangeEvent(EventBridgeModel):
    """A "Glue Data Catalog Database State Change" event."""

    detail: CatalogChange


@logger.inject_lambda_context(correlation_id_path="id", clear_state=True)
@tracer.capture_lambda_handler
@event_parser(model=CatalogChangeEvent)
def lambda_handler(event: CatalogChangeEvent, context: LambdaContext) -> dict[str, Any]:
    """Tag the event's created tables; return what each got."""
    tagged = tag_tables(clients, settings, event.detail.database_name, event.detail.changed_tables)
    logger.info("zone tags", extra={"tables": [t.model_dump() for t in tagged]})
    return {"database": event.detail.database_name, "tables": [t.model_dump() for t in tagged]}

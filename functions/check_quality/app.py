"""Lambda handler: the pipeline's quality gate on the processed partitions a run wrote, before curation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from datalake.aws import AwsClients
from datalake.observability import FRESHNESS_METRIC, freshness_seconds
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
    """Check the run's datasets; return the report, which names the datasets held back (ADR 0017)."""
    report = check_quality(clients, settings, event.datasets, event.run_id, now=event.as_of)
    held = [d.dataset for d in report.datasets if not d.passed]
    logger.info("quality gate checked", extra={"run_id": event.run_id, "datasets": event.datasets, "held": held})
    document: dict[str, Any] = report.model_dump(mode="json")
    record_freshness(document)
    return document


def record_freshness(report: Mapping[str, Any]) -> None:
    """Emit each dataset's freshness (the age of its newest processed event) for its freshness alarm."""
    for dataset, seconds in freshness_seconds(report).items():
        dimensions = {"service": "check_quality", "dataset": dataset}
        with single_metric(FRESHNESS_METRIC, MetricUnit.Seconds, seconds, default_dimensions=dimensions):
            pass

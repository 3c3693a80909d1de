"""Every sample event in events/ is real-shaped: it parses with the model its function parses it with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from tests.conftest import EVENTS


def _model_for(function: str) -> type[BaseModel]:
    from aws_lambda_powertools.utilities.parser import models

    from datalake.forecast import ForecastRequest

    event_models: dict[str, type[BaseModel]] = {
        "ingest_file": models.S3EventNotificationEventBridgeModel,
        "ingest_stream": models.KinesisDataStreamModel,
        "ingest_stream_kafka": models.KafkaMskEventModel,
        "transform_records": models.KinesisFirehoseModel,
        "ingest_api": models.EventBridgeModel,
        "plan_forecast": ForecastRequest,
    }
    if function not in event_models:
        pytest.fail(f"events/{function}/ has no model registered in {__file__}")
    return event_models[function]


SAMPLES = sorted(EVENTS.glob("*/*.json"))


def test_there_are_sample_events() -> None:
    assert SAMPLES


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sample_event_parses_with_its_model(path: Path) -> None:
    folder = path.parent.name
    model = _model_for("ingest_stream_kafka" if folder == "ingest_stream" and "kafka" in path.name else folder)
    model.model_validate(json.loads(path.read_text()))

"""The forecast step's plan: job names SageMaker accepts, the training window, locations and statements."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pydantic import ValidationError

from datalake.forecast import (
    RECORD_KEY,
    ForecastRequest,
    job_base_name,
    plan_forecast,
    plan_forecast_run,
    training_sources,
)


def plan(**request: Any) -> Any:
    values = {"run_id": "lakebox-3f2a", "as_of": "2026-11-20", **request}
    return plan_forecast(ForecastRequest.model_validate(values), database="data_lake_db", curated_bucket="curated-b")


def test_plan_names_every_location_under_the_run_and_excludes_the_partial_day() -> None:
    found = plan(forecast_horizon="21", training_days=90)
    assert found.training_job_name == "sales-forecast-lakebox-3f2a"
    assert (found.training_start, found.training_end) == (dt.date(2026, 8, 22), dt.date(2026, 11, 19))
    assert found.training_uri == "s3://curated-b/_ml/sales_forecast/training/lakebox_3f2a/"
    assert found.checkpoint_uri == "s3://curated-b/_ml/sales_forecast/checkpoints/lakebox_3f2a/"
    assert found.request_uri + "request.jsonl" == "s3://curated-b/" + found.request_key
    assert found.output_uri == "s3://curated-b/sales_forecast/runs/lakebox_3f2a/"
    assert found.request == {"horizon": 21}
    assert found.hyperparameters == {"horizon": "21"}


def test_export_is_a_ctas_of_complete_days_into_the_training_channel() -> None:
    found = plan()
    assert [s.step for s in found.export] == ["clean", "export", "cleanup"]
    export = found.export[1].query
    assert "CREATE TABLE data_lake_db.sales_forecast_training__lakebox_3f2a" in export
    assert "external_location = 's3://curated-b/_ml/sales_forecast/training/lakebox_3f2a/'" in export
    assert "d.sale_date >= DATE '2025-11-20' AND d.sale_date < DATE '2026-11-20'" in export
    assert (
        found.export[0].query
        == found.export[2].query
        == ("DROP TABLE IF EXISTS data_lake_db.sales_forecast_training__lakebox_3f2a")
    )


def test_publish_creates_the_table_then_points_it_at_the_run_output() -> None:
    table, publish = plan().publish
    assert "CREATE EXTERNAL TABLE IF NOT EXISTS data_lake_db.sales_forecast" in table.query
    assert "org.openx.data.jsonserde.JsonSerDe" in table.query
    assert publish.query == (
        "ALTER TABLE data_lake_db.sales_forecast SET LOCATION 's3://curated-b/sales_forecast/runs/lakebox_3f2a/'"
    )


@pytest.mark.parametrize(
    ("run_id", "expected"),
    [
        ("8c1f_2026-11-20T02:00:00Z", "sales-forecast-8c1f-2026-11-20t02-00-00z"),
        ("a" * 80, "sales-forecast-" + "a" * 26 + "-" + hashlib.sha256(b"a" * 80).hexdigest()[:8]),
        ("--x--", "sales-forecast-x"),
    ],
)
def test_job_names_are_valid_sagemaker_names_with_room_for_retries(run_id: str, expected: str) -> None:
    name = job_base_name(run_id)
    assert name == expected
    assert len(name) <= 50 and "--" not in name


@pytest.mark.parametrize("bad", [{"forecast_horizon": 0}, {"forecast_horizon": 400}, {"training_days": 7}])
def test_out_of_range_options_are_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ForecastRequest.model_validate({"run_id": "r", **bad})


def test_handler_returns_the_plan_for_the_sample_pipeline_event(
    monkeypatch: pytest.MonkeyPatch, lambda_context: Any
) -> None:
    # GIVEN the function's environment and the payload the state machine sends
    import importlib.util
    from pathlib import Path

    from tests.conftest import load_event

    monkeypatch.setenv("DL_CURATED_BUCKET", "curated-b")
    monkeypatch.setenv("DL_GLUE_DATABASE", "data_lake_db")
    path = Path(__file__).resolve().parents[2] / "functions" / "plan_forecast" / "app.py"
    spec = importlib.util.spec_from_file_location("plan_forecast_app", path)
    assert spec is not None and spec.loader is not None
    app = importlib.util.module_from_spec(spec)
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="curated-b")
        spec.loader.exec_module(app)

        # WHEN it is invoked
        document = app.lambda_handler(load_event("plan_forecast/pipeline_run"), lambda_context)

    # THEN it answers with JSON the state machine reads: a valid job name, the request and the statements
    assert (
        document["training_job_name"]
        == "sales-forecast-8c1f0d2e-5b7a-4c1e-9f3b-2a-"
        + hashlib.sha256(b"8c1f0d2e-5b7a-4c1e-9f3b-2a6d7e8f9a0b").hexdigest()[:8]
    )
    assert document["request"] == {"horizon": 14}
    assert [s["step"] for s in document["export"]] == ["clean", "export", "cleanup"]
    assert document["training_uri"].startswith("s3://curated-b/_ml/sales_forecast/training/")
    # AND, no forecast being published yet, it is to be trained
    assert (document["unchanged"], document["previous"]) == (False, None)
    assert len(document["fingerprint"]) == 64


# --- skipping training when nothing changed (ADR 0025) -----------------------------------------------------------


@pytest.fixture
def s3() -> Iterator[Any]:
    """A curated bucket holding one built partition of daily_sales_by_region."""
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="curated-b")
        client.put_object(
            Bucket="curated-b", Key="daily_sales_by_region/runs/r1/sale_date=2026-11-01/part-0", Body=b"1"
        )
        yield client


def plan_run(s3: Any, **request: Any) -> Any:
    values = {"run_id": "lakebox-3f2a", "as_of": "2026-11-20", **request}
    return plan_forecast_run(
        ForecastRequest.model_validate(values), database="data_lake_db", curated_bucket="curated-b", s3=s3
    )


def publish(s3: Any, fingerprint: str) -> None:
    """What the state machine's Record Forecast writes once a forecast is published."""
    record = {"status": "SUCCEEDED", "model_version": "sales-forecast-r1-0", "fingerprint": fingerprint}
    s3.put_object(Bucket="curated-b", Key=RECORD_KEY, Body=json.dumps(record).encode())


def test_the_forecast_is_unchanged_when_its_input_is_the_published_ones(s3: Any) -> None:
    # GIVEN a forecast published from the current curated input, for the same day
    publish(s3, plan_run(s3).fingerprint)

    # WHEN the next run plans its forecast
    found = plan_run(s3, run_id="lakebox-next")

    # THEN it is unchanged, naming the published forecast
    assert found.unchanged is True
    assert found.previous["model_version"] == "sales-forecast-r1-0"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"as_of": "2026-11-21"}, "a new day moves the window"),
        ({"forecast_horizon": 21}, "another horizon"),
        ({"training_days": 90}, "another window length"),
        ({"retrain": True}, "asked to retrain"),
        ({"rebuilt": True}, "a curated partition rebuilt"),
    ],
)
def test_the_forecast_is_trained_again_when_its_input_changed(s3: Any, change: dict[str, Any], why: str) -> None:
    # GIVEN a forecast published from the current curated input
    publish(s3, plan_run(s3).fingerprint)

    # WHEN something it trains on changes
    if change.pop("rebuilt", False):
        s3.put_object(Bucket="curated-b", Key="daily_sales_by_region/runs/r2/sale_date=2026-11-01/part-0", Body=b"2")

    # THEN the next run trains again
    assert plan_run(s3, **change).unchanged is False, why


def test_other_curated_tables_do_not_change_the_forecast_input(s3: Any) -> None:
    # GIVEN a published forecast WHEN a table the training does not read is rebuilt THEN it stays unchanged
    publish(s3, plan_run(s3).fingerprint)
    s3.put_object(Bucket="curated-b", Key="customer_aggregates/runs/r2/part-0", Body=b"2")
    assert training_sources() == ("daily_sales_by_region",)
    assert plan_run(s3).unchanged is True


def test_an_unreadable_record_means_training_again(s3: Any) -> None:
    # GIVEN a record without a fingerprint (an older pipeline's, or damaged) WHEN planning THEN it trains
    s3.put_object(Bucket="curated-b", Key=RECORD_KEY, Body=b'{"status": "SUCCEEDED"}')
    assert plan_run(s3).unchanged is False

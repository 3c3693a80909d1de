"""The scheduled pull through the local stack: the template's schedule, the sample source API, then ingest_file."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections.abc import Iterator
from typing import Any

import pytest

from lakebox.app.sample import SampleSpec
from lakebox.app.source_api import SourceApiServer, install_secret, sample_sales, serve
from lakebox.services.schedules import find, payload, schedules
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

SCHEDULE = "IngestApiFunction.DailyPull"


@pytest.fixture(scope="module")
def pulled() -> Iterator[tuple[Any, SourceApiServer]]:
    """The stack with its SourceApiBaseUrl pointing at a sample source API holding 1,500 sales."""
    from lakebox.runtime import lakebox

    spec = SampleSpec(seed=31, end=dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0))
    with (
        serve(sample_sales(spec, 1_500, start=900_000_000)) as api,
        lakebox(ROOT, trusted_parameters={"SourceApiBaseUrl": api.url}, reuse=False) as box,
    ):
        install_secret(box.session, str(box.stack.ref("SourceApiSecretName")), api.token)
        yield box, api


def _watermark(box: Any) -> str | None:
    table = box.session.resource("dynamodb").Table(box.stack.ref("WatermarksTable"))
    item = table.get_item(Key={"source": "sales-api"}).get("Item")
    return str(item["watermark"]) if item else None


def test_the_template_schedule_is_found_with_its_scheduler_input(pulled: tuple[Any, SourceApiServer]) -> None:
    box, _ = pulled
    schedule = find(box.stack, SCHEDULE)
    assert (schedule.kind, schedule.expression, schedule.target) == (
        "ScheduleV2",
        "cron(0 2 * * ? *)",
        "IngestApiFunction",
    )
    assert SCHEDULE in {s.name for s in schedules(box.stack)}
    event = payload(schedule, now=dt.datetime(2026, 11, 2, 2, 0, 3, tzinfo=dt.UTC))
    assert event["time"] == "2026-11-02T02:00:03Z" and event["detail"] == {"dataset": "sales", "attempt": "1"}
    assert event["account"] == "123456789012" and event["resources"][0].startswith("arn:aws:scheduler:")


def test_firing_the_schedule_lands_one_object_that_flows_through_ingest_file(
    pulled: tuple[Any, SourceApiServer],
) -> None:
    # GIVEN the sample source API and no watermark yet
    box, api = pulled
    # WHEN the schedule fires
    firing, landed = box.fire_schedule(SCHEDULE)
    # THEN the run lands every record in one landing object and moves the watermark
    assert firing.ok and firing.attempts == 1
    result = firing.result
    assert result["status"] == "LANDED" and result["records"] == api.records
    assert result["landing_key"].startswith("sales/api/") and _watermark(box) == result["watermark_after"]
    # AND the object's "Object Created" event runs ingest_file, whose counts reconcile with the pull
    [(key, delivery)] = landed
    assert key == result["landing_key"] and delivery.rule == "IngestFileFunction.LandingObjectCreated"
    manifest = delivery.result
    assert manifest["records_read"] == result["records"]
    assert manifest["records_landed"] + manifest["records_quarantined"] == result["records"]
    s3 = box.session.client("s3")
    raw_key = manifest["output_keys"][0]
    body = gzip.decompress(s3.get_object(Bucket=box.bucket("RawBucket"), Key=raw_key)["Body"].read())
    assert json.loads(body.splitlines()[0])["_source_key"] == key


def test_a_second_firing_with_nothing_new_lands_nothing(pulled: tuple[Any, SourceApiServer]) -> None:
    box, _ = pulled
    before = _watermark(box)
    firing, landed = box.fire_schedule(SCHEDULE)
    assert firing.ok and firing.result["status"] == "NO_NEW_RECORDS" and landed == []
    assert _watermark(box) == before


def test_a_failing_pull_is_retried_then_sent_to_the_failure_queue_and_keeps_the_watermark(
    pulled: tuple[Any, SourceApiServer],
) -> None:
    # GIVEN new sales at the source, which has rotated its token (the function still holds the old one)
    box, api = pulled
    before = _watermark(box)
    later = SampleSpec(seed=32, end=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))
    api.add([r for r in sample_sales(later, 50, start=950_000_000) if before and r["updated_at"] > before])
    token, api.token = api.token, "rotated"
    # WHEN the schedule fires
    try:
        firing, landed = box.fire_schedule(SCHEDULE)
    finally:
        api.token = token
    # THEN the function fails each attempt, the event goes to the failure queue, nothing lands, the watermark stays
    assert not firing.ok and "TerminalError" in (firing.error or "") and firing.attempts == 3
    assert landed == [] and _watermark(box) == before
    sqs = box.session.client("sqs")
    url = sqs.get_queue_url(QueueName=box.stack.get_att("IngestFailureQueue", "QueueName"))["QueueUrl"]
    message = json.loads(sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"])
    assert message["requestContext"]["condition"] == "RetriesExhausted"
    assert message["requestPayload"]["detail"]["dataset"] == "sales"

"""The template's alarms on the local stack: real invocations and executions recorded, then evaluated."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from lakebox.app.pipeline import execute
from lakebox.app.sample import SampleSpec, write_sales
from lakebox.services import alarms

pytestmark = pytest.mark.integration


def _states_since(box: Any, start: float) -> dict[str, alarms.AlarmState]:
    """Every alarm evaluated on what was recorded from `start` on (the store and logs outlive one test)."""
    points = [*box.metrics, *alarms.emf_datapoints(box.home.logs)]
    recent = [p for p in points if p.timestamp >= start]
    return {a.logical_id: alarms.evaluate(a, recent) for a in alarms.definitions(box.stack)}


def test_a_file_with_many_bad_records_fires_its_datasets_quarantine_alarm(local_stack: Any, tmp_path: Path) -> None:
    # GIVEN a sales file of which about 20 % of the records break the contract
    start = time.time() - 1
    generated = write_sales(tmp_path / "bad.jsonl", SampleSpec(sales=400, bad_rate=0.2, seed=5))
    # WHEN it is ingested through the template's rule and the real handler
    _, deliveries = local_stack.put_file(generated.path, "sales", key="sales/alarms/bad.jsonl")
    assert deliveries[0].result["records_quarantined"] == generated.bad > 40
    # THEN the handler's EMF metrics put SalesQuarantineRateAlarm in ALARM, at the file's own rate
    states = _states_since(local_stack, start)
    assert states["SalesQuarantineRateAlarm"].state == alarms.ALARM
    assert states["SalesQuarantineRateAlarm"].value == pytest.approx(100 * generated.bad / generated.records)
    assert states["ProductsQuarantineRateAlarm"].state == alarms.OK
    # AND the invocation succeeded, so the function's error rate stays at 0
    assert states["IngestFileFunctionErrorRateAlarm"].state == alarms.OK
    assert states["IngestFileFunctionErrorRateAlarm"].value == 0


def test_a_failed_execution_fires_the_runs_alarm(local_stack: Any) -> None:
    # GIVEN a run asked for an engine the pipeline does not know
    start = time.time() - 1
    execution = execute(local_stack, "PipelineStateMachine", {"datasets": ["sales"], "engine": "spark-on-mars"})
    # WHEN the executor has finished it  THEN it failed and the runs alarm reads that
    assert execution.status == "FAILED"
    states = _states_since(local_stack, start)
    assert states["PipelineExecutionsFailedAlarm"].state == alarms.ALARM
    assert states["PipelineExecutionsTimedOutAlarm"].state == alarms.OK


def test_a_raising_handler_counts_as_an_error_invocation(local_stack: Any) -> None:
    start = time.time() - 1
    with pytest.raises(Exception, match="validation error"):
        local_stack.lambdas.invoke("PlanCurationFunction", {"not": "a plan request"})
    states = _states_since(local_stack, start)
    assert states["PlanCurationFunctionErrorRateAlarm"].state == alarms.ALARM
    assert states["PlanCurationFunctionErrorRateAlarm"].value == 100


def _alarm_states(box: Any) -> list[alarms.AlarmState]:
    return alarms.alarm_states(box.stack, box.metrics, box.home.logs, box.session)


def test_dead_letter_queue_depth_is_sampled_from_the_running_endpoint(local_stack: Any) -> None:
    sqs = local_stack.session.client("sqs")
    url = str(local_stack.stack.get_att("IngestFailureQueue", "QueueUrl"))
    before = {s.name: s.state for s in _alarm_states(local_stack)}
    assert before["IngestFailureQueueDepthAlarm"] == alarms.OK
    sqs.send_message(QueueUrl=url, MessageBody='{"requestPayload": {}}')
    after = {s.name: s.state for s in _alarm_states(local_stack)}
    assert after["IngestFailureQueueDepthAlarm"] == alarms.ALARM
    assert after["StreamFailureQueueDepthAlarm"] == alarms.OK
    sqs.purge_queue(QueueUrl=url)


def test_local_athena_queries_feed_the_daily_scan_alarm(local_stack: Any) -> None:
    # GIVEN a budget of one byte a day  WHEN a query scans the lake through the stack's Athena
    from lakebox.cfn.stack import Stack
    from tests.conftest import ROOT

    start = time.time() - 1
    workgroup = str(local_stack.stack.ref("PrimaryWorkGroup"))
    local_stack.athena.query("SELECT 1 AS one", workgroup=workgroup)
    recorded = [p for p in local_stack.metrics if p.timestamp >= start and p.name == "ProcessedBytes"]
    # THEN the workgroup's ProcessedBytes is recorded, and the alarm reads it against the budget
    assert [p.dimensions for p in recorded] == [(("WorkGroup", workgroup),)]
    strict = Stack(ROOT, parameters={"AthenaDailyScanBudgetBytes": "1"})
    (alarm,) = [a for a in alarms.definitions(strict) if a.logical_id == "AthenaDailyBytesScannedAlarm"]
    scanned = [*recorded, alarms.Datapoint("AWS/Athena", "ProcessedBytes", (("WorkGroup", workgroup),), 10.0, start)]
    assert alarms.evaluate(alarm, scanned).state == alarms.ALARM
    assert alarms.evaluate(alarm, recorded).state == alarms.OK  # SELECT 1 reads no table: 0 bytes

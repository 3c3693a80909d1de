"""Curated is a function of processed, not of run history (ADR 0017): scenarios on one local lake.

Each scenario does something a data engineer's week brings (a gate that fails, a reference-only delivery, a run
killed in the middle of curation, a run stopped with Ctrl-C), then runs the pipeline as a user would, and ends with
the differential check: every curated table recomputed from the processed Parquet with DuckDB and compared row by
row with the published table (`tests/integration/differential.py`). The lake is shared: whatever a scenario leaves
behind is exactly the kind of history the next one must not depend on.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lakebox.errors import RunAborted
from lakebox.home.runs import list_runs
from lakebox.services import glue
from lakebox.services.alarms import alarm_states
from lakebox.sfn import CompressedClock, Execution, Fault, inject_faults, run_execution
from lakebox.sfn.errors import TaskError
from lakebox.sfn.integrations import glue_start_job_run_sync
from lakebox.sfn.registry import Handler, Integrations, TaskContext
from tests.integration.differential import curated_differences, published_table

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GLUE = "arn:aws:states:::glue:startJobRun.sync"
ATHENA = "arn:aws:states:::athena:startQueryExecution.sync"
LAMBDA = "arn:aws:states:::lambda:invoke"
DATASETS = ["sales", "products", "customers"]
SALES_HEADER = (
    "transaction_id,event_time,customer_id,product_id,store_id,region,quantity,unit_price,currency,"
    "payment_method,channel"
)
PRODUCTS_HEADER = "product_id,name,category,list_price,currency,active,updated_at"
CUSTOMERS_HEADER = "customer_id,name,segment,region,country,signup_date,updated_at"
NOW = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)


def at(hours_ago: float) -> str:
    """An event time `hours_ago` before the top of this hour, as producers write it."""
    return (NOW - dt.timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def sale(transaction: str, hours_ago: float, product: str = "P1", customer: str = "C1", quantity: int = 1) -> str:
    return f"{transaction},{at(hours_ago)},{customer},{product},S1,north,{quantity},10.50,EUR,card,store"


class Killed(BaseException):
    """What `kill -9` leaves of a run: it stops where it is, and nothing after it runs (not even a Catch)."""


class Lake:
    """The local stack, files put through the landing bucket, and the pipeline run as the deployed job would be."""

    def __init__(self, box: Any, folder: Path) -> None:
        self.box = box
        self.folder = folder
        self.definition, _ = box.stack.state_machine("PipelineStateMachine")
        self.arn = str(box.stack.ref("PipelineStateMachine"))
        self.files = 0
        sqs = box.session.client("sqs")
        self.inbox = sqs.create_queue(QueueName="ledger-alerts-inbox")["QueueUrl"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=self.inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        box.session.client("sns").subscribe(
            TopicArn=box.stack.ref("AlertsTopic"),
            Protocol="sqs",
            Endpoint=inbox_arn,
            Attributes={"RawMessageDelivery": "true"},
        )

    def put(self, dataset: str, header: str, rows: list[str]) -> None:
        self.files += 1
        path = self.folder / f"{dataset}-{self.files}.csv"
        path.write_text("\n".join([header, *rows]) + "\n")
        _, deliveries = self.box.put_file(path, dataset)
        assert all(d.ok for d in deliveries), deliveries

    def integrations(self, *faults: Fault) -> Integrations:
        integrations = self.box.integrations()
        integrations.register(GLUE, glue_start_job_run_sync(self.run_glue_job))
        return inject_faults(integrations, *faults) if faults else integrations

    def run(
        self, name: str, *faults: Fault, input: dict[str, Any] | None = None, integrations: Integrations | None = None
    ) -> Execution:
        return run_execution(
            self.definition,
            {"datasets": DATASETS, "forecast": False, **(input or {})},
            integrations or self.integrations(*faults),
            name=name,
            state_machine_arn=self.arn,
            clock=CompressedClock(),
        )

    def run_glue_job(self, job_name: str, arguments: dict[str, str]) -> dict[str, Any]:
        """The job as deployed, reading files the moment they land (the deployed job lets them settle)."""
        return glue.run_glue_job(self.box.session, job_name, {**arguments, "--settle_seconds": "0"})

    def run_item(self, name: str) -> dict[str, Any] | None:
        table = self.box.session.resource("dynamodb").Table(self.box.stack.ref("RunsTable"))
        item: dict[str, Any] | None = table.get_item(Key={"run_id": name}).get("Item")
        return item

    def alerts(self) -> list[dict[str, Any]]:
        sqs = self.box.session.client("sqs")
        found: list[dict[str, Any]] = []
        while messages := sqs.receive_message(QueueUrl=self.inbox, MaxNumberOfMessages=10).get("Messages", []):
            for message in messages:
                sqs.delete_message(QueueUrl=self.inbox, ReceiptHandle=message["ReceiptHandle"])
                found.append(json.loads(message["Body"]))
        return found

    def rows(self, table: str) -> list[dict[str, Any]]:
        columns, rows = published_table(self.box, table)
        return [dict(zip(columns, row, strict=True)) for row in rows]


@pytest.fixture(scope="module")
def lake(local_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    """A lake with a first delivery of every dataset, curated once."""
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("AWS_ENDPOINT_URL", local_stack.endpoint)  # the job's own catalog client
    lake = Lake(local_stack, tmp_path_factory.mktemp("deliveries"))
    try:
        lake.put("products", PRODUCTS_HEADER, ["P1,Lamp,home,19.90,EUR,true,2026-01-01T00:00:00Z"])
        lake.put("products", PRODUCTS_HEADER, ["P2,Desk,electronics,99.00,EUR,true,2026-01-01T00:00:00Z"])
        lake.put(
            "customers",
            CUSTOMERS_HEADER,
            [
                "C1,Ada,consumer,north,GB,2025-01-02T00:00:00Z,2026-01-01T00:00:00Z",
                "C2,Bob,enterprise,west,US,2025-01-02T00:00:00Z,2026-01-01T00:00:00Z",
            ],
        )
        lake.put("sales", SALES_HEADER, [sale("T1", 50), sale("T2", 26, "P2", "C2"), sale("T3", 2)])
        first = lake.run("first")
        assert first.status == "SUCCEEDED", (first.error, first.cause)
        assert curated_differences(local_stack) == []
        lake.alerts()
        yield lake
    finally:
        monkeypatch.undo()


@pytest.fixture(autouse=True)
def _local_endpoint(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    """The job's own boto3 clients (its catalog updates) reach the stack's endpoint, as in lakebox."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", lake.box.endpoint)


def assert_curated_is_processed(lake: Lake, execution: Execution) -> None:
    """The run ended SUCCEEDED, and every curated table equals its SQL over the processed zone as it stands."""
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert execution.output["status"] == "SUCCEEDED", execution.output.get("held")
    assert curated_differences(lake.box) == []


def test_a_gate_that_failed_the_run_is_caught_up_by_the_next_run(lake: Lake) -> None:
    # GIVEN new sales on a new date and an old one, and a run whose quality gate fails (the run FAILS)
    lake.put("sales", SALES_HEADER, [sale("T10", 74, "P2", "C2", 3), sale("T11", 3, quantity=2)])
    gate = Fault(LAMBDA, "QualityGateFailed", "sales.not_null: 3 rows", state="Check Quality")
    failed = lake.run("gate-crashes", gate)
    assert (failed.status, failed.error) == ("FAILED", "QualityGateFailed")

    # WHEN the next run finds nothing new to process
    recovery = lake.run("after-gate-crash")

    # THEN curated is processed again: the run rebuilt what the failed run processed
    assert_curated_is_processed(lake, recovery)
    assert {"daily_sales_by_region", "product_performance", "customer_aggregates"} <= set(recovery.output["tables"])


def test_a_dataset_failing_the_gate_is_held_then_released(lake: Lake) -> None:
    # GIVEN new sales, and a gate judging freshness ten days from now (sales is stale then)
    lake.put("sales", SALES_HEADER, [sale("T20", 1, "P2", "C1", 4)])
    later = (NOW + dt.timedelta(days=10)).isoformat()

    # WHEN the pipeline runs
    partial = lake.run("sales-stale", input={"as_of": later})

    # THEN the run is PARTIAL: the sales tables are held with the reason, in the output, the runs table, the alert
    assert partial.status == "SUCCEEDED", (partial.error, partial.cause)
    summary = partial.output
    assert summary["status"] == "PARTIAL"
    held = {h["table"]: h for h in summary["held"]}
    assert set(held) == {"daily_sales_by_region", "product_performance", "customer_daily_sales", "customer_aggregates"}
    assert held["daily_sales_by_region"]["datasets"] == ["sales"]
    assert any("freshness" in reason for reason in held["daily_sales_by_region"]["reasons"])
    item = lake.run_item("sales-stale")
    assert item is not None and item["status"] == "PARTIAL"
    (alert,) = [a for a in lake.alerts() if a.get("run_id") == "sales-stale"]
    assert alert["status"] == "PARTIAL" and alert["held_datasets"]["sales"]
    # AND the alarm on held tables fires
    states = {state.name: state.state for state in alarm_states(lake.box.stack, lake.box.metrics, lake.box.home.logs)}
    assert states["CuratedTablesHeldAlarm"] == "ALARM"
    # AND the held tables do not have T20 yet
    assert 4 not in {row["units"] for row in lake.rows("daily_sales_by_region")}

    # WHEN a later run passes sales (judged now)
    released = lake.run("sales-fresh")

    # THEN the held tables caught up, and curated is processed
    assert released.output["held"] == []
    assert_curated_is_processed(lake, released)


def test_a_reference_only_run_rebuilds_the_dates_that_look_it_up_point_in_time(lake: Lake) -> None:
    # GIVEN sales of P1 on two dates, before and after a moment inside the sales period
    lake.put("sales", SALES_HEADER, [sale("T30", 30, "P1", "C1", 5), sale("T31", 4, "P1", "C2", 6)])
    assert_curated_is_processed(lake, lake.run("sales-of-p1"))
    before, after = (NOW - dt.timedelta(hours=30)).date(), (NOW - dt.timedelta(hours=4)).date()
    # AND a new version of P1 (category books) valid from that moment, delivered alone
    lake.put("products", PRODUCTS_HEADER, [f"P1,Lamp,books,19.90,EUR,true,{at(20)}"])

    # WHEN a run names only products
    execution = lake.run("products-only", input={"datasets": ["products"]})

    # THEN product_performance was rebuilt: P1's sales after the new version are books, those before are not
    category = {
        row["sale_date"]: row["category"] for row in lake.rows("product_performance") if row["product_id"] == "P1"
    }
    assert (category[before], category[after]) == ("home", "books")
    assert_curated_is_processed(lake, execution)
    assert "product_performance" in execution.output["tables"]


def test_a_run_killed_in_the_middle_of_curation_is_caught_up_by_the_next(lake: Lake) -> None:
    # GIVEN new sales, and a run killed after its third curated statement (some tables published, others not)
    lake.put("sales", SALES_HEADER, [sale("T40", 6, "P2", "C2", 7), sale("T41", 98, "P1", "C1", 8)])
    integrations = lake.integrations()
    statements = [0]

    def kill_after_three(handler: Handler) -> Handler:
        def killing(parameters: Any, task: TaskContext) -> Any:
            if task.state_name == "Run Curated Query":
                statements[0] += 1
                if statements[0] > 3:
                    raise Killed
            return handler(parameters, task)

        return killing

    with pytest.raises(Killed):
        lake.run("killed", integrations=integrations.with_middleware(kill_after_three))
    assert lake.run_item("killed") is None  # nothing after the kill ran

    # WHEN the next run finds nothing new to process
    execution = lake.run("after-kill")

    # THEN curated is processed again
    assert_curated_is_processed(lake, execution)


def test_ctrl_c_during_a_run_records_it_aborted_and_the_next_run_picks_everything_up(lake: Lake) -> None:
    # GIVEN new sales, and Ctrl-C pressed while the Spark job runs, which then fails
    lake.put("sales", SALES_HEADER, [sale("T50", 7, "P2", "C1", 9)])
    lake.alerts()

    def ctrl_c_in_spark(handler: Handler) -> Handler:
        def interrupted(parameters: Any, task: TaskContext) -> Any:
            result = handler(parameters, task)
            if task.state_name != "Run Spark Job":
                return result
            # Ctrl-C, then the job fails: its Spark jobs were cancelled (or Py4J turned the interrupt into an error)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
            raise TaskError("States.TaskFailed", "Py4JError: An error occurred while calling o88.collectToPython")

        return interrupted

    # WHEN the run is started as `lakebox execute` starts it
    integrations = lake.integrations().with_middleware(ctrl_c_in_spark)
    name = f"ctrl-c-{uuid.uuid4().hex[:8]}"  # the box records runs where `lakebox runs` reads them
    with pytest.raises(RunAborted, match=f"{name} stopped by Ctrl-C and recorded ABORTED"):
        lake.box.execute(
            "PipelineStateMachine",
            {"datasets": DATASETS, "forecast": False},
            execution_name=name,
            integrations=integrations,
        )

    # THEN it is recorded ABORTED, took no failure path, sent no alert, and the failed-runs alarm stays quiet
    (run,) = [r for r in list_runs(lake.box.home.runs) if r["name"] == name]
    assert run["status"] == "ABORTED"
    assert not {"Glue Job Failed", "Record Failure", "Alert Failure"} & {s["state"] for s in run["states"]}
    assert lake.run_item(name) is None
    assert [a for a in lake.alerts() if a.get("run_id") == name] == []
    states = {state.name: state.state for state in alarm_states(lake.box.stack, lake.box.metrics, lake.box.home.logs)}
    assert states["PipelineExecutionsFailedAlarm"] != "ALARM"

    # WHEN the next run starts
    execution = lake.run("after-ctrl-c")

    # THEN it picked everything up: curated is processed
    assert_curated_is_processed(lake, execution)

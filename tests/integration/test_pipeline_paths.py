"""Named paths through the pipeline state machine on the whole local stack: Spark, DuckDB Athena, in-process Lambda."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lakebox.app.sample import SampleSpec, generate
from lakebox.services import glue
from lakebox.sfn import CompressedClock, Execution, Fault, inject_faults, run_execution
from lakebox.sfn.integrations import glue_start_job_run_sync

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GLUE = "arn:aws:states:::glue:startJobRun.sync"
ATHENA = "arn:aws:states:::athena:startQueryExecution.sync"
LAMBDA = "arn:aws:states:::lambda:invoke"
START_CRAWLER = "arn:aws:states:::aws-sdk:glue:startCrawler"
CURATED = ("daily_sales_by_region", "customer_aggregates", "product_performance")
DATASETS = ["sales", "products", "customers"]


class Pipeline:
    """The local stack with sample data landed, an alerts inbox, and a way to run the pipeline on it."""

    def __init__(self, box: Any) -> None:
        self.box = box
        self.definition, _ = box.stack.state_machine("PipelineStateMachine")
        self.arn = str(box.stack.ref("PipelineStateMachine"))
        self.athena = box.athena
        self.database = str(box.stack.parameters["GlueDatabaseName"])
        self.workgroup = str(box.stack.ref("AnalyticsWorkGroup"))
        sqs = box.session.client("sqs")
        self.inbox = sqs.create_queue(QueueName="pipeline-alerts-inbox")["QueueUrl"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=self.inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        box.session.client("sns").subscribe(
            TopicArn=box.stack.ref("AlertsTopic"),
            Protocol="sqs",
            Endpoint=inbox_arn,
            Attributes={"RawMessageDelivery": "true"},
        )

    def execute(self, name: str, *faults: Fault, input: dict[str, Any] | None = None) -> Execution:
        integrations = self.box.integrations()
        integrations.register(GLUE, glue_start_job_run_sync(self.run_glue_job))
        # The forecast needs weeks of history, more than this module lands: test_forecast_lakebox runs it.
        return run_execution(
            self.definition,
            {"forecast": False, **(input or {"datasets": DATASETS})},
            inject_faults(integrations, *faults) if faults else integrations,
            name=name,
            state_machine_arn=self.arn,
            clock=CompressedClock(),
        )

    def run_glue_job(self, job_name: str, arguments: dict[str, str]) -> dict[str, Any]:
        """The job as deployed, but reading files the moment they land (the deployed job lets them settle)."""
        return glue.run_glue_job(self.box.session, job_name, {**arguments, "--settle_seconds": "0"})

    def run_item(self, name: str) -> dict[str, Any]:
        table = self.box.session.resource("dynamodb").Table(self.box.stack.ref("RunsTable"))
        item: dict[str, Any] = table.get_item(Key={"run_id": name})["Item"]
        return item

    def alerts(self) -> list[dict[str, Any]]:
        sqs = self.box.session.client("sqs")
        messages = sqs.receive_message(QueueUrl=self.inbox, MaxNumberOfMessages=10).get("Messages", [])
        for message in messages:
            sqs.delete_message(QueueUrl=self.inbox, ReceiptHandle=message["ReceiptHandle"])
        return [json.loads(message["Body"]) for message in messages]

    def curated_objects(self) -> dict[str, str]:
        s3 = self.box.session.client("s3")
        objects: dict[str, str] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.box.bucket("CuratedBucket")):
            objects.update({item["Key"]: item["ETag"] for item in page.get("Contents", [])})
        return objects

    def row_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for table in CURATED:
            result = self.athena.query(
                f"SELECT count(*) FROM {table}", workgroup=self.workgroup, database=self.database
            )
            _, rows = result.to_rows()
            counts[table] = int(rows[0][0])
        return counts


@pytest.fixture(scope="module")
def pipeline(local_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """Sample data for the last days landed through the ingestion path, then the pipeline ready to run."""
    end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    spec = SampleSpec(sales=3_000, products=60, customers=300, clicks=100, days=3, end=end, seed=3)
    for generated in generate(Path(tmp_path_factory.mktemp("sample")), spec):
        _, deliveries = local_stack.put_file(generated.path, generated.dataset)
        assert all(delivery.ok for delivery in deliveries), deliveries
    yield Pipeline(local_stack)


@pytest.fixture(autouse=True)
def _local_endpoint(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs' own boto3 clients (the catalog updates of the Spark script) reach the stack's endpoint, as in lakebox."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", pipeline.box.endpoint)


def assert_failed_and_reported(pipeline: Pipeline, execution: Execution, state: str, error: str) -> None:
    """The failure path ran: the execution failed, the runs table says where, an alert went out."""
    assert (execution.status, execution.error) == ("FAILED", error)
    item = pipeline.run_item(execution.name)
    assert (item["status"], item["failed_state"], item["error"]) == ("FAILED", state, error)
    alerts = [alert for alert in pipeline.alerts() if alert.get("run_id") == execution.name]
    assert [alert["failed_state"] for alert in alerts] == [state]


def test_happy_path_builds_the_curated_tables_and_records_the_run(pipeline: Pipeline) -> None:
    # GIVEN landed sales, products and customers
    # WHEN the pipeline runs
    execution = pipeline.execute("happy-path")

    # THEN it succeeds, the curated tables hold rows, and the run is recorded and announced
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    counts = pipeline.row_counts()
    assert all(count > 0 for count in counts.values()), counts
    summary = execution.output
    assert summary["quality"]["passed"] is True
    assert summary["dates"]
    assert sum(query["bytes_scanned"] for query in summary["queries"]) > 0
    assert pipeline.run_item("happy-path")["status"] == "SUCCEEDED"
    assert [alert["run_id"] for alert in pipeline.alerts()] == ["happy-path"]


def test_running_again_over_the_same_window_leaves_row_counts_unchanged(pipeline: Pipeline) -> None:
    # GIVEN the curated tables after a run, and the dates that run rebuilt
    before = pipeline.row_counts()
    dates = json.loads(pipeline.run_item("happy-path")["summary"])["dates"]

    # WHEN the pipeline runs again over the same dates with nothing new landed
    window = {"start": min(dates), "end": max(dates)}
    execution = pipeline.execute("rerun", input={"datasets": DATASETS, "window": window})

    # THEN the tables were rebuilt for that window and every table keeps its row count
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert any(query["step"] == "build" for query in execution.output["queries"])
    assert pipeline.row_counts() == before


def test_glue_fails_twice_then_succeeds(pipeline: Pipeline) -> None:
    # GIVEN the Glue job refused twice at the task boundary
    fault = Fault(GLUE, "Glue.ConcurrentRunsExceededException", "Concurrent runs exceeded", times=2)

    # WHEN the pipeline runs
    execution = pipeline.execute("glue-fails-twice", fault)

    # THEN the retries were counted and the third attempt ran the job
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert execution.retries("Run Spark Job") == 2
    assert execution.attempts("Run Spark Job") == 3


def test_glue_fails_always_alerts_records_and_leaves_curated_untouched(pipeline: Pipeline) -> None:
    # GIVEN a Glue job that fails every time
    before = pipeline.curated_objects()
    fault = Fault(GLUE, "States.TaskFailed", "AnalysisException: raw path not found")

    # WHEN the pipeline runs
    execution = pipeline.execute("glue-fails-always", fault)

    # THEN the failure path recorded and alerted, and no curated object changed
    assert_failed_and_reported(pipeline, execution, "Run Spark Job", "States.TaskFailed")
    assert ATHENA not in execution.scheduled_resources()
    assert pipeline.curated_objects() == before


def test_quality_gate_fails_promotes_nothing(pipeline: Pipeline) -> None:
    # GIVEN the quality gate failing
    before = pipeline.curated_objects()
    fault = Fault(LAMBDA, "QualityGateFailed", "sales.not_null: 3 rows", state="Check Quality")

    # WHEN the pipeline runs
    execution = pipeline.execute("quality-gate-fails", fault)

    # THEN nothing was planned or promoted, and the failure was recorded and alerted
    assert_failed_and_reported(pipeline, execution, "Check Quality", "QualityGateFailed")
    assert ATHENA not in execution.scheduled_resources()
    assert pipeline.curated_objects() == before


def test_crawler_refused_while_the_gate_runs_fails_at_catalog_raw_and_promotes_nothing(pipeline: Pipeline) -> None:
    # GIVEN the raw crawler refusing to start, on a stack whose gate and planner work
    before = pipeline.curated_objects()
    fault = Fault(START_CRAWLER, "Glue.AccessDeniedException", "not authorized to start the raw crawler")

    # WHEN the pipeline runs
    execution = pipeline.execute("crawler-refused", fault)

    # THEN the run failed at the crawl with its error, recorded and alerted; the gate and the planner ran beside the
    # crawl (they read processed, never raw), but nothing was promoted
    assert_failed_and_reported(pipeline, execution, "Catalog Raw", "Glue.AccessDeniedException")
    entered = execution.states_entered()
    assert entered.index("Run Spark Job") < entered.index("Catalog Raw")
    assert {"Check Quality", "Plan Curation"} <= set(entered)
    assert ATHENA not in execution.scheduled_resources()
    assert pipeline.curated_objects() == before


def test_athena_fails_takes_the_failure_path(pipeline: Pipeline) -> None:
    # GIVEN Athena failing every statement, and a run asked to rebuild the dates already curated
    counts = pipeline.row_counts()
    dates = json.loads(pipeline.run_item("happy-path")["summary"])["dates"]
    fault = Fault(ATHENA, "States.TaskFailed", "HIVE_CURSOR_ERROR")

    # WHEN the pipeline runs
    execution = pipeline.execute("athena-fails", fault, input={"window": {"start": min(dates), "end": max(dates)}})

    # THEN the Map failed in its first wave (no later wave started), every table of it that started stopped at its
    # first statement, the failure was recorded, and the tables are unchanged
    assert_failed_and_reported(pipeline, execution, "Build Curated Tables", "States.TaskFailed")
    failed = execution.events("MapIterationFailed")
    assert [event.details["index"] for event in failed if event.state == "Build Curated Tables"] == [0]
    assert {event.details["index"] for event in failed if event.state == "Build Curated Table"} == {0}
    assert pipeline.row_counts() == counts

"""Named paths through statemachines/pipeline.asl.json on the local executor, with fake services at the tasks."""

from __future__ import annotations

import json
import random
import re
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from datalake.contracts import REGISTRY
from datalake.curation import Statement, plan_waves
from lakebox.services.sagemaker import LocalSageMaker
from lakebox.sfn import (
    Execution,
    Fault,
    Integrations,
    ManualClock,
    TaskContext,
    TaskError,
    inject_faults,
    run_execution,
)
from lakebox.sfn.integrations import (
    athena_start_query_execution_sync,
    emr_serverless_start_job_run_sync,
    glue_start_job_run_sync,
    lambda_invoke,
)

ASL = Path(__file__).resolve().parents[2] / "statemachines" / "pipeline.asl.json"
ACCOUNT = "123456789012"
SUBSTITUTIONS = {
    "RawCrawlerName": "raw-crawler",
    "RawToProcessedJobName": "raw-to-processed",
    "EmrApplicationId": "00app",
    "EmrJobRoleArn": f"arn:aws:iam::{ACCOUNT}:role/emr-job",
    "ArtifactsBucket": "artifacts",
    "RawBucket": "raw",
    "ProcessedBucket": "processed",
    "GlueDatabase": "data_lake_db",
    "CheckQualityFunctionArn": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:check-quality",
    "PlanCurationFunctionArn": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:plan-curation",
    "AnalyticsWorkGroup": "analytics",
    "AlertsTopicArn": f"arn:aws:sns:us-east-1:{ACCOUNT}:alerts",
    "RunsTableName": "runs",
    "PlanForecastFunctionArn": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:plan-forecast",
    "MlDataWorkGroup": "ml_data",
    "CuratedBucket": "curated",
    "DataLakeKeyArn": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/k",
    "SageMakerRoleArn": f"arn:aws:iam::{ACCOUNT}:role/forecast",
    "SklearnImageUri": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3",
    "ForecastInstanceType": "ml.m5.large",
    "ForecastEnabled": "true",
    "ForecastHorizonDays": "14",
}
SNS = "arn:aws:states:::sns:publish"
EVENTS = "arn:aws:states:::events:putEvents"
PUT_ITEM = "arn:aws:states:::dynamodb:putItem"
START_CRAWLER = "arn:aws:states:::aws-sdk:glue:startCrawler"
GET_CRAWLER = "arn:aws:states:::aws-sdk:glue:getCrawler"
GLUE = "arn:aws:states:::glue:startJobRun.sync"
ATHENA = "arn:aws:states:::athena:startQueryExecution.sync"
PUT_OBJECT = "arn:aws:states:::aws-sdk:s3:putObject"
TRAIN = "arn:aws:states:::sagemaker:createTrainingJob.sync"
TRANSFORM = "arn:aws:states:::sagemaker:createTransformJob.sync"
FORECAST_QUERIES = "forecast queries"
CURATED = ("daily_sales_by_region", "customer_aggregates", "product_performance")
LEDGER = "_ledger/curation.json"
PARALLEL = "Catalog Raw And Check Quality"
CRAWL_STATES = (
    "Catalog Raw",
    "Crawler Already Running",
    "Get Crawler",
    "Check Crawler State",
    "Wait For Crawler",
    "Check Last Crawl",
    "Raw Catalogued",
    "Crawl Failed",
    "Catalog Failed",
)


class QualityGateFailed(Exception):
    """Stands in for the quality function's error."""


class PlanningFailed(Exception):
    """Stands in for the planning function's error."""


def pipeline_definition() -> dict[str, Any]:
    """The pipeline ASL with the test's DefinitionSubstitutions applied."""
    text = ASL.read_text(encoding="utf-8")
    for key, value in SUBSTITUTIONS.items():
        text = text.replace("${" + key + "}", value)
    definition: dict[str, Any] = json.loads(text)
    return definition


@dataclass
class FakeServices:
    """Local stand-ins for the services the pipeline calls, recording every call."""

    crawler_states: list[str] = field(default_factory=lambda: ["RUNNING", "READY"])
    crawler_running: bool = False
    last_crawl: dict[str, Any] = field(default_factory=lambda: {"Status": "SUCCEEDED"})
    glue_state: str = "SUCCEEDED"
    quality_fails: bool = False
    failing_table: str | None = None
    holds_customers: bool = False
    training_failures: int = 0
    forecast_published: dict[str, Any] | None = None
    """The record of a published forecast trained on this run's very input (the planner then says unchanged)."""
    curated_queries: list[dict[str, str]] = field(default_factory=list)
    """The planner's statements, when not the default chain of CURATED tables."""
    query_gate: Callable[[str], None] | None = None
    """Called with each curated statement's table before it ends (tests of statements running at once)."""
    task_gate: Callable[[str], None] | None = None
    """Called with the state's name by the crawl's polls and the gate before they end (tests of branches at once)."""
    planning_fails: bool = False
    calls: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))

    def integrations(self) -> Integrations:
        registry = Integrations()
        registry.register(START_CRAWLER, self.start_crawler)
        registry.register(GET_CRAWLER, self.get_crawler)
        registry.register(GLUE, glue_start_job_run_sync(self.run_glue_job))
        registry.register(
            "arn:aws:states:::emr-serverless:startJobRun.sync", emr_serverless_start_job_run_sync(self.run_emr_job)
        )
        registry.register("arn:aws:states:::lambda:invoke", lambda_invoke(self.invoke))
        registry.register(ATHENA, athena_start_query_execution_sync(self))
        for resource in (SNS, EVENTS, PUT_ITEM, PUT_OBJECT):
            registry.register(resource, self.recorder(resource))
        for pattern, handler in LocalSageMaker.task_handlers(self).items():  # type: ignore[arg-type]
            registry.register(pattern, handler)
        return registry

    def recorder(self, resource: str) -> Any:
        def record(parameters: Any, task: TaskContext) -> Any:
            self.calls[resource].append(parameters)
            return {"recorded": True}

        return record

    def start_crawler(self, parameters: Any, task: TaskContext) -> Any:
        self.calls[START_CRAWLER].append(parameters)
        if self.crawler_running:
            raise TaskError("Glue.CrawlerRunningException", "Crawler with name raw-crawler has already started")
        return {}

    def get_crawler(self, parameters: Any, task: TaskContext) -> Any:
        self.calls[GET_CRAWLER].append(parameters)
        if self.task_gate is not None:
            self.task_gate(task.state_name)
        state = self.crawler_states.pop(0) if len(self.crawler_states) > 1 else self.crawler_states[0]
        crawler: dict[str, Any] = {"Name": parameters["Name"], "State": state}
        if state == "READY":
            crawler["LastCrawl"] = self.last_crawl
        return {"Crawler": crawler}

    def run_glue_job(self, job_name: str, arguments: dict[str, str]) -> dict[str, Any]:
        self.calls[GLUE].append((job_name, arguments))
        if self.glue_state == "FAILED":
            return {"Id": "jr_1", "JobRunState": "FAILED", "ErrorMessage": "AnalysisException: path does not exist"}
        return {"Id": "jr_1", "JobRunState": "SUCCEEDED", "ExecutionTime": 42}

    def run_emr_job(self, application_id: str, role: str, job_driver: dict[str, Any]) -> dict[str, Any]:
        self.calls["emr"].append((application_id, role, job_driver))
        return {"applicationId": application_id, "jobRunId": "00run", "state": "SUCCESS"}

    def create_training_job(self, **request: Any) -> dict[str, Any]:
        self.calls[TRAIN].append(request)
        name = request["TrainingJobName"]
        if len(self.calls[TRAIN]) <= self.training_failures:
            return {"TrainingJobName": name, "TrainingJobStatus": "Failed", "FailureReason": "AlgorithmError: spot"}
        return {
            "TrainingJobName": name,
            "TrainingJobStatus": "Completed",
            "ModelArtifacts": {
                "S3ModelArtifacts": f"s3://curated/_ml/sales_forecast/models/{name}/output/model.tar.gz"
            },
            "FinalMetricDataList": [
                {"MetricName": "backtest:smape_model", "Value": 8.5, "Timestamp": "2026-01-01T00:00:00Z"},
                {"MetricName": "backtest:smape_seasonal_naive", "Value": 12.0, "Timestamp": "2026-01-01T00:00:00Z"},
            ],
            "TrainingTimeInSeconds": 60,
            "BillableTimeInSeconds": 20,
        }

    def create_model(self, **request: Any) -> dict[str, Any]:
        self.calls["createModel"].append(request)
        return {"ModelArn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model/{request['ModelName']}"}

    def create_transform_job(self, **request: Any) -> dict[str, Any]:
        self.calls[TRANSFORM].append(request)
        return {
            "TransformJobName": request["TransformJobName"],
            "TransformJobStatus": "Completed",
            "TransformOutput": request["TransformOutput"],
        }

    def invoke(self, function: str, payload: Any) -> Any:
        self.calls[function].append(payload)
        if function.endswith("plan-forecast"):
            return {
                "run_id": payload["run_id"],
                "training_job_name": f"sales-forecast-{payload['run_id']}",
                "training_start": "2025-01-01",
                "training_end": "2025-12-31",
                "export": [
                    {"name": "sales_forecast/export", "query": "CREATE TABLE sales_forecast_training AS SELECT 1"}
                ],
                "training_uri": "s3://curated/_ml/sales_forecast/training/run_1/",
                "model_output_uri": "s3://curated/_ml/sales_forecast/models/",
                "checkpoint_uri": "s3://curated/_ml/sales_forecast/checkpoints/run_1/",
                "request_key": "_ml/sales_forecast/requests/run_1/request.jsonl",
                "request_uri": "s3://curated/_ml/sales_forecast/requests/run_1/",
                "request": {"horizon": int(payload["forecast_horizon"])},
                "output_uri": "s3://curated/sales_forecast/runs/run_1/",
                "hyperparameters": {"horizon": str(payload["forecast_horizon"])},
                "publish": [{"name": "sales_forecast/publish", "query": "CREATE TABLE sales_forecast AS SELECT 1"}],
                "fingerprint": "f1",
                "unchanged": self.forecast_published is not None,
                "previous": self.forecast_published,
                "record_key": "_ml/sales_forecast/published.json",
            }
        if function.endswith("check-quality"):
            if self.task_gate is not None:
                self.task_gate("Check Quality")
            if self.quality_fails:
                raise QualityGateFailed("sales: 3 rows with a null transaction_id")
            # the gate's report shape: every registered dataset when the run names none (ADR 0012)
            names = payload["datasets"] or sorted(REGISTRY)
            return {"passed": True, "datasets": [{"dataset": n, "passed": True, "rules": []} for n in names]}
        if self.planning_fails:
            raise PlanningFailed("the ledger at s3://curated/_ledger/curation.json is not JSON")
        # each table reads the one before it (one wave each) unless the test gives its own statements
        queries = self.curated_queries or [
            {"name": f"{name}/build", "table": name, "step": "build", "query": f"CREATE TABLE {name} AS {source}"}
            for name, source in zip(
                CURATED, ["SELECT 1", *(f"SELECT * FROM data_lake_db.{name}" for name in CURATED[:-1])], strict=True
            )
        ]
        waves = plan_waves([Statement.model_validate(query) for query in queries], "data_lake_db")
        held = [{"table": "customer_aggregates", "datasets": ["customers"], "reasons": ["customers: stale"]}]
        return {
            "run_id": payload["run_id"],
            "status": "PARTIAL" if self.holds_customers else "SUCCEEDED",
            "dates": ["2026-01-01"],
            "changed": ["sales"],
            "tables": list(CURATED),
            "held": held if self.holds_customers else [],
            "held_datasets": {"customers": ["freshness: stale"]} if self.holds_customers else {},
            "waiting": [],
            "queries": queries,
            "waves": [[group.model_dump(mode="json") for group in wave] for wave in waves],
            "ledger_key": "_ledger/curation.json",
            "ledger": '{"tables": {}}',
        }

    def start_query_execution(self, **parameters: Any) -> dict[str, Any]:
        forecast = "sales_forecast" in parameters["QueryString"]
        self.calls[FORECAST_QUERIES if forecast else ATHENA].append(parameters)
        table = re.search(r"CREATE TABLE (\w+)", parameters["QueryString"]).group(1)  # type: ignore[union-attr]
        if self.query_gate is not None and not forecast:
            self.query_gate(table)
        state = "FAILED" if table == self.failing_table else "SUCCEEDED"
        status: dict[str, Any] = {"State": state}
        if state == "FAILED":
            status["StateChangeReason"] = "TABLE_NOT_FOUND: processed.sales"
        return {
            "QueryExecution": {
                "QueryExecutionId": f"q-{table}",
                "Query": parameters["QueryString"],
                "Status": status,
                "Statistics": {"DataScannedInBytes": 1000 + len(table), "TotalExecutionTimeInMillis": 7},
            }
        }


def run_pipeline(
    services: FakeServices, *faults: Fault, input: dict[str, Any] | None = None
) -> tuple[Execution, ManualClock]:
    clock = ManualClock()
    integrations = inject_faults(services.integrations(), *faults) if faults else services.integrations()
    execution = run_execution(
        pipeline_definition(),
        input if input is not None else {"datasets": ["sales"]},
        integrations,
        name="run-1",
        state_machine_arn=f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:pipeline",
        clock=clock,
        rng=random.Random(5),
    )
    return execution, clock


def run_item(services: FakeServices) -> dict[str, str]:
    (call,) = services.calls[PUT_ITEM]
    assert call["TableName"] == "runs"
    return {key: value["S"] for key, value in call["Item"].items()}


def assert_failure_path(execution: Execution, services: FakeServices, state: str, error: str) -> dict[str, str]:
    """The failure path ran: runs item FAILED with state and cause, alert and event published, execution failed."""
    assert execution.status == "FAILED"
    assert execution.error == error
    item = run_item(services)
    assert (item["status"], item["failed_state"], item["error"]) == ("FAILED", state, error)
    assert item["cause"] == execution.cause
    (alert,) = services.calls[SNS]
    assert alert["Subject"] == "Data lake pipeline run failed"
    assert json.loads(alert["Message"])["failed_state"] == state
    (event,) = services.calls[EVENTS]
    assert event["Entries"][0]["DetailType"] == "PipelineRunFailed"
    assert event["Entries"][0]["Source"] == "datalake.pipeline"
    assert execution.states_entered()[-5:] == [
        "Describe Failure",
        "Record Failure",
        "Alert Failure",
        "Emit Run Failed",
        "Run Failed",
    ]
    return item


def test_happy_path_processes_catalogs_checks_curates_and_notifies() -> None:
    # GIVEN services that all work, and an input naming one dataset
    services = FakeServices()

    # WHEN the pipeline runs
    execution, clock = run_pipeline(services)

    # THEN it succeeds through every stage, in order: the job, then the crawl beside the gate and the planner
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    entered = execution.states_entered()
    assert entered[:5] == ["Set Defaults", "Normalize Input", "Choose Engine", "Run Spark Job", PARALLEL]
    assert [state for state in entered if state in CRAWL_STATES] == [
        "Catalog Raw",
        "Get Crawler",
        "Check Crawler State",
        "Wait For Crawler",
        "Get Crawler",
        "Check Crawler State",
        "Check Last Crawl",
        "Raw Catalogued",
    ]
    assert [state for state in entered if state in ("Check Quality", "Plan Curation")] == [
        "Check Quality",
        "Plan Curation",
    ]
    after = entered[max(entered.index("Raw Catalogued"), entered.index("Plan Curation")) + 1 :]
    assert after[:2] == ["Check Branches", "Build Curated Tables"]
    assert clock.sleeps == [30.0]

    # AND the Spark job got the datasets as JSON and the run id, on the Glue engine
    ((job_name, arguments),) = services.calls[GLUE]
    assert job_name == "raw-to-processed"
    assert arguments == {"--datasets": '["sales"]', "--run_id": "run-1"}

    # AND the quality and planning functions got the datasets and the execution id for log correlation
    execution_arn = f"arn:aws:states:us-east-1:{ACCOUNT}:execution:pipeline:run-1"
    request = {
        "datasets": ["sales"],
        "engine": "glue",
        "forecast": "true",
        "forecast_horizon": "14",
        "crawler_poll_seconds": 30,
        "run_id": "run-1",
        "execution_id": execution_arn,
    }
    assert services.calls[SUBSTITUTIONS["CheckQualityFunctionArn"]] == [request]
    assert services.calls[SUBSTITUTIONS["PlanCurationFunctionArn"]] == [request]

    # AND the planned statements ran one after another, in the planned order
    assert [call["QueryString"].split()[2] for call in services.calls[ATHENA]] == list(CURATED)

    # AND on the analytics workgroup against the lake's database
    assert {call["WorkGroup"] for call in services.calls[ATHENA]} == {"analytics"}
    assert {call["QueryExecutionContext"]["Database"] for call in services.calls[ATHENA]} == {"data_lake_db"}

    # AND the summary (output, SNS message, event detail, runs item) names datasets, quality, bytes and times
    summary = execution.output
    assert summary["status"] == "SUCCEEDED"
    assert summary["datasets"] == ["sales"]
    assert summary["engine"] == "glue"
    assert summary["catalog"] == "crawler_started"
    assert summary["spark"] == {"engine": "glue", "job_run_id": "jr_1", "state": "SUCCEEDED", "execution_seconds": 42}
    assert summary["quality"]["passed"] is True
    assert (summary["dates"], summary["changed"]) == (["2026-01-01"], ["sales"])
    assert [query["name"] for query in summary["queries"]] == [f"{name}/build" for name in CURATED]
    assert [query["bytes_scanned"] for query in summary["queries"]] == [1000 + len(name) for name in CURATED]
    assert summary["started_at"] == "2026-01-01T00:00:00.000Z"
    assert summary["finished_at"] == "2026-01-01T00:00:30.000Z"
    (publish,) = services.calls[SNS]
    assert publish["TopicArn"] == SUBSTITUTIONS["AlertsTopicArn"]
    assert json.loads(publish["Message"]) == summary
    (event,) = services.calls[EVENTS]
    assert event["Entries"][0]["DetailType"] == "PipelineRunSucceeded"
    assert event["Entries"][0]["Source"] == "datalake.pipeline"
    assert event["Entries"][0]["Detail"] == summary
    item = run_item(services)
    assert item["status"] == "SUCCEEDED"
    assert item["run_id"] == "run-1"
    assert json.loads(item["summary"]) == summary


def test_glue_fails_twice_then_succeeds_after_counted_retries() -> None:
    # GIVEN a Glue job refused twice for too many concurrent runs
    services = FakeServices()
    fault = Fault(
        GLUE, "Glue.ConcurrentRunsExceededException", "Concurrent runs exceeded for raw-to-processed", times=2
    )

    # WHEN the pipeline runs
    execution, clock = run_pipeline(services, fault)

    # THEN the task was retried twice (three calls) with jittered backoff, and the run succeeded
    assert execution.status == "SUCCEEDED"
    assert fault.triggered == 2
    assert execution.attempts("Run Spark Job") == 3
    assert execution.retries("Run Spark Job") == 2
    delays = [event.details["delaySeconds"] for event in execution.events("TaskRetry", "Run Spark Job")]
    assert 0 <= delays[0] <= 30
    assert 0 <= delays[1] <= 60
    assert clock.sleeps == [*delays, 30.0]
    assert len(services.calls[GLUE]) == 1  # the two faults never reached the job
    assert len(services.calls[ATHENA]) == 3


def test_glue_fails_always_is_caught_alerted_recorded_and_nothing_is_curated() -> None:
    # GIVEN a Spark job whose every run fails
    services = FakeServices(glue_state="FAILED")

    # WHEN the pipeline runs
    execution, _ = run_pipeline(services)

    # THEN the failure path ran with the job's error message, and no crawl, quality check or query followed
    item = assert_failure_path(execution, services, "Run Spark Job", "States.TaskFailed")
    assert item["cause"] == "AnalysisException: path does not exist"
    assert execution.retries("Run Spark Job") == 0  # a failed job run is not retried
    assert services.calls[START_CRAWLER] == []
    assert services.calls[SUBSTITUTIONS["CheckQualityFunctionArn"]] == []
    assert services.calls[ATHENA] == []


def test_glue_throttled_beyond_its_retries_takes_the_failure_path() -> None:
    # GIVEN a Glue job refused every time for too many concurrent runs
    services = FakeServices()
    fault = Fault(GLUE, "Glue.ConcurrentRunsExceededException", "Concurrent runs exceeded")

    # WHEN the pipeline runs
    execution, _ = run_pipeline(services, fault)

    # THEN three retries were made, then the Catch took the failure path
    assert execution.attempts("Run Spark Job") == 4
    assert_failure_path(execution, services, "Run Spark Job", "Glue.ConcurrentRunsExceededException")
    assert services.calls[ATHENA] == []


def test_quality_gate_fails_stops_the_run_before_anything_is_promoted() -> None:
    # GIVEN a quality function that finds failing rules
    services = FakeServices(quality_fails=True)

    # WHEN the pipeline runs
    execution, _ = run_pipeline(services)

    # THEN QualityGateFailed was not retried, the failure was recorded, and no curation was planned or run
    item = assert_failure_path(execution, services, "Check Quality", "QualityGateFailed")
    assert json.loads(item["cause"])["errorMessage"] == "sales: 3 rows with a null transaction_id"
    assert execution.attempts("Check Quality") == 1
    assert services.calls[SUBSTITUTIONS["PlanCurationFunctionArn"]] == []
    assert services.calls[ATHENA] == []


def test_quality_function_transient_error_is_retried() -> None:
    # GIVEN a quality function that hits a transient error once
    services = FakeServices()
    fault = Fault("arn:aws:states:::lambda:invoke", "TransientError", "throttled", times=1, state="Check Quality")

    # WHEN the pipeline runs
    execution, _ = run_pipeline(services, fault)

    # THEN the invocation was retried and the run succeeded
    assert execution.status == "SUCCEEDED"
    assert execution.retries("Check Quality") == 1


def test_athena_fails_takes_the_failure_path_and_stops_the_statements_after_it() -> None:
    # GIVEN a curated statement that fails in Athena
    services = FakeServices(failing_table=CURATED[1])

    # WHEN the pipeline runs
    execution, _ = run_pipeline(services)

    # THEN the Map failed with the query's reason and the failure path recorded it
    item = assert_failure_path(execution, services, "Build Curated Tables", "States.TaskFailed")
    assert item["cause"] == "TABLE_NOT_FOUND: processed.sales"
    assert [call["QueryString"].split()[2] for call in services.calls[ATHENA]] == list(CURATED[:2])
    assert execution.events("MapIterationFailed")[0].details["error"] == "States.TaskFailed"


def test_the_tables_of_a_wave_run_at_once_and_the_next_wave_after_them() -> None:
    # GIVEN two tables reading only processed data (one wave), and a third reading both (the next wave), whose
    # statements each wait until both tables of the first wave have started theirs
    first_wave = threading.Barrier(2, timeout=10)
    events: list[str] = []
    lock = threading.Lock()

    def gate(table: str) -> None:
        with lock:
            events.append(f"start {table}")
        if table != "customer_aggregates":
            first_wave.wait()  # breaks (and fails the run) unless the other first-wave statement runs meanwhile
        with lock:
            events.append(f"end {table}")

    reads_sales = "SELECT * FROM data_lake_db.sales"
    queries = [
        *(
            {"name": f"{t}/build", "table": t, "step": "build", "query": f"CREATE TABLE {t} AS {reads_sales}"}
            for t in ("a", "b")
        ),
        {
            "name": "customer_aggregates/build",
            "table": "customer_aggregates",
            "step": "build",
            "query": "CREATE TABLE customer_aggregates AS SELECT * FROM data_lake_db.a JOIN data_lake_db.b USING (k)",
        },
    ]
    services = FakeServices(curated_queries=queries, query_gate=gate)

    # WHEN the pipeline runs
    execution, _ = run_pipeline(services, input={"datasets": ["sales"], "forecast": False})

    # THEN both first-wave statements ran at once, and the table reading them started after both ended
    assert execution.status == "SUCCEEDED", execution.cause
    assert set(events[:2]) == {"start a", "start b"}
    assert events.index("start customer_aggregates") > max(events.index("end a"), events.index("end b"))
    # AND the summary lists every statement once, in wave then plan order, with its bytes scanned
    assert [query["name"] for query in execution.output["queries"]] == [q["name"] for q in queries]
    assert [query["bytes_scanned"] for query in execution.output["queries"]] == [1001, 1001, 1019]


def test_emr_serverless_engine_runs_the_same_script_with_explicit_arguments() -> None:
    # GIVEN an input choosing EMR Serverless
    services = FakeServices()

    # WHEN the pipeline runs
    execution, _ = run_pipeline(services, input={"datasets": ["sales", "customers"], "engine": "emr-serverless"})

    # THEN the EMR job got the script from the artifacts bucket and every argument, and Glue was not used
    assert execution.status == "SUCCEEDED"
    ((application, role, driver),) = services.calls["emr"]
    assert (application, role) == ("00app", SUBSTITUTIONS["EmrJobRoleArn"])
    submit = driver["sparkSubmit"]
    assert submit["entryPoint"] == "s3://artifacts/glue/raw_to_processed.py"
    arguments = dict(zip(submit["entryPointArguments"][::2], submit["entryPointArguments"][1::2], strict=True))
    assert arguments == {
        "--datasets": '["sales","customers"]',
        "--run_id": "run-1",
        "--raw_path": "s3://raw/",
        "--processed_path": "s3://processed/",
        "--database": "data_lake_db",
    }
    assert services.calls[GLUE] == []
    assert execution.output["spark"] == {"engine": "emr-serverless", "job_run_id": "00run"}


def test_defaults_apply_when_the_input_names_nothing() -> None:
    # WHEN the pipeline starts with an empty input
    services = FakeServices()
    execution, _ = run_pipeline(services, input={})

    # THEN the Spark job and the gate are asked for every dataset (none named), the summary names what was checked
    ((_, arguments),) = services.calls[GLUE]
    assert arguments["--datasets"] == "[]"
    assert execution.output["datasets"] == sorted(REGISTRY)
    assert execution.output["engine"] == "glue"


def test_a_window_in_the_input_reaches_the_quality_and_planning_functions() -> None:
    # WHEN a run names the dates to rebuild (a backfill or a re-run)
    services = FakeServices()
    window = {"start": "2026-10-01", "end": "2026-10-07"}
    execution, _ = run_pipeline(services, input={"datasets": ["sales"], "window": window, "run_id": "spoofed"})

    # THEN both functions receive it, with the execution's own run id
    assert execution.status == "SUCCEEDED"
    for function in ("CheckQualityFunctionArn", "PlanCurationFunctionArn"):
        (request,) = services.calls[SUBSTITUTIONS[function]]
        assert (request["window"], request["run_id"]) == (window, "run-1")


def test_unknown_engine_is_rejected_on_the_failure_path() -> None:
    # WHEN the input names an engine that does not exist
    services = FakeServices()
    execution, _ = run_pipeline(services, input={"engine": "dataproc"})

    # THEN the run fails as invalid input, recorded and alerted, before any Spark job
    item = assert_failure_path(execution, services, "Choose Engine", "InvalidInput")
    assert item["cause"] == "engine must be glue or emr-serverless, not dataproc"
    assert services.calls[GLUE] == []


def test_a_crawler_already_running_is_polled_instead_of_started() -> None:
    # GIVEN a crawler that is already running
    services = FakeServices(crawler_running=True)

    # WHEN the pipeline runs
    execution, _ = run_pipeline(services)

    # THEN the run polls the running crawl and records which path it took
    assert execution.status == "SUCCEEDED"
    assert execution.output["catalog"] == "crawler_already_running"
    assert "Crawler Already Running" in execution.states_entered()


def test_a_failed_crawl_takes_the_failure_path() -> None:
    # GIVEN a crawl that ends FAILED
    services = FakeServices(last_crawl={"Status": "FAILED", "ErrorMessage": "Access denied to s3://raw"})

    # WHEN the pipeline runs
    execution, _ = run_pipeline(services)

    # THEN the failure names the crawl and carries its LastCrawl
    item = assert_failure_path(execution, services, "Get Crawler", "CrawlerFailed")
    assert json.loads(item["cause"])["ErrorMessage"] == "Access denied to s3://raw"
    # AND the crawl came after processing (it catalogs the partitions of the tables the job declared); the gate and
    # the planner, which never read the raw tables, ran beside it, but nothing was promoted
    assert len(services.calls[GLUE]) == 1
    assert len(services.calls[SUBSTITUTIONS["CheckQualityFunctionArn"]]) == 1
    assert len(services.calls[SUBSTITUTIONS["PlanCurationFunctionArn"]]) == 1
    assert services.calls[ATHENA] == []
    assert services.calls[PUT_OBJECT] == []  # no ledger written
    assert "Build Curated Tables" not in execution.states_entered()


def test_the_crawl_runs_while_the_gate_checks_after_the_spark_job_ends() -> None:
    # GIVEN a crawl still running at its first poll, and a gate and a crawler poll that each wait until the other
    # has started (a barrier breaks, and fails the run, unless both run at once)
    both = threading.Barrier(2, timeout=10)
    events: list[str] = []
    lock = threading.Lock()

    def meet(state: str) -> None:
        with lock:
            events.append(f"start {state}")
        if state == "Check Quality" or not any(e == "end Get Crawler" for e in events):
            both.wait()
        with lock:
            events.append(f"end {state}")

    services = FakeServices(task_gate=meet)
    original_job = services.run_glue_job

    def job(job_name: str, arguments: dict[str, str]) -> dict[str, Any]:
        with lock:
            events.append("start Run Spark Job")
        result = original_job(job_name, arguments)
        with lock:
            events.append("end Run Spark Job")
        return result

    services.run_glue_job = job  # type: ignore[method-assign]

    # WHEN the pipeline runs
    execution, _ = run_pipeline(services)

    # THEN the crawl's first poll and the gate ran at once, both after the Spark job ended
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert events[:2] == ["start Run Spark Job", "end Run Spark Job"]
    assert set(events[2:4]) == {"start Get Crawler", "start Check Quality"}
    # AND the run's output reads as before: the crawl's path, the job, the gate's report, the plan
    summary = execution.output
    assert summary["catalog"] == "crawler_started"
    assert summary["spark"]["job_run_id"] == "jr_1"
    assert summary["quality"]["passed"] is True
    assert summary["tables"] == list(CURATED)


@pytest.mark.parametrize(
    ("fault", "crawl", "state", "error"),
    [
        pytest.param(
            Fault(START_CRAWLER, "Glue.AccessDeniedException", "not authorized to start raw-crawler"),
            {},
            "Catalog Raw",
            "Glue.AccessDeniedException",
            id="crawler-refused",
        ),
        pytest.param(
            Fault(GET_CRAWLER, "Glue.EntityNotFoundException", "raw-crawler not found"),
            {},
            "Catalog Raw",
            "Glue.EntityNotFoundException",
            id="crawler-gone",
        ),
        pytest.param(None, {"quality_fails": True}, "Check Quality", "QualityGateFailed", id="gate-holds"),
        pytest.param(None, {"planning_fails": True}, "Plan Curation", "PlanningFailed", id="planning-fails"),
        pytest.param(
            None,
            {"quality_fails": True, "last_crawl": {"Status": "FAILED", "ErrorMessage": "crawl failed"}},
            "Get Crawler",
            "CrawlerFailed",
            id="crawl-and-gate-fail",
        ),
    ],
)
def test_a_failure_in_either_branch_fails_the_run_at_its_state(
    fault: Fault | None, crawl: dict[str, Any], state: str, error: str
) -> None:
    # GIVEN a failure in the crawl, the gate or the planner (or both the crawl and the gate)
    services = FakeServices(**crawl)

    # WHEN the pipeline runs
    execution, _ = run_pipeline(services, *([fault] if fault else []))

    # THEN the run fails at that state with its error, as when the crawl came before the gate (the crawl's failure
    # first when both fail), recorded, alerted and announced, and nothing was promoted
    item = assert_failure_path(execution, services, state, error)
    assert execution.cause == item["cause"] != ""
    assert services.calls[ATHENA] == []
    assert services.calls[PUT_OBJECT] == []
    assert "Build Curated Tables" not in execution.states_entered()
    # AND the failure's summary is the one Describe Failure always built
    summary = json.loads(item["summary"])
    assert (summary["failed_state"], summary["error"], summary["status"]) == (state, error, "FAILED")
    assert summary["datasets"] == ["sales"]


@pytest.mark.parametrize("failing", [SNS, EVENTS])
def test_a_notification_failure_is_recorded_as_a_failed_notify(failing: str) -> None:
    # GIVEN the alerts topic or the event bus failing every time
    services = FakeServices()

    # WHEN the pipeline runs
    execution, _ = run_pipeline(services, Fault(failing, "States.TaskFailed", "down"))

    # THEN the Notify state failed and the run is recorded as failed there
    assert execution.status == "FAILED"
    assert execution.events("ParallelStateFailed", "Notify")
    last_item = {key: value["S"] for key, value in services.calls[PUT_ITEM][-1]["Item"].items()}
    assert (last_item["status"], last_item["failed_state"]) == ("FAILED", "Notify")


def test_a_runs_table_failure_still_alerts_and_emits_the_failure_event() -> None:
    # GIVEN a runs table that refuses every write
    services = FakeServices()

    # WHEN the pipeline runs
    execution, _ = run_pipeline(services, Fault(PUT_ITEM, "DynamoDB.ResourceNotFoundException", "no table"))

    # THEN recording failed (twice: Notify, then Record Failure) yet the alert and the event went out
    assert execution.status == "FAILED"
    assert execution.states_entered()[-4:] == ["Record Failure", "Alert Failure", "Emit Run Failed", "Run Failed"]
    assert services.calls[SNS][-1]["Subject"] == "Data lake pipeline run failed"
    assert services.calls[EVENTS][-1]["Entries"][0]["DetailType"] == "PipelineRunFailed"


# --- the forecast branch ------------------------------------------------------------------------------------------


def test_forecast_exports_trains_predicts_and_publishes_after_the_curated_tables() -> None:
    # GIVEN services that all work
    services = FakeServices()

    # WHEN the pipeline runs with the forecast on (the default)
    execution, _ = run_pipeline(services)

    # THEN the forecast states ran after the curated tables, in order
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    entered = execution.states_entered()
    forecast_states = [
        "Choose Forecast",
        "Plan Forecast",
        "Export Training Window",
        "Write Transform Request",
        "Train Forecast Model",
        "Create Forecast Model",
        "Predict Forecast",
        "Publish Forecast",
        "Summarize Forecast",
        "Record Forecast",
        "Forecast Published",
    ]
    assert [s for s in entered if s in forecast_states] == forecast_states
    assert entered.index("Build Curated Tables") < entered.index("Choose Forecast") < entered.index("Summarize Run")

    # AND the export ran in the ml_data workgroup, the publication in the analytics one
    export, publish = services.calls[FORECAST_QUERIES]
    assert (export["WorkGroup"], publish["WorkGroup"]) == ("ml_data", "analytics")

    # AND the transform request was written where the transform job reads it, encrypted with the lake's key
    ledger, put, record = services.calls[PUT_OBJECT]
    assert (ledger["Bucket"], ledger["Key"]) == ("curated", "_ledger/curation.json")
    assert (put["Bucket"], put["Key"]) == ("curated", "_ml/sales_forecast/requests/run_1/request.jsonl")
    assert json.loads(put["Body"]) == {"horizon": 14}
    assert put["SSEKMSKeyId"] == SUBSTITUTIONS["DataLakeKeyArn"]

    # AND training was script mode on managed spot capacity with a wait limit, checkpoints and encrypted volumes
    (train,) = services.calls[TRAIN]
    assert train["TrainingJobName"] == "sales-forecast-run-1-0"
    assert train["HyperParameters"] == {
        "sagemaker_program": "train.py",
        "sagemaker_submit_directory": "s3://artifacts/ml/forecast/sourcedir.tar.gz",
        "horizon": "14",
    }
    assert train["EnableManagedSpotTraining"] is True
    stopping = train["StoppingCondition"]
    assert stopping["MaxWaitTimeInSeconds"] >= stopping["MaxRuntimeInSeconds"]
    assert train["CheckpointConfig"]["S3Uri"] == "s3://curated/_ml/sales_forecast/checkpoints/run_1/"
    assert train["ResourceConfig"]["VolumeKmsKeyId"] == train["OutputDataConfig"]["KmsKeyId"]
    assert train["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"].endswith("/training/run_1/")

    # AND the transform used the model of that job and wrote to the run's folder of sales_forecast
    (model,) = services.calls["createModel"]
    assert model["ModelName"] == "sales-forecast-run-1-0"
    assert model["PrimaryContainer"]["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    (transform,) = services.calls[TRANSFORM]
    assert transform["TransformJobName"] == "sales-forecast-run-1-0-t0"
    assert transform["TransformOutput"]["S3OutputPath"] == "s3://curated/sales_forecast/runs/run_1/"

    # AND the run summary reports the model and both backtest errors
    forecast = execution.output["forecast"]
    assert forecast["status"] == "SUCCEEDED"
    assert forecast["model_version"] == "sales-forecast-run-1-0"
    metrics = {m["MetricName"]: m["Value"] for m in forecast["metrics"]}
    assert metrics == {"backtest:smape_model": 8.5, "backtest:smape_seasonal_naive": 12.0}

    # AND once published, the forecast was recorded with its input's fingerprint for the next run to compare with
    assert (record["Bucket"], record["Key"]) == ("curated", "_ml/sales_forecast/published.json")
    assert record["SSEKMSKeyId"] == SUBSTITUTIONS["DataLakeKeyArn"]
    assert json.loads(record["Body"]) == {key: value for key, value in forecast.items()}
    assert (forecast["fingerprint"], forecast["run_id"]) == ("f1", "run-1")


def test_training_fails_twice_then_succeeds_with_a_new_job_name_each_time() -> None:
    # GIVEN training jobs whose first two runs fail (e.g. spot capacity lost past the wait limit)
    services = FakeServices(training_failures=2)

    # WHEN the pipeline runs
    execution, _ = run_pipeline(services)

    # THEN the training task was retried twice, each job under a name of its own, and the forecast succeeded
    assert execution.status == "SUCCEEDED"
    assert execution.retries("Train Forecast Model") == 2
    names = [call["TrainingJobName"] for call in services.calls[TRAIN]]
    assert names == ["sales-forecast-run-1-0", "sales-forecast-run-1-1", "sales-forecast-run-1-2"]
    assert execution.output["forecast"]["status"] == "SUCCEEDED"
    assert execution.output["forecast"]["model_version"] == "sales-forecast-run-1-2"


def test_training_fails_always_alerts_and_leaves_the_curated_tables_and_the_run_succeeded() -> None:
    # GIVEN training jobs that always fail
    services = FakeServices(training_failures=99)

    # WHEN the pipeline runs
    execution, _ = run_pipeline(services)

    # THEN the Catch reported the forecast as failed, alerted, and the run still succeeded with its curated tables
    assert execution.status == "SUCCEEDED"
    assert execution.attempts("Train Forecast Model") == 3
    assert "Forecast Failed" in execution.states_entered()
    assert len(services.calls[ATHENA]) == len(CURATED)
    assert services.calls[TRANSFORM] == []
    assert [q["WorkGroup"] for q in services.calls[FORECAST_QUERIES]] == ["ml_data"]  # exported, never published
    forecast = execution.output["forecast"]
    assert (forecast["status"], forecast["error"], forecast["run_id"]) == ("FAILED", "States.TaskFailed", "run-1")
    assert "AlgorithmError" in forecast["cause"]
    alert, summary = services.calls[SNS]
    assert alert["Subject"] == "Data lake forecast failed"
    assert json.loads(alert["Message"])["status"] == "FAILED"
    assert json.loads(summary["Message"])["forecast"]["status"] == "FAILED"
    assert run_item(services)["status"] == "SUCCEEDED"


def test_a_crawl_already_over_is_not_waited_for() -> None:
    # GIVEN a crawler whose crawl is over when first asked (lakebox's crawler finishes before startCrawler returns)
    services = FakeServices(crawler_states=["READY"])

    # WHEN the pipeline runs
    execution, clock = run_pipeline(services)

    # THEN it read the crawler's state once and went on, without a single wait
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert "Wait For Crawler" not in execution.states_entered()
    assert clock.sleeps == []
    assert len(services.calls[GET_CRAWLER]) == 1


def test_the_crawler_poll_interval_comes_from_the_input() -> None:
    # GIVEN a crawl that runs for two polls WHEN a run asks to poll every 5 s
    services = FakeServices(crawler_states=["RUNNING", "RUNNING", "READY"])
    execution, clock = run_pipeline(services, input={"datasets": ["sales"], "crawler_poll_seconds": 5})

    # THEN it waited 5 s between polls, only while the crawl ran
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert clock.sleeps == [5.0, 5.0]


def test_a_forecast_whose_input_did_not_change_is_not_trained_again() -> None:
    # GIVEN a published forecast trained on the very input this run would train on
    published = {"status": "SUCCEEDED", "model_version": "sales-forecast-run-0-0", "fingerprint": "f1"}
    services = FakeServices(forecast_published=published)

    # WHEN the pipeline runs
    execution, _ = run_pipeline(services)

    # THEN nothing of the forecast ran past its plan: no export, training, transform, publication or record
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert "Forecast Unchanged" in execution.states_entered()
    assert services.calls[TRAIN] == [] and services.calls[TRANSFORM] == []
    assert services.calls[FORECAST_QUERIES] == []
    assert [put["Key"] for put in services.calls[PUT_OBJECT]] == [LEDGER]

    # AND the summary says the forecast is unchanged, naming the published one
    forecast = execution.output["forecast"]
    assert forecast["status"] == "UNCHANGED"
    assert forecast["published"] == published
    assert run_item(services)["status"] == "SUCCEEDED"


def test_a_failed_forecast_record_leaves_the_forecast_published_and_the_run_succeeded() -> None:
    # GIVEN an S3 that refuses the forecast's record
    services = FakeServices()
    fault = Fault(PUT_OBJECT, "S3.AccessDeniedException", "denied", state="Record Forecast")

    # WHEN the pipeline runs
    execution, _ = run_pipeline(services, fault)

    # THEN the forecast is reported published, with the record's error (the next run trains again)
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    forecast = execution.output["forecast"]
    assert forecast["status"] == "SUCCEEDED"
    assert forecast["record_error"]["Error"] == "S3.AccessDeniedException"


@pytest.mark.parametrize("switch", [False, "false"])
def test_forecast_disabled_by_the_input_is_skipped(switch: Any) -> None:
    # WHEN a run's input turns the forecast off (a boolean, or the parameter's string)
    services = FakeServices()
    execution, _ = run_pipeline(services, input={"datasets": ["sales"], "forecast": switch})

    # THEN no forecast task ran and the summary says it was skipped
    assert execution.status == "SUCCEEDED"
    assert execution.output["forecast"] == {"status": "SKIPPED"}
    assert "Skip Forecast" in execution.states_entered()
    assert services.calls[SUBSTITUTIONS["PlanForecastFunctionArn"]] == []
    assert services.calls[TRAIN] == [] and [put["Key"] for put in services.calls[PUT_OBJECT]] == [LEDGER]


def test_a_run_holding_a_dataset_back_ends_partial_and_says_so() -> None:
    # GIVEN a plan that holds customer_aggregates back (the gate holds customers)
    services = FakeServices(holds_customers=True)

    # WHEN the pipeline runs
    execution, _ = run_pipeline(services)

    # THEN the execution succeeds, but the run is PARTIAL in its summary, the runs table, the alert and the event
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert execution.output["status"] == "PARTIAL"
    assert execution.output["held"][0]["table"] == "customer_aggregates"
    assert run_item(services)["status"] == "PARTIAL"
    (alert,) = services.calls[SNS]
    assert alert["Subject"].startswith("Data lake pipeline run partial")
    assert alert["MessageAttributes"]["status"]["StringValue"] == "PARTIAL"
    (event,) = services.calls[EVENTS]
    assert event["Entries"][0]["DetailType"] == "PipelineRunPartial"
    # AND the ledger was written after the tables were built
    entered = execution.states_entered()
    assert entered.index("Build Curated Tables") < entered.index("Record Curation") < entered.index("Summarize Run")


def test_a_run_with_nothing_held_is_announced_as_succeeded() -> None:
    # GIVEN services that all work WHEN the pipeline runs THEN the event and runs item say SUCCEEDED
    services = FakeServices()
    execution, _ = run_pipeline(services, input={"datasets": ["sales"], "forecast": False})
    assert execution.output["status"] == "SUCCEEDED"
    assert run_item(services)["status"] == "SUCCEEDED"
    (event,) = services.calls[EVENTS]
    assert event["Entries"][0]["DetailType"] == "PipelineRunSucceeded"

"""Local task integrations: Lambda, Spark jobs, Athena, and boto3 services on moto, with Step Functions' error names."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from lakebox.sfn import Integrations, ManualClock, TaskContext, TaskError, run_execution
from lakebox.sfn.integrations import (
    EVENTS_PUT_EVENTS,
    LAMBDA_FUNCTION,
    LAMBDA_INVOKE,
    AwsSdk,
    DeliverEvent,
    Invoke,
    SdkOverride,
    athena_start_query_execution_sync,
    emr_serverless_start_job_run_sync,
    error_prefix,
    events_put_events,
    glue_start_job_run_sync,
    json_safe,
    lambda_function,
    lambda_invoke,
)

TASK = TaskContext("Task", "arn:aws:states:::test", {})


class OrderRejected(Exception):
    """A handler error."""


@pytest.fixture
def session() -> Iterator[boto3.Session]:
    with mock_aws():
        yield boto3.Session(region_name="us-east-1")


def _no_invoke(function: str, payload: Any) -> Any:
    raise AssertionError("no Lambda expected")


def _run(
    definition: dict[str, Any],
    session: boto3.Session,
    data: Any = None,
    *,
    invoke: Invoke = _no_invoke,
    sdk_overrides: dict[str, SdkOverride] | None = None,
    deliver_event: DeliverEvent | None = None,
) -> Any:
    integrations = Integrations.serving(AwsSdk(session, sdk_overrides))
    integrations.register(LAMBDA_INVOKE, lambda_invoke(invoke))
    integrations.register(LAMBDA_FUNCTION, lambda_function(invoke))
    if deliver_event is not None:
        integrations.register(EVENTS_PUT_EVENTS, events_put_events(deliver=deliver_event))
    return run_execution(definition, data or {}, integrations, clock=ManualClock())


def _task(resource: str, parameters: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "StartAt": "Call",
        "States": {"Call": {"Type": "Task", "Resource": resource, "Parameters": parameters, "End": True, **fields}},
    }


# --- Lambda ---------------------------------------------------------------------------------------------------


def test_lambda_invoke_output_has_the_optimized_integration_shape() -> None:
    # GIVEN a function echoing its payload
    handler = lambda_invoke(lambda function, payload: {"function": function, "got": payload})

    # WHEN the task calls it
    output = handler({"FunctionName": "arn:aws:lambda:us-east-1:1:function:f", "Payload": {"a": 1}}, TASK)

    # THEN the result is under Payload, with the status code Lambda returns
    assert output["Payload"] == {"function": "arn:aws:lambda:us-east-1:1:function:f", "got": {"a": 1}}
    assert output["StatusCode"] == 200
    assert output["ExecutedVersion"] == "$LATEST"


def test_a_handler_exception_becomes_the_task_error_named_by_its_class() -> None:
    # GIVEN a handler raising its own exception
    def invoke(function: str, payload: Any) -> Any:
        raise OrderRejected("order o-1 has no lines")

    # WHEN the task calls it
    with pytest.raises(TaskError) as raised:
        lambda_invoke(invoke)({"FunctionName": "f", "Payload": {}}, TASK)

    # THEN the error is the class name and the cause is Lambda's error document
    assert raised.value.error == "OrderRejected"
    cause = json.loads(raised.value.cause)
    assert (cause["errorType"], cause["errorMessage"]) == ("OrderRejected", "order o-1 has no lines")
    assert cause["stackTrace"]


def test_a_lambda_function_arn_resource_returns_the_function_result_directly(session: boto3.Session) -> None:
    # GIVEN a Task whose Resource is the function ARN (the original integration)
    definition = {
        "StartAt": "Call",
        "States": {
            "Call": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f", "End": True}
        },
    }

    # WHEN it runs
    execution = _run(definition, session, {"n": 2}, invoke=lambda function, payload: payload["n"] * 10)

    # THEN the output is the function's own result
    assert execution.output == 20


# --- Spark jobs and Athena -----------------------------------------------------------------------------------


def test_glue_job_run_failure_is_task_failed_with_the_error_message() -> None:
    # GIVEN a job runner whose run fails
    handler = glue_start_job_run_sync(lambda name, args: {"JobRunState": "FAILED", "ErrorMessage": "OOM in stage 3"})

    # WHEN the task runs THEN it fails with States.TaskFailed and the run's message
    with pytest.raises(TaskError) as raised:
        handler({"JobName": "job", "Arguments": {"--x": "1"}}, TASK)
    assert (raised.value.error, raised.value.cause) == ("States.TaskFailed", "OOM in stage 3")


def test_glue_job_run_output_is_the_job_run_with_defaults_filled_in() -> None:
    # GIVEN a runner returning only the state; arguments given as numbers are passed as strings
    seen: list[tuple[str, dict[str, str]]] = []

    def run(name: str, arguments: dict[str, str]) -> dict[str, Any]:
        seen.append((name, arguments))
        return {"JobRunState": "SUCCEEDED"}

    # WHEN the task runs
    output = glue_start_job_run_sync(run)({"JobName": "job", "Arguments": {"--n": 3}}, TASK)

    # THEN the output is a JobRun with an id, the job's name and arguments, and times
    assert seen == [("job", {"--n": "3"})]
    assert output["JobRunState"] == "SUCCEEDED"
    assert output["Id"].startswith("jr_")
    assert output["JobName"] == "job"
    assert isinstance(output["ExecutionTime"], int)


def test_emr_job_driver_reaches_the_runner_in_the_api_casing_and_failure_is_task_failed() -> None:
    # GIVEN a runner that fails its job run
    seen: list[Any] = []

    def run(application_id: str, role: str, driver: dict[str, Any]) -> dict[str, Any]:
        seen.append(driver)
        return {
            "jobRun": {"applicationId": application_id, "jobRunId": "r1", "state": "FAILED", "stateDetails": "boom"}
        }

    parameters = {
        "ApplicationId": "app",
        "ExecutionRoleArn": "arn:aws:iam::1:role/r",
        "JobDriver": {"SparkSubmit": {"EntryPoint": "s3://b/x.py", "EntryPointArguments": ["--A", "B"]}},
    }

    # WHEN the task runs THEN it fails with the run's details, having passed the driver as the API spells it
    with pytest.raises(TaskError) as raised:
        emr_serverless_start_job_run_sync(run)(parameters, TASK)
    assert (raised.value.error, raised.value.cause) == ("States.TaskFailed", "boom")
    assert seen == [{"sparkSubmit": {"entryPoint": "s3://b/x.py", "entryPointArguments": ["--A", "B"]}}]


class _Athena:
    def __init__(self, state: str) -> None:
        self.state = state

    def start_query_execution(self, **parameters: Any) -> dict[str, Any]:
        status = {"State": self.state, "StateChangeReason": "SYNTAX_ERROR: line 1:8"}
        return {"QueryExecution": {"QueryExecutionId": "q1", "Status": status, "Statistics": {"DataScannedInBytes": 5}}}


def test_athena_query_failure_is_task_failed_with_the_reason_and_success_carries_statistics() -> None:
    # WHEN a query fails THEN the task fails with Athena's reason
    with pytest.raises(TaskError) as raised:
        athena_start_query_execution_sync(_Athena("FAILED"))({"QueryString": "SELEC 1"}, TASK)
    assert (raised.value.error, raised.value.cause) == ("States.TaskFailed", "SYNTAX_ERROR: line 1:8")

    # WHEN a query succeeds THEN the output is GetQueryExecution's, with execution times filled in
    output = athena_start_query_execution_sync(_Athena("SUCCEEDED"))({"QueryString": "SELECT 1"}, TASK)
    statistics = output["QueryExecution"]["Statistics"]
    assert statistics["DataScannedInBytes"] == 5
    assert statistics["TotalExecutionTimeInMillis"] >= 0


# --- boto3 services on moto -----------------------------------------------------------------------------------


def test_dynamodb_put_and_get_item_through_the_optimized_integration(session: boto3.Session) -> None:
    # GIVEN a table
    session.client("dynamodb").create_table(
        TableName="runs",
        KeySchema=[{"AttributeName": "run_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "run_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    definition = {
        "StartAt": "Put",
        "States": {
            "Put": {
                "Type": "Task",
                "Resource": "arn:aws:states:::dynamodb:putItem",
                "Parameters": {"TableName": "runs", "Item": {"run_id": {"S.$": "$.id"}, "status": {"S": "OK"}}},
                "ResultPath": None,
                "Next": "Get",
            },
            "Get": {
                "Type": "Task",
                "Resource": "arn:aws:states:::dynamodb:getItem",
                "Parameters": {"TableName": "runs", "Key": {"run_id": {"S.$": "$.id"}}},
                "End": True,
            },
        },
    }

    # WHEN it runs
    execution = _run(definition, session, {"id": "r-1"})

    # THEN the item written is read back, without ResponseMetadata
    assert execution.output == {"Item": {"run_id": {"S": "r-1"}, "status": {"S": "OK"}}}


def test_dynamodb_errors_are_named_like_step_functions_names_them(session: boto3.Session) -> None:
    # WHEN the optimized integration writes to a missing table THEN the error is DynamoDB.<Code>
    execution = _run(
        _task("arn:aws:states:::dynamodb:putItem", {"TableName": "nope", "Item": {"k": {"S": "v"}}}), session
    )
    assert execution.error == "DynamoDB.ResourceNotFoundException"

    # WHEN the SDK integration does THEN the prefix is the SDK client's name
    execution = _run(
        _task("arn:aws:states:::aws-sdk:dynamodb:getItem", {"TableName": "nope", "Key": {"k": {"S": "v"}}}), session
    )
    assert execution.error == "DynamoDb.ResourceNotFoundException"


def test_sns_publish_sends_a_json_message_built_from_an_object(session: boto3.Session) -> None:
    # GIVEN a topic with a queue subscribed
    sns, sqs = session.client("sns"), session.client("sqs")
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})

    # WHEN a task publishes an object as Message
    execution = _run(_task("arn:aws:states:::sns:publish", {"TopicArn": topic, "Message.$": "$"}), session, {"run": 1})

    # THEN the subscriber receives its JSON text, and the task returns the MessageId
    assert "MessageId" in execution.output
    (message,) = sqs.receive_message(QueueUrl=queue)["Messages"]
    assert json.loads(message["Body"]) == {"run": 1}


def test_put_events_can_be_delivered_to_a_local_bus(session: boto3.Session) -> None:
    # GIVEN a local bus collecting events
    delivered: list[tuple[dict[str, Any], str]] = []
    parameters = {"Entries": [{"Source": "datalake.pipeline", "DetailType": "PipelineRunSucceeded", "Detail.$": "$"}]}

    # WHEN a task puts an event with an object as Detail
    execution = _run(
        _task("arn:aws:states:::events:putEvents", parameters),
        session,
        {"run": 1},
        deliver_event=lambda event, bus: delivered.append((event, bus)),
    )

    # THEN the bus got an EventBridge event on the default bus, and the task reports no failed entry
    ((event, bus),) = delivered
    assert bus == "default"
    assert (event["source"], event["detail-type"], event["detail"]) == (
        "datalake.pipeline",
        "PipelineRunSucceeded",
        {"run": 1},
    )
    assert execution.output["FailedEntryCount"] == 0
    assert execution.output["Entries"][0]["EventId"] == event["id"]


def test_put_events_through_the_endpoint(session: boto3.Session) -> None:
    # WHEN a task puts an event on moto's default bus THEN it succeeds with an event id
    parameters = {"Entries": [{"Source": "datalake.pipeline", "DetailType": "X", "Detail": {"a": 1}}]}
    execution = _run(_task("arn:aws:states:::events:putEvents", parameters), session)
    assert execution.output["FailedEntryCount"] == 0
    assert execution.output["Entries"][0]["EventId"]


def test_aws_sdk_maps_pascal_case_parameters_and_returns_pascal_case_json(session: boto3.Session) -> None:
    # GIVEN an EMR Serverless application (an API whose members are camelCase)
    application_id = session.client("emr-serverless").create_application(
        name="spark", releaseLabel="emr-7.8.0", type="SPARK"
    )["applicationId"]

    # WHEN the SDK integration reads it with a PascalCase parameter
    execution = _run(
        _task("arn:aws:states:::aws-sdk:emrserverless:getApplication", {"ApplicationId.$": "$.id"}),
        session,
        {"id": application_id},
    )

    # THEN the call reached the API and the response uses PascalCase names and ISO timestamps
    application = execution.output["Application"]
    assert application["ApplicationId"] == application_id
    assert application["ReleaseLabel"] == "emr-7.8.0"
    assert application["CreatedAt"].endswith("Z")


def test_aws_sdk_client_errors_are_named_service_dot_code(session: boto3.Session) -> None:
    # WHEN getCrawler names a crawler that does not exist THEN the error is Glue.EntityNotFoundException
    execution = _run(_task("arn:aws:states:::aws-sdk:glue:getCrawler", {"Name": "missing"}), session)
    assert execution.error == "Glue.EntityNotFoundException"


def test_aws_sdk_overrides_replace_an_action_and_keep_the_error_naming(session: boto3.Session) -> None:
    # GIVEN a local startCrawler that reports the crawler as already running
    def start_crawler(parameters: dict[str, Any]) -> Any:
        error = {"Error": {"Code": "CrawlerRunningException", "Message": f"{parameters['Name']} is running"}}
        raise ClientError(error, "StartCrawler")  # type: ignore[arg-type]

    definition = _task(
        "arn:aws:states:::aws-sdk:glue:startCrawler",
        {"Name": "raw"},
        Catch=[{"ErrorEquals": ["Glue.CrawlerRunningException"], "Next": "Running"}],
    )
    definition["States"]["Running"] = {"Type": "Succeed"}

    # WHEN the task runs
    execution = _run(definition, session, sdk_overrides={"glue:startCrawler": start_crawler})

    # THEN the Catch on the Step Functions error name took it
    assert execution.status == "SUCCEEDED"
    assert execution.output == {"Error": "Glue.CrawlerRunningException", "Cause": "raw is running"}


def test_resources_without_a_local_service_are_refused_naming_the_state(session: boto3.Session) -> None:
    # GIVEN a registry with no Glue job runner
    from lakebox.sfn import UnsupportedFeatureError

    # WHEN a definition uses glue:startJobRun.sync THEN it is refused before running
    with pytest.raises(UnsupportedFeatureError, match=r"'Call'.*glue:startJobRun\.sync"):
        _run(_task("arn:aws:states:::glue:startJobRun.sync", {"JobName": "j"}), session)


@pytest.mark.parametrize(
    ("service_id", "prefix"),
    [
        ("Glue", "Glue"),
        ("DynamoDB", "DynamoDb"),
        ("SNS", "Sns"),
        ("EMR Serverless", "EmrServerless"),
        ("S3", "S3"),
        ("EventBridge", "EventBridge"),
    ],
)
def test_error_prefix_follows_the_sdk_client_names(service_id: str, prefix: str) -> None:
    # WHEN a service id is turned into an error prefix THEN it matches the AWS SDK for Java client name
    assert error_prefix(service_id) == prefix


def test_json_safe_turns_datetimes_and_bytes_into_json_values() -> None:
    # WHEN an SDK response with datetimes and bytes is made JSON-safe THEN they become strings
    import datetime as dt

    value = {"at": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "blob": b"\x00\x01", "items": (1, 2)}
    assert json_safe(value) == {"at": "2026-01-02T03:04:05.000Z", "blob": "AAE=", "items": [1, 2]}


def test_a_later_task_service_takes_over_what_an_earlier_one_serves(session: boto3.Session) -> None:
    # GIVEN the boto3 fallback, then a local bus serving events:putEvents (in the order the box wires them)
    delivered: list[str] = []

    class Bus:
        def task_handlers(self) -> dict[str, Any]:
            return {EVENTS_PUT_EVENTS: events_put_events(deliver=lambda event, bus: delivered.append(bus))}

    integrations = Integrations.serving(AwsSdk(session), Bus())
    parameters = {"Entries": [{"Source": "s", "DetailType": "X", "Detail": {}, "EventBusName": "lake"}]}

    # WHEN a task puts an event
    execution = run_execution(_task(EVENTS_PUT_EVENTS, parameters), {}, integrations, clock=ManualClock())

    # THEN the local bus received it, and the fallback still serves the rest (aws-sdk:* among them)
    assert execution.status == "SUCCEEDED"
    assert delivered == ["lake"]
    assert "arn:aws:states:::aws-sdk:*" in integrations.patterns()

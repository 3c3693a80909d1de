"""The endpoint's wire protocols: requests as botocore signs and serializes them, routed and read back."""

from __future__ import annotations

import datetime as dt
import io
import json
import queue
import threading
import time
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.model import ServiceModel
from botocore.parsers import create_parser
from botocore.serialize import create_serializer

from lakebox.services import cbor
from lakebox.services.athena.api import _bind, _rest_operation
from lakebox.services.logs_api import _matcher
from lakebox.services.serve import AwsRequest, AwsResponse, ServiceError, ServiceRouter, read_request


def _environ(service: str, operation: str, params: dict[str, Any], protocol: str | None = None) -> dict[str, Any]:
    """The WSGI environ of a request botocore would send (serialized with `protocol`, signed with SigV4)."""
    session = botocore.session.get_session()
    model: ServiceModel = session.get_service_model(service)
    if protocol is not None:
        model = ServiceModel({**model._service_description, "metadata": {**model.metadata, "protocol": protocol}})
    serialized = create_serializer(model.protocol).serialize_to_request(params, model.operation_model(operation))
    request = AWSRequest(
        method=serialized["method"],
        url="http://127.0.0.1:4566" + serialized["url_path"],
        data=serialized["body"],
        headers=serialized["headers"],
        params=serialized["query_string"],
    )
    SigV4Auth(Credentials("a", "b"), model.signing_name, "us-east-1").add_auth(request)
    prepared = request.prepare()
    body = prepared.body if isinstance(prepared.body, bytes) else (prepared.body or "").encode()
    path, _, query = prepared.url.split("://", 1)[1].partition("/")[2].partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": prepared.method,
        "PATH_INFO": "/" + path,
        "QUERY_STRING": query,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    for name, value in prepared.headers.items():
        key = name.upper().replace("-", "_")
        value = value.decode() if isinstance(value, bytes) else value
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif key != "CONTENT_LENGTH":
            environ[f"HTTP_{key}"] = value
    return environ


class _Echo:
    """A served service that answers with the request it read."""

    signing_names = ("athena",)
    target_prefixes = ("AmazonAthena",)

    def handle(self, request: AwsRequest) -> AwsResponse | AwsRequest:
        if request.target == "ListEngineVersions":
            raise ServiceError("UnsupportedOperation", "ListEngineVersions is not served")
        operation, params = (request.target, request.json()) if request.target else _rest_operation(request)
        return AwsResponse.of_json({"operation": operation, "params": params})


def test_a_request_is_routed_by_its_signing_name_and_others_fall_through_to_moto() -> None:
    router = ServiceRouter()
    router.register(_Echo())
    # GIVEN requests signed for Athena (the JSON 1.1 protocol) and for S3
    athena = _environ("athena", "GetQueryExecution", {"QueryExecutionId": "q1"})
    s3 = _environ("s3", "ListBuckets", {})
    # WHEN routed
    answered, _ = router.route(athena)
    passed, environ = router.route(s3)
    # THEN Athena's is answered by the registered service and S3's goes on unchanged, its body still readable
    assert answered is not None
    assert json.loads(answered.body) == {"operation": "GetQueryExecution", "params": {"QueryExecutionId": "q1"}}
    assert passed is None and environ is s3


def _rest(method: str, path: str, query: str = "", body: bytes = b"") -> dict[str, Any]:
    """A REST-JSON request as botocore 1.44.18 sends Athena's (its model routes each operation to a path)."""
    return {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json",
        "wsgi.input": io.BytesIO(body),
        "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=a/20261207/us-east-1/athena/aws4_request, "
        "SignedHeaders=host, Signature=0",
    }


def test_athenas_rest_protocol_reads_path_query_and_body_parameters() -> None:
    # GIVEN the REST-JSON requests of the newest botocore (path, query string and body parameters)
    results = _rest("GET", "/query-executions/q%2F1/results", "MaxResults=5&NextToken=10")
    body = {"QueryString": "SELECT 1", "WorkGroup": "wg", "QueryExecutionContext": {"Database": "db"}}
    started = _rest("POST", "/query-executions", body=json.dumps(body).encode())
    unknown = _rest("GET", "/notebooks/n1/export")
    # WHEN read
    operation, params = _rest_operation(read_request(results))
    started_operation, started_params = _rest_operation(read_request(started))
    # THEN they are the same operations and parameters as in the JSON protocol
    assert (operation, params) == ("GetQueryResults", {"QueryExecutionId": "q/1", "MaxResults": 5, "NextToken": "10"})
    assert (started_operation, started_params) == ("StartQueryExecution", body)
    with pytest.raises(ServiceError, match="UnsupportedOperation"):
        _rest_operation(read_request(unknown))
    # AND the router sends them to the service signed for
    router = ServiceRouter()
    router.register(_Echo())
    answered, _ = router.route(_rest("GET", "/workgroups/wg"))
    assert answered is not None
    assert json.loads(answered.body) == {"operation": "GetWorkGroup", "params": {"WorkGroup": "wg"}}


def test_a_service_error_reaches_the_sdk_with_its_code_in_either_protocol() -> None:
    router = ServiceRouter()
    router.register(_Echo())
    answered, _ = router.route(_environ("athena", "ListEngineVersions", {}))
    assert answered is not None and answered.status == 400
    model = botocore.session.get_session().get_service_model("athena")
    for protocol in ("json", "rest-json"):
        parsed = create_parser(protocol).parse(
            {"status_code": answered.status, "headers": answered.headers, "body": answered.body},
            model.operation_model("ListEngineVersions").output_shape,
        )
        assert parsed["Error"]["Code"] == "UnsupportedOperation", protocol


def test_cbor_reads_what_botocore_writes_and_botocore_reads_what_it_writes() -> None:
    session = botocore.session.get_session()
    model = session.get_service_model("cloudwatch")
    model = ServiceModel(
        {**model._service_description, "metadata": {**model.metadata, "protocol": "smithy-rpc-v2-cbor"}}
    )
    operation = model.operation_model("GetMetricData")
    start = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    params = {
        "MetricDataQueries": [
            {
                "Id": "e",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/Lambda",
                        "MetricName": "Errors",
                        "Dimensions": [{"Name": "F", "Value": "f"}],
                    },
                    "Period": 300,
                    "Stat": "Sum",
                },
            }
        ],
        "StartTime": start,
        "EndTime": start + dt.timedelta(hours=1),
    }
    body = create_serializer("smithy-rpc-v2-cbor").serialize_to_request(params, operation)["body"]
    decoded = cbor.loads(body)
    assert decoded["StartTime"] == start.timestamp()
    assert decoded["MetricDataQueries"][0]["MetricStat"]["Metric"]["Dimensions"] == [{"Name": "F", "Value": "f"}]
    answer = {
        "MetricDataResults": [{"Id": "e", "Timestamps": [start], "Values": [1.5, -2.0], "StatusCode": "Complete"}]
    }
    parsed = create_parser("smithy-rpc-v2-cbor").parse(
        {"status_code": 200, "headers": {"smithy-protocol": "rpc-v2-cbor"}, "body": cbor.dumps(answer)},
        operation.output_shape,
    )
    assert parsed["MetricDataResults"][0]["Values"] == [1.5, -2.0]
    assert parsed["MetricDataResults"][0]["Timestamps"][0].timestamp() == start.timestamp()
    for value in (0, 23, 24, 255, 65_536, 2**40, -1, -1000, "é", b"\x00", [1, [2]], {"a": None, "b": True}, 0.1):
        assert cbor.loads(cbor.dumps(value)) == value


@pytest.mark.parametrize(
    ("query", "values", "bound"),
    [
        ("SELECT * FROM t WHERE a = ? AND b = ?", ["1", "'x'"], "SELECT * FROM t WHERE a = 1 AND b = 'x'"),
        ("SELECT '?' AS q, ? AS v", ["2"], "SELECT '?' AS q, 2 AS v"),
    ],
)
def test_execution_parameters_fill_placeholders_outside_quotes(query: str, values: list[str], bound: str) -> None:
    assert _bind(query, values) == bound


def test_execution_parameters_must_match_the_placeholders() -> None:
    with pytest.raises(ServiceError, match="more"):
        _bind("SELECT ?, ?", ["1"])
    with pytest.raises(ServiceError, match="fewer"):
        _bind("SELECT ?", ["1", "2"])


@pytest.mark.parametrize(
    ("pattern", "message", "matches"),
    [
        ("", "anything", True),
        ("ERROR", '{"level": "ERROR"}', True),
        ("ERROR -timeout", '{"level": "ERROR", "message": "timeout"}', False),
        ('"zone tags"', '{"message": "zone tags"}', True),
        ('{ $.level = "ERROR" }', '{"level": "ERROR"}', True),
        ('{ $.level = "ERROR" }', '{"level": "INFO"}', False),
        ('{ $.level != "ERROR" }', '{"level": "INFO"}', True),
        ("{ $.detail.count = 3 }", '{"detail": {"count": 3}}', True),
        ('{ $.level = "ERROR" }', "plain text", False),
    ],
)
def test_log_filter_patterns(pattern: str, message: str, matches: bool) -> None:
    assert _matcher(pattern)(message) is matches


def test_a_log_filter_pattern_lakebox_cannot_read_is_refused_by_name() -> None:
    with pytest.raises(ServiceError, match="not this filter pattern"):
        _matcher("[ip, user, ...]")


# ---------------------------------------------------------------------- Step Functions: machines, stops, records
ROLE = "arn:aws:iam::123456789012:role/worker"
NOTIFY = "arn:aws:states:::aws-sdk:sqs:sendMessage"
CALLBACK_MACHINE: dict[str, Any] = {
    "StartAt": "Ask Worker",
    "States": {
        "Ask Worker": {
            "Type": "Task",
            "Resource": NOTIFY + ".waitForTaskToken",
            "Parameters": {"QueueUrl": "q", "MessageBody.$": "$$.Task.Token"},
            "Catch": [{"ErrorEquals": ["Worker.Refused"], "Next": "Refused"}],
            "End": True,
        },
        "Refused": {"Type": "Pass", "Result": "refused", "End": True},
    },
}


class _StatesBox:
    """A Step Functions API on the real executor, with a worker queue of task tokens and a runs folder."""

    def __init__(self, runs: Path) -> None:
        from lakebox.home.runs import list_runs, record_run
        from lakebox.services.stepfunctions_api import StepFunctionsApi
        from lakebox.sfn import Integrations, run_execution, validate_definition
        from lakebox.sfn.callbacks import TaskTokens

        self.tokens: queue.Queue[str] = queue.Queue()
        integrations = Integrations()
        integrations.register(NOTIFY, lambda parameters, task: self.tokens.put(parameters["MessageBody"]))
        task_tokens = TaskTokens()

        def execute(machine: Any, input_: Any, name: str, stop: threading.Event) -> Any:
            execution = run_execution(
                json.loads(machine.definition),
                input_,
                integrations,
                name,
                state_machine_arn=machine.arn,
                callbacks=task_tokens,
                stop=stop,
            )
            record_run(runs, machine.logical_id or machine.name, execution)
            return execution

        self.api = StepFunctionsApi(
            machines=list,
            execute=execute,
            callbacks=task_tokens,
            validate=lambda definition: validate_definition(definition, integrations),
            recorded_runs=lambda: list_runs(runs),
        )
        self.router = ServiceRouter()
        self.router.register(self.api)
        self.model = botocore.session.get_session().get_service_model("stepfunctions")

    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """The operation as boto3 sends it and reads the answer; a ClientError-like AssertionError on an error."""
        answered, _ = self.router.route(_environ("stepfunctions", operation, params))
        assert answered is not None
        parsed: dict[str, Any] = create_parser("json").parse(
            {"status_code": answered.status, "headers": answered.headers, "body": answered.body},
            self.model.operation_model(operation).output_shape,
        )
        if "Error" in parsed:
            raise ServiceError(parsed["Error"]["Code"], parsed["Error"]["Message"])
        return parsed

    def finished(self, execution_arn: str) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while (described := self.call("DescribeExecution", executionArn=execution_arn))["status"] == "RUNNING":
            assert time.monotonic() < deadline, described
            time.sleep(0.02)
        self.api.join(30)
        return described


@pytest.mark.parametrize(
    ("definition", "refusal"),
    [
        ("{not json", "INVALID_JSON"),
        (json.dumps({"StartAt": "Nowhere", "States": {"A": {"Type": "Pass", "End": True}}}), "Nowhere"),
        (
            json.dumps(
                {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "arn:aws:states:::batch:x", "End": True}}}
            ),
            "A",
        ),
        (
            json.dumps(
                {
                    **CALLBACK_MACHINE,
                    "States": {
                        **CALLBACK_MACHINE["States"],
                        "Ask Worker": {**CALLBACK_MACHINE["States"]["Ask Worker"], "Parameters": {"QueueUrl": "q"}},
                    },
                }
            ),
            "token",
        ),
    ],
    ids=["not-json", "dangling-start", "no-integration", "callback-without-token"],
)
def test_a_definition_the_executor_cannot_run_is_refused_as_invalid_definition(
    tmp_path: Path, definition: str, refusal: str
) -> None:
    box = _StatesBox(tmp_path / "runs")
    with pytest.raises(ServiceError) as raised:
        box.call("CreateStateMachine", name="bad", definition=definition, roleArn=ROLE)
    assert raised.value.code == "InvalidDefinition"
    assert refusal in raised.value.message
    assert box.call("ListStateMachines")["stateMachines"] == []


def test_a_created_state_machine_is_listed_updated_and_deleted_with_step_functions_errors(tmp_path: Path) -> None:
    box = _StatesBox(tmp_path / "runs")
    definition = json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": 1, "End": True}}})
    # WHEN a state machine is created, and created again the same way
    arn = box.call("CreateStateMachine", name="mine", definition=definition, roleArn=ROLE)["stateMachineArn"]
    again = box.call("CreateStateMachine", name="mine", definition=definition, roleArn=ROLE)["stateMachineArn"]
    # THEN it is one machine, listed and described
    assert again == arn == "arn:aws:states:us-east-1:123456789012:stateMachine:mine"
    assert [m["name"] for m in box.call("ListStateMachines")["stateMachines"]] == ["mine"]
    assert json.loads(box.call("DescribeStateMachine", stateMachineArn=arn)["definition"])["States"]["A"]["Result"] == 1
    # AND the same name with another definition, a bad name or a bad role are refused by their codes
    other = definition.replace('"Result": 1', '"Result": 2')
    for params, code in [
        ({"name": "mine", "definition": other, "roleArn": ROLE}, "StateMachineAlreadyExists"),
        ({"name": "no spaces", "definition": definition, "roleArn": ROLE}, "InvalidName"),
        ({"name": "x", "definition": definition, "roleArn": "worker"}, "InvalidArn"),
    ]:
        with pytest.raises(ServiceError) as raised:
            box.call("CreateStateMachine", **params)
        assert raised.value.code == code
    # WHEN updated, a new execution runs the new definition
    box.call("UpdateStateMachine", stateMachineArn=arn, definition=other)
    run = box.call("StartExecution", stateMachineArn=arn)["executionArn"]
    assert json.loads(box.finished(run)["output"]) == 2
    # AND once deleted it is gone
    box.call("DeleteStateMachine", stateMachineArn=arn)
    assert box.call("ListStateMachines")["stateMachines"] == []
    with pytest.raises(ServiceError) as raised:
        box.call("DescribeStateMachine", stateMachineArn=arn)
    assert raised.value.code == "StateMachineDoesNotExist"


def test_a_callback_task_completes_with_send_task_success_and_a_failure_is_caught(tmp_path: Path) -> None:
    box = _StatesBox(tmp_path / "runs")
    arn = box.call("CreateStateMachine", name="callback", definition=json.dumps(CALLBACK_MACHINE), roleArn=ROLE)[
        "stateMachineArn"
    ]
    # WHEN one execution's worker answers with SendTaskSuccess and another's with SendTaskFailure
    succeeded = box.call("StartExecution", stateMachineArn=arn, name="answered")["executionArn"]
    box.call("SendTaskSuccess", taskToken=box.tokens.get(timeout=10), output='{"done": true}')
    assert json.loads(box.finished(succeeded)["output"]) == {"done": True}
    refused = box.call("StartExecution", stateMachineArn=arn, name="refused")["executionArn"]
    token = box.tokens.get(timeout=10)
    box.call("SendTaskFailure", taskToken=token, error="Worker.Refused", cause="no capacity")
    # THEN the first ends with the worker's output, the second takes its Catch
    assert json.loads(box.finished(refused)["output"]) == "refused"
    # AND an answered token is not answered twice
    with pytest.raises(ServiceError) as raised:
        box.call("SendTaskSuccess", taskToken=token, output="{}")
    assert raised.value.code == "TaskTimedOut"


def test_stop_execution_aborts_a_task_waiting_for_its_token(tmp_path: Path) -> None:
    box = _StatesBox(tmp_path / "runs")
    arn = box.call("CreateStateMachine", name="callback", definition=json.dumps(CALLBACK_MACHINE), roleArn=ROLE)[
        "stateMachineArn"
    ]
    execution = box.call("StartExecution", stateMachineArn=arn, name="stopped")["executionArn"]
    token = box.tokens.get(timeout=10)
    # WHEN the execution is stopped while its task waits for the worker
    box.call("StopExecution", executionArn=execution, error="Operator", cause="not needed")
    box.api.join(10)
    # THEN the executor itself stopped: the run is recorded ABORTED, its history ends ExecutionAborted
    run = box.api._find(execution)
    assert run.done.is_set() and run.execution is not None and run.execution.status == "ABORTED"
    described = box.call("DescribeExecution", executionArn=execution)
    assert (described["status"], described["error"], described["cause"]) == ("ABORTED", "Operator", "not needed")
    events = box.call("GetExecutionHistory", executionArn=execution)["events"]
    assert events[-1]["type"] == "ExecutionAborted"
    records = json.loads(next((tmp_path / "runs").glob("*-stopped.json")).read_text())
    assert records["status"] == "ABORTED"
    # AND the worker's late answer is refused
    with pytest.raises(ServiceError) as raised:
        box.call("SendTaskSuccess", taskToken=token, output="{}")
    assert raised.value.code == "TaskTimedOut"


def test_list_executions_lists_the_runs_recorded_by_lakebox_execute(tmp_path: Path) -> None:
    from lakebox.home.runs import record_run
    from lakebox.sfn import run_execution

    box = _StatesBox(tmp_path / "runs")
    definition = json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}})
    arn = box.call("CreateStateMachine", name="mine", definition=definition, roleArn=ROLE)["stateMachineArn"]
    # GIVEN a run recorded by `lakebox execute` (not started on the endpoint), and one started on the endpoint
    earlier = run_execution(json.loads(definition), {}, name="from-the-cli", state_machine_arn=arn)
    record_run(tmp_path / "runs", "mine", earlier)
    other = run_execution(json.loads(definition), {}, name="another-machine")
    record_run(tmp_path / "runs", "OtherStateMachine", other)
    started = box.call("StartExecution", stateMachineArn=arn, name="from-the-endpoint")["executionArn"]
    box.finished(started)
    # WHEN listed
    listed = box.call("ListExecutions", stateMachineArn=arn)["executions"]
    # THEN both are there once each, newest first, with their status; the other machine's run is not
    assert [(e["name"], e["status"]) for e in listed] == [
        ("from-the-endpoint", "SUCCEEDED"),
        ("from-the-cli", "SUCCEEDED"),
    ]
    assert listed[1]["executionArn"] == arn.replace(":stateMachine:", ":execution:") + ":from-the-cli"
    assert box.call("ListExecutions", stateMachineArn=arn, statusFilter="FAILED")["executions"] == []


def test_an_aws_sdk_callback_task_calls_the_action_and_waits_for_its_token() -> None:
    import boto3
    from moto import mock_aws

    from lakebox.sfn import Integrations, ManualClock, run_execution
    from lakebox.sfn.integrations import AwsSdk

    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        sqs = session.client("sqs")
        queue_url = sqs.create_queue(QueueName="workers")["QueueUrl"]
        integrations = Integrations.serving(AwsSdk(session))
        state = {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:sqs:sendMessage.waitForTaskToken",
            "Parameters": {"QueueUrl": queue_url, "MessageBody.$": "$$.Task.Token"},
            "TimeoutSeconds": 60,
            "End": True,
        }
        # WHEN an aws-sdk task with .waitForTaskToken runs and nobody answers
        execution = run_execution({"StartAt": "Ask", "States": {"Ask": state}}, {}, integrations, clock=ManualClock())
        # THEN it sent its token with the SDK action (not an action named "sendMessage.waitForTaskToken") and waited
        submitted = execution.events("TaskSubmitted")[0].details["taskToken"]
        assert sqs.receive_message(QueueUrl=queue_url)["Messages"][0]["Body"] == submitted
        assert (execution.status, execution.error) == ("FAILED", "States.Timeout"), execution.cause

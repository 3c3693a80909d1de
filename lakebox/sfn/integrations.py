"""Task handlers shaped like Step Functions' integrations, built from callables; the boto3 fallback `AwsSdk`."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from botocore import xform_name
from botocore.exceptions import ClientError, ParamValidationError
from botocore.model import ListShape, MapShape, Shape, StructureShape

from lakebox.sfn.errors import RUNTIME, TASK_FAILED, StatesError, TaskError
from lakebox.sfn.registry import Handler, TaskContext

if TYPE_CHECKING:
    import boto3

STATES = "arn:aws:states:::"
LAMBDA_INVOKE = f"{STATES}lambda:invoke"
GLUE_START_JOB_RUN_SYNC = f"{STATES}glue:startJobRun.sync"
EMR_SERVERLESS_START_JOB_RUN_SYNC = f"{STATES}emr-serverless:startJobRun.sync"
ATHENA_START_QUERY_EXECUTION_SYNC = f"{STATES}athena:startQueryExecution.sync"
ATHENA_START_QUERY_EXECUTION = f"{STATES}athena:startQueryExecution"
ATHENA_GET_QUERY_RESULTS = f"{STATES}athena:getQueryResults"
SNS_PUBLISH = f"{STATES}sns:publish"
EVENTS_PUT_EVENTS = f"{STATES}events:putEvents"
DYNAMODB_ACTIONS = ("putItem", "updateItem", "getItem", "deleteItem")
AWS_SDK = f"{STATES}aws-sdk:*"
LAMBDA_FUNCTION = "arn:aws:lambda:*:*:function:*"

Invoke = Callable[[str, Any], Any]
RunGlueJob = Callable[[str, dict[str, str]], dict[str, Any]]
RunEmrJob = Callable[[str, str, dict[str, Any]], dict[str, Any]]
SdkOverride = Callable[[dict[str, Any]], Any]
DeliverEvent = Callable[[dict[str, Any], str], Any]


class AthenaLike(Protocol):
    """The part of Athena's API the Athena tasks call (lakebox's DuckDB engine, or a boto3 client)."""

    @property
    def start_query_execution(self) -> Callable[..., dict[str, Any]]:
        """Runs a query to its end; returns the GetQueryExecution shape ``{"QueryExecution": {...}}``."""
        ...


# The service names Step Functions uses in aws-sdk ARNs, where boto3 names the service differently.
_BOTO3_SERVICE = {
    "emrserverless": "emr-serverless",
    "eventbridge": "events",
    "cloudwatchlogs": "logs",
    "sfn": "stepfunctions",
    "apigatewayv2": "apigatewayv2",
}


def json_safe(value: Any) -> Any:
    """Turn an SDK response into JSON values: datetimes to ISO-8601 strings, bytes to base64, tuples to lists.

    Parameters
    ----------
    value
        A response as boto3 (or a local engine) returns it.

    Returns
    -------
    Any
        The same data made only of JSON types.
    """
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def error_prefix(service_id: str) -> str:
    """Name a service the way Step Functions prefixes its errors (the AWS SDK for Java 2.x client name).

    Parameters
    ----------
    service_id
        botocore's ``serviceId`` (``Glue``, ``DynamoDB``, ``SNS``, ``EMR Serverless``).

    Returns
    -------
    str
        ``Glue``, ``DynamoDb``, ``Sns``, ``EmrServerless``: words joined, runs of capitals title-cased.
    """
    words = re.split(r"[\s_-]+", service_id.strip())
    return "".join(
        re.sub(r"[A-Z]{2,}", lambda m: m.group(0).capitalize(), word[:1].upper() + word[1:]) for word in words
    )


@contextlib.contextmanager
def client_errors(prefix: str) -> Iterator[None]:
    """Turn botocore errors into task errors named ``<prefix>.<ErrorCode>``, as Step Functions reports them.

    Parameters
    ----------
    prefix
        The service prefix (``Glue``, ``DynamoDB``, ``SNS``).
    """
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code") or "ServiceException"
        raise TaskError(f"{prefix}.{code}", str(error.get("Message") or exc)) from exc
    except ParamValidationError as exc:
        raise TaskError(TASK_FAILED, f"{prefix}: invalid parameters: {exc}") from exc


def _without_metadata(response: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in response.items() if key != "ResponseMetadata"}


# --- Lambda ----------------------------------------------------------------------------------------------


def lambda_invoke(invoke: Invoke) -> Handler:
    """``arn:aws:states:::lambda:invoke``: call a handler in process, shape the output like the integration.

    Parameters
    ----------
    invoke
        ``invoke(function_name_or_arn, payload) -> result``; an exception it raises is the function's error.

    Returns
    -------
    Handler
        A task handler returning ``{"ExecutedVersion", "Payload", "StatusCode": 200, ...}``. A handler
        exception becomes the task error named by the exception class (Lambda's ``errorType``), with
        Lambda's error document as the cause.
    """

    def handler(parameters: Any, task: TaskContext) -> Any:
        function = str(parameters["FunctionName"])
        result = _call_function(invoke, function, parameters.get("Payload", {}))
        request_id = str(uuid.uuid4())
        return {
            "ExecutedVersion": "$LATEST",
            "Payload": result,
            "SdkHttpMetadata": {"HttpStatusCode": 200},
            "SdkResponseMetadata": {"RequestId": request_id},
            "StatusCode": 200,
        }

    return handler


def lambda_function(invoke: Invoke) -> Handler:
    """A Lambda function ARN as the Resource (the original integration): the output is the function's result."""

    def handler(parameters: Any, task: TaskContext) -> Any:
        return _call_function(invoke, task.resource, parameters)

    return handler


def _call_function(invoke: Invoke, function: str, payload: Any) -> Any:
    try:
        return invoke(function, payload)
    except StatesError:
        raise
    except Exception as exc:  # whatever a handler raises is its errorType: Lambda reports every exception
        error_type = type(exc).__name__
        document = {
            "errorMessage": str(exc),
            "errorType": error_type,
            "requestId": str(uuid.uuid4()),
            "stackTrace": traceback.format_tb(exc.__traceback__),
        }
        raise TaskError(error_type, json.dumps(document)) from exc


# --- Glue and EMR Serverless jobs ------------------------------------------------------------------------


def glue_start_job_run_sync(run_glue_job: RunGlueJob) -> Handler:
    """``arn:aws:states:::glue:startJobRun.sync``: run the job to completion; the output is its JobRun.

    Parameters
    ----------
    run_glue_job
        ``run_glue_job(job_name, arguments) -> JobRun`` (``JobRunState`` and, on failure, ``ErrorMessage``).

    Returns
    -------
    Handler
        A task handler; a run that does not end ``SUCCEEDED`` fails the task with ``States.TaskFailed`` and
        the run's ``ErrorMessage`` as the cause. ``Id``, ``StartedOn``, ``CompletedOn`` and ``ExecutionTime``
        (seconds) are filled in from the local run when the job runner leaves them out.
    """

    def handler(parameters: Any, task: TaskContext) -> Any:
        job_name = str(parameters["JobName"])
        arguments = {str(key): str(value) for key, value in (parameters.get("Arguments") or {}).items()}
        started = dt.datetime.now(dt.UTC)
        with client_errors("Glue"):
            job_run = json_safe(run_glue_job(job_name, arguments))
        completed = dt.datetime.now(dt.UTC)
        defaults = {
            "Id": f"jr_{uuid.uuid4().hex}",
            "Attempt": 0,
            "JobName": job_name,
            "Arguments": arguments,
            "StartedOn": json_safe(started),
            "CompletedOn": json_safe(completed),
            "ExecutionTime": round((completed - started).total_seconds()),
        }
        job_run = {**defaults, **job_run}
        state = job_run.get("JobRunState")
        if state != "SUCCEEDED":
            cause = job_run.get("ErrorMessage") or f"Glue job run {job_run['Id']} of {job_name} ended in state {state}"
            raise TaskError(TASK_FAILED, str(cause))
        return job_run

    return handler


def emr_serverless_start_job_run_sync(run_emr_job: RunEmrJob) -> Handler:
    """``arn:aws:states:::emr-serverless:startJobRun.sync``: run the job to completion.

    Parameters
    ----------
    run_emr_job
        ``run_emr_job(application_id, execution_role_arn, job_driver) -> job run``. The task's ``JobDriver``
        (``{"SparkSubmit": {"EntryPoint", "EntryPointArguments", "SparkSubmitParameters"}}``, as Step Functions
        writes it) reaches it in the EMR Serverless API's casing (``{"sparkSubmit": {"entryPoint", ...}}``);
        the job run carries a ``state`` (``SUCCESS`` or ``FAILED``), bare or under ``jobRun``.

    Returns
    -------
    Handler
        A task handler whose output is the job run with PascalCase keys (``ApplicationId``, ``JobRunId``,
        ``State``...); a run that does not end ``SUCCESS`` fails with ``States.TaskFailed``.
    """

    def handler(parameters: Any, task: TaskContext) -> Any:
        application_id = str(parameters["ApplicationId"])
        job_driver = _camel_keys(parameters["JobDriver"])
        with client_errors("EmrServerless"):
            returned = json_safe(run_emr_job(application_id, str(parameters["ExecutionRoleArn"]), job_driver))
        job_run = returned.get("jobRun", returned.get("JobRun", returned))
        output = {key[:1].upper() + key[1:]: value for key, value in job_run.items()}
        output.setdefault("ApplicationId", application_id)
        output.setdefault("JobRunId", f"00{uuid.uuid4().hex[:14]}")
        state = output.get("State")
        if state != "SUCCESS":
            cause = output.get("StateDetails") or f"EMR Serverless job run {output['JobRunId']} ended in state {state}"
            raise TaskError(TASK_FAILED, str(cause))
        return output

    return handler


def _camel_keys(value: Any) -> Any:
    """Rename keys from the task's casing (``SparkSubmit``, ``EntryPoint``) to the API's (``sparkSubmit``)."""
    if isinstance(value, dict):
        return {str(key)[:1].lower() + str(key)[1:]: _camel_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_camel_keys(item) for item in value]
    return value


# --- Athena ----------------------------------------------------------------------------------------------


def athena_start_query_execution_sync(athena: AthenaLike) -> Handler:
    """``arn:aws:states:::athena:startQueryExecution.sync``: run the query; the output is GetQueryExecution's.

    Parameters
    ----------
    athena
        An object whose ``start_query_execution(**parameters)`` runs the query to its end and returns
        ``{"QueryExecution": {..., "Status": {"State": ...}, "Statistics": {...}}}``.

    Returns
    -------
    Handler
        A task handler; a query that ends ``FAILED`` or ``CANCELLED`` fails with ``States.TaskFailed`` and the
        ``StateChangeReason`` as the cause. The statistics' execution times are measured locally when the
        engine leaves them out (``DataScannedInBytes`` must come from the engine).
    """

    def handler(parameters: Any, task: TaskContext) -> Any:
        started = time.perf_counter()
        with client_errors("Athena"):
            response = json_safe(athena.start_query_execution(**parameters))
        elapsed_ms = round((time.perf_counter() - started) * 1000)
        execution = response.setdefault("QueryExecution", {})
        statistics = execution.setdefault("Statistics", {})
        statistics.setdefault("EngineExecutionTimeInMillis", elapsed_ms)
        statistics.setdefault("TotalExecutionTimeInMillis", elapsed_ms)
        status = execution.get("Status", {})
        if status.get("State") != "SUCCEEDED":
            reason = (
                status.get("StateChangeReason")
                or f"query {execution.get('QueryExecutionId')} ended in state {status.get('State')}"
            )
            raise TaskError(TASK_FAILED, str(reason))
        return _without_metadata(response)

    return handler


def athena_start_query_execution(athena: AthenaLike) -> Handler:
    """``arn:aws:states:::athena:startQueryExecution`` (request-response): the output is the execution id."""

    def handler(parameters: Any, task: TaskContext) -> Any:
        with client_errors("Athena"):
            response = json_safe(athena.start_query_execution(**parameters))
        execution_id = response.get("QueryExecutionId") or response.get("QueryExecution", {}).get("QueryExecutionId")
        return {"QueryExecutionId": execution_id}

    return handler


def athena_get_query_results(athena: Any) -> Handler:
    """``arn:aws:states:::athena:getQueryResults``: the ResultSet of a finished query."""

    def handler(parameters: Any, task: TaskContext) -> Any:
        with client_errors("Athena"):
            return _without_metadata(json_safe(athena.get_query_results(**parameters)))

    return handler


# --- SNS, EventBridge, DynamoDB (optimized integrations through boto3) ------------------------------------


class _Clients:
    """boto3 clients made once per service from one session (clients are thread-safe; making them is not)."""

    def __init__(self, session: boto3.Session) -> None:
        self._session = session
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, service: str) -> Any:
        with self._lock:
            client = self._clients.get(service)
            if client is None:
                client = self._clients[service] = self._session.client(service)  # type: ignore[call-overload]
            return client


def sns_publish(clients: _Clients) -> Handler:
    """``arn:aws:states:::sns:publish``; a non-string ``Message`` is sent as its JSON text."""

    def handler(parameters: Any, task: TaskContext) -> Any:
        request = dict(parameters)
        if not isinstance(request.get("Message"), str):
            request["Message"] = json.dumps(request.get("Message"))
        with client_errors("SNS"):
            return _without_metadata(clients.get("sns").publish(**request))

    return handler


def events_put_events(clients: _Clients | None = None, deliver: DeliverEvent | None = None) -> Handler:
    """``arn:aws:states:::events:putEvents``; a non-string ``Detail`` is sent as its JSON text.

    Parameters
    ----------
    clients
        Where the boto3 ``events`` client comes from (needed when ``deliver`` is not given).
    deliver
        When given, ``deliver(event, bus_name)`` receives each entry as an EventBridge event instead of the
        endpoint (lakebox's bus matches the template's rules and calls their targets).

    Returns
    -------
    Handler
        A task handler returning ``{"Entries": [...], "FailedEntryCount": n}``; failed entries fail the task
        with ``EventBridge.FailedEntry``.
    """

    def handler(parameters: Any, task: TaskContext) -> Any:
        entries = []
        for entry in parameters.get("Entries", []):
            entry = dict(entry)
            if not isinstance(entry.get("Detail"), str):
                entry["Detail"] = json.dumps(entry.get("Detail", {}))
            entries.append(entry)
        response: dict[str, Any]
        if deliver is not None:
            response = {"Entries": [{"EventId": _deliver(deliver, entry)} for entry in entries], "FailedEntryCount": 0}
        elif clients is not None:
            with client_errors("EventBridge"):
                response = _without_metadata(clients.get("events").put_events(Entries=entries))
        else:
            raise StatesError(RUNTIME, f"{task.resource}: no event bus and no events client to put events on")
        if response.get("FailedEntryCount"):
            failed = [entry for entry in list(response.get("Entries") or []) if "ErrorCode" in entry]
            raise TaskError("EventBridge.FailedEntry", json.dumps(failed))
        return response

    return handler


def _deliver(deliver: DeliverEvent, entry: dict[str, Any]) -> str:
    event_id = str(uuid.uuid4())
    bus = str(entry.get("EventBusName") or "default").rsplit("/", 1)[-1]
    event = {
        "version": "0",
        "id": event_id,
        "detail-type": entry.get("DetailType", ""),
        "source": entry.get("Source", ""),
        "account": "123456789012",
        "time": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": list(entry.get("Resources", [])),
        "detail": json.loads(entry["Detail"]),
    }
    deliver(event, bus)
    return event_id


def dynamodb_action(clients: _Clients, action: str) -> Handler:
    """``arn:aws:states:::dynamodb:<action>`` (putItem, updateItem, getItem, deleteItem) through boto3."""
    method = xform_name(action)

    def handler(parameters: Any, task: TaskContext) -> Any:
        with client_errors("DynamoDB"):
            return _without_metadata(getattr(clients.get("dynamodb"), method)(**parameters))

    return handler


# --- aws-sdk:<service>:<action> --------------------------------------------------------------------------


def aws_sdk(clients: _Clients, overrides: Mapping[str, SdkOverride] | None = None) -> Handler:
    """``arn:aws:states:::aws-sdk:<service>:<action>``: the SDK call through boto3 on the local endpoint.

    Parameters
    ----------
    clients
        Where boto3 clients come from.
    overrides
        Local implementations for ``"<service>:<action>"`` keys (``"glue:startCrawler"``), called with the
        task's parameters; they may raise botocore's ``ClientError`` like the real service.

    Returns
    -------
    Handler
        A task handler. Parameter names are matched to the API's member names whatever their case (the
        ASL writes them in PascalCase); the response keeps no ``ResponseMetadata``, its member names are
        PascalCase and its timestamps ISO-8601 strings; a ``ClientError`` becomes ``<Service>.<ErrorCode>``
        (``Glue.CrawlerRunningException``).
    """
    local = dict(overrides or {})

    def handler(parameters: Any, task: TaskContext) -> Any:
        service, action = _sdk_target(task.resource)
        boto_service = _BOTO3_SERVICE.get(service, service)
        client = clients.get(boto_service)
        prefix = error_prefix(client.meta.service_model.service_id)
        override = local.get(f"{service}:{action}")
        if override is not None:
            with client_errors(prefix):
                return json_safe(override(dict(parameters)))
        model = client.meta.service_model
        operation = next((name for name in model.operation_names if name.lower() == action.lower()), None)
        if operation is None:
            raise StatesError(RUNTIME, f"{task.resource}: {boto_service} has no action {action}")
        op_model = model.operation_model(operation)
        request = _to_sdk(parameters, op_model.input_shape)
        with client_errors(prefix):
            response = getattr(client, xform_name(operation))(**request)
        return _from_sdk(_without_metadata(response), op_model.output_shape)

    return handler


def _sdk_target(resource: str) -> tuple[str, str]:
    parts = resource.removeprefix(f"{STATES}aws-sdk:").split(":")
    if len(parts) != 2 or not all(parts):
        raise StatesError(RUNTIME, f"{resource} is not an aws-sdk:<service>:<action> resource")
    return parts[0], parts[1].removesuffix(".sync").removesuffix(".waitForTaskToken")


def _to_sdk(value: Any, shape: Shape | None) -> Any:
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        members = {name.lower(): name for name in shape.members}
        converted: dict[str, Any] = {}
        for key, item in value.items():
            name = members.get(str(key).lower(), str(key))
            converted[name] = _to_sdk(item, shape.members.get(name))
        return converted
    if isinstance(shape, ListShape) and isinstance(value, list):
        return [_to_sdk(item, shape.member) for item in value]
    if isinstance(shape, MapShape) and isinstance(value, dict):
        return {key: _to_sdk(item, shape.value) for key, item in value.items()}
    if shape is not None and shape.type_name == "blob" and isinstance(value, str):
        return value.encode()
    return value


def _from_sdk(value: Any, shape: Shape | None) -> Any:
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        members = shape.members
        return {key[:1].upper() + key[1:]: _from_sdk(item, members.get(key)) for key, item in value.items()}
    if isinstance(shape, ListShape) and isinstance(value, list):
        return [_from_sdk(item, shape.member) for item in value]
    if isinstance(shape, MapShape) and isinstance(value, dict):
        return {key: _from_sdk(item, shape.value) for key, item in value.items()}
    if hasattr(value, "read"):
        return base64.b64encode(value.read()).decode("ascii")
    return json_safe(value)


# --- the generic fallback ------------------------------------------------------------------------------


class AwsSdk:
    """The tasks any boto3 session serves: SNS, EventBridge, DynamoDB and every ``aws-sdk`` action (a TaskService).

    Parameters
    ----------
    session
        A boto3 session whose clients reach the endpoint.
    overrides
        Local implementations of ``aws-sdk`` actions, keyed ``"<service>:<action>"``.
    """

    def __init__(self, session: boto3.Session, overrides: Mapping[str, SdkOverride] | None = None) -> None:
        self._clients = _Clients(session)
        self._overrides = dict(overrides or {})

    def task_handlers(self) -> dict[str, Handler]:
        """``sns:publish``, ``events:putEvents``, the DynamoDB item actions and ``aws-sdk:*``, through boto3."""
        clients = self._clients
        handlers = {SNS_PUBLISH: sns_publish(clients), EVENTS_PUT_EVENTS: events_put_events(clients)}
        for action in DYNAMODB_ACTIONS:
            handlers[f"{STATES}dynamodb:{action}"] = dynamodb_action(clients, action)
        handlers[AWS_SDK] = aws_sdk(clients, self._overrides)
        return handlers

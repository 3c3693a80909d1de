"""Lambda, locally: a function's handler run in this process with its template environment and its log file."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import importlib.util
import io
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from lakebox.cfn.stack import StackError
from lakebox.errors import LakeboxError
from lakebox.sfn.errors import LAMBDA_RESOURCE_NOT_FOUND, TaskError
from lakebox.sfn.integrations import LAMBDA_FUNCTION, LAMBDA_INVOKE, lambda_function, lambda_invoke

if TYPE_CHECKING:
    import boto3

    from lakebox.cfn.stack import FunctionSpec, Stack
    from lakebox.services.metrics import MetricStore
    from lakebox.sfn.registry import Handler

REGION = "us-east-1"
_INVOKE_LOCK = threading.RLock()
"""One handler at a time: handlers run in this process and change its environment (`os.environ`) while they run."""
logger = logging.getLogger(__name__)


@dataclass
class AsyncInvocation:
    """The outcome of an asynchronous invocation: the result or the last error, and the attempts made."""

    function: str
    ok: bool
    result: Any = None
    error: str | None = None
    attempts: int = 1
    exception: Exception | None = field(default=None, repr=False)


@dataclass
class LambdaContext:
    """The Lambda context object handed to a handler."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: int
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _started: float = field(default_factory=time.monotonic)

    @property
    def log_group_name(self) -> str:
        """The function's log group."""
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        """A log stream name in Lambda's format."""
        return time.strftime("%Y/%m/%d/[$LATEST]") + self.aws_request_id.replace("-", "")

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's timeout."""
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))


def share_aws_data() -> None:
    """Let every botocore session of this process share one data loader per `AWS_DATA_PATH` (ADR 0040).

    A handler makes its own `boto3.Session()` when its module loads, as on Lambda, and each session's first client
    would read and parse the service's model files again (about 0.1 s for S3, more for a resource). The functions
    here run in one process, so the parsed files are kept for every session after the first: what a warm Lambda
    container keeps across invocations. The files are botocore's own and read-only; a session with another data path
    gets a loader of its own.
    """
    import botocore.loaders
    import botocore.session

    if not hasattr(botocore.session.create_loader, "cache_info"):
        setattr(botocore.session, "create_loader", functools.lru_cache(maxsize=8)(botocore.loaders.create_loader))  # noqa: B010


class LambdaRuntime:
    """The stack's functions run in this process: handler modules loaded once, environment and logs per call.

    Parameters
    ----------
    stack
        The template's functions.
    session
        The session of the endpoint (where asynchronous invocations send their failures).
    log_dir
        Where each function's stdout (its CloudWatch log, locally) is appended: `<log_dir>/<function name>.log`.
    metrics
        Where each invocation's Invocations and Errors are recorded.
    environment
        Variables every invocation gets on top of its template environment (the endpoint and credentials).
    """

    def __init__(
        self,
        stack: Stack,
        session: boto3.Session,
        *,
        log_dir: Path,
        metrics: MetricStore,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self.stack = stack
        self.session = session
        self.log_dir = log_dir
        self.metrics = metrics
        self.environment = dict(environment or {})
        self.hooks: list[Callable[[str, Any], None]] = []
        """Called with (logical id, event) before each invocation (tests watch what a function is sent)."""
        self._modules: dict[str, ModuleType] = {}
        self._logs: dict[str, io.TextIOWrapper] = {}
        share_aws_data()

    def close(self) -> None:
        """Close the functions' log files."""
        for stream in self._logs.values():
            stream.close()
        self._logs.clear()

    def invoke_async(self, function: str, event: Any) -> AsyncInvocation:
        """Lambda's asynchronous invocation, as EventBridge rules and schedules make it.

        A failed attempt is retried as the function's `EventInvokeConfig.MaximumRetryAttempts` says (2 when unset);
        when the retries are spent the request and its error go to the `DestinationConfig.OnFailure` destination
        (an SQS queue or SNS topic), in the record shape Lambda sends.
        """
        spec = self.stack.function(function)
        retries = int(spec.event_invoke.get("MaximumRetryAttempts", 2))
        attempts = 0
        while True:
            attempts += 1
            try:
                result = self.invoke(spec.logical_id, event)
            except Exception as exc:  # noqa: BLE001 - any handler failure is what asynchronous invocation retries
                error = f"{type(exc).__name__}: {exc}"
                logger.warning("%s failed (attempt %d): %s", spec.logical_id, attempts, error)
                if attempts <= retries:
                    continue
                self._send_failure(spec, event, exc, attempts)
                return AsyncInvocation(spec.logical_id, False, error=error, attempts=attempts, exception=exc)
            return AsyncInvocation(spec.logical_id, True, result=result, attempts=attempts)

    def _send_failure(self, spec: FunctionSpec, event: Any, exc: Exception, attempts: int) -> None:
        destination = (spec.event_invoke.get("DestinationConfig") or {}).get("OnFailure", {}).get("Destination")
        if not destination:
            return
        record = {
            "version": "1.0",
            "timestamp": dt.datetime.now(dt.UTC).isoformat(),
            "requestContext": {
                "functionArn": spec.arn,
                "condition": "RetriesExhausted",
                "approximateInvokeCount": attempts,
            },
            "requestPayload": event,
            "responsePayload": {"errorType": type(exc).__name__, "errorMessage": str(exc)},
        }
        session = self.session
        service = str(destination).split(":")[2]
        if service == "sns":
            session.client("sns").publish(TopicArn=str(destination), Message=json.dumps(record))
            return
        sqs = session.client("sqs")
        url = sqs.get_queue_url(QueueName=str(destination).split(":")[-1])["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))

    def invoke(self, function: str, payload: Any) -> Any:
        """Run a function's handler in this process with its template environment, as Lambda would.

        The payload and the result go through JSON, as they would over the Lambda API. Exceptions raised by the
        handler propagate unchanged (their class name is the Lambda `errorType`).
        """
        spec = self.stack.function(function)
        event = json.loads(json.dumps(payload))
        with _INVOKE_LOCK, self._function_env(spec), self._function_log(spec):
            module = self._module(spec)
            handler_name = spec.handler.rsplit(".", 1)[1]
            context = LambdaContext(spec.name, spec.arn, spec.memory, spec.timeout)
            for hook in self.hooks:
                hook(spec.logical_id, event)
            failed = True
            try:
                result = getattr(module, handler_name)(event, context)
                failed = False
            finally:
                self.metrics.record_invocation(spec.name, failed)
        return json.loads(json.dumps(result, default=str))

    def task_handlers(self) -> dict[str, Handler]:
        """The executor's Lambda tasks (``lambda:invoke`` and a function ARN as the Resource) on this runtime."""
        return {LAMBDA_INVOKE: lambda_invoke(self._invoke_task), LAMBDA_FUNCTION: lambda_function(self._invoke_task)}

    def _invoke_task(self, function: str, payload: Any) -> Any:
        # a function the template does not define fails the task as Lambda does, with a catchable error
        try:
            self.stack.function(function)
        except StackError as exc:
            raise TaskError(LAMBDA_RESOURCE_NOT_FOUND, f"Function not found: {function}") from exc
        return self.invoke(function, payload)

    def _module(self, spec: FunctionSpec) -> ModuleType:
        module = self._modules.get(spec.logical_id)
        if module is None:
            module_name, _ = spec.handler.rsplit(".", 1)
            path = spec.code_dir / f"{module_name.replace('.', '/')}.py"
            if not path.exists():
                raise LakeboxError(f"{spec.logical_id}: handler file {path} does not exist")
            unique = f"lakebox_fn_{spec.logical_id}"
            loader_spec = importlib.util.spec_from_file_location(unique, path)
            if loader_spec is None or loader_spec.loader is None:
                raise LakeboxError(f"{spec.logical_id}: cannot import {path}")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[unique] = module
            sys.path.insert(0, str(spec.code_dir))
            sys.path.extend(str(d) for d in spec.layer_dirs if str(d) not in sys.path)
            try:
                loader_spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(spec.code_dir))
            self._modules[spec.logical_id] = module
        return module

    @contextlib.contextmanager
    def _function_env(self, spec: FunctionSpec) -> Iterator[None]:
        runtime = {
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_SERVICE_NAME": spec.environment.get("POWERTOOLS_SERVICE_NAME", spec.logical_id),
        }
        saved = dict(os.environ)
        os.environ.update(self.environment)
        os.environ.update(spec.environment)
        os.environ.update(runtime)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)

    @contextlib.contextmanager
    def _function_log(self, spec: FunctionSpec) -> Iterator[None]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stream = self._logs.get(spec.name)
        if stream is None or stream.closed:
            stream = self._logs[spec.name] = (self.log_dir / f"{spec.name}.log").open("a", encoding="utf-8")
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            try:
                yield
            finally:
                stream.flush()

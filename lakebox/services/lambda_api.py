"""Lambda on the endpoint: the template's functions listed and invoked through the box's one Lambda runtime."""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

from lakebox.services.serve import AwsRequest, AwsResponse, ServiceError, unsupported

if TYPE_CHECKING:
    from pathlib import Path

    from lakebox.cfn.stack import FunctionSpec, Stack
    from lakebox.services.lambdas import LambdaRuntime

logger = logging.getLogger(__name__)

_ROUTES: Final = (
    ("GET", re.compile(r"^/2015-03-31/functions/?$"), "ListFunctions"),
    ("GET", re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/?$"), "GetFunction"),
    ("GET", re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/configuration/?$"), "GetFunctionConfiguration"),
    ("POST", re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations/?$"), "Invoke"),
)
_PAGE: Final = 50


@dataclass
class LambdaApi:
    """Lambda's API (REST-JSON) over the box's functions.

    Parameters
    ----------
    stack
        The resolved template: its functions.
    lambdas
        The box's one Lambda runtime, which runs them.
    logs
        The folder of the function logs.
    """

    stack: Stack
    lambdas: LambdaRuntime
    logs: Path
    signing_names: tuple[str, ...] = ("lambda",)
    target_prefixes: tuple[str, ...] = ()
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, request: AwsRequest) -> AwsResponse | AwsRequest:
        """Answer a Lambda request."""
        for method, pattern, operation in _ROUTES:
            match = pattern.match(request.path)
            if match and request.method == method:
                name = unquote(match.groupdict().get("name") or "")
                handler: Callable[[AwsRequest, str], AwsResponse] = getattr(self, _SNAKE[operation])
                return handler(request, name)
        raise unsupported("Lambda", f"{request.method} {request.path}")

    def _spec(self, name: str) -> FunctionSpec:
        from lakebox.cfn.stack import StackError

        qualifier = name.rsplit(":", maxsplit=1)[-1] if name.count(":") in (1, 7) else None
        if qualifier not in (None, "$LATEST"):
            raise ServiceError("ResourceNotFoundException", f"Function not found: {name}", 404)
        try:
            return self.stack.function(name)
        except StackError as exc:
            raise ServiceError("ResourceNotFoundException", f"Function not found: {name}", 404) from exc

    def list_functions(self, request: AwsRequest, _: str) -> AwsResponse:
        """ListFunctions: the template's functions."""
        items = [self._configuration(spec) for spec in sorted(self.stack.functions.values(), key=lambda s: s.name)]
        start = int((request.query.get("Marker") or ["0"])[-1] or 0)
        size = int((request.query.get("MaxItems") or [str(_PAGE)])[-1])
        body: dict[str, Any] = {"Functions": items[start : start + size]}
        if start + size < len(items):
            body["NextMarker"] = str(start + size)
        return AwsResponse.of_json(body, "application/json")

    def get_function(self, _: AwsRequest, name: str) -> AwsResponse:
        """GetFunction: the function's configuration (its code stays in the project's folder)."""
        spec = self._spec(name)
        return AwsResponse.of_json(
            {"Configuration": self._configuration(spec), "Code": {"RepositoryType": "S3", "Location": ""}},
            "application/json",
        )

    def get_function_configuration(self, _: AwsRequest, name: str) -> AwsResponse:
        """GetFunctionConfiguration."""
        return AwsResponse.of_json(self._configuration(self._spec(name)), "application/json")

    def invoke(self, request: AwsRequest, name: str) -> AwsResponse:
        """Invoke: RequestResponse runs the handler now; Event queues it (retries and destinations as configured)."""
        spec = self._spec(name)
        kind = request.headers.get("x-amz-invocation-type", "RequestResponse")
        try:
            payload = json.loads(request.body) if request.body.strip() else {}
        except ValueError as exc:
            raise ServiceError(
                "InvalidRequestContentException", f"Could not parse request body into json: {exc}"
            ) from exc
        if kind == "DryRun":
            return AwsResponse(204, b"", {"Content-Type": "application/json"})
        if kind == "Event":
            thread = threading.Thread(target=self.lambdas.invoke_async, args=(spec.logical_id, payload), daemon=True)
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()
            return AwsResponse(202, b"", {"Content-Type": "application/json"})
        if kind != "RequestResponse":
            raise ServiceError("InvalidParameterValueException", f"Unsupported invocation type {kind}")
        headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": "$LATEST"}
        log = self.logs / f"{spec.name}.log"
        offset = log.stat().st_size if log.exists() else 0
        try:
            result = self.lambdas.invoke(spec.logical_id, payload)
            body = json.dumps(result).encode()
        except Exception as exc:  # noqa: BLE001 - a handler's failure is the invocation's answer, as Lambda gives it
            failure = {
                "errorMessage": str(exc),
                "errorType": type(exc).__name__,
                "stackTrace": traceback.format_tb(exc.__traceback__)[-5:],
            }
            headers["X-Amz-Function-Error"] = "Unhandled"
            body = json.dumps(failure).encode()
        if request.headers.get("x-amz-log-type") == "Tail":
            with log.open("rb") as handle:
                handle.seek(offset)
                headers["X-Amz-Log-Result"] = base64.b64encode(handle.read()[-4096:]).decode()
        return AwsResponse(200, body, headers)

    def _configuration(self, spec: FunctionSpec) -> dict[str, Any]:
        resource = self.stack.resources[spec.logical_id].get("Properties", {})
        defaults = self.stack.globals.get("Function", {})
        runtime = resource.get("Runtime", defaults.get("Runtime", "python3.11"))
        architectures = resource.get("Architectures", defaults.get("Architectures", ["x86_64"]))
        tracing = resource.get("Tracing", defaults.get("Tracing", "PassThrough"))
        return {
            "FunctionName": spec.name,
            "FunctionArn": spec.arn,
            "Runtime": str(runtime),
            "Role": f"arn:aws:iam::{spec.arn.split(':')[4]}:role/{spec.name}-role",
            "Handler": spec.handler,
            "CodeSize": 0,
            "Description": str(resource.get("Description", "")),
            "Timeout": spec.timeout,
            "MemorySize": spec.memory,
            "Version": "$LATEST",
            "Environment": {"Variables": spec.environment},
            "TracingConfig": {"Mode": "Active" if tracing == "Active" else "PassThrough"},
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "PackageType": "Zip",
            "Architectures": [str(a) for a in architectures] if isinstance(architectures, list) else ["x86_64"],
            "LoggingConfig": {
                "LogFormat": "JSON",
                "LogGroup": str(
                    self.stack.resolve((resource.get("LoggingConfig") or {}).get("LogGroup"))
                    or f"/aws/lambda/{spec.name}"
                ),
            },
        }

    def join(self, timeout: float | None = None) -> None:
        """Wait for the asynchronous invocations running now."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)


_SNAKE: Final = {
    "ListFunctions": "list_functions",
    "GetFunction": "get_function",
    "GetFunctionConfiguration": "get_function_configuration",
    "Invoke": "invoke",
}

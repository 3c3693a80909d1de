"""How a lakebox service is served on the endpoint: requests routed by the service they are signed for.

The endpoint hands every request to a `ServiceRouter` first. A request signed for a service the box serves
(the signing name in SigV4's credential scope, or the `X-Amz-Target` prefix of an unsigned JSON call) goes to that
service's API, which answers it, or hands it back, possibly rewritten, for moto to answer. Everything else goes to
moto unchanged.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol
from urllib.parse import parse_qs, quote

logger = logging.getLogger(__name__)

_SCOPE: Final = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/,\s]+)/([^/,\s]+)/aws4_request")
_QUERY_SCOPE: Final = re.compile(r"^[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request$")
_STATUS: Final = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}


@dataclass
class AwsRequest:
    """One request to the endpoint, read once: the WSGI environ's parts a service API needs."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    signing_name: str | None
    region: str
    environ: dict[str, Any] = field(repr=False)

    @property
    def target(self) -> str | None:
        """The operation of a JSON-protocol call (`X-Amz-Target: Prefix.Operation`)."""
        target = self.headers.get("x-amz-target")
        return target.rsplit(".", 1)[-1] if target else None

    def json(self) -> dict[str, Any]:
        """The body as a JSON object (`{}` when empty)."""
        if not self.body.strip():
            return {}
        loaded = json.loads(self.body)
        if not isinstance(loaded, dict):
            raise ServiceError("SerializationException", "the request body is not a JSON object")
        return loaded

    def to_environ(self) -> dict[str, Any]:
        """A WSGI environ carrying this request (its body, method, path and headers as they are now)."""
        environ = dict(self.environ)
        environ["REQUEST_METHOD"] = self.method
        environ["PATH_INFO"] = self.path
        environ["QUERY_STRING"] = "&".join(
            f"{quote(k, safe='')}={quote(v, safe='')}" for k, values in self.query.items() for v in values
        )
        environ["wsgi.input"] = io.BytesIO(self.body)
        environ["CONTENT_LENGTH"] = str(len(self.body))
        for name in [k for k in environ if k.startswith("HTTP_")]:
            del environ[name]
        for name, value in self.headers.items():
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = value
            elif key != "CONTENT_LENGTH":
                environ[f"HTTP_{key}"] = value
        return environ


@dataclass
class AwsResponse:
    """What a service API answers: status, headers and body."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of_json(cls, payload: Any, content_type: str = "application/x-amz-json-1.1", status: int = 200) -> AwsResponse:
        """A JSON answer (dates as ISO text, which every SDK's JSON parser reads)."""
        return cls(status, json.dumps(payload, default=str).encode(), {"Content-Type": content_type})


class ServiceError(Exception):
    """An error answer of a served service: its code (the exception name clients see) and message."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status

    def response(self, content_type: str = "application/x-amz-json-1.1") -> AwsResponse:
        """The error as the JSON protocols carry it: the code in `__type` and in `x-amzn-ErrorType`."""
        body = {"__type": self.code, "message": self.message, "Message": self.message}
        return AwsResponse(
            self.status, json.dumps(body).encode(), {"Content-Type": content_type, "x-amzn-ErrorType": self.code}
        )


def unsupported(service: str, operation: str) -> ServiceError:
    """The answer to an operation a served service does not carry out locally: never an empty success."""
    return ServiceError(
        "UnsupportedOperation",
        f"{service} {operation} is not available on the lakebox endpoint (lakebox serves only what it can answer "
        "faithfully)",
    )


class ServiceApi(Protocol):
    """A lakebox service's wire protocol: answers a request, or hands it (possibly rewritten) to moto."""

    signing_names: tuple[str, ...]
    target_prefixes: tuple[str, ...]

    def handle(self, request: AwsRequest) -> AwsResponse | AwsRequest:
        """Answer `request`, or return the request moto should answer."""
        ...


class ServiceRouter:
    """The services the box serves on the endpoint, by signing name and `X-Amz-Target` prefix."""

    def __init__(self) -> None:
        self._by_name: dict[str, ServiceApi] = {}
        self._by_target: dict[str, ServiceApi] = {}
        self._lock = threading.Lock()

    def register(self, api: ServiceApi) -> None:
        """Serve `api` on the endpoint from now on (a later registration for the same service replaces it)."""
        with self._lock:
            for name in api.signing_names:
                self._by_name[name] = api
            for prefix in api.target_prefixes:
                self._by_target[prefix] = api

    def clear(self) -> None:
        """Serve no service of the box any more: every request goes to moto."""
        with self._lock:
            self._by_name.clear()
            self._by_target.clear()

    def service_of(self, environ: dict[str, Any]) -> ServiceApi | None:
        """The API serving this request's service, if the box serves it."""
        name, _ = _scope(environ)
        with self._lock:
            if name and name in self._by_name:
                return self._by_name[name]
            target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
            if target:
                return self._by_target.get(target.rsplit(".", 1)[0])
        return None

    def route(self, environ: dict[str, Any]) -> tuple[AwsResponse | None, dict[str, Any]]:
        """Answer the request when a served service takes it; otherwise the environ moto should get."""
        api = self.service_of(environ)
        if api is None:
            return None, environ
        request = read_request(environ)
        try:
            handled = api.handle(request)
        except ServiceError as exc:
            return exc.response(_content_type(request)), environ
        except Exception as exc:  # a defect of a local service answers as AWS's InternalFailure, and says what failed
            logger.exception("the endpoint failed on %s %s", request.method, request.path)
            failure = ServiceError("InternalFailure", f"lakebox failed: {type(exc).__name__}: {exc}", 500)
            return failure.response(_content_type(request)), environ
        if isinstance(handled, AwsResponse):
            return handled, environ
        return None, handled.to_environ()


def _content_type(request: AwsRequest) -> str:
    return "application/x-amz-json-1.1" if request.target else "application/json"


def signing_name(environ: dict[str, Any]) -> str | None:
    """The service a request is signed for (SigV4's credential scope), None when it names none."""
    return _scope(environ)[0]


def _scope(environ: dict[str, Any]) -> tuple[str | None, str]:
    """(signing name, region) from SigV4's Authorization header or a presigned URL's credential."""
    match = _SCOPE.search(str(environ.get("HTTP_AUTHORIZATION", "")))
    if match:
        return match.group(2), match.group(1)
    credential = parse_qs(str(environ.get("QUERY_STRING", ""))).get("X-Amz-Credential")
    if credential:
        found = _QUERY_SCOPE.match(credential[0])
        if found:
            return found.group(2), found.group(1)
    return None, "us-east-1"


def read_request(environ: dict[str, Any]) -> AwsRequest:
    """Read the request's body once and describe it."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ.get("wsgi.input")
    body = stream.read(length) if stream is not None and length else b""
    headers = {
        key[5:].replace("_", "-").lower(): str(value) for key, value in environ.items() if key.startswith("HTTP_")
    }
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = str(environ["CONTENT_TYPE"])
    name, region = _scope(environ)
    environ["wsgi.input"] = io.BytesIO(body)
    return AwsRequest(
        method=str(environ.get("REQUEST_METHOD", "GET")),
        path=str(environ.get("PATH_INFO", "/")),
        query=parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True),
        headers=headers,
        body=body,
        signing_name=name,
        region=region,
        environ=environ,
    )


def respond(response: AwsResponse, start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Send `response` through WSGI."""
    headers = [*response.headers.items(), ("Content-Length", str(len(response.body)))]
    start_response(f"{response.status} {_STATUS.get(response.status, 'Error')}", headers)
    return [response.body]

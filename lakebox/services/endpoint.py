"""The local AWS endpoint: moto's server on a port of this process, counting the requests that change state."""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from lakebox.errors import LakeboxError
from lakebox.services.changes import Change, ChangeLog, change_of
from lakebox.services.s3tail import ObjectTail, object_tail
from lakebox.services.serve import ServiceRouter, respond, signing_name

_READ_ACTIONS = ("Get", "Describe", "List", "Query", "Scan", "BatchGet", "Head", "Search")
_IDLE_SECONDS = 60.0
"""How long a kept-alive connection may wait for its next request before the endpoint closes it."""
_DRAIN_LIMIT = 1 << 20
"""The most of a request body the application left unread that is read past to keep the connection; more closes it."""


class Gate:
    """Requests pass together; a snapshot closes the gate, waits for the requests inside, and holds the rest."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._inside = 0
        self._closed = False

    @contextlib.contextmanager
    def passage(self) -> Iterator[None]:
        """One request's way through the gate."""
        with self._cond:
            while self._closed:
                self._cond.wait()
            self._inside += 1
        try:
            yield
        finally:
            with self._cond:
                self._inside -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def closed(self) -> Iterator[None]:
        """Hold every new request until the block ends, once those already inside are done."""
        with self._cond:
            while self._closed:
                self._cond.wait()
            self._closed = True
            while self._inside:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._closed = False
                self._cond.notify_all()


def _changes_state(environ: dict[str, Any]) -> bool:
    if environ.get("REQUEST_METHOD") in ("GET", "HEAD", "OPTIONS"):
        return False
    if str(environ.get("PATH_INFO", "")).startswith("/moto-api"):
        return False
    action = str(environ.get("HTTP_X_AMZ_TARGET", "")).rsplit(".", 1)[-1]
    return not action.startswith(_READ_ACTIONS)


def _change(environ: dict[str, Any]) -> Change | None:
    """What the request may change (None for a read); moto's own API (a reset, a replay) may change everything."""
    moto_api = str(environ.get("PATH_INFO", "")).startswith("/moto-api")
    if moto_api and environ.get("REQUEST_METHOD") not in ("GET", "HEAD", "OPTIONS"):
        return change_of(environ, None)
    if not _changes_state(environ):
        return None
    return change_of(environ, signing_name(environ))


def _check_free(host: str, port: int) -> None:
    """Fail at once, in one line, when the port is taken (werkzeug would print two lines and exit)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise LakeboxError(
                    f"port {port} on {host} is in use by another program: choose another with --port"
                ) from exc
            raise


class _Body(io.RawIOBase):
    """A request's body of known length, read from the connection: what the application leaves unread is read past
    before the next request on the connection."""

    def __init__(self, stream: Any, length: int) -> None:
        super().__init__()
        self._stream = stream
        self.left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left <= 0:
            return 0
        view = memoryview(buffer)[: min(len(buffer), self.left)]
        data = self._stream.read(len(view))
        view[: len(data)] = data
        self.left -= len(data)
        if not data:
            self.left = 0
        return len(data)

    def drained(self) -> bool:
        """Read what is left (up to `_DRAIN_LIMIT`); whether the next request's first byte is next on the wire."""
        while 0 < self.left <= _DRAIN_LIMIT:
            if not self.read(min(self.left, 1 << 16)):
                return False
        return self.left == 0


def _keep_alive_handler(open_connections: set[socket.socket], lock: threading.Lock) -> type[Any]:
    """moto's request handler with HTTP/1.1 keep-alive, its connections counted in `open_connections`.

    werkzeug's handler ends every response with ``Connection: close`` (Python's server would read the unread rest of
    a body as the next request), so every request of an SDK client opened a new connection and a new thread. Here a
    body of known length is read to its end after the response, and the connection stays open unless the client asked
    to close it, the body was chunked, or more than `_DRAIN_LIMIT` of it was left unread.
    """
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class KeepAliveHandler(MotoRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = _IDLE_SECONDS
        disable_nagle_algorithm = True  # a response's headers and body are two writes: no wait for the first's ACK
        _body: _Body | None = None
        _wire: Any = None

        def setup(self) -> None:
            super().setup()
            with lock:
                open_connections.add(self.connection)

        def finish(self) -> None:
            with lock:
                open_connections.discard(self.connection)
            super().finish()

        def make_environ(self) -> dict[str, Any]:
            environ: dict[str, Any] = super().make_environ()
            self._body = None
            if not environ.get("wsgi.input_terminated"):  # a body of known length (or none), not chunked
                self._body = _Body(self.rfile, int(environ.get("CONTENT_LENGTH") or 0))
                environ["wsgi.input"] = self._body
            # werkzeug reads whatever is on the wire after its response (the next request, here): give it nothing
            self._wire, self.rfile = self.rfile, io.BufferedReader(_Body(self.rfile, 0))
            return environ

        def send_header(self, keyword: str, value: str) -> None:
            if keyword.lower() == "connection" and value.lower() == "close" and not self.close_connection:
                return  # werkzeug's "always close": whether to close is decided after the response
            super().send_header(keyword, value)

        def log_error(self, format: str, *args: Any) -> None:
            if not format.startswith("Request timed out"):  # an idle connection closed, as meant
                super().log_error(format, *args)

        def run_wsgi(self) -> None:
            self._wire = self.rfile
            try:
                super().run_wsgi()
            finally:
                self.rfile = self._wire
            if self._body is None or not self._body.drained():
                self.close_connection = True

    return KeepAliveHandler


@functools.cache
def _dispatcher() -> type[Any]:
    """moto's dispatcher to its services' applications, finding each host's service once.

    moto looks a request's host up, for every request and under one lock for all of them, in the list of its modules
    (a directory listing of moto's package and a `stat` per entry) and then in the URL patterns of every service
    (some 250 regular expressions): a fifth of the time the endpoint spent on a small S3 read. Both are fixed for
    the life of the process, so the service found for a host is kept (ADR 0043).
    """
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    class KeptBackendDispatcher(DomainDispatcherApplication):
        _backends: dict[str | None, Any]

        def get_backend_for_host(self, host: str | None) -> Any:
            backends = self.__dict__.setdefault("_backends", {})
            if host not in backends:
                backends[host] = super().get_backend_for_host(host)
            return backends[host]

    return KeptBackendDispatcher


class LocalEndpoint:
    """moto's server on `host:port`, started in a thread of this process, with the box's services in front of it.

    Binding happens in the constructor, so a busy port is an immediate `LakeboxError` rather than a thread that
    never becomes ready. `services` routes the requests of the services the box serves itself (see
    lakebox.services.serve); moto answers the rest. `writes` counts the requests that may have changed state (what
    a snapshot waits for); `changes` says what each may have changed, once it is answered (what caches check).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.moto_server.werkzeug_app import create_backend_app
        from werkzeug.serving import make_server

        from lakebox.services import s3copy

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        s3copy.install()  # CopyObject on the server's side, as S3 does it (no bytes through Python, no rehash)
        self.gate = Gate()
        self.services = ServiceRouter()
        self.writes = 0
        self.changes = ChangeLog()
        self._count = threading.Lock()
        self._app = _dispatcher()(create_backend_app)
        if port:
            _check_free(host, port)
        self._connections: set[socket.socket] = set()
        self._open = threading.Lock()
        handler = _keep_alive_handler(self._connections, self._open)
        self._server = make_server(host, port, self._wsgi, threaded=True, request_handler=handler)
        self.host, self.port = str(self._server.server_address[0]), int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="lakebox-endpoint", daemon=True)

    @property
    def open_connections(self) -> int:
        """How many client connections the endpoint holds open now (kept alive between requests)."""
        with self._open:
            return len(self._connections)

    @staticmethod
    def object_tail(bucket: str, key: str, length: int) -> ObjectTail | None:
        """The last `length` bytes of an object this endpoint's S3 holds, with its size and ETag; None when it holds
        no such object (read in this process, without a request: `lakebox.services.s3tail`)."""
        return object_tail(bucket, key, length)

    @property
    def url(self) -> str:
        """The endpoint URL clients use."""
        return f"http://{self.host}:{self.port}"

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        change = _change(environ)
        try:
            return self._answer(environ, start_response)
        finally:
            if change is not None:
                self.changes.record(change)

    def _answer(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        # The box's own services answer first, outside the gate: their work calls this endpoint again.
        answered, environ = self.services.route(environ)
        if answered is not None:
            if _changes_state(environ):
                with self._count:
                    self.writes += 1
            return list(respond(answered, start_response))
        with self.gate.passage():
            if _changes_state(environ):
                with self._count:
                    self.writes += 1
            return list(self._app(environ, start_response))

    def start(self) -> LocalEndpoint:
        """Serve requests from a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
        with self._open:  # kept-alive connections end too: their clients reconnect to nothing
            for connection in list(self._connections):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

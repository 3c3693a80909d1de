"""The local AWS endpoint: moto's server on a port of this process, counting the requests that change state."""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from lakebox.errors import LakeboxError
from lakebox.services.changes import Change, ChangeLog, change_of
from lakebox.services.serve import ServiceRouter, respond, signing_name

_READ_ACTIONS = ("Get", "Describe", "List", "Query", "Scan", "BatchGet", "Head", "Search")


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


class LocalEndpoint:
    """moto's server on `host:port`, started in a thread of this process, with the box's services in front of it.

    Binding happens in the constructor, so a busy port is an immediate `LakeboxError` rather than a thread that
    never becomes ready. `services` routes the requests of the services the box serves itself (see
    lakebox.services.serve); moto answers the rest. `writes` counts the requests that may have changed state (what
    a snapshot waits for); `changes` says what each may have changed, once it is answered (what caches check).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.gate = Gate()
        self.services = ServiceRouter()
        self.writes = 0
        self.changes = ChangeLog()
        self._count = threading.Lock()
        self._app = DomainDispatcherApplication(create_backend_app)
        if port:
            _check_free(host, port)
        self._server = make_server(host, port, self._wsgi, threaded=True, request_handler=MotoRequestHandler)
        self.host, self.port = str(self._server.server_address[0]), int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="lakebox-endpoint", daemon=True)

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

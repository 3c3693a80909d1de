"""A sample source HTTP API on 127.0.0.1: generated sales, paginated, filtered by `updated_since`, bearer-token auth."""

from __future__ import annotations

import base64
import bisect
import contextlib
import datetime as dt
import json
import random
import secrets
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3

from lakebox.app.sample import SampleSpec, sales_lines

MAX_LIMIT = 1000
API_ID_OFFSET = 500_000_000
"""Sales served by the sample source API are numbered from here, apart from the generated files' sales."""
RESOURCE = "/sales"


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def sample_sales(spec: SampleSpec, count: int, *, start: int = 0) -> list[dict[str, Any]]:
    """Generated sales as the source system holds them: each with the `updated_at` it was last changed.

    Lines the generator makes unparsable (malformed JSON, bad UTF-8) are left out: an API serves JSON. The other
    defects stay, so the pulled data still exercises the contract.
    """
    rng = random.Random(spec.seed * 31 + start)
    records = []
    for line, _ in sales_lines(spec, count, start=start):
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        try:
            moment = dt.datetime.fromisoformat(str(record.get("event_time")))
        except ValueError:
            moment = spec.end
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        changed = min(moment + dt.timedelta(seconds=rng.randrange(3600)), spec.end)
        records.append({**record, "updated_at": _iso(changed)})
    return records


@dataclass
class SourceApiServer:
    """The running API: its URL, the token it accepts, the records it serves and the requests it saw."""

    url: str
    token: str
    requests: int = 0
    _rows: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    _faults: deque[int] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, records: list[dict[str, Any]]) -> None:
        """Make records available (as the source system receiving new or changed sales)."""
        with self._lock:
            for record in records:
                row = (str(record["updated_at"]), str(record.get("transaction_id", "")), record)
                bisect.insort(self._rows, row, key=lambda r: (r[0], r[1]))

    def fail_next(self, count: int, status: int = HTTPStatus.SERVICE_UNAVAILABLE) -> None:
        """Answer the next `count` requests with `status` (to exercise retries)."""
        with self._lock:
            self._faults.extend([int(status)] * count)

    @property
    def records(self) -> int:
        """How many records the API holds."""
        return len(self._rows)

    def page(self, since: str | None, after: tuple[str, str] | None, limit: int) -> tuple[list[dict[str, Any]], Any]:
        """The records changed after `since`, ordered by change time then id, starting past the cursor `after`."""
        with self._lock:
            rows = self._rows
            start = 0
            if since is not None:
                start = bisect.bisect_right(rows, since, key=lambda r: r[0])
            if after is not None:
                start = max(start, bisect.bisect_right(rows, after, key=lambda r: (r[0], r[1])))
            chosen = rows[start : start + limit]
            more = start + limit < len(rows)
        items = [r[2] for r in chosen]
        cursor = _encode_cursor(chosen[-1][0], chosen[-1][1]) if more and chosen else None
        return items, cursor

    def take_fault(self) -> int | None:
        """The status of the next injected fault, if one is pending."""
        with self._lock:
            self.requests += 1
            return self._faults.popleft() if self._faults else None


def _encode_cursor(changed: str, key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([changed, key]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[str, str]:
    changed, key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    return str(changed), str(key)


def _normalise_since(value: str) -> str:
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("updated_since needs a time zone")
    return _iso(moment)


def _handler(server_state: SourceApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, status: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body, separators=(",", ":")).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            fault = server_state.take_fault()
            if fault is not None:
                self._send(fault, {"message": "injected fault"})
                return
            if self.headers.get("Authorization") != f"Bearer {server_state.token}":
                self._send(HTTPStatus.UNAUTHORIZED, {"message": "missing or wrong bearer token"})
                return
            parts = urlsplit(self.path)
            if parts.path.rstrip("/") != RESOURCE:
                self._send(HTTPStatus.NOT_FOUND, {"message": f"no resource {parts.path}"})
                return
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            try:
                limit = min(int(query.get("limit", "100")), MAX_LIMIT)
                since = _normalise_since(query["updated_since"]) if "updated_since" in query else None
                after = _decode_cursor(query["cursor"]) if "cursor" in query else None
            except (ValueError, TypeError) as exc:
                self._send(HTTPStatus.BAD_REQUEST, {"message": str(exc)})
                return
            if limit < 1:
                self._send(HTTPStatus.BAD_REQUEST, {"message": "limit must be positive"})
                return
            items, cursor = server_state.page(since, after, limit)
            self._send(HTTPStatus.OK, {"items": items, "next_cursor": cursor})

    return Handler


@contextlib.contextmanager
def serve(records: list[dict[str, Any]] | None = None, *, token: str | None = None) -> Iterator[SourceApiServer]:
    """Run the API on 127.0.0.1 (a free port) for the duration of the block.

    Parameters
    ----------
    records
        What the API holds at first (more can be added while it runs).
    token
        The bearer token it accepts; a random one when omitted.
    """
    state = SourceApiServer(url="", token=token or secrets.token_urlsafe(24))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    if records:
        state.add(records)
    thread = threading.Thread(target=server.serve_forever, name="lakebox-source-api", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def install_secret(session: boto3.Session, name: str, token: str) -> None:
    """Store the API token as the secret `name` on the local endpoint (created, or given a new value)."""
    client = session.client("secretsmanager")
    value = json.dumps({"token": token})
    try:
        client.create_secret(Name=name, SecretString=value)
    except client.exceptions.ResourceExistsException:
        client.put_secret_value(SecretId=name, SecretString=value)

"""The local AWS endpoint (moto in server mode) and the stack brought up on it."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from lakebox.errors import LakeboxError
from lakebox.eventbus import Delivery, EventBus, object_created_event
from lakebox.stack import REGION, Stack

if TYPE_CHECKING:
    from lakebox.athena import AthenaEngine
    from lakebox.sagemaker import LocalSageMaker

STATE_FILE = "endpoint.json"

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "lakebox",
    "AWS_SECRET_ACCESS_KEY": "lakebox",
    "AWS_SESSION_TOKEN": "lakebox",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


def find_root(start: Path | None = None) -> Path:
    """The project root: the nearest folder upwards that holds template.yaml."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "template.yaml").exists():
            return folder
    raise LakeboxError("no template.yaml here or in any parent folder")


def _alive(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=1):
            return True
    except OSError:
        return False


def _reset(endpoint: str) -> None:
    """Start from an empty account: moto keeps its state per process, shared by every server started in it."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Lakebox:
    """A running local stack: endpoint, session, resolved template and event bus."""

    root: Path
    endpoint: str
    stack: Stack
    bus: EventBus
    owns_server: bool

    @property
    def session(self) -> boto3.Session:
        """The session every client of the local stack comes from."""
        return self.stack.session

    def put_file(self, path: Path, dataset: str, key: str | None = None) -> tuple[str, list[Delivery]]:
        """Upload a file to the landing bucket and deliver its "Object Created" event through the rules."""
        if not path.is_file():
            raise LakeboxError(f"{path}: no such file")
        bucket = self.bucket("LandingBucket")
        key = key or f"{dataset}/{path.name}"
        s3 = self.session.client("s3")
        with path.open("rb") as body:
            response = s3.put_object(Bucket=bucket, Key=key, Body=body)
        event = object_created_event(
            bucket,
            key,
            version_id=response.get("VersionId"),
            etag=response["ETag"],
            size=path.stat().st_size,
        )
        return key, self.bus.put(event)

    @functools.cached_property
    def athena(self) -> AthenaEngine:
        """The stack's Athena engine on DuckDB: one per stack, so query history and results are shared."""
        from lakebox.alarms import record_query
        from lakebox.athena import AthenaEngine

        database = str(self.stack.parameters.get("GlueDatabaseName", "default"))
        return AthenaEngine(
            self.session, default_database=database, on_query=functools.partial(record_query, self.stack)
        )

    @functools.cached_property
    def sagemaker(self) -> LocalSageMaker:
        """The stack's local SageMaker: training and transform jobs of this box, their logs under .lakebox/logs."""
        from lakebox.sagemaker import LocalSageMaker

        return LocalSageMaker(
            self.session, self.stack.log_dir / "sagemaker", artifacts_bucket=self.stack.artifacts_bucket()
        )

    def bucket(self, logical_id: str) -> str:
        """The physical name of one of the template's buckets."""
        return str(self.stack.ref(logical_id))


def _environment(endpoint: str) -> dict[str, str]:
    return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "MOTO_PORT": endpoint.rsplit(":", 1)[1]}


class LocalSession(boto3.Session):
    """A boto3 session whose clients and resources always reach the local endpoint, whatever the environment."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
            region_name=REGION,
        )
        self.endpoint = endpoint

    def client(self, *args: Any, **kwargs: Any) -> Any:
        """A client of the local endpoint."""
        kwargs.setdefault("endpoint_url", self.endpoint)
        return super().client(*args, **kwargs)

    def resource(self, *args: Any, **kwargs: Any) -> Any:
        """A resource of the local endpoint."""
        kwargs.setdefault("endpoint_url", self.endpoint)
        return super().resource(*args, **kwargs)


@contextlib.contextmanager
def lakebox(
    root: Path | None = None,
    *,
    parameters: dict[str, str] | None = None,
    port: int | None = None,
    reuse: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Iterator[Lakebox]:
    """Bring the stack up on a local endpoint for the duration of the block.

    A server left running by `lakebox up` (recorded in `.lakebox/endpoint.json`) is reused when `reuse` is true;
    otherwise a moto server starts in this process on 127.0.0.1 and the template's resources are created on it.
    """
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    root = root or find_root()
    state = root / ".lakebox" / STATE_FILE
    endpoint = None
    if reuse and state.exists():
        recorded = json.loads(state.read_text())["endpoint"]
        endpoint = recorded if _alive(recorded) else None
    server = None
    saved = dict(os.environ)
    try:
        if endpoint is None:
            chosen = port or _free_port()
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=chosen, verbose=False)
            server.start()
            endpoint = f"http://127.0.0.1:{chosen}"
            _reset(endpoint)
        os.environ.update(_environment(endpoint))
        stack = Stack(root, LocalSession(endpoint), parameters=parameters, environment=_environment(endpoint))
        if server is not None:
            stack.deploy(progress)
        bus = EventBus(stack)
        box = Lakebox(root, endpoint, stack, bus, owns_server=server is not None)
        bus.start_execution = functools.partial(_start_execution, box)
        yield box
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if server is not None:
            server.stop()


def _start_execution(box: Lakebox, state_machine: str, input_: Any) -> Any:
    """An EventBridge or schedule target that is a state machine: run it to completion on the local stack."""
    from lakebox.pipeline import execute

    return execute(box, state_machine.rsplit(":", 1)[-1], input_)


def record_endpoint(root: Path, endpoint: str) -> Path:
    """Remember a long-running endpoint so later commands reuse it."""
    state = root / ".lakebox" / STATE_FILE
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"endpoint": endpoint}))
    return state


def summary_row(key: str, delivery: Delivery) -> dict[str, Any]:
    """One line of a put/run summary from a delivery to the ingest function."""
    result = delivery.result if isinstance(delivery.result, dict) else {}
    return {
        "key": key,
        "dataset": result.get("dataset", ""),
        "status": result.get("status", "FAILED" if not delivery.ok else ""),
        "read": result.get("records_read", 0),
        "landed": result.get("records_landed", 0),
        "quarantined": result.get("records_quarantined", 0),
        "reason": result.get("reason") or delivery.error or "",
    }

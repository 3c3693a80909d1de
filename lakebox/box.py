"""The box: one object that owns a running local stack and everything that runs on it.

A `Lakebox` holds the endpoint (its own moto server, or the one `lakebox up` runs), the resolved template, the
one Lambda runtime, the event bus and the object watch that turns uploads into "Object Created" events, the
emulators' state (Athena query history, crawler runs) and the state machine executor's integrations. A box that
owns its endpoint loads the saved lake from `.lakebox/state/` when it starts and saves it when it ends.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from lakebox.errors import LakeboxError
from lakebox.eventbus import Delivery, EventBus
from lakebox.stack import REGION, Stack
from lakebox.state import LockSuperseded, StateStore, atomic_write, exclusive

if TYPE_CHECKING:
    from lakebox.athena import AthenaEngine
    from lakebox.crawler import Crawlers
    from lakebox.endpoint import LocalEndpoint
    from lakebox.sagemaker import LocalSageMaker
    from lakebox.sfn import Execution, Integrations
    from lakebox.watch import ObjectWatch

logger = logging.getLogger(__name__)

STATE_DIR = ".lakebox"
ENDPOINT_FILE = "endpoint.json"
DELIVERIES_FILE = "deliveries.jsonl"
RUNS_DIR = "runs"
LOCAL_DEFAULTS = {"RawSettleSeconds": "0"}
"""Template parameters whose local default differs from the template's: a file put a moment ago is ready to process
locally (the template waits 15 minutes for uploads still being written)."""

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "lakebox",
    "AWS_SECRET_ACCESS_KEY": "lakebox",
    "AWS_SESSION_TOKEN": "lakebox",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}
Progress = Callable[[str], None]


def state_home(root: Path) -> Path:
    """Where the project's local lake lives: `<root>/.lakebox`, or `$LAKEBOX_HOME` when set."""
    override = os.environ.get("LAKEBOX_HOME")
    return Path(override).resolve() if override else root / STATE_DIR


def find_root(start: Path | None = None) -> Path:
    """The project root: the nearest folder upwards that holds template.yaml."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "template.yaml").exists():
            return folder
    raise LakeboxError("no template.yaml here or in any parent folder")


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


def environment(endpoint: str) -> dict[str, str]:
    """The variables every function and SDK call of the box sees: the endpoint and fake credentials."""
    return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "MOTO_PORT": endpoint.rsplit(":", 1)[1]}


# ---------------------------------------------------------------------- `lakebox up`'s record
@dataclass
class UpRecord:
    """What `.lakebox/endpoint.json` says of a running `lakebox up`."""

    endpoint: str
    pid: int
    parameters: dict[str, str] = field(default_factory=dict)
    started_at: str = ""

    @classmethod
    def read(cls, root: Path) -> UpRecord | None:
        """The record, if the file exists and can be read (a file that cannot be read is stale)."""
        path = state_home(root) / ENDPOINT_FILE
        try:
            data = json.loads(path.read_text())
            parameters = dict(data.get("parameters") or {})
            return cls(str(data["endpoint"]), int(data.get("pid", 0)), parameters, str(data.get("started_at", "")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return cls("", 0)

    def write(self, root: Path) -> Path:
        """Record this `lakebox up` so later commands use its endpoint."""
        path = state_home(root) / ENDPOINT_FILE
        atomic_write(path, lambda handle: handle.write(json.dumps(asdict(self), indent=2).encode()))
        return path

    @property
    def process_alive(self) -> bool:
        """Whether the recorded process still exists."""
        if self.pid <= 0:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def answers(endpoint: str) -> bool:
    """Whether something accepts connections at `endpoint` (cheap: `/moto-api/data.json` would dump every model)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=2):
            return True
    except OSError:
        return False


def running_up(root: Path) -> UpRecord | None:
    """The `lakebox up` that serves this project now, if one does.

    A record whose process is gone is stale: it is removed, with a line on stderr saying so. A record whose process
    lives but does not answer is an error (it is starting, or hung).
    """
    import sys

    record = UpRecord.read(root)
    if record is None:
        return None
    if record.endpoint and record.process_alive:
        if answers(record.endpoint):
            return record
        raise LakeboxError(
            f"lakebox up (pid {record.pid}) does not answer at {record.endpoint}: wait for it to finish starting, "
            f"or stop it (kill {record.pid})"
        )
    (state_home(root) / ENDPOINT_FILE).unlink(missing_ok=True)
    where = f" at {record.endpoint}, pid {record.pid}," if record.endpoint else ""
    print(f"lakebox: removed a stale {state_home(root) / ENDPOINT_FILE} (lakebox up{where} is gone)", file=sys.stderr)
    return None


# ---------------------------------------------------------------------- deliveries journal
def object_id_of(bucket: str, key: str, version: str | None, etag: str | None) -> str:
    """How the box names one object version: bucket, key, version id and ETag."""
    return f"{bucket}/{key}#{version or 'null'}:{(etag or '').strip(chr(34))}"


class Journal:
    """`.lakebox/deliveries.jsonl`: what the box that watches the buckets delivered for each new object version.

    Another process that uploaded an object (a `lakebox put` while `lakebox up` runs) reads the outcome here.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, object_id: str, key: str, deliveries: list[Delivery]) -> None:
        """Record the deliveries of one object version."""
        line = json.dumps(
            {
                "object": object_id,
                "key": key,
                "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "deliveries": [asdict(d) for d in deliveries],
            },
            default=str,
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def offset(self) -> int:
        """Where the journal ends now."""
        return self.path.stat().st_size if self.path.exists() else 0

    def wait(self, wanted: set[str], since: int, *, alive: Callable[[], bool], timeout: float) -> dict[str, Any]:
        """Wait until every object of `wanted` is recorded after offset `since`; return the entries by object."""
        found: dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        while True:
            if self.path.exists():
                with self.path.open("rb") as handle:
                    handle.seek(since)
                    for raw in handle:
                        if not raw.endswith(b"\n"):
                            break
                        entry = json.loads(raw)
                        if entry["object"] in wanted:
                            found[entry["object"]] = entry
            if wanted <= set(found):
                return found
            if time.monotonic() > deadline:
                raise LakeboxError(f"lakebox up did not deliver {len(wanted - set(found))} object(s) in {timeout:.0f}s")
            if not alive():
                raise LakeboxError("lakebox up stopped before it delivered the upload")
            time.sleep(0.1)


# ---------------------------------------------------------------------- the box
class Lakebox:
    """A running local stack: endpoint, resolved template, Lambda runtime, event routing, emulators and their state.

    Create one with `open_box` (or `lakebox.runtime.lakebox`). A box either owns its endpoint (a moto server in this
    process, with the saved lake loaded into it) or uses the one a running `lakebox up` serves.
    """

    def __init__(
        self,
        root: Path,
        endpoint: str,
        stack: Stack,
        *,
        server: LocalEndpoint | None = None,
        up: UpRecord | None = None,
        saved: Mapping[str, Any] | None = None,
    ) -> None:
        from lakebox.athena import QueryHistory
        from lakebox.crawler import Crawlers
        from lakebox.watch import ObjectWatch

        self.root = root
        self.endpoint = endpoint
        self.stack = stack
        self.server = server
        self.up = up
        self.store = StateStore(state_home(root) / "state")
        self.journal = Journal(state_home(root) / DELIVERIES_FILE)
        saved = saved or {}
        self.query_history: QueryHistory = saved.get("query_history") or QueryHistory()
        self.crawlers: Crawlers = saved.get("crawlers") or Crawlers()
        self.bus = EventBus(stack, start_execution=self._start_execution)
        self.watch: ObjectWatch | None = ObjectWatch(stack) if server is not None else None
        self._delivering = threading.RLock()
        self._delivered: dict[str, list[Delivery]] = {}
        self._saved_writes = server.writes if server is not None else 0
        self._saving = threading.Lock()

    # ------------------------------------------------------------------ identity
    @property
    def owns_server(self) -> bool:
        """Whether this box runs its own endpoint (and keeps the lake on disk) rather than using `lakebox up`'s."""
        return self.server is not None

    @property
    def session(self) -> boto3.Session:
        """The session every client of the local stack comes from."""
        return self.stack.session

    @property
    def lambdas(self) -> Any:
        """The one Lambda runtime: `invoke` and `invoke_async` for every caller."""
        return self.stack.lambdas

    def bucket(self, logical_id: str) -> str:
        """The physical name of one of the template's buckets."""
        return str(self.stack.ref(logical_id))

    @functools.cached_property
    def athena(self) -> AthenaEngine:
        """The stack's Athena engine on DuckDB: one per box, its query history kept with the lake."""
        from lakebox.alarms import record_query
        from lakebox.athena import AthenaEngine

        database = str(self.stack.parameters.get("GlueDatabaseName", "default"))
        return AthenaEngine(
            self.session,
            default_database=database,
            history=self.query_history,
            on_query=functools.partial(record_query, self.stack),
        )

    # ------------------------------------------------------------------ objects and their events
    def put_file(
        self, path: Path, dataset: str, key: str | None = None, *, progress: Progress | None = None
    ) -> tuple[str, list[Delivery]]:
        """Upload a file to the landing bucket; return its key and what its "Object Created" event delivered."""
        if not path.is_file():
            raise LakeboxError(f"{path}: no such file")
        bucket = self.bucket("LandingBucket")
        key = key or f"{dataset}/{path.name}"
        since = self.journal.offset()
        size = path.stat().st_size
        if progress:
            progress(f"uploading {path.name} ({size / 1e6:,.1f} MB)")
        s3 = self.session.client("s3")
        with path.open("rb") as body:
            response = s3.put_object(Bucket=bucket, Key=key, Body=body)
        object_id = object_id_of(bucket, key, response.get("VersionId"), response.get("ETag"))
        if progress:
            progress(f"ingesting {key}")
        return key, self.await_deliveries([object_id], since)[object_id]

    def deliver_new_objects(self) -> list[tuple[str, str, list[Delivery]]]:
        """Send an "Object Created" event through the rules for each object version written since the last call.

        Only a box that owns its endpoint watches the buckets; `(object id, key, deliveries)` for each.
        """
        if self.watch is None:
            return []
        out = []
        with self._delivering:
            for version, key, event in self.watch.new_versions():
                deliveries = self.bus.put(event)
                object_id = object_id_of(*version)
                self._delivered[object_id] = deliveries
                self.journal.append(object_id, key, deliveries)
                out.append((object_id, key, deliveries))
        return out

    def await_deliveries(self, object_ids: list[str], since: int) -> dict[str, list[Delivery]]:
        """What the events of freshly written object versions delivered, by object id.

        A box that owns its endpoint delivers them now; one using `lakebox up`'s waits for `up` to deliver them.
        """
        if self.owns_server:
            self.deliver_new_objects()
            with self._delivering:
                return {o: self._delivered.pop(o, []) for o in object_ids}
        timeout = 60.0 + sum(spec.timeout * 3 for spec in self.stack.functions.values())
        up = self.up
        alive = (lambda: up.process_alive) if up is not None else (lambda: answers(self.endpoint))
        entries = self.journal.wait(set(object_ids), since, alive=alive, timeout=timeout)
        return {o: [Delivery(**d) for d in entries[o]["deliveries"]] for o in object_ids}

    def versions(self) -> set[str]:
        """Object ids of every version now in the buckets that send events to EventBridge."""
        from lakebox.watch import ObjectWatch

        return {object_id_of(*version) for version in ObjectWatch(self.stack).listing()}

    def fire_schedule(self, name: str) -> tuple[Any, list[tuple[str, Delivery]]]:
        """Fire a schedule now, then deliver the "Object Created" events of what its target wrote (as S3 would)."""
        from lakebox.schedules import find, fire

        schedule = find(self.stack, name)
        before, since = self.versions(), self.journal.offset()
        firing = fire(self.stack, schedule, start_execution=self._start_execution)
        fresh = sorted(self.versions() - before)
        delivered = self.await_deliveries(fresh, since)
        pairs = [(object_id.split("/", 1)[1].rsplit("#", 1)[0], d) for object_id in fresh for d in delivered[object_id]]
        firing.deliveries = [d for _, d in pairs]
        return firing, pairs

    # ------------------------------------------------------------------ state machines
    def integrations(self) -> Integrations:
        """Every task of the template's state machines on this box (see `stack_integrations`)."""
        return stack_integrations(
            self.stack, deliver_event=self.bus.put, athena=self.athena, crawlers=self.crawlers, sagemaker=self.sagemaker
        )

    @functools.cached_property
    def sagemaker(self) -> LocalSageMaker:
        """The stack's local SageMaker: training and transform jobs of this box, their logs under .lakebox/logs."""
        from lakebox.sagemaker import LocalSageMaker

        return LocalSageMaker(
            self.session, self.stack.log_dir / "sagemaker", artifacts_bucket=self.stack.artifacts_bucket()
        )

    def state_machine_id(self, name: str) -> str:
        """The logical id of a state machine named by logical id, physical name or ARN."""
        for lid, resource in self.stack.resources.items():
            if "StateMachine" in resource["Type"] and self.stack.active(lid):
                physical = self.stack._physical(lid)
                if name in (lid, physical["Ref"], physical.get("Name")):
                    return lid
        machines = [lid for lid, r in self.stack.resources.items() if "StateMachine" in r["Type"]]
        raise LakeboxError(f"no state machine {name!r} in template.yaml (state machines: {', '.join(machines)})")

    def execute(
        self,
        name: str,
        input_: Any = None,
        *,
        execution_name: str | None = None,
        progress: Progress | None = None,
        integrations: Integrations | None = None,
    ) -> Execution:
        """Run one of the template's state machines to completion on this box, and record the run.

        The run (status, per-state timings, error) is written to `.lakebox/runs/<name>.json` for `lakebox runs`.
        Ctrl-C ends it ABORTED, recorded as such.
        """
        from lakebox.alarms import record_execution
        from lakebox.errors import RunAborted
        from lakebox.interrupts import InterruptWatch
        from lakebox.runs import record_run, with_progress
        from lakebox.sfn import run_execution

        logical_id = self.state_machine_id(name)
        definition, _ = self.stack.state_machine(logical_id)
        registry = integrations or self.integrations()
        if progress is not None:
            registry = with_progress(registry, progress)
        # Ctrl-C stops the run as StopExecution would: ABORTED, no failure path (ADR 0017)
        with InterruptWatch().watching() as interrupted:
            execution = run_execution(
                definition,
                input_ if input_ is not None else {},
                registry,
                name=execution_name or f"lakebox-{uuid.uuid4().hex[:12]}",
                state_machine_arn=str(self.stack.ref(logical_id)),
                stop=interrupted,
            )
        record_run(state_home(self.root) / RUNS_DIR, logical_id, execution)
        record_execution(self.stack, str(self.stack.ref(logical_id)), execution.status)
        if execution.status == "ABORTED":
            raise RunAborted(
                f"run {execution.name} stopped by Ctrl-C and recorded ABORTED; the next run picks up what it processed"
            )
        return execution

    def _start_execution(self, state_machine: str, input_: Any) -> Any:
        """An EventBridge or schedule target that is a state machine: run it to completion on this box."""
        return self.execute(state_machine.rsplit(":", 1)[-1], input_)

    # ------------------------------------------------------------------ persistence
    @property
    def changed(self) -> bool:
        """Whether the endpoint took requests that may have changed state since the last save."""
        return self.server is not None and self.server.writes != self._saved_writes

    def save(self) -> tuple[int, float] | None:
        """Snapshot the lake to `.lakebox/state/` (a box that owns its endpoint only); bytes and seconds taken."""
        if self.server is None:
            return None
        with self._saving, self.server.gate.closed():
            writes = self.server.writes
            result = self.store.save({"query_history": self.query_history, "crawlers": self.crawlers})
            self._saved_writes = writes
        logger.info("saved the lake: %d bytes in %.2fs", *result)
        return result

    def save_if_changed(self) -> tuple[int, float] | None:
        """Save when something changed since the last save."""
        return self.save() if self.changed else None


@contextlib.contextmanager
def open_box(
    root: Path | None = None,
    *,
    parameters: Mapping[str, str] | None = None,
    trusted_parameters: Mapping[str, str] | None = None,
    port: int | None = None,
    reuse: bool = True,
    persist: bool = False,
    progress: Progress | None = None,
) -> Iterator[Lakebox]:
    """A box for the duration of the block.

    When `reuse` is true and `lakebox up` runs for this project, the box uses its endpoint (parameters that `up`
    fixed when it created the stack must then agree with it). Otherwise a moto server starts in this process on
    127.0.0.1, the saved lake is loaded into it (when `persist`), the template's resources are created or updated on
    it, and the lake is saved again when the block ends. Without `persist` the lake is thrown away at the end (what
    tests and benchmarks want); the `lakebox` commands persist. A command that finds the lake held by another (one
    command at a time owns it) waits, and uses `lakebox up`'s endpoint if the holder turns out to be an `up` starting.
    """
    from lakebox.endpoint import LocalEndpoint

    root = root or find_root()
    given = dict(parameters or {})
    up = running_up(root) if reuse else None
    owner_lock = contextlib.ExitStack()
    if up is None and persist:
        try:
            owner_lock.enter_context(
                exclusive(
                    state_home(root) / "lock",
                    wait_message="waiting for another lakebox command to finish",
                    stop_waiting=(lambda: UpRecord.read(root) is not None) if reuse else None,
                )
            )
        except LockSuperseded:
            up = _wait_for_up(root)
    saved_env = dict(os.environ)
    try:
        if up is not None:
            check_parameters_against_up(root, given, up)
            os.environ.update(environment(up.endpoint))
            stack = Stack(
                root,
                LocalSession(up.endpoint),
                parameters=given,
                trusted_parameters={**LOCAL_DEFAULTS, **up.parameters, **(trusted_parameters or {})},
                environment=environment(up.endpoint),
                log_dir=state_home(root) / "logs",
            )
            box = Lakebox(root, up.endpoint, stack, up=up)
            try:
                yield box
            finally:
                stack.lambdas.close()
            return
        with owner_lock:
            server = LocalEndpoint("127.0.0.1", port or 0).start()
            endpoint = server.url
            try:
                _reset(endpoint)
                os.environ.update(environment(endpoint))
                store = StateStore(state_home(root) / "state")
                saved: dict[str, Any] | None = None
                if persist:
                    if progress and store.path.exists():
                        progress("loading the saved lake")
                    saved = store.load()
                    if progress and saved is not None:
                        progress("loaded the saved lake")
                stack = Stack(
                    root,
                    LocalSession(endpoint),
                    parameters=given,
                    trusted_parameters={**LOCAL_DEFAULTS, **(trusted_parameters or {})},
                    environment=environment(endpoint),
                    log_dir=state_home(root) / "logs",
                )
                stack.deploy(progress)
                box = Lakebox(root, endpoint, stack, server=server, saved=saved)
                try:
                    yield box
                finally:
                    stack.lambdas.close()
                    if persist:
                        if progress:
                            progress("saving the lake")
                        if saved is None or box.changed:
                            box.save()
            finally:
                server.stop()
    finally:
        os.environ.clear()
        os.environ.update(saved_env)


def _wait_for_up(root: Path, timeout: float = 300.0) -> UpRecord:
    """The `lakebox up` whose record just appeared, once it answers."""
    deadline = time.monotonic() + timeout
    while True:
        record = UpRecord.read(root)
        if record is not None and record.process_alive and answers(record.endpoint):
            return record
        if record is None or not record.process_alive or time.monotonic() > deadline:
            raise LakeboxError("lakebox up started and stopped while this command waited: run it again")
        time.sleep(0.2)


def _reset(endpoint: str) -> None:
    """Start from an empty account: moto keeps its state per process, shared by every server started in it."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass


def stack_integrations(
    stack: Stack,
    *,
    deliver_event: Callable[[dict[str, Any], str], Any] | None = None,
    athena: Any = None,
    crawlers: Crawlers | None = None,
    sagemaker: LocalSageMaker | None = None,
) -> Integrations:
    """The one place the executor's task handlers are built for a stack (what `Lakebox.integrations()` uses).

    Lambda through the stack's one Lambda runtime; Glue and EMR Serverless jobs on local PySpark (`lakebox.glue`);
    Athena on the given DuckDB engine (a new one when omitted); `glue:startCrawler`/`glue:getCrawler` by the local
    crawler with the given crawler state; `events:putEvents` through `deliver_event` (the box's event bus) or the
    endpoint; SNS, DynamoDB and every other `aws-sdk` action through boto3 on the endpoint.
    """
    from lakebox import crawler, glue
    from lakebox.athena import AthenaEngine
    from lakebox.sfn.integrations import SdkOverride, local_integrations

    session = stack.session

    def run_glue_job(job_name: str, arguments: dict[str, str]) -> dict[str, Any]:
        return glue.run_glue_job(session, job_name, arguments)

    def run_emr_job(application_id: str, role_arn: str, job_driver: dict[str, Any]) -> dict[str, Any]:
        return glue.run_emr_job(session, application_id, role_arn, job_driver)

    overrides: dict[str, SdkOverride] = {
        "glue:startCrawler": lambda p: crawler.start_crawler(session, str(p["Name"]), crawlers),
        "glue:getCrawler": lambda p: crawler.get_crawler(session, str(p["Name"]), crawlers),
    }
    integrations = local_integrations(
        session,
        invoke=stack.invoke,
        run_glue_job=run_glue_job,
        run_emr_job=run_emr_job,
        athena=athena if athena is not None else AthenaEngine(session),
        sdk_overrides=overrides,
        deliver_event=deliver_event,
    )
    from lakebox import sagemaker as local_sagemaker

    if sagemaker is None:
        sagemaker = local_sagemaker.LocalSageMaker(
            session, stack.log_dir / "sagemaker", artifacts_bucket=stack.artifacts_bucket()
        )
    local_sagemaker.register(integrations, sagemaker)
    return integrations


def deploy_time_parameters(stack: Stack) -> set[str]:
    """Parameters that reach resources created on the endpoint, or the conditions deciding which exist (fixed
    when the stack comes up).

    Functions and state machines are resolved by each command from its own parameters; everything else (jobs,
    buckets, tables, crawlers) is created once, by the box that owns the endpoint.
    """
    import re

    names = set(stack.parameters)
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "Ref" and isinstance(value, str) and value in names:
                    found.add(value)
                elif key == "Fn::Sub":
                    text = value[0] if isinstance(value, list) else value
                    found.update(n for n in re.findall(r"\$\{([^}!.]+)\}", str(text)) if n in names)
                    if isinstance(value, list):
                        walk(value[1])
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for resource in stack.resources.values():
        if resource["Type"] not in (
            "AWS::Serverless::Function",
            "AWS::Lambda::Function",
            "AWS::Serverless::StateMachine",
            "AWS::StepFunctions::StateMachine",
        ):
            walk(resource.get("Properties", {}))
    walk(stack.template.get("Conditions", {}))  # conditions decide which resources exist at all
    return found


def check_parameters_against_up(root: Path, given: Mapping[str, str], up: UpRecord) -> None:
    """Refuse parameters that would be ignored: those `lakebox up` fixed when it created the stack, given otherwise."""
    if not given:
        return
    current = {**LOCAL_DEFAULTS, **up.parameters}
    probe = Stack(root, LocalSession(up.endpoint), parameters=given, trusted_parameters=current)
    fixed = deploy_time_parameters(probe)
    for name, value in sorted(given.items()):
        if name not in fixed:
            continue
        declared = probe.template.get("Parameters", {}).get(name, {})
        before = str(current.get(name, declared.get("Default")))
        if str(value) != before:
            raise LakeboxError(
                f"--parameter {name}={value}: lakebox up (pid {up.pid}) created the stack with {name}={before}; "
                f"restart it with `lakebox up --parameter {name}={value}`"
            )


def summary_row(key: str, delivery: Delivery) -> dict[str, Any]:
    """One line of a put/run summary from a delivery to the ingest function."""
    result = delivery.result if isinstance(delivery.result, dict) else {}
    return {
        "key": key,
        "dataset": result.get("dataset") or None,
        "status": result.get("status", "FAILED" if not delivery.ok else None),
        "read": result.get("records_read", 0),
        "landed": result.get("records_landed", 0),
        "quarantined": result.get("records_quarantined", 0),
        "reason": result.get("reason") or delivery.error or None,
    }

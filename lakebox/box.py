"""The box, lakebox's composition root: one object that builds and owns everything of a running local stack.

A `Lakebox` is built from a `LakeHome` (the lake on disk) and a `Stack` (the template's facts), and holds the
endpoint (its own moto server, or the one `lakebox up` runs), the session that reaches it, the one Lambda runtime,
the metric store, the event bus and the object watch that turns uploads into "Object Created" events, the
emulators and their state (Athena and its query history, crawler runs, SageMaker) and the state machine
executor's integrations. A box that owns its endpoint loads the saved lake from its home when it starts and saves
it when it ends. Nothing below the box builds a service of its own.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import logging
import os
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from lakebox.cfn import provision
from lakebox.cfn.stack import REGION, Stack
from lakebox.errors import LakeboxError
from lakebox.home import LakeHome, find_root
from lakebox.home.journal import Journal, object_id_of
from lakebox.home.runs import list_runs, record_run, with_progress
from lakebox.home.state import LockSuperseded, StateStore, exclusive
from lakebox.home.up import LOCAL_KEY, UpRecord, answers, running_up, wait_for_up
from lakebox.services.eventbus import Delivery, EventBus
from lakebox.services.lambdas import LambdaRuntime
from lakebox.services.metrics import MetricStore

if TYPE_CHECKING:
    from lakebox.services.athena import AthenaEngine
    from lakebox.services.crawler import Crawlers, LocalCrawler
    from lakebox.services.endpoint import LocalEndpoint
    from lakebox.services.glue import SparkJobs
    from lakebox.services.governance import Access
    from lakebox.services.sagemaker import LocalSageMaker
    from lakebox.services.serve import ServiceRouter
    from lakebox.services.stepfunctions_api import StateMachineInfo
    from lakebox.services.watch import ObjectWatch
    from lakebox.sfn import Execution, Integrations

logger = logging.getLogger(__name__)

LOCAL_DEFAULTS = {"RawSettleSeconds": "0"}
"""Template parameters whose local default differs from the template's: a file put a moment ago is ready to process
locally (the template waits 15 minutes for uploads still being written)."""

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": LOCAL_KEY,
    "AWS_SECRET_ACCESS_KEY": LOCAL_KEY,
    "AWS_SESSION_TOKEN": LOCAL_KEY,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}
Progress = Callable[[str], None]


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


# ---------------------------------------------------------------------- the box
class Lakebox:
    """A running local stack: endpoint, resolved template, Lambda runtime, event routing, emulators and their state.

    Create one with `open_box` (or `lakebox.runtime.lakebox`). A box either owns its endpoint (a moto server in this
    process, with the saved lake loaded into it) or uses the one a running `lakebox up` serves.
    """

    def __init__(
        self,
        home: LakeHome,
        endpoint: str,
        stack: Stack,
        *,
        server: LocalEndpoint | None = None,
        up: UpRecord | None = None,
        saved: Mapping[str, Any] | None = None,
    ) -> None:
        from lakebox.services.athena import QueryHistory
        from lakebox.services.crawler import Crawlers
        from lakebox.services.watch import ObjectWatch

        self.home = home
        self.root = stack.root
        self.endpoint = endpoint
        self.stack = stack
        self.server = server
        self.up = up
        self.session: boto3.Session = LocalSession(endpoint)
        """The session every client of the local stack comes from."""
        self.store = StateStore(home.state)
        self.journal = Journal(home.deliveries)
        self.metrics = MetricStore(home.metrics)
        self.lambdas = LambdaRuntime(
            stack, self.session, log_dir=home.logs, metrics=self.metrics, environment=environment(endpoint)
        )
        """The one Lambda runtime: `invoke` and `invoke_async` for every caller."""
        saved = saved or {}
        self.query_history: QueryHistory = saved.get("query_history") or QueryHistory()
        self.crawlers: Crawlers = saved.get("crawlers") or Crawlers()
        self.bus = EventBus(stack, self.session, self.lambdas, start_execution=self._start_execution)
        self.watch: ObjectWatch | None = ObjectWatch(stack, self.session) if server is not None else None
        self._delivering = threading.RLock()
        self._delivered: dict[str, list[Delivery]] = {}
        self._saved_writes = server.writes if server is not None else 0
        self._saving = threading.Lock()
        from lakebox.sfn.callbacks import TaskTokens

        # the task tokens of this box's `.waitForTaskToken` tasks: SendTaskSuccess/Failure/Heartbeat answer them
        self.task_tokens = TaskTokens()
        self._served: list[Any] = []
        if server is not None:
            self.serve(server.services)

    # ------------------------------------------------------------------ identity
    @property
    def owns_server(self) -> bool:
        """Whether this box runs its own endpoint (and keeps the lake on disk) rather than using `lakebox up`'s."""
        return self.server is not None

    def close(self) -> None:
        """Close what the box holds open (the functions' log files, the local SageMaker's warm container)."""
        self.lambdas.close()
        if "sagemaker" in self.__dict__:
            self.sagemaker.close()

    def bucket(self, logical_id: str) -> str:
        """The physical name of one of the template's buckets."""
        return str(self.stack.ref(logical_id))

    @functools.cached_property
    def athena(self) -> AthenaEngine:
        """The stack's Athena engine on DuckDB: one per box, its query history kept with the lake."""
        from lakebox.services.athena import AthenaEngine

        database = str(self.stack.parameters.get("GlueDatabaseName", "default"))
        return AthenaEngine(
            self.session,
            default_database=database,
            history=self.query_history,
            on_query=self.metrics.record_query,
            changes=self.server.changes if self.server is not None else None,
            read_tail=self.server.object_tail if self.server is not None else None,
        )

    def athena_as(self, access: Access, database: str) -> AthenaEngine:
        """A local Athena that runs every query as a persona's role (Lake Formation's grants, see `governance`)."""
        from lakebox.services.athena import AthenaEngine
        from lakebox.services.governance import authorizer

        return AthenaEngine(
            self.session,
            default_database=database,
            authorize=authorizer(self.stack, access),
            on_query=self.metrics.record_query,
        )

    # ------------------------------------------------------------------ the endpoint
    def serve(self, router: ServiceRouter) -> None:
        """Serve the box's own services on its endpoint, so any AWS client reaches them (lakebox.services.serve)."""
        from moto.athena.models import athena_backends
        from moto.lakeformation.models import lakeformation_backends

        from lakebox.cfn.stack import ACCOUNT_ID
        from lakebox.services.athena.api import AthenaApi
        from lakebox.services.cloudwatch_api import CloudWatchApi
        from lakebox.services.events_api import EventsApi
        from lakebox.services.lakeformation_api import LakeFormationApi
        from lakebox.services.lambda_api import LambdaApi
        from lakebox.services.logs_api import LogsApi
        from lakebox.services.stepfunctions_api import StepFunctionsApi, state_machines_of
        from lakebox.sfn import validate_definition

        def data_catalogs() -> list[dict[str, Any]]:
            return list(athena_backends[ACCOUNT_ID][REGION].list_data_catalogs())

        athena = AthenaApi(lambda: self.athena, self.session, data_catalogs)
        created = dt.datetime.now(dt.UTC)
        states = StepFunctionsApi(
            machines=lambda: state_machines_of(self.stack, created),
            execute=self._execute_served,
            callbacks=self.task_tokens,
            validate=lambda definition: validate_definition(definition, self.integrations()),
            recorded_runs=lambda: list_runs(self.home.runs),
        )

        def lakeformation() -> Any:
            return lakeformation_backends[ACCOUNT_ID][REGION]

        grants = LakeFormationApi(
            self.stack,
            self.session,
            moto_permissions=lambda: list(lakeformation().list_permissions(ACCOUNT_ID)),
            moto_table_tags=lambda database, name: lakeformation().lf_table_tags.get((ACCOUNT_ID, database, name)),
        )

        def target_arn(kind: str, logical_id: str) -> str:
            return self.stack.function(logical_id).arn if kind == "function" else str(self.stack.ref(logical_id))

        events = EventsApi(self.bus, f"arn:aws:events:{REGION}:{ACCOUNT_ID}", target_arn)
        metrics = CloudWatchApi(self.stack, self.session, self.metrics, self.home.logs)
        lambdas = LambdaApi(self.stack, self.lambdas, self.home.logs)
        for api in (athena, states, lambdas, LogsApi(self.stack, self.home.logs), events, grants, metrics):
            router.register(api)
            self._served.append(api)

    def _execute_served(self, machine: StateMachineInfo, input_: Any, name: str, stop: threading.Event) -> Execution:
        """An execution started on the endpoint: a template's state machine, or one created there."""
        if machine.logical_id:
            return self.execute(machine.logical_id, input_, execution_name=name, stop=stop)
        definition = json.loads(machine.definition)
        return self.execute(
            machine.name, input_, execution_name=name, stop=stop, definition=definition, state_machine_arn=machine.arn
        )

    def stop_serving(self, timeout: float = 60.0) -> None:
        """Stop serving the box's services on the endpoint, once the work they started has ended."""
        if self.server is not None:
            self.server.services.clear()
        for api in self._served:
            join = getattr(api, "join", None)  # the services that start work of their own let it end
            if join is not None:
                join(timeout)
        self._served.clear()

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
        from lakebox.services.watch import ObjectWatch

        return {object_id_of(*version) for version in ObjectWatch(self.stack, self.session).listing()}

    def fire_schedule(self, name: str) -> tuple[Any, list[tuple[str, Delivery]]]:
        """Fire a schedule now, then deliver the "Object Created" events of what its target wrote (as S3 would)."""
        from lakebox.services.schedules import find, fire

        schedule = find(self.stack, name)
        before, since = self.versions(), self.journal.offset()
        firing = fire(self.lambdas, schedule, start_execution=self._start_execution)
        fresh = sorted(self.versions() - before)
        delivered = self.await_deliveries(fresh, since)
        pairs = [(object_id.split("/", 1)[1].rsplit("#", 1)[0], d) for object_id in fresh for d in delivered[object_id]]
        firing.deliveries = [d for _, d in pairs]
        return firing, pairs

    # ------------------------------------------------------------------ state machines
    def integrations(self) -> Integrations:
        """Every task of the template's state machines on this box, served by this box's own services.

        Each service is a `lakebox.sfn.TaskService`: the generic fallback first (SNS, DynamoDB, `events:putEvents`
        and every other `aws-sdk` action through boto3 on the endpoint), then the box's own services take over the
        resources they serve: Lambda on the box's one Lambda runtime, Glue and EMR Serverless jobs on local PySpark,
        Athena on the box's DuckDB engine, `glue:startCrawler`/`glue:getCrawler` on the box's crawler state,
        SageMaker jobs on the box's local SageMaker (its warm container started now, ADR 0035), `events:putEvents`
        through the box's event bus.
        """
        from lakebox.sfn import Integrations
        from lakebox.sfn.integrations import AwsSdk

        services = (AwsSdk(self.session), self.lambdas, self.jobs, self.athena, self.crawler, self.sagemaker, self.bus)
        # the SageMaker jobs' warm container imports its framework in the background while the run's first states go
        self.sagemaker.start_container()
        return Integrations.serving(*services)

    @functools.cached_property
    def jobs(self) -> SparkJobs:
        """The stack's Glue and EMR Serverless jobs, run on local PySpark."""
        from lakebox.services.glue import SparkJobs

        return SparkJobs(self.session, spark_log=self.home.logs / "spark.log")

    @functools.cached_property
    def crawler(self) -> LocalCrawler:
        """The stack's Glue crawlers, run here; their state is the box's `crawlers`, kept with the lake."""
        from lakebox.services.crawler import LocalCrawler

        return LocalCrawler(self.session, self.crawlers)

    @functools.cached_property
    def sagemaker(self) -> LocalSageMaker:
        """The stack's local SageMaker: training and transform jobs of this box, their logs under .lakebox/logs."""
        from lakebox.services.sagemaker import LocalSageMaker

        return LocalSageMaker(
            self.session, self.home.logs / "sagemaker", artifacts_bucket=self.stack.artifacts_bucket()
        )

    def state_machine_id(self, name: str) -> str:
        """The logical id of a state machine named by logical id, physical name or ARN."""
        for lid in self.stack.state_machines():
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
        stop: threading.Event | None = None,
        definition: dict[str, Any] | None = None,
        state_machine_arn: str | None = None,
    ) -> Execution:
        """Run one of the template's state machines to completion on this box, and record the run.

        The run (status, per-state timings, error) is written to the home's `runs/<name>.json` for `lakebox runs`.
        Ctrl-C ends it ABORTED, recorded as such; a caller that gives `stop` stops it by setting that event instead
        (StopExecution on the endpoint), and gets the ABORTED execution back. A state machine created on the
        endpoint runs from its `definition` and `state_machine_arn`, recorded under its `name`.
        """
        from lakebox.errors import RunAborted
        from lakebox.services.interrupts import InterruptWatch
        from lakebox.sfn import run_execution
        from lakebox.sfn.distributed import Boto3ObjectStore

        if definition is None:
            logical_id = self.state_machine_id(name)
            definition, _ = self.stack.state_machine(logical_id)
            state_machine_arn = str(self.stack.ref(logical_id))
        else:
            logical_id = name
            state_machine_arn = state_machine_arn or name
        registry = integrations or self.integrations()
        if progress is not None:
            registry = with_progress(registry, progress)
        # Ctrl-C stops the run as StopExecution would: ABORTED, no failure path (ADR 0017)
        watch = contextlib.nullcontext(stop) if stop is not None else InterruptWatch().watching()
        with watch as stopping:
            execution = run_execution(
                definition,
                input_ if input_ is not None else {},
                registry,
                name=execution_name or f"lakebox-{uuid.uuid4().hex[:12]}",
                state_machine_arn=state_machine_arn,
                callbacks=self.task_tokens,
                objects=Boto3ObjectStore(self.session),
                stop=stopping,
            )
        record_run(self.home.runs, logical_id, execution)
        self.metrics.record_execution(state_machine_arn, execution.status)
        if execution.status == "ABORTED" and stop is None:
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
    from lakebox.services.endpoint import LocalEndpoint

    root = root or find_root()
    home = LakeHome.of(root)
    given = dict(parameters or {})
    up = running_up(home) if reuse else None
    owner_lock = contextlib.ExitStack()
    if up is None and persist:
        try:
            owner_lock.enter_context(
                exclusive(
                    home.lock,
                    wait_message="waiting for another lakebox command to finish",
                    stop_waiting=(lambda: UpRecord.read(home) is not None) if reuse else None,
                )
            )
        except LockSuperseded:
            up = wait_for_up(home)
    saved_env = dict(os.environ)
    try:
        if up is not None:
            check_parameters_against_up(root, given, up)
            os.environ.update(environment(up.endpoint))
            stack = Stack(
                root,
                parameters=given,
                trusted_parameters={**LOCAL_DEFAULTS, **up.parameters, **(trusted_parameters or {})},
                service_ids=provision.service_ids(LocalSession(up.endpoint)),
            )
            box = Lakebox(home, up.endpoint, stack, up=up)
            try:
                yield box
            finally:
                box.close()
            return
        with owner_lock:
            server = LocalEndpoint("127.0.0.1", port or 0).start()
            endpoint = server.url
            try:
                _reset(endpoint)
                os.environ.update(environment(endpoint))
                store = StateStore(home.state)
                saved: dict[str, Any] | None = None
                if persist:
                    if progress and store.path.exists():
                        progress("loading the saved lake")
                    saved = store.load()
                    if progress and saved is not None:
                        progress("loaded the saved lake")
                session = LocalSession(endpoint)
                stack = Stack(
                    root,
                    parameters=given,
                    trusted_parameters={**LOCAL_DEFAULTS, **(trusted_parameters or {})},
                    service_ids=provision.service_ids(session),
                )
                provision.deploy(stack, session, progress)
                box = Lakebox(home, endpoint, stack, server=server, saved=saved)
                try:
                    yield box
                finally:
                    box.stop_serving()
                    box.close()
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


def _reset(endpoint: str) -> None:
    """Start from an empty account: moto keeps its state per process, shared by every server started in it."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass


def check_parameters_against_up(root: Path, given: Mapping[str, str], up: UpRecord) -> None:
    """Refuse parameters that would be ignored: those `lakebox up` fixed when it created the stack, given otherwise."""
    if not given:
        return
    current = {**LOCAL_DEFAULTS, **up.parameters}
    probe = Stack(root, parameters=given, trusted_parameters=current)
    fixed = provision.deploy_time_parameters(probe)
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

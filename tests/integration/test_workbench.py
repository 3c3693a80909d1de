"""lakebox as a workbench: a lake that persists, the README path, quarantine and replay, and one-line errors."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from lakebox.app.sample import SampleSpec, write_sales
from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.integration

GOOD_SALE = {
    "transaction_id": "T09000000001",
    "event_time": "2026-10-30T10:00:00Z",
    "customer_id": "C000001",
    "product_id": "P00001",
    "store_id": "S001",
    "region": "east",
    "quantity": 2,
    "unit_price": 10.5,
    "currency": "USD",
    "payment_method": "card",
    "channel": "web",
}


def _sales_lines(good: int, bad: int) -> str:
    """`good` valid sales and `bad` sales with a negative quantity, as JSON lines."""
    records = [{**GOOD_SALE, "transaction_id": f"T0900000{i:04d}"} for i in range(good)]
    records += [{**GOOD_SALE, "transaction_id": f"T0910000{i:04d}", "quantity": -3} for i in range(bad)]
    return "".join(json.dumps(r) + "\n" for r in records)


def _first_column(table_text: str, title: str) -> str:
    """The first column of the table titled `title`, its folded lines joined: what a reader copies."""
    lines = table_text.split(title, 1)[1].splitlines()
    cells = [line.split("│")[1].strip() for line in lines if line.startswith("│") and line.count("│") > 2]
    return "".join(cells)


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("lakebox: error: "), lines[0]
    return lines[0]


# ---------------------------------------------------------------------- persistence, in process
@pytest.fixture
def lake_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "lake"
    monkeypatch.setenv("LAKEBOX_HOME", str(home))
    return home


def test_a_restarted_box_keeps_objects_versions_manifests_and_the_catalog(lake_home: Path, tmp_path: Path) -> None:
    from lakebox.box import open_box

    # GIVEN a lake where a file was ingested and a table registered
    path = tmp_path / "kept.jsonl"
    path.write_text(_sales_lines(8, 2))
    with open_box(ROOT, reuse=False, persist=True) as box:
        key, deliveries = box.put_file(path, "sales")
        manifest = deliveries[0].result
        box.session.client("glue").create_table(
            DatabaseName=str(box.stack.parameters["GlueDatabaseName"]),
            TableInput={"Name": "kept_table", "StorageDescriptor": {"Columns": [{"Name": "a", "Type": "int"}]}},
        )
        landing = box.bucket("LandingBucket")
        box.session.client("s3").put_object(Bucket=landing, Key=key, Body=b"a second version")
    assert (lake_home / "state" / "snapshot.pickle").exists()
    # WHEN a new box starts on the saved lake
    with open_box(ROOT, reuse=False, persist=True) as box:
        s3 = box.session.client("s3")
        versions = s3.list_object_versions(Bucket=landing, Prefix=key)["Versions"]
        table = box.session.resource("dynamodb").Table(str(box.stack.ref("ManifestsTable")))
        stored = table.get_item(Key={"object_id": manifest["object_id"]}).get("Item")
        tables = box.session.client("glue").get_tables(DatabaseName=str(box.stack.parameters["GlueDatabaseName"]))
        raw = s3.list_objects_v2(Bucket=box.bucket("RawBucket"), Prefix="sales/")
    # THEN both object versions, the manifest (keyed by the first version) and the table are there
    assert {v["VersionId"] for v in versions} >= {manifest["version"]}
    assert len(versions) == 2
    assert stored is not None and int(stored["records_landed"]) == 8
    assert "kept_table" in {t["Name"] for t in tables["TableList"]}
    assert raw["KeyCount"] >= 1


def test_a_box_without_persist_leaves_no_state(lake_home: Path, tmp_path: Path) -> None:
    from lakebox.box import open_box

    path = tmp_path / "gone.jsonl"
    path.write_text(_sales_lines(2, 0))
    with open_box(ROOT, reuse=False) as box:
        box.put_file(path, "sales")
    assert not (lake_home / "state" / "snapshot.pickle").exists()


def test_a_snapshot_from_another_moto_is_refused_and_kept(lake_home: Path) -> None:
    import pickle

    from lakebox.errors import LakeboxError
    from lakebox.home.state import StateStore

    store = StateStore(lake_home / "state")
    store.folder.mkdir(parents=True)
    with store.path.open("wb") as handle:
        pickle.dump({"format": 1, "moto": "0.0.1", "saved_at": "then", "objects": 0}, handle)
    with pytest.raises(LakeboxError, match="lakebox reset"):
        store.load()
    assert store.path.exists()


def test_an_interrupted_atomic_write_leaves_the_old_content(tmp_path: Path) -> None:
    from lakebox.home.state import atomic_write

    target = tmp_path / "file.bin"
    atomic_write(target, lambda handle: handle.write(b"old"))

    def failing(handle: Any) -> None:
        handle.write(b"half of the new")
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        atomic_write(target, failing)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


# ---------------------------------------------------------------------- lakebox up, in its own process
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Up:
    """`lakebox up` in a process of its own, with its lake in `home`."""

    def __init__(self, home: Path, port: int) -> None:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        environment["LAKEBOX_HOME"] = str(home)
        self.home = home
        self.log = (home.parent / f"up-{port}.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lakebox.cli", "up", "--port", str(port), "--quiet", "--poll", "0.2"],
            cwd=ROOT,
            env=environment,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while not self._recorded():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"lakebox up did not start: {Path(self.log.name).read_text()}")
            time.sleep(0.2)

    def _recorded(self) -> bool:
        try:
            return int(json.loads((self.home / "endpoint.json").read_text())["pid"]) == self.process.pid
        except (OSError, ValueError, KeyError):
            return False

    def s3(self) -> Any:
        return self.client("s3")

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            aws_access_key_id="x",
            aws_secret_access_key="x",
            region_name="us-east-1",
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(60)
        self.log.close()

    def output(self) -> str:
        return Path(self.log.name).read_text()


@pytest.fixture
def up_home(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "lake"


def _wait(predicate: Any, timeout: float = 300, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _snapshot_objects(home: Path) -> int:
    from lakebox.home.state import StateStore

    info = StateStore(home / "state").info()
    return info.objects if info else 0


def test_any_s3_client_upload_is_ingested_while_up_runs_and_kill_9_loses_nothing_saved(
    up_home: Path, tmp_path: Path
) -> None:
    up = Up(up_home, _free_port())
    try:
        # GIVEN lakebox up, and a file uploaded by plain boto3 (not lakebox put)
        s3 = up.s3()
        s3.put_object(Bucket="lakebox-landingbucket", Key="sales/boto3/first.jsonl", Body=_sales_lines(5, 1).encode())
        # THEN the template's rule ingests it: up reports it and its manifest is written
        _wait(lambda: "sales/boto3/first.jsonl PARTIAL" in up.output(), what="the boto3 upload to be ingested")
        saved = _wait(lambda: _snapshot_objects(up_home), what="a snapshot")
        # WHEN a big put is under way and the process is killed with SIGKILL
        big = write_sales(tmp_path / "big.jsonl", SampleSpec(sales=150_000, seed=5)).path  # any dates: never processed
        s3.upload_file(str(big), "lakebox-landingbucket", "sales/big/big.jsonl")
        time.sleep(0.5)
        up.stop(signal.SIGKILL)
    finally:
        up.stop()
    # THEN the saved snapshot is whole, and a restart serves what was saved
    assert _snapshot_objects(up_home) >= saved
    again = Up(up_home, _free_port())
    try:
        result = run_cli(up_home, "quarantine", "--dataset", "sales", "--json")
        assert result.returncode == 0, result.stderr
        counts = json.loads(result.stdout)["counts"]
        assert sum(c["records"] for c in counts) >= 1
        keys = {o["Key"] for o in again.s3().list_objects_v2(Bucket="lakebox-landingbucket")["Contents"]}
        assert "sales/boto3/first.jsonl" in keys
    finally:
        again.stop()
    assert not (up_home / "endpoint.json").exists()


@pytest.mark.slow
def test_the_readme_path_up_put_out_of_order_execute_query(up_home: Path, tmp_path: Path) -> None:
    from lakebox.app.sample import generate

    end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    files = {g.dataset: g for g in generate(tmp_path / "data", SampleSpec(sales=400, seed=9, end=end))}
    up = Up(up_home, _free_port())
    try:
        # GIVEN up, then sales before the reference data (products put, customers uploaded by boto3)
        for dataset in ("sales", "products"):
            result = run_cli(up_home, "put", str(files[dataset].path), "--dataset", dataset, "--json")
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout)[0]["landed"] == files[dataset].good
        up.s3().upload_file(str(files["customers"].path), "lakebox-landingbucket", "customers/customers.csv")
        _wait(lambda: "customers/customers.csv" in up.output(), what="the customers upload")
        # WHEN the pipeline runs, then runs again with nothing new
        first = run_cli(up_home, "execute", "PipelineStateMachine", "--json")
        # (by its physical name: up's record resolves it, the command loads no stack)
        second = run_cli(up_home, "execute", "lakebox-PipelineStateMachine", "--name", "nothing-new", "--json")
        refused = run_cli(up_home, "execute", "PipelineStateMachine", "--input", '{"engine": "emr"}')
        query = run_cli(up_home, "query", "--json", "SELECT sum(transactions) AS n FROM daily_sales_by_region")
        runs = run_cli(up_home, "runs", "--json")
        # (both ran in up's process, on its one SparkSession: up's Step Functions knows the execution it ran)
        sfn = up.client("stepfunctions")
        (machine,) = [m for m in sfn.list_state_machines()["stateMachines"] if "Pipeline" in m["stateMachineArn"]]
        arn = machine["stateMachineArn"].replace(":stateMachine:", ":execution:") + ":nothing-new"
        described = sfn.describe_execution(executionArn=arn)
    finally:
        up.stop()
    assert described["status"] == "SUCCEEDED"
    # THEN the first run builds the curated tables, the second has nothing to do, both SUCCEEDED
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr
    assert json.loads(first.stdout)["status"] == "SUCCEEDED"
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["note"].startswith("nothing to do: no new data since the last run")
    assert refused.returncode == 1 and "must be glue or emr-serverless, not 'emr'" in refused.stderr
    assert query.returncode == 0, query.stderr
    # every valid sale reaches the curated table once (the generator repeats a few sales: deduplicated on the key)
    curated = json.loads(query.stdout)["rows"][0]["n"]
    assert files["sales"].good * 0.97 <= curated <= files["sales"].good
    history = json.loads(runs.stdout)
    assert [r["status"] for r in history] == ["SUCCEEDED", "SUCCEEDED"]
    assert all(s["seconds"] is not None for s in history[1]["states"])


@pytest.mark.slow
def test_a_second_execute_with_nothing_new_says_so_and_starts_no_spark_without_up(tmp_path: Path) -> None:
    from lakebox.app.sample import generate

    home = tmp_path / "lake"
    end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    files = {g.dataset: g for g in generate(tmp_path / "data", SampleSpec(sales=200, seed=4, end=end))}
    # GIVEN a small lake (no lakebox up), its pipeline run once
    for dataset in ("products", "customers", "sales"):
        result = run_cli(home, "put", str(files[dataset].path), "--dataset", dataset, "--json")
        assert result.returncode == 0, result.stderr
    first = run_cli(home, "execute", "PipelineStateMachine", "--json")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr
    assert json.loads(first.stdout)["status"] == "SUCCEEDED"
    spark_config = home / "logs" / "spark-log4j2.properties"  # written when the process starts its SparkSession
    assert spark_config.exists()
    spark_config.unlink()

    # WHEN `lakebox execute` runs again on the same data
    second = run_cli(home, "execute", "PipelineStateMachine", "--json")

    # THEN it succeeds, says nothing was new, and its process never started Spark
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr
    report = json.loads(second.stdout)
    assert report["status"] == "SUCCEEDED"
    assert report["note"].startswith("nothing to do: no new data since the last run"), report["note"]
    assert not spark_config.exists()
    text = run_cli(home, "runs")
    assert "nothing to do" in text.stdout


@pytest.mark.slow
def test_run_leaves_a_lake_that_query_runs_and_quarantine_read_without_up(tmp_path: Path) -> None:
    home = tmp_path / "lake"
    # GIVEN `lakebox run` (what `make run` does), finished
    result = run_cli(home, "run", "--rows", "500", "--stream-seconds", "0", "--api-rows", "50", "--json")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    ingested = json.loads(result.stdout)["ingested"]
    sales = next(r for r in ingested if r["dataset"] == "sales" and r["key"].endswith(".jsonl.gz"))
    # WHEN query, runs and quarantine are asked afterwards, with no lakebox up
    query = run_cli(home, "query", "--json", "SELECT count(*) AS n FROM customer_aggregates")
    runs = run_cli(home, "runs", "--json")
    quarantine = run_cli(home, "quarantine", "--dataset", "sales", "--json")
    # THEN they read the lake the run left
    assert query.returncode == 0, query.stderr
    assert json.loads(query.stdout)["rows"][0]["n"] > 0
    assert json.loads(runs.stdout)[0]["status"] == "SUCCEEDED"
    counts = json.loads(quarantine.stdout)["counts"]
    assert sum(c["records"] for c in counts) >= sales["quarantined"] > 0


# ---------------------------------------------------------------------- quarantine, fix, replay
def test_quarantine_fix_replay_lands_the_records_and_the_manifest_records_the_replay(tmp_path: Path) -> None:
    home = tmp_path / "lake"
    source = tmp_path / "sales.jsonl"
    source.write_text(_sales_lines(4, 3))
    # GIVEN a put whose bad records are quarantined
    assert run_cli(home, "put", str(source), "--dataset", "sales").returncode == 0
    report = run_cli(home, "quarantine", "--dataset", "sales", "--json", "--export", str(tmp_path / "bad.jsonl"))
    assert report.returncode == 0, report.stderr
    document = json.loads(report.stdout)
    assert document["counts"] == [
        {"dataset": "sales", "reason": "quantity: greater_than", "records": 3, "outstanding": 3}
    ]
    assert document["samples"][0]["line"] is not None and document["samples"][0]["source"] == "sales/sales.jsonl"
    quarantine_key = document["objects"][0]
    # WHEN the exported records are fixed and replayed
    fixed = tmp_path / "fixed.jsonl"
    lines = (tmp_path / "bad.jsonl").read_text().splitlines()
    fixed.write_text("".join(json.dumps({**json.loads(line), "quantity": 3}) + "\n" for line in lines))
    replay = run_cli(home, "replay", str(fixed), "--dataset", "sales", "--of", quarantine_key, "--json")
    assert replay.returncode == 0, replay.stderr
    row = json.loads(replay.stdout)[0]
    # THEN they land, and the replay's manifest names what it replays
    assert (row["status"], row["landed"], row["quarantined"]) == ("LANDED", 3, 0)
    from lakebox.box import open_box

    os.environ["LAKEBOX_HOME"] = str(home)
    try:
        with open_box(ROOT, reuse=False, persist=True) as box:
            table = box.session.resource("dynamodb").Table(str(box.stack.ref("ManifestsTable")))
            items = table.scan()["Items"]
    finally:
        del os.environ["LAKEBOX_HOME"]
    replays = [i for i in items if i.get("replay_of") == quarantine_key]
    assert len(replays) == 1 and "/_replay/" in str(replays[0]["key"]) and int(replays[0]["records_landed"]) == 3
    # AND the quarantine shows the object as replayed, by that manifest, with nothing outstanding
    after = json.loads(run_cli(home, "quarantine", "--dataset", "sales", "--json").stdout)
    assert after["counts"][0] | {"records": 3, "outstanding": 0} == after["counts"][0]
    assert after["object_states"] == [
        {
            "key": quarantine_key,
            "dataset": "sales",
            "records": 3,
            "state": "replayed",
            "replay_manifest": replays[0]["object_id"],
            "replayed_at": replays[0]["replayed_at"],
        }
    ]


def test_quarantine_without_json_shows_the_keys_replay_takes(tmp_path: Path) -> None:
    home = tmp_path / "lake"
    source = tmp_path / "sales.jsonl"
    source.write_text(_sales_lines(2, 2))
    assert run_cli(home, "put", str(source), "--dataset", "sales").returncode == 0
    key = json.loads(run_cli(home, "quarantine", "--json").stdout)["objects"][0]
    # WHEN the quarantine is shown as a table, at 80 columns
    shown = run_cli(home, "quarantine", env={"COLUMNS": "80"})
    # THEN the key `lakebox replay --object` takes is in it whole (folded, not cut), outstanding
    assert shown.returncode == 0, shown.stderr
    assert key in _first_column(shown.stdout, "objects"), shown.stdout
    assert "outstanding" in shown.stdout
    assert max(len(line) for line in shown.stdout.splitlines()) <= 80, shown.stdout


# ---------------------------------------------------------------------- errors: one line, an exit code, no traceback
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("query", "SELECT 1", "--workgroup", "nope"), "unknown workgroup 'nope'"),
        (("execute", "PipelineStateMachine", "--input", '{"datasets": ["salez"]}'), "unknown dataset 'salez'"),
        (("execute", "PipelineStateMachine", "--input", "{not json"), "--input is not JSON"),
        (
            ("execute", "PipelineStateMachine", "--input", '{"engine": "emr"}'),
            "must be glue or emr-serverless, not 'emr'",
        ),
        (("invoke", "IngestFileFunction", "--event", "events/ingest_api/scheduled_pull.json"), "rejected the event"),
        (("put", "x.jsonl", "--dataset", "sales", "-p", "RawSettleSeconds=soon"), "is not a number"),
        (("put", "x.jsonl", "--dataset", "sales", "-p", "Environment=qa"), "is not one of its AllowedValues"),
        (("put", "x.jsonl", "--dataset", "sales", "-p", "NoSuchParameter=1"), "unknown template parameters"),
        (("execute", "NoSuchMachine"), "no state machine 'NoSuchMachine'"),
        (("logs", "NoSuchFunction"), "no function 'NoSuchFunction'"),
    ],
)
def test_user_errors_are_one_line_and_exit_1(tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    result = run_cli(tmp_path / "lake", *args)
    assert result.returncode == 1
    assert expected in _one_line_error(result)


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "lake", "--debug", "execute", "NoSuchMachine")
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_bad_numbers_on_the_command_line_exit_2_at_once(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "lake", "run", "--rows", "-5", timeout=30)
    assert result.returncode == 2
    assert "--rows: -5 is not above zero" in result.stderr
    assert "Traceback" not in result.stderr


def test_up_on_a_busy_port_exits_at_once(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        began = time.monotonic()
        result = run_cli(tmp_path / "lake", "up", "--port", str(port), timeout=60)
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use" in _one_line_error(result)
    assert time.monotonic() - began < 30


def test_a_stale_endpoint_file_is_named_removed_and_ignored(tmp_path: Path) -> None:
    home = tmp_path / "lake"
    home.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (home / "endpoint.json").write_text(json.dumps({"endpoint": "http://127.0.0.1:9", "pid": dead.pid}))
    result = run_cli(home, "status", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"lakebox: removed a stale {home / 'endpoint.json'} (lakebox up at http://127.0.0.1:9, pid {dead.pid}, is gone)"
    ]
    assert json.loads(result.stdout)["up"] is None
    assert not (home / "endpoint.json").exists()


def test_a_put_whose_records_are_all_quarantined_exits_3_and_says_so(tmp_path: Path) -> None:
    source = tmp_path / "all-bad.jsonl"
    source.write_text(_sales_lines(0, 4))
    result = run_cli(tmp_path / "lake", "put", str(source), "--dataset", "sales", "--json")
    assert result.returncode == 3
    assert json.loads(result.stdout)[0]["quarantined"] == 4
    assert result.stderr.strip() == (
        f"lakebox: nothing landed from sales/{source.name}: quarantined (see: lakebox quarantine --dataset sales)"
    )


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("document.json", '{\n  "sale_id": "S1",\n  "event_time": "2026-11-02T10:00:00Z",\n'),
        ("array.json", '[{"sale_id": "S1"}, {"sale_id": '),
        ("lines.jsonl", '{"sale_id": "S1"\n'),
    ],
)
def test_a_malformed_file_exits_3_whatever_its_shape(tmp_path: Path, name: str, body: str) -> None:
    # GIVEN a truncated JSON document, JSON array and JSON line (before: the document and the line exited 0, the
    # array 3, as the object's record counts differed)
    source = tmp_path / name
    source.write_text(body)
    # WHEN it is put
    result = run_cli(tmp_path / "lake", "put", str(source), "--dataset", "sales", "--json")
    # THEN the object is quarantined whole and the exit status says nothing landed, the same for every shape
    (row,) = json.loads(result.stdout)
    assert (row["status"], row["landed"], result.returncode) == ("QUARANTINED", 0, 3), result.stderr
    assert "nothing landed from" in result.stderr


def test_a_put_to_an_unknown_dataset_is_refused_before_uploading_and_exits_2(tmp_path: Path) -> None:
    # GIVEN a file and a misspelt dataset (before: uploaded, quarantined whole, exit 0)
    source = tmp_path / "orders.jsonl"
    source.write_text(_sales_lines(2, 0))
    # WHEN it is put
    result = run_cli(tmp_path / "lake", "put", str(source), "--dataset", "ordrs")
    # THEN it is refused with the known datasets listed, exit 2, and no lake was even started
    assert result.returncode == 2
    from datalake.contracts import REGISTRY

    known = ", ".join(sorted(REGISTRY))
    assert _one_line_error(result) == f"lakebox: error: unknown dataset 'ordrs' (known: {known}); nothing was uploaded"
    assert not (tmp_path / "lake" / "state").exists()


def test_invoke_reads_the_event_from_stdin_and_stages_the_sample_object(tmp_path: Path) -> None:
    event = (ROOT / "events" / "ingest_file" / "object_created.json").read_text()
    from_stdin = run_cli(tmp_path / "lake", "invoke", "IngestFileFunction", "--event", "-", stdin=event)
    # an event on stdin has no sample beside it: invoke says how to stage its object
    assert from_stdin.returncode == 1
    assert "--stage FILE" in _one_line_error(from_stdin)
    sample = run_cli(tmp_path / "lake", "invoke", "IngestFileFunction", "-e", "events/ingest_file/object_created.json")
    assert sample.returncode == 0, sample.stderr
    manifest = json.loads(sample.stdout)
    assert (manifest["records_read"], manifest["records_landed"], manifest["records_quarantined"]) == (6, 5, 1)


def test_reset_asks_unless_yes_and_empties_the_lake(tmp_path: Path) -> None:
    home = tmp_path / "lake"
    source = tmp_path / "s.jsonl"
    source.write_text(_sales_lines(2, 0))
    assert run_cli(home, "put", str(source), "--dataset", "sales").returncode == 0
    refused = run_cli(home, "reset")
    assert refused.returncode == 1 and "pass --yes" in _one_line_error(refused)
    assert (home / "state" / "snapshot.pickle").exists()
    assert run_cli(home, "reset", "--yes").returncode == 0
    assert list(home.iterdir()) == []
    status = json.loads(run_cli(home, "status", "--json").stdout)
    assert status["snapshot"] is None


def test_logs_prints_the_functions_structured_logs_by_level(tmp_path: Path) -> None:
    home = tmp_path / "lake"
    source = tmp_path / "s.jsonl"
    source.write_text(_sales_lines(2, 1))
    assert run_cli(home, "put", str(source), "--dataset", "sales").returncode == 0
    result = run_cli(home, "logs", "IngestFileFunction", "--json", "--level", "info")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert any(r.get("message") == "ingested" for r in records)
    assert all(r["level"] in ("INFO", "METRIC", "WARNING", "ERROR") for r in records)
    assert any(r["level"] == "METRIC" and r["metrics"]["RecordsQuarantined"] == [1.0] for r in records)
    errors_only = run_cli(home, "logs", "IngestFileFunction", "--json", "--level", "error")
    assert errors_only.returncode == 0 and errors_only.stdout == ""


def test_a_put_of_a_dataset_added_after_up_started_is_refused_with_the_restart_to_do(
    up_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import tests.fixtures.contracts as fixture_contracts
    from datalake.contracts import discover, registered
    from lakebox.cli import main

    # GIVEN lakebox up running, and a dataset registered afterwards (the fixture `shipments` module, which the
    # running process has never discovered; before: the put uploaded it and up quarantined it whole, exit 0)
    up = Up(up_home, _free_port())
    try:
        shipments = discover(fixture_contracts.__path__, fixture_contracts.__name__)["shipments"]
        source = tmp_path / "dispatch.jsonl"
        source.write_text('{"shipment_id": "SH1"}\n')
        monkeypatch.setenv("LAKEBOX_HOME", str(up_home))
        monkeypatch.chdir(ROOT)
        with registered(shipments):
            # WHEN this process puts a file of it
            code = main(["put", str(source), "--dataset", "shipments"])
        # THEN it is refused before uploading, with the restart to do
        error = capsys.readouterr().err
        assert code == 2, error
        assert f"dataset 'shipments' was added after lakebox up started (pid {up.process.pid})" in error
        assert "restart lakebox up" in error
        assert "Contents" not in up.s3().list_objects_v2(Bucket="lakebox-landingbucket", Prefix="shipments/")
        # AND a dataset the running process knows is still put through it
        sales = tmp_path / "sales.jsonl"
        sales.write_text(_sales_lines(2, 0))
        assert main(["put", str(sales), "--dataset", "sales"]) == 0, capsys.readouterr().err
    finally:
        up.stop()

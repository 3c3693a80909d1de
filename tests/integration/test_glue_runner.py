"""Glue and EMR Serverless job runs on local Spark against a moto server: staging, outputs, catalog, the gate."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import awswrangler as wr
import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from datalake.aws import AwsClients
from datalake.contracts import get_dataset
from datalake.quality import check_quality
from datalake.settings import Settings
from glue import raw_to_processed
from lakebox.cfn.artifacts import upload_glue_artifacts
from lakebox.services import glue

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RAW, PROCESSED, ARTIFACTS = "raw-bucket", "processed-bucket", "artifacts-bucket"
DATABASE, JOB = "data_lake_db", "raw_to_processed"
AS_OF = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class Aws:
    session: boto3.Session

    def put_raw(self, dataset: str, day: str, name: str, records: list[dict[str, Any]]) -> str:
        """Land records as ingestion does (gzip JSON lines with lineage) and record their manifest."""
        key = f"{dataset}/year={day[:4]}/month={day[5:7]}/day={day[8:]}/{name}.json.gz"
        lines = [
            json.dumps(
                {
                    **record,
                    "_source_key": f"{dataset}/{name}.csv",
                    "_source_version": "v1",
                    "_line": n,
                    "_ingested_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                }
            )
            for n, record in enumerate(records, 1)
        ]
        self.session.client("s3").put_object(Bucket=RAW, Key=key, Body=gzip.compress("\n".join(lines).encode()))
        manifest = {"object_id": f"s3://landing/{dataset}/{name}#v1", "dataset": dataset, "output_keys": [key]}
        self.session.resource("dynamodb").Table("manifests").put_item(Item={**manifest, "records_landed": len(records)})
        return key

    def keys(self, prefix: str) -> set[str]:
        pages = self.session.client("s3").get_paginator("list_objects_v2").paginate(Bucket=PROCESSED, Prefix=prefix)
        return {obj["Key"] for page in pages for obj in page.get("Contents", [])}

    def summary(self, run_id: str) -> dict[str, Any]:
        body = self.session.client("s3").get_object(Bucket=PROCESSED, Key=f"_runs/{run_id}/summary.json")["Body"]
        document: dict[str, Any] = json.loads(body.read())
        return document


def sale(tid: str, day: str, quantity: int, product: str = "P1") -> dict[str, Any]:
    return {
        "transaction_id": tid,
        "event_time": f"{day}T09:15:00+00:00",
        "customer_id": "C1",
        "product_id": product,
        "store_id": "S1",
        "region": "south",
        "quantity": quantity,
        "unit_price": 12.5,
        "currency": "USD",
        "payment_method": "cash",
        "channel": "store",
    }


@pytest.fixture
def aws(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Aws:
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    requests.post(f"{endpoint}/moto-api/reset", timeout=10)
    session = boto3.Session()
    s3 = session.client("s3")
    for bucket in (RAW, PROCESSED, ARTIFACTS):
        s3.create_bucket(Bucket=bucket)
    session.client("dynamodb").create_table(
        TableName="manifests",
        KeySchema=[{"AttributeName": "object_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "object_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    catalog = session.client("glue")
    catalog.create_database(DatabaseInput={"Name": DATABASE})
    scripts = upload_glue_artifacts(session, ARTIFACTS)
    catalog.create_job(
        Name=JOB,
        Role="arn:aws:iam::123456789012:role/glue-job",
        GlueVersion="5.0",
        Command={"Name": "glueetl", "ScriptLocation": scripts["raw_to_processed.py"], "PythonVersion": "3"},
        DefaultArguments={
            "--raw_path": f"s3://{RAW}/",
            "--processed_path": f"s3://{PROCESSED}/",
            "--database": DATABASE,
            "--datasets": "sales,products,customers",
            "--extra-py-files": scripts["datalake.zip"],
        },
    )
    aws = Aws(session)
    product = {"category": "toys", "list_price": "12.50", "currency": "USD", "active": "true"}
    aws.put_raw(
        "products",
        "2026-10-30",
        "products",
        [{**product, "product_id": "P1", "name": "Kite", "updated_at": "2026-10-30T00:00:00Z"}],
    )
    customer = {"name": "Bo", "segment": "small_business", "region": "east", "country": "SE"}
    dates = {"signup_date": "2025-05-01T00:00:00Z", "updated_at": "2026-10-30T00:00:00Z"}
    aws.put_raw("customers", "2026-10-30", "customers", [{**customer, **dates, "customer_id": "C1"}])
    aws.put_raw("sales", "2026-11-02", "day2", [sale("T1", "2026-11-02", 1), sale("T2", "2026-11-02", 2)])
    aws.put_raw("sales", "2026-11-03", "day3", [sale("T3", "2026-11-03", 3), sale("T3", "2026-11-03", 3)])
    return aws


def test_glue_run_then_emr_run_keep_processed_parquet_catalog_and_gate_in_step(aws: Aws) -> None:
    # GIVEN raw sales over two days (T3 twice) and reference data in the local S3, and the job in the catalog
    # WHEN the job runs as `glue:startJobRun.sync` would run it
    run = glue.run_glue_job(aws.session, JOB, {"--run_id": "run-1"})

    # THEN the run succeeded and wrote one Parquet file per event date, with no local checksum files
    assert run["JobRunState"] == "SUCCEEDED", run.get("ErrorMessage")
    assert run["Id"].startswith("jr_") and run["ExecutionTime"] >= 1
    keys = aws.keys("sales/")
    assert {k.split("/")[1] for k in keys} == {"event_date=2026-11-02", "event_date=2026-11-03"}
    assert all(k.endswith(".snappy.parquet") for k in keys)
    assert {"_watermarks/sales.json", "_runs/run-1/summary.json"} <= aws.keys("_")

    # AND the rows are typed and deduplicated; reference attributes are joined at curation, point in time
    frame = wr.s3.read_parquet(f"s3://{PROCESSED}/sales/", dataset=True, boto3_session=aws.session)
    rows = {r["transaction_id"]: r for r in frame.to_dict("records")}
    assert sorted(rows) == ["T1", "T2", "T3"]
    assert str(rows["T3"]["revenue"]) == "37.50"
    assert "product_name" not in frame.columns and "customer_segment" not in frame.columns

    # AND the catalog holds the tables with Parquet SerDe, typed columns and s3 partition locations
    catalog = aws.session.client("glue")
    table = catalog.get_table(DatabaseName=DATABASE, Name="sales")["Table"]
    columns = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
    assert (columns["unit_price"], columns["revenue"], columns["event_time"]) == (
        "decimal(12,2)",
        "decimal(18,2)",
        "timestamp",
    )
    assert table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"] == raw_to_processed.PARQUET_SERDE
    partitions = catalog.get_partitions(DatabaseName=DATABASE, TableName="sales")["Partitions"]
    assert sorted(p["StorageDescriptor"]["Location"] for p in partitions) == [
        f"s3://{PROCESSED}/sales/event_date=2026-11-02/",
        f"s3://{PROCESSED}/sales/event_date=2026-11-03/",
    ]
    tables = {t["Name"]: t for t in catalog.get_tables(DatabaseName=DATABASE)["TableList"]}
    rollups = {r.name for r in get_dataset("sales").rollups}
    assert set(tables) == {"sales", "products", "customers", "raw_sales", "raw_products", "raw_customers", *rollups}
    assert tables["sales_by_region_day"]["StorageDescriptor"]["Location"] == f"s3://{PROCESSED}/sales_by_region_day/"
    # AND the raw tables are declared from the contracts at the raw zone's own location, not the staged copy
    raw_sales = tables["raw_sales"]["StorageDescriptor"]
    assert raw_sales["Location"] == f"s3://{RAW}/sales/"
    assert {c["Name"]: c["Type"] for c in raw_sales["Columns"]}["unit_price"] == "decimal(12,2)"

    # AND the quality gate reconciles the partitions with the manifests
    settings = Settings(processed_bucket=PROCESSED, manifests_table="manifests")
    report = check_quality(
        AwsClients.from_session(aws.session), settings, ["sales", "products", "customers"], "run-1", now=AS_OF
    )
    assert report.passed, report.failures()

    # GIVEN then a new raw file correcting T1 on 2026-11-02
    day2, day3 = aws.keys("sales/event_date=2026-11-02/"), aws.keys("sales/event_date=2026-11-03/")
    rollup2, rollup3 = (aws.keys(f"sales_by_region_day/event_date={d}/") for d in ("2026-11-02", "2026-11-03"))
    new_key = aws.put_raw("sales", "2026-11-02", "fix", [sale("T1", "2026-11-02", 4)])
    args = [
        "--raw_path", f"s3://{RAW}/",
        "--processed_path", f"s3://{PROCESSED}/",
        "--database", DATABASE,
        "--datasets", '["sales"]',
        "--run_id", "run-2",
    ]  # fmt: skip

    # WHEN the staging is planned against the local S3, and the same script runs on EMR Serverless
    plan = raw_to_processed.staging_plan(raw_to_processed.parse_arguments(args), glue.S3Store(aws.session))
    application = aws.session.client("emr-serverless").create_application(
        name="spark", releaseLabel="emr-7.5.0", type="SPARK"
    )
    driver = {"sparkSubmit": {"entryPoint": f"s3://{ARTIFACTS}/glue/raw_to_processed.py", "entryPointArguments": args}}
    run = glue.run_emr_job(aws.session, application["applicationId"], "arn:aws:iam::123456789012:role/emr", driver)

    # THEN only the new file, the dataset's processed root (dedup spans its history), the watermark, and the rollups'
    # marker and folders (the run rewrites a day of each) were staged
    assert plan.inputs == (
        f"s3://{RAW}/{new_key}",
        f"s3://{PROCESSED}/sales/",
        f"s3://{PROCESSED}/_watermarks/sales.json",
        f"s3://{PROCESSED}/_rollups/sales.json",
        *(f"s3://{PROCESSED}/{r.name}/" for r in get_dataset("sales").rollups),
    )
    # AND the run replaced that partition's file, left the other day alone and kept the newest T1
    assert (run["state"], run["JobRunState"]) == ("SUCCESS", "SUCCEEDED"), run.get("ErrorMessage")
    assert aws.summary("run-2")["datasets"]["sales"]["raw_files"] == [new_key]
    after = aws.keys("sales/event_date=2026-11-02/")
    assert len(after) == 1 and after.isdisjoint(day2)
    assert aws.keys("sales/event_date=2026-11-03/") == day3
    # AND the rollups' day was replaced in the S3 the same way, the other day's left alone
    after_rollup = aws.keys("sales_by_region_day/event_date=2026-11-02/")
    assert len(after_rollup) == 1 and after_rollup.isdisjoint(rollup2)
    assert aws.keys("sales_by_region_day/event_date=2026-11-03/") == rollup3
    frame = wr.s3.read_parquet(f"s3://{PROCESSED}/sales/event_date=2026-11-02/", boto3_session=aws.session)
    assert dict(zip(frame["transaction_id"], frame["quantity"], strict=True)) == {"T1": 4, "T2": 2}


def test_a_failing_script_is_a_failed_run_not_an_exception(aws: Aws, tmp_path: Path) -> None:
    # GIVEN run arguments that blank the raw path, and a job whose script cannot say what to stage
    script = tmp_path / "no_plan.py"
    script.write_text("def run(spark, args):\n    return {}\n")
    catalog = aws.session.client("glue")
    catalog.create_job(Name="no_plan", Role="r", Command={"Name": "glueetl", "ScriptLocation": str(script)})

    # WHEN the jobs run
    blank = glue.run_glue_job(aws.session, JOB, {"--raw_path": "", "--run_id": "run-bad"})
    unplanned = glue.run_glue_job(aws.session, "no_plan", {})

    # THEN the runs are FAILED with the script's error, and nothing was written
    assert blank["JobRunState"] == unplanned["JobRunState"] == "FAILED"
    assert blank["ErrorMessage"] == "TerminalError: missing job arguments: --raw_path"
    assert unplanned["ErrorMessage"].startswith("LookupError:")
    assert aws.keys("") == set()


SPARK_LOGS = """
import sys
from pathlib import Path
from lakebox.services.glue import local_spark
spark = local_spark(Path(sys.argv[1]))
jvm = spark.sparkContext._jvm
jvm.org.apache.logging.log4j.LogManager.getLogger("org.apache.spark.lakebox").error("spark-says-marker")
jvm.org.apache.logging.log4j.LogManager.shutdown()
spark.range(3).count()
"""


def test_sparks_own_log_goes_to_the_log_file_not_the_terminal(tmp_path: Path) -> None:
    import subprocess
    import sys

    log = tmp_path / "logs" / "spark.log"
    # GIVEN the local SparkSession started with the box's log file, and Spark logging an error
    ran = subprocess.run(
        [sys.executable, "-c", SPARK_LOGS, str(log)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    # THEN the line is in the log file, and the terminal (stderr) does not show it
    assert "spark-says-marker" in log.read_text(), ran.stderr[-2000:]
    assert "spark-says-marker" not in ran.stderr + ran.stdout


EARLY_SYNC_SCRIPT = """
import time
from pathlib import Path
from types import SimpleNamespace

import boto3

ACCEPTS_SESSION_FACTORY = True


def staging_plan(args, store):
    return SimpleNamespace(roots={"out_path": args["out_path"]}, inputs=[args["out_path"] + "old.txt"], args={})


def _wait_for(test, seconds=20.0):
    deadline = time.monotonic() + seconds
    while not test():
        if time.monotonic() > deadline:
            raise TimeoutError("the runner did not mirror the job's files while it ran")
        time.sleep(0.05)


def run(spark, args):
    s3, out = boto3.client("s3"), Path(args["out_path"].removeprefix("file://"))
    listed = lambda: s3.list_objects_v2(Bucket="processed-bucket", Prefix="early/").get("Contents", [])
    keys = lambda: {o["Key"] for o in listed()}
    (out / "day=1").mkdir()
    (out / "day=1" / "part-0.txt").write_text("first")
    _wait_for(lambda: "early/day=1/part-0.txt" in keys())  # uploaded while the job still runs
    (out / "old.txt").unlink()
    _wait_for(lambda: "early/old.txt" not in keys())  # and a file the job removed is deleted as it runs
    (out / "day=1" / "part-0.txt").write_text("second, longer")  # a file rewritten after its upload
    (out / ".staging").mkdir()
    (out / ".staging" / "part-1.txt").write_text("hidden")
    (out / ".staging" / "part-1.txt").rename(out / "day=1" / "part-1.txt")  # appears whole, as a commit renames
    return {}
"""


def test_a_running_jobs_finished_files_reach_s3_before_it_returns_and_end_as_it_left_them(
    aws: Aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a job that waits, while it runs, to see its first file in S3 and a removed one gone, then changes more
    script = tmp_path / "early.py"
    script.write_text(EARLY_SYNC_SCRIPT)
    s3 = aws.session.client("s3")
    s3.put_object(Bucket=PROCESSED, Key="early/old.txt", Body=b"old")
    monkeypatch.setattr(glue, "EARLY_SYNC_SECONDS", 0.1)

    # WHEN it runs on the local runner
    outcome = glue.execute_script(aws.session, str(script), {"out_path": f"s3://{PROCESSED}/early/"})

    # THEN it saw its files mirrored while it ran (it would have timed out otherwise), and S3 ends as it left them
    assert outcome.succeeded, outcome.error
    assert aws.keys("early/") == {"early/day=1/part-0.txt", "early/day=1/part-1.txt"}
    body = s3.get_object(Bucket=PROCESSED, Key="early/day=1/part-0.txt")["Body"].read()
    assert body == b"second, longer"
    assert outcome.deleted == 1 and outcome.uploaded >= 3


def test_a_warm_up_runs_the_job_on_generated_records_and_leaves_the_lake_as_it_was(aws: Aws, tmp_path: Path) -> None:
    from lakebox.app.warm import write_warm_raw

    s3, catalog = aws.session.client("s3"), aws.session.client("glue")

    def lake() -> tuple[set[str], list[str]]:
        keys = {
            f"{bucket}/{obj['Key']}"
            for bucket in (RAW, PROCESSED, ARTIFACTS)
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for obj in page.get("Contents", [])
        }
        return keys, sorted(t["Name"] for t in catalog.get_tables(DatabaseName=DATABASE)["TableList"])

    # GIVEN generated raw records of every dataset the job runs, in a local folder laid out as the raw zone
    written = write_warm_raw(tmp_path / "raw", 200)
    before = lake()

    # WHEN the job warms on them
    outcome = glue.warm_job(aws.session, JOB, tmp_path / "raw")

    # THEN it ran the job's script over them (rows written), and the local AWS holds what it held before
    assert outcome.succeeded, outcome.error
    assert 0 < outcome.rows_out <= sum(written[name] for name in ("sales", "products", "customers"))
    assert lake() == before


def test_a_job_run_waits_for_a_warm_up_to_end(aws: Aws) -> None:
    import threading

    runs: list[dict[str, Any]] = []
    # GIVEN a warm-up holding the JVM
    with glue._WARMING:
        # WHEN a job run starts
        thread = threading.Thread(target=lambda: runs.append(glue.run_glue_job(aws.session, JOB, {"--raw_path": ""})))
        thread.start()
        thread.join(1.0)
        # THEN it has not run while the warm-up held the JVM
        assert thread.is_alive() and runs == []
    # AND it runs once the warm-up ends
    thread.join(60)
    assert [run["ErrorMessage"] for run in runs] == ["TerminalError: missing job arguments: --raw_path"]

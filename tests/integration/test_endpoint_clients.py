"""Real AWS clients against `lakebox up`: boto3 (ours and the newest), the AWS CLI, awswrangler, PyAthena, dbt-athena.

The clients whose pins clash with the project's live in `.tools/clients/` (scripts/ensure-clients.sh, run by
`make test`) and run here as processes of their own, exactly as a user runs them with `AWS_ENDPOINT_URL` set.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.conftest import ROOT
from tests.integration.test_workbench import Up, _free_port

pytestmark = pytest.mark.integration

CLIENTS = ROOT / ".tools" / "clients"
DATABASE = "data_lake_db"
WORKGROUP = "lakebox-primary"
SEED_ROWS = [(1, "east", "10.50", "2026-11-01"), (2, "west", "7.25", "2026-11-01"), (3, "east", "3.00", "2026-11-02")]
SEED_SQL = "CREATE TABLE endpoint_sales WITH (format = 'PARQUET') AS " + " UNION ALL ".join(
    f"SELECT {i} AS id, '{r}' AS region, CAST({a} AS decimal(10,2)) AS amount, DATE '{d}' AS sale_date"
    for i, r, a, d in SEED_ROWS
)


def client(name: str, executable: str) -> Path:
    """A client of .tools/clients/, or a skip (a failure in CI, where every client must be there)."""
    path = CLIENTS / name / "bin" / executable
    if not path.exists():
        message = f"{path} is missing: run `bash scripts/ensure-clients.sh`"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def user_environment(endpoint: str) -> dict[str, str]:
    """What the README tells a user to export: the endpoint, dummy credentials and the region."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAKEBOX_"))}
    environment.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    return environment


def run_client(endpoint: str, *command: str | Path, cwd: Path | None = None, timeout: float = 300) -> str:
    """Run a client command as a user would; its stdout, or a failure with everything it printed."""
    result = subprocess.run(
        [str(c) for c in command],
        env=user_environment(endpoint),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{command[0]} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def athena(endpoint: str) -> Any:
    return boto3.client(
        "athena", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


def wait_done(client_: Any, execution_id: str, timeout: float = 120) -> dict[str, Any]:
    """Poll GetQueryExecution until the query leaves QUEUED/RUNNING, as every Athena client does."""
    deadline = time.monotonic() + timeout
    while True:
        described: dict[str, Any] = client_.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]
        if described["Status"]["State"] not in {"QUEUED", "RUNNING"}:
            return described
        assert time.monotonic() < deadline, f"query {execution_id} still {described['Status']['State']}"
        time.sleep(0.1)


def run_sql(client_: Any, sql: str) -> dict[str, Any]:
    execution_id = client_.start_query_execution(
        QueryString=sql, QueryExecutionContext={"Database": DATABASE}, WorkGroup=WORKGROUP
    )["QueryExecutionId"]
    return wait_done(client_, execution_id)


@pytest.fixture(scope="module")
def running_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    """`lakebox up` in a process of its own, with a seed table made through its Athena."""
    home = tmp_path_factory.mktemp("endpoint") / "lake"
    up = Up(home, _free_port())
    try:
        described = run_sql(athena(up.endpoint), SEED_SQL)
        assert described["Status"]["State"] == "SUCCEEDED", described["Status"]
        yield up
    finally:
        up.stop()


@pytest.fixture(scope="module")
def endpoint(running_up: Up) -> str:
    """The endpoint of the module's `lakebox up`."""
    return running_up.endpoint


# ---------------------------------------------------------------------- boto3 at the project's pin (JSON 1.1)
def test_boto3_runs_sql_on_the_local_engine_with_real_states_statistics_and_results(endpoint: str) -> None:
    client_ = athena(endpoint)
    # WHEN a query starts
    execution_id = client_.start_query_execution(
        QueryString="SELECT region, sum(amount) AS total, count(*) AS n FROM endpoint_sales GROUP BY region "
        "ORDER BY region",
        QueryExecutionContext={"Database": DATABASE},
        WorkGroup=WORKGROUP,
    )["QueryExecutionId"]
    described = wait_done(client_, execution_id)
    # THEN it ran on the engine: real rows, bytes scanned, the workgroup's output location
    assert described["Status"]["State"] == "SUCCEEDED"
    assert described["Statistics"]["DataScannedInBytes"] > 0
    output = described["ResultConfiguration"]["OutputLocation"]
    assert output.endswith(f"/primary/{execution_id}.csv")
    results = client_.get_query_results(QueryExecutionId=execution_id)
    columns = results["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]
    assert [(c["Name"], c["Type"]) for c in columns] == [("region", "varchar"), ("total", "decimal"), ("n", "bigint")]
    rows = [[d.get("VarCharValue") for d in r["Data"]] for r in results["ResultSet"]["Rows"]]
    assert rows == [["region", "total", "n"], ["east", "13.50", "2"], ["west", "7.25", "1"]]
    # AND the result CSV and its .metadata are in the workgroup's output location, as Athena writes them
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    bucket, key = output[5:].split("/", 1)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    assert list(csv.reader(io.StringIO(body))) == [
        ["region", "total", "n"],
        ["east", "13.50", "2"],
        ["west", "7.25", "1"],
    ]
    metadata = json.loads(s3.get_object(Bucket=bucket, Key=f"{key}.metadata")["Body"].read())
    assert [c["Name"] for c in metadata["ColumnInfo"]] == ["region", "total", "n"]


def test_results_are_paged_with_next_token_and_max_results(endpoint: str) -> None:
    client_ = athena(endpoint)
    described = run_sql(client_, "SELECT id FROM endpoint_sales ORDER BY id")
    pages, token = [], None
    while True:
        kwargs: dict[str, Any] = {"QueryExecutionId": described["QueryExecutionId"], "MaxResults": 2}
        if token:
            kwargs["NextToken"] = token
        page = client_.get_query_results(**kwargs)
        pages.append([[d.get("VarCharValue") for d in r["Data"]] for r in page["ResultSet"]["Rows"]])
        token = page.get("NextToken")
        if not token:
            break
    assert pages == [[["id"], ["1"]], [["2"], ["3"]]]
    # AND a paginator of the SDK walks the same rows
    paginator = client_.get_paginator("get_query_results")
    ids = [
        r["Data"][0]["VarCharValue"]
        for p in paginator.paginate(QueryExecutionId=described["QueryExecutionId"], PaginationConfig={"PageSize": 2})
        for r in p["ResultSet"]["Rows"]
    ]
    assert ids == ["id", "1", "2", "3"]


def test_a_query_of_an_unknown_table_fails_with_athenas_reason_and_category(endpoint: str) -> None:
    client_ = athena(endpoint)
    described = run_sql(client_, "SELECT * FROM no_such_table")
    status = described["Status"]
    assert status["State"] == "FAILED"
    assert status["StateChangeReason"].startswith("TABLE_NOT_FOUND:"), status
    assert status["AthenaError"]["ErrorCategory"] == 2
    with pytest.raises(ClientError, match="FAILED"):
        client_.get_query_results(QueryExecutionId=described["QueryExecutionId"])


def test_ctas_and_insert_report_their_data_manifest_listing_the_files_written(endpoint: str) -> None:
    client_ = athena(endpoint)
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    created = run_sql(client_, "CREATE TABLE manifest_check AS SELECT id, region FROM endpoint_sales")
    inserted = run_sql(client_, "INSERT INTO manifest_check SELECT id + 10, region FROM endpoint_sales")
    for described in (created, inserted):
        assert described["Status"]["State"] == "SUCCEEDED", described["Status"]
        manifest = described["Statistics"]["DataManifestLocation"]
        assert manifest.endswith(f"/tables/{described['QueryExecutionId']}-manifest.csv")
        bucket, key = manifest[5:].split("/", 1)
        files = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().split()
        assert files and all(f.endswith(".parquet") and described["QueryExecutionId"] in f for f in files)
    count = run_sql(client_, "SELECT count(*) FROM manifest_check")
    rows = client_.get_query_results(QueryExecutionId=count["QueryExecutionId"])["ResultSet"]["Rows"]
    assert rows[1]["Data"][0]["VarCharValue"] == "6"


def test_batch_get_list_and_stop_query_executions(endpoint: str) -> None:
    client_ = athena(endpoint)
    done = run_sql(client_, "SELECT 1 AS one")
    batch = client_.batch_get_query_execution(QueryExecutionIds=[done["QueryExecutionId"], "not-an-id"])
    assert [e["QueryExecutionId"] for e in batch["QueryExecutions"]] == [done["QueryExecutionId"]]
    assert batch["QueryExecutions"][0]["Statistics"]["DataScannedInBytes"] == 0
    assert [u["QueryExecutionId"] for u in batch["UnprocessedQueryExecutionIds"]] == ["not-an-id"]
    listed = client_.list_query_executions(WorkGroup=WORKGROUP)["QueryExecutionIds"]
    assert listed[0] == done["QueryExecutionId"]
    # AND stopping a finished query changes nothing, as on Athena
    client_.stop_query_execution(QueryExecutionId=done["QueryExecutionId"])
    assert wait_done(client_, done["QueryExecutionId"])["Status"]["State"] == "SUCCEEDED"


def test_a_query_stopped_while_it_runs_ends_cancelled_with_its_results_withheld(endpoint: str) -> None:
    client_ = athena(endpoint)
    # GIVEN a query that reads a table (it plans, reads the catalog and the data: it does not finish at once)
    execution_id = client_.start_query_execution(
        QueryString="SELECT count(*) FROM endpoint_sales a CROSS JOIN endpoint_sales b",
        QueryExecutionContext={"Database": DATABASE},
        WorkGroup=WORKGROUP,
    )["QueryExecutionId"]
    # WHEN it is stopped at once
    client_.stop_query_execution(QueryExecutionId=execution_id)
    # THEN it ends CANCELLED, as Athena reports a stopped query, and has no results
    status = wait_done(client_, execution_id)["Status"]
    assert status["State"] == "CANCELLED" and status["StateChangeReason"] == "Query cancelled by user"
    with pytest.raises(ClientError, match="CANCELLED"):
        client_.get_query_results(QueryExecutionId=execution_id)


def test_workgroups_catalogs_and_table_metadata_are_the_templates_and_the_catalogs(endpoint: str) -> None:
    client_ = athena(endpoint)
    group = client_.get_work_group(WorkGroup=WORKGROUP)["WorkGroup"]
    assert group["Configuration"]["EnforceWorkGroupConfiguration"] is True
    assert group["Configuration"]["ResultConfiguration"]["OutputLocation"].endswith("/primary/")
    names = {g["Name"] for g in client_.list_work_groups()["WorkGroups"]}
    assert {"lakebox-primary", "lakebox-analytics", "lakebox-ml_data"} <= names
    assert client_.list_data_catalogs()["DataCatalogsSummary"][0] == {"CatalogName": "AwsDataCatalog", "Type": "GLUE"}
    databases = [d["Name"] for d in client_.list_databases(CatalogName="AwsDataCatalog")["DatabaseList"]]
    assert DATABASE in databases
    tables = client_.list_table_metadata(CatalogName="AwsDataCatalog", DatabaseName=DATABASE)["TableMetadataList"]
    assert "endpoint_sales" in [t["Name"] for t in tables]
    table = client_.get_table_metadata(CatalogName="AwsDataCatalog", DatabaseName=DATABASE, TableName="endpoint_sales")
    columns = [(c["Name"], c["Type"]) for c in table["TableMetadata"]["Columns"]]
    assert columns == [("id", "int"), ("region", "varchar(4)"), ("amount", "decimal(10,2)"), ("sale_date", "date")] or [
        c[0] for c in columns
    ] == ["id", "region", "amount", "sale_date"]
    named = client_.list_named_queries(WorkGroup="lakebox-analytics")["NamedQueryIds"]
    assert named, "the template's named queries exist on the endpoint"
    batch = client_.batch_get_named_query(NamedQueryIds=named[:2])
    assert len(batch["NamedQueries"]) == min(2, len(named))


def test_an_operation_the_endpoint_cannot_serve_is_an_error_naming_it(endpoint: str) -> None:
    client_ = athena(endpoint)
    with pytest.raises(ClientError) as raised:
        client_.list_engine_versions()
    assert raised.value.response["Error"]["Code"] == "UnsupportedOperation"
    assert "ListEngineVersions" in raised.value.response["Error"]["Message"]


def test_alter_table_set_tblproperties_is_recorded_in_the_catalog(endpoint: str) -> None:
    client_ = athena(endpoint)
    run_sql(client_, "CREATE TABLE props_check AS SELECT id FROM endpoint_sales")
    described = run_sql(client_, "ALTER TABLE props_check SET TBLPROPERTIES ('classification'='parquet', 'owner'='x')")
    assert described["Status"]["State"] == "SUCCEEDED", described["Status"]
    glue = boto3.client(
        "glue", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    parameters = glue.get_table(DatabaseName=DATABASE, Name="props_check")["Table"]["Parameters"]
    assert parameters["classification"] == "parquet" and parameters["owner"] == "x"


# ---------------------------------------------------------------------- awswrangler (the project's own venv)
def test_awswrangler_reads_with_and_without_ctas_and_lists_the_catalog(
    endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import awswrangler as wr

    for name, value in user_environment(endpoint).items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    session = boto3.Session()
    sql = "SELECT id, region, amount FROM endpoint_sales ORDER BY id"
    for ctas in (True, False):
        frame = wr.athena.read_sql_query(
            sql, database=DATABASE, workgroup=WORKGROUP, ctas_approach=ctas, boto3_session=session
        )
        assert frame["id"].tolist() == [1, 2, 3], ctas
        assert frame["region"].tolist() == ["east", "west", "east"], ctas
        assert [str(a) for a in frame["amount"]] == ["10.50", "7.25", "3.00"], ctas
    execution_id = wr.athena.start_query_execution(
        "SELECT count(*) AS n FROM endpoint_sales",
        database=DATABASE,
        workgroup=WORKGROUP,
        wait=True,
        boto3_session=session,
    )["QueryExecutionId"]
    assert wr.athena.get_query_results(execution_id, boto3_session=session)["n"].tolist() == [3]
    assert DATABASE in wr.catalog.databases(boto3_session=session)["Database"].tolist()
    assert "endpoint_sales" in wr.catalog.tables(database=DATABASE, boto3_session=session)["Table"].tolist()


# ---------------------------------------------------------------------- the newest boto3 (REST-JSON) and PyAthena
SDK_SCRIPT = """
import json, sys, time
import boto3, botocore
athena = boto3.client("athena")
out = {"botocore": botocore.__version__, "protocol": athena.meta.service_model.protocol}
qid = athena.start_query_execution(
    QueryString="SELECT region, count(*) AS n FROM endpoint_sales GROUP BY region ORDER BY region",
    QueryExecutionContext={"Database": "data_lake_db"}, WorkGroup="lakebox-primary")["QueryExecutionId"]
def state():
    return athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]["Status"]["State"]
while state() in ("QUEUED", "RUNNING"):
    time.sleep(0.1)
out["state"] = state()
rows = athena.get_query_results(QueryExecutionId=qid, MaxResults=2)
out["rows"] = [[d.get("VarCharValue") for d in r["Data"]] for r in rows["ResultSet"]["Rows"]]
out["next"] = bool(rows.get("NextToken"))
out["batch"] = len(athena.batch_get_query_execution(QueryExecutionIds=[qid])["QueryExecutions"])
out["listed"] = qid in athena.list_query_executions(WorkGroup="lakebox-primary")["QueryExecutionIds"]
group = athena.get_work_group(WorkGroup="lakebox-primary")["WorkGroup"]
out["workgroup"] = group["Configuration"]["EnforceWorkGroupConfiguration"]
tables = athena.list_table_metadata(CatalogName="AwsDataCatalog", DatabaseName="data_lake_db")["TableMetadataList"]
out["tables"] = [t["Name"] for t in tables]
try:
    athena.list_engine_versions()
    out["unsupported"] = "answered"
except botocore.exceptions.ClientError as exc:
    out["unsupported"] = exc.response["Error"]["Code"]
print(json.dumps(out))
"""


def test_the_newest_boto3_speaks_athenas_rest_protocol_to_the_endpoint(endpoint: str) -> None:
    python = client("sdk", "python")
    out = json.loads(run_client(endpoint, python, "-c", SDK_SCRIPT))
    assert out["protocol"] == "rest-json", out["botocore"]
    assert out["state"] == "SUCCEEDED"
    assert out["rows"] == [["region", "n"], ["east", "2"]] and out["next"] is True
    assert out["batch"] == 1 and out["listed"] is True and out["workgroup"] is True
    assert "endpoint_sales" in out["tables"]
    assert out["unsupported"] == "UnsupportedOperation"


PYATHENA_SCRIPT = """
import json
from pyathena import connect
from pyathena.pandas.cursor import PandasCursor
kwargs = dict(region_name="us-east-1", work_group="lakebox-primary", schema_name="data_lake_db")
cursor = connect(**kwargs).cursor()
cursor.execute("SELECT id, region, amount FROM endpoint_sales WHERE id >= %(low)s ORDER BY id", {"low": 2})
rows = [[str(v) for v in row] for row in cursor.fetchall()]
description = [(d[0], d[1]) for d in cursor.description]
pandas_cursor = connect(cursor_class=PandasCursor, **kwargs).cursor()
frame = pandas_cursor.execute("SELECT id, region FROM endpoint_sales ORDER BY id").as_pandas()
failed = None
try:
    connect(**kwargs).cursor().execute("SELECT * FROM no_such_table")
except Exception as exc:
    failed = str(exc)
print(json.dumps({"rows": rows, "description": description, "frame": frame.to_dict("list"), "failed": failed}))
"""


def test_pyathena_cursor_and_pandas_cursor_read_the_engines_results(endpoint: str) -> None:
    python = client("sdk", "python")
    out = json.loads(run_client(endpoint, python, "-c", PYATHENA_SCRIPT))
    assert out["rows"] == [["2", "west", "7.25"], ["3", "east", "3.00"]]
    assert out["description"] == [["id", "integer"], ["region", "varchar"], ["amount", "decimal"]]
    assert out["frame"] == {"id": [1, 2, 3], "region": ["east", "west", "east"]}
    assert out["failed"] and "TABLE_NOT_FOUND" in out["failed"]


# ---------------------------------------------------------------------- the AWS CLI
def test_the_aws_cli_starts_polls_and_reads_a_query(endpoint: str) -> None:
    aws = client("awscli", "aws")
    started = json.loads(
        run_client(
            endpoint,
            aws,
            "athena",
            "start-query-execution",
            "--work-group",
            WORKGROUP,
            "--query-execution-context",
            f"Database={DATABASE}",
            "--query-string",
            "SELECT count(*) AS n FROM endpoint_sales",
        )
    )
    execution_id = started["QueryExecutionId"]
    deadline = time.monotonic() + 120
    while True:
        described = json.loads(
            run_client(endpoint, aws, "athena", "get-query-execution", "--query-execution-id", execution_id)
        )
        state = described["QueryExecution"]["Status"]["State"]
        if state not in {"QUEUED", "RUNNING"} or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert state == "SUCCEEDED"
    results = json.loads(run_client(endpoint, aws, "athena", "get-query-results", "--query-execution-id", execution_id))
    assert results["ResultSet"]["Rows"][1]["Data"][0]["VarCharValue"] == "3"
    groups = json.loads(run_client(endpoint, aws, "athena", "list-work-groups"))
    assert WORKGROUP in [g["Name"] for g in groups["WorkGroups"]]
    batch = json.loads(
        run_client(endpoint, aws, "athena", "batch-get-query-execution", "--query-execution-ids", execution_id)
    )
    assert batch["QueryExecutions"][0]["Status"]["State"] == "SUCCEEDED"


# ---------------------------------------------------------------------- dbt-athena
DBT_MODELS = {
    "models/sales_by_region.sql": "{{ config(materialized='table') }}\n"
    "select region, sum(amount) as total, count(*) as n from {{ source('lake', 'endpoint_sales') }} group by region",
    "models/east_sales.sql": "{{ config(materialized='view') }}\n"
    "select id, amount from {{ source('lake', 'endpoint_sales') }} where region = 'east'",
    "models/sales_log.sql": "{{ config(materialized='incremental', incremental_strategy='append') }}\n"
    "select id, region, amount from {{ source('lake', 'endpoint_sales') }}\n"
    "{% if is_incremental() %} where id > (select max(id) from {{ this }}) {% endif %}",
    "models/schema.yml": """
version: 2
sources:
  - name: lake
    schema: data_lake_db
    tables:
      - name: endpoint_sales
models:
  - name: sales_by_region
    columns:
      - name: region
        data_tests: [not_null, unique]
  - name: east_sales
    columns:
      - name: id
        data_tests: [not_null, unique]
  - name: sales_log
    columns:
      - name: id
        data_tests: [not_null]
""",
}


def test_dbt_athena_debug_run_and_test_a_table_a_view_and_an_incremental_model(endpoint: str, tmp_path: Path) -> None:
    dbt = client("dbt", "dbt")
    project = tmp_path / "dbt"
    for name, text in DBT_MODELS.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    (project / "dbt_project.yml").write_text(
        "name: lake_models\nversion: '1.0'\nprofile: lake\nmodel-paths: [models]\n"
    )
    (project / "profiles.yml").write_text(
        textwrap.dedent(
            """
            lake:
              target: local
              outputs:
                local:
                  type: athena
                  region_name: us-east-1
                  database: awsdatacatalog
                  schema: data_lake_db
                  work_group: lakebox-primary
                  s3_staging_dir: s3://lakebox-athenaresultsbucket/dbt/
                  threads: 1
            """
        )
    )
    flags = ("--project-dir", project, "--profiles-dir", project)
    assert "All checks passed" in run_client(endpoint, dbt, "debug", *flags, cwd=project)
    first = run_client(endpoint, dbt, "run", *flags, cwd=project)
    assert "Completed successfully" in first, first
    second = run_client(endpoint, dbt, "run", *flags, cwd=project)
    assert "Completed successfully" in second, second
    tested = run_client(endpoint, dbt, "test", *flags, cwd=project)
    assert re.search(r"PASS=5\b", tested), tested
    client_ = athena(endpoint)
    counts = run_sql(
        client_,
        "SELECT (SELECT count(*) FROM sales_log), (SELECT count(*) FROM east_sales), "
        "(SELECT total FROM sales_by_region WHERE region = 'east')",
    )
    row = client_.get_query_results(QueryExecutionId=counts["QueryExecutionId"])["ResultSet"]["Rows"][1]
    assert [d["VarCharValue"] for d in row["Data"]] == ["3", "2", "13.50"]


# ---------------------------------------------------------------------- the README's "Use your own tools"
def readme_commands() -> list[str]:
    """The shell commands of the README's "Use your own tools" section, in order."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Use your own tools", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_the_readme_use_your_own_tools_commands_run_against_lakebox_up(endpoint: str, tmp_path: Path) -> None:
    aws = client("awscli", "aws")
    commands = readme_commands()
    assert commands, "the README has a 'Use your own tools' section with commands"
    script = "\n".join(["set -euo pipefail", f'export PATH="{aws.parent}:$PATH"'])
    for command in commands:
        if command.startswith("export AWS_ENDPOINT_URL="):
            command = f"export AWS_ENDPOINT_URL={endpoint}"
        script += "\n" + command
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    result = subprocess.run(
        ["bash", "-c", script], env=environment, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    for shown in (
        "SUCCEEDED",
        "lakebox-PipelineStateMachine",
        "lakebox-TagTableFunction",
        "ErrorRateAlarm",
        "tag-table",
    ):
        assert shown in result.stdout, result.stdout


# ---------------------------------------------------------------------- Step Functions
def stepfunctions(endpoint: str) -> Any:
    return boto3.client(
        "stepfunctions",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )


def wait_execution(states: Any, execution: str, timeout: float = 600) -> dict[str, Any]:
    """Poll DescribeExecution until the execution leaves RUNNING, as the Step Functions SDK's users do."""
    deadline = time.monotonic() + timeout
    while (described := states.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, described
        time.sleep(0.2)
    result: dict[str, Any] = described
    return result


def test_the_templates_state_machine_runs_from_the_sdk_with_history_and_a_run_record(
    running_up: Up, endpoint: str
) -> None:
    states = stepfunctions(endpoint)
    # GIVEN the template's state machine, there from `up` on
    machines = {m["name"]: m["stateMachineArn"] for m in states.list_state_machines()["stateMachines"]}
    arn = machines["lakebox-PipelineStateMachine"]
    definition = json.loads(states.describe_state_machine(stateMachineArn=arn)["definition"])
    assert "${" not in json.dumps(definition), "DefinitionSubstitutions are applied"
    # WHEN an execution starts through the SDK
    execution = states.start_execution(stateMachineArn=arn, name="from-the-sdk", input="{}")["executionArn"]
    assert states.describe_execution(executionArn=execution)["status"] in {"RUNNING", "SUCCEEDED"}
    deadline = time.monotonic() + 600
    while (described := states.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    # THEN it ran on lakebox's executor, with its history, and `lakebox runs` records it
    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"])["status"] == "SUCCEEDED"
    pages = states.get_paginator("get_execution_history").paginate(executionArn=execution)
    events = [event for page in pages for event in page["events"]]
    assert events[0]["type"] == "ExecutionStarted" and events[-1]["type"] == "ExecutionSucceeded"
    assert any(e["type"] == "TaskStateEntered" for e in events)
    listed = states.list_executions(stateMachineArn=arn)["executions"]
    assert [e["name"] for e in listed] == ["from-the-sdk"]
    with pytest.raises(ClientError, match="ExecutionAlreadyExists"):
        states.start_execution(stateMachineArn=arn, name="from-the-sdk")
    with pytest.raises(ClientError, match="ExecutionDoesNotExist"):
        states.describe_execution(executionArn=execution + "-not")
    # WHEN `lakebox execute` runs the same state machine on the running `up`
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    environment["LAKEBOX_HOME"] = str(running_up.home)
    executed = subprocess.run(
        [sys.executable, "-m", "lakebox.cli", "execute", "PipelineStateMachine", "--name", "from-the-cli"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert executed.returncode == 0, f"{executed.stdout}\n{executed.stderr}"
    # THEN ListExecutions lists its recorded run too, newest first
    listed = states.list_executions(stateMachineArn=arn)["executions"]
    assert [(e["name"], e["status"]) for e in listed] == [("from-the-cli", "SUCCEEDED"), ("from-the-sdk", "SUCCEEDED")]
    # AND an operation not served is an error naming it, never an empty success
    with pytest.raises(ClientError) as raised:
        states.create_activity(name="worker")
    assert raised.value.response["Error"]["Code"] == "UnsupportedOperation"
    assert "CreateActivity" in raised.value.response["Error"]["Message"]


ROLE = "arn:aws:iam::123456789012:role/worker"


def callback_machine(queue_url: str) -> dict[str, Any]:
    """A user's state machine: a Lambda task on a template function, then a task that hands its token to a worker
    through SQS (an aws-sdk task on the endpoint) and waits for SendTaskSuccess or SendTaskFailure."""
    event = json.loads((ROOT / "events" / "tag_table" / "tables_created.json").read_text())
    return {
        "StartAt": "Tag Tables",
        "States": {
            "Tag Tables": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "lakebox-TagTableFunction", "Payload": event},
                "ResultSelector": {"database.$": "$.Payload.database"},
                "ResultPath": "$.tagged",
                "Next": "Ask Worker",
            },
            "Ask Worker": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": queue_url, "MessageBody.$": "$$.Task.Token"},
                "ResultPath": "$.worker",
                "Catch": [{"ErrorEquals": ["Worker.Refused"], "ResultPath": "$.refusal", "Next": "Refused"}],
                "End": True,
            },
            "Refused": {"Type": "Pass", "End": True},
        },
    }


def test_a_users_callback_state_machine_is_answered_with_send_task_success_failure_and_stopped(endpoint: str) -> None:
    states = stepfunctions(endpoint)
    sqs = boto3.client(
        "sqs", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    queue_url = sqs.create_queue(QueueName="workers")["QueueUrl"]

    def next_token(execution: str) -> str:
        """The worker's side: the task token the execution's task sent to the queue."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", [])
            if messages:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=messages[0]["ReceiptHandle"])
                return str(messages[0]["Body"])
            described = states.describe_execution(executionArn=execution)
            assert described["status"] == "RUNNING", (described.get("error"), described.get("cause"))
        raise AssertionError("no task token reached the worker queue")

    # GIVEN a state machine of the user's, created through the SDK (an invalid one is refused by its code)
    with pytest.raises(ClientError) as raised:
        states.create_state_machine(name="broken", definition='{"StartAt": "Nowhere", "States": {}}', roleArn=ROLE)
    assert raised.value.response["Error"]["Code"] == "InvalidDefinition"
    arn = states.create_state_machine(
        name="callback-worker", definition=json.dumps(callback_machine(queue_url)), roleArn=ROLE
    )["stateMachineArn"]
    listed = [m["name"] for m in states.list_state_machines()["stateMachines"]]
    assert {"callback-worker", "lakebox-PipelineStateMachine"} <= set(listed)
    # WHEN the worker completes one execution's task with SendTaskSuccess
    answered = states.start_execution(stateMachineArn=arn, name="answered", input='{"order": 7}')["executionArn"]
    states.send_task_success(taskToken=next_token(answered), output='{"shipped": true}')
    described = wait_execution(states, answered, 60)
    # THEN the execution succeeds with the worker's output
    assert described["status"] == "SUCCEEDED", described
    output = json.loads(described["output"])
    assert output["order"] == 7 and output["worker"] == {"shipped": True}
    assert output["tagged"] == {"database": DATABASE}, "the Lambda task ran the template's function"
    history = [e["type"] for e in states.get_execution_history(executionArn=answered, maxResults=1000)["events"]]
    assert history.count("TaskSucceeded") == 2 and history[-1] == "ExecutionSucceeded"
    # WHEN another's worker answers SendTaskFailure
    refused = states.start_execution(stateMachineArn=arn, name="refused")["executionArn"]
    states.send_task_failure(taskToken=next_token(refused), error="Worker.Refused", cause="out of stock")
    described = wait_execution(states, refused, 60)
    # THEN the failure is caught by the Catch
    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"])["refusal"] == {"Error": "Worker.Refused", "Cause": "out of stock"}
    # WHEN a third is stopped while its task waits for the worker
    stopped = states.start_execution(stateMachineArn=arn, name="stopped")["executionArn"]
    token = next_token(stopped)
    states.stop_execution(executionArn=stopped, error="Operator", cause="cancelled")
    # THEN the executor ends it ABORTED (its history ends ExecutionAborted) and the late answer is refused
    deadline = time.monotonic() + 30
    while (events := states.get_execution_history(executionArn=stopped, reverseOrder=True)["events"])[0][
        "type"
    ] == "ExecutionStarted":
        assert time.monotonic() < deadline, events
        time.sleep(0.2)
    assert events[0]["type"] == "ExecutionAborted"
    assert states.describe_execution(executionArn=stopped)["status"] == "ABORTED"
    with pytest.raises(ClientError) as raised:
        states.send_task_success(taskToken=token, output="{}")
    assert raised.value.response["Error"]["Code"] == "TaskTimedOut"
    statuses = {e["name"]: e["status"] for e in states.list_executions(stateMachineArn=arn)["executions"]}
    assert statuses == {"answered": "SUCCEEDED", "refused": "SUCCEEDED", "stopped": "ABORTED"}
    # AND the machine is updated and deleted through the SDK
    states.update_state_machine(stateMachineArn=arn, roleArn="arn:aws:iam::123456789012:role/other")
    assert states.describe_state_machine(stateMachineArn=arn)["roleArn"].endswith("role/other")
    states.delete_state_machine(stateMachineArn=arn)
    with pytest.raises(ClientError, match="StateMachineDoesNotExist"):
        states.describe_state_machine(stateMachineArn=arn)


# ---------------------------------------------------------------------- Lambda
def test_the_templates_functions_are_listed_and_invoked_through_the_lambda_api(endpoint: str) -> None:
    lambda_ = boto3.client(
        "lambda", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    names = [f["FunctionName"] for f in lambda_.list_functions()["Functions"]]
    assert {"lakebox-IngestFileFunction", "lakebox-TagTableFunction"} <= set(names)
    configuration = lambda_.get_function(FunctionName="lakebox-TagTableFunction")["Configuration"]
    assert configuration["Runtime"] == "python3.11" and configuration["Handler"] == "app.lambda_handler"
    assert configuration["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    # WHEN the function is invoked with the sample event, its handler runs in the box and answers
    event = (ROOT / "events" / "tag_table" / "tables_created.json").read_bytes()
    answer = lambda_.invoke(FunctionName="lakebox-TagTableFunction", Payload=event, LogType="Tail")
    assert answer["StatusCode"] == 200 and "FunctionError" not in answer
    assert json.loads(answer["Payload"].read())["database"] == DATABASE
    assert "lakebox-TagTableFunction" in base64.b64decode(answer["LogResult"]).decode()
    # AND a handler's failure is the invocation's error, as Lambda reports it
    failed = lambda_.invoke(FunctionName="lakebox-TagTableFunction", Payload=b"{}")
    assert failed["FunctionError"] == "Unhandled"
    assert json.loads(failed["Payload"].read())["errorType"] == "ValidationError"
    assert (
        lambda_.invoke(FunctionName="lakebox-TagTableFunction", Payload=event, InvocationType="Event")["StatusCode"]
        == 202
    )
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        lambda_.get_function(FunctionName="no-such-function")
    with pytest.raises(ClientError, match="UnsupportedOperation"):
        lambda_.list_layers()


# ---------------------------------------------------------------------- CloudWatch Logs
def test_a_functions_structured_logs_are_read_through_cloudwatch_logs(endpoint: str) -> None:
    kwargs = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "x",
        "aws_secret_access_key": "x",
    }
    lambda_, logs = boto3.client("lambda", **kwargs), boto3.client("logs", **kwargs)
    # GIVEN the template's log groups, and a function that logged through its group
    groups = [g["logGroupName"] for g in logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/")["logGroups"]]
    assert "/aws/lambda/lakebox/tag-table" in groups
    group = lambda_.get_function(FunctionName="lakebox-TagTableFunction")["Configuration"]["LoggingConfig"]["LogGroup"]
    event = (ROOT / "events" / "tag_table" / "tables_created.json").read_bytes()
    assert "FunctionError" not in lambda_.invoke(FunctionName="lakebox-TagTableFunction", Payload=event)
    # WHEN its events are filtered and read
    found = logs.filter_log_events(logGroupName=group, filterPattern='{ $.message = "zone tags" }')["events"]
    stream = logs.describe_log_streams(logGroupName=group)["logStreams"][0]["logStreamName"]
    read = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)["events"]
    # THEN they are the handler's Powertools lines, with their timestamps
    assert found and all(json.loads(e["message"])["function_name"] == "lakebox-TagTableFunction" for e in found)
    assert {e["message"] for e in found} <= {e["message"] for e in read}
    assert all(e["timestamp"] > 1_700_000_000_000 for e in read)
    with pytest.raises(ClientError, match="UnsupportedOperation"):
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[{"timestamp": 1, "message": "m"}])


# ---------------------------------------------------------------------- EventBridge and Lake Formation
def test_the_templates_rules_and_grants_and_a_tables_zone_tag_are_on_the_endpoint(endpoint: str) -> None:
    kwargs = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "x",
        "aws_secret_access_key": "x",
    }
    events, lakeformation = boto3.client("events", **kwargs), boto3.client("lakeformation", **kwargs)
    # THEN the template's rules are listed with their patterns and targets
    rules = {r["Name"]: r for r in events.list_rules()["Rules"]}
    assert json.loads(rules["IngestFileFunction.LandingObjectCreated"]["EventPattern"])["source"] == ["aws.s3"]
    targets = events.list_targets_by_rule(Rule="IngestFileFunction.LandingObjectCreated")["Targets"]
    assert targets[0]["Arn"].endswith(":function:lakebox-IngestFileFunction")
    # AND PutEvents accepts an application's event and refuses an AWS source, as EventBridge does
    put = events.put_events(
        Entries=[
            {"Source": "lake.app", "DetailType": "Note", "Detail": "{}"},
            {"Source": "aws.glue", "DetailType": "Glue Data Catalog Database State Change", "Detail": "{}"},
        ]
    )
    assert put["FailedEntryCount"] == 1 and "EventId" in put["Entries"][0]
    assert put["Entries"][1]["ErrorCode"] == "NotAuthorizedForSourceException"
    # AND the template's Lake Formation grants are listed, and a table carries the zone tag of its location
    grants = lakeformation.list_permissions()["PrincipalResourcePermissions"]
    assert len(grants) >= 20
    assert all(g["Principal"]["DataLakePrincipalIdentifier"].startswith("arn:aws:iam::") for g in grants)
    table = lakeformation.get_resource_lf_tags(Resource={"Table": {"DatabaseName": DATABASE, "Name": "endpoint_sales"}})
    assert table["LFTagsOnTable"] == [], "a table in the query-results bucket is outside the zones"
    s3 = boto3.client("s3", **kwargs)
    raw = next(b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"] == "lakebox-rawbucket")
    boto3.client("glue", **kwargs).create_table(
        DatabaseName=DATABASE,
        TableInput={"Name": "zone_probe", "StorageDescriptor": {"Location": f"s3://{raw}/probe/", "Columns": []}},
    )
    tags = lakeformation.get_resource_lf_tags(Resource={"Table": {"DatabaseName": DATABASE, "Name": "zone_probe"}})
    assert [(t["TagKey"], t["TagValues"]) for t in tags["LFTagsOnTable"]] == [("zone", ["raw"])]
    with pytest.raises(ClientError, match="UnsupportedOperation"):
        events.create_event_bus(Name="other")


# ---------------------------------------------------------------------- CloudWatch (Smithy RPC v2 CBOR)
def test_the_templates_alarms_and_the_recorded_metrics_are_read_through_cloudwatch(endpoint: str) -> None:
    kwargs = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "x",
        "aws_secret_access_key": "x",
    }
    lambda_, cloudwatch = boto3.client("lambda", **kwargs), boto3.client("cloudwatch", **kwargs)
    # GIVEN a function invocation that failed (Lambda's Errors and Invocations metrics)
    assert lambda_.invoke(FunctionName="lakebox-TagTableFunction", Payload=b"{}")["FunctionError"] == "Unhandled"
    # WHEN the alarms and metrics are read with the SDK
    alarms = {a["AlarmName"]: a for a in cloudwatch.describe_alarms()["MetricAlarms"]}
    metrics = cloudwatch.list_metrics(Namespace="AWS/Lambda", MetricName="Errors")["Metrics"]
    now = dt.datetime.now(dt.UTC)
    data = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "errors",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/Lambda",
                        "MetricName": "Errors",
                        "Dimensions": [{"Name": "FunctionName", "Value": "lakebox-TagTableFunction"}],
                    },
                    "Period": 3600,
                    "Stat": "Sum",
                },
            }
        ],
        StartTime=now - dt.timedelta(hours=1),
        EndTime=now + dt.timedelta(minutes=1),
    )["MetricDataResults"][0]
    # THEN the template's alarms are there with their evaluated state, and the failure is counted
    assert len(alarms) >= 20
    assert alarms["lakebox-TagTableFunctionErrorRateAlarm"]["StateValue"] == "ALARM"
    assert {"Name": "FunctionName", "Value": "lakebox-TagTableFunction"} in [
        d for m in metrics for d in m["Dimensions"]
    ]
    assert sum(data["Values"]) >= 1
    with pytest.raises(ClientError, match="UnsupportedOperation"):
        cloudwatch.put_metric_data(Namespace="Lake", MetricData=[{"MetricName": "m", "Value": 1.0}])

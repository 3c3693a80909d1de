"""The endpoint's client checks against the deployed stack and against `lakebox up`, the differences printed.

One command measures the gap between the local lake and the cloud (skipped unless AWS_SAM_STACK_NAME names a
deployed stack; the deployed stack's credentials come from the usual AWS environment):

    AWS_SAM_STACK_NAME=data-lake-dev .venv/bin/pytest -s tests/e2e/test_endpoint_parity.py
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.integration.test_workbench import Up, _free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not os.environ.get("AWS_SAM_STACK_NAME"), reason="AWS_SAM_STACK_NAME is not set"),
]


@dataclass(frozen=True)
class Target:
    """Where the checks run: a session, the stack's name prefix and the Glue database."""

    label: str
    session: boto3.Session
    endpoint: str | None
    stack: str
    database: str

    def client(self, service: str) -> Any:
        return (
            self.session.client(service, endpoint_url=self.endpoint) if self.endpoint else self.session.client(service)
        )


def _query(target: Target, sql: str) -> dict[str, Any]:
    athena = target.client("athena")
    execution_id = athena.start_query_execution(
        QueryString=sql, QueryExecutionContext={"Database": target.database}, WorkGroup=f"{target.stack}-primary"
    )["QueryExecutionId"]
    deadline = time.monotonic() + 300
    while True:
        described: dict[str, Any] = athena.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]
        if described["Status"]["State"] not in {"QUEUED", "RUNNING"} or time.monotonic() > deadline:
            return described


def check_select(target: Target) -> Any:
    described = _query(target, "SELECT 1 AS one, 'a' AS s, CAST(2.50 AS decimal(4,2)) AS d")
    results = target.client("athena").get_query_results(QueryExecutionId=described["QueryExecutionId"])
    return {
        "state": described["Status"]["State"],
        "types": [c["Type"] for c in results["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]],
        "rows": [[d.get("VarCharValue") for d in r["Data"]] for r in results["ResultSet"]["Rows"]],
        "result file": described["ResultConfiguration"]["OutputLocation"].rsplit("/", 1)[-1].split(".", 1)[-1],
    }


def check_unknown_table(target: Target) -> Any:
    status = _query(target, "SELECT * FROM no_such_table_for_parity")["Status"]
    return {
        "state": status["State"],
        "code": status.get("StateChangeReason", "").split(":", 1)[0],
        "category": status.get("AthenaError", {}).get("ErrorCategory"),
    }


def check_workgroup(target: Target) -> Any:
    group = target.client("athena").get_work_group(WorkGroup=f"{target.stack}-primary")["WorkGroup"]
    config = group["Configuration"]
    return {
        "enforced": config.get("EnforceWorkGroupConfiguration"),
        "output": config.get("ResultConfiguration", {}).get("OutputLocation", "").rsplit("/", 2)[-2],
        "cutoff": config.get("BytesScannedCutoffPerQuery"),
    }


def check_batch_get_unknown(target: Target) -> Any:
    batch = target.client("athena").batch_get_query_execution(
        QueryExecutionIds=["00000000-0000-0000-0000-000000000000"]
    )
    return [u.get("ErrorCode") for u in batch["UnprocessedQueryExecutionIds"]]


def check_table_metadata(target: Target) -> Any:
    tables = target.client("athena").list_table_metadata(CatalogName="AwsDataCatalog", DatabaseName=target.database)
    listed = tables["TableMetadataList"]
    return {"answered": True, "typed columns": all("Type" in c for t in listed for c in t.get("Columns", []))}


def check_state_machines(target: Target) -> Any:
    machines = target.client("stepfunctions").list_state_machines()["stateMachines"]
    return sorted(m["name"].removeprefix(f"{target.stack}-") for m in machines if m["name"].startswith(target.stack))


def check_functions(target: Target) -> Any:
    functions = target.client("lambda").list_functions()["Functions"]
    return sorted(f["Runtime"] for f in functions if f["FunctionName"].startswith(target.stack))[:1]


def check_alarms(target: Target) -> Any:
    alarms = target.client("cloudwatch").describe_alarms(AlarmNamePrefix=target.stack)["MetricAlarms"]
    return {"count": len(alarms), "states known": all(a["StateValue"] for a in alarms)}


def check_log_groups(target: Target) -> Any:
    groups = target.client("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{target.stack}/")
    return sorted(g["logGroupName"].rsplit("/", 1)[-1] for g in groups["logGroups"])


def check_lake_formation_grants(target: Target) -> Any:
    return (
        len(target.client("lakeformation").list_permissions(ResourceType="DATABASE")["PrincipalResourcePermissions"])
        > 0
    )


def check_engine_versions(target: Target) -> Any:
    versions = target.client("athena").list_engine_versions()["EngineVersions"]
    return sorted(v.get("EffectiveEngineVersion", "") for v in versions)[:1]


CHECKS: tuple[Callable[[Target], Any], ...] = (
    check_select,
    check_unknown_table,
    check_workgroup,
    check_batch_get_unknown,
    check_table_metadata,
    check_state_machines,
    check_functions,
    check_alarms,
    check_log_groups,
    check_lake_formation_grants,
    check_engine_versions,
)


def observe(target: Target, check: Callable[[Target], Any]) -> Any:
    try:
        return check(target)
    except ClientError as exc:
        return f"error {exc.response.get('Error', {}).get('Code')}"


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    up = Up(tmp_path_factory.mktemp("parity") / "lake", _free_port())
    try:
        session = boto3.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
        yield Target("lakebox", session, up.endpoint, "lakebox", "data_lake_db")
    finally:
        up.stop()


@pytest.fixture(scope="module")
def cloud() -> Target:
    stack_name = os.environ["AWS_SAM_STACK_NAME"]
    session = boto3.Session()
    stack = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return Target("aws", session, None, stack_name, outputs.get("GlueDatabaseName", "data_lake_db"))


def test_the_endpoint_checks_on_aws_and_on_lakebox_up_with_their_differences(
    cloud: Target, local: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [(check.__name__.removeprefix("check_"), observe(cloud, check), observe(local, check)) for check in CHECKS]
    differences = [row for row in rows if row[1] != row[2]]
    with capsys.disabled():
        print(f"\n{len(rows) - len(differences)} of {len(rows)} checks agree between AWS and lakebox up")
        for name, on_aws, on_lakebox in differences:
            print(f"- {name}\n    aws:     {on_aws}\n    lakebox: {on_lakebox}")
    # The differences are what the report above measures; the one thing both must do alike is run a query.
    _, on_aws, on_lakebox = rows[0]
    assert isinstance(on_aws, dict) and isinstance(on_lakebox, dict), (on_aws, on_lakebox)
    assert on_aws["state"] == on_lakebox["state"] == "SUCCEEDED"

"""`lakebox query --as PERSONA`: the template's Lake Formation grants enforced on local Athena queries."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakebox.cfn.stack import Stack
from lakebox.services import governance
from lakebox.services.athena import QueryFailedError
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

PARQUET = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
}


def _table(box: Any, name: str, bucket_id: str, prefix: str, rows: list[dict[str, Any]]) -> None:
    """A Parquet table of one file in a zone bucket, registered as the pipeline's jobs register theirs."""
    bucket = box.bucket(bucket_id)
    data = pa.Table.from_pylist(rows)
    buffer = io.BytesIO()
    pq.write_table(data, buffer)
    box.session.client("s3").put_object(Bucket=bucket, Key=f"{prefix}part-0.parquet", Body=buffer.getvalue())
    columns = [{"Name": f.name, "Type": "bigint" if pa.types.is_integer(f.type) else "string"} for f in data.schema]
    box.session.client("glue").create_table(
        DatabaseName="data_lake_db",
        TableInput={
            "Name": name,
            "TableType": "EXTERNAL_TABLE",
            "StorageDescriptor": {"Columns": columns, "Location": f"s3://{bucket}/{prefix}", **PARQUET},
        },
    )


@pytest.fixture(scope="module")
def box(local_stack: Any) -> Any:
    """The stack with one table in each zone, a view over processed data and a table outside the zones."""
    _table(
        local_stack,
        "daily_sales_by_region",
        "CuratedBucket",
        "daily_sales_by_region/runs/r1/",
        [{"region": "EU", "units": 3}],
    )
    _table(local_stack, "sales", "ProcessedBucket", "sales/", [{"transaction_id": "t1", "units": 3}])
    _table(local_stack, "raw_sales", "RawBucket", "sales/", [{"transaction_id": "t1", "units": 3}])
    _table(local_stack, "scratch", "ArtifactsBucket", "scratch/", [{"x": 1}])
    local_stack.athena.query(
        "CREATE OR REPLACE VIEW sales_units AS SELECT transaction_id, units FROM sales",
        workgroup=str(local_stack.stack.ref("PrimaryWorkGroup")),
    )
    return local_stack


def _query(box: Any, persona: str, sql: str) -> list[tuple[Any, ...]]:
    access = governance.access_for(box.stack, persona)
    engine = box.athena_as(access, "data_lake_db")
    try:
        return engine.query(sql, workgroup=access.workgroups[0]).rows
    finally:
        engine.close()


@pytest.mark.parametrize(
    ("persona", "table", "allowed"),
    [
        ("analyst", "daily_sales_by_region", True),
        ("analyst", "sales", False),
        ("analyst", "raw_sales", False),
        ("ml", "daily_sales_by_region", True),
        ("ml", "sales", True),
        ("ml", "raw_sales", False),
        ("bi", "daily_sales_by_region", True),
        ("bi", "sales", False),
        ("ml", "scratch", False),
    ],
)
def test_persona_reads_exactly_the_zones_its_grants_name(box: Any, persona: str, table: str, allowed: bool) -> None:
    # GIVEN a table in a zone  WHEN the persona selects from it
    if allowed:
        # THEN it reads the rows where its role has SELECT on the table's zone
        assert _query(box, persona, f"SELECT count(*) FROM {table}") == [(1,)]
    else:
        # THEN elsewhere the query fails as Athena's does, naming the table
        with pytest.raises(QueryFailedError) as failed:
            _query(box, persona, f"SELECT count(*) FROM {table}")
        assert "AccessDeniedException" in str(failed.value)
        assert f"Insufficient Lake Formation permission(s) on {table} " in str(failed.value)


def test_a_join_fails_on_the_one_table_the_persona_may_not_read(box: Any) -> None:
    sql = "SELECT d.region FROM daily_sales_by_region d CROSS JOIN sales s"
    with pytest.raises(QueryFailedError, match=r"permission\(s\) on sales "):
        _query(box, "analyst", sql)
    assert _query(box, "ml", sql) == [("EU",)]


def test_a_view_needs_the_grants_of_the_tables_it_reads(box: Any) -> None:
    assert _query(box, "ml", "SELECT units FROM sales_units") == [(3,)]
    with pytest.raises(QueryFailedError, match=r"permission\(s\) on sales_units "):
        _query(box, "analyst", "SELECT units FROM sales_units")


def test_a_reading_persona_may_not_create_or_write_tables(box: Any) -> None:
    access = governance.access_for(box.stack, "analyst")
    with pytest.raises(governance.AccessDeniedError, match="Required Create Table on data_lake_db"):
        governance.check_statement("CREATE TABLE t AS SELECT 1 AS x", access, "data_lake_db")
    with pytest.raises(governance.AccessDeniedError, match=r"permission\(s\) on daily_sales_by_region "):
        governance.check_statement("INSERT INTO daily_sales_by_region VALUES ('x', 1)", access, "data_lake_db")
    governance.check_statement("SELECT 1", access, "data_lake_db")


def test_persona_is_refused_a_workgroup_its_role_may_not_use(box: Any) -> None:
    analyst = governance.access_for(box.stack, "analyst")
    ml = governance.access_for(box.stack, "ml")
    assert analyst.workgroups == (str(box.stack.ref("AnalyticsWorkGroup")),)
    assert ml.workgroups == (str(box.stack.ref("MlDataWorkGroup")),)
    with pytest.raises(governance.AccessDeniedError, match="not authorized to perform: athena:StartQueryExecution"):
        governance.check_workgroup(analyst, ml.workgroups[0])


def test_without_lake_formation_the_grants_are_not_enforced(box: Any) -> None:
    stack = Stack(ROOT, parameters={"EnableLakeFormation": "false"})
    access = governance.access_for(stack, "analyst")
    assert not access.enforced
    assert governance.authorizer(stack, access)("data_lake_db", "sales", {"StorageDescriptor": {}}) is None


@pytest.fixture
def cli_on_box(box: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`lakebox` commands run on the module's stack instead of starting one of their own."""

    @contextlib.contextmanager
    def reuse(*_: Any, **__: Any) -> Iterator[Any]:
        yield box

    monkeypatch.setattr("lakebox.cli._box", reuse)
    yield


def test_lakebox_query_as_persona_prints_rows_or_fails_with_the_denial(
    cli_on_box: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from lakebox.cli import main

    assert main(["query", "--as", "analyst", "--json", "SELECT region FROM daily_sales_by_region"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == [{"region": "EU"}]
    assert main(["query", "--as", "analyst", "SELECT * FROM sales"]) == 1
    assert "Insufficient Lake Formation permission(s) on sales" in capsys.readouterr().err
    assert main(["query", "--as", "nobody", "SELECT 1"]) == 1
    assert "no persona 'nobody'" in capsys.readouterr().err


def test_tag_table_function_tags_a_created_table_with_its_zone(box: Any) -> None:
    # GIVEN the stack's zone tag and a curated table just created
    from tests.conftest import load_event

    event = load_event("tag_table/tables_created")
    # WHEN Glue's CreateTable event reaches TagTableFunction
    result = box.lambdas.invoke("TagTableFunction", event)
    # THEN the table carries zone=curated in Lake Formation
    assert result["tables"] == [{"table": "daily_sales_by_region", "zone": "curated", "outcome": "tagged"}]
    tags = box.session.client("lakeformation").get_resource_lf_tags(
        Resource={"Table": {"DatabaseName": "data_lake_db", "Name": "daily_sales_by_region"}}
    )
    assert [(t["TagKey"], t["TagValues"]) for t in tags["LFTagsOnTable"]] == [("zone", ["curated"])]

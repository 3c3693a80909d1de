"""The engine keeps what it read between queries, and never answers from it once the table changed: new partitions,
new or overwritten files, a table dropped or written again by CTAS, a schema or a workgroup changed."""

from __future__ import annotations

import collections
import contextlib
import io
import logging
from collections.abc import Iterator
from typing import Any
from unittest import mock

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from lakebox.services.athena import AthenaEngine, QueryFailedError
from lakebox.services.endpoint import LocalEndpoint
from tests.unit.athena_conformance import Case, differences, load_cases
from tests.unit.test_athena_conformance import run

pytestmark = pytest.mark.integration

DATABASE = "cached"
BUCKET = "lake"
CASES = load_cases()
PARQUET = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[LocalEndpoint]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = LocalEndpoint().start()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", server.url)
        session = _session()
        session.client("s3").create_bucket(Bucket=BUCKET)
        session.client("glue").create_database(DatabaseInput={"Name": DATABASE})
        yield server
    server.stop()


@pytest.fixture
def session(endpoint: LocalEndpoint, monkeypatch: pytest.MonkeyPatch) -> boto3.Session:
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint.url)
    return _session()


@pytest.fixture
def engine(endpoint: LocalEndpoint, session: boto3.Session) -> Iterator[AthenaEngine]:
    athena = AthenaEngine(
        session, default_output=f"s3://{BUCKET}/results/", default_database=DATABASE, changes=endpoint.changes
    )
    yield athena
    athena.close()


def _session() -> boto3.Session:
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")


def _parquet(values: list[int]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"n": pa.array(values, pa.int64())}), buffer)
    return buffer.getvalue()


def _table(session: boto3.Session, name: str, *, partitioned: bool = False, columns: tuple[str, ...] = ("n",)) -> None:
    session.client("glue").create_table(
        DatabaseName=DATABASE,
        TableInput={
            "Name": name,
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": "parquet"},
            "PartitionKeys": [{"Name": "d", "Type": "string"}] if partitioned else [],
            "StorageDescriptor": {
                "Columns": [{"Name": c, "Type": "bigint"} for c in columns],
                "Location": f"s3://{BUCKET}/{name}/",
                **PARQUET,
            },
        },
    )


def _add_partition(session: boto3.Session, table: str, day: str, values: list[int]) -> None:
    session.client("s3").put_object(Bucket=BUCKET, Key=f"{table}/d={day}/part-0.parquet", Body=_parquet(values))
    session.client("glue").create_partition(
        DatabaseName=DATABASE,
        TableName=table,
        PartitionInput={
            "Values": [day],
            "StorageDescriptor": {
                "Columns": [{"Name": "n", "Type": "bigint"}],
                "Location": f"s3://{BUCKET}/{table}/d={day}/",
                **PARQUET,
            },
        },
    )


def _sum(engine: AthenaEngine, sql: str) -> Any:
    return engine.query(sql).rows


@contextlib.contextmanager
def _api_calls() -> Iterator[list[str]]:
    """The AWS operations every boto3 client of the process calls inside the block, in order."""
    calls: list[str] = []
    real = BaseClient._make_api_call

    def counted(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        calls.append(operation)
        return real(client, operation, params)

    with mock.patch.object(BaseClient, "_make_api_call", counted):
        yield calls


def test_a_repeated_query_reads_neither_the_catalog_nor_the_listing(
    session: boto3.Session, engine: AthenaEngine
) -> None:
    # GIVEN a table queried once
    _table(session, "repeated")
    session.client("s3").put_object(Bucket=BUCKET, Key="repeated/a.parquet", Body=_parquet([1, 2, 3]))
    sql = "SELECT sum(n) AS total FROM repeated"
    assert _sum(engine, sql) == [(6,)]
    # WHEN the same query runs again with nothing changed
    with _api_calls() as calls:
        assert _sum(engine, sql) == [(6,)]
    # THEN it only writes its results: no workgroup, table or partition read, no listing
    assert sorted(calls) == ["PutObject", "PutObject"]


def test_new_files_are_read_by_the_next_query(session: boto3.Session, engine: AthenaEngine) -> None:
    # GIVEN an unpartitioned table of one file, queried
    _table(session, "grows")
    s3 = session.client("s3")
    s3.put_object(Bucket=BUCKET, Key="grows/a.parquet", Body=_parquet([1, 2]))
    sql = "SELECT count(*) AS rows, sum(n) AS total FROM grows"
    assert _sum(engine, sql) == [(2, 3)]
    assert _sum(engine, sql) == [(2, 3)]  # run again from its kept translation
    # WHEN another client adds a file, THEN the same query counts it
    s3.put_object(Bucket=BUCKET, Key="grows/b.parquet", Body=_parquet([10]))
    assert _sum(engine, sql) == [(3, 13)]
    # WHEN a file is overwritten in place, THEN its new rows are read
    s3.put_object(Bucket=BUCKET, Key="grows/a.parquet", Body=_parquet([100, 200, 300]))
    assert _sum(engine, sql) == [(4, 610)]
    # WHEN a file is deleted, THEN it is no longer read
    s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "grows/b.parquet"}]})
    assert _sum(engine, sql) == [(3, 600)]


def test_a_new_partition_is_read_by_the_next_query(session: boto3.Session, engine: AthenaEngine) -> None:
    # GIVEN a partitioned table of one day, queried in full and pruned
    _table(session, "daily", partitioned=True)
    _add_partition(session, "daily", "2026-12-01", [1, 2])
    full, pruned = "SELECT sum(n) FROM daily", "SELECT sum(n) FROM daily WHERE d >= '2026-12-02'"
    assert (_sum(engine, full), _sum(engine, pruned)) == ([(3,)], [(None,)])
    # WHEN a day is added (its file, then its partition in the catalog)
    _add_partition(session, "daily", "2026-12-02", [40])
    # THEN both queries read it
    assert (_sum(engine, full), _sum(engine, pruned)) == ([(43,)], [(40,)])


def test_a_changed_schema_is_read_by_the_next_query(session: boto3.Session, engine: AthenaEngine) -> None:
    # GIVEN a table of one column, queried with *
    _table(session, "widened")
    session.client("s3").put_object(Bucket=BUCKET, Key="widened/a.parquet", Body=_parquet([7]))
    assert engine.query("SELECT * FROM widened").columns == ("n",)
    # WHEN the catalog gains a column (the files hold none of it)
    glue = session.client("glue")
    table = glue.get_table(DatabaseName=DATABASE, Name="widened")["Table"]
    storage = {
        **table["StorageDescriptor"],
        "Columns": [{"Name": "n", "Type": "bigint"}, {"Name": "m", "Type": "bigint"}],
    }
    glue.update_table(
        DatabaseName=DATABASE,
        TableInput={"Name": "widened", "StorageDescriptor": storage, "Parameters": table.get("Parameters", {})},
    )
    # THEN the next query has it, empty
    result = engine.query("SELECT * FROM widened")
    assert (result.columns, result.rows) == (("n", "m"), [(7, None)])


def test_a_sampled_query_runs_again_on_its_kept_view_until_the_table_changes(
    session: boto3.Session, engine: AthenaEngine
) -> None:
    # GIVEN a table read through TABLESAMPLE (its source stays a view), run twice: the second time on the kept view
    _table(session, "sampled")
    s3 = session.client("s3")
    s3.put_object(Bucket=BUCKET, Key="sampled/a.parquet", Body=_parquet([1, 2, 3]))
    sql = "SELECT count(*), sum(n) FROM sampled TABLESAMPLE BERNOULLI (100)"
    assert _sum(engine, sql) == [(3, 6)]
    assert _sum(engine, sql) == [(3, 6)]
    # WHEN a file is added, THEN the kept view is dropped with its translation and the new file is read
    s3.put_object(Bucket=BUCKET, Key="sampled/b.parquet", Body=_parquet([4]))
    assert _sum(engine, sql) == [(4, 10)]
    assert _sum(engine, sql) == [(4, 10)]


def test_a_dropped_table_and_one_written_again_are_seen(session: boto3.Session, engine: AthenaEngine) -> None:
    # GIVEN a table written by CTAS, queried
    engine.query(
        f"CREATE TABLE {DATABASE}.written WITH (external_location = 's3://{BUCKET}/written/') AS SELECT 1 AS n"
    )
    sql = "SELECT sum(n) FROM written"
    assert _sum(engine, sql) == [(1,)]
    # WHEN another client drops it from the catalog, THEN the query fails as Athena's does
    session.client("glue").delete_table(DatabaseName=DATABASE, Name="written")
    with pytest.raises(QueryFailedError, match="TABLE_NOT_FOUND"):
        engine.query(sql)
    # WHEN its files are removed and a CTAS writes it again with other rows, THEN the query reads those
    s3 = session.client("s3")
    for item in s3.list_objects_v2(Bucket=BUCKET, Prefix="written/")["Contents"]:
        s3.delete_object(Bucket=BUCKET, Key=item["Key"])
    engine.query(
        f"CREATE TABLE {DATABASE}.written WITH (external_location = 's3://{BUCKET}/written/') "
        "AS SELECT * FROM (VALUES 5, 6) AS t(n)"
    )
    assert _sum(engine, sql) == [(11,)]


def test_a_view_redefined_is_read_by_the_next_query(session: boto3.Session, engine: AthenaEngine) -> None:
    # GIVEN a view over a table, queried
    _table(session, "viewed")
    session.client("s3").put_object(Bucket=BUCKET, Key="viewed/a.parquet", Body=_parquet([1, 2, 3]))
    engine.query(f"CREATE OR REPLACE VIEW {DATABASE}.small AS SELECT n FROM viewed WHERE n < 2")
    assert _sum(engine, "SELECT count(*) FROM small") == [(1,)]
    # WHEN the view is replaced, THEN the same query reads the new definition
    engine.query(f"CREATE OR REPLACE VIEW {DATABASE}.small AS SELECT n FROM viewed WHERE n < 3")
    assert _sum(engine, "SELECT count(*) FROM small") == [(2,)]


def test_a_changed_workgroup_applies_to_the_next_query(session: boto3.Session, engine: AthenaEngine) -> None:
    # GIVEN a workgroup that enforces its results location, where a query ran
    athena = session.client("athena")

    def workgroup(folder: str) -> None:
        athena.create_work_group(
            Name="enforced",
            Configuration={
                "EnforceWorkGroupConfiguration": True,
                "ResultConfiguration": {"OutputLocation": f"s3://{BUCKET}/{folder}/"},
            },
        )

    workgroup("first")
    assert str(engine.query("SELECT 1", workgroup="enforced").output_location).startswith(f"s3://{BUCKET}/first/")
    # WHEN the workgroup is made again with another location
    athena.delete_work_group(WorkGroup="enforced", RecursiveDeleteOption=True)
    workgroup("second")
    # THEN the next query writes its results there
    assert str(engine.query("SELECT 1", workgroup="enforced").output_location).startswith(f"s3://{BUCKET}/second/")
    # WHEN it is deleted, THEN the next query fails as Athena's request does
    athena.delete_work_group(WorkGroup="enforced", RecursiveDeleteOption=True)
    with pytest.raises(ClientError, match="WorkGroup enforced is not found"):
        engine.query("SELECT 1", workgroup="enforced")


def test_without_a_record_of_changes_every_query_reads_afresh(session: boto3.Session) -> None:
    # GIVEN an engine that runs apart from the endpoint (no record of its changes)
    athena = AthenaEngine(session, default_output=f"s3://{BUCKET}/results/", default_database=DATABASE)
    try:
        _table(session, "apart")
        s3 = session.client("s3")
        s3.put_object(Bucket=BUCKET, Key="apart/a.parquet", Body=_parquet([1]))
        assert _sum(athena, "SELECT sum(n) FROM apart") == [(1,)]
        # WHEN a file is added, THEN the next query reads it
        s3.put_object(Bucket=BUCKET, Key="apart/b.parquet", Body=_parquet([2]))
        assert _sum(athena, "SELECT sum(n) FROM apart") == [(3,)]
    finally:
        athena.close()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_kept_translation_answers_as_the_first_run(engine: AthenaEngine, case: Case) -> None:
    # GIVEN a conformance query run once (translated, and its translation kept)
    first = run(engine, case.sql)
    # WHEN it runs again from what the engine kept
    again = run(engine, case.sql)
    # THEN its values, types and error are the same, and still the ones Trino documents
    assert again == first
    assert differences(case, *again) == [], case.ref


def _catalog_reads(engine: AthenaEngine, sql: str) -> tuple[list[tuple[Any, ...]], list[str]]:
    with _api_calls() as calls:
        rows = engine.query(sql).rows
    return rows, [c for c in calls if c.startswith("Get")]


def test_a_write_to_one_table_keeps_the_others_and_is_seen_in_its_own(
    session: boto3.Session, engine: AthenaEngine
) -> None:
    # GIVEN two partitioned tables read in one query, and a third table
    for name in ("left_side", "right_side"):
        _table(session, name, partitioned=True)
        _add_partition(session, name, "2026-12-01", [1, 2])
    joined = "SELECT count(*) FROM left_side AS l JOIN right_side AS r ON l.n = r.n"
    assert _sum(engine, joined) == [(2,)]
    # WHEN the engine writes another table (CTAS) and drops it
    engine.query(
        f"CREATE TABLE {DATABASE}.elsewhere WITH (external_location = 's3://{BUCKET}/elsewhere/') AS SELECT 1 AS n"
    )
    engine.query(f"DROP TABLE {DATABASE}.elsewhere")
    # THEN a query of the two tables reads neither their entries nor their partitions again
    rows, reads = _catalog_reads(engine, "SELECT sum(n) FROM left_side")
    assert (rows, reads) == ([(3,)], [])
    # WHEN the engine inserts into one of them (a new partition), THEN the next query reads its new rows and partition
    engine.query(f"INSERT INTO {DATABASE}.right_side SELECT 5 AS n, '2026-12-02' AS d")
    rows, reads = _catalog_reads(engine, "SELECT sum(n), count(DISTINCT d) FROM right_side")
    assert rows == [(8, 2)]
    assert "GetPartitions" in reads
    # WHEN another client adds a partition to the other, THEN the next query reads it
    _add_partition(session, "left_side", "2026-12-03", [40])
    assert _sum(engine, "SELECT sum(n) FROM left_side WHERE d > '2026-12-01'") == [(40,)]
    # WHEN another client changes the table's parameters, THEN an ALTER TABLE of the engine keeps them
    glue = session.client("glue")
    raw = glue.get_table(DatabaseName=DATABASE, Name="left_side")["Table"]
    glue.update_table(
        DatabaseName=DATABASE,
        TableInput={
            "Name": "left_side",
            "StorageDescriptor": raw["StorageDescriptor"],
            "PartitionKeys": raw["PartitionKeys"],
            "Parameters": {**raw.get("Parameters", {}), "owner": "sales"},
        },
    )
    engine.query(f"ALTER TABLE {DATABASE}.left_side SET TBLPROPERTIES ('reviewed' = 'yes')")
    parameters = glue.get_table(DatabaseName=DATABASE, Name="left_side")["Table"]["Parameters"]
    assert (parameters.get("owner"), parameters.get("reviewed")) == ("sales", "yes")


def test_a_table_of_another_database_dropped_with_its_database_is_not_found(
    session: boto3.Session, engine: AthenaEngine
) -> None:
    # GIVEN a table of a second database, queried
    glue = session.client("glue")
    glue.create_database(DatabaseInput={"Name": "passing"})
    engine.query("CREATE TABLE passing.brief WITH (external_location = 's3://lake/passing/brief/') AS SELECT 2 AS n")
    assert _sum(engine, "SELECT n FROM passing.brief") == [(2,)]
    # WHEN another client deletes its tables and the database, THEN the engine answers as Athena does
    glue.batch_delete_table(DatabaseName="passing", TablesToDelete=["brief"])
    glue.delete_database(Name="passing")
    with pytest.raises(QueryFailedError, match="SCHEMA_NOT_FOUND"):
        engine.query("SELECT n FROM passing.brief")


def test_a_table_found_missing_and_then_made_by_another_client_exists(
    session: boto3.Session, engine: AthenaEngine
) -> None:
    # GIVEN a table the engine found missing (a DROP ... IF EXISTS of nothing)
    engine.query(f"DROP TABLE IF EXISTS {DATABASE}.arriving")
    # WHEN another client creates it
    _table(session, "arriving")
    # THEN a CTAS of that name is refused as Athena refuses it, and a DROP without IF EXISTS removes it
    with pytest.raises(QueryFailedError, match="TABLE_ALREADY_EXISTS"):
        engine.query(f"CREATE TABLE {DATABASE}.arriving AS SELECT 1 AS n")
    engine.query(f"DROP TABLE {DATABASE}.arriving")
    with pytest.raises(ClientError):
        session.client("glue").get_table(DatabaseName=DATABASE, Name="arriving")


@contextlib.contextmanager
def _object_reads(endpoint: LocalEndpoint, prefix: str) -> Iterator[collections.Counter[str]]:
    """How many requests (GET or HEAD, DuckDB's included) each object under s3://lake/<prefix> gets inside the block."""
    reads: collections.Counter[str] = collections.Counter()
    real = endpoint._answer

    def counted(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if environ.get("REQUEST_METHOD") in ("GET", "HEAD") and path.startswith(f"/{BUCKET}/{prefix}"):
            reads[path] += 1
        return real(environ, start_response)

    with mock.patch.object(endpoint, "_answer", counted):
        yield reads


def test_a_ctas_and_an_insert_read_each_file_of_their_query_once(
    endpoint: LocalEndpoint, session: boto3.Session, engine: AthenaEngine
) -> None:
    # GIVEN a partitioned table of three files, read once (the engine keeps their footers)
    _table(session, "footed", partitioned=True)
    for day, values in (("2026-01-01", [1, 2]), ("2026-01-02", [3]), ("2026-01-03", [4, 5, 6])):
        _add_partition(session, "footed", day, values)
    assert _sum(engine, "SELECT sum(n) FROM footed") == [(21,)]
    # (DuckDB asks S3 about each file it holds before every read, one request per read, as it does by default)
    engine._connection().execute("SET validate_external_file_cache = 'VALIDATE_ALL'")
    # WHEN a CTAS and an INSERT INTO run a query over it
    with _object_reads(endpoint, "footed/") as by_ctas:
        engine.query(
            "CREATE TABLE footed_copy WITH (external_location = 's3://lake/footed_copy/', partitioned_by = ARRAY['d']) "
            "AS SELECT n * 10 AS n, d FROM footed"
        )
    with _object_reads(endpoint, "footed/") as by_insert:
        engine.query("INSERT INTO footed_copy SELECT n, d FROM footed WHERE d > '2026-01-01'")
    # THEN each file was fetched once by each: the query runs once, with no DESCRIBE of it before
    files = [f"/{BUCKET}/footed/d=2026-01-0{n}/part-0.parquet" for n in (1, 2, 3)]
    assert dict(by_ctas) == dict.fromkeys(files, 1)
    assert dict(by_insert) == dict.fromkeys(files[1:], 1)
    # AND the rows are the query's
    rows = engine.query("SELECT d, sum(n) FROM footed_copy GROUP BY d ORDER BY d").rows
    assert rows == [("2026-01-01", 30), ("2026-01-02", 33), ("2026-01-03", 165)]


def test_a_ctas_of_a_query_naming_a_column_twice_is_refused_and_an_insert_takes_columns_by_position(
    engine: AthenaEngine,
) -> None:
    # GIVEN a table of two columns
    engine.query("CREATE TABLE twice WITH (external_location = 's3://lake/twice/') AS SELECT 1 AS a, 2 AS b")
    # WHEN a CTAS's query names a column twice (in two cases), THEN Athena's error names it
    with pytest.raises(QueryFailedError, match="Column name 'a' specified more than once"):
        engine.query(
            "CREATE TABLE twice_more WITH (external_location = 's3://lake/twice_more/') AS SELECT 1 AS a, 2 AS A"
        )
    # WHEN an INSERT's query names its two columns alike, THEN each goes to the table's column at its position
    engine.query("INSERT INTO twice SELECT 3 AS x, 4 AS x")
    assert engine.query("SELECT a, b FROM twice ORDER BY a").rows == [(1, 2), (3, 4)]


def test_a_write_to_one_table_keeps_the_translations_of_queries_of_the_others(
    session: boto3.Session, engine: AthenaEngine
) -> None:
    # GIVEN queries of two tables, one of them through a view, each run once (their translations kept)
    for name in ("kept_side", "written_side"):
        _table(session, name, partitioned=True)
        _add_partition(session, name, "2026-12-01", [1, 2])
        engine.query(f"CREATE OR REPLACE VIEW {DATABASE}.{name}_view AS SELECT n, d FROM {name}")
    queries = {
        "kept": "SELECT sum(n) FROM kept_side",
        "kept_view": "SELECT count(*) FROM kept_side_view",
        "written": "SELECT sum(n) FROM written_side",
        "written_view": "SELECT count(DISTINCT d) FROM written_side_view",
    }
    for sql in queries.values():
        engine.query(sql)
    # WHEN the engine inserts into one table (a new partition in the catalog), and queries run again
    engine.query(f"INSERT INTO {DATABASE}.written_side SELECT 5 AS n, '2026-12-02' AS d")
    translated: list[str] = []
    real = engine._prepare

    def counted(query: Any, ctx: Any) -> Any:
        translated.append(query.sql())
        return real(query, ctx)

    with mock.patch.object(engine, "_prepare", counted):
        rows = {name: _sum(engine, sql) for name, sql in queries.items()}
    # THEN the queries of the other table run from their kept translations, those of the written one are translated
    # again and read its new partition
    assert rows == {"kept": [(3,)], "kept_view": [(2,)], "written": [(8,)], "written_view": [(2,)]}
    assert len(translated) == 2
    assert all("written_side" in sql for sql in translated)


def test_files_read_before_are_not_asked_about_again_until_they_change(
    endpoint: LocalEndpoint, session: boto3.Session, engine: AthenaEngine
) -> None:
    # GIVEN a table of three files, read once (DuckDB keeps the files)
    _table(session, "asked")
    s3 = session.client("s3")
    for n in range(3):
        s3.put_object(Bucket=BUCKET, Key=f"asked/{n}.parquet", Body=_parquet([n, 10]))
    assert _sum(engine, "SELECT sum(n) FROM asked") == [(33,)]
    # WHEN other queries read the same files, with nothing changed
    with _object_reads(endpoint, "asked/") as reads:
        assert _sum(engine, "SELECT max(n) FROM asked") == [(10,)]
        engine.query(
            f"CREATE TABLE {DATABASE}.asked_copy WITH (external_location = 's3://{BUCKET}/asked_copy/') "
            "AS SELECT * FROM asked"
        )
    # THEN no request reaches them (DuckDB's cache answers, with no HEAD to check each file is unchanged)
    assert dict(reads) == {}
    # WHEN another client overwrites one file in place and deletes another
    s3.put_object(Bucket=BUCKET, Key="asked/1.parquet", Body=_parquet([100]))
    s3.delete_object(Bucket=BUCKET, Key="asked/2.parquet")
    # THEN the next queries read the new file's rows, and no longer the deleted one's
    assert _sum(engine, "SELECT sum(n), count(*) FROM asked") == [(110, 3)]
    assert _sum(engine, "SELECT max(n) FROM asked") == [(100,)]
    engine.query(f"INSERT INTO {DATABASE}.asked_copy SELECT * FROM asked")
    assert _sum(engine, "SELECT sum(n), count(*) FROM asked_copy") == [(33 + 110, 6 + 3)]


def _wide_parquet(values: list[int], columns: int = 300) -> bytes:
    """A file whose footer is longer than the engine's first read of a file's end (many columns and row groups)."""
    buffer = io.BytesIO()
    table = pa.table({"n": pa.array(values, pa.int64()), **{f"c{i:03d}": pa.array(values) for i in range(columns)}})
    pq.write_table(table, buffer, row_group_size=2)
    return buffer.getvalue()


def test_footers_are_read_in_the_endpoints_process_and_count_the_same_bytes(
    endpoint: LocalEndpoint, session: boto3.Session
) -> None:
    # GIVEN a table of a plain file, a file whose footer is past 64 KiB, and one with no rows, and two engines: one
    # reading footers in the endpoint's process, one through S3 (as when it runs apart from the endpoint)
    _table(session, "footers")
    s3 = session.client("s3")
    s3.put_object(Bucket=BUCKET, Key="footers/plain.parquet", Body=_parquet([1, 2, 3]))
    s3.put_object(Bucket=BUCKET, Key="footers/wide.parquet", Body=_wide_parquet(list(range(20))))
    s3.put_object(Bucket=BUCKET, Key="footers/empty.parquet", Body=_parquet([]))
    asked: list[str] = []

    def read_tail(bucket: str, key: str, length: int) -> Any:
        asked.append(key)
        return endpoint.object_tail(bucket, key, length)

    engines = {
        "local": AthenaEngine(
            session, default_output=f"s3://{BUCKET}/results/", changes=endpoint.changes, read_tail=read_tail
        ),
        "s3": AthenaEngine(session, default_output=f"s3://{BUCKET}/results/", changes=endpoint.changes),
    }
    sql = f"SELECT count(*) AS rows, sum(n) AS total FROM {DATABASE}.footers"
    results, reads = {}, {}
    try:
        # WHEN each runs the same query
        for name, athena in engines.items():
            with _object_reads(endpoint, "footers/") as counted:
                results[name] = athena.query(sql)
            reads[name] = dict(counted)
        # THEN both answer the same rows and count the same bytes scanned, from the same footers
        local, remote = results["local"], results["s3"]
        assert local.rows == remote.rows == [(23, 196)]
        assert local.bytes_scanned == remote.bytes_scanned > 0
        assert engines["local"]._footers == engines["s3"]._footers
        # AND the local engine read each footer from the endpoint's store (the wide one twice: 64 KiB, then whole), so
        # no file got more requests than through S3, and the wide one fewer (DuckDB reads a small file whole for its
        # footer, and then answers the query's reads of it from its cache: there the query makes the same requests)
        wide = "footers/wide.parquet"
        assert sorted(asked) == ["footers/empty.parquet", "footers/plain.parquet", wide, wide]
        assert sorted(reads["local"]) == sorted(reads["s3"])
        assert all(reads["local"][path] <= reads["s3"][path] for path in reads["s3"])
        assert reads["local"][f"/{BUCKET}/{wide}"] < reads["s3"][f"/{BUCKET}/{wide}"]
    finally:
        for athena in engines.values():
            athena.close()


def test_a_footer_whose_object_changed_since_its_listing_is_read_through_s3(
    endpoint: LocalEndpoint, session: boto3.Session
) -> None:
    # GIVEN a table of one file, and an engine whose store answers for another object than the one listed (the file
    # overwritten between the listing and the footer's read: another ETag, other columns and sizes)
    _table(session, "raced")
    session.client("s3").put_object(Bucket=BUCKET, Key="raced/a.parquet", Body=_parquet([1, 2, 3]))
    other = _wide_parquet(list(range(4)), columns=3)

    def read_tail(bucket: str, key: str, length: int) -> Any:
        from lakebox.services.s3tail import ObjectTail

        return ObjectTail(len(other), '"another-etag"', other[-length:])

    raced = AthenaEngine(
        session, default_output=f"s3://{BUCKET}/results/", changes=endpoint.changes, read_tail=read_tail
    )
    plain = AthenaEngine(session, default_output=f"s3://{BUCKET}/results/", changes=endpoint.changes)
    try:
        # WHEN both run the same query
        sql = f"SELECT sum(n) AS total FROM {DATABASE}.raced"
        got, expected = raced.query(sql), plain.query(sql)
        # THEN the footer of the object listed is counted, read through S3, not the one the store answered with
        assert got.rows == expected.rows == [(6,)]
        assert got.bytes_scanned == expected.bytes_scanned > 0
        assert raced._footers == plain._footers
    finally:
        raced.close()
        plain.close()

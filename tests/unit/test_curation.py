"""The curation planner: SQL files, rendering, the rebuild steps and their order, and the plan_curation handler."""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
import sqlglot
from moto import mock_aws
from pydantic import ValidationError
from sqlglot import exp

from datalake.contracts import REGISTRY, registered
from datalake.contracts.base import Contract, Curated, Dataset, EventTime
from datalake.curation import (
    MAX_PARTITIONS_PER_QUERY,
    CurationRequest,
    RunChanges,
    Statement,
    curated_tables,
    named_queries,
    plan_run,
    plan_statements,
    plan_waves,
    render,
    run_changes,
    run_token,
    sql_text,
    versioned_days,
)
from datalake.exceptions import TerminalError
from datalake.ledger import LEDGER_KEY, Ledger, RunVerdicts, TableEntry, Verdict

ROOT = Path(__file__).resolve().parents[2]
DAYS = [dt.date(2026, 10, 25) + dt.timedelta(days=n) for n in range(3)]


def _plan(**overrides: Any) -> list[Any]:
    arguments: dict[str, Any] = {
        "database": "lake",
        "curated_bucket": "curated-bucket",
        "run_id": "Exec-42",
        "dates": DAYS,
        "changed": {"sales", "customers"},
    }
    return plan_statements(**(arguments | overrides))


def test_render_fills_every_placeholder_and_refuses_a_missing_one() -> None:
    # GIVEN templates with `{{ name }}` placeholders, spaced or not; THEN values fill them and a missing one raises
    assert render("SELECT * FROM {{ database }}.t WHERE d IN ({{dates}})", {"database": "db", "dates": "1"}) == (
        "SELECT * FROM db.t WHERE d IN (1)"
    )
    with pytest.raises(KeyError, match="dates"):
        render("SELECT {{ dates }}", {"database": "db"})


def test_top_level_sql_folder_is_the_layer_sql_folder() -> None:
    # GIVEN the repository's `sql` entry THEN it is the folder the Lambda layer ships
    assert (ROOT / "sql").resolve() == (ROOT / "layers" / "common" / "datalake" / "sql").resolve()
    assert sql_text("curated/daily_sales_by_region.sql") == (ROOT / "sql/curated/daily_sales_by_region.sql").read_text()


def test_plan_runs_views_then_each_table_through_build_publish_cleanup() -> None:
    # WHEN a run with three dates is planned
    statements = _plan()
    names = [s.name for s in statements]
    # THEN the views come first and each table's steps keep their order
    assert names[:4] == [
        "customers_history/view",
        "products_history/view",
        "customers_current/view",
        "products_current/view",
    ]
    for table in ("daily_sales_by_region", "product_performance"):
        steps = [s.step for s in statements if s.table == table]
        assert steps == ["table", "clean", "build", "unpublish", "publish", "cleanup"]
    whole = [s.step for s in statements if s.table == "customer_aggregates"]
    assert whole == ["table", "clean", "build", "publish", "cleanup"]
    # AND no placeholder is left unrendered
    assert not any("{{" in s.query or "}}" in s.query for s in statements)


def test_waves_group_each_tables_statements_after_every_table_its_sql_reads() -> None:
    # WHEN a run with three dates is planned and grouped into waves
    statements = _plan()
    waves = plan_waves(statements, "lake")
    # THEN every statement is in exactly one group, the group of its table, in the plan's order
    groups = [group for wave in waves for group in wave]
    assert sorted(s.name for g in groups for s in g.queries) == sorted(s.name for s in statements)
    for group in groups:
        assert group.queries == [s for s in statements if s.table == group.table]
    # AND a group comes in a wave after every group whose table its SQL reads (the views, the curated tables)
    wave_of = {group.table: number for number, wave in enumerate(waves) for group in wave}
    for group in groups:
        text = " ".join(s.query for s in group.queries)
        for other, number in wave_of.items():
            if other != group.table and re.search(rf"\blake\.{other}\b", text):
                assert number < wave_of[group.table], (group.table, other)
    # AND each group is in the earliest wave it may run in: the first, or just after one it reads
    assert wave_of["customers_current"] == wave_of["customers_history"] + 1
    assert wave_of["customer_aggregates"] == max(wave_of["customer_daily_sales"], wave_of["customers_current"]) + 1
    assert wave_of["daily_sales_by_region"] == wave_of["clickstream_hourly"] == wave_of["products_history"] == 0


def test_waves_refuse_a_table_reading_one_the_plan_builds_after_it_and_ignore_locations() -> None:
    # GIVEN statements where the first reads the table of the second
    def statement(table: str, query: str) -> Statement:
        return Statement(name=f"{table}/build", table=table, step="build", query=query)

    backwards = [statement("a", "CREATE TABLE lake.a AS SELECT * FROM lake.b"), statement("b", "SELECT 1")]
    # THEN grouping them says so rather than run them in an order they were never meant to run in
    with pytest.raises(ValueError, match="a reads b, which the plan builds after it"):
        plan_waves(backwards, "lake")
    # AND a bucket or path that merely starts like the database is no read; a stage named after a table is not it
    located = [
        statement("b", "CREATE TABLE lake.b AS SELECT 1"),
        statement("a", "CREATE TABLE lake.a__run WITH (external_location = 's3://lake.b/a/') AS SELECT 2"),
        statement("c", "INSERT INTO lake.c SELECT * FROM lake.b__run"),
    ]
    assert [[group.table for group in wave] for wave in plan_waves(located, "lake")] == [["b", "a", "c"]]
    assert plan_waves([], "lake") == []


def test_the_stage_of_a_run_lives_in_its_own_folder_and_publishes_every_date() -> None:
    # WHEN run "Exec-42" is planned THEN its stage is a table and a folder of its own, published date by date
    statements = {s.name: s.query for s in _plan()}
    build = statements["daily_sales_by_region/build"]
    assert "CREATE TABLE lake.daily_sales_by_region__exec_42" in build
    assert "external_location = 's3://curated-bucket/daily_sales_by_region/runs/exec_42/'" in build
    assert "partitioned_by = ARRAY['sale_date']" in build
    assert "DATE '2026-10-25', DATE '2026-10-26', DATE '2026-10-27'" in build
    publish = statements["daily_sales_by_region/publish"]
    for day in DAYS:
        assert (
            f"PARTITION (sale_date = '{day}') LOCATION "
            f"'s3://curated-bucket/daily_sales_by_region/runs/exec_42/sale_date={day}/'"
        ) in publish
    assert statements["customer_aggregates/publish"] == (
        "ALTER TABLE lake.customer_aggregates SET LOCATION 's3://curated-bucket/customer_aggregates/runs/exec_42/'"
    )
    assert statements["daily_sales_by_region/cleanup"] == "DROP TABLE IF EXISTS lake.daily_sales_by_region__exec_42"


def test_more_dates_than_one_query_may_write_are_split_into_ctas_then_insert() -> None:
    # GIVEN 150 dates, more than Athena's 100 partitions per query
    days = [dt.date(2026, 1, 1) + dt.timedelta(days=n) for n in range(150)]
    statements = [s for s in _plan(dates=days) if s.table == "daily_sales_by_region"]
    steps = [s.step for s in statements]
    # THEN one CTAS and one INSERT INTO build the stage, and two DROP/ADD pairs publish it
    assert steps == ["table", "clean", "build", "build", "unpublish", "publish", "unpublish", "publish", "cleanup"]
    assert statements[2].query.startswith("CREATE TABLE") and statements[3].query.startswith("INSERT INTO")
    for statement in statements:
        assert statement.query.count("DATE '") <= MAX_PARTITIONS_PER_QUERY
        assert statement.query.count("PARTITION (") <= MAX_PARTITIONS_PER_QUERY


def test_nothing_to_rebuild_gives_an_empty_plan_and_customers_alone_rebuild_aggregates() -> None:
    # GIVEN runs that changed no sales: THEN nothing, or only what reads customers, is rebuilt
    assert _plan(dates=[], changed={"products"}) == []
    statements = _plan(dates=[], changed={"customers"})
    assert {s.table for s in statements} == {
        "customers_current",
        "products_current",
        "customers_history",
        "products_history",
        "customer_aggregates",
    }


def test_every_rendered_statement_parses_as_athena_sql() -> None:
    # GIVEN every statement of a plan THEN each is one statement of Athena SQL (ALTER TABLE in Hive DDL form)
    for statement in _plan():
        if statement.query.startswith("ALTER TABLE"):
            assert re.fullmatch(
                r"ALTER TABLE lake\.\w+ (DROP IF EXISTS|ADD IF NOT EXISTS|SET LOCATION)[\s\S]+", statement.query
            )
            continue
        parsed = sqlglot.parse(statement.query, read="athena")
        assert len(parsed) == 1 and not isinstance(parsed[0], exp.Command), statement.name


def test_curated_select_columns_equal_the_declared_table_columns_in_order() -> None:
    # GIVEN each curated table's DDL and query THEN the query's outputs are the DDL's columns, partition last
    for table in curated_tables():
        ddl = sqlglot.parse_one(
            render(sql_text(f"curated/{table.name}.table.sql"), {"database": "d", "location": "s3://b/t/"}),
            read="athena",
        )
        schema = ddl.this
        assert isinstance(schema, exp.Schema)
        declared = [c.name for c in schema.expressions]
        partitioned = ddl.find(exp.PartitionedByProperty)
        keys = [c.name for c in partitioned.this.expressions] if partitioned else []
        select = sqlglot.parse_one(
            render(
                sql_text(f"curated/{table.name}.sql"),
                {"database": "d", "dates": "DATE '2026-01-01'", "steady_dates": "NULL", "versioned_dates": "NULL"},
            ),
            read="athena",
        )
        assert isinstance(select, exp.Select)
        assert [p.alias_or_name for p in select.expressions] == declared + keys, table.name
        assert keys == ([table.partition_column] if table.partition_column else [])


def test_named_queries_have_a_title_a_description_and_parse() -> None:
    # GIVEN the saved questions in sql/named THEN each has its header and is one Athena query
    queries = named_queries()
    assert {q.key for q in queries} >= {"top_products_last_7_days", "revenue_by_region_and_month", "customer_segments"}
    for query in queries:
        assert query.name and query.description and not query.query.startswith("--")
        assert isinstance(sqlglot.parse_one(query.query, read="athena"), exp.Query)


def test_run_tokens_are_safe_in_table_names_and_paths() -> None:
    # GIVEN execution names with any characters THEN stage names and folders use [a-z0-9_] only
    assert run_token("Pipeline-Run:2026-11-01T02:00") == "pipeline_run_2026_11_01t02_00"
    with pytest.raises(ValueError, match="no letters"):
        run_token("--")
    with pytest.raises(ValueError, match="invalid database"):
        _plan(database="lake; DROP")


def test_a_window_must_end_after_it_starts() -> None:
    # GIVEN a backfill window THEN it must be ordered, and it plans every date it covers
    with pytest.raises(ValidationError):
        CurationRequest.model_validate({"run_id": "r", "window": {"start": "2026-10-02", "end": "2026-10-01"}})
    request = CurationRequest.model_validate({"run_id": "r", "window": {"start": "2026-10-01", "end": "2026-10-03"}})
    plan = plan_run(request, database="lake", curated_bucket="curated", changes=RunChanges({}, frozenset()))
    assert plan.dates == [dt.date(2026, 10, 1), dt.date(2026, 10, 2), dt.date(2026, 10, 3)]
    assert {q.table for q in plan.queries} >= {"daily_sales_by_region", "customer_aggregates"}


def _summary(bucket: str, run_id: str, datasets: dict[str, Any]) -> None:
    body = json.dumps({"run_id": run_id, "datasets": datasets}).encode()
    boto3.client("s3").put_object(Bucket=bucket, Key=f"_runs/{run_id}/summary.json", Body=body)


def _ledger(bucket: str, ledger: Ledger) -> None:
    boto3.client("s3").put_object(Bucket=bucket, Key=LEDGER_KEY, Body=ledger.model_dump_json().encode())


def _verdict(run_id: str, dataset: str, passed: bool, at: dt.datetime) -> None:
    verdict = Verdict(run_id=run_id, passed=passed, checked_at=at, reasons=[] if passed else ["freshness: stale"])
    body = RunVerdicts(run_id=run_id, recorded_at=at, datasets={dataset: verdict}).model_dump_json().encode()
    boto3.client("s3").put_object(Bucket="processed", Key=f"_runs/{run_id}/quality.json", Body=body)


def test_run_changes_come_from_the_spark_run_summary() -> None:
    # GIVEN the Spark job's run summary THEN the sales dates and the changed datasets come from it
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="processed")
        _summary(
            "processed",
            "exec-1",
            {
                "sales": {"rows_out": 3, "partitions": ["2026-10-26", "2026-10-25"]},
                "customers": {"rows_out": 0, "partitions": []},
            },
        )
        changes = run_changes(boto3.client("s3"), "processed", "exec-1")
        assert changes == RunChanges({"sales": (dt.date(2026, 10, 25), dt.date(2026, 10, 26))}, frozenset({"sales"}))
        # AND dates the run emptied, and dates whose sales a reference change touched, are rebuilt too
        _summary(
            "processed",
            "exec-3",
            {
                "sales": {"partitions": ["2026-10-26"], "partitions_removed": ["2026-10-20"], "reference_dates": []},
                "products": {"partitions": [], "partitions_removed": []},
            },
        )
        _summary(
            "processed",
            "exec-4",
            {
                "sales": {"partitions": [], "reference_dates": ["2026-10-01", "2026-10-02"]},
                "products": {"partitions": ["2026-10-30"]},
            },
        )
        moved = run_changes(boto3.client("s3"), "processed", "exec-3")
        assert moved == RunChanges({"sales": (dt.date(2026, 10, 20), dt.date(2026, 10, 26))}, frozenset({"sales"}))
        late = run_changes(boto3.client("s3"), "processed", "exec-4")
        assert late == RunChanges({"sales": (dt.date(2026, 10, 1), dt.date(2026, 10, 2))}, frozenset({"products"}))
        with pytest.raises(TerminalError, match="no processing summary"):
            run_changes(boto3.client("s3"), "processed", "exec-2")


def _load_handler() -> ModuleType:
    path = ROOT / "functions" / "plan_curation" / "app.py"
    spec = importlib.util.spec_from_file_location("plan_curation_app", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("DL_PROCESSED_BUCKET", "processed")
    monkeypatch.setenv("DL_CURATED_BUCKET", "curated")
    monkeypatch.setenv("DL_GLUE_DATABASE", "lake")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "plan_curation")
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="processed")
        boto3.client("s3").create_bucket(Bucket="curated")
        _catalog(*REGISTRY, *ROLLUPS)  # a lake where every dataset was processed once (its catalog tables exist)
        yield _load_handler()


ROLLUPS = [rollup.name for dataset in REGISTRY.values() for rollup in dataset.rollups]


def _catalog(*datasets: str) -> None:
    """The processed tables the Spark job declares in the catalog the first time it processes each dataset (and its
    rollups' tables, named like datasets here)."""
    glue = boto3.client("glue")
    if "lake" not in {d["Name"] for d in glue.get_databases()["DatabaseList"]}:
        glue.create_database(DatabaseInput={"Name": "lake"})
    for name in datasets:
        glue.create_table(
            DatabaseName="lake",
            TableInput={"Name": name, "StorageDescriptor": {"Location": f"s3://processed/{name}/", "Columns": []}},
        )


def statements(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The planner's statements in the order its waves run them: wave by wave, table by table."""
    return [q for wave in answer["waves"] for group in wave for q in group["queries"]]


def test_handler_plans_the_dates_the_spark_run_wrote(handler: ModuleType, lambda_context: Any) -> None:
    # GIVEN the Spark run's summary, and the payload the pipeline sends
    _summary("processed", "exec-7", {"sales": {"partitions": ["2026-10-30"]}, "products": {"partitions": []}})
    event = {"run_id": "exec-7", "datasets": ["sales"], "execution_id": "arn:aws:states:us-east-1:1:execution:p:exec-7"}
    # WHEN the planner runs
    result = handler.lambda_handler(event, lambda_context)
    # THEN it returns the statements for that date as waves of table groups, the views first, JSON-ready
    assert result["dates"] == ["2026-10-30"] and result["changed"] == ["sales"]
    planned = statements(result)
    assert all(set(q) == {"name", "table", "step", "query"} for q in planned)
    assert {group["table"] for group in result["waves"][0]} >= {"customers_history", "products_history"}
    assert [group["table"] for group in result["waves"][-1]] == ["customer_aggregates"]
    assert "DATE '2026-10-30'" in next(q["query"] for q in planned if q["name"] == "daily_sales_by_region/build")
    # AND each statement once: the flat order the waves were drawn from is not repeated in the answer
    assert "queries" not in result
    assert len({q["name"] for q in planned}) == len(planned)
    json.dumps(result)


def test_handler_takes_an_explicit_window_without_reading_the_summary(handler: ModuleType, lambda_context: Any) -> None:
    # GIVEN a ledger that knows every table, a backfill request with a window and no summary in S3
    _ledger("curated", Ledger(tables={t.name: TableEntry() for t in curated_tables()}))
    event = {"run_id": "backfill-1", "window": {"start": "2026-10-01", "end": "2026-10-02"}}
    # THEN the window's dates are planned
    result = handler.lambda_handler(event, lambda_context)
    assert result["dates"] == ["2026-10-01", "2026-10-02"]
    assert {"daily_sales_by_region", "clickstream_hourly"} <= {q["table"] for q in statements(result)}
    # AND a window for named datasets rebuilds only their tables
    named = handler.lambda_handler({**event, "datasets": ["clickstream"]}, lambda_context)
    assert {q["table"] for q in statements(named) if q["step"] == "build"} == {
        "clickstream_hourly",
        "daily_active_users",
    }


# ------------------------------------------------------------------------------------- declared tables


def test_curated_tables_are_the_ones_the_datasets_declare() -> None:
    # GIVEN the registry THEN every curated table comes from a dataset's declaration, with that dataset a source
    tables = {t.name: t for t in curated_tables()}
    assert set(tables) == {c.name for d in REGISTRY.values() for c in d.curated}
    assert tables["customer_aggregates"].sources == {"sales", "customers"}
    assert tables["daily_sales_by_region"].partition_column == "sale_date"
    assert all(t.dataset in t.sources for t in tables.values())
    # AND each declared table has its query and its DDL
    for table in tables.values():
        assert sql_text(f"curated/{table.name}.sql") and sql_text(f"curated/{table.name}.table.sql")


def test_a_new_datasets_curated_table_and_versioned_views_are_planned_with_no_other_edit() -> None:
    # GIVEN a new versioned dataset that declares a whole table reading sales
    meters = Dataset(
        name="meters",
        contract=_Meter,
        key=("meter_id", "site"),
        event_time="read_at",
        version_field="read_at",
        keep_versions=True,
        curated=(Curated("meter_totals", reads=("sales",)),),
    )
    with registered(meters):
        tables = {t.name: t for t in curated_tables()}
        existing = [t for t in tables.values() if t.dataset != "meters"]
        statements = plan_statements(
            database="lake",
            curated_bucket="curated-bucket",
            run_id="r1",
            dates=[],
            changed={"meters", "customers"},
            tables=existing,
        )
    # THEN its table is declared, and its views are rendered from the generic templates
    assert tables["meter_totals"].sources == {"meters", "sales"}
    names = [s.name for s in statements]
    assert names.index("meters_history/view") < names.index("meters_current/view")
    history = next(s.query for s in statements if s.name == "meters_history/view")
    assert "PARTITION BY s.meter_id, s.site ORDER BY s.read_at" in history
    assert "v.reading AS reading" in history and "FROM lake.meters AS s" in history
    current = next(s.query for s in statements if s.name == "meters_current/view")
    assert "FROM lake.meters_history AS h" in current and "h.reading AS reading" in current
    assert sqlglot.parse_one(history.split(" AS\n", 1)[1], read="athena")


def test_a_table_declared_twice_or_reading_an_unknown_dataset_is_refused() -> None:
    def meters(*curated: Curated) -> Dataset:
        return Dataset(name="meters", contract=_Meter, key=("meter_id",), event_time="read_at", curated=curated)

    with registered(meters(Curated("customer_aggregates"))), pytest.raises(ValueError, match="declared by meters and"):
        curated_tables()
    with registered(meters(Curated("m", reads=("nope",)))), pytest.raises(ValueError, match="reads unknown datasets"):
        curated_tables()
    with pytest.raises(ValueError, match="not its own"):
        meters(Curated("m", reads=("meters",)))


class _Meter(Contract):
    meter_id: str
    site: str
    read_at: EventTime
    reading: float


def test_each_partitioned_table_rebuilds_the_dates_of_the_dataset_that_feeds_it() -> None:
    # GIVEN a run that wrote clickstream on one date and sales on another
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="processed")
        _summary(
            "processed",
            "exec-9",
            {
                "sales": {"rows_out": 2, "partitions": ["2026-10-26"]},
                "clickstream": {"rows_out": 5, "partitions": ["2026-10-27"]},
            },
        )
        changes = run_changes(boto3.client("s3"), "processed", "exec-9")
    plan = plan_run(CurationRequest(run_id="exec-9"), database="lake", curated_bucket="c-b", changes=changes)
    # THEN the plan covers both dates, but each table rebuilds only its own dataset's date
    assert plan.dates == [dt.date(2026, 10, 26), dt.date(2026, 10, 27)]
    builds = {s.table: s.query for s in plan.queries if s.step == "build"}
    assert (
        "DATE '2026-10-27'" in builds["clickstream_hourly"] and "DATE '2026-10-26'" not in builds["clickstream_hourly"]
    )
    assert "DATE '2026-10-27'" in builds["daily_active_users"]
    assert (
        "DATE '2026-10-26'" in builds["daily_sales_by_region"] and "2026-10-27" not in builds["daily_sales_by_region"]
    )
    # AND the clickstream tables are published date by date, never re-pointed whole
    publish = next(s.query for s in plan.queries if s.name == "clickstream_hourly/publish")
    assert "PARTITION (event_date = '2026-10-27') LOCATION 's3://c-b/clickstream_hourly/runs/exec_9/" in publish


# ------------------------------------------------------------------------------------------- the ledger


def _write_ledger_of(result: dict[str, Any]) -> None:
    """What the pipeline's Record Curation step does once the tables are published."""
    boto3.client("s3").put_object(Bucket="curated", Key=result["ledger_key"], Body=result["ledger"].encode())


def test_a_run_the_ledger_has_not_absorbed_is_rebuilt_by_the_next(handler: ModuleType, lambda_context: Any) -> None:
    # GIVEN a first run planned and recorded, then a run whose curation never completed (no ledger written)
    _summary("processed", "run-1", {"sales": {"partitions": ["2026-10-01"]}})
    _write_ledger_of(handler.lambda_handler({"run_id": "run-1"}, lambda_context))
    _summary("processed", "run-2", {"sales": {"partitions": ["2026-10-02"]}})
    handler.lambda_handler({"run_id": "run-2"}, lambda_context)

    # WHEN a third run with nothing new is planned
    _summary("processed", "run-3", {"sales": {"partitions": []}})
    third = handler.lambda_handler({"run_id": "run-3"}, lambda_context)

    # THEN it rebuilds what run-2 left behind, and once recorded a fourth finds nothing to do
    assert third["dates"] == ["2026-10-02"] and third["status"] == "SUCCEEDED"
    assert "customer_aggregates" in third["tables"]
    _write_ledger_of(third)
    _summary("processed", "run-4", {"sales": {"partitions": []}})
    fourth = handler.lambda_handler({"run_id": "run-4"}, lambda_context)
    # (and says nothing changed: the runs every table absorbed, still listed before the horizon folds them, are not
    # news, so the forecast is not retrained and the run reads "nothing to do")
    assert statements(fourth) == [] and fourth["changed"] == []


def test_a_held_dataset_holds_only_the_tables_reading_it(handler: ModuleType, lambda_context: Any) -> None:
    # GIVEN every table known, and a run whose gate failed customers while sales passed
    now = dt.datetime(2026, 10, 3, tzinfo=dt.UTC)
    _ledger("curated", Ledger(tables={t.name: TableEntry() for t in curated_tables()}))
    delivered = {"partitions": ["2026-10-01"]}
    _summary("processed", "run-1", {"sales": delivered, "customers": delivered})
    _verdict("run-1", "customers", False, now)
    _verdict("run-1b", "sales", True, now)

    # WHEN the run is planned
    held = handler.lambda_handler({"run_id": "run-1"}, lambda_context)

    # THEN customer_aggregates is held with the reason, the sales tables are built, and the run is PARTIAL
    assert held["status"] == "PARTIAL"
    assert [(h["table"], h["datasets"]) for h in held["held"]] == [("customer_aggregates", ["customers"])]
    assert held["held_datasets"] == {"customers": ["freshness: stale"]}
    assert {"daily_sales_by_region", "product_performance"} <= set(held["tables"])
    assert "customer_aggregates" not in {q["table"] for q in statements(held)}
    _write_ledger_of(held)

    # AND once a later run passes customers, the held table absorbs the held run's changes
    _summary("processed", "run-2", {"customers": {"partitions": []}})
    _verdict("run-2", "customers", True, now + dt.timedelta(hours=1))
    released = handler.lambda_handler({"run_id": "run-2"}, lambda_context)
    assert released["status"] == "SUCCEEDED" and released["held"] == []
    assert released["tables"] == ["customer_aggregates"]


def test_a_table_whose_inputs_were_never_processed_waits_for_them_and_is_built_whole_once_they_arrive(
    handler: ModuleType, lambda_context: Any
) -> None:
    # GIVEN a fresh lake (no ledger) where only sales was ever processed: no catalog table for the other datasets
    glue = boto3.client("glue")
    for name in sorted(set(REGISTRY) - {"sales"}):
        glue.delete_table(DatabaseName="lake", Name=name)
    _summary("processed", "run-1", {"sales": {"partitions": ["2026-10-01"]}})
    boto3.client("s3").put_object(Bucket="processed", Key="sales/event_date=2026-10-01/part-0.parquet", Body=b"x")

    # WHEN the run is planned
    first = handler.lambda_handler({"run_id": "run-1", "datasets": ["sales"]}, lambda_context)

    # THEN the tables reading only sales are built, the others wait for their inputs, named, and are not failed
    assert first["status"] == "SUCCEEDED" and first["held"] == []
    assert first["tables"] == ["customer_daily_sales", "daily_sales_by_region"]
    waiting = {w["table"]: w for w in first["waiting"]}
    assert set(waiting) == {"clickstream_hourly", "daily_active_users", "product_performance", "customer_aggregates"}
    assert waiting["customer_aggregates"]["datasets"] == ["customers"]
    assert waiting["customer_aggregates"]["reason"] == "waiting for input: customers"
    assert waiting["clickstream_hourly"]["reason"] == "waiting for input: clickstream"
    # AND no statement reads a dataset that is not in the catalog, views included
    planned = {q["table"] for q in statements(first)}
    assert planned == {"customer_daily_sales", "daily_sales_by_region"}
    assert not any(
        re.search(rf"\blake\.{name}(_history|_current)?\b", q["query"])
        for q in statements(first)
        for name in ("products", "customers", "clickstream")
    )
    # AND the ledger marks only the built tables absorbed, so nothing of the waiting ones counts as done
    ledger = Ledger.model_validate_json(first["ledger"])
    assert set(ledger.tables) == {"customer_daily_sales", "daily_sales_by_region"}
    _write_ledger_of(first)

    # WHEN customers arrives in a later run
    _catalog("customers")
    _summary("processed", "run-2", {"customers": {"partitions": ["2026-09-01"]}})
    second = handler.lambda_handler({"run_id": "run-2", "datasets": ["customers"]}, lambda_context)

    # THEN customer_aggregates is built whole, the sales tables (absorbed, untouched) are not rebuilt
    assert second["status"] == "SUCCEEDED"
    assert second["tables"] == ["customer_aggregates"]
    assert {w["table"] for w in second["waiting"]} == {
        "clickstream_hourly",
        "daily_active_users",
        "product_performance",
    }
    assert "customers_history/view" in {q["name"] for q in statements(second)}
    assert "products_history/view" not in {q["name"] for q in statements(second)}


def test_a_new_partitioned_table_with_no_date_yet_is_declared_for_the_tables_reading_it(
    handler: ModuleType, lambda_context: Any
) -> None:
    # GIVEN a fresh lake (no ledger) where every dataset was processed, none with a row yet
    _summary("processed", "run-1", {name: {"partitions": []} for name in REGISTRY})

    # WHEN the run is planned
    result = handler.lambda_handler({"run_id": "run-1"}, lambda_context)

    # THEN customer_daily_sales (no date to build) is still declared, before customer_aggregates reads it, whole
    names = [q["name"] for q in statements(result)]
    assert "customer_daily_sales/build" not in names
    assert names.index("customer_daily_sales/table") < names.index("customer_aggregates/build")
    assert result["status"] == "SUCCEEDED" and result["waiting"] == []


def test_a_reference_only_run_rebuilds_the_dates_it_touches(handler: ModuleType, lambda_context: Any) -> None:
    # GIVEN every table known, and a run that processed only products, touching sales of two dates
    _ledger("curated", Ledger(tables={t.name: TableEntry() for t in curated_tables()}))
    body = {"run_id": "ref-1", "datasets": {"products": {"partitions": ["2026-09-01"]}}}
    body["reference_dates"] = {"sales": ["2026-10-01", "2026-10-05"]}
    boto3.client("s3").put_object(Bucket="processed", Key="_runs/ref-1/summary.json", Body=json.dumps(body).encode())

    # WHEN it is planned THEN the sales tables rebuild those dates
    result = handler.lambda_handler({"run_id": "ref-1", "datasets": ["products"]}, lambda_context)
    assert result["dates"] == ["2026-10-01", "2026-10-05"]
    assert {"daily_sales_by_region", "product_performance"} <= set(result["tables"])


def test_the_sql_names_the_datasets_a_table_reads() -> None:
    # GIVEN the curated SQL THEN a table's inputs include the reference datasets its views read
    tables = {t.name: t for t in curated_tables()}
    assert tables["product_performance"].reads == {"sales", "products"}
    assert tables["customer_aggregates"].reads == {"sales", "customers"}
    assert tables["daily_sales_by_region"].reads == {"sales"}


def test_a_table_reading_a_rollup_reads_its_dataset_and_waits_until_the_rollup_is_catalogued(
    handler: ModuleType, lambda_context: Any
) -> None:
    # GIVEN the curated SQL THEN a rollup read (directly, or through customer_daily_sales) counts as its dataset
    tables = {t.name: t for t in curated_tables()}
    assert tables["daily_sales_by_region"].rollups == {"sales_by_region_day"}
    assert tables["product_performance"].rollups == {"sales_by_product_day"}
    assert tables["customer_aggregates"].rollups == {"sales_by_customer_day"}
    assert tables["customer_aggregates"].reads == {"sales", "customers"}
    assert tables["clickstream_hourly"].rollups == frozenset()
    # GIVEN a lake whose sales table is catalogued but not yet its rollup per region (a job run before they existed)
    boto3.client("glue").delete_table(DatabaseName="lake", Name="sales_by_region_day")
    _summary("processed", "run-1", {"sales": {"partitions": ["2026-10-01"]}})
    boto3.client("s3").put_object(Bucket="processed", Key="sales/event_date=2026-10-01/part-0.parquet", Body=b"x")
    # WHEN the run is planned
    result = handler.lambda_handler({"run_id": "run-1", "datasets": ["sales"]}, lambda_context)
    # THEN the table reading it waits for it, named; the tables reading the other rollups are built
    waiting = {w["table"]: w for w in result["waiting"]}
    assert set(waiting) == {"daily_sales_by_region"}
    assert waiting["daily_sales_by_region"]["reason"] == "waiting for input: sales_by_region_day"
    assert "product_performance" in result["tables"] and "customer_daily_sales" in result["tables"]
    assert not any("lake.sales_by_region_day" in q["query"] for q in statements(result))


# ------------------------------------------------------------------------------- steady and versioned dates


def _build(result: dict[str, Any], table: str) -> str:
    return str(next(q["query"] for q in statements(result) if q["name"] == f"{table}/build"))


def _products_partition(day: str) -> None:
    boto3.client("s3").put_object(Bucket="processed", Key=f"products/event_date={day}/part-0.parquet", Body=b"x")


def test_a_date_no_product_version_begins_on_is_enriched_without_event_times(
    handler: ModuleType, lambda_context: Any
) -> None:
    # GIVEN every table known, products with versions beginning on 2026-09-30 and 2026-10-02 (their processed
    # partitions), and a run that wrote sales of three dates
    _ledger("curated", Ledger(tables={t.name: TableEntry() for t in curated_tables()}))
    _products_partition("2026-09-30")
    _products_partition("2026-10-02")
    _summary("processed", "run-1", {"sales": {"partitions": ["2026-10-01", "2026-10-02", "2026-10-03"]}})
    # WHEN it is planned
    build = _build(handler.lambda_handler({"run_id": "run-1"}, lambda_context), "product_performance")
    # THEN product_performance reads event times (each sale's own version) only on the date a version begins
    assert "WHERE s.event_date IN (DATE '2026-10-02')" in build
    assert "WHERE p.event_date IN (DATE '2026-10-01', DATE '2026-10-03')" in build


def test_without_product_versions_on_its_dates_no_sale_event_time_is_read(
    handler: ModuleType, lambda_context: Any
) -> None:
    # GIVEN products whose only versions began before the sales, and a run that wrote sales of one date
    _ledger("curated", Ledger(tables={t.name: TableEntry() for t in curated_tables()}))
    _products_partition("2026-01-01")
    _summary("processed", "run-1", {"sales": {"partitions": ["2026-10-01"]}})
    # WHEN it is planned THEN the per-sale branch reads no partition at all
    build = _build(handler.lambda_handler({"run_id": "run-1"}, lambda_context), "product_performance")
    assert "WHERE s.event_date IN (NULL)" in build
    assert "WHERE p.event_date IN (DATE '2026-10-01')" in build


def test_versioned_days_are_every_day_unless_the_version_dates_are_known() -> None:
    tables = {t.name: t for t in curated_tables()}
    days = [dt.date(2026, 10, 1), dt.date(2026, 10, 2)]
    performance = tables["product_performance"]
    # GIVEN a table enriched through products_history THEN unknown version dates make every day versioned
    assert performance.history == {"products"}
    assert versioned_days(performance, days, None) == days
    assert versioned_days(performance, days, {"customers": [days[0]]}) == days
    # AND known ones keep only the days a version begins on
    assert versioned_days(performance, days, {"products": [days[1], dt.date(2026, 1, 1)]}) == [days[1]]
    assert versioned_days(performance, days, {"products": []}) == []
    # AND a table read without history views has no versioned day
    assert versioned_days(tables["daily_sales_by_region"], days, None) == []


def test_a_table_reading_a_curated_table_reads_its_datasets_and_must_be_declared_after_it() -> None:
    # GIVEN customer_aggregates, which reads customer_daily_sales THEN it reads sales through it, and is held with it
    tables = [t.name for t in curated_tables()]
    assert tables.index("customer_daily_sales") < tables.index("customer_aggregates")
    assert {t.name: t for t in curated_tables()}["customer_aggregates"].inputs == {"sales", "customers"}
    # AND declared before the table it reads, it is refused
    sales = REGISTRY["sales"]
    reordered = tuple(sorted(sales.curated, key=lambda c: c.name != "customer_aggregates"))
    with (
        registered(dataclasses.replace(sales, curated=reordered)),
        pytest.raises(ValueError, match="reads curated table 'customer_daily_sales', which is declared after it"),
    ):
        curated_tables()

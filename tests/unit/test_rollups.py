"""Rollups: per-day aggregates of a dataset's processed rows the Spark job writes beside them (ADR 0030)."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from datalake.contracts import get_dataset, registered
from datalake.contracts.base import Dataset, Measure, Rollup
from glue import raw_to_processed as job
from tests.unit.test_raw_to_processed import T0, job_args, processed_rows, sale, write_raw

SALES = get_dataset("sales")


def direct(rows: list[dict[str, Any]], rollup: Rollup) -> set[tuple[Any, ...]]:
    """The rollup computed from the processed rows in Python, one measure at a time: what the job's must equal."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(*(row[c] for c in rollup.group_by), str(row["event_date"]))].append(row)
    found = set()
    for key, members in groups.items():
        values: list[Any] = []
        for measure in rollup.measures:
            if measure.kind == "count":
                values.append(len(members))
            elif measure.kind == "count_distinct":
                values.append(len({r[str(measure.column)] for r in members if r[str(measure.column)] is not None}))
            else:
                values.append(sum(r[str(measure.column)] for r in members))
        found.add((*key[:-1], *values, key[-1]))
    return found


def written(spark: SparkSession, root: Path, rollup: Rollup) -> set[tuple[Any, ...]]:
    """The rollup as the job wrote it: its Parquet partitions under `<processed>/<name>/`."""
    folder = root / "processed" / rollup.name
    if not any(folder.glob("event_date=*/*.parquet")):
        return set()
    rows = spark.read.parquet(str(folder)).collect()
    columns = [*rollup.group_by, *(m.name for m in rollup.measures)]
    return {(*(row[c] for c in columns), str(row["event_date"])) for row in rows}


def assert_rollups_follow_the_rows(spark: SparkSession, root: Path) -> None:
    rows = processed_rows(spark, root)
    for rollup in SALES.rollups:
        assert written(spark, root, rollup) == direct(rows, rollup), rollup.name


def rollup_files(root: Path, rollup: str, day: str) -> set[str]:
    return {p.name for p in (root / "processed" / rollup / f"event_date={day}").glob("*.parquet")}


# ------------------------------------------------------------------------------------------- declarations


def test_a_rollup_is_declared_over_columns_of_the_datasets_rows() -> None:
    totals = (Measure("transactions", "count"),)
    # GIVEN rollups of sales THEN groups and measures may name contract fields and derived columns
    assert replace(SALES, rollups=(Rollup("by_store", ("store_id",), (Measure("revenue", "sum", "revenue"),)),))
    # AND a column the rows lack, a measure named like a group, or no measure at all are refused
    for rollups, message in [
        ((Rollup("by_x", ("coupon",), totals),), r"reads \['coupon'\]"),
        ((Rollup("by_x", ("region",), (Measure("region", "count"),)),), "every column named once"),
        ((Rollup("by_x", ("region",), ()),), "needs measures"),
        ((Rollup("by_x", ("region",), totals), Rollup("by_x", ("currency",), totals)), "must be distinct"),
        ((Rollup("sales", ("region",), totals),), "must be distinct"),
        ((Rollup("By-X", ("region",), totals),), "not a table name"),
    ]:
        with pytest.raises(ValueError, match=message):
            replace(SALES, rollups=rollups)
    # AND a count takes no column while the other measures need one
    with pytest.raises(ValueError, match="takes no column"):
        Measure("n", "count", "quantity")
    with pytest.raises(ValueError, match="needs one"):
        Measure("n", "sum")


def test_sales_declares_a_rollup_at_the_grain_of_each_curated_table_that_counts_distinct_customers() -> None:
    rollups = {r.name: r for r in SALES.rollups}
    assert rollups["sales_by_region_day"].group_by == ("region", "currency")
    assert rollups["sales_by_product_day"].group_by == ("product_id", "currency")
    assert rollups["sales_by_customer_day"].group_by == ("customer_id", "currency")
    distinct = {name for name, r in rollups.items() if any(m.kind == "count_distinct" for m in r.measures)}
    assert distinct == {"sales_by_region_day", "sales_by_product_day"}


# ------------------------------------------------------------------------------------------------ the job


@pytest.mark.slow
def test_rollups_follow_every_run_a_new_day_a_moved_sale_and_an_emptied_date(
    spark: SparkSession, tmp_path: Path
) -> None:
    # GIVEN sales of three days (customers repeating within a day, two currencies) processed with their catalog
    first = [
        sale("T1", 1),
        sale("T2", 3, customer_id="C2"),
        sale("T3", 2, customer_id="C2", currency="EUR", unit_price="5.55"),
        sale("T4", 1, product_id="P2", region="south"),
    ]
    write_raw(tmp_path, "sales", "2026-11-02", "first", first, T0)
    third = [sale("T5", 2, event_time="2026-11-03T08:00:00Z"), sale("T6", 1, event_time="2026-11-03T09:00:00Z")]
    write_raw(tmp_path, "sales", "2026-11-03", "third", third, T0)
    write_raw(tmp_path, "sales", "2026-11-04", "lone", [sale("T7", 1, event_time="2026-11-04T09:00:00Z")], T0)
    with mock_aws():
        glue = boto3.client("glue", region_name="us-east-1")
        glue.create_database(DatabaseInput={"Name": "lake"})
        summary = job.run(spark, job_args(tmp_path, update_catalog="true", database="lake"))
        # THEN every rollup equals its computation from the processed rows, and is a catalogued table of its days
        assert_rollups_follow_the_rows(spark, tmp_path)
        assert set(summary["datasets"]["sales"]["rollups"]) == {r.name for r in SALES.rollups}
        table = glue.get_table(DatabaseName="lake", Name="sales_by_region_day")["Table"]
        assert table["StorageDescriptor"]["Location"] == (tmp_path / "processed").as_uri() + "/sales_by_region_day/"
        assert [k["Name"] for k in table["PartitionKeys"]] == ["event_date"]
        assert table["Parameters"]["rollup_of"] == "sales"
        columns = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
        assert columns == {
            "region": "string",
            "currency": "string",
            "transactions": "bigint",
            "units": "bigint",
            "revenue": "decimal(28,2)",
            "customers": "bigint",
        }
        day3 = rollup_files(tmp_path, "sales_by_customer_day", "2026-11-03")
        assert len(day3) == 1  # one file per date

        # WHEN a later delivery moves T1 and T7 to a new date (emptying 11-04) and brings a sale of that date
        later = {"_ingested_at": "2026-11-22T10:00:00Z", "event_time": "2026-11-05T10:00:00Z"}
        fix = [sale("T1", 4, **later), sale("T7", 2, **later), sale("T8", 1, customer_id="C9", **later)]
        write_raw(tmp_path, "sales", "2026-11-05", "fix", fix, T0 + timedelta(1))
        again = job.run(spark, job_args(tmp_path, update_catalog="true", database="lake"))

        # THEN the rollups follow: 11-02 and 11-05 rewritten, 11-04 removed from storage and catalog, 11-03 untouched
        assert_rollups_follow_the_rows(spark, tmp_path)
        part = again["datasets"]["sales"]["rollups"]["sales_by_region_day"]
        assert part == {
            "partitions": ["2026-11-02", "2026-11-05"],
            "partitions_removed": ["2026-11-04"],
            "whole": False,
        }
        assert not (tmp_path / "processed" / "sales_by_region_day" / "event_date=2026-11-04").exists()
        assert rollup_files(tmp_path, "sales_by_customer_day", "2026-11-03") == day3
        listed = glue.get_partitions(DatabaseName="lake", TableName="sales_by_product_day")["Partitions"]
        assert sorted(p["Values"][0] for p in listed) == ["2026-11-02", "2026-11-03", "2026-11-05"]


@pytest.mark.slow
def test_a_run_adding_only_new_days_rolls_up_the_rows_it_wrote_without_reading_them_back(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a first load of two days (its rollups built whole from the rows just written: nothing read back)
    def no_read_back(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the rollups read back rows the run had just written")

    monkeypatch.setattr(job, "read_rollup_rows", no_read_back)
    write_raw(tmp_path, "sales", "2026-11-02", "first", [sale("T1", 1), sale("T2", 2, customer_id="C2")], T0)
    write_raw(tmp_path, "sales", "2026-11-03", "other", [sale("T3", 1, event_time="2026-11-03T08:00:00Z")], T0)
    first = job.run(spark, job_args(tmp_path))
    assert all(p["whole"] for p in first["datasets"]["sales"]["rollups"].values())
    assert_rollups_follow_the_rows(spark, tmp_path)

    # WHEN a later run brings sales of a new day only (no partition of the history is merged)
    later = [sale("T4", 3, event_time="2026-11-04T08:00:00Z"), sale("T5", 2, event_time="2026-11-04T09:00:00Z")]
    write_raw(tmp_path, "sales", "2026-11-04", "later", later, T0 + timedelta(1))
    again = job.run(spark, job_args(tmp_path))

    # THEN each rollup gains that day, computed from the rows the run wrote, and equals the processed rows' rollup
    parts = again["datasets"]["sales"]["rollups"]
    assert all(p == {"partitions": ["2026-11-04"], "partitions_removed": [], "whole": False} for p in parts.values())
    assert_rollups_follow_the_rows(spark, tmp_path)


@pytest.mark.slow
def test_a_rollup_never_built_declared_anew_or_left_behind_by_a_failed_run_is_rebuilt_from_every_day(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN sales of two days processed, their rollups with them
    write_raw(tmp_path, "sales", "2026-11-02", "first", [sale("T1", 1), sale("T2", 2, customer_id="C2")], T0)
    write_raw(tmp_path, "sales", "2026-11-03", "other", [sale("T3", 1, event_time="2026-11-03T08:00:00Z")], T0)
    job.run(spark, job_args(tmp_path))
    marker = tmp_path / "processed" / "_rollups" / "sales.json"
    assert set(json.loads(marker.read_text())["rollups"]) == {r.name for r in SALES.rollups}

    # WHEN a run fails after writing the rows of a new day, before the rollups follow
    def fail(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("the job stopped")

    write_raw(
        tmp_path, "sales", "2026-11-04", "new", [sale("T4", 5, event_time="2026-11-04T08:00:00Z")], T0 + timedelta(1)
    )
    with monkeypatch.context() as patched, pytest.raises(RuntimeError):
        patched.setattr(job, "refresh_rollups", fail)
        job.run(spark, job_args(tmp_path))
    # THEN the marker no longer vouches for the rollups
    assert json.loads(marker.read_text())["rollups"] == {}

    # AND WHEN the next run rereads the same file (the watermark did not move), the rollups are rebuilt whole
    summary = job.run(spark, job_args(tmp_path))
    parts = summary["datasets"]["sales"]["rollups"]
    assert all(p["whole"] and p["partitions"] == ["2026-11-02", "2026-11-03", "2026-11-04"] for p in parts.values())
    assert_rollups_follow_the_rows(spark, tmp_path)

    # AND WHEN a rollup is declared anew (another measure) and a run has nothing new, that one alone is rebuilt,
    # its stray day gone from storage and catalog
    anew = Rollup("sales_by_region_day", ("region",), (Measure("transactions", "count"),))
    changed: Dataset = replace(SALES, rollups=(anew, *SALES.rollups[1:]))
    stray = tmp_path / "processed" / "sales_by_region_day" / "event_date=2026-10-01"
    stray.mkdir(parents=True)
    (stray / "part-old.parquet").write_bytes(b"left from before")
    old = T.StructType(
        [T.StructField(c, T.StringType()) for c in ("units", "region")] + [T.StructField("event_date", T.DateType())]
    )
    with mock_aws(), registered(changed):
        glue = boto3.client("glue", region_name="us-east-1")
        glue.create_database(DatabaseInput={"Name": "lake"})
        job.update_catalog(glue, "lake", "sales_by_region_day", old, "file:///old/", [date(2026, 10, 1)])
        rebuilt = job.run(spark, job_args(tmp_path, update_catalog="true", database="lake"))
        parts = rebuilt["datasets"]["sales"]["rollups"]
        assert {name for name, p in parts.items() if p["whole"]} == {"sales_by_region_day"}
        assert written(spark, tmp_path, anew) == direct(processed_rows(spark, tmp_path), anew)
        listed = glue.get_partitions(DatabaseName="lake", TableName="sales_by_region_day")["Partitions"]
        assert sorted(p["Values"][0] for p in listed) == ["2026-11-02", "2026-11-03", "2026-11-04"]
        table = glue.get_table(DatabaseName="lake", Name="sales_by_region_day")["Table"]
        assert table["Parameters"]["rollup_signature"] == job.rollup_signature(anew)
        columns = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
        assert columns == [("region", "string"), ("transactions", "bigint")]
    assert not stray.exists()


def test_a_run_stages_the_rollups_it_rewrites_and_every_processed_day_for_a_stale_one(tmp_path: Path) -> None:
    # GIVEN a lake whose sales and rollups were processed (their folders and marker), with a new raw file
    processed = tmp_path / "processed"
    for folder in ["sales/event_date=2026-11-02", *(f"{r.name}/event_date=2026-11-02" for r in SALES.rollups)]:
        (processed / folder).mkdir(parents=True)
        (processed / folder / "part-0.parquet").write_bytes(b"x")
    marker = processed / "_rollups" / "sales.json"
    marker.parent.mkdir()
    marker.write_text(json.dumps({"rollups": {r.name: job.rollup_signature(r) for r in SALES.rollups}}))
    write_raw(tmp_path, "sales", "2026-11-03", "new", [sale("T1", event_time="2026-11-03T08:00:00Z")], T0)
    store = job.LocalFileStore()
    args = job_args(tmp_path)
    rollup_roots = {f"{processed.as_uri()}/{r.name}/" for r in SALES.rollups}
    # WHEN the run is planned THEN it stages the rollups' folders (a rewritten day replaces files there) and marker
    inputs = set(job.staging_plan(args, store, T0 + timedelta(1)).inputs)
    assert rollup_roots | {marker.as_uri()} <= inputs
    # AND with nothing new, only the marker
    quiet = set(job.staging_plan(args, store, T0 - timedelta(1)).inputs)
    assert marker.as_uri() in quiet and not quiet & rollup_roots
    # AND with nothing new but a stale rollup, every processed day and the rollups' folders
    marker.write_text(json.dumps({"rollups": {}}))
    stale = set(job.staging_plan(args, store, T0 - timedelta(1)).inputs)
    assert rollup_roots | {f"{processed.as_uri()}/sales/"} <= stale

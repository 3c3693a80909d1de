"""The QuickSight datasets of template.yaml and lakebox's local dashboard run the same SQL, so the two cannot drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlglot

from lakebox.app.dashboard import dashboard_queries
from lakebox.cfn.template import load_template

ROOT = Path(__file__).resolve().parents[2]
DATE_COLUMNS = {"sale_date", "day", "event_date", "activity_date", "period_start", "period_end"}


@pytest.fixture(scope="module")
def resources() -> dict[str, dict[str, Any]]:
    template = load_template(ROOT / "template.yaml")
    found: dict[str, dict[str, Any]] = template["Resources"]
    return found


def _of_type(resources: dict[str, dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in resources.items() if r["Type"] == kind}


def _custom_sql(dataset: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ((key, table),) = dataset["Properties"]["PhysicalTableMap"].items()
    return key.replace("-", "_"), table["CustomSql"]


def _normalized(sql: str) -> str:
    return " ".join(sql.split())


def test_every_dashboard_query_is_a_quicksight_dataset_with_the_same_sql(resources: dict[str, Any]) -> None:
    datasets = _of_type(resources, "AWS::QuickSight::DataSet")
    queries = dashboard_queries()
    by_key = dict(_custom_sql(d) for d in datasets.values())
    # GIVEN each local dashboard query WHEN its QuickSight dataset is found THEN their SQL is the same text
    assert set(by_key) == set(queries)
    for key, custom in by_key.items():
        sql = custom["SqlQuery"]["Fn::Sub"]
        assert _normalized(sql) == _normalized(queries[key].sql("${GlueDatabaseName}")), key
        # AND the dataset declares exactly the columns the query selects, in order
        selected = sqlglot.parse_one(queries[key].sql("db"), read="trino").named_selects
        assert [c["Name"] for c in custom["Columns"]] == selected, key
        date_types = {c["Name"]: c["Type"] for c in custom["Columns"] if c["Name"] in DATE_COLUMNS}
        assert set(date_types.values()) <= {"DATETIME"}, key


def test_datasets_are_spice_on_the_athena_analytics_source_behind_the_condition(resources: dict[str, Any]) -> None:
    (source,) = _of_type(resources, "AWS::QuickSight::DataSource").values()
    assert source["Properties"]["DataSourceParameters"]["AthenaParameters"]["WorkGroup"] == {
        "Ref": "AnalyticsWorkGroup"
    }
    for lid, dataset in _of_type(resources, "AWS::QuickSight::DataSet").items():
        assert dataset["Condition"] == "UseQuickSight", lid
        assert dataset["Properties"]["ImportMode"] == "SPICE", lid
    for lid in _of_type(resources, "AWS::QuickSight::Dashboard"):
        assert resources[lid]["Condition"] == "UseQuickSight"


def test_each_dataset_refreshes_daily_at_six_utc_incrementally_where_it_has_a_date(resources: dict[str, Any]) -> None:
    datasets = _of_type(resources, "AWS::QuickSight::DataSet")
    schedules = {
        s["Properties"]["DataSetId"]["Fn::Sub"]: s["Properties"]["Schedule"]
        for s in _of_type(resources, "AWS::QuickSight::RefreshSchedule").values()
    }
    for lid, dataset in datasets.items():
        schedule = schedules[dataset["Properties"]["DataSetId"]["Fn::Sub"]]
        assert schedule["ScheduleFrequency"] == {"Interval": "DAILY", "TimeOfTheDay": "06:00", "TimeZone": "UTC"}
        refresh = dataset["Properties"].get("DataSetRefreshProperties")
        if schedule["RefreshType"] == "INCREMENTAL_REFRESH":
            window = refresh["RefreshConfiguration"]["IncrementalRefresh"]["LookbackWindow"]
            _, custom = _custom_sql(dataset)
            assert window["ColumnName"] in {c["Name"] for c in custom["Columns"]}, lid
        else:
            assert refresh is None, lid
    assert sum(s["RefreshType"] == "INCREMENTAL_REFRESH" for s in schedules.values()) >= 3


def test_dashboard_uses_every_dataset_with_a_calculated_field_and_a_filter(resources: dict[str, Any]) -> None:
    (dashboard,) = _of_type(resources, "AWS::QuickSight::Dashboard").values()
    definition = dashboard["Properties"]["Definition"]
    declared = {d["Identifier"] for d in definition["DataSetIdentifierDeclarations"]}
    assert declared == set(dashboard_queries())
    assert definition["CalculatedFields"]
    assert definition["FilterGroups"][0]["Filters"]
    visuals = [visual for sheet in definition["Sheets"] for visual in sheet["Visuals"]]
    kinds = {next(iter(v)) for v in visuals}
    assert {"KPIVisual", "LineChartVisual", "BarChartVisual"} <= kinds
    used = {column["DataSetIdentifier"] for column in _columns(visuals)}
    assert used == declared


def test_every_column_the_dashboard_shows_is_one_its_dataset_selects(resources: dict[str, Any]) -> None:
    (dashboard,) = _of_type(resources, "AWS::QuickSight::Dashboard").values()
    definition = dashboard["Properties"]["Definition"]
    arns = {d["Identifier"]: d["DataSetArn"]["Fn::GetAtt"] for d in definition["DataSetIdentifierDeclarations"]}
    selected = {}
    for identifier, arn in arns.items():
        logical_id = arn[0] if isinstance(arn, list) else arn.split(".")[0]
        _, custom = _custom_sql(resources[logical_id])
        selected[identifier] = {c["Name"] for c in custom["Columns"]}
    for field in definition["CalculatedFields"]:
        selected[field["DataSetIdentifier"]].add(field["Name"])
    # GIVEN every column reference of the dashboard THEN its dataset has that column
    missing = {
        (c["DataSetIdentifier"], c["ColumnName"])
        for c in _columns(definition)
        if c["ColumnName"] not in selected[c["DataSetIdentifier"]]
    }
    assert not missing
    # AND every dataset with an amount carries its currency, which the dashboard filters on (one currency at a time)
    money = {k for k, cols in selected.items() if cols & {"revenue", "profit"}}
    assert all("currency" in selected[k] for k in money), money
    (currency,) = [g for g in definition["FilterGroups"] if g["FilterGroupId"] == "currency"]
    assert currency["CrossDataset"] == "ALL_DATASETS"


def _columns(node: Any) -> list[dict[str, Any]]:
    """Every column reference (``{DataSetIdentifier, ColumnName}``) inside a part of the definition."""
    if isinstance(node, dict):
        found = [node] if "DataSetIdentifier" in node and "ColumnName" in node else []
        return found + [c for value in node.values() for c in _columns(value)]
    if isinstance(node, list):
        return [c for item in node for c in _columns(item)]
    return []

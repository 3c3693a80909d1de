"""The consumption end on the whole local stack: the forecast step on SageMaker's local jobs, clickstream tables, and
the dashboard page opened in a real headless Chromium."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lakebox.app.dashboard import dashboard_queries, write_dashboard
from lakebox.app.pipeline import execute
from lakebox.app.sample import REGIONS, SampleSpec, generate
from lakebox.sfn import Execution

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
HORIZON = 14


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A stack of its own with seven weeks of weekly-seasonal sample data landed through the ingestion path."""
    from lakebox.runtime import lakebox

    saved = dict(os.environ)
    end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    spec = SampleSpec(
        sales=4_000, products=60, customers=300, clicks=1_500, days=49, end=end, seed=5, weekly_amplitude=0.3
    )
    with lakebox(ROOT, reuse=False, parameters={"RawSettleSeconds": "0"}) as local:
        for generated in generate(Path(tmp_path_factory.mktemp("sample")), spec):
            _, deliveries = local.put_file(generated.path, generated.dataset)
            assert all(delivery.ok for delivery in deliveries), deliveries
        yield local
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def run(box: Any) -> Execution:
    """One pipeline run over every dataset, the forecast on (its default)."""
    execution = execute(box, "PipelineStateMachine", {"datasets": ["sales", "products", "customers", "clickstream"]})
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    return execution


def query(box: Any, sql: str) -> list[dict[str, Any]]:
    result = box.athena.query(sql, workgroup=str(box.stack.ref("AnalyticsWorkGroup")))
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


def test_forecast_is_trained_predicted_and_published_as_sales_forecast(box: Any, run: Execution) -> None:
    # THEN the run summary reports the model and both backtest errors
    forecast = run.output["forecast"]
    assert forecast["status"] == "SUCCEEDED", forecast
    metrics = {m["MetricName"]: m["Value"] for m in forecast["metrics"]}
    assert set(metrics) >= {"backtest:smape_model", "backtest:smape_seasonal_naive"}
    assert all(0 < metrics[name] < 200 for name in ("backtest:smape_model", "backtest:smape_seasonal_naive"))
    assert run.attempts("Train Forecast Model") == 1

    # AND sales_forecast holds one row per region and horizon day, from the run's day on, intervals ordered
    rows = query(box, "SELECT * FROM sales_forecast")
    today = dt.datetime.now(dt.UTC).date()
    expected = {(region, today + dt.timedelta(days=n)) for region in REGIONS for n in range(HORIZON)}
    assert len(rows) == len(expected)
    assert {(r["region"], r["forecast_date"]) for r in rows} == expected
    assert all(r["yhat_lower"] <= r["yhat"] <= r["yhat_upper"] for r in rows)
    assert {r["model_version"] for r in rows} == {forecast["model_version"]}

    # AND the table is registered in the catalog, pointing at this run's transform output
    glue = box.session.client("glue")
    table = glue.get_table(DatabaseName=str(box.stack.parameters["GlueDatabaseName"]), Name="sales_forecast")["Table"]
    assert table["StorageDescriptor"]["Location"].rstrip("/") == forecast["output"].rstrip("/")
    assert [c["Name"] for c in table["StorageDescriptor"]["Columns"]][:3] == ["forecast_date", "region", "currency"]


def test_clickstream_is_processed_and_curated_hourly_and_daily(box: Any, run: Execution) -> None:
    # THEN the processed clickstream feeds both curated tables, every event counted once
    assert "clickstream" in run.output["datasets"]
    (processed,) = query(box, "SELECT count(*) AS n, count(DISTINCT session_id) AS s FROM clickstream")
    (hourly,) = query(box, "SELECT sum(events) AS n, count(DISTINCT event_type) AS types FROM clickstream_hourly")
    (daily,) = query(box, "SELECT sum(events) AS n, max(sessions) AS s FROM daily_active_users")
    assert processed["n"] > 0
    assert hourly["n"] == daily["n"] == processed["n"]
    assert 1 <= hourly["types"] <= 6
    assert daily["s"] <= processed["s"]
    bad = query(
        box,
        "SELECT count(*) AS n FROM clickstream_hourly "
        "WHERE users > events OR date_trunc('hour', event_hour) <> event_hour",
    )
    assert bad == [{"n": 0}]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "Chromium is not installed: make browser (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def test_dashboard_renders_every_chart_in_a_real_browser_with_the_sql_numbers(
    box: Any, run: Execution, tmp_path: Path
) -> None:
    # GIVEN the dashboard page written from the run's curated tables
    page = write_dashboard(box, tmp_path / "dashboard.html")
    text = page.read_text(encoding="utf-8")
    assert "<script src=" not in text and "https://" not in re.sub(r"<script>.*?</script>", "", text, flags=re.S)

    # WHEN headless Chromium opens it (no network) and runs its scripts
    done = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=30000",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    dom = done.stdout

    # THEN the page finished loading with no error, in the page or on the console
    status = re.search(r'<body[^>]*data-status="(\w+)"', dom)
    assert status is not None and status.group(1) == "ready", done.stderr[-2000:]
    errors = re.search(r'data-errors="([^"]*)"', dom)
    assert errors is not None and json.loads(errors.group(1).replace("&quot;", '"')) == []
    assert not [line for line in done.stderr.splitlines() if "CONSOLE" in line and "error" in line.lower()]

    # AND every chart panel rendered marks (an SVG mark group with at least one item)
    charts = re.findall(r'data-chart="(\w+)"', dom)
    assert set(charts) >= {
        "revenue_by_region",
        "forecast_vs_actuals",
        "top_products",
        "customer_segments",
        "clickstream_events",
        "daily_active_users",
        "health_ingestion",
        "health_runs",
        "health_queries",
    }
    for chart in charts:
        start = dom.index(f'data-chart="{chart}"')
        section = dom[start : dom.index("</section>", start)]
        assert 'data-rendered="true"' in section, chart
        assert re.search(r'<g class="mark-\w+ role-mark[^"]*"[^>]*><(path|line|rect|text|g)\b', section), chart

    # AND the KPI numbers shown are the SQL's results
    database = str(box.stack.parameters["GlueDatabaseName"])
    (kpis,) = query(box, dashboard_queries()["kpis"].sql(database))
    shown = dict(re.findall(r'data-kpi="(\w+)" data-value="([^"]*)"', dom))
    assert float(shown["revenue"]) == pytest.approx(float(kpis["revenue"]))
    assert int(shown["transactions"]) == kpis["transactions"]
    assert float(shown["average_order_value"]) == pytest.approx(float(kpis["average_order_value"]))
    assert f"{float(kpis['revenue']):,.2f}" in dom

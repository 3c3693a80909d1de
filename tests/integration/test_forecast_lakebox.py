"""The consumption end on the whole local stack: the forecast step on SageMaker's local jobs, clickstream tables, and
the dashboard page opened in a real headless Chromium."""

from __future__ import annotations

import dataclasses
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

from lakebox.app.dashboard import write_dashboard
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

    # AND no chart plots today's partial day: every actual day is a complete one, and the last is no cliff
    specs = _specs(dom)
    today = dt.datetime.now(dt.UTC).date()
    dated = {
        "revenue_by_region": "sale_date",
        "forecast_vs_actuals": "day",
        "clickstream_events": "event_date",
        "daily_active_users": "activity_date",
    }
    for chart, column in dated.items():
        rows = [r for r in _rows(specs[chart]) if r.get("series", "actual") == "actual"]
        assert rows, chart
        assert max(dt.date.fromisoformat(str(r[column])[:10]) for r in rows) < today, chart
    daily: dict[str, float] = {}
    for row in _rows(specs["revenue_by_region"]):
        daily[row["sale_date"]] = daily.get(row["sale_date"], 0.0) + row["revenue"]
    totals = [daily[day] for day in sorted(daily)]
    assert totals[-1] > 0.5 * sorted(totals)[len(totals) // 2], totals[-5:]

    # AND a day never has more identified visitors than sessions (a visitor's visits are sessions)
    assert all(r["active_users"] <= r["sessions"] for r in _rows(specs["daily_active_users"]))

    # AND every amount says its currency: the KPI cards, the scope sentence and the money charts' titles
    cards = re.findall(r'<div class="kpi" data-kpi="(\w+)" data-currency="(\w+)" data-value="([^"]*)"', dom)
    assert {currency for _, currency, _ in cards} == {"USD"}
    assert re.search(r'id="scope">[^<]*USD[^<]*never added across currencies', dom)
    for chart in ("revenue_by_region", "forecast_vs_actuals", "top_products", "customer_segments"):
        assert re.search(rf'data-panel="{chart}"><h3>[^<]*\(USD\)</h3>', dom), chart

    # AND the KPI numbers are the curated tables' own, computed here from them for the last 7 complete days
    shown = {kpi: json.loads(value.replace("&quot;", '"')) for kpi, _, value in cards}
    (last,) = query(box, "SELECT max(sale_date) AS d FROM daily_sales_by_region WHERE sale_date < current_date")
    first = last["d"] - dt.timedelta(days=6)
    window = f"sale_date BETWEEN DATE '{first}' AND DATE '{last['d']}' AND currency = 'USD'"
    (sales,) = query(
        box, f"SELECT sum(revenue) AS revenue, sum(transactions) AS n FROM daily_sales_by_region WHERE {window}"
    )
    (margin,) = query(box, f"SELECT sum(profit) AS profit FROM product_performance WHERE {window}")
    assert shown["revenue"] == pytest.approx(float(sales["revenue"]))
    assert shown["transactions"] == sales["n"]
    assert shown["average_order_value"] == pytest.approx(float(sales["revenue"]) / sales["n"])
    assert shown["profit"] == pytest.approx(float(margin["profit"]))
    assert 0 < shown["profit"] < shown["revenue"]
    assert f"{float(sales['revenue']):,.2f}" in dom

    # AND the top products chart carries each product's profit
    assert all(r["profit"] is not None and r["profit"] < r["revenue"] for r in _rows(specs["top_products"]))

    # AND the health figures are written for people: percentages, relative times, status colours
    table = dom[dom.index('id="freshness"') : dom.index("</table>", dom.index('id="freshness"'))]
    assert " %)" in table and re.search(r"<td>(just now|\d+ (min|h|days) ago)</td>", table)
    assert not re.search(r"\d\d:\d\d:\d\d\.\d{3,}", table)
    colours = specs["health_runs"]["encoding"]["color"]["scale"]
    assert dict(zip(colours["domain"], colours["range"], strict=True))["FAILED"] == "#c62828"


def test_dashboard_reads_as_the_bi_persona(
    box: Any, run: Execution, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakebox.services import governance

    # GIVEN the bi persona's access as the template grants it, and the same persona with no Lake Formation grant
    access = governance.access_for(box.stack, "bi")
    assert access.enforced and "curated" in access.readable
    monkeypatch.setattr(
        governance, "access_for", lambda stack, persona: dataclasses.replace(access, readable=frozenset())
    )
    # WHEN the page is written
    page = write_dashboard(box, tmp_path / "denied.html").read_text(encoding="utf-8")
    # THEN every business chart fails with Lake Formation's refusal, as QuickSight's data source would
    assert page.count("Insufficient Lake Formation permission(s)") >= 6
    assert 'data-chart="revenue_by_region"' not in page


def test_the_dashboard_is_reused_when_nothing_changed_and_rebuilt_when_something_did(
    box: Any, run: Execution, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakebox.app.dashboard import build_dashboard

    # GIVEN a page written once, with its progress shown
    out = tmp_path / "reuse.html"
    said: list[str] = []
    first = build_dashboard(box, out, progress=said.append)
    written = out.read_bytes()
    assert not first.reused and first.queries == 7
    assert "dashboard: query 1/7: Clickstream events" in said and said[-1] == "dashboard: drawing the charts"

    # WHEN it is asked for again with nothing changed (and any Athena query would fail the test)
    real_athena_as = box.athena_as
    monkeypatch.setattr(box, "athena_as", lambda *a, **k: pytest.fail("a reused page runs no query"))
    again = build_dashboard(box, out)

    # THEN the page is the one written, reused without a query
    assert again.reused and again.queries == 0 and again.generated_at == first.generated_at
    assert out.read_bytes() == written

    # AND once the curated zone changes (a new object in it), the page is built again
    monkeypatch.setattr(box, "athena_as", real_athena_as)
    box.session.client("s3").put_object(Bucket=box.bucket("CuratedBucket"), Key="_probe/changed.txt", Body=b"1")
    try:
        rebuilt = build_dashboard(box, out)
    finally:
        box.session.client("s3").delete_object(Bucket=box.bucket("CuratedBucket"), Key="_probe/changed.txt")
    assert not rebuilt.reused and rebuilt.queries == 7


def test_a_second_run_with_nothing_new_trains_nothing_and_says_so(
    box: Any, run: Execution, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakebox.home.runs import note_of

    # GIVEN the lake after a run that trained and published a forecast (the job's own clients reach the box)
    monkeypatch.setenv("AWS_ENDPOINT_URL", box.endpoint)
    trained = dict(box.sagemaker.training_jobs)
    assert trained

    # WHEN the pipeline runs again with nothing new
    again = execute(box, "PipelineStateMachine", {"datasets": ["sales", "products", "customers", "clickstream"]})

    # THEN it succeeds, rebuilt no curated table and created no SageMaker job: the published forecast stays
    assert again.status == "SUCCEEDED", (again.error, again.cause)
    assert again.output["queries"] == [] and again.output["changed"] == []
    assert box.sagemaker.training_jobs == trained
    assert "Train Forecast Model" not in again.states_entered()
    forecast = again.output["forecast"]
    assert forecast["status"] == "UNCHANGED"
    assert forecast["published"]["model_version"] == run.output["forecast"]["model_version"]
    # AND it did not wait for a crawl already over, and says there was nothing to do
    assert "Wait For Crawler" not in again.states_entered()
    assert note_of(again) == "nothing to do: no new data since the last run; the forecast is unchanged"
    rows = query(box, "SELECT DISTINCT model_version FROM sales_forecast")
    assert rows == [{"model_version": run.output["forecast"]["model_version"]}]


def _specs(dom: str) -> dict[str, Any]:
    """The Vega-Lite specifications the page embedded (its `const specs = ...;` line)."""
    found = re.search(r"const specs = (\{.*?\});\n", dom, flags=re.S)
    assert found is not None
    specs: dict[str, Any] = json.loads(found.group(1).replace("<\\/", "</"))
    return specs


def _rows(spec: Any) -> list[dict[str, Any]]:
    """The data rows a chart's specification carries (each chart draws one query's rows, perhaps in several views)."""
    if isinstance(spec, dict):
        if isinstance(spec.get("values"), list):
            return list(spec["values"])
        if spec.get("datasets"):
            return list(next(iter(spec["datasets"].values())))
        spec = list(spec.values())
    if isinstance(spec, list):
        for item in spec:
            if rows := _rows(item):
                return rows
    return []

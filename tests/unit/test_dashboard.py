"""The dashboard page as a reader meets it: amounts per currency, figures written for people, failures in red."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest

from lakebox.app.dashboard import Dataset, _duration, _relative, dashboard_queries, render

NOW = dt.datetime(2026, 12, 7, 9, 30, tzinfo=dt.UTC)
KPI = {
    "period_start": "2026-11-30",
    "period_end": "2026-12-06",
    "previous_revenue": 1000.0,
    "profit": 300.0,
    "previous_profit": 250.0,
    "profit_coverage": 0.8,
    "transactions": 10,
    "previous_transactions": 8,
    "average_order_value": 110.0,
    "previous_average_order_value": 125.0,
}


def _datasets(**rows: list[dict[str, Any]]) -> dict[str, Dataset]:
    found = {key: Dataset() for key in dashboard_queries()}
    found.update({key: Dataset(value) for key, value in rows.items()})
    return found


def _health(**extra: Any) -> dict[str, Any]:
    return {"runs": [], "ingestion": [], "datasets": [], "queries": [], "queries_run": "", **extra}


def _specs(page: str) -> dict[str, Any]:
    found = re.search(r"const specs = (\{.*?\});\n", page, flags=re.S)
    assert found is not None
    specs: dict[str, Any] = json.loads(found.group(1).replace("<\\/", "</"))
    return specs


def test_kpis_are_shown_per_currency_with_the_change_on_the_previous_period() -> None:
    # GIVEN sales in two currencies
    kpis = [{**KPI, "currency": "USD", "revenue": 1100.0}, {**KPI, "currency": "EUR", "revenue": 900.0}]
    revenue = [
        {"sale_date": "2026-12-06", "region": "north", "currency": c, "revenue": 5.0, "transactions": 1}
        for c in ("USD", "EUR")
    ]
    # WHEN the page is rendered
    page = render(_datasets(kpis=kpis, revenue_by_region=revenue), _health(), generated_at=NOW)
    # THEN each currency has its own cards, with the change on the 7 days before, and nothing is added across them
    cards = re.findall(r'data-kpi="(\w+)" data-currency="(\w+)" data-value="([^"]*)"', page)
    assert {(k, c) for k, c, _ in cards} == {
        (k, c) for k in ("revenue", "profit", "transactions", "average_order_value") for c in ("USD", "EUR")
    }
    assert "2,000.00" not in page
    assert "+10.0 % on the 7 days before" in page and "-10.0 % on the 7 days before" in page
    # AND the period is stated, today left out, and the share of revenue the profit covers
    assert "30 Nov 2026 to 6 Dec 2026" in page and "Today is still under way and is not counted" in page
    assert "on 80 % of revenue with a known cost" in page
    # AND a chart of amounts in two currencies draws one panel per currency
    assert _specs(page)["revenue_by_region"]["facet"]["row"]["field"] == "currency"
    assert re.search(r"Revenue per complete day, by region \(EUR, USD\)</h3>", page)


def test_a_kpi_query_that_failed_says_why() -> None:
    datasets = _datasets()
    datasets["kpis"] = Dataset(error="Insufficient Lake Formation permission(s) on product_performance")
    page = render(datasets, _health(), generated_at=NOW)
    assert "no KPIs: Insufficient Lake Formation permission(s) on product_performance" in page


def test_health_is_written_for_people_and_failed_runs_are_red() -> None:
    # GIVEN a dataset with a file quarantined whole, and a failed run beside a succeeded one
    health = _health(
        datasets=[
            {
                "dataset": "sales",
                "received": 2000,
                "landed": 1950,
                "quarantined": 50,
                "files": 3,
                "files_quarantined": 1,
                "quarantine_rate": 0.025,
                "last_ingested_at": "2026-12-07T09:17:59.123456+00:00",
                "status": "check",
            }
        ],
        runs=[
            {"run_id": "a", "status": "SUCCEEDED", "seconds": 61.0, "started": "2 h ago", "duration": "1 min 1 s"},
            {"run_id": "b", "status": "FAILED", "seconds": 5.0, "started": "1 h ago", "duration": "5 s"},
        ],
    )
    page = render(_datasets(), health, generated_at=NOW)
    # THEN the table shows a percentage, a relative time, the whole file counted, and no raw timestamp
    row = re.search(r'<tr data-dataset="sales" class="check">(.*?)</tr>', page)
    assert row is not None
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row.group(1))
    assert cells == ["sales", "check", "2,000", "1,950", "50 (2.5 %)", "3", "1", "12 min ago"]
    # AND the runs chart colours a failed run red and a succeeded one green
    scale = _specs(page)["health_runs"]["encoding"]["color"]["scale"]
    colours = dict(zip(scale["domain"], scale["range"], strict=True))
    assert colours["FAILED"] == "#c62828" and colours["SUCCEEDED"] == "#2e7d32"


@pytest.mark.parametrize(
    ("seconds_ago", "said"),
    [(20, "just now"), (12 * 60, "12 min ago"), (5 * 3600, "5 h ago"), (3 * 86_400, "3 days ago")],
)
def test_times_are_relative(seconds_ago: int, said: str) -> None:
    assert _relative((NOW - dt.timedelta(seconds=seconds_ago)).isoformat(), NOW) == said


def test_durations_read_as_minutes_and_seconds() -> None:
    assert [_duration(s) for s in (42.4, 185, 7440)] == ["42 s", "3 min 5 s", "2 h 4 min"]

"""The local dashboard: one self-contained HTML page of the lake's KPIs and charts, and of the pipeline's health.

The business charts come from the SQL in `datalake/sql/dashboard/` (the queries the QuickSight datasets of
template.yaml carry), run on the local Athena; the health section from the runs and manifests tables. Charts are
Vega-Lite specifications built with Altair and rendered in the page by the vega-embed bundle that vl-convert ships,
inlined once, so the file opens with no network.
"""

from __future__ import annotations

import datetime as dt
import decimal
import html
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import altair as alt

    from lakebox.runtime import Lakebox

DEFAULT_PATH = Path(".lakebox") / "dashboard.html"
_HEADER = re.compile(r"^--\s*(name|description):\s*(.+)$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\{\{\s*database\s*\}\}")


@dataclass(frozen=True)
class DashboardQuery:
    """One dataset of the dashboards: a file of `sql/dashboard`, its title and description."""

    key: str
    name: str
    description: str
    template: str

    def sql(self, database: str) -> str:
        """The query with the lake's database filled in."""
        return _PLACEHOLDER.sub(database, self.template).strip()


def dashboard_queries() -> dict[str, DashboardQuery]:
    """Every query of `datalake/sql/dashboard`, by file name (without `.sql`)."""
    folder = resources.files("datalake").joinpath("sql", "dashboard")
    found = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            text = entry.read_text(encoding="utf-8")
            header = dict(_HEADER.findall(text))
            body = "\n".join(line for line in text.splitlines() if not _HEADER.match(line)).strip()
            key = entry.name.removesuffix(".sql")
            found[key] = DashboardQuery(key, header.get("name", key), header.get("description", ""), body)
    return found


@dataclass
class Dataset:
    """A query's rows as JSON values, the bytes it scanned, or the reason it has none."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    bytes_scanned: int = 0
    error: str | None = None


def _json_value(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None).isoformat(timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


Runner = Callable[[str], tuple[Sequence[str], Sequence[Sequence[Any]], int]]


def run_queries(run: Runner, database: str) -> dict[str, Dataset]:
    """Run every dashboard query; a query that fails (a table not built yet) gives a dataset with its reason."""
    from datalake.exceptions import DataLakeError

    datasets = {}
    for key, query in dashboard_queries().items():
        try:
            columns, rows, scanned = run(query.sql(database))
        except DataLakeError as exc:
            datasets[key] = Dataset(error=str(exc))
            continue
        values = [{c: _json_value(v) for c, v in zip(columns, row, strict=True)} for row in rows]
        datasets[key] = Dataset(values, scanned)
    return datasets


# ------------------------------------------------------------------------------------------------ health


def pipeline_health(box: Lakebox, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Runs and durations, records per dataset and day, quarantine rates, freshness and bytes scanned per query."""
    now = now or dt.datetime.now(dt.UTC)
    dynamodb = box.session.resource("dynamodb")
    runs: list[dict[str, Any]] = []
    latest_queries: list[dict[str, Any]] = []
    latest_start = ""
    for item in _scan(dynamodb.Table(str(box.stack.ref("RunsTable")))):
        started, finished = str(item.get("started_at", "")), str(item.get("finished_at", ""))
        seconds = _seconds_between(started, finished)
        summary = json.loads(str(item.get("summary") or "{}"))
        forecast = summary.get("forecast") or {}
        runs.append(
            {
                "run_id": str(item["run_id"]),
                "status": str(item.get("status", "")),
                "started_at": started,
                "seconds": seconds,
                "forecast": str(forecast.get("status", "")),
            }
        )
        if item.get("status") in ("SUCCEEDED", "PARTIAL") and started >= latest_start:
            latest_start, latest_queries = started, list(summary.get("queries") or [])
    runs.sort(key=lambda r: r["started_at"])
    ingestion: dict[tuple[str, str], dict[str, Any]] = {}
    freshness: dict[str, str] = {}
    for item in _scan(dynamodb.Table(str(box.stack.ref("ManifestsTable")))):
        if not item.get("dataset"):  # content claims (`content#...`) are bookkeeping, not ingestions
            continue
        dataset = str(item["dataset"])
        ingested = str(item.get("ingested_at") or "")
        received = int(item.get("records_received", item.get("records_read", 0)) or 0)
        row = ingestion.setdefault(
            (dataset, ingested[:10]),
            {"dataset": dataset, "day": ingested[:10], "received": 0, "landed": 0, "quarantined": 0},
        )
        row["received"] += received
        row["landed"] += int(item.get("records_landed", 0) or 0)
        row["quarantined"] += int(item.get("records_quarantined", 0) or 0)
        freshness[dataset] = max(freshness.get(dataset, ""), ingested)
    per_dataset: dict[str, dict[str, int]] = {}
    for row in ingestion.values():
        total = per_dataset.setdefault(row["dataset"], {"received": 0, "landed": 0, "quarantined": 0})
        for key in total:
            total[key] += row[key]
    rates = [
        {
            "dataset": name,
            **totals,
            "quarantine_rate": round(totals["quarantined"] / totals["received"], 4) if totals["received"] else 0.0,
            "last_ingested_at": freshness.get(name, ""),
            "age_minutes": _age_minutes(freshness.get(name, ""), now),
        }
        for name, totals in sorted(per_dataset.items())
    ]
    queries = [
        {"query": str(q.get("name", "")), "bytes_scanned": int(q.get("bytes_scanned") or 0)}
        for q in latest_queries
        if isinstance(q, dict) and q.get("step") in ("build", None)
    ]
    return {
        "runs": runs,
        "ingestion": sorted(ingestion.values(), key=lambda r: (r["day"], r["dataset"])),
        "datasets": rates,
        "queries": queries,
    }


def _scan(table: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {}
    while True:
        page = table.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _parse(moment: str) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(moment.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _seconds_between(start: str, end: str) -> float:
    first, last = _parse(start), _parse(end)
    return round((last - first).total_seconds(), 1) if first and last else 0.0


def _age_minutes(moment: str, now: dt.datetime) -> float | None:
    parsed = _parse(moment)
    return round((now - parsed).total_seconds() / 60, 1) if parsed else None


# ------------------------------------------------------------------------------------------------ charts


def _inline(rows: list[dict[str, Any]]) -> alt.Data:
    """Rows embedded in the chart's specification (the page carries its data)."""
    import altair as alt

    return alt.Data(values=rows)  # type: ignore[no-untyped-call]


def _charts(
    datasets: Mapping[str, Dataset], health: Mapping[str, Any]
) -> list[tuple[str, str, alt.TopLevelMixin | str]]:
    """(id, title, chart or the reason it has no data), in page order."""
    import altair as alt

    def data(key: str) -> alt.Data | str:
        found = datasets[key]
        if found.error:
            return f"no data: {found.error}"
        if not found.rows:
            return "no data yet"
        return _inline(found.rows)

    charts: list[tuple[str, str, alt.TopLevelMixin | str]] = []

    def add(key: str, title: str, build: Callable[[alt.Data], alt.TopLevelMixin]) -> None:
        source = data(key)
        charts.append((key, title, source if isinstance(source, str) else build(source)))

    add(
        "revenue_by_region",
        "Revenue by region",
        lambda d: (
            alt.Chart(d)
            .mark_line(point=True)
            .encode(x=alt.X("sale_date:T", title="day"), y=alt.Y("revenue:Q", title="revenue"), color="region:N")
            .properties(width=460, height=220)
        ),
    )
    add(
        "forecast_vs_actuals",
        "Forecast against actuals",
        lambda d: alt.layer(
            alt.Chart(d)
            .transform_filter("datum.series == 'forecast'")
            .mark_area(opacity=0.25)
            .encode(x="day:T", y=alt.Y("revenue_lower:Q", title="revenue"), y2="revenue_upper:Q", color="region:N"),
            alt.Chart(d)
            .mark_line()
            .encode(
                x=alt.X("day:T", title="day"),
                y="revenue:Q",
                color="region:N",
                strokeDash=alt.StrokeDash("series:N", title="series"),
            ),
        ).properties(width=460, height=220),
    )
    add(
        "top_products",
        "Top products",
        lambda d: (
            alt.Chart(d)
            .mark_bar()
            .encode(x=alt.X("revenue:Q"), y=alt.Y("product_name:N", sort="-x", title=None), color="category:N")
            .properties(width=460, height=220)
        ),
    )
    add(
        "customer_segments",
        "Customer segments",
        lambda d: (
            alt.Chart(d)
            .mark_bar()
            .encode(
                x=alt.X("segment:N", title=None), y="revenue:Q", tooltip=["customers:Q", "average_transaction_value:Q"]
            )
            .properties(width=460, height=220)
        ),
    )
    add(
        "clickstream_events",
        "Clickstream events by type",
        lambda d: (
            alt.Chart(d)
            .mark_bar()
            .encode(
                x=alt.X("event_hour:T", title="hour"), y=alt.Y("sum(events):Q", title="events"), color="event_type:N"
            )
            .properties(width=460, height=220)
        ),
    )
    add(
        "daily_active_users",
        "Daily active users and sessions",
        lambda d: (
            alt.Chart(d)
            .transform_fold(["active_users", "sessions"], as_=["measure", "count"])
            .mark_line(point=True)
            .encode(x=alt.X("activity_date:T", title="day"), y="count:Q", color="measure:N")
            .properties(width=460, height=220)
        ),
    )
    health_charts: list[tuple[str, str, Callable[[alt.Data], alt.TopLevelMixin], list[dict[str, Any]]]] = [
        (
            "health_ingestion",
            "Records landed and quarantined per dataset and day",
            lambda d: (
                alt.Chart(d)
                .transform_fold(["landed", "quarantined"], as_=["outcome", "records"])
                .mark_bar()
                .encode(x=alt.X("day:N", title="ingested on"), y="records:Q", color="outcome:N", column="dataset:N")
                .properties(width=110, height=200)
            ),
            health["ingestion"],
        ),
        (
            "health_runs",
            "Pipeline runs and their durations",
            lambda d: (
                alt.Chart(d)
                .mark_bar()
                .encode(x=alt.X("run_id:N", sort=None), y=alt.Y("seconds:Q", title="seconds"), color="status:N")
                .properties(width=460, height=200)
            ),
            health["runs"],
        ),
        (
            "health_queries",
            "Bytes scanned per curated query (latest run)",
            lambda d: (
                alt.Chart(d)
                .mark_bar()
                .encode(x=alt.X("bytes_scanned:Q", title="bytes"), y=alt.Y("query:N", sort="-x", title=None))
                .properties(width=460, height=200)
            ),
            health["queries"],
        ),
    ]
    for key, title, build, rows in health_charts:
        charts.append((key, title, build(_inline(rows)) if rows else "no data yet"))
    return charts


# ------------------------------------------------------------------------------------------------ page


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def render(datasets: Mapping[str, Dataset], health: Mapping[str, Any], *, generated_at: dt.datetime) -> str:
    """The page as one HTML string: KPI cards, chart panels, health tables, the vega-embed bundle inlined once."""
    import vl_convert as vlc
    from altair.utils._importers import vl_version_for_vl_convert

    kpis = (datasets["kpis"].rows or [{}])[0]
    cards = [
        ("revenue", "Revenue", _money(kpis.get("revenue")), kpis.get("revenue")),
        ("transactions", "Transactions", f"{kpis.get('transactions') or 0:,}", kpis.get("transactions")),
        (
            "average_order_value",
            "Average order value",
            _money(kpis.get("average_order_value")),
            kpis.get("average_order_value"),
        ),
    ]
    card_html = "".join(
        f'<div class="kpi" data-kpi="{key}" data-value="{html.escape(json.dumps(value))}">'
        f'<div class="label">{label}</div><div class="value">{html.escape(text)}</div></div>'
        for key, label, text, value in cards
    )
    panels, specs = [], {}
    for key, title, chart in _charts(datasets, health):
        if isinstance(chart, str):
            body = f'<p class="empty">{html.escape(chart)}</p>'
        else:
            specs[key] = chart.to_dict()
            body = f'<div class="chart" id="chart-{key}" data-chart="{key}"></div>'
        panels.append(f'<section class="panel"><h3>{html.escape(title)}</h3>{body}</section>')
    business, health_panels = panels[:6], panels[6:]
    table = _table(
        health["datasets"],
        ("dataset", "received", "landed", "quarantined", "quarantine_rate", "last_ingested_at", "age_minutes"),
    )
    bundle = vlc.javascript_bundle(None, vl_version=vl_version_for_vl_convert())  # type: ignore[arg-type]
    return _PAGE.format(
        generated=html.escape(generated_at.isoformat(timespec="seconds")),
        cards=card_html,
        business="".join(business),
        health="".join(health_panels),
        freshness=table,
        bundle=bundle.replace("</script", "<\\/script"),
        specs=json.dumps(specs).replace("</", "<\\/"),
    )


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row.get(c, '')))}</td>" for c in columns) + "</tr>" for row in rows
    )
    return f'<table class="health" id="freshness"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Data lake dashboard</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; background: #fafafa; }}
h1 {{ font-size: 22px; margin: 0 0 4px; }} h2 {{ font-size: 18px; margin: 28px 0 8px; }} h3 {{ font-size: 14px; }}
.meta {{ color: #666; font-size: 12px; }}
.kpis {{ display: flex; gap: 16px; margin: 16px 0; }}
.kpi {{ background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 12px 18px; min-width: 180px; }}
.kpi .label {{ color: #666; font-size: 12px; }} .kpi .value {{ font-size: 24px; font-weight: 600; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 16px; }}
.panel {{ background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px 16px; }}
.empty {{ color: #a00; font-size: 13px; max-width: 520px; }}
table.health {{ border-collapse: collapse; background: #fff; font-size: 13px; }}
table.health td, table.health th {{ border: 1px solid #ddd; padding: 4px 8px; text-align: left; }}
</style>
<script>
window.dashboardErrors = [];
window.addEventListener("error", (event) => window.dashboardErrors.push(String(event.message)));
(() => {{
  const original = console.error;
  console.error = (...args) => {{ window.dashboardErrors.push(args.map(String).join(" ")); original(...args); }};
}})();
</script>
<script>
{bundle}
</script>
</head>
<body data-status="loading">
<h1>Data lake dashboard</h1>
<div class="meta">generated {generated} by lakebox from the curated tables</div>
<div class="kpis">{cards}</div>
<h2>Sales, forecast and clickstream</h2>
<div class="grid">{business}</div>
<h2>Pipeline health</h2>
<h3>Datasets: records, quarantine rate and freshness</h3>
{freshness}
<div class="grid">{health}</div>
<script>
const specs = {specs};
Promise.all(Object.entries(specs).map(([key, spec]) =>
  vegaEmbed("#chart-" + key, spec, {{renderer: "svg", actions: false}})
    .then((result) => {{ document.getElementById("chart-" + key).dataset.rendered = "true"; return result; }})
)).then(
  () => {{ document.body.dataset.status = "ready";
          document.body.dataset.errors = JSON.stringify(window.dashboardErrors); }},
  (error) => {{ window.dashboardErrors.push(String(error)); document.body.dataset.status = "failed";
                document.body.dataset.errors = JSON.stringify(window.dashboardErrors); }}
);
</script>
</body>
</html>
"""


def write_dashboard(box: Lakebox, out: Path | None = None, *, workgroup: str | None = None) -> Path:
    """Run the dashboard queries and the health scans on the box; write the page; return its path."""
    database = str(box.stack.parameters.get("GlueDatabaseName", "data_lake_db"))
    workgroup = workgroup or str(box.stack.ref("AnalyticsWorkGroup"))

    def run(sql: str) -> tuple[Sequence[str], Sequence[Sequence[Any]], int]:
        result = box.athena.query(sql, workgroup=workgroup, database=database)
        return result.columns, result.rows, result.bytes_scanned

    page = render(run_queries(run, database), pipeline_health(box), generated_at=dt.datetime.now(dt.UTC))
    path = out or box.root / DEFAULT_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path

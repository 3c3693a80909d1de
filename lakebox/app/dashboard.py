"""The local dashboard: one self-contained HTML page of the lake's KPIs and charts, and of the pipeline's health.

The business charts come from the SQL in `datalake/sql/dashboard/` (the queries the QuickSight datasets of
template.yaml carry), run on the local Athena; the health section from the runs and manifests tables. Charts are
Vega-Lite specifications built with Altair and rendered in the page by the vega-embed bundle that vl-convert ships,
inlined once, so the file opens with no network. A page is reused when nothing it shows changed since it was written
(ADR 0025): the key is a digest of the curated zone's objects, the runs and manifests, the persona's access, the SQL
and this module, kept beside the page; only then are the queries and the rendering skipped.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import html
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import altair as alt

    from lakebox.box import Lakebox
    from lakebox.services.governance import Access

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


def run_queries(run: Runner, database: str, progress: Callable[[str], None] | None = None) -> dict[str, Dataset]:
    """Run every dashboard query; a query that fails (a table not built yet) gives a dataset with its reason."""
    from datalake.exceptions import DataLakeError

    datasets = {}
    queries = dashboard_queries()
    for number, (key, query) in enumerate(queries.items(), start=1):
        if progress is not None:
            progress(f"query {number}/{len(queries)}: {query.name}")
        try:
            columns, rows, scanned = run(query.sql(database))
        except DataLakeError as exc:
            datasets[key] = Dataset(error=str(exc))
            continue
        values = [{c: _json_value(v) for c, v in zip(columns, row, strict=True)} for row in rows]
        datasets[key] = Dataset(values, scanned)
    return datasets


# ------------------------------------------------------------------------------------------------ health

STATUS_COLOURS: Mapping[str, str] = {
    "SUCCEEDED": "#2e7d32",
    "PARTIAL": "#ef6c00",
    "FAILED": "#c62828",
    "TIMED_OUT": "#c62828",
    "ABORTED": "#ef6c00",
    "RUNNING": "#757575",
}
"""A run's colour by its status: failures red, whatever else they have in common."""
WIDTH, HEIGHT = 440, 170
"""A chart's plot size: two panels side by side fit a 1400-pixel window."""
QUARANTINE_WARNING = 0.05
"""A dataset whose quarantined share of records exceeds this is flagged for a look."""


@dataclass(frozen=True)
class HealthRecords:
    """What the health section is computed from: the items of the runs and manifests tables."""

    runs: list[dict[str, Any]]
    manifests: list[dict[str, Any]]

    @classmethod
    def scan(cls, box: Lakebox) -> HealthRecords:
        """Scan both tables of the box."""
        dynamodb = box.session.resource("dynamodb")
        return cls(
            _scan(dynamodb.Table(str(box.stack.ref("RunsTable")))),
            _scan(dynamodb.Table(str(box.stack.ref("ManifestsTable")))),
        )


def pipeline_health(
    box: Lakebox, *, now: dt.datetime | None = None, records: HealthRecords | None = None
) -> dict[str, Any]:
    """Runs and durations, records per dataset and day, quarantine rates, freshness and bytes scanned per query."""
    now = now or dt.datetime.now(dt.UTC)
    records = records or HealthRecords.scan(box)
    runs: list[dict[str, Any]] = []
    queried: list[tuple[str, str, list[Any]]] = []
    for item in records.runs:
        started, finished = str(item.get("started_at", "")), str(item.get("finished_at", ""))
        summary = json.loads(str(item.get("summary") or "{}"))
        forecast = summary.get("forecast") or {}
        runs.append(
            {
                "run_id": str(item["run_id"]),
                "status": str(item.get("status", "")),
                "started_at": started,
                "started": _relative(started, now),
                "seconds": _seconds_between(started, finished),
                "duration": _duration(_seconds_between(started, finished)),
                "forecast": str(forecast.get("status", "")),
            }
        )
        built = [q for q in summary.get("queries") or [] if isinstance(q, dict) and q.get("step") in ("build", None)]
        if (
            item.get("status") in ("SUCCEEDED", "PARTIAL") and built
        ):  # a run with nothing to do says nothing of the queries
            queried.append((started, str(item["run_id"]), built))
    runs.sort(key=lambda r: r["started_at"])
    ingestion: dict[tuple[str, str], dict[str, Any]] = {}
    freshness: dict[str, str] = {}
    files: dict[str, dict[str, int]] = {}
    for item in records.manifests:
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
        counted = files.setdefault(dataset, {"files": 0, "files_quarantined": 0})
        counted["files"] += 1
        counted["files_quarantined"] += item.get("status") == "QUARANTINED"
        freshness[dataset] = max(freshness.get(dataset, ""), ingested)
    per_dataset: dict[str, dict[str, int]] = {}
    for row in ingestion.values():
        total = per_dataset.setdefault(row["dataset"], {"received": 0, "landed": 0, "quarantined": 0})
        for key in total:
            total[key] += row[key]
    rates = []
    for name, totals in sorted(per_dataset.items()):
        rate = totals["quarantined"] / totals["received"] if totals["received"] else 0.0
        whole = files.get(name, {}).get("files_quarantined", 0)
        rates.append(
            {
                "dataset": name,
                **totals,
                **files.get(name, {"files": 0, "files_quarantined": 0}),
                "quarantine_rate": round(rate, 4),
                "last_ingested_at": freshness.get(name, ""),
                "age_minutes": _age_minutes(freshness.get(name, ""), now),
                "status": "check" if whole or rate > QUARANTINE_WARNING else "ok",
            }
        )
    queries_run = max(queried, default=("", "", []))
    queries = [
        {"query": str(q.get("name", "")), "bytes_scanned": int(q.get("bytes_scanned") or 0)} for q in queries_run[2]
    ]
    return {
        "runs": runs,
        "ingestion": sorted(ingestion.values(), key=lambda r: (r["day"], r["dataset"])),
        "datasets": rates,
        "queries": queries,
        "queries_run": queries_run[1],
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


def _duration(seconds: float) -> str:
    """`42 s`, `3 min 5 s`, `2 h 4 min`."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def _relative(moment: str, now: dt.datetime) -> str:
    """How long ago `moment` was, as a person says it: `just now`, `5 min ago`, `3 h ago`, `2 days ago`."""
    parsed = _parse(moment)
    if parsed is None:
        return "never"
    seconds = (now - parsed).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 2 * 86_400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86_400)} days ago"


# ------------------------------------------------------------------------------------------------ charts


def _inline(rows: list[dict[str, Any]]) -> alt.Data:
    """Rows embedded in the chart's specification (the page carries its data)."""
    import altair as alt

    return alt.Data(values=rows)  # type: ignore[no-untyped-call]


def _currencies(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted({str(r["currency"]) for r in rows if r.get("currency")})


def _per_currency(chart: Any, rows: Sequence[Mapping[str, Any]]) -> Any:
    """One panel per currency when the rows hold several (amounts are never added across currencies)."""
    import altair as alt

    if len(_currencies(rows)) > 1:
        return chart.facet(row=alt.Row("currency:N", title=None))
    return chart


def _charts(
    datasets: Mapping[str, Dataset], health: Mapping[str, Any]
) -> list[tuple[str, str, alt.TopLevelMixin | str]]:
    """(id, title, chart or the reason it has no data), in page order."""
    import altair as alt

    charts: list[tuple[str, str, alt.TopLevelMixin | str]] = []
    days = alt.Axis(format="%-d %b", labelOverlap=True)  # one style for every axis of days

    def add(key: str, title: str, build: Callable[[list[dict[str, Any]]], alt.TopLevelMixin]) -> None:
        found = datasets[key]
        if found.error:
            charts.append((key, title, f"no data: {found.error}"))
        elif not found.rows:
            charts.append((key, title, "no data yet"))
        else:
            money = ", ".join(_currencies(found.rows))
            charts.append((key, f"{title} ({money})" if money else title, build(found.rows)))

    def forecast(rows: list[dict[str, Any]]) -> alt.TopLevelMixin:
        band = alt.Chart().mark_area(opacity=0.25, color="#1f77b4").encode(y="lower:Q", y2="upper:Q")
        line = (
            alt.Chart()
            .mark_line()
            .encode(
                y=alt.Y("revenue:Q", title="revenue"),
                strokeDash=alt.StrokeDash("series:N", title="series", sort=["actual", "forecast"]),
                color=alt.value("#1f77b4"),
            )
        )
        x = alt.X("day:T", title=None, axis=days)
        total = (
            alt.layer(band.encode(x=x), line.encode(x=x), data=_inline(rows))
            .transform_filter("datum.series == 'actual' || datum.revenue_lower != null")
            .transform_aggregate(
                revenue="sum(revenue)",
                lower="sum(revenue_lower)",
                upper="sum(revenue_upper)",
                groupby=["day", "series", "currency"],
            )
            .transform_calculate(
                lower="datum.series == 'forecast' ? datum.lower : null",
                upper="datum.series == 'forecast' ? datum.upper : null",
            )
            .properties(
                width=2 * WIDTH + 160,
                height=HEIGHT,
                title=alt.TitleParams(
                    "All regions",
                    subtitle="band: the regions' prediction intervals added up (a conservative interval of the total)",
                    fontSize=12,
                ),
            )
        )
        small = (
            alt.layer(
                band.encode(x=x).transform_calculate(lower="datum.revenue_lower", upper="datum.revenue_upper"),
                line.encode(x=x),
                data=_inline(rows),
            )
            .properties(width=WIDTH // 2 + 60, height=HEIGHT // 2)
            .facet(facet=alt.Facet("region:N", title=None), columns=3)
            .resolve_scale(y="independent")
        )
        if len(_currencies(rows)) > 1:
            return alt.vconcat(total.facet(row="currency:N"), small)
        return alt.vconcat(total, small)

    add("forecast_vs_actuals", "Forecast against actuals", forecast)
    add(
        "revenue_by_region",
        "Revenue per complete day, by region",
        lambda rows: _per_currency(
            alt.Chart(_inline(rows))
            .mark_area(opacity=0.85)
            .encode(
                x=alt.X("sale_date:T", title=None, axis=days),
                y=alt.Y("revenue:Q", title="revenue", stack="zero"),
                color=alt.Color("region:N", title="region"),
                order=alt.Order("region:N"),
                tooltip=["sale_date:T", "region:N", "currency:N", alt.Tooltip("revenue:Q", format=",.2f")],
            )
            .properties(width=WIDTH, height=HEIGHT),
            rows,
        ),
    )

    add(
        "top_products",
        "Top products: revenue and profit",
        lambda rows: _per_currency(
            alt.Chart(_inline(rows))
            .transform_fold(["revenue", "profit"], as_=["measure", "amount"])
            .mark_bar()
            .encode(
                x=alt.X("amount:Q", title="amount"),
                y=alt.Y("product_name:N", sort=alt.EncodingSortField("revenue", order="descending"), title=None),
                yOffset=alt.YOffset("measure:N", sort=["revenue", "profit"]),
                color=alt.Color(
                    "measure:N",
                    title=None,
                    sort=["revenue", "profit"],
                    scale=alt.Scale(domain=["revenue", "profit"], range=["#90caf9", "#2e7d32"]),
                ),
                tooltip=["product_name:N", "category:N", alt.Tooltip("amount:Q", format=",.2f"), "measure:N"],
            )
            .properties(width=WIDTH, height=HEIGHT + 60),
            rows,
        ),
    )
    add(
        "clickstream_events",
        "Clickstream events per complete day, by type",
        lambda rows: (
            alt.Chart(_inline(rows))
            .mark_bar()
            .encode(
                x=alt.X("event_date:T", title=None, axis=days),
                y=alt.Y("events:Q", title="events"),
                color=alt.Color("event_type:N", title="event type"),
                tooltip=["event_date:T", "event_type:N", "events:Q"],
            )
            .properties(width=WIDTH, height=HEIGHT)
        ),
    )
    add(
        "daily_active_users",
        "Visitors and sessions per complete day",
        lambda rows: (
            alt.Chart(_inline(rows))
            .transform_fold(["sessions", "active_users"], as_=["measure", "count"])
            .transform_calculate(
                measure="datum.measure == 'sessions' ? 'sessions (every visit)' : 'identified visitors'"
            )
            .mark_line(point=True)
            .encode(
                x=alt.X("activity_date:T", title=None, axis=days),
                y=alt.Y("count:Q", title="per day"),
                color=alt.Color("measure:N", title=None),
                tooltip=["activity_date:T", "measure:N", "count:Q"],
            )
            .properties(width=WIDTH, height=HEIGHT)
        ),
    )
    add(
        "customer_segments",
        "Customer segments: lifetime revenue",
        lambda rows: _per_currency(
            alt.Chart(_inline(rows))
            .mark_bar()
            .encode(
                x=alt.X("segment:N", title=None, axis=alt.Axis(labelAngle=0)),
                y=alt.Y("revenue:Q", title="revenue"),
                tooltip=["segment:N", "customers:Q", alt.Tooltip("average_transaction_value:Q", format=",.2f")],
            )
            .properties(width=WIDTH, height=HEIGHT),
            rows,
        ),
    )
    runs = health["runs"]
    statuses = sorted({r["status"] for r in runs} | {"SUCCEEDED", "FAILED"})
    health_charts: list[tuple[str, str, Callable[[alt.Data], alt.TopLevelMixin], list[dict[str, Any]]]] = [
        (
            "health_ingestion",
            "Records landed and quarantined per dataset and day",
            lambda d: (
                alt.Chart(d)
                .transform_fold(["landed", "quarantined"], as_=["outcome", "records"])
                .mark_bar()
                .encode(
                    x=alt.X("day:N", title="ingested on"),
                    y="records:Q",
                    color=alt.Color(
                        "outcome:N", scale=alt.Scale(domain=["landed", "quarantined"], range=["#2e7d32", "#c62828"])
                    ),
                    column=alt.Column("dataset:N", title=None),
                )
                .properties(width=WIDTH // 4 - 10, height=HEIGHT)
            ),
            health["ingestion"],
        ),
        (
            "health_runs",
            "Pipeline runs and their durations",
            lambda d: (
                alt.Chart(d)
                .mark_bar()
                .encode(
                    x=alt.X("run_id:N", sort=None, title=None, axis=alt.Axis(labelAngle=-30, labelLimit=160)),
                    y=alt.Y("seconds:Q", title="seconds"),
                    color=alt.Color(
                        "status:N",
                        scale=alt.Scale(domain=statuses, range=[STATUS_COLOURS.get(s, "#ef6c00") for s in statuses]),
                    ),
                    tooltip=["run_id:N", "status:N", "started:N", "duration:N", "forecast:N"],
                )
                .properties(width=WIDTH, height=HEIGHT)
            ),
            runs,
        ),
        (
            "health_queries",
            f"Bytes scanned per curated query (run {health.get('queries_run') or '-'})",
            lambda d: (
                alt.Chart(d)
                .mark_bar()
                .encode(
                    x=alt.X("bytes_scanned:Q", title="bytes", axis=alt.Axis(format="~s")),
                    y=alt.Y("query:N", sort="-x", title=None),
                    tooltip=["query:N", alt.Tooltip("bytes_scanned:Q", format=",")],
                )
                .properties(width=WIDTH, height=HEIGHT)
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


def _change(current: float | None, previous: float | None) -> tuple[str, str]:
    """(`+4.2 % on the 7 days before`, its class) or a plain statement when there is nothing to compare with."""
    if current is None or not previous:
        return "no earlier period to compare", "flat"
    change = (current - previous) / abs(previous) * 100
    kind = "up" if change > 0.05 else "down" if change < -0.05 else "flat"
    return f"{change:+.1f} % on the 7 days before", kind


def _day(value: Any) -> str:
    try:
        return dt.date.fromisoformat(str(value)[:10]).strftime("%-d %b %Y")
    except ValueError:
        return str(value)


def _kpi_cards(rows: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """(the KPI cards, one row per currency; the sentence that says what period they cover)."""
    if not rows:
        return '<p class="empty">no complete day of sales yet</p>', ""
    period = f"{_day(rows[0].get('period_start'))} to {_day(rows[0].get('period_end'))}"
    blocks = []
    for row in rows:
        currency = html.escape(str(row.get("currency", "")))
        coverage = row.get("profit_coverage")
        profit_note = (
            f"on {coverage * 100:.0f} % of revenue with a known cost"
            if coverage is not None and coverage < 0.995
            else ""
        )
        cards = [
            ("revenue", "Revenue", row.get("revenue"), row.get("previous_revenue"), _money, ""),
            ("profit", "Profit", row.get("profit"), row.get("previous_profit"), _money, profit_note),
            (
                "transactions",
                "Transactions",
                row.get("transactions"),
                row.get("previous_transactions"),
                lambda v: "-" if v is None else f"{int(v):,}",
                "",
            ),
            (
                "average_order_value",
                "Average order value",
                row.get("average_order_value"),
                row.get("previous_average_order_value"),
                _money,
                "",
            ),
        ]
        body = []
        for key, label, value, previous, shown, note in cards:
            change, kind = _change(value, previous)
            unit = "" if key == "transactions" else f' <span class="unit">{currency}</span>'
            body.append(
                f'<div class="kpi" data-kpi="{key}" data-currency="{currency}" '
                f'data-value="{html.escape(json.dumps(value))}" data-previous="{html.escape(json.dumps(previous))}">'
                f'<div class="label">{label}</div><div class="value">{html.escape(shown(value))}{unit}</div>'
                f'<div class="change {kind}">{html.escape(change)}</div>'
                + (f'<div class="note">{html.escape(note)}</div>' if note else "")
                + "</div>"
            )
        blocks.append(f'<div class="kpis" data-currency="{currency}">{"".join(body)}</div>')
    return "".join(blocks), period


def render(datasets: Mapping[str, Dataset], health: Mapping[str, Any], *, generated_at: dt.datetime) -> str:
    """The page as one HTML string: KPI cards, chart panels, health tables, the vega-embed bundle inlined once."""
    import vl_convert as vlc
    from altair.utils._importers import vl_version_for_vl_convert

    kpis = datasets["kpis"]
    cards, period = _kpi_cards(kpis.rows)
    if kpis.error:
        cards = f'<p class="empty">no KPIs: {html.escape(kpis.error)}</p>'

    currencies = [str(r.get("currency")) for r in kpis.rows]
    scope = (
        f"Last 7 complete days, {period}, against the 7 days before. Today is still under way and is not counted. "
        f"Amounts are in each sale's currency ({', '.join(currencies)}) and never added across currencies "
        "(no conversion rates are applied)."
        if period
        else ""
    )
    panels, specs = [], {}
    for key, title, chart in _charts(datasets, health):
        if isinstance(chart, str):
            body = f'<p class="empty">{html.escape(chart)}</p>'
        else:
            specs[key] = chart.to_dict()
            body = f'<div class="chart" id="chart-{key}" data-chart="{key}"></div>'
        panels.append(f'<section class="panel" data-panel="{key}"><h3>{html.escape(title)}</h3>{body}</section>')
    business, health_panels = panels[:6], panels[6:]
    bundle = vlc.javascript_bundle(None, vl_version=vl_version_for_vl_convert())  # type: ignore[arg-type]
    return _PAGE.format(
        generated=html.escape(generated_at.strftime("%-d %b %Y %H:%M UTC")),
        scope=html.escape(scope),
        cards=cards,
        business="".join(business),
        health="".join(health_panels),
        freshness=_health_table(health["datasets"], generated_at),
        bundle=bundle.replace("</script", "<\\/script"),
        specs=json.dumps(specs).replace("</", "<\\/"),
    )


def _health_table(rows: Sequence[Mapping[str, Any]], now: dt.datetime) -> str:
    """Per dataset: records, quarantined share, files quarantined whole and freshness, written for people."""
    head = "".join(
        f"<th>{c}</th>"
        for c in (
            "dataset",
            "status",
            "records",
            "landed",
            "quarantined",
            "files",
            "whole files quarantined",
            "last ingested",
        )
    )
    body = []
    for row in rows:
        status = str(row.get("status", "ok"))
        body.append(
            f'<tr data-dataset="{html.escape(str(row["dataset"]))}" class="{status}">'
            f"<td>{html.escape(str(row['dataset']))}</td>"
            f'<td class="status">{status}</td>'
            f"<td>{int(row['received']):,}</td><td>{int(row['landed']):,}</td>"
            f"<td>{int(row['quarantined']):,} ({float(row['quarantine_rate']) * 100:.1f} %)</td>"
            f"<td>{int(row.get('files', 0)):,}</td><td>{int(row.get('files_quarantined', 0)):,}</td>"
            f"<td>{html.escape(_relative(str(row.get('last_ingested_at', '')), now))}</td></tr>"
        )
    return f'<table class="health" id="freshness"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Data lake dashboard</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 20px 24px; color: #222; background: #fafafa; }}
h1 {{ font-size: 22px; margin: 0 0 4px; }} h2 {{ font-size: 18px; margin: 28px 0 8px; }} h3 {{ font-size: 14px; }}
.meta {{ color: #666; font-size: 12px; }} .scope {{ font-size: 13px; margin: 8px 0; max-width: 1100px; }}
.kpis {{ display: flex; gap: 16px; margin: 12px 0; }}
.kpi {{ background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 12px 18px; min-width: 220px; }}
.kpi .label {{ color: #666; font-size: 12px; }} .kpi .value {{ font-size: 26px; font-weight: 600; }}
.kpi .unit {{ font-size: 14px; color: #666; font-weight: 400; }} .kpi .note {{ font-size: 11px; color: #666; }}
.change {{ font-size: 12px; }} .change.up {{ color: #2e7d32; }} .change.down {{ color: #c62828; }}
.change.flat {{ color: #666; }}
.grid {{ display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 16px; max-width: 1352px; }}
.panel[data-panel="forecast_vs_actuals"] {{ grid-column: 1 / -1; }}
.panel {{ background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 4px 16px 8px; overflow: hidden; }}
.panel h3 {{ margin: 8px 0; }}
.empty {{ color: #a00; font-size: 13px; max-width: 520px; }}
table.health {{ border-collapse: collapse; background: #fff; font-size: 13px; }}
table.health td, table.health th {{ border: 1px solid #ddd; padding: 4px 8px; text-align: right; }}
table.health td:first-child, table.health th {{ text-align: left; }}
table.health tr.ok td.status {{ color: #2e7d32; font-weight: 600; }}
table.health tr.check td.status {{ color: #c62828; font-weight: 600; }}
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
<h1>Sales dashboard</h1>
<div class="meta">generated {generated} by lakebox from the curated tables, read as the bi persona</div>
<p class="scope" id="scope">{scope}</p>
{cards}
<h2>Sales, forecast and clickstream</h2>
<div class="grid">{business}</div>
<h2>Pipeline health</h2>
<h3>Datasets: records, quarantine and freshness</h3>
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


BI_PERSONA = "bi"
"""The persona the page reads as: QuickSight's role in the template (its Lake Formation grants apply here too)."""


@dataclass(frozen=True)
class DashboardReport:
    """What `lakebox dashboard` did: the page, whether it was reused as it was, the queries run, the time taken."""

    path: Path
    reused: bool
    generated_at: dt.datetime
    queries: int
    seconds: float


def build_dashboard(
    box: Lakebox,
    out: Path | None = None,
    *,
    persona: str = BI_PERSONA,
    progress: Callable[[str], None] | None = None,
) -> DashboardReport:
    """Write the dashboard page, or reuse the one written last when nothing it shows changed since (ADR 0025).

    The queries run as `persona`, in its workgroup with its Lake Formation grants enforced, as QuickSight's data
    source runs them with its role: a table the persona may not read fails its chart with Athena's reason. The page
    is reused when its key (`page_key`) is the one recorded beside it and the file is the one written then.
    """
    from lakebox.services import governance

    started = time.monotonic()
    say = progress or (lambda _: None)
    path = out or box.home.dashboard
    database = str(box.stack.parameters.get("GlueDatabaseName", "data_lake_db"))
    access = governance.access_for(box.stack, persona)
    workgroup = access.workgroups[0]
    governance.check_workgroup(access, workgroup)
    say("dashboard: checking what changed since the last page")
    records = HealthRecords.scan(box)
    key = page_key(box, records, access=access, database=database)
    kept = _reusable(path, key)
    if kept is not None:
        return DashboardReport(path, True, kept, 0, time.monotonic() - started)
    engine = box.athena_as(access, database)

    def run(sql: str) -> tuple[Sequence[str], Sequence[Sequence[Any]], int]:
        result = engine.query(sql, workgroup=workgroup, database=database)
        return result.columns, result.rows, result.bytes_scanned

    try:
        datasets = run_queries(run, database, lambda step: say(f"dashboard: {step}"))
    finally:
        engine.close()
    say("dashboard: drawing the charts")
    generated_at = dt.datetime.now(dt.UTC)
    page = render(datasets, pipeline_health(box, now=generated_at, records=records), generated_at=generated_at)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    _key_file(path).write_text(
        json.dumps({"key": key, "page": _digest(page.encode()), "generated_at": generated_at.isoformat()}),
        encoding="utf-8",
    )
    return DashboardReport(path, False, generated_at, len(datasets), time.monotonic() - started)


def write_dashboard(box: Lakebox, out: Path | None = None, *, persona: str = BI_PERSONA) -> Path:
    """Write (or reuse, see `build_dashboard`) the dashboard page; return its path."""
    return build_dashboard(box, out, persona=persona).path


def page_key(box: Lakebox, records: HealthRecords, *, access: Access, database: str) -> str:
    """A digest of everything the page shows but the time: the curated zone's objects (what the queries read), the
    runs and manifests, the persona and its access, the database, the dashboard SQL and this module's code."""
    digest = hashlib.sha256()
    persona = [access.persona, access.role, sorted(access.readable), list(access.workgroups), access.enforced]
    digest.update(json.dumps([persona, access.role_name, database]).encode())
    digest.update(Path(__file__).read_bytes())
    for key, query in sorted(dashboard_queries().items()):
        digest.update(f"\n{key}\n{query.template}".encode())
    s3 = box.session.client("s3")
    bucket = box.bucket("CuratedBucket")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            digest.update(f"\n{item['Key']}\t{item.get('ETag', '')}\t{item.get('Size', 0)}".encode())
    for items in (records.runs, records.manifests):
        rows = sorted(json.dumps(item, sort_keys=True, default=str) for item in items)
        digest.update("\n".join(rows).encode())
    return digest.hexdigest()


def _key_file(page: Path) -> Path:
    return page.with_name(f".{page.name}.key.json")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _reusable(page: Path, key: str) -> dt.datetime | None:
    """When the page at `page` was written, if it was written for `key` and is still as written; else None."""
    try:
        recorded = json.loads(_key_file(page).read_text(encoding="utf-8"))
        if recorded.get("key") != key or recorded.get("page") != _digest(page.read_bytes()):
            return None
        return dt.datetime.fromisoformat(str(recorded["generated_at"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None

"""What the curated tables must hold for a set of delivered files, computed with pandas from the contracts and SQL.

Nothing here reads the pipeline's code: the rules are the contracts (`datalake.contracts`), the curated SQL
(`sql/curated/`, `sql/views/`) and the semantics below.

- A record is valid iff its contract accepts it, judged as ingestion judges it (see `judge`). Its values are
  the contract's parsed values; its event date is the UTC date of its event-time field.
- Ingestion order: files in the order they were delivered; within a file, line order.
- sales: one row per transaction_id across all of history (not per date): the latest ingested valid record
  wins, wherever its event date lies. revenue = quantity x unit_price, exact.
- products and customers carry a version, `updated_at`: every version is kept; the same (id, updated_at)
  delivered twice keeps the later ingestion. `*_current` holds, per id, the version with the greatest updated_at,
  whatever the delivery order.
- Divisions in the curated SQL (`average_transaction_value`, `average_unit_price`) are Athena (Trino) DECIMAL
  divisions: exact, rounded HALF_UP to 2 places.
- daily_sales_by_region: one row per (sale_date, region, currency), as its SQL says.
- customer_aggregates: one row per (customer_id, currency) over the whole history; segment, region and country
  from customers_current (null when the customer has no version).
- product_performance: one row per (sale_date, product_id, currency). product_name and category are point in
  time: each sale takes the product version valid at its event time (the greatest updated_at <= event_time; a
  sale earlier than every version takes the earliest version; 'unknown' when the product has no version at
  all), and a row takes the attributes of its latest sale that day. revenue_rank_in_category =
  RANK() OVER (PARTITION BY sale_date, category, currency ORDER BY revenue DESC). cost is point in time per sale:
  quantity x the unit_cost of the product version valid at its event time, known only when that version has a
  unit_cost and its currency is the sale's; a row's cost is the sum when every sale of the row has one, else null;
  profit = revenue - cost (null with it).
- A sale dated before 1900 is a legal record and counts like any other.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pandas as pd

from datalake.contracts import Contract, get_dataset
from tests.integration.truth.judge import judge_csv, judge_json_lines, micros, utc_instant
from tests.integration.truth.scenario import File

Row = dict[str, Any]

KEYS: dict[str, tuple[str, ...]] = {
    "daily_sales_by_region": ("sale_date", "region", "currency"),
    "product_performance": ("sale_date", "product_id", "currency"),
    "customer_aggregates": ("customer_id", "currency"),
    "products_current": ("product_id",),
    "customers_current": ("customer_id",),
}
"""Each curated table's grain: the columns that identify a row."""


def divide_half_up(numerator: Decimal, denominator: int) -> Decimal:
    """numerator / denominator rounded HALF_UP to 2 places, exactly (both positive; numerator has 2 places)."""
    cents = int(numerator * 100)
    quotient = (2 * cents + denominator) // (2 * denominator)
    return Decimal(quotient).scaleb(-2)


@dataclass(frozen=True)
class Valid:
    """A valid record and its place in ingestion order."""

    model: Contract
    order: tuple[int, int]


def valid_records(files: Sequence[File]) -> dict[str, list[Valid]]:
    """Every valid record of `files` (in delivery order), by dataset."""
    found: dict[str, list[Valid]] = {}
    for index, delivered in enumerate(files):
        dataset = get_dataset(delivered.dataset)
        if delivered.name.endswith(".csv"):
            judged = judge_csv(dataset, delivered.body.decode("utf-8"))
        else:
            judged = judge_json_lines(dataset, delivered.body)
        found.setdefault(dataset.name, []).extend(
            Valid(j.model, (index, j.line)) for j in judged if j.model is not None
        )
    return found


def latest_by(records: list[Valid], key: Any) -> dict[Any, Contract]:
    """One record per `key(model)`: the latest in ingestion order."""
    kept: dict[Any, Valid] = {}
    for record in records:
        k = key(record.model)
        if k not in kept or record.order > kept[k].order:
            kept[k] = record
    return {k: v.model for k, v in kept.items()}


class Versions:
    """Every version of each id of a reference dataset, ordered by updated_at."""

    def __init__(self, records: list[Valid], id_field: str) -> None:
        by_version = latest_by(records, lambda m: (getattr(m, id_field), micros(m.updated_at)))  # type: ignore[attr-defined]
        self.of: dict[str, list[tuple[int, Contract]]] = {}
        for (ident, version), model in sorted(by_version.items()):
            self.of.setdefault(ident, []).append((version, model))

    def current(self) -> dict[str, Contract]:
        """Per id, the version with the greatest updated_at."""
        return {ident: versions[-1][1] for ident, versions in self.of.items()}

    def as_of(self, ident: str, moment: dt.datetime) -> Contract | None:
        """The version valid at `moment`: the greatest updated_at <= moment, else the earliest; None without any."""
        versions = self.of.get(ident)
        if not versions:
            return None
        index = bisect.bisect_right([v for v, _ in versions], micros(moment)) - 1
        return versions[max(index, 0)][1]


class Oracle:
    """The expected rows of every curated table and view after the pipeline has processed `files`."""

    def __init__(self, files: Sequence[File]) -> None:
        records = valid_records(files)
        self.products = Versions(records.get("products", []), "product_id")
        self.customers = Versions(records.get("customers", []), "customer_id")
        sales = latest_by(records.get("sales", []), lambda m: m.transaction_id)  # type: ignore[attr-defined]
        self.sales = pd.DataFrame([self._sale(m) for m in sales.values()])

    def _sale(self, sale: Any) -> Row:
        moment = utc_instant(sale.event_time)
        product = self.products.as_of(sale.product_id, moment)
        return {
            "transaction_id": sale.transaction_id,
            "event_time": micros(moment),
            "event_date": moment.date(),
            "customer_id": sale.customer_id,
            "product_id": sale.product_id,
            "region": sale.region,
            "currency": sale.currency,
            "quantity": sale.quantity,
            "revenue": sale.quantity * sale.unit_price,
            "product_name": product.name if product else "unknown",  # type: ignore[attr-defined]
            "category": product.category if product else "unknown",  # type: ignore[attr-defined]
            "cost": self._cost(sale, product),
        }

    @staticmethod
    def _cost(sale: Any, product: Any) -> Decimal | None:
        """What the sale cost: its quantity at the unit cost of the product version it took, in the sale's currency."""
        if product is None or product.unit_cost is None or product.currency != sale.currency:
            return None
        return Decimal(sale.quantity * product.unit_cost)

    def tables(self) -> dict[str, list[Row]]:
        """Every curated table and view, as rows of Python values (Decimal money, dates, UTC datetimes)."""
        return {
            "daily_sales_by_region": self.daily_sales_by_region(),
            "product_performance": self.product_performance(),
            "customer_aggregates": self.customer_aggregates(),
            "products_current": self.products_current(),
            "customers_current": self.customers_current(),
        }

    def daily_sales_by_region(self) -> list[Row]:
        rows = []
        for (day, region, currency), group in self.sales.groupby(["event_date", "region", "currency"]):
            revenue = sum(group["revenue"], Decimal(0))
            rows.append(
                {
                    "sale_date": day,
                    "region": region,
                    "currency": currency,
                    "transactions": len(group),
                    "customers": group["customer_id"].nunique(),
                    "units": int(group["quantity"].sum()),
                    "revenue": revenue,
                    "average_transaction_value": divide_half_up(revenue, len(group)),
                }
            )
        return rows

    def product_performance(self) -> list[Row]:
        rows = []
        for (day, product, currency), group in self.sales.groupby(["event_date", "product_id", "currency"]):
            latest = group.loc[group["event_time"].idxmax()]
            revenue = sum(group["revenue"], Decimal(0))
            units = int(group["quantity"].sum())
            costs = list(group["cost"])
            cost = None if any(c is None or c != c for c in costs) else sum(costs, Decimal(0))
            rows.append(
                {
                    "sale_date": day,
                    "product_id": product,
                    "currency": currency,
                    "product_name": latest["product_name"],
                    "category": latest["category"],
                    "transactions": len(group),
                    "customers": group["customer_id"].nunique(),
                    "units": units,
                    "revenue": revenue,
                    "average_unit_price": divide_half_up(revenue, units),
                    "cost": cost,
                    "profit": None if cost is None else revenue - cost,
                }
            )
        for row in rows:
            peers = [
                r["revenue"]
                for r in rows
                if (r["sale_date"], r["category"], r["currency"])
                == (row["sale_date"], row["category"], row["currency"])
            ]
            row["revenue_rank_in_category"] = 1 + sum(1 for revenue in peers if revenue > row["revenue"])
        return rows

    def customer_aggregates(self) -> list[Row]:
        current = self.customers.current()
        rows = []
        for (customer, currency), group in self.sales.groupby(["customer_id", "currency"]):
            revenue = sum(group["revenue"], Decimal(0))
            version: Any = current.get(customer)
            rows.append(
                {
                    "customer_id": customer,
                    "segment": version.segment if version else None,
                    "region": version.region if version else None,
                    "country": version.country if version else None,
                    "currency": currency,
                    "transactions": len(group),
                    "units": int(group["quantity"].sum()),
                    "lifetime_revenue": revenue,
                    "average_transaction_value": divide_half_up(revenue, len(group)),
                    "first_purchase_date": group["event_date"].min(),
                    "last_purchase_date": group["event_date"].max(),
                    "active_days": group["event_date"].nunique(),
                }
            )
        return rows

    def products_current(self) -> list[Row]:
        return [
            {
                "product_id": m.product_id,
                "name": m.name,
                "category": m.category,
                "list_price": m.list_price,
                "unit_cost": m.unit_cost,
                "currency": m.currency,
                "active": m.active,
                "updated_at": utc_instant(m.updated_at),
            }
            for m in self.products.current().values()  # type: ignore[attr-defined]
        ]

    def customers_current(self) -> list[Row]:
        return [
            {
                "customer_id": m.customer_id,
                "segment": m.segment,
                "region": m.region,
                "country": m.country,
                "signup_date": utc_instant(m.signup_date),
                "updated_at": utc_instant(m.updated_at),
            }
            for m in self.customers.current().values()  # type: ignore[attr-defined]
        ]


# ------------------------------------------------------------------------------------------------ diffs


def normalize(value: Any) -> Any:
    """A value as read from a table, in the oracle's form: UTC-aware datetimes, Python ints, dates."""
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if hasattr(value, "item") and not isinstance(value, (str, bytes, Decimal)):
        return value.item()
    return value


def diff(table: str, expected: list[Row], actual: list[Row], limit: int = 20) -> list[str]:
    """Missing, extra, duplicated and differing rows of one table (the first `limit` of each), readable."""
    key = KEYS[table]
    columns = [c for c in expected[0] if c not in key] if expected else []
    want = {tuple(r[k] for k in key): r for r in expected}
    got: dict[tuple[Any, ...], Row] = {}
    duplicated = []
    for row in actual:
        row = {name: normalize(value) for name, value in row.items()}
        k = tuple(row.get(c) for c in key)
        if k in got:
            duplicated.append(k)
        got[k] = row
    lines = []
    absent = [c for c in columns if actual and c not in actual[0]]
    if absent:
        lines.append(f"{table}: columns {absent} are missing")
    missing = sorted(want.keys() - got.keys(), key=str)
    extra = sorted(got.keys() - want.keys(), key=str)
    differing = []
    for k in sorted(want.keys() & got.keys(), key=str):
        changed = {c: (want[k][c], got[k].get(c)) for c in columns if c not in absent and want[k][c] != got[k].get(c)}
        if changed:
            differing.append((k, changed))
    for label, items in (("missing", missing), ("extra", extra), ("duplicated", duplicated)):
        if items:
            lines.append(f"{table}: {len(items)} {label} rows (key {', '.join(key)}), e.g.:")
            lines.extend(f"    {k} {got.get(k, want.get(k))}" for k in items[:limit])
    if differing:
        lines.append(f"{table}: {len(differing)} of {len(want)} rows differ (expected -> actual), e.g.:")
        for k, changed in differing[:limit]:
            shown = "; ".join(f"{c}: {w!r} -> {a!r}" for c, (w, a) in changed.items())
            lines.append(f"    {k}: {shown}")
    return lines

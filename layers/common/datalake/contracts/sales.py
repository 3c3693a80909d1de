"""Contract for `sales`: one line of a point-of-sale or online transaction."""

from __future__ import annotations

from typing import Literal

from datalake.contracts.base import (
    Check,
    Contract,
    Curated,
    Currency,
    Dataset,
    Delivery,
    Derived,
    EventTime,
    Identifier,
    Lookup,
    Measure,
    Money,
    Quantity,
    Rollup,
)


class Sale(Contract):
    """A sold line: who bought what, where, when, and at what unit price."""

    transaction_id: Identifier
    event_time: EventTime
    customer_id: Identifier
    product_id: Identifier
    store_id: Identifier
    region: Literal["north", "south", "east", "west", "central", "online"]
    quantity: Quantity
    unit_price: Money
    currency: Currency
    payment_method: Literal["card", "cash", "wallet", "transfer"]
    channel: Literal["store", "web", "mobile"]


TOTALS = (Measure("transactions", "count"), Measure("units", "sum", "quantity"), Measure("revenue", "sum", "revenue"))
"""Sold lines, units and revenue: what every rollup of the sales sums."""

DATASET = Dataset(
    name="sales",
    contract=Sale,
    key=("transaction_id",),
    event_time="event_time",
    version="1.0.0",
    lookups=(Lookup("products", "product_id"), Lookup("customers", "customer_id")),
    # quantity (at most 10^4) times unit_price (below 10^10) always fits, with the price's two decimals kept exactly
    derived=(Derived("revenue", "decimal(18,2)", "CAST(quantity AS DECIMAL(10,0)) * unit_price"),),
    checks=(
        Check("positive", ("quantity",)),
        Check("positive", ("unit_price",)),
        Check("equals_product", ("revenue", "quantity", "unit_price")),
        Check("freshness"),
    ),
    deliveries=frozenset({Delivery.FILE, Delivery.API}),
    curated=(
        Curated("daily_sales_by_region", partition_column="sale_date"),
        Curated("product_performance", partition_column="sale_date"),
        # one row per customer, day and currency: what customer_aggregates sums instead of every sale (ADR 0027)
        Curated("customer_daily_sales", partition_column="sale_date"),
        Curated("customer_aggregates", reads=("customers",)),
    ),
    # per-day sums the curated tables read instead of every sale (ADR 0030); distinct customers only at their grain
    rollups=(
        Rollup(
            "sales_by_region_day",
            ("region", "currency"),
            (*TOTALS, Measure("customers", "count_distinct", "customer_id")),
        ),
        Rollup(
            "sales_by_product_day",
            ("product_id", "currency"),
            (*TOTALS, Measure("customers", "count_distinct", "customer_id")),
        ),
        Rollup("sales_by_customer_day", ("customer_id", "currency"), TOTALS),
    ),
)

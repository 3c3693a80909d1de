"""Contract for `products`: the product reference data (usually CSV)."""

from __future__ import annotations

from typing import Literal

from datalake.contracts.base import Check, Contract, Currency, Dataset, EventTime, Identifier, Money, Name


class Product(Contract):
    """A product in the catalogue, with its list price and what one unit costs the business."""

    product_id: Identifier
    name: Name
    category: Literal["electronics", "grocery", "apparel", "home", "toys", "sports", "beauty", "books"]
    list_price: Money
    currency: Currency
    active: bool
    updated_at: EventTime
    unit_cost: Money | None = None
    """What one unit costs the business, in the product's `currency` (version 1.1.0: optional, so older versions and
    files without the column stay valid; profit is unknown for a sale whose product version has none)."""


DATASET = Dataset(
    name="products",
    contract=Product,
    key=("product_id",),
    event_time="updated_at",
    version="1.1.0",
    version_field="updated_at",
    keep_versions=True,
    checks=(Check("positive", ("list_price",)),),
)

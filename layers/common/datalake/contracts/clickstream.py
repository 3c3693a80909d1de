"""Contract for `clickstream`: one interaction event from the web or mobile apps."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import StringConstraints

from datalake.contracts.base import Check, Contract, Curated, Dataset, Delivery, EventTime, Identifier

PagePath = Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=r"^/")]


class ClickEvent(Contract):
    """A page view, product view, cart change or checkout by a visitor's session."""

    event_id: Identifier
    event_time: EventTime
    session_id: Identifier
    customer_id: Identifier | None = None
    event_type: Literal["page_view", "product_view", "add_to_cart", "remove_from_cart", "checkout", "search"]
    page: PagePath
    product_id: Identifier | None = None
    device: Literal["desktop", "mobile", "tablet"]


DATASET = Dataset(
    name="clickstream",
    contract=ClickEvent,
    key=("event_id",),
    event_time="event_time",
    version="1.0.0",
    checks=(Check("freshness"),),
    deliveries=frozenset({Delivery.FILE, Delivery.STREAM}),
    curated=(
        Curated("clickstream_hourly", partition_column="event_date"),
        Curated("daily_active_users", partition_column="activity_date"),
    ),
)

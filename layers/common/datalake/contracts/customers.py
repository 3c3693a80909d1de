"""Contract for `customers`: the customer reference data (usually CSV)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import StringConstraints

from datalake.contracts.base import Contract, Dataset, EventTime, Identifier, Name

CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]


class Customer(Contract):
    """A customer and the segment and region the business reports them under."""

    customer_id: Identifier
    name: Name
    segment: Literal["consumer", "small_business", "enterprise"]
    region: Literal["north", "south", "east", "west", "central", "online"]
    country: CountryCode
    signup_date: EventTime
    updated_at: EventTime


DATASET = Dataset(
    name="customers",
    contract=Customer,
    key=("customer_id",),
    event_time="updated_at",
    version="1.0.0",
    version_field="updated_at",
    keep_versions=True,
)

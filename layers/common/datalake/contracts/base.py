"""What a data contract is: a strict pydantic model plus the dataset facts the pipeline needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints


class Format(StrEnum):
    """Object formats an ingestion can read."""

    JSON_LINES = "jsonl"
    JSON_ARRAY = "json"
    JSON_DOCUMENT = "json-document"
    """One JSON value per record, however many lines it spans (a pretty-printed object, or several in a row)."""
    CSV = "csv"


class Contract(BaseModel):
    """Base of every contract: strict types, no unknown fields, immutable records."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


Currency = Literal["USD", "EUR", "GBP", "JPY", "CAD", "AUD", "CHF", "SEK", "INR", "BRL"]
"""ISO 4217 codes the business accepts."""

Money = Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=2)]
"""A positive amount with at most two decimal places."""

Quantity = Annotated[int, Field(gt=0, le=10_000)]
"""A positive count of units in one line."""

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")]
"""A business key: letters, digits, `_` and `-`."""

Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]

EventTime = AwareDatetime
"""A timestamp that carries its time zone; naive timestamps are rejected."""


@dataclass(frozen=True)
class Dataset:
    """A dataset as the pipeline sees it.

    Parameters
    ----------
    name
        The dataset's name: the landing key prefix, the raw zone folder and the catalog table.
    contract
        The pydantic model every record must satisfy.
    key
        Fields that identify a record; the processed zone keeps one record per key.
    event_time
        The field that dates a record; raw and processed data are partitioned by its date.
    formats
        Object formats accepted on the landing bucket.
    version
        The contract version, recorded in every manifest.
    """

    name: str
    contract: type[Contract]
    key: tuple[str, ...]
    event_time: str
    formats: frozenset[Format] = field(default_factory=lambda: frozenset(Format))
    version: str = "1.0.0"

    def __post_init__(self) -> None:
        fields = self.contract.model_fields
        missing = [f for f in (*self.key, self.event_time) if f not in fields]
        if missing:
            raise ValueError(f"dataset {self.name}: fields {missing} are not in {self.contract.__name__}")

"""The registry of datasets: adding a dataset is one contract module and one line here."""

from __future__ import annotations

from types import MappingProxyType

from datalake.contracts import clickstream, customers, products, sales
from datalake.contracts.base import Contract, Dataset, Format, Lookup
from datalake.exceptions import UnknownDatasetError

REGISTRY: MappingProxyType[str, Dataset] = MappingProxyType(
    {d.name: d for d in (sales.DATASET, products.DATASET, customers.DATASET, clickstream.DATASET)}
)


def get_dataset(name: str) -> Dataset:
    """Return the registered dataset called `name`, or raise `UnknownDatasetError`."""
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UnknownDatasetError(f"unknown dataset {name!r} (known: {known})") from None


__all__ = ["REGISTRY", "Contract", "Dataset", "Format", "Lookup", "get_dataset"]

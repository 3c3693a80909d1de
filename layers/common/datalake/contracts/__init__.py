"""The registry of datasets: every module of this package with a `DATASET` is one, found without any other edit."""

from __future__ import annotations

import importlib
import pkgutil
from types import MappingProxyType

from datalake.contracts.base import Contract, Dataset, Delivery, Format, Lookup
from datalake.exceptions import UnknownDatasetError


def _discover() -> dict[str, Dataset]:
    found: dict[str, Dataset] = {}
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module.name == "base" or module.name.startswith("_"):
            continue
        dataset = getattr(importlib.import_module(f"{__name__}.{module.name}"), "DATASET", None)
        if not isinstance(dataset, Dataset):
            continue
        if dataset.name in found:
            raise ValueError(f"dataset {dataset.name!r} is declared twice (in {module.name})")
        found[dataset.name] = dataset
    return found


REGISTRY: MappingProxyType[str, Dataset] = MappingProxyType(_discover())


def get_dataset(name: str) -> Dataset:
    """Return the registered dataset called `name`, or raise `UnknownDatasetError`."""
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UnknownDatasetError(f"unknown dataset {name!r} (known: {known})") from None


def delivered_by(delivery: Delivery) -> list[Dataset]:
    """The registered datasets whose records arrive by `delivery`, by name."""
    return [d for name, d in sorted(REGISTRY.items()) if delivery in d.deliveries]


__all__ = ["REGISTRY", "Contract", "Dataset", "Delivery", "Format", "Lookup", "delivered_by", "get_dataset"]

"""The registry of datasets: every module of this package with a `DATASET` is one, found without any other edit."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from types import MappingProxyType

from datalake.contracts.base import Contract, Dataset, Delivery, Format, Lookup
from datalake.exceptions import UnknownDatasetError


def discover(path: Iterable[str], package: str) -> dict[str, Dataset]:
    """The datasets declared by the modules of `package` (found on `path`): each module's `DATASET`, by name.

    Modules named `base` or starting with `_` hold shared parts, not datasets; a module without a `DATASET`
    is skipped.

    Raises
    ------
    ValueError
        When two modules declare the same dataset name.
    """
    found: dict[str, Dataset] = {}
    for module in sorted(pkgutil.iter_modules(list(path)), key=lambda m: m.name):
        if module.name == "base" or module.name.startswith("_"):
            continue
        dataset = getattr(importlib.import_module(f"{package}.{module.name}"), "DATASET", None)
        if not isinstance(dataset, Dataset):
            continue
        if dataset.name in found:
            raise ValueError(f"dataset {dataset.name!r} is declared twice (in {module.name})")
        found[dataset.name] = dataset
    return found


_DATASETS: dict[str, Dataset] = discover(__path__, __name__)
REGISTRY: MappingProxyType[str, Dataset] = MappingProxyType(_DATASETS)
"""Every registered dataset by name (read-only; `registered` adds some for the length of a block)."""


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


@contextmanager
def registered(*datasets: Dataset) -> Iterator[None]:
    """Register `datasets` for the length of the block, replacing any of the same name; the registry is restored after.

    A dataset declared outside this package (a test fixture module, a contract's next version) is seen by every
    reader of the registry inside the block, as a module of this package would be.
    """
    saved = dict(_DATASETS)
    _DATASETS.update({dataset.name: dataset for dataset in datasets})
    try:
        yield
    finally:
        _DATASETS.clear()
        _DATASETS.update(saved)


__all__ = [
    "REGISTRY",
    "Contract",
    "Dataset",
    "Delivery",
    "Format",
    "Lookup",
    "delivered_by",
    "discover",
    "get_dataset",
    "registered",
]

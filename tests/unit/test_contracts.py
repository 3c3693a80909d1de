"""Data contracts: strict types, aware timestamps, bounded money, known currencies, no unknown fields."""

from __future__ import annotations

import datetime as dt
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from datalake.contracts import REGISTRY, discover, get_dataset, registered
from datalake.contracts.base import Dataset
from datalake.contracts.sales import Sale
from datalake.exceptions import UnknownDatasetError

VALID_SALE: dict[str, Any] = {
    "transaction_id": "T1",
    "event_time": "2026-11-01T10:00:00+02:00",
    "customer_id": "C1",
    "product_id": "P1",
    "store_id": "S1",
    "region": "north",
    "quantity": 2,
    "unit_price": "19.99",
    "currency": "USD",
    "payment_method": "card",
    "channel": "store",
}


def test_valid_sale_holds_its_instant_in_utc_and_exact_money() -> None:
    sale = Sale.model_validate_json(json.dumps(VALID_SALE))
    assert sale.unit_price == Decimal("19.99")
    assert sale.event_time == dt.datetime.fromisoformat(VALID_SALE["event_time"])
    assert sale.event_time.utcoffset() == dt.timedelta(0)


def test_an_instant_with_no_date_in_utc_is_rejected_with_its_reason() -> None:
    # GIVEN a legal RFC 3339 spelling whose instant falls before 0001-01-01 in UTC
    record = VALID_SALE | {"event_time": "0001-01-01T00:30:00+01:00"}
    # WHEN the contract judges it THEN it is rejected, not landed on a date that cannot exist
    with pytest.raises(ValidationError, match="outside the years 0001-9999 in UTC"):
        Sale.model_validate_json(json.dumps(record))


@pytest.mark.parametrize(
    ("change", "error_type"),
    [
        ({"quantity": 0}, "greater_than"),
        ({"quantity": "2"}, "int_type"),
        ({"unit_price": "1.234"}, "decimal_max_places"),
        ({"unit_price": "-1"}, "greater_than"),
        ({"currency": "XYZ"}, "literal_error"),
        ({"event_time": "2026-11-01T10:00:00"}, "timezone_aware"),
        ({"coupon": "X"}, "extra_forbidden"),
        ({"transaction_id": ""}, "string_too_short"),
    ],
)
def test_sale_contract_rejects_bad_values(change: dict[str, Any], error_type: str) -> None:
    # GIVEN a sale with one bad value WHEN it is validated from JSON THEN the error names the rule it broke
    with pytest.raises(ValidationError) as caught:
        Sale.model_validate_json(json.dumps(VALID_SALE | change))
    assert error_type in {e["type"] for e in caught.value.errors()}


def test_every_dataset_declares_key_event_time_and_version() -> None:
    for name, dataset in REGISTRY.items():
        assert dataset.name == name
        assert set(dataset.key) <= set(dataset.contract.model_fields)
        assert dataset.event_time in dataset.contract.model_fields
        assert dataset.version.count(".") == 2


def test_a_dataset_must_name_fields_its_contract_has() -> None:
    with pytest.raises(ValueError, match="not in Sale"):
        Dataset(name="bad", contract=Sale, key=("nope",), event_time="event_time")


def test_unknown_dataset_is_a_clear_error() -> None:
    # (a name no dataset can have, so the test holds whatever `lakebox dataset new` adds, `orders` included)
    with pytest.raises(UnknownDatasetError, match="unknown dataset 'no-such-dataset'"):
        get_dataset("no-such-dataset")


def test_registered_adds_a_dataset_for_the_block_and_restores_the_registry(tmp_path: Path) -> None:
    # GIVEN a contract module outside the package, found by the registry's own discovery
    package = tmp_path / "extra_contracts"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "meters.py").write_text(
        "from datalake.contracts.base import Contract, Dataset, EventTime\n"
        "class Meter(Contract):\n    meter_id: str\n    read_at: EventTime\n"
        "DATASET = Dataset(name='meters', contract=Meter, key=('meter_id',), event_time='read_at')\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        found = discover([str(package)], "extra_contracts")
    finally:
        sys.path.remove(str(tmp_path))
    before = dict(REGISTRY)
    # WHEN it is registered for a block THEN every reader sees it there, and only there
    with registered(*found.values()):
        assert get_dataset("meters").key == ("meter_id",)
        assert set(REGISTRY) == {*before, "meters"}
    assert dict(REGISTRY) == before
    with pytest.raises(UnknownDatasetError):
        get_dataset("meters")

"""The validation fast path never changes a verdict: pydantic is the judge."""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
from decimal import Decimal
from typing import Annotated, Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field, StringConstraints, ValidationError

from datalake.contracts import REGISTRY, get_dataset
from datalake.contracts.base import Contract, Dataset, EventTime, NaiveAsUtc
from datalake.validation import CANONICAL_TIME, RecordValidator, canonical_time, compile_fast_path
from lakebox.app.sample import SampleSpec, sales_lines

BASE: dict[str, Any] = {
    "transaction_id": "T1",
    "event_time": "2026-11-01T10:00:00Z",
    "customer_id": "C1",
    "product_id": "P1",
    "store_id": "S1",
    "region": "north",
    "quantity": 2,
    "unit_price": 19.99,
    "currency": "USD",
    "payment_method": "card",
    "channel": "store",
}

json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["2026-11-01T10:00:00Z", "2026-11-01T10:00:00", "2026-11-01", "12.345", "0.01", "1e3", "USD"]),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_contract_compiles_to_a_fast_path(name: str) -> None:
    struct, _ = compile_fast_path(REGISTRY[name].contract)
    assert set(struct.__struct_fields__) == set(REGISTRY[name].contract.model_fields)


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(sorted(BASE)), value=json_values)
def test_fast_path_and_pydantic_agree_on_mutated_sales(field: str, value: Any) -> None:
    # GIVEN a valid sale with one field replaced by an arbitrary JSON value
    document = json.dumps(BASE | {field: value}).encode()
    # WHEN the validator judges it, and pydantic judges it alone
    verdict = RecordValidator(get_dataset("sales")).check_json(document)
    try:
        get_dataset("sales").contract.model_validate_json(document)
        accepted = True
    except ValidationError:
        accepted = False
    # THEN they agree
    assert verdict.ok is accepted


def test_generated_defects_are_all_rejected_and_clean_records_all_accepted() -> None:
    validator = RecordValidator(get_dataset("sales"))
    for line, defect in sales_lines(SampleSpec(sales=3_000, bad_rate=0.2)):
        assert validator.check_json(line).ok is (defect is None), (defect, line)


def test_rejection_explains_each_broken_rule() -> None:
    document = json.dumps(BASE | {"quantity": -1, "currency": "XYZ"}).encode()
    verdict = RecordValidator(get_dataset("sales")).check_json(document)
    assert {e.loc for e in verdict.errors} == {"quantity", "currency"}


def test_invalid_utf8_is_reported_as_such() -> None:
    verdict = RecordValidator(get_dataset("sales")).check_json(b'{"transaction_id":"T\xff1"}')
    assert [e.type for e in verdict.errors] == ["utf8_invalid"]


def test_text_rows_are_converted_by_their_contract_types() -> None:
    validator = RecordValidator(get_dataset("products"))
    row = {
        "product_id": "P1",
        "name": "Kettle",
        "category": "home",
        "list_price": "24.50",
        "currency": "EUR",
        "active": "false",
        "updated_at": "2026-10-01T00:00:00+00:00",
    }
    assert validator.check_text_row(row).ok
    assert not validator.check_text_row(row | {"list_price": "abc"}).ok
    assert not validator.check_text_row(row | {"updated_at": "2026-10-01T00:00:00"}).ok


@pytest.mark.parametrize("value", ["T1\x00C1", "T1\x00", "\x00", "ok\x00ok\x00ok"])
def test_grouped_pattern_check_cannot_be_fooled_by_separator_characters(value: str) -> None:
    # GIVEN identifiers that share one pattern are matched together, joined by NUL
    validator = RecordValidator(get_dataset("sales"))
    document = json.dumps(BASE | {"customer_id": value}).encode()
    # WHEN a value itself holds NUL THEN the record is rejected, as the contract rejects it
    assert validator.fast_event_time(document) is None
    assert not validator.check_json(document).ok


@pytest.mark.parametrize(
    "spelling",
    [
        "2025-06-01T10:00Z",
        "2025-06-01t10:00:00z",
        "1748772000",
        "2025-06-01T10:00:00+23:59",
        "2025-06-01T23:59:59.9999999Z",
        "2025-06-01 10:00:00Z",
        "1899-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        "2025-06-01T10:00:00.5+05:30",
    ],
)
def test_what_lands_carries_the_contracts_value_in_canonical_form(spelling: str) -> None:
    # GIVEN a sale whose event time is a legal but unusual spelling
    document = json.dumps(BASE | {"event_time": spelling}).encode()
    parsed = get_dataset("sales").contract.model_validate_json(document).event_time
    # WHEN the validator judges it
    verdict = RecordValidator(get_dataset("sales")).check_json(document)
    landed = json.loads(verdict.document(document))
    # THEN the event time (hence the raw partition) is the contract's, and what lands is the text as received
    # only where it is already canonical, else the contract's value as canonical UTC text
    assert verdict.event_time == parsed
    assert landed["event_time"] in {spelling, canonical_time(parsed)}
    fast = RecordValidator(get_dataset("sales")).fast_event_time(document) is not None
    assert (landed["event_time"] == spelling) is fast
    assert fast is (CANONICAL_TIME.fullmatch(spelling) is not None and not spelling.startswith("0001"))
    assert dt.datetime.fromisoformat(landed["event_time"]) == parsed
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)", landed["event_time"])


def test_a_canonical_record_lands_as_received_and_a_seven_digit_fraction_is_truncated() -> None:
    validator = RecordValidator(get_dataset("sales"))
    canonical = json.dumps(BASE).encode()
    assert validator.check_json(canonical).canonical is None
    late = json.dumps(BASE | {"event_time": "2025-06-01T23:59:59.9999999Z"}).encode()
    assert validator.check_json(late).event_time == dt.datetime(2025, 6, 1, 23, 59, 59, 999999, tzinfo=dt.UTC)


@pytest.mark.parametrize(("text", "value"), [("on", True), ("off", False), ("yes", True), ("no", False), ("1", True)])
def test_csv_booleans_land_as_json_booleans(text: str, value: bool) -> None:
    row = {
        "product_id": "P1",
        "name": "Kettle",
        "category": "home",
        "list_price": "24.5",
        "currency": "EUR",
        "active": text,
        "updated_at": "2026-10-01T00:00:00+02:00",
    }
    verdict = RecordValidator(get_dataset("products")).check_text_row(row)
    assert verdict.canonical is not None
    landed = json.loads(verdict.canonical)
    assert landed["active"] is value
    assert landed["list_price"] == 24.5
    assert landed["updated_at"] == "2026-09-30T22:00:00.000000Z"


class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


class Dimensions(Contract):
    width_cm: float
    height_cm: float


class Reading(Contract):
    """A contract of every field type a dataset may reasonably use."""

    reading_id: Annotated[str, StringConstraints(pattern=r"^R\d+$")]
    taken_at: EventTime
    value: Annotated[float, Field(ge=0)]
    valid: bool
    day: dt.date
    colour: Colour
    level: Literal[1, 2, 3]
    size: Dimensions | None = None
    tags: list[str] | None = None


READING = Dataset(name="readings", contract=Reading, key=("reading_id",), event_time="taken_at")
READING_BASE: dict[str, Any] = {
    "reading_id": "R1",
    "taken_at": "2026-11-01T10:00:00Z",
    "value": 1.5,
    "valid": True,
    "day": "2026-11-01",
    "colour": "red",
    "level": 2,
}


def test_a_contract_with_floats_dates_enums_nested_models_and_lists_compiles_with_per_field_fallbacks() -> None:
    # GIVEN a contract of every reasonable field type WHEN its fast path is compiled THEN every field is in it
    struct, _ = compile_fast_path(Reading, raw_decimals=True)
    assert set(struct.__struct_fields__) == set(Reading.model_fields)
    validator = RecordValidator(READING)
    # AND a record without the nested and list fields is judged by the fast path, one with them by pydantic
    assert validator.fast_event_time(json.dumps(READING_BASE).encode()) is not None
    nested = READING_BASE | {"size": {"width_cm": 2, "height_cm": 3.5}, "tags": ["a"]}
    assert validator.fast_event_time(json.dumps(nested).encode()) is None
    verdict = validator.check_json(json.dumps(nested).encode())
    assert verdict.ok and json.loads(verdict.document(b""))["size"] == {"width_cm": 2.0, "height_cm": 3.5}


def test_a_nullable_decimal_in_the_scaffolds_form_is_judged_by_the_fast_path_as_pydantic_judges_it() -> None:
    # GIVEN a nullable decimal written as `lakebox dataset new` writes it: the Field inside Annotated, under `| None`
    class Payment(Contract):
        payment_id: str
        paid_at: EventTime
        amount: Annotated[Decimal, Field(max_digits=6, decimal_places=2)] | None = None

    payments = Dataset(name="payments", contract=Payment, key=("payment_id",), event_time="paid_at")
    # WHEN its fast path is compiled THEN the field has its decimal rule (before: a per-field fallback to pydantic)
    for raw in (False, True):
        _, rules = compile_fast_path(Payment, raw_decimals=raw)
        assert type(rules["amount"]).__name__ == "_DecimalRule", rules["amount"]
    # AND the fast path's verdicts are pydantic's: within bounds, null, absent, too many places or digits
    validator = RecordValidator(payments)
    for amount in ("12.34", "null", None, "12.345", "12345.6", '"1.5"'):
        body = '{"payment_id": "P1", "paid_at": "2026-11-02T10:00:00Z"' + (
            f', "amount": {amount}}}' if amount is not None else "}"
        )
        verdict = validator.check_json(body.encode())
        try:
            Payment.model_validate_json(body)
        except ValidationError:
            assert not verdict.ok, body
        else:
            assert verdict.ok, (body, verdict.errors)
    assert validator.fast_event_time(b'{"payment_id": "P1", "paid_at": "2026-11-02T10:00:00Z", "amount": 1.5}')


def test_values_inside_lists_models_and_dicts_land_canonical() -> None:
    # GIVEN a contract whose timestamps and decimals sit in a list, a nested model and a dict
    class Leg(Contract):
        cost: Annotated[Decimal, Field(max_digits=12, decimal_places=2)]
        at: EventTime

    class Journey(Contract):
        journey_id: str
        started_at: EventTime
        legs: list[Leg]
        stops: dict[str, EventTime]
        fares: dict[str, Annotated[Decimal, Field(max_digits=12, decimal_places=2)]]

    record = {
        "journey_id": "J1",
        "started_at": "2026-11-01T10:00:00+01:00",
        "legs": [{"cost": "1E+1", "at": "2026-11-01T11:00:00+01:00"}],
        "stops": {"York": "2026-11-01T12:00:00+01:00"},
        "fares": {"adult": "1.5E+1"},
    }
    # WHEN it is judged
    verdict = RecordValidator(Dataset("journeys", Journey, ("journey_id",), "started_at")).check_json(
        json.dumps(record).encode()
    )
    # THEN what lands holds every one of them in canonical form (UTC, six fraction digits, plain decimals)
    landed = verdict.document(b"")
    assert b'"legs":[{"cost":10,"at":"2026-11-01T10:00:00.000000Z"}]' in landed
    assert b'"stops":{"York":"2026-11-01T11:00:00.000000Z"}' in landed
    assert b'"fares":{"adult":15}' in landed


reading_values = st.one_of(
    json_values,
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["2026-11-01", "2026-13-01", "blue", "green", 1, 2, 4, [], ["x"], {"width_cm": 1}]),
    st.fixed_dictionaries({"width_cm": st.floats(-5, 5), "height_cm": st.integers(0, 3)}),
)


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from([*READING_BASE, "size", "tags"]), value=reading_values)
def test_fast_path_and_pydantic_agree_on_every_field_type(field: str, value: Any) -> None:
    # GIVEN a valid reading with one field replaced by an arbitrary JSON value
    document = json.dumps(READING_BASE | {field: value}).encode()
    # WHEN the validator judges it, and pydantic judges it alone
    verdict = RecordValidator(READING).check_json(document)
    try:
        model = Reading.model_validate_json(document)
    except ValidationError:
        model = None
    # THEN they agree on the verdict and on the event time
    assert verdict.ok is (model is not None)
    if model is not None:
        assert verdict.event_time == model.taken_at


class Sighting(Contract):
    """A contract whose producers write timestamps without a zone."""

    sighting_id: str
    seen_at: NaiveAsUtc
    reported_at: NaiveAsUtc | None = None


SIGHTING = Dataset(name="sightings", contract=Sighting, key=("sighting_id",), event_time="seen_at")
time_spellings = st.one_of(
    st.sampled_from(
        [
            "2026-11-01T10:00:00",
            "2026-11-01 10:00:00.5",
            "2026-11-01T10:00:00Z",
            "2026-11-01T10:00:00.123456+05:30",
            "2026-11-01T10:00:00-23:59",
            "2026-11-01",
            "0001-01-01T00:30:00+01:00",
            "2026-02-30T00:00:00",
            "noon",
            "",
        ]
    ),
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda t: t.isoformat()),
    st.integers(0, 2_000_000_000),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(["seen_at", "reported_at"]), value=time_spellings)
def test_naive_as_utc_reads_zone_less_time_as_utc_and_the_fast_path_agrees(field: str, value: Any) -> None:
    # GIVEN a record whose timestamp is spelt with a zone, without one, or not at all
    document = json.dumps({"sighting_id": "S1", "seen_at": "2026-11-01T10:00:00Z", field: value}).encode()
    # WHEN the validator judges it, and pydantic judges it alone
    verdict = RecordValidator(SIGHTING).check_json(document)
    try:
        model = Sighting.model_validate_json(document)
    except ValidationError:
        model = None
    # THEN they agree, and an accepted instant is held in UTC (a zone-less one read as UTC)
    assert verdict.ok is (model is not None)
    if model is not None:
        assert verdict.event_time == model.seen_at
        assert model.seen_at.utcoffset() == dt.timedelta(0)


def test_naive_as_utc_compiles_to_the_fast_path_and_lands_canonical_utc() -> None:
    # GIVEN the zone-less contract WHEN a canonical zoned record and a zone-less one are judged
    validator = RecordValidator(SIGHTING)
    zoned = b'{"sighting_id": "S1", "seen_at": "2026-11-01T10:00:00+02:00"}'
    naive = b'{"sighting_id": "S2", "seen_at": "2026-11-01 10:00:00"}'
    # THEN the zoned one passes the fast path as received, the naive one lands as the UTC instant
    assert validator.fast_event_time(zoned) == dt.datetime.fromisoformat("2026-11-01T10:00:00+02:00")
    verdict = validator.check_json(naive)
    assert verdict.ok and json.loads(verdict.document(naive))["seen_at"] == "2026-11-01T10:00:00.000000Z"
    row = validator.check_text_row({"sighting_id": "S3", "seen_at": "2026-11-01T10:00:00", "reported_at": None})
    assert row.ok and json.loads(row.canonical or b"")["seen_at"] == "2026-11-01T10:00:00.000000Z"

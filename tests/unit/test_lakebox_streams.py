"""lakebox's stream events for any stream-delivered dataset, and its template reader's Fn::ForEach expansion."""

from __future__ import annotations

import datetime as dt
import enum
import json
from decimal import Decimal
from typing import Annotated, Any, Literal

import pytest
from pydantic import Field

from datalake.contracts import Delivery, get_dataset, registered
from datalake.contracts.base import Contract, Dataset, EventTime, Identifier
from datalake.validation import validator_for
from lakebox.app.stream import default_stream_dataset, event_payloads, stream_datasets
from lakebox.cfn.template import expand_for_each
from lakebox.errors import LakeboxError

NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)


class Tier(enum.StrEnum):
    FREE = "free"
    PAID = "paid"


class Reading(Contract):
    """A nested part of a telemetry event."""

    sensor: Identifier
    value: float


class Telemetry(Contract):
    """A device's report, with the field types a contract may use."""

    report_id: Identifier
    measured_at: EventTime
    device: Identifier
    battery: Annotated[float, Field(ge=0, le=1)]
    charging: bool
    level: Annotated[int, Field(gt=0, le=5)]
    cost: Annotated[Decimal, Field(gt=0, max_digits=8, decimal_places=2)]
    tier: Tier
    mode: Literal["idle", "busy"]
    day: dt.date
    note: str | None = None
    readings: list[Reading]


TELEMETRY = Dataset(
    name="telemetry",
    contract=Telemetry,
    key=("report_id",),
    event_time="measured_at",
    deliveries=frozenset({Delivery.STREAM}),
)


def test_events_of_a_dataset_without_a_sample_generator_come_from_its_contract() -> None:
    # GIVEN a stream-delivered dataset the sample domain has no generator for
    validator = validator_for(TELEMETRY)
    # WHEN lakebox generates its events, some of them bad
    payloads = event_payloads(TELEMETRY, 3, 0.1, 200, 0, now=NOW)
    # THEN every good event passes the contract and every bad one fails it; each is keyed by its dataset key
    assert len(payloads) == 200 and 0 < sum(bad for *_, bad in payloads) < 60
    for key, data, bad in payloads:
        verdict = validator.check_json(data)
        assert (verdict.event_time is None) is bad, (data, verdict.errors)
        assert key == json.loads(data)["report_id"]
    good = [json.loads(d) for _, d, bad in payloads if not bad]
    assert all(
        dt.timedelta(0) <= NOW - dt.datetime.fromisoformat(e["measured_at"]) < dt.timedelta(hours=3) for e in good
    )


def test_clickstream_events_come_from_the_sample_domain() -> None:
    payloads = event_payloads(get_dataset("clickstream"), 7, 0.0, 20, 0, now=NOW)
    events = [json.loads(data) for _, data, _ in payloads]
    assert all(e["event_id"].startswith("E07") for e in events)
    assert [key for key, *_ in payloads] == [e["event_id"] for e in events]


def test_the_default_stream_dataset_comes_from_the_registry() -> None:
    # GIVEN the registry: one stream-delivered dataset  THEN it is the default
    assert stream_datasets() == ["clickstream"] and default_stream_dataset() == "clickstream"
    # AND WHEN a second one is registered THEN there is no default: the dataset must be named
    with registered(TELEMETRY):
        assert stream_datasets() == ["clickstream", "telemetry"]
        with pytest.raises(LakeboxError, match=r"--dataset.*clickstream, telemetry"):
            default_stream_dataset()


# ------------------------------------------------------------------------------------------ Fn::ForEach
DOCUMENT: dict[str, Any] = {"Parameters": {"Names": {"Type": "CommaDelimitedList", "Default": "Ab, Cd"}}}


def test_a_loop_stamps_its_fragment_out_per_item_and_merges_it_into_its_mapping() -> None:
    section = {
        "Kept": {"Type": "AWS::SNS::Topic"},
        "Fn::ForEach::Topics": [
            "Name",
            ["Red", "Blue-2"],
            {
                "&{Name}Topic": {
                    "Type": "AWS::SNS::Topic",
                    "Properties": {"TopicName": {"Fn::Sub": "${AWS::StackName}-${Name}"}, "Tag": {"Ref": "Name"}},
                }
            },
        ],
    }
    out = expand_for_each(section, DOCUMENT)
    assert list(out) == ["Kept", "RedTopic", "Blue2Topic"]
    assert out["Blue2Topic"]["Properties"] == {"TopicName": {"Fn::Sub": "${AWS::StackName}-Blue-2"}, "Tag": "Blue-2"}


def test_loops_nest_inside_properties_and_take_a_list_parameter() -> None:
    section = {
        "Fn::ForEach::Outer": [
            "Name",
            {"Ref": "Names"},
            {
                "${Name}Queue": {
                    "Properties": {"Fn::ForEach::Inner": ["Side", ["L", "R"], {"${Name}${Side}": {"Ref": "Side"}}]}
                }
            },
        ]
    }
    out = expand_for_each(section, DOCUMENT)
    assert out == {
        "AbQueue": {"Properties": {"AbL": "L", "AbR": "R"}},
        "CdQueue": {"Properties": {"CdL": "L", "CdR": "R"}},
    }


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"A": {}, "Fn::ForEach::X": ["N", ["A"], {"${N}": {}}]}, "produces A"),
        ({"Fn::ForEach::X": ["N", ["A"]]}, r"must be \[Identifier, Collection"),
        ({"Fn::ForEach::X": ["N", {"Ref": "Missing"}, {"${N}": {}}]}, "not a parameter with a default"),
        ({"Fn::ForEach::X": ["N", [1, 2], {"${N}": {}}]}, "list of strings"),
    ],
)
def test_a_malformed_loop_is_refused_with_its_name(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        expand_for_each(section, DOCUMENT)

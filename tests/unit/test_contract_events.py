"""Events generated from a contract alone (`contract_events`) are ones the contract accepts, defects apart."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from datalake.contracts import REGISTRY
from lakebox.app.sample import SampleSpec, contract_events

END = dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_generated_events_satisfy_their_contract(name: str) -> None:
    dataset = REGISTRY[name]
    events = list(contract_events(dataset)(SampleSpec(end=END, bad_rate=0.1), 200, 0))
    good = [event for event, defect in events if defect is None]
    assert len(events) == 200 and 0 < len(good) < 200
    for event in good:
        record = dataset.contract.model_validate_json(json.dumps(event))  # as ingestion reads a line
        moment = getattr(record, dataset.event_time)
        assert END - dt.timedelta(hours=1) <= moment <= END
    for event, defect in events:
        if defect is not None:
            assert dataset.event_time not in event

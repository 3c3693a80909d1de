"""Scaffolded datasets go from sample to query with no other edit: a corpus of sample shapes end to end.

Each sample (nullable decimals, nullable timestamps, nested objects and lists, a semicolon CSV with gaps, plain JSON
lines) is turned into a module by `lakebox dataset new` as a user runs it, registered as the registry would find it,
put through the box's landing bucket, processed by one pipeline run over every registered dataset, and read back
from the processed and raw tables by local Athena, every value as the generated contract parsed it.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from datalake.contracts import Dataset, discover, registered
from lakebox.cli import main
from lakebox.sfn import Execution

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AS_OF = dt.datetime(2026, 11, 5, 6, 0, tzinfo=dt.UTC)


def _jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


PAYMENTS = [
    {"payment_id": "P1", "paid_at": "2026-11-02T10:00:00Z", "amount": 12.5, "fee": None, "tip": 1.25},
    {"payment_id": "P2", "paid_at": "2026-11-02T11:00:00+01:00", "amount": 7, "fee": 0.25},
    {"payment_id": "P3", "paid_at": "2026-11-03T09:30:00Z", "amount": None, "fee": 1.05, "tip": None},
    {"payment_id": "P4", "paid_at": "2026-11-03T23:30:00-02:00", "amount": 100.75, "fee": None, "tip": 0.5},
]
"""Nullable decimals: null, missing and present, with scale 2."""

VISITS = [
    {
        "visit_id": "V1",
        "arrived_at": "2026-11-02T08:00:00Z",
        "left_at": "2026-11-02T09:15:00Z",
        "seen": "2026-11-02 08:05:00",
    },
    {"visit_id": "V2", "arrived_at": "2026-11-02T10:00:00+02:00", "left_at": None, "seen": None},
    {"visit_id": "V3", "arrived_at": "2026-11-04T12:00:00.250Z", "seen": "2026-11-04 12:01:00"},
    {"visit_id": "V4", "arrived_at": "2026-11-04T13:00:00Z", "left_at": "2026-11-04T14:00:00.5+00:00"},
]
"""Nullable timestamps: aware (null, missing) and zone-less (read as UTC)."""

PARCELS = [
    {
        "parcel_id": "PA1",
        "sent_at": "2026-11-02T07:00:00Z",
        "sender": {"name": "Ada", "address": {"city": "Leeds", "lat": 53.8}},
        "items": [
            {"sku": "S-1", "price": 9.99, "packed_at": "2026-11-02T06:00:00Z"},
            {"sku": "S-2", "price": None, "packed_at": None},
        ],
        "labels": ["fragile", "gift"],
    },
    {
        "parcel_id": "PA2",
        "sent_at": "2026-11-03T07:30:00+01:00",
        "sender": {"name": "Bo", "address": {"city": "York", "lat": None}},
        "items": [],
        "labels": [],
    },
    {
        "parcel_id": "PA3",
        "sent_at": "2026-11-03T18:00:00Z",
        "sender": {"name": "Cy", "address": {"city": "Hull"}},
        "items": [{"sku": "S-3", "price": 120.5, "packed_at": "2026-11-03T17:00:00Z"}],
    },
]
"""Nested: a model in a model, a list of models with nullable decimals and timestamps, a list of text."""

READINGS_CSV = (
    "reading_id;meter;read_at;kwh;cost;fixed_at;note;phase;ok;read_on;status\n"
    "R1;M-1;2026-11-02T10:00:00Z;12.5;3.10;;;1;true;2026-11-02;new\n"
    "R2;M-2;2026-11-02T11:00:00+01:00;7;;2026-11-03T08:00:00Z;checked;;;;\n"
    "R3;M-1;2026-11-04T09:30:00Z;0.25;0.07;;;3;false;2026-11-04;new\n"
    "R4;M-3;2026-11-04T10:00:00Z;3;1.00;2026-11-04T11:00:00Z;;2;true;;done\n"
    "R5;M-3;2026-11-04T12:00:00Z;4;1.20;;;2;false;2026-11-04;done\n"
)
"""CSV, semicolon-separated, with gaps in decimals, timestamps, text, ints, booleans, dates and an enum."""

TICKETS = [
    {"ticket_id": "T1", "opened_at": "2026-11-02T09:00:00Z", "closed_at": None, "priority": 2, "refund": "12.00"},
    {"ticket_id": "T2", "opened_at": "2026-11-03T09:00:00Z", "closed_at": "2026-11-03T10:00:00Z", "refund": None},
    {"ticket_id": "T3", "opened_at": "2026-11-03T11:00:00Z", "priority": None, "tags": ["vip"]},
]
"""JSON documents (pretty-printed objects one after another): nullable ints, timestamps, numbers as text, a list."""

EVENTS = [
    {"event_id": "E1", "ts": "2026-11-02T10:00:00Z", "kind": "click", "count": 3, "ok": True, "score": 1.5e-3},
    {"event_id": "E2", "ts": "2026-11-02T10:05:00Z", "kind": "view", "count": 0, "ok": False, "score": 2.25},
    {"event_id": "E3", "ts": "2026-11-03T10:00:00Z", "kind": "click", "count": 12, "ok": True, "score": 0.5},
    {"event_id": "E4", "ts": "2026-11-04T10:00:00Z", "kind": "view", "count": 1, "ok": True, "score": 3e2},
]
"""Plain JSON lines: an enum, ints, booleans, floats in exponent notation."""


@dataclass(frozen=True)
class Shape:
    """One sample of the corpus, and how its processed rows are read back."""

    name: str
    file: str
    text: str
    records: int
    key: str
    select: str
    """The processed columns compared (Athena's spelling)."""
    expected: Callable[[Any], tuple[Any, ...]]
    """The same columns from the record as the generated contract parsed it."""


def utc(moment: dt.datetime | None) -> dt.datetime | None:
    """How Athena returns a `timestamp`: the UTC instant without a zone."""
    return None if moment is None else moment.astimezone(dt.UTC).replace(tzinfo=None)


def _sub(value: BaseModel | None, name: str) -> Any:
    return None if value is None else getattr(value, name)


SHAPES = (
    Shape(
        "payments",
        "payments.jsonl",
        _jsonl(PAYMENTS),
        len(PAYMENTS),
        "payment_id",
        "payment_id, paid_at, amount, fee, tip",
        lambda m: (m.payment_id, utc(m.paid_at), m.amount, m.fee, m.tip),
    ),
    Shape(
        "visits",
        "visits.jsonl",
        _jsonl(VISITS),
        len(VISITS),
        "visit_id",
        "visit_id, arrived_at, left_at, seen",
        lambda m: (m.visit_id, utc(m.arrived_at), utc(m.left_at), utc(m.seen)),
    ),
    Shape(
        "parcels",
        "parcels.json",
        json.dumps(PARCELS, indent=2),
        len(PARCELS),
        "parcel_id",
        # element_at: items[1] fails on an empty list, as it does in Athena
        "parcel_id, sent_at, sender.name, sender.address.city, sender.address.lat, cardinality(items),"
        " element_at(items, 1).price, element_at(items, 1).packed_at, labels",
        lambda m: (
            m.parcel_id,
            utc(m.sent_at),
            m.sender.name,
            m.sender.address.city,
            m.sender.address.lat,
            len(m.items),
            m.items[0].price if m.items else None,
            utc(m.items[0].packed_at) if m.items else None,
            m.labels,
        ),
    ),
    Shape(
        "readings",
        "readings.csv",
        READINGS_CSV,
        5,
        "reading_id",
        "reading_id, meter, read_at, kwh, cost, fixed_at, note, phase, ok, read_on, status",
        lambda m: (
            m.reading_id,
            m.meter,
            utc(m.read_at),
            m.kwh,
            m.cost,
            utc(m.fixed_at),
            m.note,
            m.phase,
            m.ok,
            m.read_on,
            m.status,
        ),
    ),
    Shape(
        "tickets",
        "tickets.json",
        "".join(json.dumps(r, indent=2) + "\n" for r in TICKETS),
        len(TICKETS),
        "ticket_id",
        "ticket_id, opened_at, closed_at, priority, refund, tags",
        lambda m: (m.ticket_id, utc(m.opened_at), utc(m.closed_at), m.priority, m.refund, m.tags),
    ),
    Shape(
        "events",
        "events.jsonl",
        _jsonl(EVENTS),
        len(EVENTS),
        "event_id",
        "event_id, ts, kind, count, ok, score",
        lambda m: (m.event_id, utc(m.ts), m.kind, m.count, m.ok, m.score),
    ),
)


@dataclass
class Corpus:
    """The box after every sample was scaffolded, put and processed by one run."""

    box: Any
    datasets: dict[str, Dataset]
    sources: dict[str, str]
    manifests: dict[str, dict[str, Any]]
    execution: Execution
    database: str
    workgroup: str

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return self.box.athena.query(sql, workgroup=self.workgroup, database=self.database).rows


def scaffold(folder: Path, shape: Shape) -> Path:
    """Write the sample and run `lakebox dataset new` on it, as a user does; return the module's path."""
    sample = folder / shape.file
    sample.write_text(shape.text)
    out = folder / "scaffolded" / f"{shape.name}.py"
    assert main(["dataset", "new", shape.name, "--from", str(sample), "--out", str(out)]) == 0
    return sample


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    from lakebox.box import open_box
    from tests.conftest import ROOT, unregistered

    folder = tmp_path_factory.mktemp("corpus")
    package = folder / "scaffolded"
    package.mkdir()
    (package / "__init__.py").write_text("")
    with unregistered(*(shape.name for shape in SHAPES)):  # a project may have registered one of these names
        samples = {shape.name: scaffold(folder, shape) for shape in SHAPES}
    sys.path.insert(0, str(folder))
    try:
        datasets = discover([str(package)], package.name)
        sources = {name: (package / f"{name}.py").read_text() for name in datasets}
        with registered(*datasets.values()), pytest.MonkeyPatch.context() as env:
            env.setenv("LAKEBOX_HOME", str(folder / "lake"))
            with open_box(ROOT, reuse=False) as box:
                env.setenv("AWS_ENDPOINT_URL", box.endpoint)
                manifests = {}
                for name, sample in samples.items():
                    _, deliveries = box.put_file(sample, name)
                    (delivery,) = deliveries
                    manifests[name] = delivery.result
                execution = box.execute(
                    "PipelineStateMachine",
                    {"forecast": False, "as_of": AS_OF.isoformat()},
                    execution_name="scaffold-corpus-1",
                )
                yield Corpus(
                    box,
                    datasets,
                    sources,
                    manifests,
                    execution,
                    str(box.stack.parameters["GlueDatabaseName"]),
                    str(box.stack.ref("AnalyticsWorkGroup")),
                )
    finally:
        sys.path.remove(str(folder))
        for module in [m for m in sys.modules if m.split(".")[0] == package.name]:
            del sys.modules[module]


def parsed(corpus: Corpus, shape: Shape) -> list[BaseModel]:
    """The sample's records as the generated contract parses them."""
    contract = corpus.datasets[shape.name].contract
    if shape.file.endswith(".csv"):
        import csv
        import io

        from datalake.validation import RecordValidator

        # a CSV row as ingestion converts it: its canonical JSON, then the contract
        validator = RecordValidator(corpus.datasets[shape.name])
        models = []
        for row in csv.DictReader(io.StringIO(shape.text), delimiter=";"):
            verdict = validator.check_text_row({k: (v if v != "" else None) for k, v in row.items()})
            assert verdict.ok and verdict.canonical is not None, verdict.errors
            models.append(contract.model_validate_json(verdict.canonical))
        return models
    if shape.name == "tickets":
        records = TICKETS
    elif shape.file.endswith(".json"):
        records = json.loads(shape.text)
    else:
        records = [json.loads(line) for line in shape.text.splitlines() if line]
    return [contract.model_validate_json(json.dumps(r)) for r in records]


def test_the_generated_modules_use_the_nullable_forms_that_broke_runs(corpus: Corpus) -> None:
    # GIVEN the modules `dataset new` wrote THEN they hold nullable decimals and timestamps, nested models and lists
    assert "Annotated[Decimal, Field(max_digits=" in corpus.sources["payments"]
    assert "| None = None" in corpus.sources["payments"]
    assert "EventTime | None = None" in corpus.sources["visits"]
    assert "NaiveAsUtc | None = None" in corpus.sources["visits"]
    assert "list[" in corpus.sources["parcels"] and "class " in corpus.sources["parcels"]
    assert corpus.datasets["readings"].csv_delimiter == ";"
    assert "int | None = None" in corpus.sources["readings"] and "bool | None = None" in corpus.sources["readings"]
    assert "Literal[" in corpus.sources["readings"]


@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
def test_every_sample_record_lands(corpus: Corpus, shape: Shape) -> None:
    manifest = corpus.manifests[shape.name]
    assert (manifest["records_read"], manifest["records_landed"], manifest["records_quarantined"]) == (
        shape.records,
        shape.records,
        0,
    ), manifest


def test_one_run_processes_every_scaffolded_dataset_and_the_gate_passes(corpus: Corpus) -> None:
    assert corpus.execution.status == "SUCCEEDED", (corpus.execution.error, corpus.execution.cause)
    for shape in SHAPES:
        assert shape.name in corpus.execution.output["datasets"]
        report = next(d for d in corpus.execution.output["quality"]["datasets"] if d["dataset"] == shape.name)
        assert report["passed"], report


@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
def test_the_processed_table_reads_back_every_value_as_the_contract_parsed_it(corpus: Corpus, shape: Shape) -> None:
    rows = corpus.query(f"SELECT {shape.select} FROM {shape.name} ORDER BY {shape.key}")
    want = sorted((shape.expected(m) for m in parsed(corpus, shape)), key=lambda r: r[0])
    assert rows == want
    assert any(isinstance(v, Decimal) for r in rows for v in r) or shape.name in ("visits", "events", "tickets")
    assert any(v is None for r in rows for v in r) or shape.name == "events"


@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
def test_the_raw_table_holds_every_landed_record(corpus: Corpus, shape: Shape) -> None:
    ((count, keys),) = corpus.query(f"SELECT count(*), count(DISTINCT {shape.key}) FROM raw_{shape.name}")
    assert (count, keys) == (shape.records, shape.records)

"""`lakebox dataset new`: a contract module inferred from a sample, which the registry finds and which accepts its
own sample through validation and a real ingestion of the sample file."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import subprocess
import sys
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from datalake.contracts import REGISTRY, Dataset, discover, get_dataset, registered
from datalake.ingest import IngestStatus
from datalake.validation import RecordValidator
from lakebox.app import scaffold
from lakebox.cli import main
from tests.conftest import ROOT
from tests.unit.test_ingest import Lake
from tests.unit.test_ingest import _create_lake as create_lake

NOW = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)
RUFF = Path(sys.executable).with_name("ruff")

ORDERS_CSV = (
    "\ufefforder_id;customer_id;status;amount;zip;ordered_at;shipped_on;gift;note;weight;placed_local\n"
    "O-001;C1;new;19.99;01234;2026-11-01T10:00:00+02:00;2026-11-02;true;;1.5e3;2026-11-01 10:00:00\n"
    "O-002;C2;paid;5;02345;2026-11-01T11:00:00Z;;false;fragile;2.25;2026-11-01 11:00:00\n"
    "O-003;C1;paid;7.5;12345;2026-11-02T09:30:00.250Z;2026-11-03;false;;0.001;2026-11-02 09:30:00\n"
    "O-004;C3;new;100.00;54321;2026-11-02T12:00:00Z;2026-11-03;TRUE;leave at door;3;2026-11-02 12:00:00\n"
)

READINGS = [
    {
        "reading_id": "R1",
        "meter": {"serial": "M-1", "site": {"code": "S1", "lat": 52.520008}},
        "read_at": "2026-11-01T10:00:00Z",
        "kwh": 12.5,
        "phases": [{"phase": 1, "volts": 229.5}, {"phase": 2, "volts": 230.1}],
        "tags": ["a", "b"],
        "ok": True,
        "comment": None,
        "label": "",
    },
    {
        "reading_id": "R2",
        "meter": {"serial": "M-2", "site": {"code": "S2", "lat": 48.8566}},
        "read_at": "2026-11-01T11:00:00+01:00",
        "kwh": 7,
        "phases": [],
        "tags": [],
        "ok": False,
        "label": "north",
    },
    {
        "reading_id": "R3",
        "meter": {"serial": "M-3", "site": {"code": "S1", "lat": 52.52}, "firmware": "1.2"},
        "read_at": "2026-11-02T08:00:00.5Z",
        "kwh": 0.25,
        "phases": [{"phase": 3, "volts": 231}],
        "tags": ["c"],
        "ok": True,
        "comment": "after repair",
    },
]


EXAMPLE_NAMES = ("orders", "order_lines", "readings", "visits", "things", "events", "broken", "bad", "deliveries")
"""The datasets these tests scaffold: hidden from the registry, in case the project registered one of them."""


@pytest.fixture(autouse=True)
def _examples_unregistered() -> Iterator[None]:
    from tests.conftest import unregistered

    with unregistered(*EXAMPLE_NAMES):
        yield


# ---------------------------------------------------------------------- helpers
@dataclass
class Generated:
    """A module written by `lakebox dataset new`, imported through the registry's discovery."""

    path: Path
    dataset: Dataset
    output: str


def generate(tmp_path: Path, name: str, sample: Path, *extra: str, capsys: pytest.CaptureFixture[str]) -> Generated:
    package = tmp_path / f"scaffolded_{name}"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    out = package / f"{name}.py"
    code = main(["dataset", "new", name, "--from", str(sample), "--out", str(out), *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    sys.path.insert(0, str(tmp_path))
    try:
        found = discover([str(package)], package.name)
    finally:
        sys.path.remove(str(tmp_path))
        for module in [m for m in sys.modules if m.split(".")[0] == package.name]:
            del sys.modules[module]
    return Generated(out, found[name], captured.out)


def assert_ruff_clean(path: Path) -> None:
    for command in (["format", "--check"], ["check"]):
        done = subprocess.run([str(RUFF), *command, str(path)], cwd=ROOT, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def field_type(dataset: Dataset, name: str) -> Any:
    return dataset.contract.model_fields[name].annotation


@pytest.fixture
def lake() -> Iterator[Lake]:
    """Landing and raw buckets and the manifests tables on moto, as the ingestion tests have them."""
    with mock_aws():
        yield create_lake()


# ---------------------------------------------------------------------- CSV
def test_a_csv_sample_becomes_a_clean_registered_contract_that_ingests_its_own_sample(
    tmp_path: Path, lake: Lake, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a semicolon-separated CSV with a BOM, empty values, mixed int/float, leading zeros, zone-less times
    sample = tmp_path / "orders.csv"
    sample.write_text(ORDERS_CSV)
    # WHEN a contract is generated from it
    generated = generate(tmp_path, "orders", sample, capsys=capsys)
    dataset = generated.dataset
    # THEN the module is ruff-clean, and its types follow the sample under the contract rules
    assert_ruff_clean(generated.path)
    contract = dataset.contract
    assert dataset.key == ("order_id",) and dataset.event_time == "ordered_at"
    assert dataset.csv_delimiter == ";" and set(dataset.formats) == {"csv"}
    assert contract.model_fields["order_id"].metadata[0].pattern == scaffold.IDENTIFIER_PATTERN.pattern
    assert contract.model_fields["amount"].metadata[0].decimal_places == 2
    assert typing.get_args(field_type(dataset, "status")) == ("new", "paid")
    assert contract.model_fields["zip"].annotation is str  # leading zeros kept as text
    assert contract.model_fields["weight"].annotation is float  # an exponent: not fixed-point
    assert field_type(dataset, "gift") is bool
    assert not contract.model_fields["shipped_on"].is_required()  # empty in one row
    assert not contract.model_fields["note"].is_required()
    assert contract.model_fields["placed_local"].annotation is dt.datetime  # NaiveAsUtc
    assert "# key (guessed" in generated.path.read_text() and "# event time (guessed" in generated.path.read_text()
    # AND the output says what was guessed, what was assumed and what to do next
    assert "guessed key: order_id" in generated.output and "guessed event time: ordered_at" in generated.output
    assert "read as UTC" in generated.output and "make test" in generated.output
    assert f"lakebox put {sample} --dataset orders" in generated.output  # the sample as named, to run as printed
    # AND registered, the validator accepts every sample row and a real ingestion of the file lands them all
    with registered(dataset):
        assert get_dataset("orders") is dataset
        validator = RecordValidator(dataset)
        sample_rows = scaffold.read_sample(sample).records
        assert all(validator.check_text_row(row).ok for row in sample_rows)
        manifest = lake.ingest("orders/orders.csv", sample.read_bytes())
    assert (manifest.status, manifest.records_read, manifest.records_landed) == (IngestStatus.LANDED, 4, 4)
    landed = {r["order_id"]: r for r in lake.raw_records("orders/")}
    assert landed["O-001"]["zip"] == "01234" and landed["O-002"]["amount"] == 5
    assert landed["O-001"]["placed_local"] == "2026-11-01T10:00:00.000000Z"
    assert landed["O-001"]["note"] is None and landed["O-004"]["gift"] is True
    # AND the Spark job has a type for every field (decimal with its scale, timestamps, dates)
    from pyspark.sql import types as T

    from glue.raw_to_processed import contract_schema

    spark_types = {f.name: f.dataType for f in contract_schema(dataset).fields}
    assert spark_types["amount"] == T.DecimalType(18, 2) and spark_types["placed_local"] == T.TimestampType()
    assert spark_types["shipped_on"] == T.DateType() and spark_types["zip"] == T.StringType()


def test_a_wide_comma_csv_gets_every_column_and_a_composite_key(
    tmp_path: Path, lake: Lake, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN 300 columns, no single unique column, a key made of an order and a line number
    columns = ["order_id", "line_no", "created_at", *(f"c{i:03d}" for i in range(297))]
    rows = [
        [f"O{n // 2}", str(n % 2 + 1), f"2026-11-0{n % 3 + 1}T00:00:00Z", *(str(n * i) for i in range(297))]
        for n in range(40)
    ]
    sample = tmp_path / "lines.csv"
    sample.write_text("\r\n".join(",".join(r) for r in [columns, *rows]) + "\r\n")
    # WHEN a contract is generated
    generated = generate(tmp_path, "order_lines", sample, capsys=capsys)
    # THEN every column is a field, the key is the unique pair, and the sample ingests whole
    assert list(generated.dataset.contract.model_fields) == columns
    assert generated.dataset.key == ("order_id", "line_no")
    assert_ruff_clean(generated.path)
    with registered(generated.dataset):
        manifest = lake.ingest("order_lines/lines.csv", sample.read_bytes())
    assert (manifest.records_read, manifest.records_landed) == (40, 40)


# ---------------------------------------------------------------------- JSON
@pytest.mark.parametrize("shape", ["lines", "array", "documents"])
def test_a_json_sample_gets_nested_models_and_lists_and_ingests_its_own_sample(
    shape: str, tmp_path: Path, lake: Lake, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN JSON lines (or one JSON array) with nested objects, lists of objects and scalars, gaps and nulls
    bodies = {
        "lines": "".join(json.dumps(r) + "\n" for r in READINGS),
        "array": json.dumps(READINGS, indent=2),
        "documents": "\n".join(json.dumps(r, indent=2) for r in READINGS),  # as jq writes them
    }
    body = bodies[shape].encode()
    sample = tmp_path / ("readings.jsonl" if shape == "lines" else "readings.json")
    sample.write_bytes(body)
    # WHEN a contract is generated
    generated = generate(tmp_path, "readings", sample, capsys=capsys)
    dataset = generated.dataset
    # THEN nested objects are models, lists typed by their items, gaps optional
    assert_ruff_clean(generated.path)
    fields = dataset.contract.model_fields
    assert dataset.key == ("reading_id",) and dataset.event_time == "read_at"
    meter = fields["meter"].annotation
    assert isinstance(meter, type) and set(meter.model_fields) == {"serial", "site", "firmware"}
    assert not meter.model_fields["firmware"].is_required()
    assert meter.model_fields["site"].annotation.model_fields["lat"].annotation is float  # six decimals
    phase = typing.get_args(fields["phases"].annotation)[0]
    assert set(phase.model_fields) == {"phase", "volts"} and phase.model_fields["phase"].annotation is int
    assert typing.get_args(fields["tags"].annotation)[0] is not None
    assert fields["kwh"].metadata[0].decimal_places == 2
    assert not fields["comment"].is_required()
    assert not fields["label"].is_required()  # missing in one record
    assert "label: Annotated[str, StringConstraints(max_length=16)] | None" in generated.path.read_text()  # "" seen
    # AND the registry sees it, validation accepts every record, and ingestion lands the file whole
    with registered(dataset):
        assert "readings" in REGISTRY
        validator = RecordValidator(dataset)
        assert all(validator.check_json(json.dumps(r).encode()).ok for r in READINGS)
        manifest = lake.ingest(f"readings/{sample.name}", body)
    assert (manifest.status, manifest.records_landed, manifest.records_quarantined) == (IngestStatus.LANDED, 3, 0)
    landed = {r["reading_id"]: r for r in lake.raw_records("readings/")}
    assert landed["R1"]["phases"][1] == {"phase": 2, "volts": 230.1}
    assert landed["R2"]["read_at"] == "2026-11-01T10:00:00.000000Z"
    assert landed["R1"]["label"] == "" and landed["R3"].get("label") is None


def test_a_gzipped_json_lines_sample_is_read_with_exact_numbers(tmp_path: Path) -> None:
    # GIVEN a gzip of JSON lines WHEN it is read THEN its records come out decoded, numbers exact
    path = tmp_path / "readings.jsonl.gz"
    path.write_bytes(
        gzip.compress(b'{"a": 1.50, "t": "2026-11-01T00:00:00Z"}\n{"a": 2, "t": "2026-11-01T00:00:01Z"}\n')
    )
    sample = scaffold.read_sample(path)
    assert sample.format == "jsonl" and sample.records[0]["a"] == Decimal("1.50") and len(sample.records) == 2


# ---------------------------------------------------------------------- guesses and refusals
def test_key_and_event_time_can_be_given_and_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = tmp_path / "orders.csv"
    sample.write_text(ORDERS_CSV)
    # GIVEN the key and event time named on the command line WHEN the contract is generated THEN they are used
    generated = generate(
        tmp_path, "orders", sample, "--key", "order_id,zip", "--event-time", "placed_local", capsys=capsys
    )
    assert generated.dataset.key == ("order_id", "zip") and generated.dataset.event_time == "placed_local"
    assert "given with --key" in generated.path.read_text()
    # AND a key with gaps, or an event time that is no timestamp, is refused with the reason
    out = tmp_path / "again.py"
    assert main(["dataset", "new", "orders", "--from", str(sample), "--out", str(out), "--key", "note"]) == 1
    assert "a key is never null" in capsys.readouterr().err
    assert main(["dataset", "new", "orders", "--from", str(sample), "--out", str(out), "--event-time", "zip"]) == 1
    assert "not all timestamps" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ("Order ID,at\nA,2026-11-01T00:00:00Z\n", ".csv", "cannot be contract fields"),
        ("id,class\nA,x\n", ".csv", "cannot be contract fields"),
        ("id,day\nA,2026-11-01\nB,2026-11-02\n", ".csv", "no timestamp field"),
        ("id,at\nA,2026-11-01T00:00:00Z\nA,2026-11-01T00:00:00Z\n", ".csv", "no column (or pair"),
        (
            '{"id": "A", "at": "2026-11-01T00:00:00Z", "zip": 1}\n'
            '{"id": "B", "at": "2026-11-01T00:00:00Z", "zip": "x"}\n',
            ".jsonl",
            "holds int and str values",
        ),
        ("[1, 2]", ".json", "not an object"),
        ("", ".csv", "is empty"),
        ("id,at\n", ".csv", "no rows"),
        ("id,at\nA,2026-11-01T00:00:00Z,extra\n", ".csv", "more columns than the header"),
    ],
)
def test_a_sample_that_cannot_make_a_contract_is_refused_with_its_reason(
    content: str, suffix: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = tmp_path / f"sample{suffix}"
    sample.write_text(content)
    out = tmp_path / "things.py"
    # WHEN a contract is asked of a sample that cannot make one THEN exit 1, one line saying why, nothing written
    assert main(["dataset", "new", "things", "--from", str(sample), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lakebox: error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_a_name_that_is_no_identifier_is_a_usage_error_and_a_registered_one_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = tmp_path / "orders.csv"
    sample.write_text(ORDERS_CSV)
    for bad in ("Orders", "order-lines", "1orders", "class", "base"):
        with pytest.raises(SystemExit) as exited:
            main(["dataset", "new", bad, "--from", str(sample), "--out", str(tmp_path / "x.py")])
        assert exited.value.code == 2
        assert "is not a dataset name" in capsys.readouterr().err
    # GIVEN a registered dataset's name WHEN a module is asked for it THEN it is refused, even with --force elsewhere
    assert main(["dataset", "new", "sales", "--from", str(sample), "--out", str(tmp_path / "sales.py"), "--force"]) == 1
    assert "already registered" in capsys.readouterr().err
    assert not (tmp_path / "sales.py").exists()
    # AND another registered dataset's module is never overwritten, whatever the flags
    sales_module = ROOT / "layers/common/datalake/contracts/sales.py"
    before = sales_module.read_text()
    assert main(["dataset", "new", "orders", "--from", str(sample), "--out", str(sales_module), "--force"]) == 1
    assert "declares dataset 'sales'" in capsys.readouterr().err and sales_module.read_text() == before


def test_the_default_module_lands_in_the_contracts_package_and_is_not_overwritten_without_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a project folder (a template.yaml) and a sample
    (tmp_path / "template.yaml").write_text("Resources: {}\n")
    sample = tmp_path / "orders.csv"
    sample.write_text(ORDERS_CSV)
    monkeypatch.chdir(tmp_path)
    # WHEN the command runs without --out THEN the module is the contracts package's NAME.py
    assert main(["dataset", "new", "orders", "--from", str(sample)]) == 0
    module = tmp_path / "layers/common/datalake/contracts/orders.py"
    first = module.read_text()
    assert "class Order(Contract):" in first and "move it to" not in capsys.readouterr().out
    # AND a second run is refused unless --force, which rewrites it
    module.write_text("# edited\n")
    assert main(["dataset", "new", "orders", "--from", str(sample)]) == 1
    assert "--force overwrites it" in capsys.readouterr().err and module.read_text() == "# edited\n"
    assert main(["dataset", "new", "orders", "--from", str(sample), "--force"]) == 0
    assert module.read_text() == first


def test_a_field_that_rejects_a_sample_value_is_loosened_until_the_whole_sample_is_accepted(tmp_path: Path) -> None:
    # GIVEN an inferred contract whose enum is spoiled to miss a value the sample has
    sample_path = tmp_path / "orders.csv"
    sample_path.write_text(ORDERS_CSV)
    inferred = scaffold.infer("orders", scaffold.read_sample(sample_path))
    status = inferred.fields["status"]
    assert status.enum == ["new", "paid"]
    status.enum = ["new"]
    # WHEN it is built THEN the field is loosened to text, and the report says so
    dataset = scaffold.build(inferred)
    assert dataset.contract.model_fields["status"].annotation is str
    assert inferred.loosened and inferred.loosened[0].startswith("status (record 2")
    assert not scaffold.rejections(dataset, inferred.sample)


def test_dataset_list_shows_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dataset", "list", "--json"]) == 0
    rows = {r["dataset"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(REGISTRY)
    assert rows["sales"]["key"] == ["transaction_id"] and "api" in rows["sales"]["deliveries"]
    assert rows["customers"]["event_time"] == "updated_at" and rows["customers"]["version"] == "1.0.0"
    assert rows["sales"]["curated"] == [t.name for t in REGISTRY["sales"].curated] != []
    # AND the table form lists every dataset
    assert main(["dataset", "list"]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in REGISTRY) and f"{len(REGISTRY)} registered datasets" in table


def test_a_big_sample_is_read_up_to_rows_and_the_report_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a gzipped sample of 5,000 JSON lines
    sample = tmp_path / "events.jsonl.gz"
    lines = (json.dumps({"event_id": f"E{n}", "at": f"2026-11-01T00:00:{n % 60:02d}Z", "n": n}) for n in range(5000))
    sample.write_bytes(gzip.compress("\n".join(lines).encode()))
    out = tmp_path / "events.py"
    # WHEN only the first 100 records are asked for, with the JSON report
    assert main(["dataset", "new", "events", "--from", str(sample), "--out", str(out), "--rows", "100", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # THEN 100 were read and judged, the report names the guesses and says the rest was not read
    assert report["records"] == 100 and report["key"] == ["event_id"] and report["event_time"] == "at"
    assert any("first 100 records" in note for note in report["notes"])
    assert report["format"] == "jsonl" and out.exists()


def test_a_broken_gzip_sample_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = tmp_path / "broken.csv.gz"
    sample.write_bytes(gzip.compress(b"id,at\n" * 1000)[:40])
    assert main(["dataset", "new", "broken", "--from", str(sample), "--out", str(tmp_path / "b.py")]) == 1
    assert "gzip" in capsys.readouterr().err


def test_a_column_named_like_the_modules_date_import_gets_another_alias(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a partition-style `dt` date column, as many exports have
    sample = tmp_path / "visits.csv"
    sample.write_text("visit_id,dt,at\nV1,2026-11-01,2026-11-01T00:00:00Z\nV2,,2026-11-01T01:00:00Z\n")
    # WHEN a contract is generated THEN `datetime` is imported by its own name, and the sample is accepted
    generated = generate(tmp_path, "visits", sample, capsys=capsys)
    assert "import datetime\n" in generated.path.read_text()
    assert generated.dataset.contract.model_fields["dt"].annotation == dt.date | None
    assert_ruff_clean(generated.path)
    # AND a column named like a type the module imports is refused with the reason
    (tmp_path / "bad.csv").write_text("visit_id,Decimal,at\nV1,1,2026-11-01T00:00:00Z\n")
    assert main(["dataset", "new", "bad", "--from", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "b.py")]) == 1
    assert "a name the module imports" in capsys.readouterr().err


def test_a_new_dataset_is_declared_in_the_template_so_the_template_checks_pass_with_no_hand_edit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lakebox.cfn import datasets as dataset_template
    from lakebox.cfn.template import load_template

    # GIVEN a copy of the project's template and a sample (before ADR 0021 the template checks then failed on a bare
    # KeyError until an OrdersQuarantineRateAlarm was written into template.yaml by hand)
    template = tmp_path / "template.yaml"
    template.write_text((ROOT / "template.yaml").read_text())
    sample = tmp_path / "orders.csv"
    sample.write_text(ORDERS_CSV)
    monkeypatch.chdir(tmp_path)
    # WHEN `dataset new` writes the module into the project's contracts package
    assert main(["dataset", "new", "orders", "--from", str(sample)]) == 0
    out = capsys.readouterr().out
    assert "template.yaml: declared orders" in out or "template.yaml already declares orders" in out  # (a project
    # that has its own `orders` declares it already)
    orders = scaffold.load_dataset((tmp_path / "layers/common/datalake/contracts/orders.py").read_text(), "orders")
    # THEN the template declares it as the registry now has it: no gap left
    with registered(orders):
        assert dataset_template.gaps(dataset_template.read(template.read_text()), REGISTRY.values()) == []
    # AND the expanded template has its quarantine-rate alarm on ingest_file's metrics and its retention rule
    resources = load_template(template)["Resources"]
    dims = resources["OrdersQuarantineRateAlarm"]["Properties"]["Metrics"][0]["MetricStat"]["Metric"]["Dimensions"]
    assert dims[1] == {"Name": "dataset", "Value": {"Fn::FindInMap": ["Datasets", "Orders", "Dataset"]}}
    rules = resources["ProcessedBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    (rule,) = [r for r in rules if r["Id"] == "ExpireOrdersAfterRetention"]
    assert rule == {
        "Id": rule["Id"],
        "Status": "Enabled",
        "Prefix": "orders/",
        "ExpirationInDays": {"Ref": "ProcessedRetentionDays"},
    }
    assert "OrdersFreshnessAlarm" not in resources  # no freshness rule declared
    # AND a second declaration changes nothing
    assert dataset_template.declare(template.read_text(), orders) == template.read_text()

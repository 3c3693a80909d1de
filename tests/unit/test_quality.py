"""The quality gate: each rule passing and failing on crafted data, the gate on S3 + DynamoDB, the handler."""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import ModuleType
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from datalake.aws import AwsClients
from datalake.contracts import REGISTRY, get_dataset
from datalake.exceptions import TerminalError
from datalake.ledger import load_run_verdicts
from datalake.quality import (
    BASELINE,
    Freshness,
    JobCounts,
    Observations,
    QualityGateRequest,
    check_quality,
    evaluate,
    landed_for,
    rules_for,
)
from datalake.settings import Settings
from tests.conftest import ROOT

SALES = get_dataset("sales")
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
RAW_FILES = ("sales/year=2026/month=11/day=02/a-1.json.gz", "sales/year=2026/month=11/day=02/b-2.json.gz")


def sales_table(
    ids: list[str | None],
    quantities: list[int | None] | None = None,
    prices: list[str | None] | None = None,
    revenues: list[str | None] | None = None,
    times: list[datetime] | None = None,
) -> pa.Table:
    """Processed sales columns, by default two clean rows: 2 x 10.00 and 3 x 19.99."""
    quantities = quantities if quantities is not None else [2, 3]
    prices = prices if prices is not None else ["10.00", "19.99"]
    revenues = (
        revenues
        if revenues is not None
        else [str(Decimal(p) * q) if p and q else None for p, q in zip(prices, quantities, strict=True)]
    )
    times = times if times is not None else [NOW - timedelta(hours=2)] * len(ids)
    return pa.table(
        {
            "transaction_id": pa.array(ids, pa.string()),
            "quantity": pa.array(quantities, pa.int32()),
            "unit_price": pa.array([Decimal(p) if p else None for p in prices], pa.decimal128(12, 2)),
            "revenue": pa.array([Decimal(r) if r else None for r in revenues], pa.decimal128(18, 2)),
            "event_time": pa.array(times, pa.timestamp("us", tz="UTC")),
        }
    )


def observations(data: pa.Table | None = None, **changes: Any) -> Observations:
    """Clean observations of a run that read two rows into an empty partition; `changes` spoil one fact."""
    base = Observations(
        dataset=SALES,
        data=data if data is not None else sales_table(["T1", "T2"]),
        job=JobCounts(rows_in=2, rows_out=2, partitions=("2026-11-02",), raw_files=RAW_FILES),
        records_landed=2,
        latest_event_time=NOW - timedelta(hours=2),
        now=NOW,
        freshness_max_age_hours=48,
    )
    return dataclasses.replace(base, **changes)


def failed(obs: Observations) -> dict[str, dict[str, Any]]:
    report = evaluate(obs, rules_for("sales"))
    return {r.rule: r.observed for r in report.rules if not r.passed}


# ------------------------------------------------------------------------------------------------- rules


def test_clean_sales_pass_every_rule() -> None:
    # GIVEN clean rows that the manifests account for
    # WHEN the sales rules are evaluated
    report = evaluate(observations(), rules_for("sales"), ["2026-11-02"])

    # THEN every rule passes and the report names them
    assert report.passed
    assert [r.rule for r in report.rules] == [
        "row_count",
        "key_not_null",
        "key_unique",
        "processing_quarantine",
        "quantity_positive",
        "unit_price_positive",
        "revenue_equals_quantity_x_unit_price",
        "freshness",
    ]
    assert report.partitions == ["2026-11-02"]


SPOILED: dict[str, tuple[Callable[[], Observations], str, str, Any]] = {
    # case: (observations, the rule that must fail, an observed value it reports)
    "more landed than processed": (lambda: observations(records_landed=3), "row_count", "expected_rows", 3),
    "raw file without manifest": (
        lambda: observations(raw_files_without_manifest=RAW_FILES[:1]),
        "row_count",
        "raw_files_without_manifest",
        1,
    ),
    "null key": (lambda: observations(sales_table(["T1", None])), "key_not_null", "null_keys", 1),
    "repeated key": (lambda: observations(sales_table(["T1", "T1"])), "key_unique", "duplicate_rows", 1),
    "zero quantity": (
        lambda: observations(sales_table(["T1", "T2"], quantities=[0, 3], revenues=["0.00", "59.97"])),
        "quantity_positive",
        "violations",
        1,
    ),
    "null quantity": (
        lambda: observations(sales_table(["T1", "T2"], quantities=[None, 3], revenues=["0.00", "59.97"])),
        "quantity_positive",
        "violations",
        1,
    ),
    "zero price": (
        lambda: observations(sales_table(["T1", "T2"], prices=["0.00", "19.99"])),
        "unit_price_positive",
        "violations",
        1,
    ),
    "revenue a cent off": (
        lambda: observations(sales_table(["T1", "T2"], revenues=["20.00", "59.98"])),
        "revenue_equals_quantity_x_unit_price",
        "violations",
        1,
    ),
    "stale data": (
        lambda: observations(latest_event_time=NOW - timedelta(hours=49)),
        "freshness",
        "age_hours",
        49.0,
    ),
}


@pytest.mark.parametrize("case", list(SPOILED))
def test_each_rule_fails_alone_on_its_defect(case: str) -> None:
    # GIVEN observations with one defect
    build, rule, key, value = SPOILED[case]

    # WHEN the sales rules are evaluated
    failures = failed(build())

    # THEN that rule fails, reporting what it saw; only a missing factor also fails the revenue check
    also = {"revenue_equals_quantity_x_unit_price"} if case == "null quantity" else set()
    assert set(failures) == {rule, *also}
    assert failures[rule][key] == value


def test_a_dataset_that_never_delivered_is_not_stale() -> None:
    # GIVEN a dataset with no processed data at all WHEN freshness is judged THEN it passes, saying so
    result = Freshness().check(observations(latest_event_time=None))
    assert result.passed and result.message == "no processed data yet"


def test_key_unique_spans_all_of_history_not_only_the_run_partitions() -> None:
    # GIVEN a run whose own partition is clean, while T1 also lies in an older partition (a correction that moved
    # the sale to another date without removing it from its former one)
    history = pa.table({"transaction_id": pa.array(["T1", "T2", "T1", "T9"], pa.string())})
    # WHEN the rules are evaluated THEN uniqueness fails on the history, naming one repeated row
    failures = failed(observations(history=history))
    assert set(failures) == {"key_unique"}
    assert failures["key_unique"] == {"duplicate_rows": 1, "distinct_keys": 3}


def test_row_count_reconciles_rows_quarantined_at_processing() -> None:
    # GIVEN 5 landed rows of which the job set 1 aside with its reason: 4 rows must be in the partition
    job = JobCounts(
        rows_in=4, rows_read=5, rows_quarantined=1, rows_out=4, raw_files=RAW_FILES, quarantine_reasons={"x": 1}
    )
    data = sales_table([f"T{i}" for i in range(4)], quantities=[1] * 4, prices=["1.00"] * 4)
    rules = [r for r in BASELINE if r.name != "processing_quarantine"]
    assert evaluate(observations(data, job=job, records_landed=5), rules).passed
    # WHEN the job read fewer rows than the manifests landed THEN the count does not reconcile
    short = dataclasses.replace(job, rows_read=4)
    report = evaluate(observations(data, job=short, records_landed=5), rules)
    assert [r.rule for r in report.rules if not r.passed] == ["row_count"]


def test_many_rows_quarantined_at_processing_stop_promotion_with_their_reasons() -> None:
    job = JobCounts(rows_in=98, rows_read=100, rows_quarantined=2, quarantine_reasons={"event_time: missing": 2})
    result = next(r for r in BASELINE if r.name == "processing_quarantine").check(observations(job=job))
    assert not result.passed
    assert "event_time: missing (2)" in result.message
    ok = JobCounts(rows_in=999, rows_read=1000, rows_quarantined=1)
    assert next(r for r in BASELINE if r.name == "processing_quarantine").check(observations(job=ok)).passed


def test_row_count_accounts_for_existing_rows_and_dropped_duplicates() -> None:
    # GIVEN a partition that held 5 rows; 4 rows landed, 3 of them repeats: 6 rows must remain
    job = JobCounts(rows_in=4, rows_existing=5, duplicates_dropped=3, rows_out=6, raw_files=RAW_FILES)
    ids = [f"T{i}" for i in range(6)]
    data = sales_table(ids, quantities=[1] * 6, prices=["1.00"] * 6)

    # WHEN / THEN the count reconciles, and one row fewer does not
    assert failed(observations(data, job=job, records_landed=4)) == {}
    assert "row_count" in failed(observations(data.slice(0, 5), job=job, records_landed=4))


def test_empty_partitions_pass_the_row_rules() -> None:
    # GIVEN a run that read nothing new for the dataset
    data = sales_table([], quantities=[], prices=[], revenues=[], times=[])
    obs = observations(data, job=JobCounts(), records_landed=0)

    # WHEN / THEN only data-independent rules could fail, and none does
    assert failed(obs) == {}


def test_rules_are_data_with_a_baseline_for_any_dataset() -> None:
    # GIVEN the rules datasets declare (`Dataset.checks`)
    # WHEN a dataset that declares none asks for its rules, and the reference data's rules are read
    # THEN it gets the baseline, and products check their price
    bare = dataclasses.replace(get_dataset("customers"), name="a_future_dataset", checks=())
    assert rules_for(bare) == BASELINE
    assert "list_price_positive" in [r.name for r in rules_for("products")]
    assert Freshness(max_age_hours=1).check(observations()).passed is False


def test_request_takes_the_run_id_from_the_execution_when_not_given() -> None:
    execution = "arn:aws:states:us-east-1:123456789012:execution:pipeline:run-42"
    assert QualityGateRequest(datasets=["sales"], execution_id=execution).run_id == "run-42"
    assert QualityGateRequest(datasets=["sales"], execution_id=execution, run_id="other").run_id == "other"


# -------------------------------------------------------------------------------------------- the gate


@dataclasses.dataclass
class Lake:
    session: boto3.Session
    settings: Settings

    def put_partition(self, day: str, table: pa.Table, name: str = "part-0.snappy.parquet") -> None:
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="snappy")
        key = f"sales/event_date={day}/{name}"
        self.session.client("s3").put_object(Bucket="processed-bucket", Key=key, Body=buffer.getvalue())

    def put_summary(self, run_id: str, counts: dict[str, Any]) -> None:
        body = json.dumps({"run_id": run_id, "datasets": {"sales": counts}})
        self.session.client("s3").put_object(Bucket="processed-bucket", Key=f"_runs/{run_id}/summary.json", Body=body)

    def put_manifest(self, object_id: str, landed: int, output_keys: list[str], dataset: str = "sales") -> None:
        item = {"object_id": object_id, "dataset": dataset, "records_landed": landed, "output_keys": output_keys}
        self.session.resource("dynamodb").Table("manifests").put_item(Item=item)


@pytest.fixture
def lake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Lake]:
    monkeypatch.setenv("DL_PROCESSED_BUCKET", "processed-bucket")
    monkeypatch.setenv("DL_MANIFESTS_TABLE", "manifests")
    with mock_aws():
        session = boto3.Session()
        session.client("s3").create_bucket(Bucket="processed-bucket")
        session.client("dynamodb").create_table(
            TableName="manifests",
            KeySchema=[{"AttributeName": "object_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "object_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        lake = Lake(session, Settings())
        counts = {
            "rows_in": 3,
            "rows_existing": 0,
            "duplicates_dropped": 1,
            "rows_out": 2,
            "partitions": ["2026-11-02"],
            "raw_files": list(RAW_FILES),
        }
        lake.put_summary("run-1", counts)
        lake.put_manifest("s3://landing/sales/a.jsonl#v1", 2, [RAW_FILES[0]])
        lake.put_manifest("s3://landing/sales/b.csv#v1", 1, [f"s3://raw-bucket/{RAW_FILES[1]}"])
        lake.put_manifest("s3://landing/sales/c.jsonl#v1", 50, ["sales/year=2026/month=11/day=09/c-3.json.gz"])
        lake.put_manifest("s3://landing/products/p.csv#v1", 7, [RAW_FILES[0]], dataset="products")
        yield lake


def test_gate_passes_when_processed_partitions_reconcile_with_manifests(lake: Lake) -> None:
    # GIVEN a run that read two raw files (3 rows landed by their manifests, 1 duplicate) into one partition
    lake.put_partition("2026-11-02", sales_table(["T1", "T2"]))
    lake.put_partition("2026-11-01", sales_table(["T0", "T9"], times=[NOW - timedelta(days=3)] * 2))

    # WHEN the gate checks the run
    report = check_quality(AwsClients.from_session(lake.session), lake.settings, ["sales"], "run-1", now=NOW)

    # THEN it passes, having matched only the manifests of the files read, and judged the latest partition
    assert report.passed
    row_count = next(r for r in report.datasets[0].rules if r.rule == "row_count")
    assert row_count.observed["records_landed"] == 3
    assert row_count.observed["processed_rows"] == 2
    freshness = next(r for r in report.datasets[0].rules if r.rule == "freshness")
    assert freshness.observed["age_hours"] == 2.0


def test_gate_failure_holds_the_dataset_and_writes_its_verdict(lake: Lake) -> None:
    # GIVEN a partition whose revenue is wrong on one row
    lake.put_partition("2026-11-02", sales_table(["T1", "T2"], revenues=["20.00", "1.00"]))

    # WHEN the gate checks the run
    report = check_quality(AwsClients.from_session(lake.session), lake.settings, ["sales"], "run-1", now=NOW)

    # THEN the report holds sales back, naming the rule, and the verdict is written beside the run's summary
    assert report.passed is False
    assert [f for f in report.failures() if f.startswith("sales.revenue_equals_quantity_x_unit_price")]
    verdicts = load_run_verdicts(lake.session.client("s3"), lake.settings.require("processed_bucket"), "run-1")
    assert verdicts is not None and verdicts.datasets["sales"].passed is False
    assert any(r.startswith("revenue_equals_quantity_x_unit_price") for r in verdicts.datasets["sales"].reasons)


def test_gate_naming_no_dataset_checks_every_registered_one(lake: Lake) -> None:
    # GIVEN a run whose summary holds only some datasets, WHEN the gate is asked for none in particular
    lake.put_partition("2026-11-02", sales_table(["T1", "T2"]))
    assert QualityGateRequest(execution_id="arn:aws:states:us-east-1:1:execution:p:run-1").datasets == []
    # THEN it checks the whole registry, and a registered dataset the job did not process is a terminal error
    missing = sorted(set(REGISTRY) - {"sales", "products"})[0]
    with pytest.raises(TerminalError, match=f"did not process {missing}"):
        check_quality(AwsClients.from_session(lake.session), lake.settings, [], "run-1", now=NOW)


def test_gate_without_a_job_summary_is_a_terminal_error(lake: Lake) -> None:
    with pytest.raises(TerminalError, match="has no processing summary"):
        check_quality(AwsClients.from_session(lake.session), lake.settings, ["sales"], "never-ran", now=NOW)


@pytest.fixture
def handler(lake: Lake) -> ModuleType:
    path = ROOT / "functions" / "check_quality" / "app.py"
    spec = importlib.util.spec_from_file_location("check_quality_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_handler_returns_the_report_of_the_execution_run(handler: ModuleType, lake: Lake, lambda_context: Any) -> None:
    # GIVEN the state machine's payload for execution run-1
    lake.put_partition("2026-11-02", sales_table(["T1", "T2"]))
    event = {
        "datasets": ["sales"],
        "run_id": "run-1",
        "execution_id": "arn:aws:states:us-east-1:123456789012:execution:pipeline:run-1",
        "as_of": NOW.isoformat(),
    }

    # WHEN the handler runs
    report = handler.lambda_handler(event, lambda_context)

    # THEN it returns the passing report as JSON
    assert report["passed"] is True
    assert report["run_id"] == "run-1"
    assert json.loads(json.dumps(report)) == report


def test_a_refused_contract_version_fails_the_gate_naming_fields_and_versions() -> None:
    # GIVEN a dataset the job refused: its contract's next version removes a field the table holds
    from datalake.runs import DatasetRun
    from datalake.schemas import ColumnChange, SchemaChange

    change = SchemaChange(
        table="customers",
        previous_version="1.0.0",
        version="2.0.0",
        changes=[ColumnChange(column="country", kind="removed", before="string", breaking=True)],
    )
    part = DatasetRun.model_validate({"schema_change": change.model_dump(mode="json")})

    # WHEN the gate reports it
    from datalake.quality import schema_refused

    report = schema_refused("customers", part)

    # THEN one failed rule says which field and which versions, and nothing else is judged
    assert not report.passed
    (rule,) = report.rules
    assert (rule.rule, rule.observed["breaking_fields"]) == ("schema_compatible", "country")
    assert "country (string) is in 1.0.0 but not in 2.0.0" in rule.message


def test_firehose_files_are_matched_to_their_batch_manifests_by_prefix(lake: Lake) -> None:
    # GIVEN two Firehose batches: one landed 3 records in hour 09 and 2 in hour 10, the other 4 in hour 10
    table = lake.session.resource("dynamodb").Table("manifests")
    hour = "clickstream/year=2026/month=11/day=02/hour={}/{}-"
    for batch, prefixes, quarantined in (("aaaa", {"09": 3, "10": 2}, 1), ("bbbb", {"10": 4}, 0)):
        landed = sum(prefixes.values())
        table.put_item(
            Item={
                "object_id": f"firehose://lakebox-clickstream/{batch}",
                "origin": "firehose",
                "dataset": "clickstream",
                "records_landed": landed,
                "records_read": landed + quarantined,
                "records_quarantined": quarantined,
                "output_prefixes": {hour.format(h, batch): n for h, n in prefixes.items()},
            }
        )
    # WHEN the job read batch aaaa's hour 09 (in two objects), batch bbbb's hour 10, and a file no batch wrote
    read = [
        hour.format("09", "aaaa") + "lakebox-clickstream-1-2026-11-02-09-00-00-x.json.gz",
        hour.format("09", "aaaa") + "lakebox-clickstream-1-2026-11-02-09-00-00-y.json.gz",
        hour.format("10", "bbbb") + "lakebox-clickstream-1-2026-11-02-10-00-00-z.json.gz",
        hour.format("10", "cccc") + "lakebox-clickstream-1-2026-11-02-10-00-00-w.json.gz",
    ]
    landed, unmatched, (received, quarantined) = landed_for(lake.session, "manifests", "clickstream", read)
    # THEN the records of the prefixes read are counted once each, and the stray file is reported without a manifest
    assert landed == 3 + 4
    assert unmatched == (read[3],)
    assert (received, quarantined) == (6 + 4, 1)


def test_gate_reads_history_keys_and_latest_partition_beyond_the_run_partitions(lake: Lake) -> None:
    # GIVEN a clean run partition, while T1 also lies in an older partition the run did not write, and a later
    # partition (outside the run) holds the newest event
    lake.put_partition("2026-11-02", sales_table(["T1", "T2"], times=[NOW - timedelta(hours=30)] * 2))
    lake.put_partition("2026-10-30", sales_table(["T1", "T8"], times=[NOW - timedelta(days=24)] * 2))
    lake.put_partition(
        "2026-11-20", sales_table(["T5", "T6"], times=[NOW - timedelta(hours=5), NOW - timedelta(hours=3)])
    )
    lake.put_partition("2026-11-20", sales_table(["T7"], [1], ["1.00"]), name="part-1.snappy.parquet")

    # WHEN the gate checks the run
    report = check_quality(AwsClients.from_session(lake.session), lake.settings, ["sales"], "run-1", now=NOW)

    # THEN uniqueness spans every partition (one repeated key), the row rules judge only the run's partition, and
    # freshness reads the newest event of the latest partition, both of its files
    (dataset,) = report.datasets
    rules = {r.rule: r for r in dataset.rules}
    assert [r.rule for r in dataset.rules if not r.passed] == ["key_unique"]
    assert rules["key_unique"].observed == {"duplicate_rows": 1, "distinct_keys": 6}
    assert rules["row_count"].observed["processed_rows"] == 2
    assert rules["freshness"].observed["age_hours"] == 2.0


def test_gate_reads_a_column_an_older_file_lacks_as_null(lake: Lake) -> None:
    # GIVEN the run's partition in two files, the older written before `revenue` existed
    lake.put_partition("2026-11-02", sales_table(["T1"], [2], ["10.00"]).drop_columns(["revenue"]))
    lake.put_partition("2026-11-02", sales_table(["T2"], [3], ["19.99"]), name="part-1.snappy.parquet")

    # WHEN the gate checks the run
    report = check_quality(AwsClients.from_session(lake.session), lake.settings, ["sales"], "run-1", now=NOW)

    # THEN both files are read, and the row without revenue fails the product check
    rules = {r.rule: r for r in report.datasets[0].rules}
    assert rules["row_count"].observed["processed_rows"] == 2
    assert rules["revenue_equals_quantity_x_unit_price"].observed == {"violations": 1}

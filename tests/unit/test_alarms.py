"""The template's alarms, and their local evaluation on recorded metrics (lakebox.services.alarms)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from datalake.contracts import REGISTRY, Delivery
from datalake.observability import freshness_seconds
from datalake.quality import Freshness, rules_for
from lakebox.cfn.datasets import stem as _stem
from lakebox.cfn.stack import Stack
from lakebox.cfn.template import load_template
from lakebox.home import LakeHome
from lakebox.services import alarms
from lakebox.services.alarms import ALARM, INSUFFICIENT_DATA, OK, Datapoint, MetricStore

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000.0


@pytest.fixture
def stack() -> Stack:
    return Stack(ROOT)


@pytest.fixture
def home(tmp_path: Path) -> LakeHome:
    return LakeHome(tmp_path)


@pytest.fixture
def metrics(home: LakeHome) -> MetricStore:
    return MetricStore(home.metrics)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


def _alarm(stack: Stack, name: str) -> alarms.AlarmDefinition:
    return next(a for a in alarms.definitions(stack) if a.logical_id == name)


def _lambda(stack: Stack, function: str, invocations: int, errors: int, at: float) -> list[Datapoint]:
    dims = (("FunctionName", str(stack.ref(function))),)
    return [Datapoint("AWS/Lambda", "Invocations", dims, 1.0, at) for _ in range(invocations)] + [
        Datapoint("AWS/Lambda", "Errors", dims, 1.0 if i < errors else 0.0, at) for i in range(invocations)
    ]


@pytest.mark.parametrize(
    ("invocations", "errors", "ago", "state"),
    [
        (20, 2, 60, ALARM),  # 10 % in the last five minutes
        (40, 1, 60, OK),  # 2.5 %
        (20, 1, 60, OK),  # exactly 5 % is not above 5 %
        (20, 20, 400, OK),  # every one failed, but before the period
        (0, 0, 0, OK),  # no invocations: notBreaching
    ],
)
def test_lambda_error_rate_alarm_fires_above_five_percent(
    stack: Stack, invocations: int, errors: int, ago: float, state: str
) -> None:
    alarm = _alarm(stack, "IngestFileFunctionErrorRateAlarm")
    points = _lambda(stack, "IngestFileFunction", invocations, errors, NOW - ago)
    assert alarms.evaluate(alarm, points, now=NOW).state == state


def test_error_rate_threshold_is_the_templates_parameter(tmp_path: Path) -> None:
    strict = Stack(ROOT, parameters={"LambdaErrorRateThresholdPercent": "1"})
    points = _lambda(strict, "IngestFileFunction", 40, 1, NOW - 10)
    assert alarms.evaluate(_alarm(strict, "IngestFileFunctionErrorRateAlarm"), points, now=NOW).state == ALARM


def _emf(path: Path, service: str, dataset: str, at: float, **values: float) -> None:
    """An EMF line as Powertools prints it."""
    document = {
        "_aws": {
            "Timestamp": int(at * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": "DataLake",
                    "Dimensions": [["service", "dataset"]],
                    "Metrics": [{"Name": name, "Unit": "Count"} for name in values],
                }
            ],
        },
        "service": service,
        "dataset": dataset,
        **{name: [value] for name, value in values.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write("some log line\n" + json.dumps(document) + "\n")


def test_quarantine_rate_alarm_reads_the_ingestion_emf_lines_per_dataset(stack: Stack, home: LakeHome) -> None:
    log = home.logs / "lakebox-IngestFileFunction.log"
    _emf(log, "ingest_file", "sales", NOW - 100, RecordsRead=100, RecordsLanded=88, RecordsQuarantined=12)
    _emf(log, "ingest_file", "products", NOW - 100, RecordsRead=100, RecordsLanded=99, RecordsQuarantined=1)
    points = list(alarms.emf_datapoints(home.logs))
    assert alarms.evaluate(_alarm(stack, "SalesQuarantineRateAlarm"), points, now=NOW).state == ALARM
    assert alarms.evaluate(_alarm(stack, "SalesQuarantineRateAlarm"), points, now=NOW).value == pytest.approx(12.0)
    assert alarms.evaluate(_alarm(stack, "ProductsQuarantineRateAlarm"), points, now=NOW).state == OK
    assert alarms.evaluate(_alarm(stack, "CustomersQuarantineRateAlarm"), points, now=NOW).state == OK


@pytest.mark.parametrize(("age_hours", "state"), [(72.0, ALARM), (1.0, OK), (None, INSUFFICIENT_DATA)])
def test_freshness_alarm_reads_the_quality_gates_metric(
    stack: Stack, age_hours: float | None, state: str, home: LakeHome
) -> None:
    log = home.logs / "lakebox-CheckQualityFunction.log"
    if age_hours is not None:
        _emf(log, "check_quality", "sales", NOW - 60, DataFreshnessSeconds=age_hours * 3600)
    points = list(alarms.emf_datapoints(home.logs))
    assert alarms.evaluate(_alarm(stack, "SalesFreshnessAlarm"), points, now=NOW).state == state


def test_failed_execution_recorded_by_the_executor_fires_the_runs_alarm(
    stack: Stack, home: LakeHome, metrics: MetricStore
) -> None:
    arn = str(stack.ref("PipelineStateMachine"))
    metrics.record_execution(arn, "SUCCEEDED")
    assert "PipelineExecutionsFailedAlarm" not in {a.name for a in alarms.alarms_in_alarm(stack, metrics, home.logs)}
    metrics.record_execution(arn, "FAILED")
    assert "PipelineExecutionsFailedAlarm" in {a.name for a in alarms.alarms_in_alarm(stack, metrics, home.logs)}
    assert (home.path / "metrics.jsonl").exists()


def test_recorded_invocations_persist_in_the_store_across_readers(
    stack: Stack, home: LakeHome, metrics: MetricStore
) -> None:
    name = str(stack.ref("PlanCurationFunction"))
    metrics.record_invocation(name, failed=True)
    metrics.record_invocation(name, failed=False)
    points = list(MetricStore(home.path / "metrics.jsonl"))
    assert sorted((p.name, p.value) for p in points) == [
        ("Errors", 0.0),
        ("Errors", 1.0),
        ("Invocations", 1.0),
        ("Invocations", 1.0),
    ]
    states = {s.name: s for s in alarms.alarm_states(stack, metrics, home.logs)}
    assert states["PlanCurationFunctionErrorRateAlarm"].state == ALARM
    assert states["PlanCurationFunctionErrorRateAlarm"].value == pytest.approx(50.0)


def test_athena_daily_scan_alarm_sums_the_workgroups(stack: Stack) -> None:
    alarm = _alarm(stack, "AthenaDailyBytesScannedAlarm")
    budget = alarm.threshold
    points = [
        Datapoint("AWS/Athena", "ProcessedBytes", (("WorkGroup", str(stack.ref(g))),), budget * 0.6, NOW - 3600)
        for g in ("AnalyticsWorkGroup", "MlDataWorkGroup")
    ]
    assert alarms.evaluate(alarm, points[:1], now=NOW).state == OK
    assert alarms.evaluate(alarm, points, now=NOW).state == ALARM


def test_dead_letter_queue_alarm_fires_on_one_message(stack: Stack) -> None:
    alarm = _alarm(stack, "IngestFailureQueueDepthAlarm")
    dims = (("QueueName", str(stack.get_att("IngestFailureQueue", "QueueName"))),)
    assert (
        alarms.evaluate(alarm, [Datapoint("AWS/SQS", alarm.metrics[0].name, dims, 1.0, NOW - 1)], now=NOW).state
        == ALARM
    )
    assert alarms.evaluate(alarm, [], now=NOW).state == OK


@pytest.mark.parametrize(
    ("expression", "inputs", "value"),
    [
        ("IF(b > 0, 100 * a / b, 0)", {"a": 1.0, "b": 4.0}, 25.0),
        ("IF(b > 0, 100 * a / b, 0)", {"a": None, "b": 4.0}, 0.0),
        ("IF(b > 0, 100 * a / b, 0)", {"a": None, "b": None}, None),
        ("SUM([a, b, c])", {"a": 1.0, "b": None, "c": 2.0}, 3.0),
        ("a / 3600", {"a": 7200.0}, 2.0),
        ("a / b", {"a": 1.0, "b": 0.0}, None),
    ],
)
def test_metric_math_subset(expression: str, inputs: dict[str, float | None], value: float | None) -> None:
    assert alarms._compute(expression, inputs) == value


def test_metric_math_refuses_what_it_cannot_evaluate() -> None:
    with pytest.raises(alarms.LakeboxError, match="cannot evaluate"):
        alarms._compute("ANOMALY_DETECTION_BAND(a)", {"a": 1.0})


# --------------------------------------------------------------------------------- the alarms the design asks for


def test_every_function_has_an_error_rate_alarm_and_no_bare_error_count_alarm(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    functions = {lid for lid, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}
    rate_alarms = {lid.removesuffix("ErrorRateAlarm") for lid in resources if lid.endswith("ErrorRateAlarm")}
    assert rate_alarms == functions
    for lid in rate_alarms:
        alarm = resources[f"{lid}ErrorRateAlarm"]
        assert alarm.get("Condition") == resources[lid].get("Condition")
        assert alarm["Properties"]["Threshold"] == {"Ref": "LambdaErrorRateThresholdPercent"}
    assert not [lid for lid in resources if lid.endswith("ErrorsAlarm")]


def _resolved(template: dict[str, Any], value: Any, firehose: bool) -> Any:
    """A dimension value with `Fn::FindInMap` and the `UseFirehose` `Fn::If` evaluated."""
    if isinstance(value, dict) and "Fn::FindInMap" in value:
        mapping, key, attribute = value["Fn::FindInMap"]
        return template["Mappings"][mapping][key][attribute]
    if isinstance(value, dict) and "Fn::If" in value:
        condition, when_true, when_false = value["Fn::If"]
        assert condition == "UseFirehose"
        return _resolved(template, when_true if firehose else when_false, firehose)
    return value


def test_every_dataset_has_a_quarantine_rate_alarm_and_every_freshness_rule_an_alarm(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    for name, dataset in REGISTRY.items():
        # GIVEN a registered dataset  THEN its quarantine rate is watched where its records mostly arrive
        alarm = resources[f"{_stem(name)}QuarantineRateAlarm"]["Properties"]
        for firehose in (False, True):
            # (a stream-delivered dataset's records are judged by TransformRecordsFunction with Firehose delivery)
            service = "ingest_file"
            if Delivery.STREAM in dataset.deliveries:
                service = "transform_records" if firehose else "ingest_stream"
            for metric in alarm["Metrics"][:2]:
                dims = {
                    d["Name"]: _resolved(template, d["Value"], firehose)
                    for d in metric["MetricStat"]["Metric"]["Dimensions"]
                }
                assert dims == {"service": service, "dataset": name}
        # AND it has a freshness alarm exactly when it has a freshness rule
        has_freshness = any(isinstance(rule, Freshness) for rule in rules_for(name))
        assert (f"{_stem(name)}FreshnessAlarm" in resources) == has_freshness, name


def test_spark_and_crawler_failures_alert_through_rules_the_topic_admits(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    rules = {lid: r for lid, r in resources.items() if r["Type"] == "AWS::Events::Rule"}
    assert set(rules) == {"RawToProcessedJobFailedRule", "EmrJobFailedRule", "RawCrawlerFailedRule"}
    policy = resources["AlertsTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    (admitted,) = [s for s in policy if s.get("Sid") == "FailureRulesPublish"]
    assert sorted(a["Fn::GetAtt"][0] for a in admitted["Condition"]["ArnEquals"]["aws:SourceArn"]) == sorted(rules)
    for rule in rules.values():
        assert [t["Arn"] for t in rule["Properties"]["Targets"]] == [{"Ref": "AlertsTopic"}]


def test_every_alarm_notifies_the_alerts_topic_and_has_a_runbook_entry(template: dict[str, Any]) -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    first_cells = [line.split("|")[1] for line in runbook.splitlines() if line.startswith("| `")]
    entries = {name for cell in first_cells for name in re.findall(r"`(\w+)`", cell)}
    for lid, resource in template["Resources"].items():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            assert resource["Properties"]["AlarmActions"] == [{"Ref": "AlertsTopic"}], lid
        if resource["Type"] in ("AWS::CloudWatch::Alarm", "AWS::Events::Rule"):
            generic = re.sub(r"^\w+?(?=QuarantineRateAlarm$|FreshnessAlarm$)", "", lid)
            assert lid in entries or generic in entries, f"docs/runbook.md has no row for {lid}"


def test_freshness_metric_comes_from_the_quality_report_whether_it_passed_or_not() -> None:
    report = {
        "datasets": [
            {"dataset": "sales", "rules": [{"rule": "freshness", "observed": {"age_hours": 2.5}}]},
            {"dataset": "clickstream", "rules": [{"rule": "freshness", "observed": {"latest_event_time": None}}]},
            {"dataset": "customers", "rules": [{"rule": "row_count", "observed": {}}]},
        ]
    }
    assert freshness_seconds(report) == {"sales": 9000.0}


def test_alarms_evaluate_against_now_by_default(stack: Stack, home: LakeHome, metrics: MetricStore) -> None:
    metrics.record_invocation(str(stack.ref("IngestApiFunction")), failed=True)
    (state,) = [
        s for s in alarms.alarm_states(stack, metrics, home.logs) if s.name == "IngestApiFunctionErrorRateAlarm"
    ]
    assert state.state == ALARM
    later = time.time() + 600
    (state,) = [
        s
        for s in alarms.alarm_states(stack, metrics, home.logs, now=later)
        if s.name == "IngestApiFunctionErrorRateAlarm"
    ]
    assert state.state == OK

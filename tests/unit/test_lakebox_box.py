"""The box's small parts: parameters checked and refused, the deliveries journal, the endpoint's gate, JSON output."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from lakebox.box import check_parameters_against_up
from lakebox.cfn.provision import deploy_time_parameters
from lakebox.cfn.stack import Stack, StackError
from lakebox.cli import json_value
from lakebox.errors import LakeboxError
from lakebox.home.journal import Journal
from lakebox.home.up import UpRecord
from lakebox.services.endpoint import Gate, _changes_state
from lakebox.services.eventbus import Delivery
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def stack() -> Stack:
    return Stack(ROOT)


def test_parameters_fixed_at_deploy_are_those_resources_and_conditions_use(stack: Stack) -> None:
    fixed = deploy_time_parameters(stack)
    assert {"RawSettleSeconds", "GlueDatabaseName", "StreamDelivery", "EnableLakeFormation"} <= fixed
    assert "SourceApiBaseUrl" not in fixed  # only the pull function reads it: each command resolves it itself


def test_a_parameter_up_fixed_is_refused_when_it_differs_and_accepted_when_it_agrees() -> None:
    up = UpRecord("http://127.0.0.1:9", 1, {"RawSettleSeconds": "0"})
    with pytest.raises(LakeboxError, match=r"restart it with `lakebox up --parameter RawSettleSeconds=900`"):
        check_parameters_against_up(ROOT, {"RawSettleSeconds": "900"}, up)
    check_parameters_against_up(ROOT, {"RawSettleSeconds": "0"}, up)
    check_parameters_against_up(ROOT, {"SourceApiBaseUrl": "https://api.example.com"}, up)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RawSettleSeconds", "soon", "is not a number"),
        ("RawSettleSeconds", "-1", "below its MinValue 0"),
        ("Environment", "qa", "not one of its AllowedValues"),
        ("GlueDatabaseName", "Bad-Name", "does not match its AllowedPattern"),
        ("Nope", "1", "unknown template parameters: Nope"),
    ],
)
def test_parameter_values_are_checked_against_the_template(name: str, value: str, message: str) -> None:
    with pytest.raises(StackError, match=message):
        Stack(ROOT, parameters={name: value})


def test_trusted_parameters_are_not_checked() -> None:
    local = Stack(ROOT, trusted_parameters={"SourceApiBaseUrl": "http://127.0.0.1:1234"})
    assert local.parameters["SourceApiBaseUrl"] == "http://127.0.0.1:1234"


def test_the_journal_finds_entries_after_the_offset_and_skips_a_torn_last_line(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "deliveries.jsonl")
    journal.append("old", "sales/old.jsonl", [])
    since = journal.offset()
    journal.append("mine", "sales/mine.jsonl", [Delivery("rule", "IngestFileFunction", True, {"status": "LANDED"})])
    with (tmp_path / "deliveries.jsonl").open("a") as handle:
        handle.write('{"object": "torn", "deliv')
    found = journal.wait({"mine"}, since, alive=lambda: True, timeout=1)
    assert found["mine"]["deliveries"][0]["result"] == {"status": "LANDED"}
    with pytest.raises(LakeboxError, match="did not deliver 1 object"):
        journal.wait({"old"}, since, alive=lambda: True, timeout=0)
    with pytest.raises(LakeboxError, match="stopped before it delivered"):
        journal.wait({"never"}, since, alive=lambda: False, timeout=5)


def test_the_gate_waits_for_requests_inside_and_holds_new_ones() -> None:
    gate = Gate()
    order: list[str] = []
    inside = threading.Event()

    def request(name: str, hold: float) -> None:
        with gate.passage():
            inside.set()
            time.sleep(hold)
            order.append(name)

    first = threading.Thread(target=request, args=("in flight", 0.3))
    first.start()
    inside.wait()
    with gate.closed():
        order.append("snapshot")
        late = threading.Thread(target=request, args=("arrived during the snapshot", 0))
        late.start()
        time.sleep(0.1)
        order.append("snapshot done")
    late.join()
    first.join()
    assert order == ["in flight", "snapshot", "snapshot done", "arrived during the snapshot"]


@pytest.mark.parametrize(
    ("method", "path", "target", "changes"),
    [
        ("GET", "/bucket/key", "", False),
        ("PUT", "/bucket/key", "", True),
        ("POST", "/", "DynamoDB_20120810.GetItem", False),
        ("POST", "/", "DynamoDB_20120810.PutItem", True),
        ("POST", "/", "AWSGlue.GetTables", False),
        ("POST", "/moto-api/reset", "", False),
    ],
)
def test_requests_that_may_change_state_are_counted(method: str, path: str, target: str, changes: bool) -> None:
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "HTTP_X_AMZ_TARGET": target}
    assert _changes_state(environ) is changes


def test_json_output_keeps_types_and_says_null() -> None:
    value = {
        "money": Decimal("12.50"),
        "count": Decimal("3"),
        "day": dt.date(2026, 11, 2),
        "none": "",
        "rows": [(1, None)],
    }
    assert json.dumps(json_value(value)) == (
        '{"money": 12.5, "count": 3, "day": "2026-11-02", "none": null, "rows": [[1, null]]}'
    )


def test_a_task_on_a_function_the_template_lacks_fails_with_a_catchable_lambda_error(local_stack: Any) -> None:
    # GIVEN the box's task integrations and a Task on a Lambda ARN the template does not define
    from lakebox.sfn import ManualClock, run_execution
    from lakebox.sfn.integrations import LAMBDA_INVOKE

    integrations = local_stack.integrations()
    definition = {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": LAMBDA_INVOKE,
                "Parameters": {"FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:not-in-template"},
                "Catch": [{"ErrorEquals": ["Lambda.ResourceNotFoundException"], "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }

    # WHEN it runs THEN it is not refused: the task fails at run time and the Catch takes the Lambda error
    execution = run_execution(definition, {}, integrations, clock=ManualClock())
    assert execution.status == "SUCCEEDED"
    assert execution.output["Error"] == "Lambda.ResourceNotFoundException"


def test_the_engines_lakebox_accepts_are_the_state_machines_choose_engine_routes(stack: Stack) -> None:
    from lakebox.app.pipeline import check_pipeline_input, engine_names

    # GIVEN the pipeline's Choose Engine state as written in its ASL file
    definition = json.loads((ROOT / "statemachines" / "pipeline.asl.json").read_text())
    (choose,) = [s for s in definition["States"].values() if s.get("Type") == "Choice" and "Engine" in str(s)]
    routed = [c["StringEquals"] for c in choose["Choices"]]
    # WHEN lakebox reads its engine names THEN they are exactly those
    assert engine_names(stack) == routed == ["glue", "emr-serverless"]
    # AND an input naming one is accepted (before: "emr-serverless" was refused, "emr" let through to Reject Engine)
    for engine in routed:
        check_pipeline_input({"engine": engine}, engine_names(stack))
    with pytest.raises(LakeboxError, match=r"must be glue or emr-serverless, not 'emr'"):
        check_pipeline_input({"engine": "emr"}, engine_names(stack))


def test_up_records_its_state_machines_and_execute_resolves_them_without_a_stack(tmp_path: Path) -> None:
    from lakebox.app.execute_up import resolve_state_machine
    from lakebox.home import LakeHome

    # GIVEN up's record of the template's state machines and the pipeline's engines, written and read back
    arn = "arn:aws:states:us-east-1:123456789012:stateMachine:lakebox-PipelineStateMachine"
    home = LakeHome(tmp_path)
    UpRecord(
        "http://127.0.0.1:9",
        1,
        region="us-east-1",
        state_machines={"PipelineStateMachine": arn},
        engines=["glue", "emr-serverless"],
    ).write(home)
    up = UpRecord.read(home)
    assert up is not None and up.engines == ["glue", "emr-serverless"]
    # WHEN `lakebox execute` names it by logical id, physical name or ARN THEN each resolves to the same machine
    for name in ("PipelineStateMachine", "lakebox-PipelineStateMachine", arn):
        assert resolve_state_machine(up, name) == ("PipelineStateMachine", arn)
    # AND an unknown name is the same one-line error the stack gives
    with pytest.raises(LakeboxError, match=r"no state machine 'Nope' in template.yaml \(state machines: Pipeline"):
        resolve_state_machine(up, "Nope")
    # AND a record written before these fields existed reads as empty (execute then loads the stack)
    home.endpoint.write_text(json.dumps({"endpoint": "http://127.0.0.1:9", "pid": 1}))
    old = UpRecord.read(home)
    assert old is not None and old.state_machines == {} and old.engines == []


@pytest.mark.parametrize("poll", ["5", -1, 1.5, True])
def test_a_crawler_poll_interval_the_wait_state_cannot_wait_is_refused(stack: Stack, poll: Any) -> None:
    from lakebox.app.pipeline import check_pipeline_input, engine_names

    # WHEN the input sets the crawler's poll interval to what Wait's SecondsPath rejects THEN lakebox refuses it first
    with pytest.raises(LakeboxError, match="crawler_poll_seconds"):
        check_pipeline_input({"crawler_poll_seconds": poll}, engine_names(stack))
    check_pipeline_input({"crawler_poll_seconds": 0}, engine_names(stack))


def test_a_run_stopped_by_ctrl_c_is_one_line_and_exit_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN `lakebox execute` whose run is stopped by Ctrl-C (the box recorded it ABORTED and says so)
    from lakebox import cli
    from lakebox.errors import RunAborted

    def stopped(args: object) -> int:
        raise RunAborted("run r1 stopped by Ctrl-C and recorded ABORTED; the next run picks up what it processed")

    monkeypatch.setattr(cli, "cmd_execute", stopped)

    # WHEN the command runs THEN it exits 130 with that one line and no traceback
    assert cli.main(["execute", "PipelineStateMachine"]) == 130
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "lakebox: run r1 stopped by Ctrl-C and recorded ABORTED; the next run picks up what it processed"
    ]
    assert captured.out == ""

"""The ASL conformance corpus through the Step Functions TestState API of a deployed stack, compared with lakebox.

Skipped unless AWS_SAM_STACK_NAME names a deployed stack. Each case's top-level states are walked one by one with
TestState (its task answers given as TestState mocks, its variables carried from state to state), and the final
output or error is compared with the local executor's. Cases TestState cannot replay (callbacks, S3 item sources,
Tasks inside Map or Parallel, a task answer that echoes its input) are listed as not comparable. Every difference is
printed; the test fails when there is one.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.unit.sfn_conformance.corpus import Case, Outcome, differences, load_cases, run_locally

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not os.environ.get("AWS_SAM_STACK_NAME"), reason="AWS_SAM_STACK_NAME is not set"),
]

MAX_STEPS = 100


class NotComparable(Exception):
    """TestState cannot replay this case faithfully."""


@pytest.fixture(scope="module")
def role_arn() -> str:
    """The role TestState runs the states with: ASL_TESTSTATE_ROLE_ARN, else the stack's state machine role."""
    if os.environ.get("ASL_TESTSTATE_ROLE_ARN"):
        return os.environ["ASL_TESTSTATE_ROLE_ARN"]
    resources = boto3.client("cloudformation").describe_stack_resources(StackName=os.environ["AWS_SAM_STACK_NAME"])
    role = next(
        r["PhysicalResourceId"]
        for r in resources["StackResources"]
        if r["ResourceType"] == "AWS::IAM::Role" and r["LogicalResourceId"] == "PipelineStateMachineRole"
    )
    return str(boto3.client("iam").get_role(RoleName=role)["Role"]["Arn"])


def _has_task(machine: dict[str, Any]) -> bool:
    return "Resource" in json.dumps(machine)


def _mock(case: Case, resource: str, calls: dict[str, int]) -> dict[str, Any]:
    answers = case.tasks.get(resource)
    if answers is None:
        raise NotComparable(f"no answer for {resource} (the local run calls no service)")
    answer = answers[min(calls[resource], len(answers) - 1)]
    calls[resource] += 1
    if "error" in answer:
        return {"errorOutput": {"error": answer["error"], "cause": answer.get("cause", "")}}
    if "result" not in answer:
        raise NotComparable("the task answer depends on its input (echo or callback)")
    return {"result": json.dumps(answer["result"]), "fieldValidationMode": "NONE"}


def run_on_aws(sfn: Any, case: Case, role_arn: str) -> Outcome:
    """Walk a case's top-level states through TestState and return how the execution would end."""
    if case.s3 or any(".waitForTaskToken" in json.dumps(s) for s in case.definition["States"].values()):
        raise NotComparable("S3 item sources and callbacks need real resources")
    machine = case.definition
    name: str = machine["StartAt"]
    data: Any = case.input
    variables: dict[str, Any] = {}
    calls: dict[str, int] = defaultdict(int)
    retries = 0
    for _ in range(MAX_STEPS):
        state = machine["States"][name]
        request: dict[str, Any] = {
            "definition": json.dumps(machine),
            "stateName": name,
            "input": json.dumps(data),
            "inspectionLevel": "DEBUG",
            "roleArn": role_arn,
        }
        if variables:
            request["variables"] = json.dumps(variables)
        if state["Type"] == "Task":
            request["mock"] = _mock(case, state["Resource"], calls)
            if retries:
                request["stateConfiguration"] = {"retrierRetryCount": retries}
        elif state["Type"] in ("Map", "Parallel") and _has_task(state):
            raise NotComparable("Tasks inside Map or Parallel cannot be mocked state by state")
        try:
            response = sfn.test_state(**request)
        except ClientError as exc:
            raise NotComparable(f"TestState refused the request: {exc}") from exc
        status = response["status"]
        if status == "FAILED":
            return Outcome("FAILED", error=response.get("error"), cause=response.get("cause"))
        if status == "RETRIABLE":
            retries += 1
            continue
        retries = 0
        inspection = response.get("inspectionData", {})
        if inspection.get("variables"):
            variables = json.loads(inspection["variables"])
        data = json.loads(response.get("output", "null"))
        following = response.get("nextState")
        if not following:
            return Outcome("SUCCEEDED", output=data)
        name = following
    raise NotComparable(f"more than {MAX_STEPS} states")


def test_the_corpus_behaves_the_same_on_step_functions(role_arn: str) -> None:
    # GIVEN the corpus and the deployed account's Step Functions
    sfn = boto3.client("stepfunctions")
    found: list[str] = []
    skipped: list[str] = []

    # WHEN every case runs through TestState and locally
    for case in load_cases():
        try:
            aws = run_on_aws(sfn, case, role_arn)
        except NotComparable as reason:
            skipped.append(f"{case.id}: {reason}")
            continue
        local = run_locally(case)
        aws_view = list(differences(case, aws))
        local_view = list(differences(case, local))
        if aws_view or local_view or (aws.status, aws.error) != (local.status, local.error):
            aws_said, local_said = aws_view or "as expected", local_view or "as expected"
            found.append(f"{case.id} ({case.source})\n    AWS:   {aws_said}\n    local: {local_said}")

    # THEN the differences (and what could not be compared) are printed, and there are none
    print(f"\n{len(skipped)} cases not comparable through TestState:\n  " + "\n  ".join(skipped))
    print(f"\n{len(found)} differences:\n" + "\n".join(found))
    assert found == []

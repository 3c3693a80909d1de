"""The callback pattern: a .waitForTaskToken task waits until someone answers its token (or times out)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from lakebox.sfn import Integrations, ManualClock, SystemClock, TaskContext, run_execution
from lakebox.sfn.callbacks import TaskTokenError, TaskTokens

QUEUE = "arn:aws:states:::sqs:sendMessage"


def _machine(**task: Any) -> dict[str, Any]:
    state = {
        "Type": "Task",
        "Resource": f"{QUEUE}.waitForTaskToken",
        "Parameters": {"MessageBody": {"token.$": "$$.Task.Token"}},
        "End": True,
        **task,
    }
    return {"StartAt": "Wait For Approval", "States": {"Wait For Approval": state}}


def test_a_worker_answering_later_from_another_thread_completes_the_task() -> None:
    # GIVEN a queue whose consumer answers the token 50 ms later, after two heartbeats, from its own thread
    tokens = TaskTokens()

    def send(parameters: Any, task: TaskContext) -> Any:
        token = parameters["MessageBody"]["token"]

        def worker() -> None:
            for _ in range(2):
                time.sleep(0.01)
                tokens.send_task_heartbeat(token)
            time.sleep(0.03)
            tokens.send_task_success(token, json.dumps({"approved": True}))

        threading.Thread(target=worker).start()
        return {"MessageId": "1"}

    # WHEN the execution runs on the real clock, with a heartbeat window far above the worker's pace
    execution = run_execution(
        _machine(HeartbeatSeconds=5, TimeoutSeconds=30),
        {},
        Integrations({QUEUE: send}),
        clock=SystemClock(),
        callbacks=tokens,
    )

    # THEN the task's result is what the worker sent, and the token is no longer pending
    assert execution.status == "SUCCEEDED", execution.cause
    assert execution.output == {"approved": True}
    assert tokens.pending() == []
    assert [e.details["taskToken"] for e in execution.events("TaskSubmitted")] != []


def test_a_task_nobody_answers_times_out_after_its_timeout_in_virtual_time() -> None:
    # GIVEN a queue nobody reads, and a manual clock
    clock = ManualClock()
    execution = run_execution(
        _machine(TimeoutSeconds=300),
        {},
        Integrations({QUEUE: lambda parameters, task: {}}),
        clock=clock,
    )

    # THEN the task failed with States.Timeout after 300 s of virtual time
    assert execution.error == "States.Timeout"
    assert (clock.now() - execution.start_date).total_seconds() == pytest.approx(300)


def test_answers_to_unknown_closed_or_malformed_tokens_are_refused_as_the_api_does() -> None:
    # GIVEN a token that was answered once
    tokens = TaskTokens()
    tokens.open("t1")
    tokens.send_task_success("t1", "{}")

    # WHEN it is answered again, or an unknown token is answered, or the output is not JSON THEN each is refused
    with pytest.raises(TaskTokenError) as again:
        tokens.send_task_failure("t1", "E", "c")
    assert again.value.code == "TaskTimedOut"
    with pytest.raises(TaskTokenError) as unknown:
        tokens.send_task_heartbeat("nope")
    assert unknown.value.code == "InvalidToken"
    tokens.open("t2")
    with pytest.raises(TaskTokenError) as bad:
        tokens.send_task_success("t2", "{not json")
    assert bad.value.code == "InvalidOutput"


def test_a_callback_task_must_pass_its_token_on() -> None:
    # WHEN a .waitForTaskToken task does not hand the token to anyone THEN the definition is refused
    from lakebox.sfn import DefinitionError

    with pytest.raises(DefinitionError, match="task token"):
        run_execution(_machine(Parameters={"MessageBody": "no token"}), {}, Integrations({QUEUE: lambda p, t: {}}))

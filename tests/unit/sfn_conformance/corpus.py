"""Load the ASL conformance corpus and run a case on the local executor (the unit test and the e2e test share it)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lakebox.sfn import Integrations, ManualClock, TaskContext, TaskError, run_execution
from lakebox.sfn.callbacks import TaskTokens
from lakebox.sfn.distributed import ObjectStore

CORPUS = Path(__file__).parent


@dataclass(frozen=True)
class Case:
    """One documented behaviour: a definition, its input, the task answers it needs, and what Step Functions does."""

    topic: str
    name: str
    source: str
    definition: dict[str, Any]
    input: Any
    expected: dict[str, Any]
    tasks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    s3: dict[str, dict[str, Any]] = field(default_factory=dict)
    expected_sleeps: list[float] | None = None
    expected_s3_prefix: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.topic}:{self.name}"


@dataclass(frozen=True)
class Outcome:
    """What a run gave: status, output or error and cause, and the waits it made."""

    status: str
    output: Any = None
    error: str | None = None
    cause: str | None = None
    sleeps: tuple[float, ...] = ()


def load_cases() -> list[Case]:
    """Every case of every ``*.json`` file beside this module, in file order."""
    cases = []
    for path in sorted(CORPUS.glob("*.json")):
        for raw in json.loads(path.read_text(encoding="utf-8")):
            cases.append(Case(topic=path.stem, **raw))
    return cases


def object_body(value: Any) -> bytes:
    """An object's bytes from its corpus form: text as is, ``{"gzip": text}`` compressed, anything else as JSON."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict) and set(value) == {"gzip"}:
        return gzip.compress(str(value["gzip"]).encode())
    return json.dumps(value).encode()


def seed_s3(case: Case, s3: Any) -> None:
    """Create the case's buckets and objects with an S3 client."""
    for bucket, objects in case.s3.items():
        s3.create_bucket(Bucket=bucket)
        for key, value in objects.items():
            s3.put_object(Bucket=bucket, Key=key, Body=object_body(value))


def _responder(answers: list[dict[str, Any]], tokens: TaskTokens) -> Any:
    calls: list[int] = []

    def handler(parameters: Any, task: TaskContext) -> Any:
        answer = answers[min(len(calls), len(answers) - 1)]
        calls.append(1)
        if "error" in answer:
            raise TaskError(answer["error"], answer.get("cause", ""))
        if "send_task_success" in answer:
            tokens.send_task_success(task.context["Task"]["Token"], json.dumps(answer["send_task_success"]))
            return {}
        if "send_task_failure" in answer:
            failure = answer["send_task_failure"]
            tokens.send_task_failure(task.context["Task"]["Token"], failure["error"], failure["cause"])
            return {}
        if answer.get("echo"):
            return parameters
        return answer["result"]

    return handler


def run_locally(case: Case, objects: ObjectStore | None = None) -> Outcome:
    """Run a case on the local executor with a manual clock; task resources answer as the case says."""
    tokens = TaskTokens()
    integrations = Integrations({resource: _responder(answers, tokens) for resource, answers in case.tasks.items()})
    clock = ManualClock()
    execution = run_execution(
        case.definition, case.input, integrations, clock=clock, callbacks=tokens, objects=objects, max_workers=1
    )
    return Outcome(execution.status, execution.output, execution.error, execution.cause, tuple(clock.sleeps))


def differences(case: Case, outcome: Outcome) -> Iterator[str]:
    """Say how an outcome differs from what the case expects (nothing when it conforms)."""
    expected = case.expected
    if "error" in expected:
        if outcome.status != "FAILED" or outcome.error != expected["error"]:
            yield f"expected error {expected['error']}, got {outcome.status} {outcome.error} {outcome.output!r}"
        elif expected.get("cause_contains", "") not in (outcome.cause or ""):
            yield f"cause {outcome.cause!r} lacks {expected['cause_contains']!r}"
        return
    if outcome.status != "SUCCEEDED":
        yield f"expected success, got {outcome.error}: {outcome.cause}"
        return
    if "output" in expected and outcome.output != expected["output"]:
        yield f"output {json.dumps(outcome.output)} != expected {json.dumps(expected['output'])}"
    if "output_keys" in expected and sorted(outcome.output or {}) != sorted(expected["output_keys"]):
        yield f"output keys {sorted(outcome.output or {})} != {sorted(expected['output_keys'])}"
    if case.expected_sleeps is not None and list(outcome.sleeps) != [float(s) for s in case.expected_sleeps]:
        yield f"waits {list(outcome.sleeps)} != expected {case.expected_sleeps}"

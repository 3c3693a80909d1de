"""The template's schedules, fired on demand: EventBridge Scheduler (ScheduleV2) and scheduled rules (Schedule)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakebox.cfn.stack import ACCOUNT_ID, REGION, Stack
from lakebox.errors import LakeboxError
from lakebox.services.eventbus import Delivery
from lakebox.services.watch import ObjectWatch

if TYPE_CHECKING:
    from lakebox.services.lambdas import LambdaRuntime


logger = logging.getLogger(__name__)

StartExecution = Callable[[str, Any], Any]
SCHEDULER_KINDS = frozenset({"ScheduleV2", "AWS::Scheduler::Schedule"})


@dataclass(frozen=True)
class Schedule:
    """One schedule of the template and what it starts.

    `name` is `<LogicalId>.<EventName>` for a function's or state machine's event, or the logical id of an
    `AWS::Scheduler::Schedule` or scheduled `AWS::Events::Rule`.
    """

    name: str
    kind: str
    expression: str
    timezone: str
    target_kind: str
    target: str
    input: str | None
    enabled: bool = True
    retry_attempts: int = 2

    @property
    def arn(self) -> str:
        """The ARN the schedule (or rule) would have."""
        if self.kind in SCHEDULER_KINDS:
            return f"arn:aws:scheduler:{REGION}:{ACCOUNT_ID}:schedule/default/{self.name.replace('.', '-')}"
        return f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{self.name.replace('.', '-')}"


@dataclass
class Firing:
    """What firing a schedule did: the payload sent, the target's result or error, and attempts made."""

    schedule: Schedule
    payload: Any
    ok: bool
    result: Any = None
    error: str | None = None
    attempts: int = 1
    deliveries: list[Delivery] = field(default_factory=list)


def _input_text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _event_schedules(stack: Stack, logical_id: str, target_kind: str, events: dict[str, Any]) -> list[Schedule]:
    found = []
    for event_name, event in (events or {}).items():
        kind = event.get("Type")
        if kind not in ("Schedule", "ScheduleV2"):
            continue
        props = stack.resolve(event.get("Properties", {})) or {}
        expression = props.get("ScheduleExpression") or props.get("Schedule") or ""
        state = props.get("State", "ENABLED")
        enabled = bool(props.get("Enabled", True)) and state != "DISABLED"
        retries = int((props.get("RetryPolicy") or {}).get("MaximumRetryAttempts", 2))
        found.append(
            Schedule(
                name=f"{logical_id}.{event_name}",
                kind=str(kind),
                expression=str(expression),
                timezone=str(props.get("ScheduleExpressionTimezone", "UTC")),
                target_kind=target_kind,
                target=logical_id,
                input=_input_text(props.get("Input")),
                enabled=enabled,
                retry_attempts=retries,
            )
        )
    return found


def _target_of(stack: Stack, arn: str) -> tuple[str, str] | None:
    for spec in stack.functions.values():
        if arn.rsplit(":function:", maxsplit=1)[-1].split(":", maxsplit=1)[0] == spec.name:
            return "function", spec.logical_id
    for lid, resource in stack.resources.items():
        if "StateMachine" in resource["Type"] and stack.active(lid) and stack.ref(lid) == arn:
            return "state_machine", lid
    return None


def schedules(stack: Stack) -> list[Schedule]:
    """Every schedule the template declares, with its target resolved to a logical id."""
    found: list[Schedule] = []
    for spec in stack.functions.values():
        found += _event_schedules(stack, spec.logical_id, "function", spec.events)
    for lid, resource in stack.resources.items():
        if not stack.active(lid):
            continue
        kind = resource["Type"]
        props = resource.get("Properties", {})
        if kind in ("AWS::Serverless::StateMachine",):
            found += _event_schedules(stack, lid, "state_machine", props.get("Events") or {})
        elif kind == "AWS::Scheduler::Schedule":
            resolved = stack.resolve(props)
            target = _target_of(stack, str(resolved["Target"]["Arn"]))
            if target:
                found.append(
                    Schedule(
                        lid,
                        kind,
                        str(resolved["ScheduleExpression"]),
                        str(resolved.get("ScheduleExpressionTimezone", "UTC")),
                        *target,
                        input=_input_text(resolved["Target"].get("Input")),
                        enabled=resolved.get("State", "ENABLED") != "DISABLED",
                    )
                )
        elif kind == "AWS::Events::Rule" and "ScheduleExpression" in props:
            resolved = stack.resolve(props)
            for target_spec in resolved.get("Targets", []):
                target = _target_of(stack, str(target_spec["Arn"]))
                if target:
                    found.append(
                        Schedule(
                            lid,
                            kind,
                            str(resolved["ScheduleExpression"]),
                            "UTC",
                            *target,
                            input=_input_text(target_spec.get("Input")),
                            enabled=resolved.get("State", "ENABLED") != "DISABLED",
                        )
                    )
    return found


def find(stack: Stack, name: str) -> Schedule:
    """A schedule by `<LogicalId>.<EventName>`, by event name, or by the logical id of its only target."""
    found = schedules(stack)
    matches = [s for s in found if name in (s.name, s.name.split(".")[-1])]
    if not matches:
        matches = [s for s in found if s.target == name]
    if len(matches) != 1:
        known = ", ".join(s.name for s in found) or "none"
        problem = "is ambiguous" if matches else "is not a schedule of template.yaml"
        raise LakeboxError(f"{name!r} {problem} (schedules: {known})")
    return matches[0]


def payload(schedule: Schedule, *, now: dt.datetime | None = None, attempt: int = 1) -> Any:
    """What the schedule delivers to its target at `now`.

    EventBridge Scheduler sends its `Input` with the context attributes (`<aws.scheduler.scheduled-time>`, …)
    replaced; a scheduled rule sends its `Input`, or else a "Scheduled Event".
    """
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if schedule.kind in SCHEDULER_KINDS:
        text = schedule.input or "{}"
        for attribute, value in (
            ("schedule-arn", schedule.arn),
            ("scheduled-time", stamp),
            ("execution-id", uuid.uuid4().hex[:16]),
            ("attempt-number", str(attempt)),
        ):
            text = text.replace(f"<aws.scheduler.{attribute}>", value)
        return json.loads(text)
    if schedule.input is not None:
        return json.loads(schedule.input)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": stamp,
        "region": REGION,
        "resources": [schedule.arn],
        "detail": {},
    }


def fire(
    lambdas: LambdaRuntime,
    schedule: Schedule,
    *,
    start_execution: StartExecution | None = None,
    now: dt.datetime | None = None,
) -> Firing:
    """Deliver the schedule's payload to its target now, as the scheduler would.

    A function is invoked asynchronously: failed attempts are retried as its `EventInvokeConfig` says, then the
    request goes to its on-failure destination. A state machine is started through `start_execution`.
    """
    event = payload(schedule, now=now)
    if schedule.target_kind == "state_machine":
        if start_execution is None:
            return Firing(schedule, event, False, error="state machine targets need the ASL executor")
        return Firing(schedule, event, True, result=start_execution(schedule.target, event))
    outcome = lambdas.invoke_async(schedule.target, event)
    return Firing(schedule, event, outcome.ok, outcome.result, outcome.error, outcome.attempts)


__all__ = ["Firing", "ObjectWatch", "Schedule", "find", "fire", "payload", "schedules"]

"""EventBridge, locally: the template's rules matched with a real pattern matcher and delivered to their targets."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

from moto.events.models import EventPattern

from lakebox.cfn.stack import ACCOUNT_ID, REGION, Stack
from lakebox.sfn.integrations import EVENTS_PUT_EVENTS, events_put_events

if TYPE_CHECKING:
    import boto3

    from lakebox.services.lambdas import LambdaRuntime
    from lakebox.sfn.registry import Handler


logger = logging.getLogger(__name__)

StartExecution = Callable[[str, Any], Any]


@dataclass
class Target:
    """Where a matched event goes: a function (async invoke), a queue, a topic or a state machine."""

    kind: str
    name: str
    retry_attempts: int = 2
    dead_letter_arn: str | None = None
    input_path: str | None = None


@dataclass
class Rule:
    """An event rule from the template: a SAM `EventBridgeRule` event or an `AWS::Events::Rule`."""

    name: str
    pattern: dict[str, Any]
    bus: str = "default"
    targets: list[Target] = field(default_factory=list)

    def matches(self, event: dict[str, Any]) -> bool:
        """Match with EventBridge's pattern semantics."""
        return bool(EventPattern.load(json.dumps(self.pattern)).matches_event(event))  # type: ignore[arg-type]


@dataclass
class Delivery:
    """The outcome of delivering one event to one target."""

    rule: str
    target: str
    ok: bool
    result: Any = None
    error: str | None = None
    attempts: int = 1


def object_created_event(bucket: str, key: str, *, version_id: str | None, etag: str, size: int) -> dict[str, Any]:
    """An S3 "Object Created" event as EventBridge delivers it (the key form-encoded, as S3 sends keys)."""
    detail: dict[str, Any] = {
        "version": "0",
        "bucket": {"name": bucket},
        "object": {
            "key": quote_plus(key, safe="/"),
            "size": size,
            "etag": etag.strip('"'),
            "sequencer": uuid.uuid4().hex[:18].upper(),
        },
        "request-id": uuid.uuid4().hex[:16].upper(),
        "requester": ACCOUNT_ID,
        "source-ip-address": "127.0.0.1",
        "reason": "PutObject",
    }
    if version_id:
        detail["object"]["version-id"] = version_id
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": ACCOUNT_ID,
        "time": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": detail,
    }


class EventBus:
    """Routes events through the template's rules to in-process targets."""

    def __init__(
        self,
        stack: Stack,
        session: boto3.Session,
        lambdas: LambdaRuntime,
        *,
        start_execution: StartExecution | None = None,
    ) -> None:
        self.stack = stack
        self.session = session
        self.lambdas = lambdas
        self.start_execution = start_execution
        self.rules = self._rules()

    def _rules(self) -> list[Rule]:
        rules: list[Rule] = []
        for spec in self.stack.functions.values():
            retries = int(spec.event_invoke.get("MaximumRetryAttempts", 2))
            failure = spec.event_invoke.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
            for name, event in spec.events.items():
                if event.get("Type") != "EventBridgeRule":
                    continue
                props = self.stack.resolve(event.get("Properties", {}))
                target = Target("function", spec.logical_id, retries, failure)
                rules.append(
                    Rule(f"{spec.logical_id}.{name}", props["Pattern"], props.get("EventBusName", "default"), [target])
                )
        for lid, resource in self.stack.resources.items():
            if resource["Type"] == "AWS::Serverless::StateMachine" and self.stack.active(lid):
                for name, event in (resource.get("Properties", {}).get("Events") or {}).items():
                    if event.get("Type") == "EventBridgeRule":
                        props = self.stack.resolve(event.get("Properties", {}))
                        rules.append(
                            Rule(
                                f"{lid}.{name}",
                                props["Pattern"],
                                props.get("EventBusName", "default"),
                                [Target("state_machine", lid)],
                            )
                        )
            if resource["Type"] == "AWS::Events::Rule" and self.stack.active(lid):
                props = self.stack.resolve(resource.get("Properties", {}))
                if "EventPattern" not in props:
                    continue
                targets = [self._target_for_arn(t) for t in props.get("Targets", [])]
                rules.append(
                    Rule(
                        lid,
                        props["EventPattern"],
                        props.get("EventBusName", "default"),
                        [t for t in targets if t is not None],
                    )
                )
        return rules

    def _target_for_arn(self, target: dict[str, Any]) -> Target | None:
        arn = str(target.get("Arn", ""))
        kind = {"lambda": "function", "sqs": "queue", "sns": "topic", "states": "state_machine"}.get(arn.split(":")[2])
        if kind is None:
            logger.warning("event target %s is not emulated", arn)
            return None
        retry = target.get("RetryPolicy", {})
        dlq = target.get("DeadLetterConfig", {}).get("Arn")
        return Target(kind, arn, int(retry.get("MaximumRetryAttempts", 185)), dlq, target.get("InputPath"))

    def put(self, event: dict[str, Any], bus: str = "default") -> list[Delivery]:
        """Deliver an event to every target of every matching rule; return one delivery per target."""
        deliveries: list[Delivery] = []
        for rule in self.rules:
            if rule.bus == bus and rule.matches(event):
                deliveries.extend(self._deliver(rule, target, event) for target in rule.targets)
        return deliveries

    def task_handlers(self) -> dict[str, Handler]:
        """``events:putEvents`` onto this bus (a TaskService): each entry goes through the template's rules here."""
        return {EVENTS_PUT_EVENTS: events_put_events(deliver=self.put)}

    def _deliver(self, rule: Rule, target: Target, event: dict[str, Any]) -> Delivery:
        if target.kind == "function":
            return self._invoke_async(rule, target, event)
        session = self.session
        if target.kind == "queue":
            name = target.name.split(":")[-1]
            url = session.client("sqs").get_queue_url(QueueName=name)["QueueUrl"]
            session.client("sqs").send_message(QueueUrl=url, MessageBody=json.dumps(event))
        elif target.kind == "topic":
            session.client("sns").publish(TopicArn=target.name, Message=json.dumps(event))
        elif self.start_execution is not None:
            return Delivery(rule.name, target.name, True, self.start_execution(target.name, event))
        else:
            return Delivery(rule.name, target.name, False, error="state machine targets need the ASL executor")
        return Delivery(rule.name, target.name, True)

    def _invoke_async(self, rule: Rule, target: Target, event: dict[str, Any]) -> Delivery:
        """Lambda's asynchronous invocation (retries, then the on-failure destination), by the one Lambda runtime."""
        outcome = self.lambdas.invoke_async(target.name, event)
        return Delivery(rule.name, target.name, outcome.ok, outcome.result, outcome.error, outcome.attempts)

"""EventBridge on the endpoint: the template's rules listed, and PutEvents routed through the box's event bus."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakebox.services.serve import AwsRequest, AwsResponse, ServiceError, unsupported

if TYPE_CHECKING:
    from lakebox.services.eventbus import EventBus, Rule

logger = logging.getLogger(__name__)


@dataclass
class EventsApi:
    """EventBridge's API (JSON 1.1) over the box's bus: ListRules, DescribeRule, ListTargetsByRule, PutEvents.

    Parameters
    ----------
    bus
        The box's event bus (the template's rules, real pattern matching, in-process targets).
    arn_prefix
        ``arn:aws:events:<region>:<account>``.
    target_arn
        The ARN of a target the bus names by kind and logical id (a function or a state machine of the template).
    """

    bus: EventBus
    arn_prefix: str
    target_arn: Callable[[str, str], str] = lambda _kind, name: name
    signing_names: tuple[str, ...] = ("events",)
    target_prefixes: tuple[str, ...] = ("AWSEvents",)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, request: AwsRequest) -> AwsResponse | AwsRequest:
        """Answer an EventBridge request."""
        operation = request.target or f"{request.method} {request.path}"
        handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "ListRules": self.list_rules,
            "DescribeRule": self.describe_rule,
            "ListTargetsByRule": self.list_targets_by_rule,
            "PutEvents": self.put_events,
        }
        handler = handlers.get(operation)
        if handler is None:
            raise unsupported("EventBridge", operation)
        return AwsResponse.of_json(handler(request.json()))

    def _summary(self, rule: Rule) -> dict[str, Any]:
        bus = rule.bus.rsplit("/", 1)[-1]
        path = rule.name if bus == "default" else f"{bus}/{rule.name}"
        return {
            "Name": rule.name,
            "Arn": f"{self.arn_prefix}:rule/{path}",
            "EventPattern": json.dumps(rule.pattern),
            "State": "ENABLED",
            "EventBusName": bus,
        }

    def _rule(self, params: dict[str, Any]) -> Rule:
        bus = str(params.get("EventBusName") or "default").rsplit("/", 1)[-1]
        name = params.get("Name") or params.get("Rule")
        for rule in self.bus.rules:
            if rule.name == name and rule.bus.rsplit("/", 1)[-1] == bus:
                return rule
        raise ServiceError("ResourceNotFoundException", f"Rule {name} does not exist on EventBus {bus}.")

    def list_rules(self, params: dict[str, Any]) -> dict[str, Any]:
        """ListRules of a bus (``default`` when unnamed), by name prefix."""
        bus = str(params.get("EventBusName") or "default").rsplit("/", 1)[-1]
        prefix = str(params.get("NamePrefix") or "")
        rules = [
            self._summary(r) for r in self.bus.rules if r.bus.rsplit("/", 1)[-1] == bus and r.name.startswith(prefix)
        ]
        start = int(params.get("NextToken") or 0)
        size = int(params.get("Limit") or 100)
        response: dict[str, Any] = {"Rules": rules[start : start + size]}
        if start + size < len(rules):
            response["NextToken"] = str(start + size)
        return response

    def describe_rule(self, params: dict[str, Any]) -> dict[str, Any]:
        """DescribeRule."""
        return self._summary(self._rule(params))

    def list_targets_by_rule(self, params: dict[str, Any]) -> dict[str, Any]:
        """ListTargetsByRule: where the box delivers the rule's events."""
        rule = self._rule(params)
        targets = []
        for number, target in enumerate(rule.targets):
            arn = target.name if target.name.startswith("arn:") else self.target_arn(target.kind, target.name)
            item: dict[str, Any] = {"Id": f"{target.kind}-{number}", "Arn": arn}
            if target.input_path:
                item["InputPath"] = target.input_path
            if target.dead_letter_arn:
                item["DeadLetterConfig"] = {"Arn": target.dead_letter_arn}
            targets.append(item)
        return {"Targets": targets}

    def put_events(self, params: dict[str, Any]) -> dict[str, Any]:
        """PutEvents: each entry becomes an event on its bus, delivered to the matching rules' targets by the box."""
        entries = params.get("Entries") or []
        if not 1 <= len(entries) <= 10:
            raise ServiceError("ValidationException", "Entries must hold between 1 and 10 events")
        results: list[dict[str, Any]] = []
        accepted: list[tuple[dict[str, Any], str]] = []
        account, region = self.arn_prefix.split(":")[4], self.arn_prefix.split(":")[3]
        for entry in entries:
            missing = [k for k in ("Source", "DetailType", "Detail") if not entry.get(k)]
            if missing:
                results.append(
                    {
                        "ErrorCode": "InvalidArgument",
                        "ErrorMessage": f"Parameter(s) {', '.join(missing)} must be specified.",
                    }
                )
                continue
            if str(entry["Source"]).startswith("aws."):
                results.append(
                    {
                        "ErrorCode": "NotAuthorizedForSourceException",
                        "ErrorMessage": "Not authorized for the source.",
                    }
                )
                continue
            try:
                detail = json.loads(entry["Detail"])
            except ValueError:
                results.append({"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."})
                continue
            event_id = str(uuid.uuid4())
            event = {
                "version": "0",
                "id": event_id,
                "detail-type": entry["DetailType"],
                "source": entry["Source"],
                "account": account,
                "time": _time(entry.get("Time")),
                "region": region,
                "resources": list(entry.get("Resources") or []),
                "detail": detail,
            }
            accepted.append((event, str(entry.get("EventBusName") or "default").rsplit("/", 1)[-1]))
            results.append({"EventId": event_id})
        for event, bus in accepted:
            thread = threading.Thread(
                target=self._deliver, args=(event, bus), name=f"events-{event['id'][:8]}", daemon=True
            )
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()
        return {"FailedEntryCount": sum(1 for r in results if "ErrorCode" in r), "Entries": results}

    def _deliver(self, event: dict[str, Any], bus: str) -> None:
        try:
            for delivery in self.bus.put(event, bus):
                logger.info("event %s to %s: %s", event["id"], delivery.target, "ok" if delivery.ok else delivery.error)
        except Exception:  # a target's failure is logged, as EventBridge records a failed invocation
            logger.exception("event %s could not be delivered", event["id"])

    def join(self, timeout: float | None = None) -> None:
        """Wait for the deliveries running now."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)


def _time(value: Any) -> str:
    """An entry's Time (epoch seconds as the SDKs send it, or text), or now, as EventBridge writes it."""
    if isinstance(value, int | float):
        moment = dt.datetime.fromtimestamp(value, dt.UTC)
    elif isinstance(value, str) and value:
        return value
    else:
        moment = dt.datetime.now(dt.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")

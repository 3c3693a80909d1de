"""CloudWatch Logs on the endpoint: the template's log groups, the functions' logs read from `.lakebox/logs/`."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from lakebox.services.serve import AwsRequest, AwsResponse, ServiceError, unsupported

if TYPE_CHECKING:
    from lakebox.cfn.stack import Stack

_STREAM: Final = "lakebox/[$LATEST]local"
"""The one log stream of a function's group: the box runs each function in one process."""
_PAGE: Final = 10_000
_JSON_TERM: Final = re.compile(r"^\{\s*\$\.([\w.]+)\s*(=|!=)\s*(\"[^\"]*\"|[^\s}]+)\s*\}$")


@dataclass(frozen=True)
class LogGroup:
    """A log group of the template, and the function whose log it holds (if any)."""

    name: str
    arn: str
    retention: int | None
    log_file: Path | None


def log_groups_of(stack: Stack, logs: Path) -> list[LogGroup]:
    """The template's log groups; a function's group is the one its LoggingConfig names (or Lambda's default)."""
    from lakebox.cfn.stack import ACCOUNT_ID, REGION

    files: dict[str, Path] = {}
    for spec in stack.functions.values():
        props = stack.resources[spec.logical_id].get("Properties", {})
        group = stack.resolve((props.get("LoggingConfig") or {}).get("LogGroup")) or f"/aws/lambda/{spec.name}"
        files[str(group)] = logs / f"{spec.name}.log"
    groups: dict[str, LogGroup] = {}
    for logical_id, resource in stack.resources.items():
        if resource["Type"] != "AWS::Logs::LogGroup" or not stack.active(logical_id):
            continue
        props = resource.get("Properties", {})
        name = str(stack.resolve(props.get("LogGroupName")) or f"{stack.stack_name}-{logical_id}")
        retention = stack.resolve(props.get("RetentionInDays"))
        arn = f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{name}"
        groups[name] = LogGroup(name, arn, int(retention) if retention else None, files.get(name))
    for name, path in files.items():
        groups.setdefault(name, LogGroup(name, f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{name}", None, path))
    return sorted(groups.values(), key=lambda g: g.name)


@dataclass
class LogsApi:
    """CloudWatch Logs' API (JSON 1.1) over the template's log groups and the box's function logs (in `logs`)."""

    stack: Stack
    logs: Path
    signing_names: tuple[str, ...] = ("logs",)
    target_prefixes: tuple[str, ...] = ("Logs_20140328",)

    def handle(self, request: AwsRequest) -> AwsResponse | AwsRequest:
        """Answer a CloudWatch Logs request."""
        operation = request.target or f"{request.method} {request.path}"
        handler = {
            "DescribeLogGroups": self.describe_log_groups,
            "DescribeLogStreams": self.describe_log_streams,
            "GetLogEvents": self.get_log_events,
            "FilterLogEvents": self.filter_log_events,
        }.get(operation)
        if handler is None:
            raise unsupported("CloudWatch Logs", operation)
        return AwsResponse.of_json(handler(request.json()))

    def _group(self, params: dict[str, Any]) -> LogGroup:
        name = params.get("logGroupName") or str(params.get("logGroupIdentifier", "")).rsplit(":log-group:", 1)[-1]
        for group in log_groups_of(self.stack, self.logs):
            if group.name == name:
                return group
        raise ServiceError("ResourceNotFoundException", "The specified log group does not exist.")

    def describe_log_groups(self, params: dict[str, Any]) -> dict[str, Any]:
        """DescribeLogGroups (by name prefix or pattern)."""
        prefix = str(params.get("logGroupNamePrefix") or "")
        pattern = str(params.get("logGroupNamePattern") or "")
        groups = [g for g in log_groups_of(self.stack, self.logs) if g.name.startswith(prefix) and pattern in g.name]
        items = []
        for group in groups:
            item: dict[str, Any] = {
                "logGroupName": group.name,
                "arn": f"{group.arn}:*",
                "logGroupArn": group.arn,
                "creationTime": 0,
                "storedBytes": group.log_file.stat().st_size if group.log_file and group.log_file.exists() else 0,
                "logGroupClass": "STANDARD",
            }
            if group.retention:
                item["retentionInDays"] = group.retention
            items.append(item)
        return _page(items, params, "logGroups", 50)

    def describe_log_streams(self, params: dict[str, Any]) -> dict[str, Any]:
        """DescribeLogStreams: a function's group has one stream once the function has logged."""
        group = self._group(params)
        streams = []
        if group.log_file is not None and group.log_file.exists():
            stat = group.log_file.stat()
            streams.append(
                {
                    "logStreamName": _STREAM,
                    "arn": f"{group.arn}:log-stream:{_STREAM}",
                    "creationTime": int(stat.st_ctime * 1000),
                    "lastEventTimestamp": int(stat.st_mtime * 1000),
                    "lastIngestionTime": int(stat.st_mtime * 1000),
                    "storedBytes": stat.st_size,
                }
            )
        return _page(streams, params, "logStreams", 50)

    def get_log_events(self, params: dict[str, Any]) -> dict[str, Any]:
        """GetLogEvents of the function's stream (oldest first with startFromHead, else the newest)."""
        group = self._group(params)
        if params.get("logStreamName") != _STREAM or group.log_file is None:
            raise ServiceError("ResourceNotFoundException", "The specified log stream does not exist.")
        events = _in_window(_events(group.log_file), params)
        limit = int(params.get("limit") or _PAGE)
        start = int(str(params.get("nextToken") or "f/0").split("/", 1)[1])
        if not params.get("startFromHead") and not params.get("nextToken"):
            start = max(len(events) - limit, 0)
        page = events[start : start + limit]
        return {
            "events": [{k: e[k] for k in ("timestamp", "message", "ingestionTime")} for e in page],
            "nextForwardToken": f"f/{start + len(page)}",
            "nextBackwardToken": f"b/{max(start - limit, 0)}",
        }

    def filter_log_events(self, params: dict[str, Any]) -> dict[str, Any]:
        """FilterLogEvents: terms, quoted phrases, `-term`, and `{ $.field = value }` on JSON lines."""
        group = self._group(params)
        matches = _matcher(str(params.get("filterPattern") or ""))
        events = [] if group.log_file is None else _in_window(_events(group.log_file), params)
        found = [e for e in events if matches(e["message"])]
        response = _page(found, params, "events", int(params.get("limit") or _PAGE))
        response["searchedLogStreams"] = [{"logStreamName": _STREAM, "searchedCompletely": True}]
        return response


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    fallback = int(path.stat().st_mtime * 1000)
    events = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle):
            text = line.rstrip("\n")
            if not text.strip():
                continue
            stamp = _timestamp(text) or fallback
            events.append(
                {
                    "logStreamName": _STREAM,
                    "timestamp": stamp,
                    "message": text,
                    "ingestionTime": stamp,
                    "eventId": f"{stamp:020d}{number:010d}",
                }
            )
    return events


def _timestamp(text: str) -> int | None:
    """Milliseconds of a Powertools JSON line's `timestamp` (or an EMF line's `_aws.Timestamp`)."""
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    if isinstance(record.get("_aws"), dict) and record["_aws"].get("Timestamp"):
        return int(record["_aws"]["Timestamp"])
    value = record.get("timestamp")
    if not isinstance(value, str):
        return None
    for form in ("%Y-%m-%d %H:%M:%S,%f%z", "%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return int(dt.datetime.strptime(value.replace("Z", "+0000"), form).timestamp() * 1000)
        except ValueError:
            continue
    return None


def _in_window(events: list[dict[str, Any]], params: dict[str, Any]) -> list[dict[str, Any]]:
    start, end = params.get("startTime"), params.get("endTime")
    return [e for e in events if (start is None or e["timestamp"] >= start) and (end is None or e["timestamp"] <= end)]


def _matcher(pattern: str) -> Any:
    """CloudWatch Logs' filter pattern, the parts of it lakebox reads; any other syntax is refused by name."""
    text = pattern.strip()
    if not text:
        return lambda _message: True
    json_term = _JSON_TERM.match(text)
    if json_term:
        path, operator, raw = json_term.groups()
        wanted = raw.strip('"')

        def matches_json(message: str) -> bool:
            try:
                value: Any = json.loads(message)
            except ValueError:
                return False
            for part in path.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            equal = (
                value is not None and str(value).lower() == wanted.lower()
                if not raw.startswith('"')
                else (value is not None and str(value) == wanted)
            )
            return equal if operator == "=" else not equal

        return matches_json
    if text.startswith(("{", "[")) or "?" in text:
        raise ServiceError(
            "InvalidParameterException",
            f"lakebox reads terms, quoted phrases, -terms and {{ $.field = value }}; not this filter pattern: {text}",
        )
    terms = re.findall(r'-?"[^"]*"|\S+', text)

    def matches_terms(message: str) -> bool:
        for term in terms:
            negated = term.startswith("-")
            word = term.lstrip("-").strip('"')
            if (word in message) == negated:
                return False
        return True

    return matches_terms


def _page(items: list[Any], params: dict[str, Any], key: str, size: int) -> dict[str, Any]:
    start = int(params.get("nextToken") or 0)
    limit = int(params.get("limit") or size)
    response: dict[str, Any] = {key: items[start : start + limit]}
    if start + limit < len(items):
        response["nextToken"] = str(start + limit)
    return response

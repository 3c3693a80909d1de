"""CloudWatch metrics, locally: the service metrics lakebox records, and the EMF lines of the function logs.

The Lambda runtime, the state machine executor and Athena append what their AWS services would publish (Lambda
invocations and errors, Step Functions executions, Athena bytes scanned) to one JSON-lines file; the pipeline's own
metrics are the embedded-metric-format lines its functions print into their logs, read as CloudWatch Logs would.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

_WRITE_LOCK = threading.Lock()


@dataclass(frozen=True)
class Datapoint:
    """One value of one metric at one time (epoch seconds)."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    value: float
    timestamp: float


def dims_of(mapping: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Dimensions as a sorted tuple of pairs (how a datapoint and an alarm name them)."""
    return tuple(sorted((str(k), str(v)) for k, v in mapping.items()))


EXECUTION_METRICS: Final = {
    "SUCCEEDED": "ExecutionsSucceeded",
    "FAILED": "ExecutionsFailed",
    "TIMED_OUT": "ExecutionsTimedOut",
    "ABORTED": "ExecutionsAborted",
}


class MetricStore:
    """The service metrics lakebox records, one JSON line a datapoint, kept across commands until a reset."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def put(
        self, namespace: str, name: str, dimensions: Mapping[str, str], value: float, at: float | None = None
    ) -> None:
        """Append one datapoint."""
        line = {"ns": namespace, "name": name, "dims": dict(dimensions), "value": value, "ts": at or time.time()}
        with _WRITE_LOCK:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(line) + "\n")

    def __iter__(self) -> Iterator[Datapoint]:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    item = json.loads(line)
                    yield Datapoint(
                        item["ns"], item["name"], dims_of(item["dims"]), float(item["value"]), float(item["ts"])
                    )
                except (ValueError, KeyError, TypeError):
                    continue

    def record_invocation(self, function_name: str, failed: bool) -> None:
        """What Lambda publishes for one invocation: Invocations, and Errors when the handler raised."""
        store, dims = self, {"FunctionName": function_name}
        now = time.time()
        store.put("AWS/Lambda", "Invocations", dims, 1.0, now)
        store.put("AWS/Lambda", "Errors", dims, 1.0 if failed else 0.0, now)

    def record_execution(self, state_machine_arn: str, status: str) -> None:
        """What Step Functions publishes for one finished execution."""
        store, dims = self, {"StateMachineArn": state_machine_arn}
        now = time.time()
        store.put("AWS/States", "ExecutionsStarted", dims, 1.0, now)
        if status in EXECUTION_METRICS:
            store.put("AWS/States", EXECUTION_METRICS[status], dims, 1.0, now)

    def record_query(self, workgroup: str, bytes_scanned: int, engine_ms: int) -> None:
        """What Athena publishes for one query of a workgroup that publishes CloudWatch metrics."""
        store, dims = self, {"WorkGroup": workgroup}
        now = time.time()
        store.put("AWS/Athena", "ProcessedBytes", dims, float(bytes_scanned), now)
        store.put("AWS/Athena", "TotalExecutionTime", dims, float(engine_ms), now)


def emf_datapoints(log_dir: Path) -> Iterator[Datapoint]:
    """Every metric of the embedded-metric-format lines in the function logs."""
    if not log_dir.is_dir():
        return
    for path in sorted(log_dir.glob("*.log")):
        with path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if '"_aws"' not in line or not line.startswith("{"):
                    continue
                try:
                    document = json.loads(line)
                    meta = document["_aws"]
                    timestamp = float(meta["Timestamp"]) / 1000.0
                except (ValueError, KeyError, TypeError):
                    continue
                yield from _emf_metrics(document, meta, timestamp)


def _emf_metrics(document: dict[str, Any], meta: dict[str, Any], timestamp: float) -> Iterator[Datapoint]:
    for directive in meta.get("CloudWatchMetrics", []):
        namespace = str(directive.get("Namespace", ""))
        for dimension_set in directive.get("Dimensions", []) or [[]]:
            dims = dims_of({key: document.get(key, "") for key in dimension_set})
            for metric in directive.get("Metrics", []):
                values = document.get(metric.get("Name"))
                for value in values if isinstance(values, list) else [values]:
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        yield Datapoint(namespace, str(metric["Name"]), dims, float(value), timestamp)

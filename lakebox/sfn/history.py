"""An execution and its event history, shaped after DescribeExecution and GetExecutionHistory."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lakebox.sfn.errors import RUNTIME, StatesError

# Step Functions fails a Standard execution whose history would exceed this many events.
MAX_HISTORY_EVENTS = 25_000


@dataclass(frozen=True)
class HistoryEvent:
    """One event: ``TaskStateEntered``, ``TaskScheduled``, ``TaskFailed``, ``TaskRetry``, ``MapIterationStarted``...

    ``state`` names the state the event belongs to (``None`` for execution events); ``details`` carries the
    input, output, resource, parameters, error and cause, attempt or delay as the event type calls for.
    """

    id: int
    type: str
    timestamp: datetime
    state: str | None
    details: dict[str, Any]


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Execution:
    """The record of one execution: identity, status, output or error, and its history."""

    execution_arn: str
    name: str
    state_machine_arn: str
    input: Any
    start_date: datetime
    status: str = "RUNNING"
    output: Any = None
    error: str | None = None
    cause: str | None = None
    stop_date: datetime | None = None
    history: list[HistoryEvent] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, timestamp: datetime, event_type: str, state: str | None = None, **details: Any) -> None:
        """Append an event (thread-safe).

        Raises
        ------
        StatesError
            ``States.Runtime`` once the history would pass the limit Step Functions enforces, which also
            stops a state machine that loops forever.
        """
        with self._lock:
            if len(self.history) >= MAX_HISTORY_EVENTS and not event_type.startswith("Execution"):
                raise StatesError(RUNTIME, f"the execution history reached {MAX_HISTORY_EVENTS} events")
            self.history.append(HistoryEvent(len(self.history) + 1, event_type, timestamp, state, details))

    @property
    def succeeded(self) -> bool:
        """Whether the execution ended in ``SUCCEEDED``."""
        return self.status == "SUCCEEDED"

    def events(self, event_type: str | None = None, state: str | None = None) -> list[HistoryEvent]:
        """Return the events, optionally only those of a type and/or of a state."""
        with self._lock:
            events = list(self.history)
        return [
            event
            for event in events
            if (event_type is None or event.type == event_type) and (state is None or event.state == state)
        ]

    def states_entered(self) -> list[str]:
        """Return the names of the states entered, in order (iterations and branches included)."""
        return [event.state for event in self.events() if event.type.endswith("StateEntered") and event.state]

    def attempts(self, state: str) -> int:
        """Return how many times the Task state called its resource (first call plus retries)."""
        return len(self.events("TaskScheduled", state))

    def retries(self, state: str) -> int:
        """Return how many retries the state's Retry field scheduled."""
        return sum(1 for event in self.events(state=state) if event.type.endswith("Retry"))

    def scheduled_resources(self) -> list[str]:
        """Return the resource of every task call, in order."""
        return [str(event.details["resource"]) for event in self.events("TaskScheduled")]

    def describe(self) -> dict[str, Any]:
        """Return a DescribeExecution-like JSON view."""
        view: dict[str, Any] = {
            "executionArn": self.execution_arn,
            "stateMachineArn": self.state_machine_arn,
            "name": self.name,
            "status": self.status,
            "startDate": _iso(self.start_date),
            "input": self.input,
        }
        if self.stop_date is not None:
            view["stopDate"] = _iso(self.stop_date)
        if self.status == "SUCCEEDED":
            view["output"] = self.output
        if self.error is not None:
            view["error"] = self.error
            view["cause"] = self.cause
        return view

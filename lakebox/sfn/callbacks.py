"""Task tokens for the callback pattern (``.waitForTaskToken``): SendTaskSuccess, SendTaskFailure, SendTaskHeartbeat."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lakebox.sfn.clock import Clock, ManualClock, wait_for
from lakebox.sfn.errors import HEARTBEAT_TIMEOUT, TIMEOUT, StatesError

MAX_OUTPUT_BYTES = 256 * 1024
STOP_POLL_SECONDS = 0.1
"""How often a task waiting for its token looks whether its execution was stopped."""


class TaskTokenError(Exception):
    """A Send* call the Step Functions API would refuse; ``code`` is its exception name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass
class _Pending:
    event: threading.Event = field(default_factory=threading.Event)
    outcome: tuple[str, Any] | None = None
    beats: int = 0
    closed: str | None = None


class TaskTokens:
    """The task tokens an executor waits on; an endpoint calls the Send* methods when a worker reports back.

    One object serves every execution that shares it; it is thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, _Pending] = {}

    def open(self, token: str) -> None:
        """Start waiting for ``token`` (before the task's resource is called, which may answer at once)."""
        with self._lock:
            self._tokens[token] = _Pending()

    def pending(self) -> list[str]:
        """Return the tokens still waiting for an answer."""
        with self._lock:
            return [token for token, entry in self._tokens.items() if entry.outcome is None and entry.closed is None]

    def _entry(self, token: str) -> _Pending:
        entry = self._tokens.get(token)
        if entry is None:
            raise TaskTokenError("InvalidToken", "the task token is not one this executor issued")
        if entry.closed is not None or entry.outcome is not None:
            raise TaskTokenError("TaskTimedOut", f"the task is no longer waiting ({entry.closed or 'answered'})")
        return entry

    def send_task_success(self, task_token: str, output: str) -> None:
        """Complete the task with ``output`` (JSON text, as the API takes it)."""
        try:
            value = json.loads(output)
        except (TypeError, ValueError) as exc:
            raise TaskTokenError("InvalidOutput", f"the output is not JSON: {exc}") from exc
        if len(output.encode()) > MAX_OUTPUT_BYTES:
            raise TaskTokenError("InvalidOutput", f"the output is over {MAX_OUTPUT_BYTES} bytes")
        self._finish(task_token, ("success", value))

    def send_task_failure(self, task_token: str, error: str = "", cause: str = "") -> None:
        """Fail the task with ``error`` (what Retry and Catch match) and ``cause``."""
        self._finish(task_token, ("failure", StatesError(error, cause)))

    def send_task_heartbeat(self, task_token: str) -> None:
        """Report that the worker is still busy: the heartbeat timer starts again."""
        with self._lock:
            entry = self._entry(task_token)
            entry.beats += 1
            entry.event.set()

    def _finish(self, token: str, outcome: tuple[str, Any]) -> None:
        with self._lock:
            entry = self._entry(token)
            entry.outcome = outcome
            entry.event.set()

    def wait(
        self,
        token: str,
        clock: Clock,
        timeout: float | None,
        heartbeat: float | None,
        check: Callable[[], None] | None = None,
    ) -> Any:
        """Wait for the token's answer and return the output sent with SendTaskSuccess.

        ``check`` is called while waiting (every ``STOP_POLL_SECONDS`` of real time): whatever it raises (the
        executor's abort when the execution is stopped) ends the wait, and the token is no longer answered.

        Raises
        ------
        StatesError
            The error sent with SendTaskFailure; ``States.Timeout`` after ``timeout`` seconds, or
            ``States.HeartbeatTimeout`` when no heartbeat (or answer) came for ``heartbeat`` seconds.
        """
        entry = self._tokens[token]
        started = last_beat = clock.now()
        beats = 0
        while True:
            if check is not None:
                try:
                    check()
                except BaseException:
                    with self._lock:
                        entry.closed = entry.closed or "the execution was stopped"
                    raise
            with self._lock:
                if entry.outcome is not None:
                    kind, value = entry.outcome
                    if kind == "failure":
                        raise value
                    return value
                if entry.beats != beats:
                    beats, last_beat = entry.beats, clock.now()
                entry.event.clear()
            now = clock.now()
            budgets: list[tuple[float, str]] = []
            if timeout is not None:
                budgets.append((timeout - (now - started).total_seconds(), TIMEOUT))
            if heartbeat is not None:
                budgets.append((heartbeat - (now - last_beat).total_seconds(), HEARTBEAT_TIMEOUT))
            budget, error = min(budgets) if budgets else (None, "")
            if budget is not None and budget <= 0:
                with self._lock:
                    entry.closed = error
                raise StatesError(error, "the task did not answer in time (no SendTaskSuccess or SendTaskFailure)")
            if check is not None and not isinstance(clock, ManualClock):
                budget = STOP_POLL_SECONDS if budget is None else min(budget, STOP_POLL_SECONDS)
            wait_for(clock, entry.event, budget)

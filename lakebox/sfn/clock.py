"""Clocks the executor reads and sleeps on: real, compressed (for lakebox) and manual (for tests)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """What the executor needs of time: the current instant and a way to let time pass."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware in UTC."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of (possibly virtual) time pass."""
        ...


class SystemClock:
    """Wall-clock time; waits really wait."""

    def now(self) -> datetime:
        """Return the current UTC time."""
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds``."""
        if seconds > 0:
            time.sleep(seconds)


class CompressedClock:
    """Wall-clock time in which waits are shortened by ``factor`` while virtual time advances by the full wait.

    With ``factor=0`` a ``Wait`` of an hour returns at once, yet ``now()`` afterwards reads an hour later, so
    ``Timestamp`` waits and ``$$.State.EnteredTime`` stay consistent.
    """

    def __init__(self, factor: float = 0.0) -> None:
        if factor < 0:
            raise ValueError("factor must be >= 0")
        self._factor = factor
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """Return wall-clock time plus the virtual time skipped so far."""
        with self._lock:
            offset = self._offset
        return datetime.now(UTC) + timedelta(seconds=offset)

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds * factor`` for real and account for the rest as skipped virtual time."""
        if seconds <= 0:
            return
        real = seconds * self._factor
        with self._lock:
            self._offset += seconds - real
        if real > 0:
            time.sleep(real)


class ManualClock:
    """A virtual clock for tests: time moves only when something sleeps, and every sleep is recorded."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        """Return the virtual time."""
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        """Advance the virtual time by ``seconds`` and record the sleep."""
        with self._lock:
            self.sleeps.append(seconds)
            if seconds > 0:
                self._now += timedelta(seconds=seconds)

    def advance(self, seconds: float) -> None:
        """Move the virtual time forward without recording a sleep."""
        with self._lock:
            self._now += timedelta(seconds=seconds)


class Waitable(Protocol):
    """What a clock waits on for an outside party (a task token's completion or heartbeat)."""

    def wait(self, timeout: float | None = None) -> bool:
        """Block until set or ``timeout`` real seconds passed; return whether it was set."""
        ...

    def is_set(self) -> bool:
        """Whether it is set."""
        ...


def wait_for(clock: Clock, event: Waitable, seconds: float | None) -> bool:
    """Wait up to ``seconds`` of the clock's time for ``event``; ``None`` waits as long as it takes.

    A callback comes from outside the executor, so on the system and compressed clocks the wait is real (and the
    compressed clock's virtual time moves with it); on a :class:`ManualClock` an event not yet set times out at
    once, advancing the virtual time by ``seconds``, so tests assert timeouts without waiting.
    """
    if event.is_set():
        return True
    if isinstance(clock, ManualClock):
        if seconds is None:
            return event.wait()
        clock.advance(seconds)
        return event.is_set()
    return event.wait(seconds)

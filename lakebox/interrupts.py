"""Ctrl-C during a run: remembered, so the executor stops the run as Step Functions stops an execution (ABORTED).

A SIGINT can reach the run anywhere: in our code (a `KeyboardInterrupt`), or inside a Py4J call to Spark, which
turns it into a `Py4JError` and a failed job. Either way the watch's event is set, and the executor ends the run
ABORTED at the next state instead of taking the failure path (no failure record, no alert). PySpark installs its
own SIGINT handler when its context starts (to cancel the running jobs): `rewatch` puts the watch back in front of
it, chained.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

_Handler = Callable[[int, FrameType | None], Any]


class InterruptWatch:
    """Sets `event` on SIGINT, then lets the handler it replaced (or the default) raise `KeyboardInterrupt`."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def handler(self, previous: Any) -> _Handler:
        """A SIGINT handler that records the interrupt, then chains to `previous`."""

        def on_interrupt(signum: int, frame: FrameType | None) -> Any:
            self.event.set()
            if callable(previous) and previous is not signal.default_int_handler:
                previous(signum, frame)
            raise KeyboardInterrupt

        on_interrupt.lakebox_watch = self  # type: ignore[attr-defined]
        return on_interrupt

    @contextmanager
    def watching(self) -> Iterator[threading.Event]:
        """Watch for SIGINT while the block runs (only the main thread can; elsewhere the event never sets)."""
        if threading.current_thread() is not threading.main_thread():
            yield self.event
            return
        previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self.handler(previous))
        try:
            yield self.event
        finally:
            signal.signal(signal.SIGINT, previous)


def rewatch(before: Any) -> None:
    """After a library replaced the SIGINT handler `before` (PySpark does), put a watch that was there back in front."""
    watch = getattr(before, "lakebox_watch", None)
    if not isinstance(watch, InterruptWatch) or threading.current_thread() is not threading.main_thread():
        return
    current = signal.getsignal(signal.SIGINT)
    if current is not before:
        signal.signal(signal.SIGINT, watch.handler(current))

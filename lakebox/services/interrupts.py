"""Ctrl-C during a run: remembered, so the executor stops the run as Step Functions stops an execution (ABORTED).

The first Ctrl-C sets the watch's event and cancels the running Spark jobs (from a thread of its own: a Py4J call
from the signal handler would re-enter the call it interrupted); the job then fails and the executor, seeing the
event, ends the run ABORTED at the next state instead of taking the failure path (no failure record, no alert). A
second Ctrl-C interrupts at once. PySpark installs its own SIGINT handler when its context starts: `rewatch` puts
the watch back.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

_Handler = Callable[[int, FrameType | None], Any]


class InterruptWatch:
    """Sets `event` on the first SIGINT and cancels Spark's jobs; raises `KeyboardInterrupt` on the second."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def handler(self) -> _Handler:
        """The SIGINT handler of this watch."""

        def on_interrupt(signum: int, frame: FrameType | None) -> None:
            if self.event.is_set():
                raise KeyboardInterrupt
            self.event.set()
            _cancel_spark_jobs()

        on_interrupt.lakebox_watch = self  # type: ignore[attr-defined]
        return on_interrupt

    @contextmanager
    def watching(self) -> Iterator[threading.Event]:
        """Watch for SIGINT while the block runs (only the main thread can; elsewhere the event never sets)."""
        if threading.current_thread() is not threading.main_thread():
            yield self.event
            return
        previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self.handler())
        try:
            yield self.event
        finally:
            signal.signal(signal.SIGINT, previous)


def rewatch(before: Any) -> None:
    """After a library replaced the SIGINT handler `before` (PySpark does), put a watch that was there back."""
    watch = getattr(before, "lakebox_watch", None)
    if not isinstance(watch, InterruptWatch) or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is not before:
        signal.signal(signal.SIGINT, watch.handler())


def interrupted() -> bool:
    """Whether the run being watched has seen Ctrl-C (a job failing then is the interrupt, not a defect to show)."""
    watch = getattr(signal.getsignal(signal.SIGINT), "lakebox_watch", None)
    return isinstance(watch, InterruptWatch) and watch.event.is_set()


def _cancel_spark_jobs() -> None:
    """Cancel the running jobs of the process's SparkContext, if PySpark started one."""
    pyspark = sys.modules.get("pyspark")
    context = getattr(getattr(pyspark, "SparkContext", None), "_active_spark_context", None)
    if context is None:
        return

    def cancel() -> None:
        from py4j.protocol import Py4JError  # type: ignore[import-untyped]

        try:
            context.cancelAllJobs()
        except Py4JError as exc:
            logger.debug("cancelling Spark's jobs: %s", exc)

    threading.Thread(target=cancel, name="lakebox-cancel-spark", daemon=True).start()

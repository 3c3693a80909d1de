"""The task integration registry (resource ARN pattern -> handler), the services that fill it, and fault injection."""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from lakebox.sfn.errors import TaskError


@dataclass(frozen=True)
class TaskContext:
    """What a task handler learns about the call besides its parameters."""

    state_name: str
    resource: str
    context: Mapping[str, Any]
    retry_count: int = 0


Handler = Callable[[Any, TaskContext], Any]
Middleware = Callable[[Handler], Handler]


class TaskService(Protocol):
    """A service that serves Task states: the one shape in which anything meets the executor."""

    def task_handlers(self) -> Mapping[str, Handler]:
        """The resource patterns (exact ARNs or globs) this service answers, each with its handler."""
        ...


class Integrations:
    """Maps Task ``Resource`` ARNs to handlers.

    A pattern is either an exact ARN or a glob (``arn:aws:states:::aws-sdk:*``). An exact match wins; among
    globs, the longest matching pattern wins, so a specific override beats a generic integration whatever
    the order of registration.
    """

    def __init__(self, handlers: Mapping[str, Handler] | None = None) -> None:
        self._handlers: dict[str, Handler] = dict(handlers or {})
        self._middleware: tuple[Middleware, ...] = ()

    @classmethod
    def serving(cls, *services: TaskService) -> Integrations:
        """Return a registry of the handlers of ``services``; a later service takes over a pattern an earlier serves.

        Parameters
        ----------
        *services
            The services, the generic ones first (``aws-sdk:*`` through boto3), then the local ones that take over.
        """
        integrations = cls()
        for service in services:
            for pattern, handler in service.task_handlers().items():
                integrations.register(pattern, handler)
        return integrations

    def register(self, pattern: str, handler: Handler) -> None:
        """Register ``handler`` for the resources matching ``pattern`` (replacing any handler for it)."""
        self._handlers[pattern] = handler

    def patterns(self) -> list[str]:
        """Return the registered patterns."""
        return list(self._handlers)

    def resolve(self, resource: str) -> Handler | None:
        """Return the handler for ``resource`` (wrapped by any middleware), or ``None`` when none matches."""
        handler = self._handlers.get(resource)
        if handler is None:
            globs = [pattern for pattern in self._handlers if fnmatch.fnmatchcase(resource, pattern)]
            if not globs:
                return None
            handler = self._handlers[max(globs, key=len)]
        for middleware in self._middleware:
            handler = middleware(handler)
        return handler

    def with_middleware(self, middleware: Middleware) -> Integrations:
        """Return a copy of this registry whose handlers are all wrapped by ``middleware``."""
        wrapped = Integrations(self._handlers)
        wrapped._middleware = (*self._middleware, middleware)
        return wrapped


@dataclass
class Fault:
    """A failure to inject where a Task calls its resource, without editing the state machine.

    Parameters
    ----------
    resource
        Exact resource ARN or glob of the tasks to fail.
    error
        The error name the task fails with (what Retry and Catch match).
    cause
        The cause reported with it.
    times
        Fail this many calls, then let calls through; ``None`` fails every call.
    state
        Only fail calls made by the state with this name.
    """

    resource: str
    error: str
    cause: str = "fault injected at the task boundary"
    times: int | None = None
    state: str | None = None
    triggered: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def applies_to(self, task: TaskContext) -> bool:
        """Tell whether this fault targets the call (resource and state only, not the remaining count)."""
        return fnmatch.fnmatchcase(task.resource, self.resource) and self.state in (None, task.state_name)

    def take(self, task: TaskContext) -> bool:
        """Consume one failure for this call if the fault targets it and has failures left."""
        if not self.applies_to(task):
            return False
        with self._lock:
            if self.times is not None and self.triggered >= self.times:
                return False
            self.triggered += 1
            return True


def inject_faults(integrations: Integrations, *faults: Fault) -> Integrations:
    """Return a registry whose tasks fail as ``faults`` say before reaching their real handler.

    Parameters
    ----------
    integrations
        The registry to wrap (left unchanged).
    *faults
        The faults; the first one that applies to a call and has failures left raises.

    Returns
    -------
    Integrations
        The wrapped registry; ``Fault.triggered`` counts the failures injected.
    """

    def middleware(handler: Handler) -> Handler:
        def faulty(parameters: Any, task: TaskContext) -> Any:
            for fault in faults:
                if fault.take(task):
                    raise TaskError(fault.error, fault.cause)
            return handler(parameters, task)

        return faulty

    return integrations.with_middleware(middleware)

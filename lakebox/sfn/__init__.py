"""A local Amazon States Language executor: run state machines with Retry/Catch, Map, Parallel and intrinsics."""

from __future__ import annotations

from lakebox.sfn.clock import Clock, CompressedClock, ManualClock, SystemClock
from lakebox.sfn.errors import DefinitionError, StatesError, TaskError, UnsupportedFeatureError
from lakebox.sfn.executor import run_execution
from lakebox.sfn.history import Execution, HistoryEvent
from lakebox.sfn.registry import Fault, Integrations, TaskContext, TaskService, inject_faults
from lakebox.sfn.validation import validate_definition

__all__ = [
    "Clock",
    "CompressedClock",
    "DefinitionError",
    "Execution",
    "Fault",
    "HistoryEvent",
    "Integrations",
    "ManualClock",
    "StatesError",
    "SystemClock",
    "TaskContext",
    "TaskError",
    "TaskService",
    "UnsupportedFeatureError",
    "inject_faults",
    "run_execution",
    "validate_definition",
]

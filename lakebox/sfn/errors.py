"""Errors raised while running a state machine: ASL errors with a name and a cause, and definition errors."""

from __future__ import annotations

# Error names the Amazon States Language reserves (the subset this executor raises or matches).
ALL = "States.ALL"
TASK_FAILED = "States.TaskFailed"
TIMEOUT = "States.Timeout"
RUNTIME = "States.Runtime"
DATA_LIMIT_EXCEEDED = "States.DataLimitExceeded"
NO_CHOICE_MATCHED = "States.NoChoiceMatched"
PARAMETER_PATH_FAILURE = "States.ParameterPathFailure"
RESULT_PATH_MATCH_FAILURE = "States.ResultPathMatchFailure"
INTRINSIC_FAILURE = "States.IntrinsicFailure"
HEARTBEAT_TIMEOUT = "States.HeartbeatTimeout"
QUERY_EVALUATION_ERROR = "States.QueryEvaluationError"
ITEM_READER_FAILED = "States.ItemReaderFailed"
RESULT_WRITER_FAILED = "States.ResultWriterFailed"
EXCEED_TOLERATED_FAILURE_THRESHOLD = "States.ExceedToleratedFailureThreshold"
LAMBDA_RESOURCE_NOT_FOUND = "Lambda.ResourceNotFoundException"

# Terminal errors: no Retry or Catch (not even States.ALL) handles them.
UNCATCHABLE = frozenset({RUNTIME, DATA_LIMIT_EXCEEDED})


class StatesError(Exception):
    """An error as Step Functions reports it: an error name (what Retry and Catch match) and a cause."""

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error = error
        self.cause = cause

    def as_output(self) -> dict[str, str]:
        """Return the error output a Catch hands to its ResultPath: ``{"Error": ..., "Cause": ...}``."""
        return {"Error": self.error, "Cause": self.cause}


class TaskError(StatesError):
    """Raised by a task integration to fail the task with an error name that Retry and Catch can match."""


class DefinitionError(ValueError):
    """The state machine definition is invalid; the message names the state at fault."""


class UnsupportedFeatureError(DefinitionError):
    """The definition uses an ASL feature this local executor does not run; the message names the state."""


def error_matches(error_equals: list[str], error: str) -> bool:
    """Tell whether a Retrier's or Catcher's ``ErrorEquals`` matches an error name.

    Parameters
    ----------
    error_equals
        The names listed by the Retrier or Catcher.
    error
        The name of the error raised by the state.

    Returns
    -------
    bool
        ``States.ALL`` matches every error but the terminal ones (``States.Runtime``,
        ``States.DataLimitExceeded``); ``States.TaskFailed`` matches the same set except the timeouts;
        ``States.Timeout`` also matches ``States.HeartbeatTimeout``; any other name matches itself.
    """
    if error in UNCATCHABLE:
        return False
    timeouts = (TIMEOUT, HEARTBEAT_TIMEOUT)
    return any(
        name in (error, ALL)
        or (name == TASK_FAILED and error not in timeouts)
        or (name == TIMEOUT and error == HEARTBEAT_TIMEOUT)
        for name in error_equals
    )

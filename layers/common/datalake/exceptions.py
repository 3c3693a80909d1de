"""The project's errors; the class names are part of the state machines' Retry/Catch contract."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class DataLakeError(Exception):
    """Base of every error raised by the data lake's own code."""


class TransientError(DataLakeError):
    """A failure worth retrying (throttling, a timeout, a dependency briefly unavailable)."""


class TerminalError(DataLakeError):
    """A failure that retrying cannot fix; the caller quarantines the input or fails the run."""


class ConfigurationError(TerminalError):
    """A required setting is missing or invalid."""


class UnknownDatasetError(TerminalError):
    """An object or record names a dataset that has no registered contract."""


class ObjectRejectedError(TerminalError):
    """A whole object cannot be read (bad compression, a gzip bomb, bad encoding); it is quarantined."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class AccountingError(TerminalError):
    """The counts of an ingestion do not reconcile (read != landed + quarantined)."""


class QualityGateFailed(TerminalError):
    """Quality rules failed on processed data; nothing may be promoted to curated. Carries the whole report."""

    def __init__(self, message: str, report: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.report = dict(report)

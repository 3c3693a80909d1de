"""The values a query passes through: executions and their history, tables and partitions as the engine sees
them, statement splitting, the query errors and SQL quoting."""

from __future__ import annotations

import datetime as dt
import functools
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import duckdb
from sqlglot import exp

from datalake.exceptions import TerminalError
from lakebox.services import s3uri
from lakebox.services.crawler import CSV_SERDES, JSON_SERDES

if TYPE_CHECKING:
    pass

CATALOG: Final = "awsdatacatalog"
MAX_WRITERS: Final = 100
"""Athena's limit of partitions one CTAS or INSERT INTO may write."""
MAX_RESULTS: Final = 1000
DEFAULT_PARTITION: Final = "__HIVE_DEFAULT_PARTITION__"
_VIEW_PREFIX: Final = "/* Presto View: "
_VIEW_SUFFIX: Final = " */"
_MAX_VIEW_DEPTH: Final = 16
_UPLOAD_THREADS: Final = 8


def data_type(text: str | exp.DType, dialect: str | None = None) -> exp.DataType:
    """`exp.DataType.build(text, dialect=dialect)`, parsed once per text: a query builds the same few types for
    every literal and column, and parsing them is most of the fixed cost of translating it. A fresh copy each call."""
    return _parsed_type(text, dialect).copy()


@functools.lru_cache(maxsize=1024)
def _parsed_type(text: str | exp.DType, dialect: str | None) -> exp.DataType:
    return exp.DataType.build(text, dialect=dialect)


class QueryFailedError(TerminalError):
    """An Athena query ended in FAILED or CANCELLED; the message is Athena's state change reason."""

    def __init__(self, execution_id: str, state: str, reason: str) -> None:
        super().__init__(f"query {execution_id} {state}: {reason}")
        self.execution_id = execution_id
        self.state = state
        self.reason = reason


class _QueryError(Exception):
    """A query failure carrying Athena's reason text and the state it ends in."""

    def __init__(self, reason: str, state: str = "FAILED") -> None:
        super().__init__(reason)
        self.reason = reason
        self.state = state


@dataclass
class _Outcome:
    statement_type: str
    substatement: str
    columns: list[tuple[str, str]] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    bytes_scanned: int = 0
    update_count: int | None = None


@dataclass
class _Execution:
    execution_id: str
    query: str
    workgroup: str
    database: str
    output_prefix: str
    submitted: dt.datetime
    state: str = "RUNNING"
    reason: str | None = None
    completed: dt.datetime | None = None
    outcome: _Outcome | None = None
    output_location: str | None = None
    engine_ms: int = 0
    planning_ms: int = 0

    def describe(self) -> dict[str, Any]:
        """The GetQueryExecution response, JSON-safe."""
        outcome = self.outcome
        status: dict[str, Any] = {"State": self.state, "SubmissionDateTime": _iso(self.submitted)}
        if self.completed is not None:
            status["CompletionDateTime"] = _iso(self.completed)
        if self.reason:
            status["StateChangeReason"] = self.reason
        if self.state != "SUCCEEDED":
            status["AthenaError"] = {"ErrorCategory": 2, "Retryable": False, "ErrorMessage": self.reason or ""}
        total = 0 if self.completed is None else int((self.completed - self.submitted).total_seconds() * 1000)
        execution: dict[str, Any] = {
            "QueryExecutionId": self.execution_id,
            "Query": self.query,
            "StatementType": outcome.statement_type if outcome else _statement_kind(self.query)[0],
            "ResultConfiguration": {"OutputLocation": self.output_location or self.output_prefix},
            "QueryExecutionContext": {"Database": self.database, "Catalog": CATALOG},
            "Status": status,
            "Statistics": {
                "EngineExecutionTimeInMillis": self.engine_ms,
                "DataScannedInBytes": outcome.bytes_scanned if outcome else 0,
                "TotalExecutionTimeInMillis": total,
                "QueryQueueTimeInMillis": 0,
                "QueryPlanningTimeInMillis": self.planning_ms,
                "ServiceProcessingTimeInMillis": max(total - self.engine_ms, 0),
            },
            "WorkGroup": self.workgroup,
            "EngineVersion": {
                "SelectedEngineVersion": "AUTO",
                "EffectiveEngineVersion": "Athena engine version 3",
            },
        }
        if outcome is not None:
            execution["SubstatementType"] = outcome.substatement
        return {"QueryExecution": execution}


_KEEP_EXECUTIONS: Final = 500


class QueryHistory:
    """Query executions, newest last; the oldest are forgotten past `_KEEP_EXECUTIONS` (kept by the box)."""

    def __init__(self) -> None:
        self.executions: OrderedDict[str, _Execution] = OrderedDict()
        self.lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        with self.lock:
            return {"executions": OrderedDict(self.executions)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.executions = state["executions"]
        self.lock = threading.Lock()

    def add(self, execution: _Execution) -> None:
        """Remember an execution."""
        with self.lock:
            self.executions[execution.execution_id] = execution
            while len(self.executions) > _KEEP_EXECUTIONS:
                self.executions.popitem(last=False)

    def get(self, execution_id: str) -> _Execution | None:
        """An execution by id."""
        with self.lock:
            return self.executions.get(execution_id)


@dataclass(frozen=True)
class _Partition:
    values: tuple[str, ...]
    location: str


@dataclass(frozen=True)
class _Table:
    database: str
    name: str
    table_type: str
    columns: tuple[tuple[str, str], ...]
    partition_keys: tuple[tuple[str, str], ...]
    location: str
    serde: str
    serde_parameters: dict[str, str]
    parameters: dict[str, str]
    view: dict[str, Any] | None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The Glue table as GetTable answered it (what a grant check is given)."""

    @property
    def qualified(self) -> str:
        return f"{self.database}.{self.name}"

    @property
    def storage(self) -> str:
        """`parquet`, `json` or `csv`, from the SerDe and the classification the catalog records."""
        serde = self.serde
        classification = self.parameters.get("classification", "").lower()
        if "parquet" in serde.lower() or classification == "parquet":
            return "parquet"
        if serde in JSON_SERDES or classification == "json":
            return "json"
        if serde in CSV_SERDES or classification == "csv":
            return "csv"
        raise _QueryError(
            f"NOT_SUPPORTED: table {self.qualified} uses SerDe {serde or '(none)'}, which lakebox cannot read"
        )


@dataclass(frozen=True)
class _FileMeta:
    columns: tuple[str, ...]
    chunk_bytes: dict[str, int]


@dataclass(frozen=True)
class _S3Object:
    uri: str
    size: int
    etag: str


@dataclass
class _Context:
    execution_id: str
    database: str
    output_prefix: str
    cursor: duckdb.DuckDBPyConnection
    cutoff: int | None
    views: int = 0
    planning_ms: float = 0.0
    bound: list[tuple[str, str]] = field(default_factory=list)
    """The views this statement bound its tables to, as (name, DuckDB SQL), in the order they were made."""


@dataclass(frozen=True)
class _Prepared:
    sql: str
    bytes_scanned: int
    zones: dict[str, str] = field(default_factory=dict)
    """The time zone of each output column holding a ``timestamp with time zone``, by name."""


@dataclass(frozen=True)
class _Translation:
    """A SELECT as the engine ran it: what to run again while nothing it was read from has changed.

    `tables` are the catalog entries (database, name) it was read from, views and the tables they name included: a
    Glue change to any of them drops it; `listings` the S3 listings its files came from, each the very list the
    engine's listing cache held (a listing that changed is another list).
    """

    views: tuple[tuple[str, str], ...]
    sql: str
    columns: tuple[tuple[str, str], ...]
    zones: dict[str, str]
    bytes_scanned: int
    tables: frozenset[tuple[str, str]]
    listings: tuple[tuple[tuple[str, str], list[_S3Object]], ...]


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sql_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(_literal(i) for i in items) + "]"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def split_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into bucket and key (`lakebox.services.s3uri`), as a query error if it is not one."""
    try:
        return s3uri.split_s3_uri(uri)
    except ValueError:
        raise _QueryError(f"INVALID_TABLE_PROPERTY: {uri!r} is not an s3:// location") from None


_STATEMENT_KINDS: Final = (
    ("SELECT", ("DML", "SELECT")),
    ("WITH", ("DML", "SELECT")),
    ("VALUES", ("DML", "SELECT")),
    ("INSERT", ("DML", "INSERT")),
    ("SHOW", ("UTILITY", "SHOW")),
    ("DESCRIBE", ("UTILITY", "DESCRIBE_TABLE")),
    ("EXPLAIN", ("UTILITY", "EXPLAIN")),
)


def _statement_kind(query: str) -> tuple[str, str]:
    statements = _split_statements(query)
    head = statements[0].split(None, 1)[0].upper() if statements else ""
    if (
        head == "CREATE"
        and re.search(r"\bAS\s*(\(|SELECT|WITH|VALUES)", statements[0], re.IGNORECASE)
        and not re.search(r"\bVIEW\b", statements[0].split(" AS ", 1)[0], re.IGNORECASE)
    ):
        return "DML", "CREATE_TABLE_AS_SELECT"
    return dict(_STATEMENT_KINDS).get(head, ("DDL", head or "UNKNOWN"))


def _split_statements(sql: str) -> list[str]:
    """Split on semicolons outside quotes and comments; comments are dropped."""
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
            continue
        if c == "/" and sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
            current.append(" ")
            continue
        if c in "'\"`":
            end = i + 1
            while end < n:
                if sql[end] == c:
                    if end + 1 < n and sql[end + 1] == c:
                        end += 2
                        continue
                    break
                end += 1
            current.append(sql[i : end + 1])
            i = end + 1
            continue
        if c == ";":
            statements.append("".join(current).strip())
            current = []
        else:
            current.append(c)
        i += 1
    statements.append("".join(current).strip())
    return [s for s in statements if s]

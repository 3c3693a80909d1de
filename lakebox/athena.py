"""Athena on DuckDB: Trino SQL transpiled with sqlglot, tables resolved through the local Glue catalog."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import re
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast
from urllib.parse import urlsplit

import duckdb
import pyarrow as pa
import sqlglot
from botocore.exceptions import ClientError
from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError, SqlglotError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.pushdown_projections import pushdown_projections
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.qualify_tables import qualify_tables
from sqlglot.optimizer.scope import Scope, traverse_scope
from sqlglot.schema import MappingSchema

from datalake.catalog_backup import table_input_of
from datalake.exceptions import TerminalError
from lakebox.crawler import CSV_SERDES, JSON_SERDES, PARQUET_FORMAT, hidden_key
from lakebox.hive_json import HIVE_JSON_SERDE, timestamp_sql
from lakebox.trino_decimal import DIVIDE_MACRO, DecimalPlanError, exact_decimals

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_athena import AthenaClient
    from mypy_boto3_glue import GlueClient
    from mypy_boto3_glue.type_defs import PartitionInputTypeDef, TableInputTypeDef
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

CATALOG: Final = "awsdatacatalog"
MAX_WRITERS: Final = 100
"""Athena's limit of partitions one CTAS or INSERT INTO may write."""
MAX_RESULTS: Final = 1000
DEFAULT_PARTITION: Final = "__HIVE_DEFAULT_PARTITION__"
_VIEW_PREFIX: Final = "/* Presto View: "
_VIEW_SUFFIX: Final = " */"
_MAX_VIEW_DEPTH: Final = 16
_UPLOAD_THREADS: Final = 8
_T = exp.DataType.Type


class QueryFailedError(TerminalError):
    """An Athena query ended in FAILED or CANCELLED; the message is Athena's state change reason."""

    def __init__(self, execution_id: str, state: str, reason: str) -> None:
        super().__init__(f"query {execution_id} {state}: {reason}")
        self.execution_id = execution_id
        self.state = state
        self.reason = reason


@dataclass(frozen=True)
class QueryResult:
    """A finished query: its columns, Python rows, the bytes it scanned and its execution id."""

    columns: tuple[str, ...]
    types: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    bytes_scanned: int
    execution_id: str
    output_location: str | None = None

    def to_rows(self) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        """Return `(column names, rows)` as the CLI prints them."""
        return self.columns, self.rows


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


@dataclass(frozen=True)
class _Prepared:
    sql: str
    bytes_scanned: int


class AthenaEngine:
    """A local Athena: the query API over DuckDB, the Glue catalog and S3 of the endpoint the session reaches.

    Parameters
    ----------
    session
        The boto3 session whose clients reach the local endpoint (``AWS_ENDPOINT_URL``).
    default_output
        Results location used when neither the call nor the workgroup names one.
    default_database
        The database of queries that name none.
    authorize
        Called with (database, table name, Glue table) for every table or view a statement resolves; a returned
        text denies it, and the statement fails with that reason (Lake Formation's grants, see lakebox.governance).
    on_query
        Called with (workgroup, bytes scanned, engine milliseconds) after every statement, as Athena publishes
        ProcessedBytes and TotalExecutionTime per workgroup (see lakebox.alarms).
    history
        Where executions are kept for GetQueryExecution (the box's, so it is saved with the lake).
    """

    def __init__(
        self,
        session: boto3.Session,
        *,
        default_output: str | None = None,
        default_database: str = "default",
        authorize: Callable[[str, str, dict[str, Any]], str | None] | None = None,
        on_query: Callable[[str, int, int], None] | None = None,
        history: QueryHistory | None = None,
    ) -> None:
        self.history = history if history is not None else QueryHistory()
        self._session = session
        self._default_output = default_output
        self._default_database = default_database
        self._authorize = authorize
        self._on_query = on_query
        self._glue: GlueClient = session.client("glue")
        self._s3: S3Client = session.client("s3")
        self._athena: AthenaClient = session.client("athena")
        self._db: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.RLock()
        self._footers: dict[tuple[str, str], _FileMeta] = {}
        self._tables: dict[tuple[str, str], _Table] = {}
        self._partition_lists: dict[tuple[str, str], list[_Partition]] = {}

    # ------------------------------------------------------------------ API

    def start_query_execution(
        self,
        QueryString: str,
        QueryExecutionContext: dict[str, Any] | None = None,
        ResultConfiguration: dict[str, Any] | None = None,
        WorkGroup: str | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        """Run one statement to completion and return its GetQueryExecution description.

        A statement that fails ends in state FAILED (or CANCELLED past the workgroup's bytes-scanned cutoff)
        with Athena's reason; only request errors (unknown workgroup, no output location) raise ``ClientError``.
        """
        workgroup = WorkGroup or "primary"
        config = self._workgroup(workgroup)
        output = self._output_prefix(config, ResultConfiguration or {})
        context = QueryExecutionContext or {}
        database = str(context.get("Database") or self._default_database).lower()
        execution = _Execution(
            execution_id=str(uuid.uuid4()),
            query=QueryString,
            workgroup=workgroup,
            database=database,
            output_prefix=output,
            submitted=dt.datetime.now(dt.UTC),
        )
        self.history.add(execution)
        cutoff = config.get("BytesScannedCutoffPerQuery")
        with self._lock:
            self._run(execution, int(cutoff) if cutoff else None, config)
        logger.info(
            "athena %s %s in %d ms, %d bytes scanned",
            execution.execution_id,
            execution.state,
            execution.engine_ms,
            execution.outcome.bytes_scanned if execution.outcome else 0,
        )
        if self._on_query is not None:
            scanned = execution.outcome.bytes_scanned if execution.outcome else 0
            self._on_query(workgroup, scanned, execution.engine_ms)
        return execution.describe()

    def get_query_execution(self, QueryExecutionId: str) -> dict[str, Any]:
        """Return the GetQueryExecution description of an execution this process ran."""
        return self._execution(QueryExecutionId).describe()

    def get_query_results(
        self,
        QueryExecutionId: str,
        MaxResults: int | None = None,
        NextToken: str | None = None,
    ) -> dict[str, Any]:
        """Return one page of the results in Athena's ResultSet shape (header row first on the first page)."""
        execution = self._execution(QueryExecutionId)
        if execution.state != "SUCCEEDED" or execution.outcome is None:
            raise _client_error(
                "InvalidRequestException",
                f"Query has not yet finished. Current state: {execution.state}",
                "GetQueryResults",
            )
        outcome = execution.outcome
        limit = min(MaxResults or MAX_RESULTS, MAX_RESULTS)
        start = int(NextToken) if NextToken else 0
        header = start == 0 and outcome.statement_type == "DML" and bool(outcome.columns)
        data_start = start
        page: list[dict[str, Any]] = []
        if header:
            page.append({"Data": [{"VarCharValue": name} for name, _ in outcome.columns]})
            limit -= 1
        chunk = outcome.rows[data_start : data_start + limit]
        page.extend({"Data": [_cell(value) for value in row]} for row in chunk)
        response: dict[str, Any] = {
            "ResultSet": {
                "Rows": page,
                "ResultSetMetadata": {"ColumnInfo": [_column_info(name, kind) for name, kind in outcome.columns]},
            }
        }
        if outcome.update_count is not None:
            response["UpdateCount"] = outcome.update_count
        if data_start + len(chunk) < len(outcome.rows):
            response["NextToken"] = str(data_start + len(chunk))
        return response

    def stop_query_execution(self, QueryExecutionId: str) -> dict[str, Any]:
        """Queries here finish before their start returns, so stopping one changes nothing."""
        self._execution(QueryExecutionId)
        return {}

    def query(self, sql: str, workgroup: str | None = None, database: str | None = None) -> QueryResult:
        """Run `sql` and return its rows, or raise `QueryFailedError` with Athena's reason.

        Parameters
        ----------
        sql
            One Athena (Trino) statement.
        workgroup
            The workgroup to run in (``primary`` when omitted); its output location and cutoff apply.
        database
            The database of unqualified table names (the engine's default when omitted).
        """
        context = {"Database": database} if database else None
        described = self.start_query_execution(QueryString=sql, QueryExecutionContext=context, WorkGroup=workgroup)
        execution = self._execution(described["QueryExecution"]["QueryExecutionId"])
        if execution.state != "SUCCEEDED" or execution.outcome is None:
            raise QueryFailedError(execution.execution_id, execution.state, execution.reason or "unknown failure")
        outcome = execution.outcome
        return QueryResult(
            columns=tuple(name for name, _ in outcome.columns),
            types=tuple(kind for _, kind in outcome.columns),
            rows=outcome.rows,
            bytes_scanned=outcome.bytes_scanned,
            execution_id=execution.execution_id,
            output_location=execution.output_location,
        )

    def close(self) -> None:
        """Close the DuckDB database behind the engine."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # ------------------------------------------------------------ execution

    def _execution(self, execution_id: str) -> _Execution:
        execution = self.history.get(execution_id)
        if execution is None:
            raise _client_error(
                "InvalidRequestException", f"QueryExecution {execution_id} was not found", "GetQueryExecution"
            )
        return execution

    def _workgroup(self, name: str) -> dict[str, Any]:
        try:
            group = self._athena.get_work_group(WorkGroup=name)["WorkGroup"]
        except ClientError as exc:
            raise _client_error(
                "InvalidRequestException", f"WorkGroup {name} is not found.", "StartQueryExecution"
            ) from exc
        if group.get("State", "ENABLED") != "ENABLED":
            raise _client_error("InvalidRequestException", f"WorkGroup {name} is disabled.", "StartQueryExecution")
        return dict(group.get("Configuration") or {})

    def _output_prefix(self, config: dict[str, Any], requested: dict[str, Any]) -> str:
        group_output = (config.get("ResultConfiguration") or {}).get("OutputLocation")
        asked = requested.get("OutputLocation")
        if config.get("EnforceWorkGroupConfiguration") and group_output:
            output = group_output
        else:
            output = asked or group_output or self._default_output
        if not output:
            raise _client_error(
                "InvalidRequestException",
                "No output location provided. An output location is required either through the Workgroup "
                "result configuration setting or as an API input.",
                "StartQueryExecution",
            )
        return str(output) if str(output).endswith("/") else f"{output}/"

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._db is None:
            self._db = _connect(self._session, self._s3.meta.endpoint_url)
        return self._db

    def _run(self, execution: _Execution, cutoff: int | None, config: dict[str, Any]) -> None:
        started = time.perf_counter()
        self._tables.clear()
        self._partition_lists.clear()
        cursor = self._connection().cursor()
        context = _Context(execution.execution_id, execution.database, execution.output_prefix, cursor, cutoff)
        try:
            cursor.execute("SET TimeZone = 'UTC'")
            outcome = self._dispatch(execution.query, context)
            execution.outcome = outcome
            execution.output_location = self._write_results(execution, outcome, config)
            execution.state = "SUCCEEDED"
        except _QueryError as exc:
            execution.state, execution.reason = exc.state, exc.reason
        except duckdb.Error as exc:
            execution.state, execution.reason = "FAILED", _duckdb_reason(exc)
        except SqlglotError as exc:
            execution.state, execution.reason = "FAILED", f"SYNTAX_ERROR: {_first_line(str(exc))}"
        except ClientError as exc:
            error = exc.response.get("Error", {})
            execution.state = "FAILED"
            execution.reason = f"HIVE_METASTORE_ERROR: {error.get('Code', 'ClientError')}: {error.get('Message', '')}"
        except ValueError as exc:
            execution.state, execution.reason = "FAILED", f"INVALID_FUNCTION_ARGUMENT: {_first_line(str(exc))}"
        finally:
            if execution.state == "RUNNING":
                execution.state, execution.reason = "FAILED", "GENERIC_INTERNAL_ERROR: the local engine failed"
            cursor.close()
            execution.engine_ms = int((time.perf_counter() - started) * 1000)
            execution.planning_ms = int(context.planning_ms)
            execution.completed = dt.datetime.now(dt.UTC)

    def _dispatch(self, query: str, ctx: _Context) -> _Outcome:
        statements = _split_statements(query)
        if not statements:
            raise _QueryError("SYNTAX_ERROR: line 1:1: the query is empty")
        if len(statements) > 1:
            raise _QueryError(f"Only one sql statement is allowed. Got: {query.strip()}")
        text = statements[0]
        words = text.split(None, 3)
        head = " ".join(w.upper() for w in words[:2])
        if head == "ALTER TABLE":
            return self._alter_table(text, ctx)
        if head == "MSCK REPAIR":
            return self._msck_repair(text, ctx)
        if words[0].upper() == "SHOW":
            return self._show(text, ctx)
        if words[0].upper() == "EXPLAIN":
            return self._explain(text, ctx)
        if words[0].upper() == "UNLOAD":
            raise _QueryError("NOT_SUPPORTED: lakebox runs CTAS and INSERT INTO; UNLOAD is not available locally")
        try:
            ast = sqlglot.parse_one(text, read="athena")
        except ParseError as exc:
            raise _QueryError(f"SYNTAX_ERROR: {_first_line(str(exc))}") from exc
        if isinstance(ast, exp.Query):
            return self._select(ast, ctx)
        if isinstance(ast, exp.Create):
            return self._create(ast, ctx)
        if isinstance(ast, exp.Insert):
            return self._insert(ast, ctx)
        if isinstance(ast, exp.Drop):
            return self._drop(ast, ctx)
        if isinstance(ast, exp.Describe):
            return self._describe(ast, ctx)
        raise _QueryError(f"NOT_SUPPORTED: lakebox cannot run this statement locally: {_first_line(text)}")

    # ---------------------------------------------------------------- SELECT

    def _select(self, ast: exp.Query, ctx: _Context) -> _Outcome:
        _name_outputs(ast)
        prepared = self._prepare(ast, ctx)
        self._check_cutoff(prepared.bytes_scanned, ctx)
        relation = ctx.cursor.sql(_normalized_select(prepared.sql, ctx.cursor))
        columns = [(name, _athena_type(str(kind))) for name, kind in zip(relation.columns, relation.types, strict=True)]
        rows = relation.fetchall()
        return _Outcome("DML", "SELECT", columns, rows, prepared.bytes_scanned)

    def _check_cutoff(self, scanned: int, ctx: _Context) -> None:
        if ctx.cutoff is not None and scanned > ctx.cutoff:
            raise _QueryError(
                f"Bytes scanned limit was exceeded: the query reads {scanned} bytes and the workgroup allows "
                f"{ctx.cutoff} per query",
                state="CANCELLED",
            )

    def _prepare(self, query: exp.Query, ctx: _Context) -> _Prepared:
        """Inline views, qualify, bind each table reference to a DuckDB view of its pruned files."""
        began = time.perf_counter()
        try:
            return self._bind(query, ctx)
        finally:
            ctx.planning_ms += (time.perf_counter() - began) * 1000

    def _bind(self, query: exp.Query, ctx: _Context) -> _Prepared:
        query = self._inline_views(query, ctx.database)
        tables = {key: self._table(*key) for key in {_table_key(t, ctx.database) for t in _real_tables(query)}}
        for table in tables.values():
            if table.view is not None:
                raise _QueryError(f"NOT_SUPPORTED: view {table.qualified} could not be expanded")
        mapping: dict[str, object] = {}
        for (database, name), table in tables.items():
            per_database = mapping.setdefault(database, {})
            assert isinstance(per_database, dict)
            per_database[name] = dict(table.columns + table.partition_keys)
        schema = MappingSchema(mapping, dialect="hive") if mapping else None
        qualified = True
        try:
            tree = qualify(query.copy(), schema=schema, db=ctx.database, dialect="athena", quote_identifiers=True)
            tree = pushdown_projections(tree)
            tree = annotate_types(tree, schema=schema, dialect="athena")
            tree = _trino_decimals(tree)
        except OptimizeError as exc:
            # DuckDB then binds the query itself (and names an unknown column); bytes count every column
            logger.debug("sqlglot could not qualify the query, reading every column: %s", exc)
            tree, qualified = query.copy(), False
        scanned = 0
        replacements: list[tuple[exp.Table, exp.Table]] = []
        # A table's columns can be read in more than one scope: an UNNEST (a UDTF scope) sees the sources of the
        # query it is joined in and reads their nested columns; its partitions are pruned in its own scope.
        reads: dict[int, tuple[exp.Table, str, _Table, set[str] | None, list[_Partition] | None]] = {}
        for scope in traverse_scope(tree):
            for alias, source in scope.sources.items():
                if not isinstance(source, exp.Table):
                    continue
                table = tables[_table_key(source, ctx.database)]
                used = _used_columns(scope, alias) if qualified else None
                _, _, _, seen, partitions = reads.get(id(source), (source, alias, table, set(), None))
                columns = None if used is None or seen is None else seen | used
                if not scope.is_udtf:
                    partitions = self._partitions(table) if table.partition_keys else []
                    if partitions and qualified:
                        partitions = _prune(scope, source, alias, table, partitions, ctx.cursor)
                reads[id(source)] = (source, alias, table, columns, partitions)
        for source, alias, table, used, pruned in reads.values():
            if pruned is None:
                pruned = self._partitions(table) if table.partition_keys else []
            sql, nbytes = self._source_sql(table, used, pruned)
            ctx.views += 1
            view = f"__lb_source_{ctx.views}"
            ctx.cursor.execute(f"CREATE TEMP VIEW {view} AS {sql}")
            scanned += nbytes
            replacement = exp.Table(this=exp.to_identifier(view))
            replacement.set("alias", exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))
            replacements.append((source, replacement))
        for source, replacement in replacements:
            source.replace(replacement)
        # After the sources are bound: a map's UNNEST becomes a subquery, whose outer columns no scope counts.
        return _Prepared(_trino_maps(tree).sql(dialect="duckdb"), scanned)

    def _inline_views(self, query: exp.Query, database: str) -> exp.Query:
        for _ in range(_MAX_VIEW_DEPTH):
            replaced = False
            for node in _real_tables(query):
                key = _table_key(node, database)
                table = self._table(*key)
                if table.view is None:
                    continue
                view_sql = str(table.view.get("originalSql", ""))
                view_db = str(table.view.get("schema") or table.database)
                inner = sqlglot.parse_one(view_sql, read="athena")
                inner = qualify_tables(inner, db=view_db, dialect="athena")
                alias = node.alias_or_name
                subquery = exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier(alias)))
                node.replace(subquery)
                replaced = True
            if not replaced:
                return query
        raise _QueryError(f"NOT_SUPPORTED: views nested deeper than {_MAX_VIEW_DEPTH} levels")

    def _table(self, database: str, name: str) -> _Table:
        cached = self._tables.get((database, name))
        if cached is not None:
            return cached
        try:
            raw = self._glue.get_table(DatabaseName=database, Name=name)["Table"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "EntityNotFoundException":
                raise
            if not self._database_exists(database):
                raise _QueryError(f"SCHEMA_NOT_FOUND: Schema '{database}' does not exist") from exc
            raise _QueryError(f"TABLE_NOT_FOUND: Table '{CATALOG}.{database}.{name}' does not exist") from exc
        denial = self._authorize(database, name, dict(raw)) if self._authorize is not None else None
        if denial:
            raise _QueryError(denial)
        table = _to_table(database, dict(raw))
        self._tables[(database, name)] = table
        return table

    def _database_exists(self, database: str) -> bool:
        try:
            self._glue.get_database(Name=database)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "EntityNotFoundException":
                return False
            raise
        return True

    def _partitions(self, table: _Table) -> list[_Partition]:
        cached = self._partition_lists.get((table.database, table.name))
        if cached is not None:
            return cached
        result: list[_Partition] = []
        paginator = self._glue.get_paginator("get_partitions")
        for page in paginator.paginate(DatabaseName=table.database, TableName=table.name):
            for raw in page.get("Partitions", []):
                location = raw.get("StorageDescriptor", {}).get("Location") or _partition_location(
                    table, tuple(raw["Values"])
                )
                result.append(_Partition(tuple(raw["Values"]), location))
        result.sort(key=lambda p: p.values)
        self._partition_lists[(table.database, table.name)] = result
        return result

    def _source_sql(self, table: _Table, used: set[str] | None, partitions: list[_Partition]) -> tuple[str, int]:
        """DuckDB SQL reading a table's files (pruned partitions only) as the catalog's columns, and its bytes."""
        columns = [(n, t) for n, t in table.columns if used is None or n in used]
        keys = table.partition_keys
        groups = [_Partition((), table.location)] if not keys else partitions
        parts: list[str] = []
        scanned = 0
        storage = table.storage
        listed = self._list_groups(table, groups)
        for group in groups:
            objects = listed[group.location]
            if not objects:
                continue
            key_exprs = [
                f"{_cast_literal(None if value == DEFAULT_PARTITION else value, kind)} AS {_quote(name)}"
                for (name, kind), value in zip(keys, group.values, strict=True)
            ]
            if storage == "parquet":
                sql, nbytes = self._parquet_sql(objects, columns, key_exprs)
            elif storage == "json":
                sql, nbytes = _json_sql(objects, columns, key_exprs, table)
            else:
                sql, nbytes = _csv_sql(objects, columns, key_exprs, table)
            parts.append(sql)
            scanned += nbytes
        if not parts:
            select = [f"CAST(NULL AS {glue_to_duckdb(t)}) AS {_quote(n)}" for n, t in (*columns, *keys)]
            return f"SELECT {', '.join(select) or 'NULL AS __lb_empty'} WHERE false", 0
        return "\nUNION ALL\n".join(parts), scanned

    def _parquet_sql(
        self, objects: list[_S3Object], columns: list[tuple[str, str]], key_exprs: list[str]
    ) -> tuple[str, int]:
        metas = self._footers_of(objects)
        by_schema: dict[tuple[str, ...], list[str]] = {}
        scanned = 0
        wanted = {name for name, _ in columns}
        for obj in objects:
            meta = metas[obj.uri]
            by_schema.setdefault(meta.columns, []).append(obj.uri)
            scanned += sum(size for name, size in meta.chunk_bytes.items() if name in wanted)
        selects = []
        for file_columns, uris in by_schema.items():
            present = {c.lower(): c for c in file_columns}
            exprs = [
                f"CAST({_quote(present[n]) if n in present else 'NULL'} AS {glue_to_duckdb(t)}) AS {_quote(n)}"
                for n, t in columns
            ]
            select = ", ".join([*exprs, *key_exprs]) or "NULL AS __lb_empty"
            selects.append(f"SELECT {select} FROM read_parquet({_sql_list(uris)})")
        return "\nUNION ALL\n".join(selects), scanned

    def _footers_of(self, objects: list[_S3Object]) -> dict[str, _FileMeta]:
        missing = [o for o in objects if (o.uri, o.etag) not in self._footers]
        if missing:
            cursor = self._connection().cursor()
            try:
                uris = _sql_list([o.uri for o in missing])
                chunks = cursor.execute(
                    "SELECT file_name, split_part(path_in_schema, ', ', 1) AS name, "
                    "sum(total_compressed_size), min(column_id) AS position "
                    f"FROM parquet_metadata({uris}) GROUP BY ALL ORDER BY file_name, position"
                ).fetchall()
                sizes: dict[str, dict[str, int]] = {}
                names: dict[str, list[str]] = {}
                for file_name, column, size, _ in chunks:
                    sizes.setdefault(str(file_name), {})[str(column).lower()] = int(size or 0)
                    names.setdefault(str(file_name), []).append(str(column))
                empty = [o.uri for o in missing if o.uri not in names]
                if empty:
                    schema = cursor.execute(
                        f"SELECT file_name, name, num_children FROM parquet_schema({_sql_list(empty)})"
                    ).fetchall()
                    nodes: dict[str, list[tuple[str, int]]] = {}
                    for file_name, name, children in schema:
                        nodes.setdefault(str(file_name), []).append((str(name), int(children or 0)))
                    names.update({uri: list(_top_level(nodes.get(uri, []))) for uri in empty})
            finally:
                cursor.close()
            for obj in missing:
                self._footers[(obj.uri, obj.etag)] = _FileMeta(tuple(names.get(obj.uri, [])), sizes.get(obj.uri, {}))
        return {o.uri: self._footers[(o.uri, o.etag)] for o in objects}

    def _list(self, location: str) -> list[_S3Object]:
        bucket, prefix = split_s3_uri(location)
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        found: list[_S3Object] = []
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                key = item["Key"]
                if key.endswith("/") or hidden_key(key[len(prefix) :]) or item.get("Size", 0) == 0:
                    continue
                found.append(_S3Object(f"s3://{bucket}/{key}", int(item["Size"]), str(item.get("ETag", ""))))
        return found

    def _list_groups(self, table: _Table, groups: list[_Partition]) -> dict[str, list[_S3Object]]:
        """Objects under each partition's location; one listing of the table when it holds them all."""
        root = table.location.rstrip("/") + "/"
        folders = {g.location.rstrip("/") + "/": g.location for g in groups}
        if len(groups) <= 2 or not all(folder.startswith(root) for folder in folders):
            return {g.location: self._list(g.location) for g in groups}
        found: dict[str, list[_S3Object]] = {g.location: [] for g in groups}
        for obj in self._list(root):
            folder = obj.uri
            while "/" in folder.removeprefix("s3://"):
                folder = folder[: folder.rstrip("/").rfind("/") + 1]
                if folder in folders:
                    found[folders[folder]].append(obj)
                    break
                if len(folder) <= len(root):
                    break
        return found

    def _is_empty(self, location: str) -> bool:
        bucket, prefix = split_s3_uri(location)
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return not self._s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("Contents")

    # ------------------------------------------------------------ CTAS etc.

    def _create(self, ast: exp.Create, ctx: _Context) -> _Outcome:
        kind = str(ast.args.get("kind") or "").upper()
        if kind == "VIEW":
            return self._create_view(ast, ctx)
        if kind == "TABLE" and isinstance(ast.expression, exp.Query):
            return self._ctas(ast, ctx)
        if kind == "TABLE" and isinstance(ast.this, exp.Schema):
            return self._create_external(ast, ctx)
        if kind in {"DATABASE", "SCHEMA"}:
            return self._create_database(ast)
        raise _QueryError(f"NOT_SUPPORTED: CREATE {kind} is not available locally")

    def _ctas(self, ast: exp.Create, ctx: _Context) -> _Outcome:
        target = ast.this
        if not isinstance(target, exp.Table):
            raise _QueryError("NOT_SUPPORTED: column aliases in CREATE TABLE AS; alias the columns in the query")
        database, name = _table_key(target, ctx.database)
        props = _ctas_properties(ast)
        if self._exists(database, name):
            if ast.args.get("exists"):
                return _Outcome("DML", "CREATE_TABLE_AS_SELECT", [("rows", "bigint")], [(0,)], update_count=0)
            raise _QueryError(f"TABLE_ALREADY_EXISTS: Table '{CATALOG}.{database}.{name}' already exists")
        fmt = str(props.get("format", "PARQUET")).upper()
        if fmt != "PARQUET":
            raise _QueryError(f"NOT_SUPPORTED: lakebox writes CTAS tables as PARQUET, not {fmt}")
        if props.get("bucketed_by"):
            raise _QueryError("NOT_SUPPORTED: bucketed_by is not available locally")
        compression = str(props.get("write_compression") or props.get("parquet_compression") or "GZIP").upper()
        location = str(props.get("external_location") or f"{ctx.output_prefix}tables/{ctx.execution_id}/")
        partitioned_by = [str(p).lower() for p in props.get("partitioned_by", [])]
        query = ast.expression
        assert isinstance(query, exp.Query)
        _require_names(query)
        with_data = props.get("with_data", True) is not False
        prepared = self._prepare(query, ctx)
        shape = _describe(ctx.cursor, prepared.sql)
        columns = [(n.lower(), _duckdb_to_glue(t)) for n, t in shape]
        _check_columns(columns, partitioned_by)
        scanned = prepared.bytes_scanned if with_data else 0
        self._check_cutoff(scanned, ctx)
        if with_data and not self._is_empty(location):
            raise _QueryError(
                f"HIVE_PATH_ALREADY_EXISTS: Target directory for table '{database}.{name}' already exists: "
                f"{location}. You may need to manually clean the data at location '{location}' before retrying. "
                "Athena will not delete data in your account."
            )
        data = [c for c in columns if c[0] not in partitioned_by]
        keys = [next(c for c in columns if c[0] == p) for p in partitioned_by]
        table = _Table(
            database, name, "EXTERNAL_TABLE", tuple(data), tuple(keys), location, PARQUET_FORMAT["serde"], {}, {}, None
        )
        rows = 0
        written: list[_Partition] = []
        if with_data:
            rows, written = self._write(ctx, prepared.sql, table, compression, {})
        self._glue.create_table(DatabaseName=database, TableInput=_table_input(table, compression))
        self._add_partitions(table, written, ignore_existing=False)
        return _Outcome("DML", "CREATE_TABLE_AS_SELECT", [("rows", "bigint")], [(rows,)], scanned, rows)

    def _insert(self, ast: exp.Insert, ctx: _Context) -> _Outcome:
        target = ast.this
        names: list[str] | None = None
        if isinstance(target, exp.Schema):
            names = [c.name.lower() for c in target.expressions]
            target = target.this
        if not isinstance(target, exp.Table):
            raise _QueryError("NOT_SUPPORTED: INSERT target")
        table = self._table(*_table_key(target, ctx.database))
        if table.view is not None or table.storage != "parquet":
            raise _QueryError(f"NOT_SUPPORTED: lakebox inserts into PARQUET tables only ({table.qualified})")
        query = ast.expression
        if not isinstance(query, exp.Query):
            raise _QueryError("NOT_SUPPORTED: INSERT without a query")
        prepared = self._prepare(query, ctx)
        self._check_cutoff(prepared.bytes_scanned, ctx)
        shape = _describe(ctx.cursor, prepared.sql)
        all_columns = list(table.columns + table.partition_keys)
        targets = names or [n for n, _ in all_columns]
        if len(targets) != len(shape):
            raise _QueryError(
                f"Insert query has mismatched column types: table has {len(targets)} columns, query has {len(shape)}"
            )
        unknown = [n for n in targets if n not in dict(all_columns)]
        if unknown:
            raise _QueryError(f"COLUMN_NOT_FOUND: Insert column name does not exist in target table: {unknown[0]}")
        source = {t: _quote(n) for t, (n, _) in zip(targets, shape, strict=True)}
        projection = ", ".join(
            f"CAST({source.get(n, 'NULL')} AS {glue_to_duckdb(kind)}) AS {_quote(n)}" for n, kind in all_columns
        )
        sql = f"SELECT {projection} FROM ({prepared.sql}) AS __lb_insert"
        existing = {p.values: p for p in self._partitions(table)} if table.partition_keys else {}
        compression = table.parameters.get("parquet.compression", "SNAPPY").upper()
        rows, written = self._write(ctx, sql, table, compression, existing)
        self._add_partitions(table, [p for p in written if p.values not in existing], ignore_existing=True)
        return _Outcome("DML", "INSERT", [("rows", "bigint")], [(rows,)], prepared.bytes_scanned, rows)

    def _write(
        self,
        ctx: _Context,
        sql: str,
        table: _Table,
        compression: str,
        existing: dict[tuple[str, ...], _Partition],
    ) -> tuple[int, list[_Partition]]:
        """Write the query's rows as Parquet into the table's location (one folder per partition)."""
        cursor = ctx.cursor
        keys = [n for n, _ in table.partition_keys]
        casts = ", ".join(
            f"CAST({_quote(n)} AS {glue_to_duckdb(kind)}) AS {_quote(n)}"
            for n, kind in table.columns + table.partition_keys
        )
        order = ", ".join(_quote(k) for k in keys)
        rank = f", dense_rank() OVER (ORDER BY {order}) AS __lb_part" if keys else ", 1 AS __lb_part"
        cursor.execute(f"CREATE TEMP TABLE __lb_out AS SELECT {casts}{rank} FROM ({sql}) AS __lb_q")
        count = cursor.execute("SELECT count(*), count(DISTINCT __lb_part) FROM __lb_out").fetchone()
        assert count is not None
        rows, groups = int(count[0]), int(count[1])
        if groups > MAX_WRITERS:
            raise _QueryError(
                f"HIVE_TOO_MANY_OPEN_PARTITIONS: Exceeded limit of {MAX_WRITERS} open writers for "
                f"partitions/buckets (the query writes {groups})"
            )
        data = ", ".join(_quote(n) for n, _ in table.columns)
        if not data:
            raise _QueryError("NOT_SUPPORTED: a table needs at least one column that is not a partition key")
        written: list[_Partition] = []
        if rows == 0:
            return 0, written
        codec = {"NONE": "uncompressed", "UNCOMPRESSED": "uncompressed"}.get(compression, compression.lower())
        text = ", ".join(f"CAST({_quote(k)} AS VARCHAR)" for k in keys)
        parts = cursor.execute(
            f"SELECT DISTINCT __lb_part{', ' + text if text else ''} FROM __lb_out ORDER BY 1"
        ).fetchall()
        with tempfile.TemporaryDirectory(prefix="lakebox-athena-") as folder:
            cursor.execute(
                f"COPY (SELECT {data}, __lb_part FROM __lb_out) TO {_literal(folder)} "
                f"(FORMAT parquet, COMPRESSION {codec}, PARTITION_BY (__lb_part), FILENAME_PATTERN 'part_{{i}}')"
            )
            cursor.execute("DROP TABLE __lb_out")
            uploads: list[tuple[str, str, str]] = []
            for part in parts:
                values = tuple(DEFAULT_PARTITION if v is None else str(v) for v in part[1:])
                if values in existing:
                    location = existing[values].location
                else:
                    location = _partition_location(table, values) if keys else table.location
                bucket, prefix = split_s3_uri(location.rstrip("/") + "/")
                files = sorted((Path(folder) / f"__lb_part={int(part[0])}").glob("*.parquet"))
                for number, path in enumerate(files):
                    key = f"{prefix}{ctx.execution_id}-{int(part[0]):05d}-{number:03d}.parquet"
                    uploads.append((str(path), bucket, key))
                written.append(_Partition(values, location))
            with ThreadPoolExecutor(max_workers=_UPLOAD_THREADS) as pool:
                list(pool.map(lambda upload: self._s3.upload_file(*upload), uploads))
        return rows, written if keys else []

    def _add_partitions(self, table: _Table, partitions: list[_Partition], *, ignore_existing: bool) -> None:
        for start in range(0, len(partitions), 100):
            batch: list[PartitionInputTypeDef] = [_partition_input(table, p) for p in partitions[start : start + 100]]
            response = self._glue.batch_create_partition(
                DatabaseName=table.database, TableName=table.name, PartitionInputList=batch
            )
            for error in response.get("Errors", []):
                code = error.get("ErrorDetail", {}).get("ErrorCode", "")
                if code == "AlreadyExistsException" and ignore_existing:
                    continue
                values = error.get("PartitionValues", [])
                raise _QueryError(f"HIVE_METASTORE_ERROR: partition {values} of {table.qualified}: {code}")

    def _exists(self, database: str, name: str) -> bool:
        try:
            self._glue.get_table(DatabaseName=database, Name=name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "EntityNotFoundException":
                raise
            if not self._database_exists(database):
                raise _QueryError(f"SCHEMA_NOT_FOUND: Schema '{database}' does not exist") from exc
            return False
        return True

    def _create_view(self, ast: exp.Create, ctx: _Context) -> _Outcome:
        target = ast.this
        if not isinstance(target, exp.Table) or not isinstance(ast.expression, exp.Query):
            raise _QueryError("NOT_SUPPORTED: CREATE VIEW form")
        database, name = _table_key(target, ctx.database)
        query = ast.expression
        _name_outputs(query)
        original = query.sql(dialect="athena")
        prepared = self._prepare(query.copy(), ctx)
        columns = [(n.lower(), _duckdb_to_glue(t)) for n, t in _describe(ctx.cursor, prepared.sql)]
        exists = self._exists(database, name)
        if exists and not ast.args.get("replace"):
            raise _QueryError(f"View '{CATALOG}.{database}.{name}' already exists")
        payload = {
            "originalSql": original,
            "catalog": CATALOG,
            "schema": ctx.database,
            "columns": [{"name": n, "type": _athena_type_of_glue(t)} for n, t in columns],
            "owner": "lakebox",
            "runAsInvoker": False,
        }
        encoded = base64.b64encode(json.dumps(payload).encode()).decode()
        view_input: TableInputTypeDef = {
            "Name": name,
            "TableType": "VIRTUAL_VIEW",
            "Parameters": {"presto_view": "true", "comment": "Presto View"},
            "ViewOriginalText": f"{_VIEW_PREFIX}{encoded}{_VIEW_SUFFIX}",
            "ViewExpandedText": "/* Presto View */",
            "PartitionKeys": [],
            "StorageDescriptor": {
                "Columns": [{"Name": n, "Type": t} for n, t in columns],
                "Location": "",
                "SerdeInfo": {},
            },
        }
        if exists:
            self._glue.update_table(DatabaseName=database, TableInput=view_input)
        else:
            self._glue.create_table(DatabaseName=database, TableInput=view_input)
        return _Outcome("DDL", "CREATE_VIEW")

    def _create_external(self, ast: exp.Create, ctx: _Context) -> _Outcome:
        schema = ast.this
        assert isinstance(schema, exp.Schema)
        target = schema.this
        if not isinstance(target, exp.Table):
            raise _QueryError("NOT_SUPPORTED: CREATE TABLE target")
        database, name = _table_key(target, ctx.database)
        properties = ast.args.get("properties")
        props = properties.expressions if isinstance(properties, exp.Properties) else []
        if not any(isinstance(p, exp.ExternalProperty) for p in props):
            raise _QueryError("NOT_SUPPORTED: non-Iceberg tables must be EXTERNAL; use CREATE EXTERNAL TABLE")
        if self._exists(database, name):
            if ast.args.get("exists"):
                return _Outcome("DDL", "CREATE_TABLE")
            raise _QueryError(f"AlreadyExistsException: Table {database}.{name} already exists")
        columns = [
            (c.name.lower(), _hive_type(c.args["kind"])) for c in schema.expressions if isinstance(c, exp.ColumnDef)
        ]
        keys: list[tuple[str, str]] = []
        location = ""
        serde, serde_params, params = PARQUET_FORMAT["serde"], {}, {"EXTERNAL": "TRUE"}
        stored = ""
        for prop in props:
            if isinstance(prop, exp.PartitionedByProperty) and isinstance(prop.this, exp.Schema):
                keys = [(c.name.lower(), _hive_type(c.args["kind"])) for c in prop.this.expressions]
            elif isinstance(prop, exp.LocationProperty):
                location = prop.this.name
            elif isinstance(prop, exp.FileFormatProperty):
                stored = prop.this.name.upper()
            elif isinstance(prop, exp.RowFormatSerdeProperty):
                serde = prop.this.name
                extra = prop.args.get("serde_properties")
                if isinstance(extra, exp.SerdeProperties):
                    serde_params = {p.this.name: p.args["value"].name for p in extra.expressions}
            elif type(prop) is exp.Property and isinstance(prop.args.get("value"), exp.Expression):
                params[prop.name] = prop.args["value"].name
        if stored == "PARQUET":
            serde = PARQUET_FORMAT["serde"]
        elif stored in {"TEXTFILE", ""} and serde == PARQUET_FORMAT["serde"]:
            raise _QueryError("NOT_SUPPORTED: lakebox reads PARQUET, JSON (ROW FORMAT SERDE) and CSV tables")
        if not location:
            raise _QueryError("NOT_SUPPORTED: an external table needs a LOCATION")
        table = _Table(
            database, name, "EXTERNAL_TABLE", tuple(columns), tuple(keys), location, serde, serde_params, params, None
        )
        table_input = _table_input(table, params.get("parquet.compression", "SNAPPY"))
        table_input["Parameters"] = {**table_input.get("Parameters", {}), **params}
        self._glue.create_table(DatabaseName=database, TableInput=table_input)
        return _Outcome("DDL", "CREATE_TABLE")

    def _create_database(self, ast: exp.Create) -> _Outcome:
        target = ast.this
        name = (target.name if isinstance(target, exp.Table) else str(target)).lower()
        if self._database_exists(name):
            if ast.args.get("exists"):
                return _Outcome("DDL", "CREATE_DATABASE")
            raise _QueryError(f"AlreadyExistsException: Database {name} already exists")
        self._glue.create_database(DatabaseInput={"Name": name})
        return _Outcome("DDL", "CREATE_DATABASE")

    def _drop(self, ast: exp.Drop, ctx: _Context) -> _Outcome:
        kind = str(ast.args.get("kind") or "").upper()
        if kind not in {"TABLE", "VIEW"}:
            raise _QueryError(f"NOT_SUPPORTED: DROP {kind} is not available locally")
        targets = ast.args.get("tables") or [ast.this]
        target = targets[0]
        if len(targets) != 1 or not isinstance(target, exp.Table):
            raise _QueryError("NOT_SUPPORTED: DROP of several tables in one statement")
        database, name = _table_key(target, ctx.database)
        if not self._exists(database, name):
            if ast.args.get("exists"):
                return _Outcome("DDL", f"DROP_{kind}")
            noun = "View" if kind == "VIEW" else "Table"
            raise _QueryError(f"{noun.upper()}_NOT_FOUND: {noun} '{CATALOG}.{database}.{name}' does not exist")
        table = self._table(database, name)
        if kind == "VIEW" and table.view is None:
            raise _QueryError(f"{table.qualified} is a table, not a view; use DROP TABLE")
        self._glue.delete_table(DatabaseName=database, Name=name)
        return _Outcome("DDL", f"DROP_{kind}")

    # ---------------------------------------------------------- ALTER, MSCK

    def _alter_table(self, text: str, ctx: _Context) -> _Outcome:
        match = _ALTER.match(text)
        if not match:
            raise _QueryError(f"SYNTAX_ERROR: cannot read ALTER TABLE statement: {_first_line(text)}")
        table = self._table(*_name_key(match["table"], ctx.database))
        rest = match["rest"].strip()
        action = rest.split(None, 1)[0].upper() if rest else ""
        if action == "ADD":
            return self._add_partition_clause(table, rest[3:].strip())
        if action == "DROP":
            return self._drop_partition_clause(table, rest[4:].strip())
        location = _SET_LOCATION.fullmatch(rest)
        if location:
            if location["spec"]:
                values = _partition_values(table, location["spec"])
                existing = {p.values: p for p in self._partitions(table)}
                if values not in existing:
                    raise _QueryError(f"Partition not found: {_spec_text(table, values)} in {table.qualified}")
                updated = _partition_input(table, _Partition(values, location["location"]))
                self._glue.update_partition(
                    DatabaseName=table.database,
                    TableName=table.name,
                    PartitionValueList=list(values),
                    PartitionInput=updated,
                )
                return _Outcome("DDL", "ALTER_TABLE_PARTITION_SET_LOCATION")
            raw: dict[str, Any] = dict(self._glue.get_table(DatabaseName=table.database, Name=table.name)["Table"])
            raw["StorageDescriptor"] = {**raw.get("StorageDescriptor", {}), "Location": location["location"]}
            table_input = cast("TableInputTypeDef", table_input_of(raw))
            self._glue.update_table(DatabaseName=table.database, TableInput=table_input)
            return _Outcome("DDL", "ALTER_TABLE_SET_LOCATION")
        raise _QueryError(f"NOT_SUPPORTED: ALTER TABLE {_first_line(rest)}")

    def _add_partition_clause(self, table: _Table, clause: str) -> _Outcome:
        if_not_exists = bool(re.match(r"IF\s+NOT\s+EXISTS\b", clause, re.IGNORECASE))
        clause = re.sub(r"^IF\s+NOT\s+EXISTS\s*", "", clause, flags=re.IGNORECASE)
        partitions: list[_Partition] = []
        for spec, location in _ADD_PARTITION.findall(clause):
            values = _partition_values(table, spec)
            partitions.append(_Partition(values, location or _partition_location(table, values)))
        if not partitions or _ADD_PARTITION.sub("", clause).strip():
            raise _QueryError(f"SYNTAX_ERROR: cannot read partition list: {_first_line(clause)}")
        existing = {p.values for p in self._partitions(table)}
        clash = [p for p in partitions if p.values in existing]
        if clash and not if_not_exists:
            raise _QueryError(f"Partition already exists: {_spec_text(table, clash[0].values)}")
        self._add_partitions(table, [p for p in partitions if p.values not in existing], ignore_existing=True)
        return _Outcome("DDL", "ALTER_TABLE_ADD_PARTITION")

    def _drop_partition_clause(self, table: _Table, clause: str) -> _Outcome:
        if_exists = bool(re.match(r"IF\s+EXISTS\b", clause, re.IGNORECASE))
        clause = re.sub(r"^IF\s+EXISTS\s*", "", clause, flags=re.IGNORECASE)
        specs = _DROP_PARTITION.findall(clause)
        if not specs or _DROP_PARTITION.sub("", clause).replace(",", "").strip():
            raise _QueryError(f"SYNTAX_ERROR: cannot read partition list: {_first_line(clause)}")
        wanted = [_partition_values(table, spec) for spec in specs]
        existing = {p.values for p in self._partitions(table)}
        missing = [v for v in wanted if v not in existing]
        if missing and not if_exists:
            raise _QueryError(f"Partition not found: {_spec_text(table, missing[0])}")
        present = [v for v in wanted if v in existing]
        for start in range(0, len(present), 25):
            self._glue.batch_delete_partition(
                DatabaseName=table.database,
                TableName=table.name,
                PartitionsToDelete=[{"Values": list(v)} for v in present[start : start + 25]],
            )
        return _Outcome("DDL", "ALTER_TABLE_DROP_PARTITION")

    def _msck_repair(self, text: str, ctx: _Context) -> _Outcome:
        match = re.fullmatch(r"MSCK\s+REPAIR\s+TABLE\s+(?P<table>[\w.`\"]+)", text.strip(), re.IGNORECASE)
        if not match:
            raise _QueryError(f"SYNTAX_ERROR: {_first_line(text)}")
        table = self._table(*_name_key(match["table"], ctx.database))
        keys = [n for n, _ in table.partition_keys]
        if not keys:
            return _Outcome("DDL", "MSCK_REPAIR_TABLE")
        base = table.location.rstrip("/") + "/"
        found: dict[tuple[str, ...], str] = {}
        for obj in self._list(base):
            parts = obj.uri[len(base) :].split("/")[: len(keys)]
            pairs = [p.split("=", 1) for p in parts]
            if len(pairs) == len(keys) and all(
                len(p) == 2 and p[0].lower() == k for p, k in zip(pairs, keys, strict=True)
            ):
                values = tuple(_unescape(p[1]) for p in pairs)
                found.setdefault(values, base + "/".join(parts) + "/")
        existing = {p.values for p in self._partitions(table)}
        new = [_Partition(v, loc) for v, loc in sorted(found.items()) if v not in existing]
        self._add_partitions(table, new, ignore_existing=True)
        lines = [(f"Partitions not in metastore:\t{table.name}:{_spec_path(table, p.values)}",) for p in new]
        return _Outcome("DDL", "MSCK_REPAIR_TABLE", [("result", "varchar")], lines)

    # ----------------------------------------------------- SHOW, DESCRIBE …

    def _show(self, text: str, ctx: _Context) -> _Outcome:
        words = text.split()
        what = words[1].upper() if len(words) > 1 else ""
        if what in {"TABLES", "VIEWS"}:
            match = re.fullmatch(
                r"SHOW\s+(?:TABLES|VIEWS)(?:\s+(?:IN|FROM)\s+(?P<db>[\w`\"]+))?(?:\s+(?:LIKE\s+)?'(?P<like>[^']*)')?",
                text.strip(),
                re.IGNORECASE,
            )
            if not match:
                raise _QueryError(f"SYNTAX_ERROR: {_first_line(text)}")
            database = _unquote_name(match["db"]) if match["db"] else ctx.database
            if not self._database_exists(database):
                raise _QueryError(f"SCHEMA_NOT_FOUND: Schema '{database}' does not exist")
            pattern = re.compile("^" + re.escape(match["like"] or "*").replace(r"\*", ".*").replace(r"\|", "|") + "$")
            names = []
            for page in self._glue.get_paginator("get_tables").paginate(DatabaseName=database):
                for item in page.get("TableList", []):
                    is_view = item.get("TableType") == "VIRTUAL_VIEW"
                    if (what == "VIEWS") == is_view and pattern.match(item["Name"]):
                        names.append((item["Name"],))
            label = "views" if what == "VIEWS" else "tab_name"
            return _Outcome("UTILITY", f"SHOW_{what}", [(label, "varchar")], sorted(names))
        if what in {"DATABASES", "SCHEMAS"}:
            names = [
                (d["Name"],)
                for page in self._glue.get_paginator("get_databases").paginate()
                for d in page["DatabaseList"]
            ]
            return _Outcome("UTILITY", "SHOW_DATABASES", [("database_name", "varchar")], sorted(names))
        if what == "PARTITIONS" and len(words) == 3:
            table = self._table(*_name_key(words[2], ctx.database))
            if not table.partition_keys:
                raise _QueryError(f"Table {table.qualified} is not partitioned")
            rows = [(_spec_path(table, p.values),) for p in self._partitions(table)]
            return _Outcome("UTILITY", "SHOW_PARTITIONS", [("partition", "varchar")], rows)
        if what == "COLUMNS" and len(words) == 4 and words[2].upper() in {"IN", "FROM"}:
            table = self._table(*_name_key(words[3], ctx.database))
            rows = [(n,) for n, _ in table.columns + table.partition_keys]
            return _Outcome("UTILITY", "SHOW_COLUMNS", [("field", "varchar")], rows)
        raise _QueryError(f"NOT_SUPPORTED: {_first_line(text)}")

    def _describe(self, ast: exp.Describe, ctx: _Context) -> _Outcome:
        target = ast.this
        if not isinstance(target, exp.Table):
            raise _QueryError("NOT_SUPPORTED: DESCRIBE form")
        table = self._table(*_table_key(target, ctx.database))
        rows: list[tuple[Any, ...]] = [(n, t, "") for n, t in table.columns + table.partition_keys]
        if table.partition_keys:
            rows.append(("# Partition Information", "", ""))
            rows.extend((n, t, "") for n, t in table.partition_keys)
        columns = [("col_name", "varchar"), ("data_type", "varchar"), ("comment", "varchar")]
        return _Outcome("UTILITY", "DESCRIBE_TABLE", columns, rows)

    def _explain(self, text: str, ctx: _Context) -> _Outcome:
        inner = re.sub(r"^EXPLAIN\s+(ANALYZE\s+)?", "", text.strip(), flags=re.IGNORECASE)
        ast = sqlglot.parse_one(inner, read="athena")
        if not isinstance(ast, exp.Query):
            raise _QueryError("NOT_SUPPORTED: EXPLAIN of a statement other than a query")
        prepared = self._prepare(ast, ctx)
        plan = ctx.cursor.execute(f"EXPLAIN {prepared.sql}").fetchall()
        lines = [(line,) for row in plan for line in str(row[1]).splitlines()]
        return _Outcome("UTILITY", "EXPLAIN", [("Query Plan", "varchar")], lines)

    # -------------------------------------------------------------- results

    def _write_results(self, execution: _Execution, outcome: _Outcome, config: dict[str, Any]) -> str:
        bucket, prefix = split_s3_uri(execution.output_prefix)
        extra: dict[str, Any] = {}
        encryption = (config.get("ResultConfiguration") or {}).get("EncryptionConfiguration") or {}
        if encryption.get("EncryptionOption") in {"SSE_KMS", "CSE_KMS"}:
            extra["ServerSideEncryption"] = "aws:kms"
            if encryption.get("KmsKey"):
                extra["SSEKMSKeyId"] = encryption["KmsKey"]
        elif encryption.get("EncryptionOption") == "SSE_S3":
            extra["ServerSideEncryption"] = "AES256"
        if outcome.statement_type == "DML":
            key = f"{prefix}{execution.execution_id}.csv"
            body = _csv(outcome)
            metadata = json.dumps(
                {"ColumnInfo": [_column_info(n, t) for n, t in outcome.columns], "RowCount": len(outcome.rows)}
            )
            self._s3.put_object(Bucket=bucket, Key=f"{key}.metadata", Body=metadata.encode(), **extra)
        else:
            key = f"{prefix}{execution.execution_id}.txt"
            body = "".join("\t".join("" if v is None else _text(v) for v in row) + "\n" for row in outcome.rows)
            if not outcome.columns:
                return f"s3://{bucket}/{key}"
        self._s3.put_object(Bucket=bucket, Key=key, Body=body.encode(), **extra)
        return f"s3://{bucket}/{key}"


# ---------------------------------------------------------------- DuckDB


def _connect(session: boto3.Session, endpoint: str) -> duckdb.DuckDBPyConnection:
    """A DuckDB database with httpfs loaded offline and an S3 secret for the session's endpoint."""
    con = duckdb.connect()
    extension = Path(str(resources.files("duckdb_extension_httpfs"))) / "extensions"
    candidates = sorted(extension.glob(f"v{duckdb.__version__}/httpfs.duckdb_extension"))
    if candidates:
        con.execute(f"LOAD {_literal(str(candidates[0]))}")
    else:
        con.execute("LOAD httpfs")
    credentials = session.get_credentials()
    if credentials is None:
        raise TerminalError("the boto3 session has no credentials for DuckDB to read S3 with")
    frozen = credentials.get_frozen_credentials()
    parts = urlsplit(endpoint)
    options = {
        "TYPE": "s3",
        "KEY_ID": str(frozen.access_key),
        "SECRET": str(frozen.secret_key),
        "REGION": session.region_name or "us-east-1",
    }
    if frozen.token:
        options["SESSION_TOKEN"] = frozen.token
    if parts.hostname and not parts.hostname.endswith("amazonaws.com"):
        options["ENDPOINT"] = parts.netloc
        options["URL_STYLE"] = "path"
        options["USE_SSL"] = "true" if parts.scheme == "https" else "false"
    body = ", ".join(f"{k} {v if k in {'TYPE', 'USE_SSL'} else _literal(v)}" for k, v in options.items())
    con.execute(f"CREATE OR REPLACE SECRET lakebox_s3 ({body})")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(DIVIDE_MACRO)
    return con


def _trino_decimals(tree: exp.Query) -> exp.Query:
    """Decimal arithmetic as Trino does it (exact, HALF_UP, Trino's result types); see `lakebox.trino_decimal`."""
    try:
        return exact_decimals(tree)
    except DecimalPlanError as exc:
        raise _QueryError(str(exc)) from exc


def _is_map(node: exp.Expression) -> bool:
    return node.type is not None and node.type.is_type(_T.MAP)


def _trino_maps(tree: exp.Query) -> exp.Query:
    """Trino's forms on maps that DuckDB spells otherwise (the typed tree tells a map from an array).

    `cardinality(m)` is DuckDB's `cardinality`, not `array_length`; `UNNEST(m) AS t(k, v)` (one row per entry) is a
    lateral select of `UNNEST(map_keys(m)), UNNEST(map_values(m))`, which DuckDB zips.
    """
    for size in list(tree.find_all(exp.ArraySize)):
        if _is_map(size.this):
            size.replace(exp.Anonymous(this="CARDINALITY", expressions=[size.this.copy()]))
    for unnest in list(tree.find_all(exp.Unnest)):
        alias = unnest.args.get("alias")
        values = unnest.expressions
        if len(values) != 1 or not _is_map(values[0]) or alias is None or len(alias.columns) != 2:
            continue
        if unnest.args.get("offset"):
            raise _QueryError("NOT_SUPPORTED: UNNEST of a map WITH ORDINALITY (a map's entries have no order)")
        key, value = alias.columns
        entries = exp.select(
            exp.alias_(exp.Unnest(expressions=[exp.func("MAP_KEYS", values[0].copy())]), key.copy()),
            exp.alias_(exp.Unnest(expressions=[exp.func("MAP_VALUES", values[0].copy())]), value.copy()),
        )
        unnest.replace(exp.Subquery(this=entries, alias=alias.copy()))
    return tree


def _describe(cursor: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[str, str]]:
    return [(str(row[0]), str(row[1])) for row in cursor.execute(f"DESCRIBE {sql}").fetchall()]


def _normalized_select(sql: str, cursor: duckdb.DuckDBPyConnection) -> str:
    """Wrap a query so its output types are the Athena ones (BIGINT sums, TIMESTAMP without zone, …)."""
    shape = _describe(cursor, sql)
    exprs = []
    changed = False
    for name, kind in shape:
        target = glue_to_duckdb(_duckdb_to_glue(kind))
        if _same_type(target, kind):
            exprs.append(_quote(name))
        else:
            changed = True
            exprs.append(f"CAST({_quote(name)} AS {target}) AS {_quote(name)}")
    if not changed:
        return sql
    return f"SELECT {', '.join(exprs)} FROM ({sql}) AS __lb_result"


def _same_type(target: str, actual: str) -> bool:
    return target.replace(" ", "").upper() == actual.replace(" ", "").upper()


def _json_sql(
    objects: list[_S3Object], columns: list[tuple[str, str]], key_exprs: list[str], table: _Table
) -> tuple[str, int]:
    read_types = {n: _read_type(t) for n, t in columns}
    spec = "{" + ", ".join(f"{_literal(n)}: {_literal(t)}" for n, t in read_types.items()) + "}"
    formats = table.serde_parameters.get("timestamp.formats")

    def convert(name: str, kind: str) -> str:
        if table.serde == HIVE_JSON_SERDE and glue_to_duckdb(kind) == "TIMESTAMP":
            return timestamp_sql(_quote(name), formats, table.qualified)
        return _convert(_quote(name), kind, strict=True)

    exprs = [f"{convert(n, t)} AS {_quote(n)}" for n, t in columns]
    select = ", ".join([*exprs, *key_exprs]) or "NULL AS __lb_empty"
    uris = _sql_list([o.uri for o in objects])
    columns_arg = f", columns = {spec}" if read_types else ""
    sql = f"SELECT {select} FROM read_json({uris}, format = 'newline_delimited'{columns_arg})"
    return sql, sum(o.size for o in objects)


def _csv_sql(
    objects: list[_S3Object], columns: list[tuple[str, str]], key_exprs: list[str], table: _Table
) -> tuple[str, int]:
    params = table.serde_parameters
    delimiter = params.get("field.delim") or params.get("separatorChar") or ","
    quote_char = params.get("quoteChar", '"')
    skip = int(table.parameters.get("skip.header.line.count", "0") or 0)
    names = [n for n, _ in table.columns]
    spec = "{" + ", ".join(f"{_literal(n)}: 'VARCHAR'" for n in names) + "}"
    exprs = [f"{_convert(_quote(n), t, strict=False)} AS {_quote(n)}" for n, t in columns]
    select = ", ".join([*exprs, *key_exprs]) or "NULL AS __lb_empty"
    uris = _sql_list([o.uri for o in objects])
    sql = (
        f"SELECT {select} FROM read_csv({uris}, header = false, skip = {skip}, delim = {_literal(delimiter)}, "
        f"quote = {_literal(quote_char)}, columns = {spec}, auto_detect = false, null_padding = true)"
    )
    return sql, sum(o.size for o in objects)


def _read_type(glue_type: str) -> str:
    """How a JSON column is read: scalars as text (converted after), nested types as themselves."""
    duck = glue_to_duckdb(glue_type)
    return duck if ("(" in duck and not duck.startswith("DECIMAL")) or duck.endswith("[]") else "VARCHAR"


def _convert(column: str, glue_type: str, *, strict: bool) -> str:
    duck = glue_to_duckdb(glue_type)
    cast = "CAST" if strict else "TRY_CAST"
    if duck == "VARCHAR":
        return column if strict else f"NULLIF({column}, '\\N')"
    if duck == "TIMESTAMP":
        return f"CAST({cast}({column} AS TIMESTAMPTZ) AS TIMESTAMP)"
    if _read_type(glue_type) != "VARCHAR":
        return column
    return f"{cast}({column} AS {duck})"


def _prune(
    scope: Scope,
    node: exp.Table,
    alias: str,
    table: _Table,
    partitions: list[_Partition],
    cursor: duckdb.DuckDBPyConnection,
) -> list[_Partition]:
    """Keep the partitions the scope's WHERE conjuncts on partition keys allow; evaluated by DuckDB itself."""
    select = scope.expression
    if not isinstance(select, exp.Select):
        return partitions
    where = select.args.get("where")
    if not isinstance(where, exp.Where):
        return partitions
    joins = select.args.get("joins") or []
    if any(str(j.side).upper() in {"RIGHT", "FULL"} for j in joins):
        return partitions
    parent = node.parent
    if isinstance(parent, exp.Join) and str(parent.side).upper() == "LEFT":
        return partitions
    keys = {name: kind for name, kind in table.partition_keys}
    usable = []
    for conjunct in _conjuncts(where.this):
        columns = list(conjunct.find_all(exp.Column))
        if not columns or any(c.table != alias or c.name not in keys for c in columns):
            continue
        if conjunct.find(exp.Subquery, exp.Select, exp.AggFunc, exp.Window):
            continue
        predicate = conjunct.copy()
        for column in predicate.find_all(exp.Column):
            column.set("table", None)
        usable.append(predicate.sql(dialect="duckdb"))
    if not usable:
        return partitions
    names = list(keys)
    arrow = pa.table(
        {
            "__idx": list(range(len(partitions))),
            **{
                name: [None if p.values[i] == DEFAULT_PARTITION else p.values[i] for p in partitions]
                for i, name in enumerate(names)
            },
        }
    )
    typed = ", ".join(f"TRY_CAST({_quote(n)} AS {glue_to_duckdb(keys[n])}) AS {_quote(n)}" for n in names)
    view = "__lb_partitions"
    cursor.register(view, arrow)
    try:
        rows = cursor.execute(
            f"SELECT __idx FROM (SELECT __idx, {typed} FROM {view}) AS p WHERE {' AND '.join(f'({u})' for u in usable)}"
        ).fetchall()
    except duckdb.Error as exc:
        logger.debug("partition pruning skipped for %s: %s", table.qualified, exc)
        return partitions
    finally:
        cursor.unregister(view)
    keep = {int(r[0]) for r in rows}
    return [p for i, p in enumerate(partitions) if i in keep]


def _conjuncts(node: exp.Expression) -> Iterator[exp.Expression]:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        yield from _conjuncts(node.this)
        yield from _conjuncts(node.expression)
    else:
        yield node


def _used_columns(scope: Scope, alias: str) -> set[str]:
    """Columns of the source `alias` a qualified scope reads (stars are already expanded by qualify)."""
    return {c.name for c in scope.columns if c.table == alias}


def _real_tables(query: exp.Query) -> list[exp.Table]:
    found: list[exp.Table] = []
    for scope in traverse_scope(query):
        found.extend(source for source in scope.sources.values() if isinstance(source, exp.Table))
    return found


def _table_key(node: exp.Table, database: str) -> tuple[str, str]:
    catalog = node.catalog
    if catalog and catalog.lower() != CATALOG:
        raise _QueryError(f"CATALOG_NOT_FOUND: Catalog '{catalog}' does not exist")
    return (node.db or database).lower(), node.name.lower()


def _name_key(text: str, database: str) -> tuple[str, str]:
    parts = [_unquote_name(p) for p in re.split(r"\.(?=(?:[^\"`]*[\"`][^\"`]*[\"`])*[^\"`]*$)", text.strip())]
    if len(parts) == 1:
        return database, parts[0]
    return parts[-2], parts[-1]


def _unquote_name(text: str) -> str:
    return text.strip().strip('"`').lower()


def _name_outputs(query: exp.Query) -> None:
    """Name unnamed output columns `_col0`, `_col1`… as Trino does."""
    select = query
    while isinstance(select, exp.SetOperation):
        select = select.this
    if not isinstance(select, exp.Select):
        return
    for position, projection in enumerate(select.expressions):
        if not isinstance(projection, exp.Alias | exp.Column | exp.Star | exp.Dot):
            projection.replace(exp.alias_(projection.copy(), f"_col{position}"))


def _require_names(query: exp.Query) -> None:
    select = query
    while isinstance(select, exp.SetOperation):
        select = select.this
    if not isinstance(select, exp.Select):
        return
    for position, projection in enumerate(select.expressions, start=1):
        if not isinstance(projection, exp.Alias | exp.Column | exp.Star | exp.Dot):
            raise _QueryError(f"Column name not specified at position {position}")


def _check_columns(columns: list[tuple[str, str]], partitioned_by: list[str]) -> None:
    names = [n for n, _ in columns]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise _QueryError(f"Column name '{duplicate}' specified more than once")
    missing = [p for p in partitioned_by if p not in names]
    if missing:
        raise _QueryError(f"Partition column {missing[0]} is not among the query's columns {names}")
    if partitioned_by and names[-len(partitioned_by) :] != partitioned_by:
        raise _QueryError(
            "HIVE_COLUMN_ORDER_MISMATCH: Partition keys must be the last columns in the table and in the same "
            f"order as the table properties: {partitioned_by}"
        )


def _ctas_properties(ast: exp.Create) -> dict[str, Any]:
    props: dict[str, Any] = {}
    properties = ast.args.get("properties")
    for prop in properties.expressions if isinstance(properties, exp.Properties) else []:
        if isinstance(prop, exp.FileFormatProperty):
            props["format"] = prop.this.name
        elif isinstance(prop, exp.PartitionedByProperty):
            value = prop.this
            items = value.expressions if isinstance(value, exp.Array | exp.Tuple | exp.Schema) else [value]
            props["partitioned_by"] = [i.name for i in items]
        elif isinstance(prop, exp.WithDataProperty):
            props["with_data"] = not prop.args.get("no")
        elif isinstance(prop, exp.LocationProperty):
            props["external_location"] = prop.this.name
        elif isinstance(prop, exp.Property):
            value = prop.args.get("value")
            if isinstance(value, exp.Array):
                props[prop.name.lower()] = [i.name for i in value.expressions]
            elif isinstance(value, exp.Expression):
                props[prop.name.lower()] = value.name
    return props


def _top_level(nodes: list[tuple[str, int]]) -> tuple[str, ...]:
    """Top-level column names of a Parquet schema given as (name, children) in depth-first order."""
    if not nodes:
        return ()
    names: list[str] = []

    def skip(index: int) -> int:
        children = nodes[index][1]
        index += 1
        for _ in range(children):
            index = skip(index)
        return index

    index = 1
    for _ in range(nodes[0][1]):
        names.append(nodes[index][0])
        index = skip(index)
    return tuple(names)


# ------------------------------------------------------------------ types


def glue_to_duckdb(glue_type: str) -> str:
    """The DuckDB type for a Glue (Hive) column type such as ``decimal(12,2)`` or ``struct<a:int>``."""
    try:
        parsed = exp.DataType.build(glue_type, dialect="hive")
    except (ParseError, ValueError) as exc:
        raise _QueryError(f"NOT_SUPPORTED: Hive type {glue_type!r}") from exc
    return _duck_of(parsed)


_SIMPLE_DUCK: Final = {
    _T.TEXT: "VARCHAR",
    _T.VARCHAR: "VARCHAR",
    _T.CHAR: "VARCHAR",
    _T.NCHAR: "VARCHAR",
    _T.NVARCHAR: "VARCHAR",
    _T.BIGINT: "BIGINT",
    _T.INT: "INTEGER",
    _T.SMALLINT: "SMALLINT",
    _T.TINYINT: "TINYINT",
    _T.DOUBLE: "DOUBLE",
    _T.FLOAT: "FLOAT",
    _T.BOOLEAN: "BOOLEAN",
    _T.DATE: "DATE",
    _T.TIMESTAMP: "TIMESTAMP",
    _T.TIMESTAMPNTZ: "TIMESTAMP",
    _T.TIMESTAMPTZ: "TIMESTAMP",
    _T.BINARY: "BLOB",
    _T.VARBINARY: "BLOB",
}


def _duck_of(node: exp.DataType) -> str:
    kind = node.this
    if kind in _SIMPLE_DUCK:
        return _SIMPLE_DUCK[kind]
    params = [p for p in node.expressions if isinstance(p, exp.DataTypeParam)]
    if kind == _T.DECIMAL:
        precision, scale = (int(p.name) for p in params) if len(params) == 2 else (10, 0)
        return f"DECIMAL({precision},{scale})"
    if kind == _T.ARRAY:
        return f"{_duck_of(node.expressions[0])}[]"
    if kind == _T.MAP:
        key, value = node.expressions
        return f"MAP({_duck_of(key)}, {_duck_of(value)})"
    if kind == _T.STRUCT:
        fields = [f"{_quote(f.name)} {_duck_of(f.args['kind'])}" for f in node.expressions]
        return f"STRUCT({', '.join(fields)})"
    raise _QueryError(f"NOT_SUPPORTED: type {node.sql(dialect='hive')}")


_SIMPLE_HIVE: Final = {
    _T.TEXT: "string",
    _T.VARCHAR: "string",
    _T.CHAR: "string",
    _T.UUID: "string",
    _T.ENUM: "string",
    _T.BIGINT: "bigint",
    _T.INT128: "bigint",
    _T.UBIGINT: "bigint",
    _T.UINT: "bigint",
    _T.INT: "int",
    _T.USMALLINT: "int",
    _T.SMALLINT: "smallint",
    _T.UTINYINT: "smallint",
    _T.TINYINT: "tinyint",
    _T.DOUBLE: "double",
    _T.FLOAT: "float",
    _T.BOOLEAN: "boolean",
    _T.DATE: "date",
    _T.TIMESTAMP: "timestamp",
    _T.TIMESTAMPNTZ: "timestamp",
    _T.TIMESTAMPTZ: "timestamp",
    _T.TIMESTAMP_S: "timestamp",
    _T.TIMESTAMP_MS: "timestamp",
    _T.TIMESTAMP_NS: "timestamp",
    _T.VARBINARY: "binary",
    _T.BINARY: "binary",
    _T.BLOB: "binary",
}


def _duckdb_to_glue(duck_type: str) -> str:
    """The Glue (Hive) type a DuckDB result type is stored as."""
    if duck_type.upper() == "NULL":
        return "string"
    try:
        parsed = exp.DataType.build(duck_type, dialect="duckdb")
    except (ParseError, ValueError) as exc:
        raise _QueryError(f"NOT_SUPPORTED: Unsupported Hive type: {duck_type}") from exc
    return _hive_type(parsed)


def _hive_type(node: exp.DataType) -> str:
    kind = node.this
    if kind in _SIMPLE_HIVE:
        return _SIMPLE_HIVE[kind]
    params = [p for p in node.expressions if isinstance(p, exp.DataTypeParam)]
    if kind == _T.DECIMAL:
        precision, scale = (int(p.name) for p in params) if len(params) == 2 else (18, 3)
        return f"decimal({precision},{scale})"
    if kind in {_T.ARRAY, _T.LIST}:
        return f"array<{_hive_type(node.expressions[0])}>"
    if kind == _T.MAP:
        key, value = node.expressions
        return f"map<{_hive_type(key)},{_hive_type(value)}>"
    if kind == _T.STRUCT:
        fields = [f"{f.name.lower()}:{_hive_type(f.args['kind'])}" for f in node.expressions]
        return f"struct<{','.join(fields)}>"
    if kind in {_T.UNKNOWN, _T.NULL}:
        return "string"
    raise _QueryError(f"NOT_SUPPORTED: Unsupported Hive type: {node.sql(dialect='duckdb')}")


_ATHENA_NAMES: Final = {
    "string": "varchar",
    "int": "integer",
    "float": "real",
    "binary": "varbinary",
    "bigint": "bigint",
    "smallint": "smallint",
    "tinyint": "tinyint",
    "double": "double",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamp",
}


def _athena_type_of_glue(glue_type: str) -> str:
    base = glue_type.split("<", 1)[0].split("(", 1)[0]
    if base == "decimal":
        return glue_type
    if base == "struct":
        return "row"
    return _ATHENA_NAMES.get(base, base)


def _athena_type(duck_type: str) -> str:
    return _athena_type_of_glue(_duckdb_to_glue(duck_type))


def _column_info(name: str, kind: str) -> dict[str, Any]:
    precision, scale = 0, 0
    match = re.match(r"decimal\((\d+),\s*(\d+)\)", kind)
    if match:
        precision, scale = int(match[1]), int(match[2])
        kind = "decimal"
    elif kind == "varchar":
        precision = 2147483647
    elif kind in {"bigint", "double"}:
        precision = 19 if kind == "bigint" else 17
    elif kind == "integer":
        precision = 10
    return {
        "CatalogName": "hive",
        "SchemaName": "",
        "TableName": "",
        "Name": name,
        "Label": name,
        "Type": kind,
        "Precision": precision,
        "Scale": scale,
        "Nullable": "UNKNOWN",
        "CaseSensitive": kind == "varchar",
    }


# ---------------------------------------------------------- catalog shapes


def _to_table(database: str, raw: dict[str, Any]) -> _Table:
    sd = raw.get("StorageDescriptor") or {}
    serde_info = sd.get("SerdeInfo") or {}
    view: dict[str, Any] | None = None
    if raw.get("TableType") == "VIRTUAL_VIEW":
        view = _decode_view(str(raw.get("ViewOriginalText") or ""), database)
    return _Table(
        database=database,
        name=str(raw["Name"]).lower(),
        table_type=str(raw.get("TableType") or "EXTERNAL_TABLE"),
        columns=tuple((str(c["Name"]).lower(), str(c.get("Type", "string")).lower()) for c in sd.get("Columns", [])),
        partition_keys=tuple(
            (str(c["Name"]).lower(), str(c.get("Type", "string")).lower()) for c in raw.get("PartitionKeys", [])
        ),
        location=str(sd.get("Location") or ""),
        serde=str(serde_info.get("SerializationLibrary") or ""),
        serde_parameters=dict(serde_info.get("Parameters") or {}),
        parameters=dict(raw.get("Parameters") or {}),
        view=view,
    )


def _decode_view(text: str, database: str) -> dict[str, Any]:
    if text.startswith(_VIEW_PREFIX) and text.endswith(_VIEW_SUFFIX):
        payload = text[len(_VIEW_PREFIX) : -len(_VIEW_SUFFIX)]
        decoded: dict[str, Any] = json.loads(base64.b64decode(payload))
        return decoded
    return {"originalSql": text, "schema": database}


def _table_input(table: _Table, compression: str) -> TableInputTypeDef:
    storage = table.storage
    if storage == "parquet":
        input_format, output_format = PARQUET_FORMAT["input"], PARQUET_FORMAT["output"]
        serde_params = {"serialization.format": "1"}
        parameters = {
            "EXTERNAL": "TRUE",
            "classification": "parquet",
            "has_encrypted_data": "false",
            "parquet.compression": compression.upper(),
        }
    else:
        input_format = "org.apache.hadoop.mapred.TextInputFormat"
        output_format = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"
        serde_params = dict(table.serde_parameters)
        parameters = {"EXTERNAL": "TRUE", "classification": storage}
    return {
        "Name": table.name,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": parameters,
        "PartitionKeys": [{"Name": n, "Type": t} for n, t in table.partition_keys],
        "StorageDescriptor": {
            "Columns": [{"Name": n, "Type": t} for n, t in table.columns],
            "Location": table.location,
            "InputFormat": input_format,
            "OutputFormat": output_format,
            "Compressed": False,
            "NumberOfBuckets": -1,
            "SerdeInfo": {"SerializationLibrary": table.serde, "Parameters": serde_params},
            "StoredAsSubDirectories": False,
        },
    }


def _partition_input(table: _Table, partition: _Partition) -> PartitionInputTypeDef:
    sd = _table_input(table, table.parameters.get("parquet.compression", "SNAPPY"))["StorageDescriptor"]
    return {"Values": list(partition.values), "StorageDescriptor": {**sd, "Location": partition.location}}


def _partition_location(table: _Table, values: tuple[str, ...]) -> str:
    return f"{table.location.rstrip('/')}/{_spec_path(table, values)}/"


def _spec_path(table: _Table, values: tuple[str, ...]) -> str:
    return "/".join(f"{n}={_escape(v)}" for (n, _), v in zip(table.partition_keys, values, strict=True))


def _spec_text(table: _Table, values: tuple[str, ...]) -> str:
    return ", ".join(f"{n}={v}" for (n, _), v in zip(table.partition_keys, values, strict=True))


_HIVE_ESCAPE: Final = set("\"#%'*/:=?\\\x7f{[]^")


def _escape(value: str) -> str:
    """Hive's escaping of a partition value in a path."""
    return "".join(f"%{ord(c):02X}" if c in _HIVE_ESCAPE or ord(c) < 32 else c for c in value)


def _unescape(value: str) -> str:
    return re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m[1], 16)), value)


_ALTER: Final = re.compile(r"ALTER\s+TABLE\s+(?P<table>[\w.`\"]+)\s+(?P<rest>.*)", re.IGNORECASE | re.DOTALL)
_SPEC: Final = r"PARTITION\s*\((?P<spec>(?:[^()']|'(?:[^']|'')*')*)\)"
_ADD_PARTITION: Final = re.compile(
    r"\s*PARTITION\s*\(((?:[^()']|'(?:[^']|'')*')*)\)\s*(?:LOCATION\s*'((?:[^']|'')*)')?\s*", re.IGNORECASE
)
_DROP_PARTITION: Final = re.compile(r"\s*PARTITION\s*\(((?:[^()']|'(?:[^']|'')*')*)\)\s*", re.IGNORECASE)
_SET_LOCATION: Final = re.compile(
    rf"(?:{_SPEC}\s+)?SET\s+LOCATION\s*'(?P<location>(?:[^']|'')*)'", re.IGNORECASE | re.DOTALL
)
_PAIR: Final = re.compile(r"\s*([\w`\"]+)\s*=\s*(?:'((?:[^']|'')*)'|([-\w.:]+))\s*(?:,|$)")


def _partition_values(table: _Table, spec: str) -> tuple[str, ...]:
    given: dict[str, str] = {}
    position = 0
    spec = spec.strip()
    while position < len(spec):
        match = _PAIR.match(spec, position)
        if not match or match.end() == position:
            raise _QueryError(f"SYNTAX_ERROR: cannot read partition spec ({spec})")
        given[_unquote_name(match[1])] = match[2].replace("''", "'") if match[2] is not None else match[3]
        position = match.end()
    keys = [n for n, _ in table.partition_keys]
    if set(given) != set(keys):
        raise _QueryError(f"Partition spec ({spec}) does not name the partition keys {keys} of {table.qualified}")
    return tuple(given[k] for k in keys)


# ------------------------------------------------------- values and text


def _cell(value: Any) -> dict[str, str]:
    return {} if value is None else {"VarCharValue": _text(value)}


def _text(value: Any) -> str:
    """A value as Athena prints it in results."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None).isoformat(sep=" ", timespec="milliseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join("null" if v is None else _text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={'null' if v is None else _text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bytes):
        return value.hex(" ")
    return str(value)


def _csv(outcome: _Outcome) -> str:
    def field_of(value: Any) -> str:
        return "" if value is None else '"' + _text(value).replace('"', '""') + '"'

    lines = [",".join(f'"{name}"' for name, _ in outcome.columns)]
    lines.extend(",".join(field_of(v) for v in row) for row in outcome.rows)
    return "\n".join(lines) + "\n"


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sql_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(_literal(i) for i in items) + "]"


def _cast_literal(value: str | None, glue_type: str) -> str:
    duck = glue_to_duckdb(glue_type)
    return f"CAST({'NULL' if value is None else _literal(value)} AS {duck})"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _duckdb_reason(exc: duckdb.Error) -> str:
    message = _first_line(str(exc))
    for pattern, code in _DUCKDB_CODES:
        if pattern.search(message):
            return f"{code}: {message}"
    return f"GENERIC_INTERNAL_ERROR: {message}"


_DUCKDB_CODES: Final = (
    (re.compile(r"Division by zero", re.IGNORECASE), "DIVISION_BY_ZERO"),
    (re.compile(r"Overflow in|out of range for", re.IGNORECASE), "NUMERIC_VALUE_OUT_OF_RANGE"),
    (re.compile(r"Referenced column|not found in FROM clause", re.IGNORECASE), "COLUMN_NOT_FOUND"),
    (re.compile(r"Parser Error", re.IGNORECASE), "SYNTAX_ERROR"),
    (re.compile(r"Conversion Error|Could not convert|Invalid Input", re.IGNORECASE), "INVALID_CAST_ARGUMENT"),
    (re.compile(r"Binder Error", re.IGNORECASE), "SEMANTIC_ERROR"),
    (re.compile(r"Out of Memory", re.IGNORECASE), "EXCEEDED_LOCAL_MEMORY_LIMIT"),
)


def _client_error(code: str, message: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into bucket and key."""
    parts = urlsplit(uri)
    if parts.scheme not in {"s3", "s3a", "s3n"} or not parts.netloc:
        raise _QueryError(f"INVALID_TABLE_PROPERTY: {uri!r} is not an s3:// location")
    return parts.netloc, parts.path.lstrip("/")


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


__all__ = ["AthenaEngine", "QueryFailedError", "QueryResult", "glue_to_duckdb", "split_s3_uri"]

"""Athena on DuckDB: the query API (StartQueryExecution, GetQueryExecution, GetQueryResults) over the
statements of scan, write and ddl; Trino SQL transpiled with sqlglot, tables resolved through the local Glue catalog."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

import duckdb
import sqlglot
from botocore.exceptions import ClientError
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError

from lakebox.services.athena.ddl import DdlMixin
from lakebox.services.athena.model import (
    MAX_RESULTS,
    QueryFailedError,
    QueryHistory,
    _Context,
    _Execution,
    _FileMeta,
    _first_line,
    _Outcome,
    _Partition,
    _QueryError,
    _S3Object,
    _split_statements,
    _Table,
    _Translation,
    split_s3_uri,
)
from lakebox.services.athena.scan import _name_outputs
from lakebox.services.athena.trino import UTC, check_function_names
from lakebox.services.athena.types import _athena_shaped, _athena_type, _column_info
from lakebox.services.athena_result import QueryResult, encode_value
from lakebox.sfn.integrations import (
    ATHENA_GET_QUERY_RESULTS,
    ATHENA_START_QUERY_EXECUTION,
    ATHENA_START_QUERY_EXECUTION_SYNC,
    athena_get_query_results,
    athena_start_query_execution,
    athena_start_query_execution_sync,
)

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_athena import AthenaClient
    from mypy_boto3_glue import GlueClient
    from mypy_boto3_s3 import S3Client

    from lakebox.services.changes import Change, ChangeLog
    from lakebox.services.s3tail import ObjectTail
    from lakebox.sfn.registry import Handler

logger = logging.getLogger(__name__)

_TRANSLATIONS: Final = 256
"""Distinct SELECTs whose translation the engine keeps (least recently run forgotten first)."""
_VOLATILE: Final = re.compile(r"\b(current_\w+|now|localtime|localtimestamp|rand|random|uuid|shuffle)\b", re.IGNORECASE)
"""Functions whose value changes from run to run: a query naming one is translated every time (its partitions are
pruned with the value of the moment)."""


class AthenaEngine(DdlMixin):
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
        text denies it, and the statement fails with that reason (Lake Formation's grants, see
        lakebox.services.governance).
    on_query
        Called with (workgroup, bytes scanned, engine milliseconds) after every statement, as Athena publishes
        ProcessedBytes and TotalExecutionTime per workgroup (see lakebox.services.alarms).
    history
        Where executions are kept for GetQueryExecution (the box's, so it is saved with the lake).
    strict
        Refuse what Athena refuses (``'1' = 1``, ``concat`` with a number, an array subscript out of bounds, a missing
        map key, unknown functions) with Athena's error; off, DuckDB's lenient answers come back instead.
    changes
        The endpoint's record of what changed (`lakebox.services.changes`), when the engine runs beside it: the
        engine then keeps what it read (workgroups, Glue tables and partitions, S3 listings, each SELECT's
        translation) from one query to the next, and forgets what a change may have touched. Without it, every
        query reads them afresh.
    read_tail
        Reads the last bytes of an object of the endpoint's S3 with its size and ETag (`LocalEndpoint.object_tail`),
        when the engine runs in the endpoint's process: the footers of the Parquet files a statement lists are then
        read there, without a request (ADR 0043). Without it, or for an object it does not hold as listed, DuckDB
        reads them through S3.
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
        strict: bool = True,
        changes: ChangeLog | None = None,
        read_tail: Callable[[str, str, int], ObjectTail | None] | None = None,
    ) -> None:
        self._strict = strict
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
        self._databases: set[str] = set()
        self._absent: set[tuple[str, str]] = set()
        self._changes = changes
        self._read_tail = read_tail
        self._seen = 0
        self._read: set[tuple[str, str]] = set()
        self._workgroups: dict[str, dict[str, Any]] = {}
        self._listings: dict[tuple[str, str], list[_S3Object]] = {}
        self._listed: list[tuple[tuple[str, str], list[_S3Object]]] = []
        self._projected = False
        self._serial = 0
        self._kept: duckdb.DuckDBPyConnection | None = None
        self._kept_views: set[str] = set()
        self._translations: OrderedDict[tuple[str, str], _Translation] = OrderedDict()
        self._writer: ThreadPoolExecutor | None = None
        self._handed: dict[str, set[str]] = {}
        self._file_cache_clears = 0

    # ------------------------------------------------------------------ API

    def task_handlers(self) -> dict[str, Handler]:
        """The executor's Athena tasks on this engine (a TaskService): start a query, to its end or not, and results."""
        return {
            ATHENA_START_QUERY_EXECUTION_SYNC: athena_start_query_execution_sync(self),
            ATHENA_START_QUERY_EXECUTION: athena_start_query_execution(self),
            ATHENA_GET_QUERY_RESULTS: athena_get_query_results(self),
        }

    def start_query_execution(
        self,
        QueryString: str,
        QueryExecutionContext: dict[str, Any] | None = None,
        ResultConfiguration: dict[str, Any] | None = None,
        WorkGroup: str | None = None,
        execution_id: str | None = None,
        workgroup_config: dict[str, Any] | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        """Run one statement to completion and return its GetQueryExecution description.

        `execution_id` names the execution (a new id when omitted): the endpoint answers with it before the run ends.
        `workgroup_config` is the workgroup's configuration when the caller has just read it and checked the
        workgroup is enabled (the endpoint's Athena does, for each query), so it is not read twice.

        A statement that fails ends in state FAILED (or CANCELLED past the workgroup's bytes-scanned cutoff)
        with Athena's reason; only request errors (unknown workgroup, no output location) raise ``ClientError``.
        """
        workgroup = WorkGroup or "primary"
        with self._lock:
            self._sync()
            config = self._workgroup(workgroup) if workgroup_config is None else workgroup_config
        output = self._output_prefix(config, ResultConfiguration or {})
        context = QueryExecutionContext or {}
        database = str(context.get("Database") or self._default_database).lower()
        execution = _Execution(
            execution_id=execution_id or str(uuid.uuid4()),
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

    def typed_results(self, QueryExecutionId: str) -> dict[str, Any]:
        """A finished query's whole result with its values as `encode_value` carries them (`LakeboxTypedRows`)."""
        execution = self._execution(QueryExecutionId)
        if execution.state != "SUCCEEDED" or execution.outcome is None:
            raise _client_error(
                "InvalidRequestException",
                f"Query has not yet finished. Current state: {execution.state}",
                "GetQueryResults",
            )
        outcome = execution.outcome
        return {
            "LakeboxTypedRows": {
                "Columns": [name for name, _ in outcome.columns],
                "Types": [kind for _, kind in outcome.columns],
                "Rows": [[encode_value(v) for v in row] for row in outcome.rows],
                "DataScannedInBytes": outcome.bytes_scanned,
                "OutputLocation": execution.output_location,
            }
        }

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
            if self._kept is not None:
                self._kept.close()
                self._kept, self._kept_views = None, set()
            if self._db is not None:
                self._db.close()
                self._db = None
            if self._writer is not None:
                self._writer.shutdown()
                self._writer = None

    def workgroup_config(self, name: str) -> dict[str, Any]:
        """The configuration of an enabled workgroup, or the ``ClientError`` Athena answers StartQueryExecution with
        (an unknown or disabled workgroup)."""
        if not self._lock.acquire(blocking=False):  # a query is running: read it afresh rather than wait
            return self._read_workgroup(name)
        try:
            self._sync()
            return dict(self._workgroup(name))
        finally:
            self._lock.release()

    # ------------------------------------------------------------ caches

    def _sync(self) -> None:
        """Forget what changed on the endpoint since the last look (everything, when there is no record of it)."""
        if self._changes is None:
            self._forget_catalog()
            self._workgroups.clear()
            self._listings.clear()
            return
        self._seen, changes = self._changes.since(self._seen)
        for change in changes:
            self._forget(change)

    def _forget(self, change: Change) -> None:
        if change.service in {None, "glue"}:
            if change.database is None:
                self._forget_catalog()
            else:  # one table or one database: the rest of the catalog stays kept, and the translations reading it
                for key in [
                    k for k, kept in self._translations.items() if any(change.touches_table(*t) for t in kept.tables)
                ]:
                    self._drop_translation(key)
                for key in [k for k in self._tables if change.touches_table(*k)]:
                    del self._tables[key]
                for key in [k for k in self._partition_lists if change.touches_table(*k)]:
                    del self._partition_lists[key]
                self._absent = {k for k in self._absent if not change.touches_table(*k)}
                if change.touches_database(change.database):
                    self._databases.discard(change.database)
        if change.service in {None, "athena"}:
            self._workgroups.clear()
        if change.service in {None, "s3"}:
            for key in [k for k in self._listings if change.touches(*k)]:
                del self._listings[key]
            self._forget_files(change)

    def _forget_catalog(self) -> None:
        while self._translations:
            self._drop_translation(next(iter(self._translations)))
        self._tables.clear()
        self._partition_lists.clear()
        self._databases.clear()
        self._absent.clear()

    def _translation(self, text: str, database: str) -> _Translation | None:
        """The kept translation of a SELECT, when nothing it was read from changed since."""
        found = self._translations.get((text, database))
        if found is None:
            return None
        if not all(self._listings.get(key) is listed for key, listed in found.listings):
            self._drop_translation((text, database))
            return None
        self._translations.move_to_end((text, database))
        return found

    def _keep_translation(self, text: str, ctx: _Context, translation: _Translation) -> None:
        if self._changes is None or self._authorize is not None or self._projected or _VOLATILE.search(text):
            return
        if (text, ctx.database) in self._translations:
            self._drop_translation((text, ctx.database))
        self._translations[(text, ctx.database)] = translation
        while len(self._translations) > _TRANSLATIONS:
            self._drop_translation(next(iter(self._translations)))

    def _drop_translation(self, key: tuple[str, str]) -> None:
        translation = self._translations.pop(key)
        for view, _ in translation.views:
            if view in self._kept_views and self._kept is not None:
                self._kept.execute(f"DROP VIEW IF EXISTS {view}")
                self._kept_views.discard(view)

    # ------------------------------------------------------------ execution

    def _execution(self, execution_id: str) -> _Execution:
        execution = self.history.get(execution_id)
        if execution is None:
            raise _client_error(
                "InvalidRequestException", f"QueryExecution {execution_id} was not found", "GetQueryExecution"
            )
        return execution

    def _workgroup(self, name: str) -> dict[str, Any]:
        if name not in self._workgroups:
            self._workgroups[name] = self._read_workgroup(name)
        return self._workgroups[name]

    def _read_workgroup(self, name: str) -> dict[str, Any]:
        try:
            group = self._athena.get_work_group(WorkGroup=name).get("WorkGroup")
        except ClientError as exc:
            raise _client_error(
                "InvalidRequestException", f"WorkGroup {name} is not found.", "StartQueryExecution"
            ) from exc
        if group is None:  # moto answers a deleted workgroup's name with no workgroup
            raise _client_error("InvalidRequestException", f"WorkGroup {name} is not found.", "StartQueryExecution")
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

    def _run(self, execution: _Execution, cutoff: int | None, config: dict[str, Any]) -> None:
        started = time.perf_counter()
        self._sync()
        self._listed, self._projected, self._read = [], False, set()
        cursor = self._connection().cursor()
        context = _Context(execution.execution_id, execution.database, execution.output_prefix, cursor, cutoff)
        try:
            cursor.execute("SET TimeZone = 'UTC'")
            outcome = self._dispatch(execution.query, context)
            # Athena counts publishing the results as service processing time, not the engine's
            execution.engine_ms = round((time.perf_counter() - started) * 1000)
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
            if execution.state != "SUCCEEDED":
                execution.engine_ms = round((time.perf_counter() - started) * 1000)
            execution.planning_ms = int(context.planning_ms)
            execution.completed = dt.datetime.now(dt.UTC)

    def _dispatch(self, query: str, ctx: _Context) -> _Outcome:
        statements = _split_statements(query)
        if not statements:
            raise _QueryError("SYNTAX_ERROR: line 1:1: the query is empty")
        if len(statements) > 1:
            raise _QueryError(f"Only one sql statement is allowed. Got: {query.strip()}")
        text = statements[0]
        translation = self._translation(text, ctx.database)
        if translation is not None:
            return self._rerun(translation, ctx)
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
            if self._strict:
                check_function_names(text)
            return self._select(ast, ctx, text)
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

    def _select(self, ast: exp.Query, ctx: _Context, text: str) -> _Outcome:
        _name_outputs(ast)
        prepared = self._prepare(ast, ctx)
        self._check_cutoff(prepared.bytes_scanned, ctx)
        relation = ctx.cursor.sql(prepared.sql)
        shape = [(name, str(kind)) for name, kind in zip(relation.columns, relation.types, strict=True)]
        sql = _athena_shaped(prepared.sql, shape, keep_zoned=True)
        if sql != prepared.sql:
            relation = ctx.cursor.sql(sql)
        columns = [(name, _athena_type(str(kind))) for name, kind in zip(relation.columns, relation.types, strict=True)]
        rows = relation.fetchall()
        translation = _Translation(
            views=tuple(ctx.bound),
            sql=sql,
            columns=tuple(columns),
            zones=prepared.zones,
            bytes_scanned=prepared.bytes_scanned,
            tables=frozenset(self._read),
            listings=tuple(self._listed),
        )
        self._keep_translation(text, ctx, translation)
        return _Outcome("DML", "SELECT", columns, _zoned(rows, translation), prepared.bytes_scanned)

    def _rerun(self, translation: _Translation, ctx: _Context) -> _Outcome:
        """Run a kept SELECT translation on the cursor keeping its views: no catalog read, listing or planning."""
        self._check_cutoff(translation.bytes_scanned, ctx)
        if self._kept is None:
            self._kept = self._connection().cursor()
            self._kept.execute("SET TimeZone = 'UTC'")
        for view, sql in translation.views:  # made once: DuckDB binds a view (reads its files' schemas) when made
            if view not in self._kept_views:
                self._kept.execute(f"CREATE TEMP VIEW {view} AS {sql}")
                self._kept_views.add(view)
        rows = self._kept.execute(translation.sql).fetchall()
        columns = list(translation.columns)
        return _Outcome("DML", "SELECT", columns, _zoned(rows, translation), translation.bytes_scanned)

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
            metadata = json.dumps(
                {"ColumnInfo": [_column_info(n, t) for n, t in outcome.columns], "RowCount": len(outcome.rows)}
            )
            # the two objects are written at once: the metadata beside the CSV, which is built meanwhile
            if self._writer is None:
                self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="athena-results")
            beside = self._writer.submit(
                self._s3.put_object, Bucket=bucket, Key=f"{key}.metadata", Body=metadata.encode(), **extra
            )
            try:
                self._s3.put_object(Bucket=bucket, Key=key, Body=_csv(outcome).encode(), **extra)
            finally:
                beside.result()
            return f"s3://{bucket}/{key}"
        key = f"{prefix}{execution.execution_id}.txt"
        if outcome.columns:
            body = "".join("\t".join("" if v is None else _text(v) for v in row) + "\n" for row in outcome.rows)
            self._s3.put_object(Bucket=bucket, Key=key, Body=body.encode(), **extra)
        return f"s3://{bucket}/{key}"


# ------------------------------------------------------- values and text


def _zoned(rows: list[tuple[Any, ...]], translation: _Translation) -> list[tuple[Any, ...]]:
    """Rows whose ``timestamp with time zone`` values are shown in the zone the query gave them."""
    zoned = [
        (i, translation.zones.get(name, UTC))
        for i, (name, kind) in enumerate(translation.columns)
        if kind.endswith("zone")
    ]
    return [_in_zones(row, zoned) for row in rows] if zoned else rows


def _in_zones(row: tuple[Any, ...], zoned: list[tuple[int, str]]) -> tuple[Any, ...]:
    values = list(row)
    for index, zone in zoned:
        value = values[index]
        if isinstance(value, dt.datetime):
            values[index] = value.astimezone(dt.UTC if zone == UTC else ZoneInfo(zone))
    return tuple(values)


def _cell(value: Any) -> dict[str, str]:
    return {} if value is None else {"VarCharValue": _text(value)}


def _text(value: Any) -> str:
    """A value as Athena prints it in results."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        text = value.replace(tzinfo=None).isoformat(sep=" ", timespec="milliseconds")
        if value.tzinfo is None:
            return text
        return f"{text} {UTC if value.tzinfo is dt.UTC else getattr(value.tzinfo, 'key', value.tzname())}"
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


def _duckdb_reason(exc: duckdb.Error) -> str:
    message = _first_line(str(exc))
    if "TRY can not be used in combination with a volatile function" in message:
        return (
            "NOT_SUPPORTED: try(...) around an integer division, an array subscript, a map key or a function that "
            "raises cannot run locally"
        )
    for pattern, code in _TRINO_RUNTIME:
        found = pattern.search(message)
        if found:
            return f"{code}: {found.group(0)}"
    for pattern, code in _DUCKDB_CODES:
        if pattern.search(message):
            return f"{code}: {message}"
    return f"GENERIC_INTERNAL_ERROR: {message}"


_TRINO_RUNTIME: Final = (
    (
        re.compile(r"(Array subscript|SQL array indices|Key not present in map|Key-value delimiter).*"),
        "INVALID_FUNCTION_ARGUMENT",
    ),
    (re.compile(r"Map keys must be unique.*|Duplicate keys.*"), "INVALID_FUNCTION_ARGUMENT"),
)
"""Errors the Trino functions of `lakebox.services.athena.functions` raise, with Trino's category."""

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

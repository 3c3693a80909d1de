"""Athena on the endpoint: both wire protocols (JSON 1.1 and REST-JSON) answered by the box's AthenaEngine.

Queries start at once and run on the engine in a thread of their own, so clients poll real states (QUEUED, RUNNING,
then SUCCEEDED, FAILED or CANCELLED). CTAS and INSERT INTO get the data manifest Athena writes
(``<output>/tables/<id>-manifest.csv``, listed in ``Statistics.DataManifestLocation``). The catalog operations read
the Glue catalog; workgroups, named queries, data catalogs and tags are moto's; every other operation answers
`UnsupportedOperation` naming it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import sqlglot
from botocore.exceptions import ClientError
from sqlglot import exp
from sqlglot.errors import SqlglotError

from lakebox.services.athena.model import split_s3_uri
from lakebox.services.serve import AwsRequest, AwsResponse, ServiceError, unsupported

if TYPE_CHECKING:
    import boto3

    from lakebox.services.athena.engine import AthenaEngine

logger = logging.getLogger(__name__)

CATALOG: Final = "AwsDataCatalog"
_TARGET: Final = "AmazonAthena"
_PAGE: Final = 50
_REST_ROUTES: Final = (
    ("POST", "/query-executions", "StartQueryExecution"),
    ("GET", "/query-executions", "ListQueryExecutions"),
    ("GET", "/query-executions/{QueryExecutionId}", "GetQueryExecution"),
    ("GET", "/query-executions/{QueryExecutionId}/results", "GetQueryResults"),
    ("GET", "/query-executions/{QueryExecutionId}/result-stream", "GetQueryResultStream"),
    ("GET", "/query-executions/{QueryExecutionId}/runtime-statistics", "GetQueryRuntimeStatistics"),
    ("POST", "/query-executions/{QueryExecutionId}/stop", "StopQueryExecution"),
    ("POST", "/batch-get-query-executions", "BatchGetQueryExecution"),
    ("POST", "/batch-get-named-queries", "BatchGetNamedQuery"),
    ("POST", "/named-queries", "CreateNamedQuery"),
    ("GET", "/named-queries", "ListNamedQueries"),
    ("GET", "/named-queries/{NamedQueryId}", "GetNamedQuery"),
    ("DELETE", "/named-queries/{NamedQueryId}", "DeleteNamedQuery"),
    ("PATCH", "/named-queries/{NamedQueryId}", "UpdateNamedQuery"),
    ("POST", "/workgroups", "CreateWorkGroup"),
    ("GET", "/workgroups", "ListWorkGroups"),
    ("GET", "/workgroups/{WorkGroup}", "GetWorkGroup"),
    ("DELETE", "/workgroups/{WorkGroup}", "DeleteWorkGroup"),
    ("PATCH", "/workgroups/{WorkGroup}", "UpdateWorkGroup"),
    ("POST", "/workgroups/{WorkGroup}/prepared-statements", "CreatePreparedStatement"),
    ("GET", "/workgroups/{WorkGroup}/prepared-statements", "ListPreparedStatements"),
    ("GET", "/workgroups/{WorkGroup}/prepared-statements/{StatementName}", "GetPreparedStatement"),
    ("POST", "/data-catalogs", "CreateDataCatalog"),
    ("GET", "/data-catalogs", "ListDataCatalogs"),
    ("GET", "/data-catalogs/{Name}", "GetDataCatalog"),
    ("GET", "/data-catalogs/{CatalogName}/databases", "ListDatabases"),
    ("GET", "/data-catalogs/{CatalogName}/databases/{DatabaseName}", "GetDatabase"),
    ("GET", "/data-catalogs/{CatalogName}/databases/{DatabaseName}/tables", "ListTableMetadata"),
    ("GET", "/data-catalogs/{CatalogName}/databases/{DatabaseName}/tables/{TableName}", "GetTableMetadata"),
    ("GET", "/engine-versions", "ListEngineVersions"),
    ("GET", "/tags/{ResourceARN}", "ListTagsForResource"),
    ("POST", "/tags/{ResourceARN}", "TagResource"),
    ("DELETE", "/tags/{ResourceARN}", "UntagResource"),
)
"""The REST-JSON routes of the operations the endpoint knows; any other path is an unsupported operation."""

_MOTO_OPERATIONS: Final = frozenset(
    {
        "CreateWorkGroup",
        "GetWorkGroup",
        "ListWorkGroups",
        "DeleteWorkGroup",
        "CreateNamedQuery",
        "GetNamedQuery",
        "ListNamedQueries",
        "CreateDataCatalog",
        "GetDataCatalog",
        "CreatePreparedStatement",
        "GetPreparedStatement",
        "ListTagsForResource",
        "TagResource",
        "UntagResource",
    }
)
"""Operations moto answers as Athena does: kept as they are (the template's workgroups and named queries live there)."""

_INTEGERS: Final = frozenset({"MaxResults"})
_LISTS: Final = frozenset({"TagKeys", "AttributesToGet"})
_WRITES_MANIFEST: Final = frozenset({"CREATE_TABLE_AS_SELECT", "INSERT"})


def _compile(template: str) -> re.Pattern[str]:
    pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    return re.compile(f"^{pattern}/?$")


_COMPILED: Final = tuple((method, _compile(path), operation) for method, path, operation in _REST_ROUTES)


@dataclass
class _Pending:
    """A query accepted and not yet finished (or finished and still writing its manifest)."""

    query: str
    workgroup: str
    database: str
    submitted: dt.datetime
    cancelled: bool = False


@dataclass
class _Start:
    """A query that failed at its start (the engine refused the request)."""

    query: str
    workgroup: str
    reason: str
    submitted: dt.datetime


@dataclass
class AthenaApi:
    """Athena's API on the endpoint, over the box's engine, its Glue catalog and its S3.

    Parameters
    ----------
    engine_of
        The box's Athena engine (the one `lakebox query` uses), made on first use; queries run on it and its
        history answers.
    session
        A session reaching the endpoint (for the Glue catalog, S3 and moto's workgroups).
    list_data_catalogs
        The data catalogs created on the endpoint besides `AwsDataCatalog` (moto keeps them).
    """

    engine_of: Callable[[], AthenaEngine]
    session: boto3.Session
    list_data_catalogs: Callable[[], list[dict[str, Any]]] = list
    signing_names: tuple[str, ...] = ("athena",)
    target_prefixes: tuple[str, ...] = (_TARGET,)
    _pending: dict[str, _Pending] = field(default_factory=dict)
    _failed: dict[str, _Start] = field(default_factory=dict)
    _tokens: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)
    _clients: dict[str, Any] = field(default_factory=dict)

    def _athena(self) -> Any:
        """The endpoint's Athena client (moto's workgroups and named queries), made once."""
        if "athena" not in self._clients:
            self._clients["athena"] = self.session.client("athena")
        return self._clients["athena"]

    @property
    def engine(self) -> AthenaEngine:
        """The engine queries run on."""
        return self.engine_of()

    # ------------------------------------------------------------------ the wire
    def handle(self, request: AwsRequest) -> AwsResponse | AwsRequest:
        """Answer an Athena request of either protocol, or hand moto the ones it answers faithfully."""
        rest = request.target is None
        operation, params = _rest_operation(request) if rest else (str(request.target), request.json())
        content_type = "application/json" if rest else "application/x-amz-json-1.1"
        handler = self._handlers().get(operation)
        if handler is not None:
            try:
                return AwsResponse.of_json(handler(params), content_type)
            except ClientError as exc:
                error = exc.response.get("Error", {})
                raise ServiceError(
                    str(error.get("Code", "InternalServerException")), str(error.get("Message", ""))
                ) from exc
        if operation in _MOTO_OPERATIONS:
            if not rest:
                return request
            headers = {k: v for k, v in request.headers.items() if k not in {"content-type", "content-length"}}
            headers.update({"x-amz-target": f"{_TARGET}.{operation}", "content-type": "application/x-amz-json-1.1"})
            return AwsRequest(
                method="POST",
                path="/",
                query={},
                headers=headers,
                body=json.dumps(params).encode(),
                signing_name=request.signing_name,
                region=request.region,
                environ=request.environ,
            )
        raise unsupported("Athena", operation)

    def _handlers(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "StartQueryExecution": self.start_query_execution,
            "GetQueryExecution": self.get_query_execution,
            "BatchGetQueryExecution": self.batch_get_query_execution,
            "GetQueryResults": self.get_query_results,
            "StopQueryExecution": self.stop_query_execution,
            "ListQueryExecutions": self.list_query_executions,
            "BatchGetNamedQuery": self.batch_get_named_query,
            "ListDataCatalogs": self.list_data_catalogs_,
            "ListDatabases": self.list_databases,
            "GetDatabase": self.get_database,
            "ListTableMetadata": self.list_table_metadata,
            "GetTableMetadata": self.get_table_metadata,
        }

    # ------------------------------------------------------------------ queries
    def start_query_execution(self, params: dict[str, Any]) -> dict[str, Any]:
        """Accept a query, check its request as Athena does, and run it on the engine in a thread of its own."""
        query = params.get("QueryString")
        if not isinstance(query, str) or not query.strip():
            raise ServiceError("InvalidRequestException", "QueryString is required and must not be empty")
        token = params.get("ClientRequestToken")
        with self._lock:
            if token and token in self._tokens:
                return {"QueryExecutionId": self._tokens[token]}
        workgroup = str(params.get("WorkGroup") or "primary")
        config = self._check_request(workgroup, params.get("ResultConfiguration") or {})
        if params.get("ExecutionParameters"):
            query = _bind(query, [str(p) for p in params["ExecutionParameters"]])
        context = dict(params.get("QueryExecutionContext") or {})
        catalog = str(context.get("Catalog") or CATALOG)
        if catalog.lower() != CATALOG.lower():
            raise ServiceError("InvalidRequestException", f"Catalog {catalog} is not available locally")
        execution_id = str(uuid.uuid4())
        pending = _Pending(query, workgroup, str(context.get("Database") or ""), dt.datetime.now(dt.UTC))
        with self._lock:
            self._pending[execution_id] = pending
            if token:
                self._tokens[token] = execution_id
        thread = threading.Thread(
            target=self._run,
            args=(execution_id, query, context, params.get("ResultConfiguration"), workgroup, config),
            name=f"athena-{execution_id[:8]}",
            daemon=True,
        )
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return {"QueryExecutionId": execution_id}

    def _check_request(self, workgroup: str, result: dict[str, Any]) -> dict[str, Any]:
        """Athena refuses at once an unknown or disabled workgroup and a query with nowhere to write its results.

        Returns the workgroup's configuration, which the engine then runs the query with (read once a query)."""
        try:
            config = self.engine.workgroup_config(workgroup)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise ServiceError(str(error.get("Code")), str(error.get("Message"))) from exc
        if not (config.get("ResultConfiguration") or {}).get("OutputLocation") and not result.get("OutputLocation"):
            raise ServiceError(
                "InvalidRequestException",
                "No output location provided. An output location is required either through the Workgroup result "
                "configuration setting or as an API input.",
            )
        return dict(config)

    def _run(
        self,
        execution_id: str,
        query: str,
        context: dict[str, Any],
        result: dict[str, Any] | None,
        workgroup: str,
        config: dict[str, Any],
    ) -> None:
        try:
            described = self.engine.start_query_execution(
                QueryString=query,
                QueryExecutionContext={k: v for k, v in context.items() if k == "Database"} or None,
                ResultConfiguration=result,
                WorkGroup=workgroup,
                execution_id=execution_id,
                workgroup_config=config,
            )["QueryExecution"]
            if described["Status"]["State"] == "SUCCEEDED" and described.get("SubstatementType") in _WRITES_MANIFEST:
                self._write_manifest(described)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            with self._lock:
                pending = self._pending[execution_id]
                self._failed[execution_id] = _Start(
                    query, workgroup, str(error.get("Message") or error.get("Code")), pending.submitted
                )
        except Exception as exc:  # the thread reports every failure as the query's, and never dies silently
            logger.exception("athena %s: the local engine failed", execution_id)
            with self._lock:
                pending = self._pending[execution_id]
                self._failed[execution_id] = _Start(
                    query, workgroup, f"GENERIC_INTERNAL_ERROR: {type(exc).__name__}: {exc}", pending.submitted
                )
        finally:
            with self._lock:
                done = self._pending.pop(execution_id)
                if done.cancelled:
                    self._failed.setdefault(
                        execution_id, _Start(query, workgroup, "Query cancelled by user", done.submitted)
                    )

    def _write_manifest(self, described: dict[str, Any]) -> None:
        """Athena's data manifest of a CTAS or INSERT INTO: the data files it wrote, one S3 URI a line."""
        execution_id = described["QueryExecutionId"]
        table = _target_table(described["Query"], described["QueryExecutionContext"]["Database"])
        files: list[str] = []
        if table is not None:
            glue = self.session.client("glue")
            location = glue.get_table(DatabaseName=table[0], Name=table[1])["Table"]["StorageDescriptor"]["Location"]
            bucket, prefix = split_s3_uri(location.rstrip("/") + "/")
            pages = self.session.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            files = [
                f"s3://{bucket}/{item['Key']}"
                for page in pages
                for item in page.get("Contents", [])
                if item["Key"].rsplit("/", 1)[-1].startswith(execution_id)
            ]
        manifest = _manifest_location(described)
        bucket, key = split_s3_uri(manifest)
        body = "".join(f"{uri}\n" for uri in sorted(files))
        self.session.client("s3").put_object(Bucket=bucket, Key=key, Body=body.encode())

    def describe(self, execution_id: str) -> dict[str, Any]:
        """An execution as GetQueryExecution answers it: QUEUED or RUNNING until the engine and manifest are done."""
        with self._lock:
            pending = self._pending.get(execution_id)
            failed = self._failed.get(execution_id)
        if failed is not None and pending is None:
            return _failed_description(execution_id, failed)
        found = self.engine.history.get(execution_id)
        if found is None and pending is None:
            raise ServiceError("InvalidRequestException", f"QueryExecution {execution_id} was not found")
        if pending is not None and pending.cancelled:
            return _failed_description(
                execution_id, _Start(pending.query, pending.workgroup, "Query cancelled by user", pending.submitted)
            )
        if pending is not None:
            state = "QUEUED" if found is None else "RUNNING"
            base = (
                self.engine.get_query_execution(execution_id)["QueryExecution"]
                if found is not None
                else {
                    "QueryExecutionId": execution_id,
                    "Query": pending.query,
                    "WorkGroup": pending.workgroup,
                    "QueryExecutionContext": {"Catalog": CATALOG.lower(), "Database": pending.database},
                    "Statistics": {"DataScannedInBytes": 0, "EngineExecutionTimeInMillis": 0},
                }
            )
            base["Status"] = {
                "State": state,
                "SubmissionDateTime": pending.submitted.isoformat(timespec="milliseconds"),
            }
            return base
        described: dict[str, Any] = self.engine.get_query_execution(execution_id)["QueryExecution"]
        status = described["Status"]
        if status["State"] != "SUCCEEDED":
            status["AthenaError"] = _athena_error(str(status.get("StateChangeReason") or ""), status["State"])
        elif described.get("SubstatementType") in _WRITES_MANIFEST:
            described["Statistics"]["DataManifestLocation"] = _manifest_location(described)
        return described

    def get_query_execution(self, params: dict[str, Any]) -> dict[str, Any]:
        """GetQueryExecution."""
        return {"QueryExecution": self.describe(_required(params, "QueryExecutionId"))}

    def batch_get_query_execution(self, params: dict[str, Any]) -> dict[str, Any]:
        """BatchGetQueryExecution: the executions found, and the ids not found with their error."""
        ids = params.get("QueryExecutionIds") or []
        if not 1 <= len(ids) <= 50:
            raise ServiceError("InvalidRequestException", "QueryExecutionIds must hold between 1 and 50 ids")
        found, missing = [], []
        for execution_id in ids:
            try:
                found.append(self.describe(str(execution_id)))
            except ServiceError as exc:
                missing.append({"QueryExecutionId": execution_id, "ErrorCode": exc.code, "ErrorMessage": exc.message})
        return {"QueryExecutions": found, "UnprocessedQueryExecutionIds": missing}

    def get_query_results(self, params: dict[str, Any]) -> dict[str, Any]:
        """GetQueryResults: the engine's pages (typed ColumnInfo, the header row first, NextToken).

        With `LakeboxTypedRows: true` (`lakebox query`'s request, see `lakebox.services.athena_result`), the whole
        result at once with its values carried without loss, in place of the pages.
        """
        execution_id = _required(params, "QueryExecutionId")
        described = self.describe(execution_id)
        state = described["Status"]["State"]
        if state != "SUCCEEDED":
            reason = described["Status"].get("StateChangeReason")
            message = f"Query has not yet finished. Current state: {state}"
            if state in {"FAILED", "CANCELLED"}:
                message = f"Query did not finish successfully. Final query state: {state}" + (
                    f" ({reason})" if reason else ""
                )
            raise ServiceError("InvalidRequestException", message)
        if params.get("LakeboxTypedRows") is True:
            return self.engine.typed_results(execution_id)
        max_results = params.get("MaxResults")
        if max_results is not None and not 1 <= int(max_results) <= 1000:
            raise ServiceError("InvalidRequestException", "MaxResults must be between 1 and 1000")
        return self.engine.get_query_results(
            QueryExecutionId=execution_id,
            MaxResults=int(max_results) if max_results is not None else None,
            NextToken=params.get("NextToken"),
        )

    def stop_query_execution(self, params: dict[str, Any]) -> dict[str, Any]:
        """StopQueryExecution: a query still running ends CANCELLED (its results are withheld); a finished one stays."""
        execution_id = _required(params, "QueryExecutionId")
        with self._lock:
            pending = self._pending.get(execution_id)
            if pending is not None:
                pending.cancelled = True
                return {}
        self.describe(execution_id)
        return {}

    def list_query_executions(self, params: dict[str, Any]) -> dict[str, Any]:
        """ListQueryExecutions of one workgroup (``primary`` by default), newest first."""
        workgroup = str(params.get("WorkGroup") or "primary")
        with self.engine.history.lock:
            ids = [e.execution_id for e in self.engine.history.executions.values() if e.workgroup == workgroup]
        with self._lock:
            ids += [i for i, p in self._pending.items() if p.workgroup == workgroup and i not in ids]
            ids += [i for i, f in self._failed.items() if f.workgroup == workgroup and i not in ids]
        ids.reverse()
        return _page(ids, params, "QueryExecutionIds")

    def batch_get_named_query(self, params: dict[str, Any]) -> dict[str, Any]:
        """BatchGetNamedQuery over moto's named queries."""
        athena = self._athena()
        found, missing = [], []
        for named_id in params.get("NamedQueryIds") or []:
            try:
                found.append(athena.get_named_query(NamedQueryId=named_id)["NamedQuery"])
            except ClientError as exc:
                error = exc.response.get("Error", {})
                missing.append(
                    {"NamedQueryId": named_id, "ErrorCode": error.get("Code"), "ErrorMessage": error.get("Message")}
                )
        return {"NamedQueries": found, "UnprocessedNamedQueryIds": missing}

    # ------------------------------------------------------------------ the catalog
    def list_data_catalogs_(self, params: dict[str, Any]) -> dict[str, Any]:
        """ListDataCatalogs: the Glue catalog, and those created on the endpoint."""
        catalogs = [{"CatalogName": CATALOG, "Type": "GLUE"}]
        catalogs += [c for c in self.list_data_catalogs() if c.get("CatalogName") != CATALOG]
        return _page(catalogs, params, "DataCatalogsSummary")

    def _catalog(self, params: dict[str, Any]) -> None:
        name = _required(params, "CatalogName")
        if name.lower() != CATALOG.lower():
            raise ServiceError("MetadataException", f"Catalog {name} is not available locally")

    def list_databases(self, params: dict[str, Any]) -> dict[str, Any]:
        """ListDatabases of the Glue catalog."""
        self._catalog(params)
        pages = self.session.client("glue").get_paginator("get_databases").paginate()
        databases = [_database(dict(d)) for page in pages for d in page["DatabaseList"]]
        return _page(databases, params, "DatabaseList")

    def get_database(self, params: dict[str, Any]) -> dict[str, Any]:
        """GetDatabase of the Glue catalog."""
        self._catalog(params)
        name = _required(params, "DatabaseName")
        try:
            database = self.session.client("glue").get_database(Name=name)["Database"]
        except ClientError as exc:
            raise ServiceError("MetadataException", f"Database {name} not found.") from exc
        return {"Database": _database(dict(database))}

    def list_table_metadata(self, params: dict[str, Any]) -> dict[str, Any]:
        """ListTableMetadata of one Glue database (`Expression` is a regex on the table name, as Athena's)."""
        self._catalog(params)
        database = _required(params, "DatabaseName")
        try:
            pages = self.session.client("glue").get_paginator("get_tables").paginate(DatabaseName=database)
            tables = [t for page in pages for t in page["TableList"]]
        except ClientError as exc:
            raise ServiceError("MetadataException", f"Database {database} not found.") from exc
        expression = params.get("Expression")
        if expression:
            pattern = re.compile(str(expression).replace("*", ".*"), re.IGNORECASE)
            tables = [t for t in tables if pattern.fullmatch(t["Name"])]
        return _page([_table_metadata(dict(t)) for t in tables], params, "TableMetadataList")

    def get_table_metadata(self, params: dict[str, Any]) -> dict[str, Any]:
        """GetTableMetadata of one Glue table."""
        self._catalog(params)
        database, name = _required(params, "DatabaseName"), _required(params, "TableName")
        try:
            table = self.session.client("glue").get_table(DatabaseName=database, Name=name)["Table"]
        except ClientError as exc:
            raise ServiceError("MetadataException", f"Table {database}.{name} not found.") from exc
        return {"TableMetadata": _table_metadata(dict(table))}

    def join(self, timeout: float | None = None) -> None:
        """Wait for the queries running now (a box that closes lets them finish first)."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)


# ---------------------------------------------------------------------- helpers
def _required(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    if not value:
        raise ServiceError("InvalidRequestException", f"{name} is required")
    return str(value)


def _rest_operation(request: AwsRequest) -> tuple[str, dict[str, Any]]:
    """The operation and its parameters of a REST-JSON request: path parameters, query string and body."""
    from urllib.parse import unquote

    for method, pattern, operation in _COMPILED:
        match = pattern.match(request.path)
        if match and method == request.method:
            params: dict[str, Any] = request.json() if request.method in {"POST", "PUT", "PATCH"} else {}
            params.update({k: unquote(v) for k, v in match.groupdict().items()})
            for name, values in request.query.items():
                if name in _LISTS:
                    params[name] = values
                elif name in _INTEGERS:
                    params[name] = int(values[-1])
                else:
                    params[name] = values[-1]
            return operation, params
    raise ServiceError("UnsupportedOperation", f"Athena has no operation at {request.method} {request.path} locally")


def _page(items: list[Any], params: dict[str, Any], key: str) -> dict[str, Any]:
    start = int(params.get("NextToken") or 0)
    size = int(params.get("MaxResults") or _PAGE)
    response: dict[str, Any] = {key: items[start : start + size]}
    if start + size < len(items):
        response["NextToken"] = str(start + size)
    return response


def _manifest_location(described: dict[str, Any]) -> str:
    output = str(described["ResultConfiguration"]["OutputLocation"])
    folder = output.rsplit("/", 1)[0]
    return f"{folder}/tables/{described['QueryExecutionId']}-manifest.csv"


def _target_table(query: str, database: str) -> tuple[str, str] | None:
    """The table a CTAS or INSERT INTO writes, as (database, name)."""
    try:
        ast = sqlglot.parse_one(query, read="athena")
    except SqlglotError:
        return None
    target = ast.this if isinstance(ast, exp.Create | exp.Insert) else None
    if isinstance(target, exp.Schema):
        target = target.this
    if not isinstance(target, exp.Table):
        return None
    return (target.db or database).lower(), target.name.lower()


_CATEGORIES: Final = (
    (re.compile(r"^(GENERIC_INTERNAL_ERROR|HIVE_METASTORE_ERROR|EXCEEDED_LOCAL_MEMORY_LIMIT)"), 1),
    (re.compile(r"^(NOT_SUPPORTED|Query cancelled|Query exhausted|.*Bytes scanned limit)"), 3),
)


def _athena_error(reason: str, state: str) -> dict[str, Any]:
    """Athena's AthenaError: category 1 SYSTEM, 2 USER (the query's own fault), 3 OTHER."""
    category = 2
    for pattern, number in _CATEGORIES:
        if pattern.search(reason):
            category = number
            break
    if state == "CANCELLED":
        category = 3
    error: dict[str, Any] = {"ErrorCategory": category, "Retryable": category == 1, "ErrorMessage": reason}
    code = reason.split(":", 1)[0]
    if re.fullmatch(r"[A-Z_]+", code):
        error["ErrorType"] = _ERROR_TYPES.get(code, 1000 if category == 2 else 1)
    return error


_ERROR_TYPES: Final = {
    "SYNTAX_ERROR": 1100,
    "SEMANTIC_ERROR": 1100,
    "TABLE_NOT_FOUND": 1301,
    "SCHEMA_NOT_FOUND": 1300,
    "COLUMN_NOT_FOUND": 1302,
    "CATALOG_NOT_FOUND": 1300,
    "TABLE_ALREADY_EXISTS": 1200,
    "HIVE_PATH_ALREADY_EXISTS": 1200,
    "DIVISION_BY_ZERO": 1000,
    "INVALID_CAST_ARGUMENT": 1000,
    "NOT_SUPPORTED": 1000,
}


def _failed_description(execution_id: str, failed: _Start) -> dict[str, Any]:
    state = "CANCELLED" if failed.reason == "Query cancelled by user" else "FAILED"
    moment = failed.submitted.isoformat(timespec="milliseconds")
    return {
        "QueryExecutionId": execution_id,
        "Query": failed.query,
        "WorkGroup": failed.workgroup,
        "Status": {
            "State": state,
            "StateChangeReason": failed.reason,
            "SubmissionDateTime": moment,
            "CompletionDateTime": moment,
            "AthenaError": _athena_error(failed.reason, state),
        },
        "Statistics": {"DataScannedInBytes": 0, "EngineExecutionTimeInMillis": 0, "TotalExecutionTimeInMillis": 0},
    }


def _database(database: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"Name": database["Name"], "Parameters": database.get("Parameters") or {}}
    if database.get("Description"):
        out["Description"] = database["Description"]
    return out


def _column(column: dict[str, Any]) -> dict[str, Any]:
    out = {"Name": column["Name"], "Type": column.get("Type", "string")}
    if column.get("Comment"):
        out["Comment"] = column["Comment"]
    return out


def _table_metadata(table: dict[str, Any]) -> dict[str, Any]:
    """A Glue table as Athena's TableMetadata (its columns, partition keys, type and parameters)."""
    storage = table.get("StorageDescriptor") or {}
    parameters = {k: str(v) for k, v in (table.get("Parameters") or {}).items()}
    if storage.get("Location"):
        parameters.setdefault("location", storage["Location"])
    if storage.get("InputFormat"):
        parameters.setdefault("inputformat", storage["InputFormat"])
    if storage.get("OutputFormat"):
        parameters.setdefault("outputformat", storage["OutputFormat"])
    serde = (storage.get("SerdeInfo") or {}).get("SerializationLibrary")
    if serde:
        parameters.setdefault("serde.serialization.lib", serde)
    metadata: dict[str, Any] = {
        "Name": table["Name"],
        "TableType": table.get("TableType") or "EXTERNAL_TABLE",
        "Columns": [_column(c) for c in storage.get("Columns") or []],
        "PartitionKeys": [_column(c) for c in table.get("PartitionKeys") or []],
        "Parameters": parameters,
    }
    for key, name in (("CreateTime", "CreateTime"), ("LastAccessTime", "LastAccessTime")):
        if table.get(key):
            metadata[name] = table[key]
    return metadata


def _bind(query: str, values: list[str]) -> str:
    """Athena's ExecutionParameters: each `?` outside quotes and comments replaced by the next value as written."""
    out: list[str] = []
    position, n, used = 0, len(query), 0
    while position < n:
        c = query[position]
        if c in "'\"":
            end = position + 1
            while end < n:
                if query[end] == c:
                    if end + 1 < n and query[end + 1] == c:
                        end += 2
                        continue
                    break
                end += 1
            out.append(query[position : end + 1])
            position = end + 1
            continue
        if c == "?":
            if used >= len(values):
                raise ServiceError(
                    "InvalidRequestException", "the query has more ? placeholders than ExecutionParameters"
                )
            out.append(values[used])
            used += 1
        else:
            out.append(c)
        position += 1
    if used != len(values):
        raise ServiceError("InvalidRequestException", "the query has fewer ? placeholders than ExecutionParameters")
    return "".join(out)


__all__ = ["AthenaApi"]

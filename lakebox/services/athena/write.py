"""Writing: CTAS and INSERT INTO as Parquet files on S3, with their Glue table and partitions."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from lakebox.services.athena.catalog import _partition_input, _partition_location, _table_input, _table_key
from lakebox.services.athena.model import (
    _UPLOAD_THREADS,
    CATALOG,
    DEFAULT_PARTITION,
    MAX_WRITERS,
    _Context,
    _literal,
    _Outcome,
    _Partition,
    _QueryError,
    _quote,
    _Table,
    split_s3_uri,
)
from lakebox.services.athena.scan import ScanMixin
from lakebox.services.athena.types import _describe, _duckdb_to_glue, glue_to_duckdb
from lakebox.services.crawler import PARQUET_FORMAT

if TYPE_CHECKING:
    from mypy_boto3_glue.type_defs import PartitionInputTypeDef


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


class WriteMixin(ScanMixin):
    """CTAS and INSERT INTO."""

    _lock: threading.RLock
    _sync: Callable[[], None]

    @contextmanager
    def _others_may_run(self) -> Iterator[None]:
        """Let other statements run on the engine meanwhile (the statement holds the engine's lock around it).

        For a statement's writing only: it works on its own cursor (its temporary table), a local folder and S3
        uploads, and reads or changes none of what the engine keeps (catalog, listings, translations, the kept cursor),
        which stays under the lock. The pipeline builds the curated tables of a wave at once (ADR 0032): their writes
        then overlap each other and the other statements' catalog calls.

        DuckDB's file cache is cleared again on the way back when it was cleared meanwhile: a file this statement read
        while a change to it was seen may have been cached after that clear, as it was before the change.
        """
        clears = self._file_cache_clears
        self._lock.release()
        try:
            yield
        finally:
            self._lock.acquire()
            self._sync()
            if self._file_cache_clears != clears:
                self._clear_file_cache()

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
        scanned = prepared.bytes_scanned if with_data else 0
        if not with_data or (ctx.cutoff is not None and scanned > ctx.cutoff):
            # no rows to produce: the query is bound only, for its columns (and their errors before the cutoff's)
            table = self._ctas_table(_describe(ctx.cursor, prepared.sql), database, name, location, partitioned_by)
            self._check_cutoff(scanned, ctx)
            self._glue.create_table(DatabaseName=database, TableInput=_table_input(table, compression))
            return _Outcome("DML", "CREATE_TABLE_AS_SELECT", [("rows", "bigint")], [(0,)], scanned, 0)
        with self._others_may_run(), self._rows_of(ctx, prepared.sql) as (rows_sql, shape):
            table = self._ctas_table(shape, database, name, location, partitioned_by)
            if not self._is_empty(location):
                raise _QueryError(
                    f"HIVE_PATH_ALREADY_EXISTS: Target directory for table '{database}.{name}' already exists: "
                    f"{location}. You may need to manually clean the data at location '{location}' before "
                    "retrying. Athena will not delete data in your account."
                )
            rows, written = self._write(ctx, rows_sql, table, compression, {})
        self._glue.create_table(DatabaseName=database, TableInput=_table_input(table, compression))
        self._add_partitions(table, written, ignore_existing=False)
        return _Outcome("DML", "CREATE_TABLE_AS_SELECT", [("rows", "bigint")], [(rows,)], scanned, rows)

    @staticmethod
    def _ctas_table(
        shape: list[tuple[str, str]], database: str, name: str, location: str, partitioned_by: list[str]
    ) -> _Table:
        """The table a CTAS creates from its query's (name, DuckDB type) columns, or the error Athena gives them."""
        columns = [(n.lower(), _duckdb_to_glue(t)) for n, t in shape]
        _check_columns(columns, partitioned_by)
        data = [c for c in columns if c[0] not in partitioned_by]
        keys = [next(c for c in columns if c[0] == p) for p in partitioned_by]
        return _Table(
            database, name, "EXTERNAL_TABLE", tuple(data), tuple(keys), location, PARQUET_FORMAT["serde"], {}, {}, None
        )

    @contextmanager
    def _rows_of(self, ctx: _Context, sql: str) -> Iterator[tuple[str, list[tuple[str, str]]]]:
        """Run a statement's query once into a table of the statement's own, and give the SQL reading it with the
        query's (name, DuckDB type) columns, as the query named them (duplicates too); the table is dropped after.

        One pass: binding a query over S3 reads every file's footer, so describing it first and running it after
        read them twice. A temporary table would rename duplicate columns, so the bound relation makes a table of the
        database under the execution's own name (statements run at once on their own cursors: ADR 0033).
        """
        relation = ctx.cursor.sql(sql)
        shape = [(str(n), str(t)) for n, t in zip(relation.columns, relation.types, strict=True)]
        held = f"__lb_rows_{ctx.execution_id.replace('-', '_')}"
        relation.create(held)
        try:
            yield f"SELECT * FROM {held}", shape
        finally:
            ctx.cursor.execute(f"DROP TABLE IF EXISTS {held}")

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
        existing = {p.values: p for p in self._partitions(table)} if table.partition_keys else {}
        compression = table.parameters.get("parquet.compression", "SNAPPY").upper()
        with self._others_may_run(), self._rows_of(ctx, prepared.sql) as (rows_sql, shape):
            all_columns = list(table.columns + table.partition_keys)
            targets = names or [n for n, _ in all_columns]
            if len(targets) != len(shape):
                raise _QueryError(
                    f"Insert query has mismatched column types: table has {len(targets)} columns, query has "
                    f"{len(shape)}"
                )
            unknown = [n for n in targets if n not in dict(all_columns)]
            if unknown:
                raise _QueryError(f"COLUMN_NOT_FOUND: Insert column name does not exist in target table: {unknown[0]}")
            # by position: the query's columns may share a name
            source = {t: f"#{position}" for position, t in enumerate(targets, start=1)}
            projection = ", ".join(
                f"CAST({source.get(n, 'NULL')} AS {glue_to_duckdb(kind)}) AS {_quote(n)}" for n, kind in all_columns
            )
            sql = f"SELECT {projection} FROM ({rows_sql}) AS __lb_insert"
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

"""Reading: each table a query names bound to a DuckDB view of its pruned S3 files (Parquet, JSON, CSV),
views inlined, Trino decimal and map semantics applied."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import sqlglot
from botocore.exceptions import ClientError
from sqlglot import exp
from sqlglot.errors import OptimizeError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.pushdown_projections import pushdown_projections
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.qualify_tables import qualify_tables
from sqlglot.optimizer.scope import Scope, traverse_scope
from sqlglot.schema import MappingSchema

from datalake.exceptions import TerminalError
from lakebox.services.athena import functions
from lakebox.services.athena.catalog import _partition_location, _table_key, _to_table
from lakebox.services.athena.hive_json import HIVE_JSON_SERDE, timestamp_sql
from lakebox.services.athena.model import (
    _MAX_VIEW_DEPTH,
    CATALOG,
    DEFAULT_PARTITION,
    _Context,
    _FileMeta,
    _literal,
    _Partition,
    _Prepared,
    _QueryError,
    _quote,
    _S3Object,
    _sql_list,
    _Table,
    split_s3_uri,
)
from lakebox.services.athena.projection import injected_values, is_projected, projected_partitions
from lakebox.services.athena.trino import check_strict, trino_semantics, unnest_arrays
from lakebox.services.athena.trino_decimal import DIVIDE_MACRO, DecimalPlanError, exact_decimals
from lakebox.services.athena.types import _T, _cast_literal, _convert, _read_type, glue_to_duckdb
from lakebox.services.crawler import hidden_key

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_glue import GlueClient
    from mypy_boto3_s3 import S3Client

    from lakebox.services.changes import Change, ChangeLog
    from lakebox.services.s3tail import ObjectTail

logger = logging.getLogger(__name__)


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
    functions.install(con)
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


_FOOTER_READ = 64 * 1024
"""Bytes read from the end of a Parquet file to find its footer: most footers fit; a longer one is read again whole."""


def _leaves(kind: pa.DataType) -> int:
    """How many Parquet leaf columns store an Arrow type (a struct's fields', a list's elements', a map's keys' and
    values' leaves)."""
    if isinstance(kind, pa.ExtensionType):
        return _leaves(kind.storage_type)
    if pa.types.is_struct(kind):
        return sum(_leaves(kind.field(i).type) for i in range(kind.num_fields))
    if pa.types.is_map(kind):
        return _leaves(kind.key_type) + _leaves(kind.item_type)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _leaves(kind.value_type)
    return 1


def _footer_meta(tail: bytes) -> _FileMeta | None:
    """A Parquet file's top-level columns and compressed bytes per column from the end of the file holding its whole
    footer, as `parquet_metadata` gives them (a column's chunks summed over row groups and nested leaves); None when
    the bytes do not read as a plain footer (the caller then asks DuckDB)."""
    if len(tail) < 12 or tail[-4:] != b"PAR1":
        return None
    try:
        metadata = pq.read_metadata(pa.BufferReader(tail))
        fields = metadata.schema.to_arrow_schema()
    except (pa.ArrowException, OSError, ValueError) as exc:
        logger.debug("footer read by DuckDB instead: %s", exc)
        return None
    owner: list[int] = []
    for index, field in enumerate(fields):
        owner.extend([index] * _leaves(field.type))
    if len(owner) != metadata.num_columns:
        return None
    for leaf, index in enumerate(owner):  # each leaf's path begins with its top-level column's name
        path, name = metadata.schema.column(leaf).path, fields.names[index]
        if path != name and not path.startswith(f"{name}."):
            return None
    totals = [0] * len(fields)
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for leaf, index in enumerate(owner):
            totals[index] += int(row_group.column(leaf).total_compressed_size or 0)
    sizes: dict[str, int] = {}
    if metadata.num_row_groups:
        for name, total in zip(fields.names, totals, strict=True):
            sizes[name.lower()] = total
    return _FileMeta(tuple(fields.names), sizes)


class ScanMixin:
    """Binding a query's tables to their files. The state is set by AthenaEngine.__init__."""

    _session: boto3.Session
    _authorize: Callable[[str, str, dict[str, Any]], str | None] | None
    _glue: GlueClient
    _s3: S3Client
    _db: duckdb.DuckDBPyConnection | None
    _footers: dict[tuple[str, str], _FileMeta]
    _tables: dict[tuple[str, str], _Table]
    _partition_lists: dict[tuple[str, str], list[_Partition]]
    _databases: set[str]
    _absent: set[tuple[str, str]]
    _read: set[tuple[str, str]]
    _listings: dict[tuple[str, str], list[_S3Object]]
    _listed: list[tuple[tuple[str, str], list[_S3Object]]]
    _projected: bool
    _serial: int
    _strict: bool
    _changes: ChangeLog | None
    _read_tail: Callable[[str, str, int], ObjectTail | None] | None
    _handed: dict[str, set[str]]
    _file_cache_clears: int

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._db is None:
            self._db = _connect(self._session, self._s3.meta.endpoint_url)
            if self._changes is not None:
                # DuckDB keeps the files it read in memory (its external file cache) and, by default, asks S3 before
                # every later read whether each one changed (a HEAD per file per statement). The endpoint's record of
                # changes tells the engine instead: the cache is cleared when a file the engine ever gave DuckDB is
                # written or deleted (`_forget_files`).
                self._db.execute("SET validate_external_file_cache = 'NO_VALIDATION'")
        return self._db

    def _hand(self, objects: list[_S3Object]) -> None:
        """Note files given to DuckDB to read: a later change to one of them clears DuckDB's file cache."""
        for obj in objects:
            bucket, key = split_s3_uri(obj.uri)
            self._handed.setdefault(bucket, set()).add(key)

    def _forget_files(self, change: Change) -> None:
        """Clear DuckDB's file cache when an S3 change may have written or deleted a file it may hold.

        Files handed to DuckDB are never forgotten: a statement reading outside the engine's lock may cache a file
        after a clear, and a later change to that file must clear again."""
        if self._db is None or change.service not in {None, "s3"}:
            return
        if change.bucket is None:
            touched = any(self._handed.values())
        elif change.key is None:
            touched = bool(self._handed.get(change.bucket))
        else:
            touched = change.key in self._handed.get(change.bucket, ())
        if touched:
            self._clear_file_cache()

    def _clear_file_cache(self) -> None:
        if self._db is not None:
            self._db.execute("SET enable_external_file_cache = false")
            self._db.execute("SET enable_external_file_cache = true")
            self._file_cache_clears += 1

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
            if self._strict:
                check_strict(tree)
            tree = _trino_decimals(tree)
        except OptimizeError as exc:
            # DuckDB then binds the query itself (and names an unknown column); bytes count every column
            logger.debug("sqlglot could not qualify the query, reading every column: %s", exc)
            tree, qualified = query.copy(), False
        zones = trino_semantics(tree, strict=self._strict)
        scanned = 0
        replacements: list[tuple[exp.Table, exp.Table]] = []
        sources: dict[str, str] = {}
        samples: set[str] = set()
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
                    where = scope.expression.args.get("where") if isinstance(scope.expression, exp.Select) else None
                    partitions = self._read_partitions(table, where, alias) if table.partition_keys else []
                    if partitions and qualified:
                        partitions = _prune(scope, source, alias, table, partitions, ctx.cursor)
                reads[id(source)] = (source, alias, table, columns, partitions)
        for source, alias, table, used, pruned in reads.values():
            if pruned is None:
                pruned = self._read_partitions(table, None, alias) if table.partition_keys else []
            sql, nbytes = self._source_sql(table, used, pruned)
            ctx.views += 1
            self._serial += 1  # a name no other statement's view has: a kept translation's views live on
            view = f"__lb_source_{self._serial}"
            sources[view] = sql
            scanned += nbytes
            replacement = exp.Table(this=exp.to_identifier(view))
            replacement.set("alias", exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))
            if source.args.get("sample") is not None:  # TABLESAMPLE applies to the bound view
                replacement.set("sample", source.args["sample"].copy())
                samples.add(view)
            replacements.append((source, replacement))
        for source, replacement in replacements:
            source.replace(replacement)
        # After the sources are bound: a map's UNNEST becomes a subquery, whose outer columns no scope counts.
        text = unnest_arrays(_trino_maps(tree)).sql(dialect="duckdb", copy=False)
        return _Prepared(self._bind_sources(text, sources, samples, ctx), scanned, zones)

    def _bind_sources(self, text: str, sources: dict[str, str], samples: set[str], ctx: _Context) -> str:
        """Each source's SQL in place of its name in `text` (a subquery: DuckDB binds it with the query), or, when
        sampled or its name is not written exactly once, a view of the statement's cursor (bound when made)."""
        for view, sql in sources.items():
            found = list(re.finditer(rf"\b{view}\b", text))
            if view not in samples and len(found) == 1:
                text = f"{text[: found[0].start()]}({sql}){text[found[0].end() :]}"
            else:
                ctx.cursor.execute(f"CREATE TEMP VIEW {view} AS {sql}")
                ctx.bound.append((view, sql))
        return text

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
        self._read.add((database, name))  # the statement's translation is kept until a change names one of these
        cached = self._tables.get((database, name))
        if cached is not None:
            denial = self._authorize(database, name, dict(cached.raw)) if self._authorize is not None else None
            if denial:
                raise _QueryError(denial)
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
        if database in self._databases:
            return True
        try:
            self._glue.get_database(Name=database)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "EntityNotFoundException":
                return False
            raise
        self._databases.add(database)
        return True

    def _read_partitions(self, table: _Table, where: exp.Expr | None, alias: str) -> list[_Partition]:
        """The partitions a query reads: the projection's when ``projection.enabled``, else the catalog's."""
        if not is_projected(table):
            return self._partitions(table)
        self._projected = True  # its partitions may depend on the time of the query (NOW in a date range)
        injected = injected_values(where, alias, {name for name, _ in table.partition_keys})
        return projected_partitions(table, injected)

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
        for objects in listed.values():
            self._hand(objects)
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
        self._hand(objects)
        missing = [o for o in objects if (o.uri, o.etag) not in self._footers]
        if missing and self._read_tail is not None:
            read = [(o, self._local_footer(o)) for o in missing]
            self._footers.update({(o.uri, o.etag): meta for o, meta in read if meta is not None})
            missing = [o for o, meta in read if meta is None]
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

    def _local_footer(self, obj: _S3Object) -> _FileMeta | None:
        """A file's footer read from the endpoint's store in this process (ADR 0043): no request, no DuckDB. None when
        the object there is not the one listed (another ETag, or gone), or its end does not read as a footer."""
        assert self._read_tail is not None
        bucket, key = split_s3_uri(obj.uri)
        tail = self._read_tail(bucket, key, _FOOTER_READ)
        if tail is None or tail.etag != obj.etag:
            return None
        data = tail.data
        if len(data) >= 8 and data[-4:] == b"PAR1":
            needed = int.from_bytes(data[-8:-4], "little") + 8
            if needed > len(data) and needed <= tail.size:
                tail = self._read_tail(bucket, key, needed)
                if tail is None or tail.etag != obj.etag:
                    return None
                data = tail.data
        return _footer_meta(data)

    def _list(self, location: str) -> list[_S3Object]:
        """The objects under `location`, from the engine's listing cache while nothing under it changed (the list
        is shared: never modify it)."""
        bucket, prefix = split_s3_uri(location)
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        cached = self._listings.get((bucket, prefix))
        if cached is None:
            cached = self._listings[(bucket, prefix)] = self._list_objects(bucket, prefix)
        self._listed.append(((bucket, prefix), cached))
        return cached

    def _list_objects(self, bucket: str, prefix: str) -> list[_S3Object]:
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

    def _exists(self, database: str, name: str) -> bool:
        """Whether the catalog holds the table, from what the engine keeps (a table it found, or found missing, until
        a change names it)."""
        if (database, name) in self._tables:
            return True
        if (database, name) in self._absent:
            return False
        try:
            raw = self._glue.get_table(DatabaseName=database, Name=name)["Table"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "EntityNotFoundException":
                raise
            if not self._database_exists(database):
                raise _QueryError(f"SCHEMA_NOT_FOUND: Schema '{database}' does not exist") from exc
            self._absent.add((database, name))
            return False
        self._tables[(database, name)] = _to_table(database, dict(raw))
        return True

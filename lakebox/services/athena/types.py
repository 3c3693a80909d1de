"""Type names across Glue (Hive), Athena (Trino) and DuckDB, and the casts between them."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any, Final

import duckdb
from sqlglot import exp
from sqlglot.errors import ParseError

from lakebox.services.athena.model import _literal, _QueryError, _quote

if TYPE_CHECKING:
    pass

_T = exp.DataType.Type


def _describe(cursor: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[str, str]]:
    return [(str(row[0]), str(row[1])) for row in cursor.execute(f"DESCRIBE {sql}").fetchall()]


_ZONED: Final = "TIMESTAMP WITH TIME ZONE"


def _normalized_select(sql: str, cursor: duckdb.DuckDBPyConnection, *, keep_zoned: bool = False) -> str:
    """Wrap a query so its output types are the Athena ones (BIGINT sums, TIMESTAMP without zone, …).

    With `keep_zoned`, a ``timestamp with time zone`` stays one (a SELECT's result; a table cannot store it).
    """
    return _athena_shaped(sql, _describe(cursor, sql), keep_zoned=keep_zoned)


def _athena_shaped(sql: str, shape: list[tuple[str, str]], *, keep_zoned: bool = False) -> str:
    """`_normalized_select` of a query whose (name, DuckDB type) columns are known already."""
    exprs = []
    changed = False
    for name, kind in shape:
        if keep_zoned and kind.upper() == _ZONED:
            exprs.append(_quote(name))
            continue
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


# ------------------------------------------------------------------ types


@functools.lru_cache(maxsize=1024)
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


@functools.lru_cache(maxsize=1024)
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
    if duck_type.upper() == _ZONED:
        return "timestamp with time zone"
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


def _cast_literal(value: str | None, glue_type: str) -> str:
    duck = glue_to_duckdb(glue_type)
    return f"CAST({'NULL' if value is None else _literal(value)} AS {duck})"

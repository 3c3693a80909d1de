"""DDL and metadata statements: CREATE VIEW / EXTERNAL TABLE / DATABASE, DROP, ALTER TABLE partitions,
MSCK REPAIR TABLE, SHOW, DESCRIBE and EXPLAIN."""

from __future__ import annotations

import base64
import json
import re
from typing import TYPE_CHECKING, Any, Final, cast

import sqlglot
from sqlglot import exp

from datalake.catalog_backup import table_input_of
from lakebox.services.athena.catalog import (
    _name_key,
    _partition_input,
    _partition_location,
    _spec_path,
    _spec_text,
    _table_input,
    _table_key,
    _unescape,
    _unquote_name,
)
from lakebox.services.athena.model import (
    _VIEW_PREFIX,
    _VIEW_SUFFIX,
    CATALOG,
    _Context,
    _first_line,
    _Outcome,
    _Partition,
    _QueryError,
    _Table,
)
from lakebox.services.athena.scan import _name_outputs
from lakebox.services.athena.types import _athena_type_of_glue, _describe, _duckdb_to_glue, _hive_type
from lakebox.services.athena.write import WriteMixin
from lakebox.services.crawler import PARQUET_FORMAT

if TYPE_CHECKING:
    from mypy_boto3_glue.type_defs import TableInputTypeDef


_ALTER: Final = re.compile(r"ALTER\s+TABLE\s+(?P<table>[\w.`\"]+)\s+(?P<rest>.*)", re.IGNORECASE | re.DOTALL)
_SPEC: Final = r"PARTITION\s*\((?P<spec>(?:[^()']|'(?:[^']|'')*')*)\)"
_ADD_PARTITION: Final = re.compile(
    r"\s*PARTITION\s*\(((?:[^()']|'(?:[^']|'')*')*)\)\s*(?:LOCATION\s*'((?:[^']|'')*)')?\s*", re.IGNORECASE
)
_DROP_PARTITION: Final = re.compile(r"\s*PARTITION\s*\(((?:[^()']|'(?:[^']|'')*')*)\)\s*", re.IGNORECASE)
_SET_TBLPROPERTIES: Final = re.compile(r"SET\s+TBLPROPERTIES\s*\((?P<pairs>.*)\)", re.IGNORECASE | re.DOTALL)
_PROPERTY: Final = re.compile(r"\s*'((?:[^']|'')*)'\s*=\s*'((?:[^']|'')*)'\s*(?:,|$)")
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


class DdlMixin(WriteMixin):
    """DDL and metadata statements."""

    # ---------------------------------------------------------------- CREATE

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

    def _create_view(self, ast: exp.Create, ctx: _Context) -> _Outcome:
        target = ast.this
        if not isinstance(target, exp.Table) or not isinstance(ast.expression, exp.Query):
            raise _QueryError("NOT_SUPPORTED: CREATE VIEW form")
        database, name = _table_key(target, ctx.database)
        query = ast.expression
        _name_outputs(query)
        original = query.sql(dialect="athena")
        prepared = self._prepare(query.copy(), ctx)
        with self._others_may_run():  # binding reads the files' footers, on the statement's own cursor
            shape = _describe(ctx.cursor, prepared.sql)
        columns = [(n.lower(), _duckdb_to_glue(t)) for n, t in shape]
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
            raw: dict[str, Any] = dict(table.raw)  # as the catalog holds it: the kept entry is forgotten on a change
            raw["StorageDescriptor"] = {**raw.get("StorageDescriptor", {}), "Location": location["location"]}
            table_input = cast("TableInputTypeDef", table_input_of(raw))
            self._glue.update_table(DatabaseName=table.database, TableInput=table_input)
            return _Outcome("DDL", "ALTER_TABLE_SET_LOCATION")
        properties = _SET_TBLPROPERTIES.fullmatch(rest)
        if properties:
            return self._set_table_properties(table, properties["pairs"])
        raise _QueryError(f"NOT_SUPPORTED: ALTER TABLE {_first_line(rest)}")

    def _set_table_properties(self, table: _Table, pairs: str) -> _Outcome:
        """ALTER TABLE ... SET TBLPROPERTIES ('key'='value', ...): the table's parameters in the catalog."""
        found: dict[str, str] = {}
        position = 0
        while position < len(pairs):
            match = _PROPERTY.match(pairs, position)
            if not match or match.end() == position:
                raise _QueryError(f"SYNTAX_ERROR: cannot read TBLPROPERTIES ({_first_line(pairs)})")
            found[match[1].replace("''", "'")] = match[2].replace("''", "'")
            position = match.end()
        raw: dict[str, Any] = dict(table.raw)
        raw["Parameters"] = {**(raw.get("Parameters") or {}), **found}
        table_input = cast("TableInputTypeDef", table_input_of(raw))
        self._glue.update_table(DatabaseName=table.database, TableInput=table_input)
        return _Outcome("DDL", "ALTER_TABLE_SET_TBLPROPERTIES")

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

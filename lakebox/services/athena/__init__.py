"""Athena on DuckDB: the query API (engine), reading (scan), CTAS and INSERT (write), DDL (ddl), type names (types)."""

from __future__ import annotations

from lakebox.services.athena.engine import AthenaEngine
from lakebox.services.athena.model import QueryFailedError, QueryHistory, split_s3_uri
from lakebox.services.athena.types import glue_to_duckdb
from lakebox.services.athena_result import QueryResult

__all__ = ["AthenaEngine", "QueryFailedError", "QueryHistory", "QueryResult", "glue_to_duckdb", "split_s3_uri"]

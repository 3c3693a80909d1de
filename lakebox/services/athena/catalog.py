"""Glue catalog entries as the engine reads and writes them: tables, views, partition specs and locations."""

from __future__ import annotations

import base64
import json
import re
from typing import TYPE_CHECKING, Any, Final

from sqlglot import exp

from lakebox.services.athena.model import _VIEW_PREFIX, _VIEW_SUFFIX, CATALOG, _Partition, _QueryError, _Table
from lakebox.services.crawler import PARQUET_FORMAT

if TYPE_CHECKING:
    from mypy_boto3_glue.type_defs import PartitionInputTypeDef, TableInputTypeDef


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
        raw=raw,
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

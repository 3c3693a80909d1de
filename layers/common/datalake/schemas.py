"""Catalog schemas from the contracts: Hive column types, the declared raw table, and schema-evolution verdicts.

The raw zone holds canonical JSON lines (ADR 0006), so the raw catalog table is declared from the contract, not
inferred by the crawler (which reads timestamps as strings and money as doubles): contract types in Hive terms,
read by the Hive JSON SerDe with the `timestamp.formats` canonical timestamps need (ADR 0016). A contract's next
version is compared with what a table declares now: new optional fields are additive (appended to the table,
older partitions read NULL); a type change, a removed field or a field newly required is breaking, and the
pipeline refuses it before anything is written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal
from enum import Enum
from types import NoneType, UnionType
from typing import Annotated, Any, Final, Literal, Union, get_args, get_origin

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, NaiveDatetime, computed_field
from pydantic.fields import FieldInfo

from datalake.contracts import Dataset

Column = tuple[str, str]
"""A catalog column: (name, Hive type)."""

RAW_TABLE_PREFIX: Final = "raw_"
"""The raw tables' prefix (the raw crawler's `TablePrefix` in template.yaml; a test keeps them equal)."""
RAW_PARTITION_KEYS: Final[tuple[Column, ...]] = (("year", "string"), ("month", "string"), ("day", "string"))
"""The raw zone's `year=/month=/day=` folders, typed as the crawler types partition folders."""
LINEAGE_COLUMNS: Final[tuple[Column, ...]] = (
    ("_source_key", "string"),
    ("_source_version", "string"),
    ("_line", "bigint"),
    ("_ingested_at", "timestamp"),
    ("_original_key", "string"),
)
"""The lineage fields ingestion appends to every raw record (`_original_key`: the kept original, ADR 0018; the
Spark job reads the others, so processed Parquet keeps its columns)."""
JSON_SERDE: Final = "org.apache.hive.hcatalog.data.JsonSerDe"
"""The Hive JSON SerDe: deterministic on Athena (the OpenX SerDe's results may not be), `timestamp.formats` aware."""
TIMESTAMP_FORMATS: Final = "yyyy-MM-dd'T'HH:mm:ss.SSSSSSZZ,yyyy-MM-dd'T'HH:mm:ssZZ"
"""Joda patterns of the raw timestamps: RFC 3339 with seconds, up to six fraction digits, `Z` or an offset
(`validation.CANONICAL_TIME`). Without them the SerDe reads only `yyyy-MM-dd HH:mm:ss` and zone-less ISO text."""
TEXT_INPUT: Final = "org.apache.hadoop.mapred.TextInputFormat"
TEXT_OUTPUT: Final = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"
VERSION_PARAMETER: Final = "contract_version"
"""Table parameter: the contract version the table's columns were declared from."""
REQUIRED_PARAMETER: Final = "contract_required"
"""Table parameter: the contract's required fields at that version, comma-separated."""
UNRECORDED: Final = "unrecorded"
"""The version named for a table that predates the version parameter."""


# ------------------------------------------------------------------------------------------------- types


def hive_type(annotation: Any, metadata: Sequence[Any] = ()) -> str:
    """The Hive (Glue) type of a contract field's annotation, as Spark names the same type (`simpleString`).

    `str`, `Literal` of strings and string enums → string; `bool` → boolean; `int` → int when a bound keeps it
    within 32 bits, else bigint; `float` → double; `Decimal` → decimal(max_digits,decimal_places); datetimes →
    timestamp; `date` → date; a nested model → struct<…>; a list, tuple or set → array<…>; `dict[str, X]` →
    map<string,X>; `X | None` → X.

    Raises
    ------
    TypeError
        For a type no catalog column can hold (a union of several types, a Decimal without precision).
    """
    annotation = _strip_none(annotation)
    if get_origin(annotation) is Annotated:
        inner, *extra = get_args(annotation)
        flat = [m for item in extra for m in (item.metadata if isinstance(item, FieldInfo) else [item])]
        return hive_type(inner, (*metadata, *flat))
    if get_origin(annotation) is Literal:
        kinds = {type(v) for v in get_args(annotation)}
        if len(kinds) != 1:
            raise TypeError(f"a Literal must have values of one type: {annotation!r}")
        return hive_type(kinds.pop(), metadata)
    if get_origin(annotation) in (list, tuple, set, frozenset):
        items = [a for a in get_args(annotation) if a is not Ellipsis]
        if len({hive_type(a) for a in items}) != 1:
            raise TypeError(f"a sequence must hold one type to have a Hive type: {annotation!r}")
        return f"array<{hive_type(items[0])}>"
    if get_origin(annotation) in (dict, Mapping):
        key, value = get_args(annotation)
        if key is not str:
            raise TypeError(f"a mapping must be keyed by text to have a Hive type: {annotation!r}")
        return f"map<string,{hive_type(value)}>"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        kinds = {type(m.value) for m in annotation}
        if len(kinds) != 1:
            raise TypeError(f"an enum must have values of one type: {annotation!r}")
        return hive_type(kinds.pop(), metadata)
    if annotation is bool:
        return "boolean"
    if annotation is int:
        bound = max(
            (abs(getattr(m, a)) for m in metadata for a in ("le", "lt", "ge", "gt") if getattr(m, a, None) is not None),
            default=None,
        )
        return "int" if bound is not None and bound < 2**31 - 1 else "bigint"
    if annotation is float:
        return "double"
    if annotation is Decimal:
        digits = next((m.max_digits for m in metadata if getattr(m, "max_digits", None)), None)
        places = next((m.decimal_places for m in metadata if getattr(m, "decimal_places", None) is not None), None)
        if digits is None or places is None:
            raise TypeError("a Decimal field needs max_digits and decimal_places to have a Hive type")
        return f"decimal({digits},{places})"
    if annotation in (AwareDatetime, NaiveDatetime) or (
        isinstance(annotation, type) and issubclass(annotation, dt.datetime)
    ):
        return "timestamp"
    if isinstance(annotation, type) and issubclass(annotation, dt.date):
        return "date"
    if annotation is str:
        return "string"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        fields = ",".join(f"{name}:{_field_type(info)}" for name, info in annotation.model_fields.items())
        return f"struct<{fields}>"
    raise TypeError(f"no Hive type for {annotation!r}")


def _strip_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, UnionType):
        members = [a for a in get_args(annotation) if a is not NoneType]
        if len(members) != 1:
            raise TypeError(f"unions other than `X | None` have no Hive type: {annotation!r}")
        return members[0]
    return annotation


def _field_type(info: FieldInfo) -> str:
    return hive_type(info.annotation, tuple(info.metadata))


def contract_columns(dataset: Dataset) -> list[Column]:
    """The contract's fields as catalog columns, in the model's order."""
    return [(name, _field_type(info)) for name, info in dataset.contract.model_fields.items()]


def required_fields(dataset: Dataset) -> frozenset[str]:
    """The contract fields every record must have a value for (required and not `X | None`)."""
    return frozenset(
        name
        for name, info in dataset.contract.model_fields.items()
        if info.is_required() and _strip_none(info.annotation) is info.annotation
    )


def raw_columns(dataset: Dataset) -> list[Column]:
    """The raw table's columns: the contract's fields, then the lineage ingestion appends."""
    return [*contract_columns(dataset), *LINEAGE_COLUMNS]


def version_parameters(dataset: Dataset) -> dict[str, str]:
    """The table parameters that record which contract version a table was declared from."""
    return {VERSION_PARAMETER: dataset.version, REQUIRED_PARAMETER: ",".join(sorted(required_fields(dataset)))}


def raw_table_input(dataset: Dataset, location: str, columns: Sequence[Column] | None = None) -> dict[str, Any]:
    """The Glue `TableInput` of a dataset's raw table, declared from its contract.

    Parameters
    ----------
    dataset
        The dataset (its contract gives the columns, its version the parameters).
    location
        The raw folder of the dataset, `s3://<raw>/<dataset>/`.
    columns
        The columns to declare (an evolved table keeps its order); the contract's when None.
    """
    parameters = {
        "classification": "json",
        "compressionType": "gzip",
        "typeOfData": "file",
        "EXTERNAL": "TRUE",
        **version_parameters(dataset),
    }
    return {
        "Name": f"{RAW_TABLE_PREFIX}{dataset.name}",
        "TableType": "EXTERNAL_TABLE",
        "Parameters": parameters,
        "PartitionKeys": [{"Name": n, "Type": t} for n, t in RAW_PARTITION_KEYS],
        "StorageDescriptor": {
            "Columns": [{"Name": n, "Type": t} for n, t in (columns or raw_columns(dataset))],
            "Location": location,
            "InputFormat": TEXT_INPUT,
            "OutputFormat": TEXT_OUTPUT,
            "Compressed": True,
            "NumberOfBuckets": -1,
            "SerdeInfo": {
                "SerializationLibrary": JSON_SERDE,
                "Parameters": {"serialization.format": "1", "timestamp.formats": TIMESTAMP_FORMATS},
            },
            "Parameters": dict(parameters),
            "StoredAsSubDirectories": False,
        },
    }


# --------------------------------------------------------------------------------------------- evolution


class ColumnChange(BaseModel):
    """One difference between a table's columns and a contract version's."""

    model_config = ConfigDict(frozen=True)

    column: str
    kind: Literal["added", "removed", "type_changed", "now_required"]
    before: str | None = None
    after: str | None = None
    breaking: bool

    def describe(self, previous: str, version: str) -> str:
        """The change in words, naming both versions."""
        if self.kind == "removed":
            return f"{self.column} ({self.before}) is in {previous} but not in {version}"
        if self.kind == "type_changed":
            return f"{self.column} is {self.before} in {previous} but {self.after} in {version}"
        if self.kind == "now_required":
            return f"{self.column} is optional in {previous} but required in {version}"
        if self.breaking:
            return f"{self.column} ({self.after}) is new and required in {version}: records of {previous} lack it"
        return f"{self.column} ({self.after}) is new in {version}"


class SchemaChange(BaseModel):
    """A contract version against what a catalog table declares: additive, breaking, or nothing."""

    model_config = ConfigDict(frozen=True)

    table: str
    previous_version: str
    version: str
    changes: list[ColumnChange] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def breaking(self) -> bool:
        """Whether any change is breaking (the pipeline then refuses the dataset)."""
        return any(c.breaking for c in self.changes)

    @property
    def added(self) -> list[str]:
        """The columns an additive change appends."""
        return [c.column for c in self.changes if c.kind == "added" and not c.breaking]

    def describe(self) -> str:
        """One line naming the table, both versions and every breaking field."""
        reasons = "; ".join(c.describe(self.previous_version, self.version) for c in self.changes if c.breaking)
        return (
            f"breaking schema change in {self.table} from contract {self.previous_version} to {self.version}: "
            f"{reasons} (nothing was processed; see docs/runbook.md, Schema changes)"
        )


def compare(
    table: str,
    previous: Sequence[Column],
    parameters: Mapping[str, str],
    current: Sequence[Column],
    dataset: Dataset,
) -> SchemaChange:
    """Compare a table's columns (and its version parameters) with the columns of the dataset's contract version.

    Parameters
    ----------
    table
        The table's name, for the verdict.
    previous
        The columns the table declares now.
    parameters
        The table's parameters (`contract_version`, `contract_required` when it was declared from a contract).
    current
        The columns the dataset's contract version gives the table.
    dataset
        The dataset at its current version.

    Returns
    -------
    SchemaChange
        Every difference: new optional columns are additive; a removed column, a changed type, a new required
        field or an optional field made required is breaking.
    """
    before = {n.lower(): t for n, t in previous}
    after = {n.lower(): t for n, t in current}
    required = required_fields(dataset)
    recorded = parameters.get(REQUIRED_PARAMETER)
    required_before = frozenset(filter(None, recorded.split(","))) if recorded is not None else None
    changes: list[ColumnChange] = []
    for name, kind in before.items():
        if name not in after:
            changes.append(ColumnChange(column=name, kind="removed", before=kind, breaking=True))
        elif _normal(after[name]) != _normal(kind):
            changes.append(
                ColumnChange(column=name, kind="type_changed", before=kind, after=after[name], breaking=True)
            )
        elif name in required and required_before is not None and name not in required_before:
            changes.append(ColumnChange(column=name, kind="now_required", before=kind, after=kind, breaking=True))
    for name, kind in after.items():
        if name not in before:
            changes.append(ColumnChange(column=name, kind="added", after=kind, breaking=name in required))
    return SchemaChange(
        table=table,
        previous_version=parameters.get(VERSION_PARAMETER, UNRECORDED),
        version=dataset.version,
        changes=changes,
    )


def evolved(previous: Sequence[Column], current: Sequence[Column]) -> list[Column]:
    """The columns of a table after an additive change: its columns in their order, the new ones appended.

    Athena checks a partition's columns against the table's in order, so a column is never inserted in the middle.
    """
    known = {n.lower() for n, _ in previous}
    return [*previous, *((n, t) for n, t in current if n.lower() not in known)]


def _normal(kind: str) -> str:
    return kind.replace(" ", "").lower()


def table_columns(table: Mapping[str, Any]) -> list[Column]:
    """A Glue table's columns as (name, type)."""
    return [(c["Name"], c.get("Type", "string")) for c in table.get("StorageDescriptor", {}).get("Columns", [])]


# --------------------------------------------------------------------------------------------- catalog

_PARTITION_BATCH: Final = 100


def get_table(glue: Any, database: str, name: str) -> dict[str, Any] | None:
    """The Glue table, or None when the database has none of that name."""
    try:
        table: dict[str, Any] = glue.get_table(DatabaseName=database, Name=name)["Table"]
    except glue.exceptions.EntityNotFoundException:
        return None
    return table


def declare_raw_table(glue: Any, database: str, location: str, dataset: Dataset) -> SchemaChange:
    """Create or evolve a dataset's raw table from its contract; a breaking change leaves the table as it is.

    Parameters
    ----------
    glue
        A boto3 Glue client.
    database
        The lake's database.
    location
        The dataset's raw folder, `s3://<raw>/<dataset>/`.
    dataset
        The dataset at the contract version being processed.

    Returns
    -------
    SchemaChange
        What the contract version changes against the table (no changes for a new table). A table the crawler
        inferred (no version parameter) is adopted: its columns, and those of its partitions, become the
        contract's, since the JSON it was inferred from holds exactly the contract's canonical values.
    """
    name = f"{RAW_TABLE_PREFIX}{dataset.name}"
    current = raw_columns(dataset)
    existing = get_table(glue, database, name)
    if existing is None:
        glue.create_table(DatabaseName=database, TableInput=raw_table_input(dataset, location))
        return SchemaChange(table=name, previous_version=dataset.version, version=dataset.version)
    parameters = dict(existing.get("Parameters") or {})
    if VERSION_PARAMETER not in parameters:
        table_input = raw_table_input(dataset, location)
        glue.update_table(DatabaseName=database, TableInput=table_input)
        _retype_partitions(glue, database, name, table_input["StorageDescriptor"])
        return SchemaChange(table=name, previous_version=UNRECORDED, version=dataset.version)
    change = compare(name, table_columns(existing), parameters, current, dataset)
    if change.breaking:
        return change
    if change.changes or parameters.get(VERSION_PARAMETER) != dataset.version:
        columns = evolved(table_columns(existing), current)
        glue.update_table(DatabaseName=database, TableInput=raw_table_input(dataset, location, columns))
    return change


def _retype_partitions(glue: Any, database: str, table: str, storage: Mapping[str, Any]) -> None:
    """Give every partition of `table` the table's storage (columns, SerDe), each keeping its own location."""
    entries: list[dict[str, Any]] = []
    for page in glue.get_paginator("get_partitions").paginate(DatabaseName=database, TableName=table):
        for partition in page.get("Partitions", []):
            location = partition.get("StorageDescriptor", {}).get("Location")
            entries.append(
                {
                    "PartitionValueList": partition["Values"],
                    "PartitionInput": {
                        "Values": partition["Values"],
                        "StorageDescriptor": {**storage, "Location": location},
                        "Parameters": dict(partition.get("Parameters") or {}),
                    },
                }
            )
    for start in range(0, len(entries), _PARTITION_BATCH):
        glue.batch_update_partition(
            DatabaseName=database, TableName=table, Entries=entries[start : start + _PARTITION_BATCH]
        )

"""The lake's zones as Lake Formation sees them: which zone a catalog table is in, and its LF-Tag."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from datalake.aws import AwsClients, aws_error, error_code
from datalake.exceptions import TerminalError
from datalake.settings import Settings

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

Zone = Literal["raw", "processed", "curated"]
ZONES: Final[tuple[Zone, ...]] = ("raw", "processed", "curated")
ZONE_TAG_KEY: Final = "zone"
VIEW_ZONE: Final[Zone] = "processed"
"""The zone of a view: the lake's views (sql/views/) read the processed zone's reference data."""


def zone_buckets(settings: Settings) -> dict[str, Zone]:
    """Bucket name -> zone, from the raw, processed and curated bucket settings."""
    pairs: dict[str, Zone] = {}
    for zone in ZONES:
        pairs[settings.require(f"{zone}_bucket")] = zone
    return pairs


def zone_of_table(table: Mapping[str, Any], buckets: Mapping[str, Zone]) -> Zone | None:
    """The zone of a Glue table: the zone whose bucket holds its location; views take `VIEW_ZONE`.

    Parameters
    ----------
    table
        The table as `glue.get_table` returns it (``Table``).
    buckets
        Bucket name -> zone (`zone_buckets`).

    Returns
    -------
    The zone, or None for a table outside the lake's zone buckets (left untagged: only its creator reads it).
    """
    if table.get("TableType") == "VIRTUAL_VIEW":
        return VIEW_ZONE
    location = str((table.get("StorageDescriptor") or {}).get("Location") or "")
    parts = urlsplit(location)
    if parts.scheme not in ("s3", "s3a", "s3n"):
        return None
    return buckets.get(parts.netloc)


class CatalogChange(BaseModel):
    """The detail of a "Glue Data Catalog Database State Change" event."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    database_name: str = Field(alias="databaseName")
    type_of_change: str = Field(alias="typeOfChange")
    changed_tables: list[str] = Field(default_factory=list, alias="changedTables")


class TableTag(BaseModel):
    """What tagging did to one table: its zone, or why it has none."""

    table: str
    zone: Zone | None = None
    outcome: Literal["tagged", "outside the zones", "gone"]


def tag_tables(clients: AwsClients, settings: Settings, database: str, names: Sequence[str]) -> list[TableTag]:
    """Give each named table of `database` the LF-Tag ``zone=<its zone>``.

    Parameters
    ----------
    clients
        AWS clients (Glue to read the tables, Lake Formation to tag them).
    settings
        Needs the raw, processed and curated bucket names.
    database
        The catalog database of the tables.
    names
        The tables to tag (an event's ``changedTables``).

    Raises
    ------
    TransientError
        When Glue or Lake Formation throttles or fails transiently (the invocation is retried).
    TerminalError
        When Lake Formation refuses the tag (missing ASSOCIATE permission, unknown tag value).
    """
    buckets = zone_buckets(settings)
    glue, lakeformation = clients.glue, clients.lakeformation
    results = []
    for name in names:
        try:
            table = glue.get_table(DatabaseName=database, Name=name)["Table"]
        except ClientError as exc:
            if error_code(exc) == "EntityNotFoundException":
                results.append(TableTag(table=name, outcome="gone"))
                continue
            raise aws_error(exc, f"reading {database}.{name}") from exc
        zone = zone_of_table(dict(table), buckets)
        if zone is None:
            logger.warning("table %s.%s is outside the lake's zone buckets; left untagged", database, name)
            results.append(TableTag(table=name, outcome="outside the zones"))
            continue
        try:
            response = lakeformation.add_lf_tags_to_resource(
                Resource={"Table": {"DatabaseName": database, "Name": name}},
                LFTags=[{"TagKey": ZONE_TAG_KEY, "TagValues": [zone]}],
            )
        except ClientError as exc:
            raise aws_error(exc, f"tagging {database}.{name}") from exc
        failures = response.get("Failures") or []
        if failures:
            raise TerminalError(f"Lake Formation refused zone={zone} on {database}.{name}: {failures}")
        logger.info("tagged %s.%s zone=%s", database, name, zone)
        results.append(TableTag(table=name, zone=zone, outcome="tagged"))
    return results

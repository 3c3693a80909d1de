"""Runtime configuration, read once from `DL_*` environment variables."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from datalake.exceptions import ConfigurationError

GIB = 1024**3
MIB = 1024**2


ENV_PREFIX = "DL_"


class Settings(BaseModel):
    """Every setting of the data lake. Names are the environment variables without the `DL_` prefix.

    `Settings()` reads each field from `DL_<NAME>` (any case) and validates it as pydantic reads text (`"5"` is 5);
    values passed as arguments win over the environment. A plain model rather than pydantic-settings, whose import
    cost every function's cold start about 50 ms for the one source read here.

    Resource names are optional here because each function needs only some of them; `require` gives a
    clear error when a driver asks for one its environment does not set.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, **values: Any) -> None:
        environment = {name.upper(): value for name, value in os.environ.items()}
        found = {
            field: environment[ENV_PREFIX + field.upper()]
            for field in type(self).model_fields
            if ENV_PREFIX + field.upper() in environment
        }
        super().__init__(**{**found, **values})

    environment: str = "dev"
    landing_bucket: str | None = None
    raw_bucket: str | None = None
    processed_bucket: str | None = None
    curated_bucket: str | None = None
    artifacts_bucket: str | None = None
    idempotency_table: str | None = None
    manifests_table: str | None = None
    runs_table: str | None = None
    watermarks_table: str | None = None
    event_bus_name: str = "default"
    event_source: str = "datalake.ingest"
    glue_database: str = "data_lake_db"
    stream_prefix: str = ""
    """What a stream's name starts with before its dataset's name: streams are named `<prefix><dataset>`."""
    source_api_base_url: str | None = Field(default=None, pattern=r"^https?://[^/?#]+")
    source_api_secret_name: str | None = None

    max_decompressed_bytes: int = Field(default=20 * GIB, gt=0)
    max_compression_ratio: float = Field(default=250.0, gt=1)
    ratio_check_after_bytes: int = Field(default=64 * MIB, ge=0)
    max_line_bytes: int = Field(default=1 * MIB, gt=0)
    gzip_level: int = Field(default=1, ge=0, le=3)
    idempotency_ttl_seconds: int = Field(default=7 * 24 * 3600, gt=0)
    source_api_page_size: int = Field(default=500, gt=0, le=10_000)
    source_api_timeout_seconds: float = Field(default=10.0, gt=0)
    freshness_max_age_hours: float = Field(default=48.0, gt=0)
    originals_retention_days: int = Field(default=0, ge=0)
    """Object Lock retention given to each original kept in the raw zone; 0 (the default) sets none."""
    originals_retention_mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"

    def require(self, name: str) -> str:
        """Return the named resource setting, or raise `ConfigurationError` naming its variable."""
        value = getattr(self, name)
        if not value:
            raise ConfigurationError(f"DL_{name.upper()} is not set")
        return str(value)

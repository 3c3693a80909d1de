"""lakebox: the data lake's SAM stack running on one machine (moto, in-process Lambda, ASL, PySpark, DuckDB)."""

from __future__ import annotations

__version__ = "0.1.0"

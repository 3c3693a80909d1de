"""Shared engine of the data lake: settings, contracts, validation, landing and quarantine."""

from __future__ import annotations

__version__ = "0.1.0"

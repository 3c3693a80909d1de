"""The pipeline's own CloudWatch metrics: what the alarms of template.yaml read besides AWS's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

FRESHNESS_METRIC: Final = "DataFreshnessSeconds"
HELD_TABLES_METRIC: Final = "CuratedTablesHeld"
"""Curated tables a run left behind because the gate holds a dataset they read (ADR 0017)."""


def freshness_seconds(report: Mapping[str, Any]) -> dict[str, float]:
    """Dataset -> age in seconds of its newest processed event, from a quality report (passed or failed).

    Datasets without a freshness rule, or with no processed data yet, have no entry: their freshness is unknown,
    and the alarm reads the missing datapoint as such.
    """
    ages: dict[str, float] = {}
    for dataset in report.get("datasets", []):
        for rule in dataset.get("rules", []):
            observed = rule.get("observed") or {}
            if rule.get("rule") == "freshness" and observed.get("age_hours") is not None:
                ages[str(dataset["dataset"])] = float(observed["age_hours"]) * 3600.0
    return ages

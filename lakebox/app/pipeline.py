"""State machine executions on the local stack, and what `lakebox run` prints of the curated zone."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lakebox.box import Lakebox
    from lakebox.sfn import Execution

CURATED_HEADLINES = {
    "daily_sales_by_region": (
        "SELECT sale_date, region, currency, transactions, units, revenue FROM daily_sales_by_region "
        "WHERE sale_date = (SELECT max(sale_date) FROM daily_sales_by_region) ORDER BY revenue DESC"
    ),
    "customer_aggregates": (
        "SELECT customer_id, segment, region, transactions, lifetime_revenue, last_purchase_date "
        "FROM customer_aggregates ORDER BY lifetime_revenue DESC LIMIT 5"
    ),
    "product_performance": (
        "SELECT product_id, product_name, category, sum(units) AS units, sum(revenue) AS revenue "
        "FROM product_performance GROUP BY 1, 2, 3 ORDER BY revenue DESC LIMIT 5"
    ),
}


def state_machine_id(box: Lakebox, name: str) -> str:
    """The logical id of a state machine named by logical id, physical name or ARN (see `Lakebox.state_machine_id`)."""
    return box.state_machine_id(name)


def execute(box: Lakebox, name: str, input_: Any = None, *, execution_name: str | None = None) -> Execution:
    """Run one of the template's state machines to completion on the box (see `Lakebox.execute`)."""
    return box.execute(name, input_, execution_name=execution_name)


FORECAST_ROWS = (
    "SELECT forecast_date, region, currency, yhat, yhat_lower, yhat_upper, model_version FROM sales_forecast "
    "ORDER BY forecast_date, region"
)


def forecast_rows(box: Lakebox, summary: Any, workgroup: str | None = None) -> tuple[list[str], list[list[Any]]] | None:
    """The forecast a run published (None when its forecast was skipped or failed)."""
    forecast = summary.get("forecast") if isinstance(summary, dict) else None
    if not isinstance(forecast, dict) or forecast.get("status") != "SUCCEEDED":
        return None
    result = box.athena.query(FORECAST_ROWS, workgroup=workgroup or str(box.stack.ref("AnalyticsWorkGroup")))
    return list(result.columns), [list(r) for r in result.rows]


def headline_rows(box: Lakebox, workgroup: str | None = None) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """The first rows of each curated table, for the end of `lakebox run`."""
    engine = box.athena
    workgroup = workgroup or str(box.stack.ref("AnalyticsWorkGroup"))
    found = {}
    for table, sql in CURATED_HEADLINES.items():
        result = engine.query(sql, workgroup=workgroup)
        found[table] = (list(result.columns), [list(r) for r in result.rows])
    return found

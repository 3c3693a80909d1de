"""State machine executions on the local stack, and what `lakebox run` prints of the curated zone."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from lakebox.errors import LakeboxError

if TYPE_CHECKING:
    from lakebox.box import Lakebox
    from lakebox.cfn.stack import Stack
    from lakebox.sfn import Execution

ENGINE_VARIABLE = "$.run.engine"
"""Where the pipeline state machine holds the run's Spark engine (the input's `engine`, defaulted)."""

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


def _states(states: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every state of a definition's `States`, those inside Parallel branches and Map processors included."""
    for state in states.values():
        yield state
        for branch in state.get("Branches", []):
            yield from _states(branch.get("States", {}))
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                yield from _states(state[key].get("States", {}))


def _rule_values(rule: dict[str, Any], variable: str) -> Iterator[str]:
    if rule.get("Variable") == variable and isinstance(rule.get("StringEquals"), str):
        yield rule["StringEquals"]
    for key in ("And", "Or"):
        for inner in rule.get(key, []):
            yield from _rule_values(inner, variable)
    if isinstance(rule.get("Not"), dict):
        yield from _rule_values(rule["Not"], variable)


def choice_values(definition: dict[str, Any], variable: str) -> list[str]:
    """The strings the definition's Choice states compare `variable` to (`StringEquals`), in order, once each."""
    found = [
        value
        for state in _states(definition.get("States", {}))
        if state.get("Type") == "Choice"
        for rule in state.get("Choices", [])
        for value in _rule_values(rule, variable)
    ]
    return list(dict.fromkeys(found))


def engine_names(stack: Stack, state_machine: str = "PipelineStateMachine") -> list[str]:
    """The Spark engines the pipeline runs on: the values its Choose Engine state routes (`glue`, `emr-serverless`).

    Read from the definition as written (its placeholders need no substitution for this), so no resource is resolved.
    """
    props = stack.resources[state_machine].get("Properties", {})
    if "DefinitionUri" in props:
        definition = json.loads((stack.root / str(props["DefinitionUri"])).read_text(encoding="utf-8"))
    else:
        definition = props.get("Definition", {})
    return choice_values(definition, ENGINE_VARIABLE)


FORECAST_ROWS = (
    "SELECT forecast_date, region, currency, yhat, yhat_lower, yhat_upper, model_version FROM sales_forecast "
    "ORDER BY forecast_date, region"
)


def forecast_rows(box: Lakebox, summary: Any, workgroup: str | None = None) -> tuple[list[str], list[list[Any]]] | None:
    """The forecast a run published, or kept because its input did not change (None when skipped or failed)."""
    forecast = summary.get("forecast") if isinstance(summary, dict) else None
    if not isinstance(forecast, dict) or forecast.get("status") not in ("SUCCEEDED", "UNCHANGED"):
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


def check_pipeline_input(input_: Any, engines: Sequence[str]) -> None:
    """Refuse what the pipeline would fail on later: unknown datasets, an engine its Choose Engine state has not, a
    crawler poll interval its Wait state cannot wait."""
    from datalake.contracts import get_dataset

    if not isinstance(input_, dict):
        raise LakeboxError("--input must be a JSON object")
    datasets = input_.get("datasets")
    if datasets is not None:
        if not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets):
            raise LakeboxError('--input "datasets" must be a list of dataset names')
        for name in datasets:
            get_dataset(name)
    engine = input_.get("engine")
    if engine is not None and engine not in engines:
        names = " or ".join([", ".join(engines[:-1]), engines[-1]] if len(engines) > 1 else engines)
        raise LakeboxError(f'--input "engine" must be {names}, not {engine!r}')
    poll = input_.get("crawler_poll_seconds")
    if poll is not None and (isinstance(poll, bool) or not isinstance(poll, int) or poll < 0):
        raise LakeboxError(f'--input "crawler_poll_seconds" must be whole seconds (0 or more), not {poll!r}')

"""Truth: every row of every curated table equals an independent computation over the same delivered files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lakebox.services import glue
from lakebox.sfn import CompressedClock, Execution, run_execution
from lakebox.sfn.integrations import glue_start_job_run_sync
from tests.integration.truth.oracle import KEYS, Oracle, diff
from tests.integration.truth.scenario import AS_OF, File, Scenario, generate

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GLUE = "arn:aws:states:::glue:startJobRun.sync"
DATASETS = ["sales", "products", "customers"]


class Lake:
    """The local stack: files put through the landing bucket, the pipeline run, the curated tables read."""

    def __init__(self, box: Any, folder: Path) -> None:
        self.box = box
        self.folder = folder
        self.delivered: list[File] = []
        self.definition, _ = box.stack.state_machine("PipelineStateMachine")
        self.database = str(box.stack.parameters["GlueDatabaseName"])
        self.workgroup = str(box.stack.ref("AnalyticsWorkGroup"))

    def deliver(self, files: list[File]) -> None:
        for delivered in files:
            path = self.folder / delivered.name
            path.write_bytes(delivered.body)
            _, deliveries = self.box.put_file(path, delivered.dataset, key=f"{delivered.dataset}/{delivered.name}")
            assert [d.ok for d in deliveries] == [True], deliveries
            self.delivered.append(delivered)

    def run_pipeline(self, name: str) -> Execution:
        integrations = self.box.integrations()
        integrations.register(GLUE, glue_start_job_run_sync(self.run_glue_job))
        return run_execution(
            self.definition,
            {"datasets": DATASETS, "as_of": AS_OF.isoformat()},
            integrations,
            name=name,
            state_machine_arn=str(self.box.stack.ref("PipelineStateMachine")),
            clock=CompressedClock(),
        )

    def run_glue_job(self, job_name: str, arguments: dict[str, str]) -> dict[str, Any]:
        """The job as deployed, reading files the moment they land (the deployed job lets them settle)."""
        return glue.run_glue_job(self.box.session, job_name, {**arguments, "--settle_seconds": "0"})

    def table(self, name: str) -> list[dict[str, Any]]:
        result = self.box.athena.query(f"SELECT * FROM {name}", workgroup=self.workgroup, database=self.database)
        return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(seed=7)


@pytest.fixture(scope="module")
def lake(local_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return Lake(local_stack, tmp_path_factory.mktemp("deliveries"))


def curated_differences(lake: Lake, execution: Execution) -> list[str]:
    """Why the curated tables are not what the delivered files call for (empty when they are)."""
    if execution.status != "SUCCEEDED":
        return [f"the pipeline run {execution.name} failed: {execution.error}: {execution.cause}"]
    expected = Oracle(lake.delivered).tables()
    problems = [line for table in KEYS for line in diff(table, expected[table], lake.table(table))]
    return [f"after {execution.name}:", *problems] if problems else []


def test_scenario_holds_every_awkward_case(scenario: Scenario) -> None:
    # GIVEN the generated scenario
    # WHEN its files are judged by the contracts alone
    oracle = Oracle(scenario.first + scenario.second)
    first = Oracle(scenario.first)
    # THEN it has corrections across dates, late and out-of-order versions, unknown references and a sale before 1900
    moved = first.sales.merge(oracle.sales, on="transaction_id").query("event_date_x != event_date_y")
    assert len(moved) >= 10
    assert len(oracle.sales) > 350 and oracle.sales["event_date"].min().year == 1899
    assert sum(len(v) == 2 for v in oracle.products.of.values()) >= 20
    assert sum(len(v) == 2 for v in oracle.customers.of.values()) >= 25
    assert {"P29", "P30"} <= set(oracle.sales["product_id"]) and "P29" not in oracle.products.of
    assert "C99" in set(oracle.sales["customer_id"]) and "C99" not in oracle.customers.of
    # AND profit has every case: rows with a cost, rows whose sales lack one (no unit cost, another currency, an
    # unknown product), and products whose cost changed between versions (point in time)
    performance = oracle.product_performance()
    assert sum(r["profit"] is not None for r in performance) >= 30
    assert sum(r["profit"] is None for r in performance) >= 30
    costs = {p: {m.unit_cost for _, m in v} for p, v in oracle.products.of.items()}  # type: ignore[attr-defined]
    assert sum(len(c - {None}) == 2 for c in costs.values()) >= 10


def test_curated_tables_equal_an_independent_computation_after_each_run(
    lake: Lake, scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the stack, whose job's own boto3 clients (its catalog updates) reach the local endpoint
    monkeypatch.setenv("AWS_ENDPOINT_URL", lake.box.endpoint)
    # WHEN the newer product and customer versions and the first sales file are delivered, and the pipeline runs
    lake.deliver(scenario.first)
    problems = curated_differences(lake, lake.run_pipeline("truth-1"))
    # AND the older versions arrive late, with sales that correct, move and repeat earlier ones, and it runs again
    lake.deliver(scenario.second)
    problems += curated_differences(lake, lake.run_pipeline("truth-2"))
    # THEN after each run every curated row equals the computation from the contracts and the SQL definitions
    assert not problems, "curated tables differ from the independent computation:\n" + "\n".join(problems)

"""A fresh lake where one dataset arrives first: the curated tables reading the others wait for them, then catch up.

On a lake where only sales was ever processed, the curated tables reading products, customers or clickstream have
no input yet. The run that processes sales alone builds what it can and succeeds, saying which tables wait for
which inputs; once products and customers arrive, a later run builds the waiting tables whole. Each run ends with the
differential check (`tests/integration/differential.py`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lakebox.home.runs import list_runs, run_note
from lakebox.sfn import Execution
from tests.integration.differential import curated_differences, published_table

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SALES_HEADER = (
    "transaction_id,event_time,customer_id,product_id,store_id,region,quantity,unit_price,currency,"
    "payment_method,channel"
)
PRODUCTS_HEADER = "product_id,name,category,list_price,currency,active,updated_at"
CUSTOMERS_HEADER = "customer_id,name,segment,region,country,signup_date,updated_at"
NOW = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
CLICKSTREAM_TABLES = {"clickstream_hourly", "daily_active_users"}


def sale(transaction: str, hours_ago: float, product: str, customer: str, quantity: int) -> str:
    at = (NOW - dt.timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{transaction},{at},{customer},{product},S1,north,{quantity},10.50,EUR,card,store"


@dataclass
class Lake:
    """A box on its own fresh lake, files put through its landing bucket."""

    box: Any
    folder: Path

    def put(self, dataset: str, header: str, rows: list[str]) -> None:
        path = self.folder / f"{dataset}.csv"
        path.write_text("\n".join([header, *rows]) + "\n")
        _, deliveries = self.box.put_file(path, dataset)
        assert all(d.ok for d in deliveries), deliveries

    def run(self, name: str, datasets: list[str]) -> Execution:
        return self.box.execute("PipelineStateMachine", {"datasets": datasets, "forecast": False}, execution_name=name)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    from lakebox.box import open_box
    from tests.conftest import ROOT

    folder = tmp_path_factory.mktemp("fresh")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LAKEBOX_HOME", str(folder / "lake"))  # this box's lake and run records, not the project's
        with open_box(ROOT, reuse=False) as box:
            # the job's own boto3 clients (its catalog updates) reach the box's endpoint, as on Glue they reach AWS
            env.setenv("AWS_ENDPOINT_URL", box.endpoint)
            yield Lake(box, folder)


@pytest.fixture(autouse=True)
def _local_endpoint(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    """The job's own boto3 clients reach the box's endpoint in every test (the environment is restored after each)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", lake.box.endpoint)


def test_tables_wait_for_inputs_never_processed_then_are_built_whole_when_they_arrive(lake: Lake) -> None:
    # GIVEN a fresh lake where only sales arrives
    lake.put(
        "sales",
        SALES_HEADER,
        [sale("T1", 50, "P1", "C1", 2), sale("T2", 26, "P2", "C2", 1), sale("T3", 2, "P1", "C2", 3)],
    )

    # WHEN a run processes sales alone
    first = lake.run("sales-only", ["sales"])

    # THEN it succeeds (nothing is held for quality): the tables reading sales alone are built
    assert first.status == "SUCCEEDED", (first.error, first.cause)
    assert first.output["status"] == "SUCCEEDED" and first.output["held"] == []
    assert set(first.output["tables"]) == {"daily_sales_by_region", "customer_daily_sales"}
    # AND the others wait, each for the inputs it lacks, in the run summary and in what `lakebox execute` prints
    waiting = {w["table"]: w["datasets"] for w in first.output["waiting"]}
    assert waiting == {
        "product_performance": ["products"],
        "customer_aggregates": ["customers"],
        "clickstream_hourly": ["clickstream"],
        "daily_active_users": ["clickstream"],
    }
    note = run_note(first)
    assert note is not None and "customer_aggregates (waiting for input: customers)" in note
    recorded = next(r for r in list_runs(lake.box.home.runs) if r["name"] == "sales-only")
    assert recorded["status"] == "SUCCEEDED" and recorded["note"] == note
    assert published_table(lake.box, "customer_aggregates") == ([], [])
    assert curated_differences(lake.box) == []

    # WHEN products and customers arrive, and a later run processes them
    lake.put("products", PRODUCTS_HEADER, ["P1,Lamp,home,19.90,EUR,true,2026-01-01T00:00:00Z"])
    lake.put(
        "customers",
        CUSTOMERS_HEADER,
        [
            "C1,Ada,consumer,north,GB,2025-01-02T00:00:00Z,2026-01-01T00:00:00Z",
            "C2,Bob,enterprise,west,US,2025-01-02T00:00:00Z,2026-01-01T00:00:00Z",
        ],
    )
    second = lake.run("references-arrive", ["products", "customers"])

    # THEN the waiting tables are built whole from every sale, only the clickstream tables still wait
    assert second.status == "SUCCEEDED", (second.error, second.cause)
    assert second.output["status"] == "SUCCEEDED" and second.output["held"] == []
    assert {"product_performance", "customer_aggregates"} <= set(second.output["tables"])
    assert {w["table"] for w in second.output["waiting"]} == CLICKSTREAM_TABLES
    columns, rows = published_table(lake.box, "customer_aggregates")
    assert len(rows) == 2 and columns
    assert curated_differences(lake.box) == []

"""Curated scans: what each curated table's statements read (the local Athena's DataScannedInBytes, as Athena bills
it: pruned partitions, projected columns), as a share of the raw JSON bytes of the sales they summarize (ADR 0027)."""

from __future__ import annotations

import datetime as dt
import gzip
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from lakebox.app.sample import SampleSpec, generate, sales_lines
from lakebox.services import glue
from lakebox.sfn import CompressedClock, Execution, run_execution
from lakebox.sfn.integrations import glue_start_job_run_sync
from tests.integration.differential import curated_differences

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GLUE = "arn:aws:states:::glue:startJobRun.sync"
DATASETS = ["sales", "products", "customers"]
MIDNIGHT = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
TICK = dt.timedelta(microseconds=1)
# Few customers and products: many sales per customer and day, as in a real lake (and at 1M sample rows). The two
# weeks end the day before yesterday; the new day is yesterday, every sale of it on that one date.
SPEC = SampleSpec(
    sales=20_000, products=20, customers=50, days=14, end=MIDNIGHT - dt.timedelta(days=1) - TICK, duplicate_rate=0.0
)
NEW_DAY = SampleSpec(
    sales=1_400, products=20, customers=50, days=1, end=MIDNIGHT - TICK, bad_rate=0.0, duplicate_rate=0.0
)


def scanned_by_table(execution: Execution) -> dict[str, int]:
    """Bytes the run's curated statements scanned, summed per table."""
    assert execution.status == "SUCCEEDED", f"{execution.error}: {execution.cause}"
    found: dict[str, int] = defaultdict(int)
    for query in execution.output.get("queries") or []:
        found[str(query["table"])] += int(query.get("bytes_scanned") or 0)
    return {table: scanned for table, scanned in found.items() if scanned}


def test_a_full_rebuild_and_a_new_day_read_under_one_percent_of_the_raw_sales_for_every_curated_table(
    local_stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = local_stack
    monkeypatch.setenv("AWS_ENDPOINT_URL", box.endpoint)
    definition, _ = box.stack.state_machine("PipelineStateMachine")
    integrations = box.integrations()
    integrations.register(
        GLUE,
        glue_start_job_run_sync(
            lambda name, arguments: glue.run_glue_job(box.session, name, {**arguments, "--settle_seconds": "0"})
        ),
    )

    def run(name: str) -> Execution:
        return run_execution(
            definition,
            {"datasets": DATASETS, "forecast": False},
            integrations,
            name=name,
            state_machine_arn=str(box.stack.ref("PipelineStateMachine")),
            clock=CompressedClock(),
        )

    # GIVEN two weeks of sales (with their products and customers) delivered and curated from scratch
    files = [f for f in generate(tmp_path / "first", SPEC) if f.dataset in DATASETS]
    for generated in files:
        box.put_file(generated.path, generated.dataset)
    sales = next(f for f in files if f.dataset == "sales")
    raw = len(gzip.decompress(sales.path.read_bytes())) if sales.path.suffix == ".gz" else sales.path.stat().st_size
    full = scanned_by_table(run("scans-full"))
    # WHEN one more day of sales arrives and the pipeline runs again
    day = tmp_path / "new-day.jsonl"
    day.write_bytes(b"\n".join(line for line, _ in sales_lines(NEW_DAY, start=SPEC.sales)) + b"\n")
    raw += day.stat().st_size
    box.put_file(day, "sales")
    incremental = scanned_by_table(run("scans-new-day"))
    # THEN every curated table the new day rebuilds reads under 1% of the raw JSON bytes of the sales history
    shares = {table: round(100 * scanned / raw, 3) for table, scanned in incremental.items()}
    assert max(shares.values()) <= 1.0, shares
    assert {"customer_aggregates", "daily_sales_by_region", "product_performance"} <= set(shares), shares
    # AND the full rebuild read under 1% for every table too: the Spark job's per-day rollups of the sales, not every
    # sale (ADR 0030), and no event time for product_performance (no product version begins on a sales date)
    first_raw = raw - day.stat().st_size
    full_shares = {table: round(100 * scanned / first_raw, 3) for table, scanned in full.items()}
    assert max(full_shares.values()) <= 1.0, full_shares
    assert {"customer_aggregates", "customer_daily_sales", "daily_sales_by_region", "product_performance"} <= set(
        full_shares
    ), full_shares
    # AND the tables equal their SQL over the processed zone, each row enriched at its own event time
    assert curated_differences(box) == []

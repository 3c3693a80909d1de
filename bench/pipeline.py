"""Benchmark: the whole local pipeline (`lakebox run` style) per stage, and what the curated queries scan.

Run with `.venv/bin/python bench/pipeline.py [--rows 100000 1000000]`. For each size: generate sample data, ingest
it through the template's rules, run the pipeline state machine, and time each stage by its task calls. Then the
bytes each curated table's queries scanned, beside the raw JSON bytes of the sales they summarize (target: 1% or
less). Prints a table per size, then one line of `key=value` figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import logging
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "common")]

STAGES = {
    "Catalog Raw": "catalog",
    "Get Crawler": "catalog",
    "Run Spark Job": "spark",
    "Run Spark On EMR Serverless": "spark",
    "Check Quality": "quality",
    "Plan Curation": "ctas",
    "Run Curated Query": "ctas",
}


def _timed(seconds: dict[str, float]) -> Callable[[Any], Any]:
    from lakebox.sfn import TaskContext

    def middleware(handler: Any) -> Any:
        def timed(parameters: Any, task: TaskContext) -> Any:
            start = time.perf_counter()
            try:
                return handler(parameters, task)
            finally:
                seconds[STAGES.get(task.state_name, "notify")] += time.perf_counter() - start

        return timed

    return middleware


def measure(rows: int) -> dict[str, Any]:
    """Run the pipeline once on `rows` generated sales; return stage seconds and bytes."""
    from lakebox.runtime import lakebox
    from lakebox.sample import SampleSpec, generate
    from lakebox.sfn import run_execution

    spec = SampleSpec(sales=rows, end=dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0))
    seconds: dict[str, float] = defaultdict(float)
    with (
        tempfile.TemporaryDirectory() as folder,
        lakebox(ROOT, reuse=False, parameters={"RawSettleSeconds": "0"}) as box,
    ):
        files = generate(Path(folder), spec)
        sales = next(f for f in files if f.dataset == "sales")
        with gzip.open(sales.path, "rb") as raw:
            raw_json_bytes = sum(len(chunk) for chunk in iter(lambda: raw.read(1 << 20), b""))
        start = time.perf_counter()
        for generated in files:
            box.put_file(generated.path, generated.dataset)
        seconds["ingest"] = time.perf_counter() - start
        definition, _ = box.stack.state_machine("PipelineStateMachine")
        integrations = box.integrations()
        start = time.perf_counter()
        execution = run_execution(
            definition,
            {"datasets": ["sales", "products", "customers"]},
            integrations.with_middleware(_timed(seconds)),
            state_machine_arn=str(box.stack.ref("PipelineStateMachine")),
        )
        seconds["pipeline total"] = time.perf_counter() - start
    if execution.status != "SUCCEEDED":
        raise SystemExit(f"pipeline {execution.status}: {execution.error}: {execution.cause}")
    scanned: dict[str, int] = defaultdict(int)
    for query in execution.output.get("queries") or []:
        scanned[str(query.get("table"))] += int(query.get("bytes_scanned") or 0)
    return {"seconds": dict(seconds), "scanned": dict(scanned), "raw_json_bytes": raw_json_bytes}


def main() -> None:
    """Measure each size and print the tables."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    figures = []
    for rows in args.rows:
        print(f"running the pipeline on {rows:,} sales rows ...", file=sys.stderr)
        result = measure(rows)
        raw = result["raw_json_bytes"]
        print(f"\n{rows:,} sales rows ({raw / 1e6:,.1f} MB of raw JSON)\n")
        print(f"| {'stage':<16} | {'wall s':>8} |")
        print(f"|{'-' * 18}|{'-' * 10}|")
        for stage in ("ingest", "catalog", "spark", "quality", "ctas", "notify", "pipeline total"):
            print(f"| {stage:<16} | {result['seconds'].get(stage, 0.0):>8.1f} |")
        print(f"\n| {'curated table':<24} | {'bytes scanned':>14} | {'% of raw JSON':>13} |")
        print(f"|{'-' * 26}|{'-' * 16}|{'-' * 15}|")
        for table, scanned in sorted(result["scanned"].items()):
            if not scanned:  # views and DDL: nothing read
                continue
            print(f"| {table:<24} | {scanned:>14,} | {100 * scanned / raw:>12.2f}% |")
            figures.append(f"scan_pct_{table}_{rows}={100 * scanned / raw:.2f}")
        figures.append(f"pipeline_s_{rows}={result['seconds']['pipeline total']:.1f}")
    print("\n" + " ".join(figures))


if __name__ == "__main__":
    main()

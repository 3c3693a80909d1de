"""Benchmark: what nested fields cost the Spark job (raw → processed), against the same rows without them.

Run with `.venv/bin/python bench/nested.py [--rows 100000] [--repeat 3]`. Writes `--rows` raw shipments (the
`tests/fixtures/contracts/shipments.py` dataset: a model inside a model, a list of one to three parcel models, a
list of tags, a map) as gzip JSON lines for one day, and the same rows with only their scalar fields for a flat
variant of the contract; then runs the job's `run` on local files for each, interleaved, `--repeat` times in one
process and one SparkSession. Prints the median wall time of each, the ratio nested / flat, and the rows per second.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "common")]

DAY = dt.date(2026, 11, 2)
NESTED = ("destination", "parcels", "tags", "dimensions_cm")


def shipment(n: int) -> dict[str, Any]:
    """One raw shipment in canonical form, with its lineage."""
    return {
        "shipment_id": f"SH{n:09d}",
        "shipped_at": f"{DAY.isoformat()}T{n % 24:02d}:{n % 60:02d}:00.000000Z",
        "carrier": ("ups", "dhl", "fedex", "royal-mail")[n % 4],
        "weight_kg": 1.5 + (n % 400) * 0.25,
        "insured": n % 2 == 0,
        "promised_date": (DAY + dt.timedelta(days=2 + n % 3)).isoformat(),
        "delivered_on": None,
        "destination": {
            "street": f"{n % 900} High Street",
            "city": ("Leeds", "York", "Hull")[n % 3],
            "postcode": f"LS{n % 20}",
            "country": "GB",
            "location": {"lat": 53.75 + (n % 100) / 1000, "lon": -1.5} if n % 2 else None,
        },
        "parcels": [
            {
                "parcel_id": f"P{n:09d}-{i}",
                "weight_kg": 0.5 + i,
                "declared_value": 10.05 + i,
                "fragile": i == 0,
                "packed_at": f"{DAY.isoformat()}T00:0{i}:00.000000Z",
            }
            for i in range(1 + n % 3)
        ],
        "tags": ["express", "signed", "gift"][: n % 4],
        "dimensions_cm": {"w": 40.0, "h": 25.5, "d": float(n % 50)},
        "_source_key": "shipments/bench.jsonl",
        "_source_version": "v1",
        "_line": n + 1,
        "_ingested_at": "2026-11-02T12:00:00.000000Z",
    }


def write_raw(root: Path, dataset: str, rows: int, flat: bool) -> None:
    folder = root / "raw" / dataset / f"year={DAY:%Y}" / f"month={DAY:%m}" / f"day={DAY:%d}"
    folder.mkdir(parents=True)
    with gzip.open(folder / "bench.json.gz", "wt", compresslevel=1) as out:
        for n in range(rows):
            record = shipment(n)
            if flat:
                record = {k: v for k, v in record.items() if k not in NESTED}
            out.write(json.dumps(record) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()

    from pydantic import create_model

    import tests.fixtures.contracts as fixtures
    from datalake.contracts import Contract, discover, registered
    from glue import raw_to_processed as job
    from lakebox.services.glue import local_spark

    nested = discover(fixtures.__path__, fixtures.__name__)["shipments"]
    scalars = {
        name: (info.annotation, info) for name, info in nested.contract.model_fields.items() if name not in NESTED
    }
    flat_contract = create_model("FlatShipment", __base__=Contract, **scalars)  # type: ignore[call-overload]
    flat = type(nested)(name="shipments_flat", contract=flat_contract, key=nested.key, event_time=nested.event_time)
    spark = local_spark()
    seconds: dict[str, list[float]] = {"nested": [], "flat": []}
    with registered(nested, flat), tempfile.TemporaryDirectory(prefix="bench-nested-") as folder:
        root = Path(folder)
        write_raw(root, "shipments", options.rows, flat=False)
        write_raw(root, "shipments_flat", options.rows, flat=True)
        for attempt in range(options.repeat + 1):
            for label, dataset in (("nested", nested), ("flat", flat)):
                args = {
                    "raw_path": (root / "raw").as_uri(),
                    "processed_path": (root / f"processed-{label}-{attempt}").as_uri(),
                    "datasets": dataset.name,
                    "update_catalog": "false",
                }
                start = time.perf_counter()
                summary = job.run(spark, args)
                elapsed = time.perf_counter() - start
                assert summary["datasets"][dataset.name]["rows_out"] == options.rows, summary
                if attempt:  # the first round warms the JVM and is not counted
                    seconds[label].append(elapsed)
    medians = {label: statistics.median(values) for label, values in seconds.items()}
    print(f"| rows | variant | median s | rows/s | vs flat |  (repeat {options.repeat})")
    print("|---|---|---|---|---|")
    for label in ("flat", "nested"):
        ratio, rate = medians[label] / medians["flat"], options.rows / medians[label]
        print(f"| {options.rows:,} | {label} | {medians[label]:.2f} | {rate:,.0f} | {ratio:.2f} |")
    print(
        f"nested_s={medians['nested']:.2f} flat_s={medians['flat']:.2f} ratio={medians['nested'] / medians['flat']:.2f}"
    )


if __name__ == "__main__":
    main()

"""Benchmark: `lakebox dataset new` on long and wide CSV samples, against pyarrow reading the same file.

Run with `.venv/bin/python bench/scaffold.py [--repeat K]`. For each sample shape (rows x columns of ints, two-place
decimals, low-cardinality text and timestamps) it times the three stages of the command: reading the sample (the
rows as ingestion reads them, typed by pyarrow's CSV reader), inferring the contract, and building it (formatting,
importing it through the registry's discovery and judging every sample row with the ingestion's validator). The
baseline is `pyarrow.csv.read_csv` of the same file in the same run. Prints a table of medians and one line of
`key=value` figures.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "common")]

SHAPES = ((100_000, 10), (10_000, 300))


def write_sample(path: Path, rows: int, columns: int, seed: int = 7) -> None:
    """A CSV of `rows` x `columns`: an id, a timestamp, then ints, decimals and a three-valued text in turn."""
    rng = random.Random(seed)
    header = ["record_id", "created_at", *(f"c{i:03d}" for i in range(columns - 2))]
    with path.open("w") as out:
        out.write(",".join(header) + "\n")
        for n in range(rows):
            cells = [f"R{n}", f"2026-11-{n % 28 + 1:02d}T{n % 24:02d}:00:00Z"]
            for i in range(columns - 2):
                cells.append(
                    str(rng.randint(0, 999))
                    if i % 3 == 0
                    else f"{rng.random() * 100:.2f}"
                    if i % 3 == 1
                    else rng.choice(("red", "green", "blue"))
                )
            out.write(",".join(cells) + "\n")


def _median(repeat: int, work: Callable[[], Any]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        began = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - began)
    return statistics.median(times), result


def main() -> None:
    """Time each stage on each shape and print the table."""
    import pyarrow.csv as pacsv

    from lakebox.app import scaffold

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    figures = []
    print(f"{'sample':>16} {'MB':>6} {'pyarrow':>8} {'read':>8} {'infer':>8} {'build':>8} {'total':>8} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as folder:
        for rows, columns in SHAPES:
            path = Path(folder) / f"sample_{rows}x{columns}.csv"
            write_sample(path, rows, columns)
            baseline, _ = _median(args.repeat, lambda p=path: pacsv.read_csv(p))  # type: ignore[misc]
            read, sample = _median(args.repeat, lambda p=path, r=rows: scaffold.read_sample(p, rows=r))  # type: ignore[misc]
            infer, inferred = _median(args.repeat, lambda s=sample: scaffold.infer("bench", s))  # type: ignore[misc]
            build, _ = _median(args.repeat, lambda i=inferred: scaffold.build(i))  # type: ignore[misc]
            total = read + infer + build
            label = f"{rows:,}x{columns}"
            size = path.stat().st_size / 1e6
            print(
                f"{label:>16} {size:6.1f} {baseline:8.2f} {read:8.2f} {infer:8.2f} {build:8.2f} {total:8.2f} "
                f"{total / baseline:6.1f}"
            )
            figures.append(f"total_{rows}x{columns}_s={total:.2f} ratio_{rows}x{columns}={total / baseline:.1f}")
    print(" ".join(figures))


if __name__ == "__main__":
    main()

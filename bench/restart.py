"""Benchmark: how long a box takes to start on a saved lake, at 100k and 1M ingested rows, beside an empty lake.

Run with `.venv/bin/python bench/restart.py [--rows 100000 1000000] [--repeat 3]`. For each size a lake is built
in a temporary `LAKEBOX_HOME` (a generated sales file of that many rows put through the template's ingestion, then
saved), and a box is started on it `--repeat` times: the time to load the snapshot, the whole start (load, then
the template's resources created or updated), and the save. The baseline is a box started on an empty lake in the
same run. Prints a table, then one line of `key=value` figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "common")]


def _start(home: Path) -> dict[str, float]:
    """Start a box on the lake in `home` and stop it without changes: seconds to load, to be ready, to stop."""
    from lakebox.box import open_box

    marks: dict[str, float] = {}
    began = time.perf_counter()

    def progress(text: str) -> None:
        if text == "loading the saved lake":
            marks["load_started"] = time.perf_counter()
        elif text == "loaded the saved lake":
            marks["loaded"] = time.perf_counter()

    os.environ["LAKEBOX_HOME"] = str(home)
    with open_box(ROOT, reuse=False, persist=True, progress=progress):
        ready = time.perf_counter()
    stopped = time.perf_counter()
    load = marks.get("loaded", began) - marks.get("load_started", began)
    return {"load": load, "start": ready - began, "stop": stopped - ready}


def _build(home: Path, rows: int, folder: Path) -> dict[str, Any]:
    """A lake holding `rows` ingested sales; returns what was landed and the snapshot's size and save time."""
    from lakebox.app.sample import SampleSpec, write_sales
    from lakebox.box import open_box

    end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    generated = write_sales(folder / f"sales-{rows}.jsonl.gz", SampleSpec(sales=rows, seed=3, end=end), compress=True)
    os.environ["LAKEBOX_HOME"] = str(home)
    with open_box(ROOT, reuse=False, persist=True) as box:
        _, deliveries = box.put_file(generated.path, "sales")
        manifest = deliveries[0].result
        began = time.perf_counter()
        saved = box.save()
        save = time.perf_counter() - began
    size = saved[0] if saved else 0
    return {
        "landed": manifest["records_landed"],
        "quarantined": manifest["records_quarantined"],
        "bytes": size,
        "save": save,
    }


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import logging

    logging.disable(logging.WARNING)
    rows_out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        empty = base / "empty"
        _start(empty)  # the first start creates the resources; what follows is a start on a saved empty lake
        baseline = [_start(empty) for _ in range(args.repeat)]
        baseline_start = statistics.median(r["start"] for r in baseline)
        rows_out.append(
            {
                "lake": "empty (baseline)",
                "snapshot MB": _mb(empty),
                "save s": None,
                "load s": statistics.median(r["load"] for r in baseline),
                "start s": baseline_start,
                "vs baseline": 1.0,
            }
        )
        for rows in args.rows:
            home = base / f"lake-{rows}"
            built = _build(home, rows, base)
            runs = [_start(home) for _ in range(args.repeat)]
            start = statistics.median(r["start"] for r in runs)
            rows_out.append(
                {
                    "lake": f"{rows:,} rows ({built['landed']:,} landed, {built['quarantined']:,} quarantined)",
                    "snapshot MB": built["bytes"] / 1e6,
                    "save s": built["save"],
                    "load s": statistics.median(r["load"] for r in runs),
                    "start s": start,
                    "vs baseline": start / baseline_start,
                }
            )
    columns = ["lake", "snapshot MB", "save s", "load s", "start s", "vs baseline"]
    widths = [max(len(c), *(len(_fmt(r[c])) for r in rows_out)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows_out:
        print("  ".join(_fmt(row[c]).ljust(w) for c, w in zip(columns, widths, strict=True)))
    figures = []
    for row, rows in zip(rows_out[1:], args.rows, strict=True):
        figures += [
            f"start_{rows}={row['start s']:.2f}",
            f"load_{rows}={row['load s']:.2f}",
            f"save_{rows}={row['save s']:.2f}",
        ]
    print(" ".join([f"baseline_start={baseline_start:.2f}", *figures]))


def _mb(home: Path) -> float:
    path = home / "state" / "snapshot.pickle"
    return path.stat().st_size / 1e6 if path.exists() else 0.0


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


if __name__ == "__main__":
    main()

"""The help of the command options that speak of the example datasets (the CLI's generic code names none).

Kept apart from `lakebox.app.demo` so that building the command line imports nothing a command does not use.
"""

from __future__ import annotations

OPTION_HELP = {"rows": "sales rows to generate", "api_rows": "sales the sample source API serves"}
"""The help of `lakebox run`'s options that speak of the example datasets."""

SAMPLE_HELP = {
    "command": "write sample files to put (sales.jsonl, products.csv, customers.csv, clickstream.json) and orders.csv, "
    "a dataset to add with `lakebox dataset new`",
    "rows": "sales records (default 1,000)",
}
"""The help of `lakebox sample` and of its options that speak of the example datasets."""

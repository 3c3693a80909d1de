"""`lakebox put`: what it refuses before uploading anything."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lakebox.home.up import UpRecord


def registered_datasets() -> list[str]:
    """The datasets the registry knows now."""
    from datalake.contracts import REGISTRY

    return sorted(REGISTRY)


def put_refusal(dataset: str, up: UpRecord | None) -> str | None:
    """Why `put` refuses `dataset` before uploading anything, or None.

    An unknown name (a typo) would be uploaded and quarantined whole; a dataset added after the running `lakebox up`
    (`up`, its record, or None) started is unknown to the ingestion it runs, which would do the same.
    """
    known = registered_datasets()
    if dataset not in known:
        return f"unknown dataset {dataset!r} (known: {', '.join(known)}); nothing was uploaded"
    if up is not None and up.datasets is not None and dataset not in up.datasets:
        return (
            f"dataset {dataset!r} was added after lakebox up started (pid {up.pid}), whose ingestion does not know "
            "it: restart lakebox up (Ctrl-C, then lakebox up) and put the file again; nothing was uploaded"
        )
    return None

"""The local stack's entry points, kept for callers: the box itself lives in `lakebox.box`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from lakebox.box import FAKE_CREDENTIALS, Lakebox, LocalSession, open_box, summary_row
from lakebox.home import find_root
from lakebox.home.up import UpRecord


@contextlib.contextmanager
def lakebox(
    root: Path | None = None,
    *,
    parameters: dict[str, str] | None = None,
    trusted_parameters: dict[str, str] | None = None,
    port: int | None = None,
    reuse: bool = True,
    persist: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Iterator[Lakebox]:
    """A box for the duration of the block (see `lakebox.box.open_box`)."""
    with open_box(
        root,
        parameters=parameters,
        trusted_parameters=trusted_parameters,
        port=port,
        reuse=reuse,
        persist=persist,
        progress=progress,
    ) as box:
        yield box


__all__ = ["FAKE_CREDENTIALS", "Lakebox", "LocalSession", "UpRecord", "find_root", "lakebox", "open_box", "summary_row"]

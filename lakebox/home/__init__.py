"""The local lake on disk, laid out once: `LakeHome` names every file and folder of `.lakebox/`.

`LAKEBOX_HOME` is honoured here and only here: `LakeHome.of(root)` is computed once (by the box, or by a command
that reads the lake without a box) and handed down; no other module spells a path under `.lakebox/`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lakebox.errors import LakeboxError

FOLDER = ".lakebox"
HOME_VARIABLE = "LAKEBOX_HOME"


def find_root(start: Path | None = None) -> Path:
    """The project root: the nearest folder upwards that holds template.yaml."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "template.yaml").exists():
            return folder
    raise LakeboxError("no template.yaml here or in any parent folder")


@dataclass(frozen=True)
class LakeHome:
    """Where one project's local lake lives, and the place of each thing in it."""

    path: Path

    @classmethod
    def of(cls, root: Path, environ: Mapping[str, str] | None = None) -> LakeHome:
        """`<root>/.lakebox`, or `$LAKEBOX_HOME` when set."""
        override = (os.environ if environ is None else environ).get(HOME_VARIABLE)
        return cls(Path(override).resolve() if override else root / FOLDER)

    @property
    def state(self) -> Path:
        """The saved lake: the endpoint's snapshot and the emulators' state (`lakebox.home.state`)."""
        return self.path / "state"

    @property
    def runs(self) -> Path:
        """One JSON record per state machine execution (`lakebox.home.runs`)."""
        return self.path / "runs"

    @property
    def logs(self) -> Path:
        """The functions' logs, `<function name>.log`, and the SageMaker jobs' under `sagemaker/`."""
        return self.path / "logs"

    @property
    def metrics(self) -> Path:
        """The service metrics the box records (`lakebox.services.metrics`)."""
        return self.path / "metrics.jsonl"

    @property
    def deliveries(self) -> Path:
        """The journal of what each new object's event delivered (`lakebox.home.journal`)."""
        return self.path / "deliveries.jsonl"

    @property
    def endpoint(self) -> Path:
        """The record of a running `lakebox up` (`lakebox.home.up`)."""
        return self.path / "endpoint.json"

    @property
    def lock(self) -> Path:
        """Held by the one command that owns the lake."""
        return self.path / "lock"

    @property
    def dashboard(self) -> Path:
        """The default place of `lakebox dashboard`'s page."""
        return self.path / "dashboard.html"


__all__ = ["FOLDER", "HOME_VARIABLE", "LakeHome", "find_root"]

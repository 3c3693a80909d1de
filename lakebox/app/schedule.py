"""`lakebox schedule`: the template's schedules listed, or one fired now with what its target wrote delivered."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakebox.app.sample import SampleSpec
from lakebox.app.source_api import API_ID_OFFSET, SourceApiServer, install_secret, sample_sales, serve
from lakebox.box import summary_row
from lakebox.services.schedules import Firing, schedules

if TYPE_CHECKING:
    from lakebox.box import Lakebox


@dataclass
class ScheduleReport:
    """A schedule fired: its outcome, and one summary row per object its target wrote and the rules delivered."""

    firing: Firing
    ingested: list[dict[str, Any]] = field(default_factory=list)

    @property
    def outcome(self) -> dict[str, Any]:
        """The firing in one document."""
        firing = self.firing
        return {"schedule": firing.schedule.name, "ok": firing.ok, "result": firing.result, "error": firing.error}

    @property
    def ok(self) -> bool:
        """The target succeeded and nothing it wrote failed ingestion."""
        return self.firing.ok and all(r["status"] != "FAILED" for r in self.ingested)


def list_schedules(box: Lakebox) -> list[dict[str, Any]]:
    """Every schedule of the template: name, kind, expression, target and whether it is enabled."""
    return [
        {"name": s.name, "kind": s.kind, "expression": s.expression, "target": s.target, "enabled": s.enabled}
        for s in schedules(box.stack)
    ]


@contextlib.contextmanager
def sample_api(seed: int, rows: int) -> Iterator[SourceApiServer]:
    """The sample source API serving `rows` generated sales, for a schedule that pulls from it."""
    end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    with serve(sample_sales(SampleSpec(seed=seed, end=end), rows, start=API_ID_OFFSET)) as api:
        yield api


def fire_schedule(box: Lakebox, name: str, api: SourceApiServer | None = None) -> ScheduleReport:
    """Fire a schedule now (with the sample API's token installed, given one) and deliver what its target wrote."""
    if api is not None:
        install_secret(box.session, str(box.stack.ref("SourceApiSecretName")), api.token)
    firing, landed = box.fire_schedule(name)
    return ScheduleReport(firing, [summary_row(key, delivery) for key, delivery in landed])

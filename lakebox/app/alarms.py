"""`lakebox alarms` and `lakebox status`'s alarm line: the template's alarms evaluated on what the lake recorded."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from lakebox.box import LocalSession
from lakebox.cfn.stack import Stack
from lakebox.home import LakeHome
from lakebox.home.up import running_up
from lakebox.services import alarms
from lakebox.services.metrics import MetricStore

if TYPE_CHECKING:
    from pathlib import Path


def alarm_states(
    root: Path, parameters: Mapping[str, str] | None = None, *, now: float | None = None
) -> list[alarms.AlarmState]:
    """Every alarm of the deployment, on the recorded metrics and function logs (queue depths too while `up` runs)."""
    home = LakeHome.of(root)
    up = running_up(home)
    stack = Stack(root, parameters=parameters)
    session = LocalSession(up.endpoint) if up is not None else None
    return alarms.alarm_states(stack, MetricStore(home.metrics), home.logs, session, now)

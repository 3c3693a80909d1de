"""`lakebox status`: what is running and where the lake is kept, as one document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lakebox.app.alarms import alarm_states
from lakebox.home import LakeHome
from lakebox.home.runs import list_runs
from lakebox.home.state import StateStore
from lakebox.home.up import running_up


def status(root: Path) -> dict[str, Any]:
    """`lakebox up` (if it runs), the home, the saved snapshot, the last run, the logs and the alarms in ALARM."""
    lake = LakeHome.of(root)
    up = running_up(lake)
    info = StateStore(lake.state).info()
    runs = list_runs(lake.runs, limit=1)
    return {
        "up": None if up is None else {"endpoint": up.endpoint, "pid": up.pid, "started_at": up.started_at},
        "parameters": None if up is None else up.parameters,
        "state_dir": str(lake.path),
        "snapshot": None
        if info is None
        else {"path": str(info.path), "saved_at": info.saved_at, "bytes": info.bytes, "objects": info.objects},
        "last_run": None if not runs else {k: runs[0][k] for k in ("name", "status", "started", "seconds")},
        "logs": sorted(p.name for p in lake.logs.glob("*.log")) if lake.logs.exists() else [],
        "alarms_in_alarm": [
            {"alarm": a.name, "value": a.value, "reason": a.reason}
            for a in alarm_states(root, {})
            if a.state == "ALARM"
        ],
    }

"""`lakebox reset`: the local lake emptied (saved state, run history, logs), under the lock one command holds."""

from __future__ import annotations

import shutil

from lakebox.errors import LakeboxError
from lakebox.home import LakeHome
from lakebox.home.state import exclusive
from lakebox.home.up import running_up


def check_resettable(lake: LakeHome) -> bool:
    """Whether there is a lake to delete; refused while `lakebox up` serves it."""
    up = running_up(lake)
    if up is not None:
        raise LakeboxError(f"lakebox up is running (pid {up.pid}): stop it before resetting the lake")
    return lake.path.exists()


def reset(lake: LakeHome) -> None:
    """Delete everything in the home but its lock, holding the lock, then the lock."""
    with exclusive(lake.lock):
        for child in lake.path.iterdir():
            if child == lake.lock:
                continue
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    lake.lock.unlink(missing_ok=True)

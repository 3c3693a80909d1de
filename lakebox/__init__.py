"""lakebox: the data lake's SAM stack running on one machine (moto, in-process Lambda, ASL, PySpark, DuckDB).

The face of the package: `open_box` (a running box for the duration of a block), `Lakebox` (the box) and
`LakeboxError` (what a user can fix). They are imported on first use, so `import lakebox.<module>` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from lakebox.box import Lakebox, open_box
    from lakebox.errors import LakeboxError


def __getattr__(name: str) -> Any:
    if name in ("Lakebox", "open_box"):
        from lakebox import box

        return getattr(box, name)
    if name == "LakeboxError":
        from lakebox.errors import LakeboxError

        return LakeboxError
    raise AttributeError(f"module 'lakebox' has no attribute {name!r}")


__all__ = ["Lakebox", "LakeboxError", "open_box"]

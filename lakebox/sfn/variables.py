"""Workflow variables (``Assign``, ``$name``): scopes as Step Functions nests them, values fixed at state entry."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from typing import Any

from lakebox.sfn.errors import RUNTIME, DefinitionError, StatesError

# Step Functions' quotas on variables: 256 KiB for the values one state assigns, 10 MiB for all of them.
MAX_ASSIGN_BYTES = 256 * 1024
MAX_TOTAL_BYTES = 10 * 1024 * 1024
RESERVED = "states"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def validate_name(name: str, where: str) -> None:
    """Raise :class:`DefinitionError` when ``name`` cannot be a variable (``states`` is reserved)."""
    if not _NAME.fullmatch(name) or len(name) > 80:
        raise DefinitionError(f"{where}: {name!r} is not a variable name (a letter or '_', then letters, digits, '_')")
    if name == RESERVED:
        raise DefinitionError(f"{where}: '$states' is reserved and cannot be assigned")


def split_reference(expression: str) -> tuple[str, str]:
    """Split ``$name.rest`` into the variable name and the Path ``$.rest`` to apply to its value."""
    match = _NAME.match(expression, 1)
    if not expression.startswith("$") or match is None:
        raise DefinitionError(f"'{expression}' is not a variable reference")
    return match.group(0), "$" + expression[match.end() :]


class VariableScope:
    """The variables one machine (the top level, a Parallel branch or a Map iteration) assigns.

    Nested scopes read their parents' variables; a Distributed Map's child workflows start from an empty scope,
    as they are separate executions.
    """

    def __init__(self, parent: VariableScope | None = None) -> None:
        self.parent = parent
        self._values: dict[str, Any] = {}
        self._lock = threading.Lock()

    def child(self) -> VariableScope:
        """Return a scope nested in this one."""
        return VariableScope(self)

    def visible(self) -> dict[str, Any]:
        """Return every variable this scope can read (inner names hide outer ones)."""
        values = self.parent.visible() if self.parent is not None else {}
        with self._lock:
            values.update(self._values)
        return values

    def assign(self, values: Mapping[str, Any]) -> None:
        """Bind ``values`` in this scope, after checking Step Functions' size quotas.

        Raises
        ------
        StatesError
            ``States.Runtime`` when a name belongs to an outer scope (a branch or iteration reads outer variables
            but cannot bind them), or the values assigned by one state exceed 256 KiB, or all variables 10 MiB.
        """
        if not values:
            return
        outer = self.parent.visible() if self.parent is not None else {}
        clash = sorted(name for name in values if name in outer)
        if clash:
            raise StatesError(
                RUNTIME, f"Cannot bind a value to the variable '${clash[0]}' as it belongs to an outer scope"
            )
        size = len(json.dumps(values, ensure_ascii=False).encode())
        if size > MAX_ASSIGN_BYTES:
            raise StatesError(RUNTIME, f"the variables assigned by one state have {size} bytes, over 262144")
        with self._lock:
            self._values.update(values)
        total = len(json.dumps(self.visible(), ensure_ascii=False).encode())
        if total > MAX_TOTAL_BYTES:
            raise StatesError(RUNTIME, f"the workflow variables have {total} bytes, over the 10 MiB quota")


def lookup(variables: Mapping[str, Any] | None, name: str) -> Any:
    """Return a variable's value, or fail with ``States.Runtime`` when it is not defined at this point."""
    if variables is None or name not in variables:
        raise StatesError(RUNTIME, f"The variable '${name}' is not defined at this point of the workflow")
    return variables[name]

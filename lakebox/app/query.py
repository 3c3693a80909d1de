"""`lakebox query`: Athena SQL on the local catalog, as the lake's Athena or as a persona under its grants."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakebox.errors import LakeboxError
from lakebox.services import governance

if TYPE_CHECKING:
    from lakebox.box import Lakebox
    from lakebox.services.athena import QueryResult


def query(box: Lakebox, sql: str, *, workgroup: str | None = None, persona: str | None = None) -> QueryResult:
    """Run `sql` in `workgroup` (the persona's first, else AnalyticsWorkGroup, when None).

    As a persona, the workgroup and the statement are checked against its grants first, and every table the query
    resolves is authorized as Lake Formation would.
    """
    access = governance.access_for(box.stack, persona) if persona else None
    default = access.workgroups[0] if access is not None else str(box.stack.ref("AnalyticsWorkGroup"))
    chosen = workgroup or default
    known = [wg["Name"] for wg in box.session.client("athena").list_work_groups()["WorkGroups"]]
    if chosen not in known:
        raise LakeboxError(f"unknown workgroup {chosen!r} (workgroups: {', '.join(sorted(known))})")
    if access is None:
        return box.athena.query(sql, workgroup=chosen)
    governance.check_workgroup(access, chosen)
    database = str(box.stack.parameters.get("GlueDatabaseName", "default"))
    governance.check_statement(sql, access, database)
    engine = box.athena_as(access, database)
    try:
        return engine.query(sql, workgroup=chosen)
    finally:
        engine.close()

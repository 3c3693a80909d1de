"""Lake Formation's grants as the template declares them, and their enforcement on local Athena queries.

The template's `AWS::LakeFormation::PrincipalPermissions` resources are read as a matrix of role x zone x
permission (tables are in a zone by the LF-Tag ``zone``, which TagTableFunction assigns from their location; see
`datalake.governance.zone_of_table`). `lakebox query --as analyst` runs the query as the role tagged
``lake:persona=analyst`` and fails, as Athena does, on a table whose zone that role may not SELECT.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from datalake.governance import ZONES, Zone, zone_of_table
from lakebox.errors import LakeboxError

if TYPE_CHECKING:
    from lakebox.cfn.stack import Stack

PERSONA_TAG: Final = "lake:persona"
ZONE_BUCKETS: Final[Mapping[str, Zone]] = {
    "RawBucket": "raw",
    "ProcessedBucket": "processed",
    "CuratedBucket": "curated",
}
"""The template's bucket of each zone (their locations are registered with Lake Formation)."""
DATABASE: Final = "database"
ZONE_TAG: Final = "zone tag"
COLUMNS: Final[tuple[str, ...]] = (DATABASE, *ZONES, ZONE_TAG)
"""The columns of the grants matrix: the database, each zone's tables (and location), the LF-Tag itself."""
READ_STATEMENTS: Final = frozenset({"SELECT", "WITH", "VALUES", "SHOW", "DESCRIBE", "EXPLAIN", "("})


class AccessDeniedError(LakeboxError):
    """The persona may not do this: the message is the one Athena or IAM would give."""


@dataclass(frozen=True)
class Grant:
    """One PrincipalPermissions resource: who, on what (a column of the matrix), which permissions."""

    logical_id: str
    role: str
    columns: tuple[str, ...]
    permissions: frozenset[str]
    condition: str | None


def _target(value: Any) -> str | None:
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            return str(target[0] if isinstance(target, list) else str(target).split(".", 1)[0])
    return None


def _grant_columns(resource: Mapping[str, Any], logical_id: str) -> tuple[str, ...]:
    if "Database" in resource:
        return (DATABASE,)
    if "LFTagPolicy" in resource:
        zones: list[str] = []
        for term in resource["LFTagPolicy"].get("Expression", []):
            zones.extend(str(v) for v in term.get("TagValues", []))
        unknown = set(zones) - set(ZONES)
        if unknown:
            raise LakeboxError(f"{logical_id}: unknown zone tag values {sorted(unknown)}")
        return tuple(z for z in ZONES if z in zones)
    if "Table" in resource:
        if "TableWildcard" in resource["Table"]:
            return ZONES
        raise LakeboxError(f"{logical_id}: grants on named tables are not part of the zone model")
    if "DataLocation" in resource:
        bucket = _target(resource["DataLocation"].get("ResourceArn"))
        if bucket is None or bucket not in ZONE_BUCKETS:
            raise LakeboxError(f"{logical_id}: data location {bucket} is not a zone bucket")
        return (ZONE_BUCKETS[bucket],)
    if "LFTag" in resource:
        return (ZONE_TAG,)
    raise LakeboxError(f"{logical_id}: unknown Lake Formation resource {sorted(resource)}")


def grants(template: Mapping[str, Any]) -> list[Grant]:
    """Every Lake Formation grant of the template, principals named by their role's logical id."""
    found = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::LakeFormation::PrincipalPermissions":
            continue
        props = resource["Properties"]
        role = _target(props["Principal"]["DataLakePrincipalIdentifier"])
        if role is None:
            raise LakeboxError(f"{logical_id}: the principal must be a role of the template (!GetAtt Role.Arn)")
        found.append(
            Grant(
                logical_id=logical_id,
                role=role,
                columns=_grant_columns(props["Resource"], logical_id),
                permissions=frozenset(props["Permissions"]),
                condition=resource.get("Condition"),
            )
        )
    return found


def matrix(template: Mapping[str, Any]) -> dict[str, dict[str, frozenset[str]]]:
    """Role -> column (`COLUMNS`) -> permissions; a location grant shows as DATA_LOCATION_ACCESS in its zone."""
    table: dict[str, dict[str, frozenset[str]]] = {}
    for grant in grants(template):
        row = table.setdefault(grant.role, {})
        for column in grant.columns:
            row[column] = row.get(column, frozenset()) | grant.permissions
    return table


def personas(template: Mapping[str, Any]) -> dict[str, str]:
    """Persona name -> the logical id of its role (IAM roles tagged ``lake:persona``)."""
    found: dict[str, str] = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for tag in resource.get("Properties", {}).get("Tags", []):
            if tag.get("Key") == PERSONA_TAG:
                found[str(tag["Value"])] = logical_id
    return found


def _workgroups(role: Mapping[str, Any]) -> list[str]:
    """Logical ids of the workgroups a role's inline policies let it start queries in."""
    found: list[str] = []
    for policy in role.get("Properties", {}).get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            actions = statement.get("Action", [])
            if "athena:StartQueryExecution" not in (actions if isinstance(actions, list) else [actions]):
                continue
            resources = statement.get("Resource", [])
            for item in resources if isinstance(resources, list) else [resources]:
                text = item.get("Fn::Sub", "") if isinstance(item, dict) else str(item)
                found.extend(part.split("}", 1)[0] for part in str(text).split("${")[1:] if "WorkGroup" in part)
    return found


@dataclass(frozen=True)
class Access:
    """What one persona may read locally: its role, SELECT per zone, and its workgroups (physical names)."""

    persona: str
    role: str
    readable: frozenset[str]
    workgroups: tuple[str, ...]
    enforced: bool
    role_name: str = ""

    @property
    def principal_arn(self) -> str:
        """The assumed-role ARN Athena's and IAM's messages name."""
        return f"arn:aws:sts::123456789012:assumed-role/{self.role_name or self.role}/lakebox"


def access_for(stack: Stack, persona: str) -> Access:
    """The access of a persona in this deployment (grants whose Condition is false do not exist)."""
    roles = personas(stack.template)
    if persona not in roles:
        raise LakeboxError(f"no persona {persona!r} (personas: {', '.join(sorted(roles))})")
    role = roles[persona]
    readable: set[str] = set()
    for grant in grants(stack.template):
        active = grant.condition is None or stack.condition(grant.condition)
        if grant.role == role and active and "SELECT" in grant.permissions:
            readable.update(c for c in grant.columns if c in ZONES)
    enforced = any(
        stack.condition(r["Condition"]) if "Condition" in r else True
        for r in stack.resources.values()
        if r["Type"] == "AWS::LakeFormation::Resource"
    )
    workgroups = tuple(str(stack.ref(lid)) for lid in _workgroups(stack.resources[role]))
    return Access(persona, role, frozenset(readable), workgroups, enforced, str(stack.ref(role)))


def denial(name: str) -> str:
    """Athena's failure reason when Lake Formation refuses a table."""
    return (
        f"Insufficient Lake Formation permission(s) on {name} "
        "(Service: AmazonDataCatalog; Status Code: 400; Error Code: AccessDeniedException)"
    )


def authorizer(stack: Stack, access: Access) -> Callable[[str, str, dict[str, Any]], str | None]:
    """The AthenaEngine ``authorize`` callback enforcing `access` on every table and view a query resolves."""
    buckets = {str(stack.ref(lid)): zone for lid, zone in ZONE_BUCKETS.items()}

    def authorize(database: str, name: str, table: dict[str, Any]) -> str | None:
        if not access.enforced:
            return None
        zone = zone_of_table(table, buckets)
        return None if zone in access.readable else denial(name)

    return authorize


def check_statement(sql: str, access: Access, database: str) -> None:
    """Refuse what a reading persona may not run at all: writes and DDL (no CREATE_TABLE, INSERT, ALTER, DROP)."""
    head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
    if not access.enforced or head in READ_STATEMENTS or head.startswith("("):
        return
    try:
        ast = sqlglot.parse_one(sql, read="athena")
    except ParseError:
        return
    if isinstance(ast, exp.Create):
        raise AccessDeniedError(f"Insufficient Lake Formation permission(s): Required Create Table on {database}")
    target = ast.find(exp.Table)
    raise AccessDeniedError(denial(target.name if target is not None else database))


def check_workgroup(access: Access, workgroup: str) -> None:
    """IAM's refusal when the persona's role may not start queries in `workgroup`."""
    if workgroup not in access.workgroups:
        raise AccessDeniedError(
            f"User: {access.principal_arn} is not authorized to perform: athena:StartQueryExecution on resource: "
            f"arn:aws:athena:us-east-1:123456789012:workgroup/{workgroup} because no identity-based policy allows "
            "the athena:StartQueryExecution action"
        )

"""Lake Formation on the endpoint: the template's grants and the tables' zone tags, beside what moto keeps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from lakebox.services.serve import AwsRequest, AwsResponse, ServiceError, unsupported

if TYPE_CHECKING:
    import boto3

    from lakebox.cfn.stack import Stack

_MOTO_OPERATIONS: Final = frozenset(
    {
        "AddLFTagsToResource",
        "RemoveLFTagsFromResource",
        "CreateLFTag",
        "GetLFTag",
        "UpdateLFTag",
        "DeleteLFTag",
        "ListLFTags",
        "RegisterResource",
        "DeregisterResource",
        "DescribeResource",
        "ListResources",
        "GetDataLakeSettings",
        "PutDataLakeSettings",
        "GrantPermissions",
        "RevokePermissions",
        "BatchGrantPermissions",
        "BatchRevokePermissions",
    }
)
"""Operations moto carries out as Lake Formation does (the tagging function's AddLFTagsToResource among them)."""
_ZONE_TAG: Final = "zone"
_ZONE_BUCKETS: Final = {"RawBucket": "raw", "ProcessedBucket": "processed", "CuratedBucket": "curated"}


@dataclass
class LakeFormationApi:
    """Lake Formation's API (REST-JSON): ListPermissions and GetResourceLFTags answered here, the rest by moto.

    Parameters
    ----------
    stack
        The resolved template: its PrincipalPermissions and its zone buckets.
    session
        A session reaching the endpoint (Glue, for a table's location).
    moto_permissions
        The grants made on the endpoint since `up` (moto keeps them), in ListPermissions' shape.
    moto_table_tags
        The LF-Tags assigned on the endpoint to a table (database, name), if any.
    """

    stack: Stack
    session: boto3.Session
    moto_permissions: Callable[[], list[dict[str, Any]]]
    moto_table_tags: Callable[[str, str], list[dict[str, Any]] | None]
    signing_names: tuple[str, ...] = ("lakeformation",)
    target_prefixes: tuple[str, ...] = ()

    def handle(self, request: AwsRequest) -> AwsResponse | AwsRequest:
        """Answer ListPermissions and GetResourceLFTags; hand moto the operations it carries out faithfully."""
        operation = request.path.strip("/")
        if operation == "ListPermissions":
            return AwsResponse.of_json(self.list_permissions(request.json()), "application/json")
        if operation == "GetResourceLFTags":
            return AwsResponse.of_json(self.get_resource_lf_tags(request.json()), "application/json")
        if operation in _MOTO_OPERATIONS:
            return request
        raise unsupported("Lake Formation", operation or f"{request.method} {request.path}")

    def grants(self) -> list[dict[str, Any]]:
        """The template's PrincipalPermissions, resolved as CloudFormation creates them."""
        found = []
        for logical_id, resource in self.stack.resources.items():
            if resource["Type"] != "AWS::LakeFormation::PrincipalPermissions" or not self.stack.active(logical_id):
                continue
            raw = resource.get("Properties", {})
            props = {k: v for k, v in raw.items() if k != "Principal"}
            props = self.stack.resolve(props)
            found.append(
                {
                    "Principal": {"DataLakePrincipalIdentifier": self._principal(raw["Principal"])},
                    "Resource": props["Resource"],
                    "Permissions": list(props.get("Permissions", [])),
                    "PermissionsWithGrantOption": list(props.get("PermissionsWithGrantOption", [])),
                }
            )
        return found

    def _principal(self, principal: dict[str, Any]) -> str:
        """A grant's principal ARN; a role SAM generates (not in the template) is named as SAM names it."""
        from lakebox.cfn.stack import StackError

        identifier = principal.get("DataLakePrincipalIdentifier")
        try:
            return str(self.stack.resolve(identifier))
        except StackError:
            target = identifier.get("Fn::GetAtt") if isinstance(identifier, dict) else None
            logical_id = (target[0] if isinstance(target, list) else str(target).split(".", 1)[0]) if target else "role"
            account = str(self.stack.resolve({"Ref": "AWS::AccountId"}))
            return f"arn:aws:iam::{account}:role/{self.stack.stack_name}-{logical_id}"

    def list_permissions(self, params: dict[str, Any]) -> dict[str, Any]:
        """ListPermissions: the template's grants and those made since, filtered by principal and resource type."""
        principal = (params.get("Principal") or {}).get("DataLakePrincipalIdentifier")
        kind = params.get("ResourceType")
        wanted = params.get("Resource")
        items = []
        for grant in [*self.grants(), *self.moto_permissions()]:
            if principal and grant["Principal"].get("DataLakePrincipalIdentifier") != principal:
                continue
            if kind and _resource_type(grant["Resource"]) != kind:
                continue
            if wanted and not _covers(wanted, grant["Resource"]):
                continue
            items.append(grant)
        start = int(params.get("NextToken") or 0)
        size = int(params.get("MaxResults") or 100)
        response: dict[str, Any] = {"PrincipalResourcePermissions": items[start : start + size]}
        if start + size < len(items):
            response["NextToken"] = str(start + size)
        return response

    def get_resource_lf_tags(self, params: dict[str, Any]) -> dict[str, Any]:
        """GetResourceLFTags: a table's zone tag, as the tagging function gives it on AWS (or as assigned since)."""
        resource = params.get("Resource") or {}
        catalog = str(self.stack.resolve({"Ref": "AWS::AccountId"}))
        if "Database" in resource:
            return {"LFTagOnDatabase": []}
        table = resource.get("Table") or resource.get("TableWithColumns")
        if not table:
            raise ServiceError("InvalidInputException", "Resource must name a Database or a Table")
        database, name = str(table["DatabaseName"]), str(table["Name"])
        assigned = self.moto_table_tags(database, name)
        if assigned:
            return {"LFTagsOnTable": assigned}
        from botocore.exceptions import ClientError

        try:
            found = self.session.client("glue").get_table(DatabaseName=database, Name=name)["Table"]
        except ClientError as exc:
            raise ServiceError("EntityNotFoundException", f"Table {name} not found in database {database}.") from exc
        zone = self.zone_of(dict(found))
        tags = [{"CatalogId": catalog, "TagKey": _ZONE_TAG, "TagValues": [zone]}] if zone else []
        return {"LFTagsOnTable": tags}

    def zone_of(self, table: dict[str, Any]) -> str | None:
        """The zone the tagging function gives a table (datalake.governance.zone_of_table on the stack's buckets)."""
        from datalake.governance import zone_of_table

        buckets = {str(self.stack.ref(lid)): zone for lid, zone in _ZONE_BUCKETS.items() if lid in self.stack.resources}
        return zone_of_table(table, buckets)  # type: ignore[arg-type]


def _resource_type(resource: dict[str, Any]) -> str:
    if "Catalog" in resource:
        return "CATALOG"
    if "Database" in resource:
        return "DATABASE"
    if "Table" in resource or "TableWithColumns" in resource:
        return "TABLE"
    if "DataLocation" in resource:
        return "DATA_LOCATION"
    if "LFTag" in resource:
        return "LF_TAG"
    if "LFTagPolicy" in resource:
        return "LF_TAG_POLICY"
    return "UNKNOWN"


def _covers(wanted: dict[str, Any], granted: dict[str, Any]) -> bool:
    """Whether a grant is on the resource a ListPermissions call names (a table's grants include wildcards)."""
    if "Table" in wanted and "Table" in granted:
        want, have = wanted["Table"], granted["Table"]
        same_database = want.get("DatabaseName") == have.get("DatabaseName")
        return same_database and ("TableWildcard" in have or want.get("Name") == have.get("Name"))
    if "Database" in wanted and "Database" in granted:
        return bool(wanted["Database"].get("Name") == granted["Database"].get("Name"))
    return wanted == granted

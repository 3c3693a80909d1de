"""Lake Formation in the template: the grants matrix held to docs/governance.md, zones and the table tagger."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from datalake.aws import AwsClients
from datalake.exceptions import TerminalError
from datalake.governance import CatalogChange, tag_tables, zone_of_table
from datalake.settings import Settings
from lakebox.cfn.template import load_template
from lakebox.services import governance
from tests.conftest import load_event

ROOT = Path(__file__).resolve().parents[2]
BUCKETS = {"raw-b": "raw", "processed-b": "processed", "curated-b": "curated"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


def _documented_matrix() -> dict[str, dict[str, frozenset[str]]]:
    text = (ROOT / "docs" / "governance.md").read_text()
    block = text.split("<!-- grants-matrix:start -->", 1)[1].split("<!-- grants-matrix:end -->", 1)[0]
    lines = [line for line in block.strip().splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == ["role", "persona", *governance.COLUMNS]
    found: dict[str, dict[str, frozenset[str]]] = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        role = cells[0].strip("`")
        found[role] = {
            column: frozenset(p.strip() for p in cell.split(","))
            for column, cell in zip(governance.COLUMNS, cells[2:], strict=True)
            if cell != "\u2013"  # an en dash: no permission
        }
    return found


def test_documented_grants_matrix_is_the_templates(template: dict[str, Any]) -> None:
    # GIVEN the role x zone x permission table in docs/governance.md  THEN it is exactly the template's grants
    assert _documented_matrix() == governance.matrix(template)


def test_documented_personas_are_the_tagged_roles(template: dict[str, Any]) -> None:
    text = (ROOT / "docs" / "governance.md").read_text()
    documented = dict(re.findall(r"^\| `(\w+Role)` \| (analyst|ml|bi) \|", text, flags=re.MULTILINE))
    assert governance.personas(template) == {"analyst": "AnalystRole", "ml": "MlRole", "bi": "BiRole"}
    assert {v: k for k, v in documented.items()} == governance.personas(template)


def test_people_read_only_their_zones_and_never_raw(template: dict[str, Any]) -> None:
    grants = governance.matrix(template)
    readable = {
        persona: {zone for zone, perms in grants[role].items() if "SELECT" in perms}
        for persona, role in governance.personas(template).items()
    }
    assert readable == {"analyst": {"curated"}, "ml": {"processed", "curated"}, "bi": {"curated"}}
    for role in governance.personas(template).values():
        assert set().union(*grants[role].values()) <= {"SELECT", "DESCRIBE"}


def test_every_grant_is_a_tag_expression_except_describe_for_the_tagger_the_backup_and_the_planner(
    template: dict[str, Any],
) -> None:
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::LakeFormation::PrincipalPermissions":
            continue
        assert resource.get("Condition") == "UseLakeFormation", logical_id
        kinds = set(resource["Properties"]["Resource"])
        if "Table" in kinds:
            assert logical_id in (
                "TagTableTablePermissions",
                "BackupCatalogTablePermissions",
                "PlanCurationTablePermissions",
            )
            assert resource["Properties"]["Permissions"] == ["DESCRIBE"]


def test_pipeline_roles_write_only_their_own_zone(template: dict[str, Any]) -> None:
    grants = governance.matrix(template)
    writes = {"INSERT", "DELETE", "ALTER", "DROP"}
    zones_written = {
        role: {z for z, p in row.items() if p & writes and z != "database"} for role, row in grants.items()
    }
    assert zones_written["GlueJobRole"] == zones_written["EmrJobRole"] == {"raw", "processed"}
    # the Spark job declares the raw tables' schemas from the contracts (ADR 0016), and writes no raw data
    assert grants["GlueJobRole"]["raw"] == grants["EmrJobRole"]["raw"] == {"ALTER", "DATA_LOCATION_ACCESS", "DESCRIBE"}
    assert zones_written["PipelineStateMachineRole"] == {"curated"}
    assert zones_written["CrawlerRole"] == {"raw", "processed"}


@pytest.mark.parametrize(
    ("table", "zone"),
    [
        ({"StorageDescriptor": {"Location": "s3://raw-b/sales/"}}, "raw"),
        ({"StorageDescriptor": {"Location": "s3://processed-b/sales/"}}, "processed"),
        ({"StorageDescriptor": {"Location": "s3://curated-b/daily_sales_by_region/runs/r1/"}}, "curated"),
        ({"TableType": "VIRTUAL_VIEW", "StorageDescriptor": {"Location": ""}}, "processed"),
        ({"StorageDescriptor": {"Location": "s3://someone-elses/x/"}}, None),
        ({"StorageDescriptor": {"Location": "hdfs://raw-b/x"}}, None),
        ({}, None),
    ],
)
def test_zone_of_a_table_is_the_zone_of_its_locations_bucket(table: dict[str, Any], zone: str | None) -> None:
    assert zone_of_table(table, BUCKETS) == zone  # type: ignore[arg-type]


def test_sample_catalog_event_names_the_created_tables() -> None:
    change = CatalogChange.model_validate(load_event("tag_table/tables_created")["detail"])
    assert (change.database_name, change.type_of_change, change.changed_tables) == (
        "data_lake_db",
        "CreateTable",
        ["daily_sales_by_region"],
    )


@mock_aws
def test_tagger_tags_each_new_table_with_its_zone_and_skips_the_rest() -> None:
    # GIVEN the zone tag, a curated table, a table elsewhere, and a table already dropped again
    session = boto3.Session()
    glue, lakeformation = session.client("glue"), session.client("lakeformation")
    lakeformation.create_lf_tag(TagKey="zone", TagValues=["raw", "processed", "curated"])
    glue.create_database(DatabaseInput={"Name": "db"})
    for name, location in (("daily", "s3://curated-b/daily/runs/r1/"), ("elsewhere", "s3://other/x/")):
        glue.create_table(DatabaseName="db", TableInput={"Name": name, "StorageDescriptor": {"Location": location}})
    settings = Settings(raw_bucket="raw-b", processed_bucket="processed-b", curated_bucket="curated-b")
    # WHEN the tagger handles the creation event of the three
    tagged = tag_tables(AwsClients.from_session(session), settings, "db", ["daily", "elsewhere", "gone"])
    # THEN the curated table carries zone=curated; the others are reported, not failed
    assert [(t.table, t.zone, t.outcome) for t in tagged] == [
        ("daily", "curated", "tagged"),
        ("elsewhere", None, "outside the zones"),
        ("gone", None, "gone"),
    ]
    tags = lakeformation.get_resource_lf_tags(Resource={"Table": {"DatabaseName": "db", "Name": "daily"}})
    assert tags["LFTagsOnTable"] == [{"CatalogId": "123456789012", "TagKey": "zone", "TagValues": ["curated"]}]


@mock_aws
def test_tagger_fails_terminally_when_lake_formation_refuses_the_tag() -> None:
    session = boto3.Session()
    session.client("glue").create_database(DatabaseInput={"Name": "db"})
    session.client("glue").create_table(
        DatabaseName="db", TableInput={"Name": "t", "StorageDescriptor": {"Location": "s3://raw-b/t/"}}
    )
    settings = Settings(raw_bucket="raw-b", processed_bucket="processed-b", curated_bucket="curated-b")
    with pytest.raises(TerminalError, match=r"refused zone=raw on db.t: .*Tag or tag value does not exist"):
        tag_tables(AwsClients.from_session(session), settings, "db", ["t"])  # no zone tag was ever created


def _principals(role: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for statement in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
        service = statement.get("Principal", {}).get("Service", [])
        found.update(service if isinstance(service, list) else [service])
    return found


def _role_of(arn: Any) -> str:
    """The logical id of `!GetAtt X.Arn`, however the loader spells it."""
    target = arn["Fn::GetAtt"]
    return str(target[0] if isinstance(target, list) else target.split(".")[0])


def test_quicksight_reads_as_the_bi_persona_under_its_lake_formation_grants(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    # GIVEN the QuickSight data source WHEN the role it reads with is looked up
    (source,) = [r for r in resources.values() if r["Type"] == "AWS::QuickSight::DataSource"]
    role = _role_of(source["Properties"]["DataSourceParameters"]["AthenaParameters"]["RoleArn"])
    # THEN it is the bi persona's role, which Lake Formation grants the curated zone and nothing else
    assert role == governance.personas(template)["bi"]
    grants = governance.matrix(template)[role]
    assert {zone for zone, perms in grants.items() if "SELECT" in perms} == {"curated"}
    # AND it is the only role QuickSight can assume, and it reads no lake bucket directly (around the grants)
    assumable = [
        lid
        for lid, r in resources.items()
        if r["Type"] == "AWS::IAM::Role" and "quicksight.amazonaws.com" in _principals(r)
    ]
    assert assumable == [role]
    text = str(resources[role]["Properties"].get("Policies", []))
    for bucket in ("RawBucket", "ProcessedBucket", "CuratedBucket"):
        assert bucket not in text, bucket

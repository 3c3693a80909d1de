"""sql/named/ is the one source of the template's AWS::Athena::NamedQuery resources."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from lakebox.cfn.template import load_template

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("named_queries_script", ROOT / "scripts" / "named-queries.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_every_named_query_file_is_a_template_resource_with_its_exact_sql(generator: ModuleType) -> None:
    resources: dict[str, Any] = load_template(ROOT / "template.yaml")["Resources"]
    saved = {lid: r["Properties"] for lid, r in resources.items() if r["Type"] == "AWS::Athena::NamedQuery"}
    files = generator.read_named()
    assert len(files) == len(list((ROOT / "sql" / "named").glob("*.sql"))) > 0
    assert set(saved) == {q.logical_id for q in files}
    for query in files:
        props = saved[query.logical_id]
        assert props["QueryString"].strip() == query.sql
        assert (props["Name"], props["Description"]) == (query.name, query.description)
        assert props["WorkGroup"] == {"Ref": "AnalyticsWorkGroup"}
        assert props["Database"] == {"Ref": "GlueDatabaseName"}


def test_generator_check_passes_on_the_committed_template(generator: ModuleType) -> None:
    assert generator.main(["--check"]) == 0


def test_a_file_without_its_header_is_refused(generator: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "bare.sql").write_text("SELECT 1\n")
    with pytest.raises(SystemExit, match="no '-- description:' line"):
        generator.read_named(tmp_path)


def test_policy_export_resolves_every_intrinsic_of_the_templates_policies(tmp_path: Path) -> None:
    # GIVEN the IAM policy export the policy linter reads (on resources of the template that SAM does not transform)
    spec = importlib.util.spec_from_file_location("iam_policies_script", ROOT / "scripts" / "iam-policies.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    template = load_template(ROOT / "template.yaml")
    kept = ("AnalystRole", "PersonaCatalogReadPolicy", "DataLakeKey", "AnalyticsWorkGroup", "AthenaResultsBucket")
    template["Resources"] = {lid: template["Resources"][lid] for lid in kept}
    path = tmp_path / "subset.yaml"
    path.write_text(yaml.safe_dump(template))
    found = dict(module.policies(path))
    # THEN the people's roles, managed policies and resource policies are there, as plain JSON policy documents
    assert {"AnalystRole.analytics-workgroup", "PersonaCatalogReadPolicy.policy", "DataLakeKey.key-policy"} <= set(
        found
    )
    text = str(found)
    assert "Fn::" not in text and "'Ref'" not in text
    (query,) = [s for s in found["AnalystRole.analytics-workgroup"]["Statement"] if s["Sid"] == "QueryInTheWorkgroup"]
    assert query["Resource"] == "arn:aws:athena:us-east-1:123456789012:workgroup/lakebox-analytics"


def test_deploying_on_a_saved_lake_keeps_one_named_query_each() -> None:
    import boto3
    from moto import mock_aws

    from lakebox.cfn.provision import deploy, service_ids
    from lakebox.cfn.stack import Stack

    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        # GIVEN the stack deployed once, then deployed again on the same endpoint (a restart on a saved lake; before,
        # every start created each named query again)
        first = Stack(ROOT, service_ids=service_ids(session))
        deploy(first, session)
        second = Stack(ROOT, service_ids=service_ids(session))
        deploy(second, session)
        # WHEN the analytics workgroup's named queries are listed
        athena = session.client("athena")
        workgroup = str(second.ref("AnalyticsWorkGroup"))
        ids = athena.list_named_queries(WorkGroup=workgroup)["NamedQueryIds"]
        names = [athena.get_named_query(NamedQueryId=i)["NamedQuery"]["Name"] for i in ids]
        # THEN there is one per template resource, and the second deployment resolves each to the first one's id
        resources = load_template(ROOT / "template.yaml")["Resources"]
        declared = [lid for lid, r in resources.items() if r["Type"] == "AWS::Athena::NamedQuery"]
        assert sorted(names) == sorted(set(names)) and len(names) == len(declared)
        assert {lid: second.ref(lid) for lid in declared} == {lid: first.ref(lid) for lid in declared}

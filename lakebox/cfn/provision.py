"""The template's resources created on the local endpoint, in dependency order, as CloudFormation would."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from lakebox.cfn.artifacts import upload_glue_artifacts
from lakebox.cfn.stack import ServiceIds, Stack, StackError, env_str

if TYPE_CHECKING:
    import boto3


def service_ids(session: boto3.Session) -> ServiceIds:
    """The ids the endpoint gives a stack's KMS keys and EMR Serverless applications (created once, then found)."""

    def service_id(stack: Stack, kind: str, logical_id: str) -> str:
        if kind == "AWS::KMS::Key":
            return _kms_key(stack, session, logical_id)
        if kind == "AWS::EMRServerless::Application":
            return _emr_application(stack, session, logical_id)
        raise StackError(f"{logical_id} ({kind}): lakebox does not know how the endpoint names this resource")

    return service_id


def _kms_key(stack: Stack, session: boto3.Session, logical_id: str) -> str:
    kms = session.client("kms")
    description = f"{stack.stack_name}/{logical_id}"
    for key in kms.list_keys()["Keys"]:
        meta = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
        if meta.get("Description") == description:
            return str(key["KeyId"])
    key_id = kms.create_key(Description=description)["KeyMetadata"]["KeyId"]
    if stack._prop(logical_id, "EnableKeyRotation"):
        kms.enable_key_rotation(KeyId=key_id)
    return str(key_id)


def _emr_application(stack: Stack, session: boto3.Session, logical_id: str) -> str:
    client = session.client("emr-serverless")
    name = stack._prop(logical_id, "Name") or stack._generated_name(logical_id, 64)
    for app in client.list_applications()["applications"]:
        if app["name"] == name and app["state"] not in ("TERMINATED",):
            return str(app["id"])
    created = client.create_application(
        name=name,
        releaseLabel=stack._prop(logical_id, "ReleaseLabel") or "emr-7.5.0",
        type=stack._prop(logical_id, "Type") or "SPARK",
    )
    return str(created["applicationId"])


def deploy(stack: Stack, session: boto3.Session, progress: Callable[[str], None] | None = None) -> dict[str, list[str]]:
    """Create every resource lakebox emulates on the endpoint; return what was created and what was not."""
    report: dict[str, list[str]] = {"created": [], "not emulated": []}
    order = sorted(stack.resources, key=lambda lid: _CREATE_ORDER.get(stack.resources[lid]["Type"], 50))
    for logical_id in order:
        if not stack.active(logical_id):
            continue
        kind = stack.resources[logical_id]["Type"]
        creator = _CREATORS.get(kind)
        if creator is None:
            report["not emulated"].append(f"{logical_id} ({kind})")
            continue
        try:
            creator(stack, session, logical_id)
        except ClientError as exc:
            raise StackError(f"creating {logical_id} ({kind}): {exc}") from exc
        report["created"].append(logical_id)
        if progress:
            progress(logical_id)
    return report


def _create_bucket(stack: Stack, session: boto3.Session, lid: str) -> None:
    s3 = session.client("s3")
    name = stack.ref(lid)
    try:
        s3.head_bucket(Bucket=name)
    except ClientError:
        # Only a bucket that does not exist is created: in us-east-1 CreateBucket on an existing bucket succeeds,
        # and the local endpoint then replaces it with an empty one (a saved lake would lose its objects).
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=name)
    versioning = stack._prop(lid, "VersioningConfiguration", "Status")
    if versioning:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": versioning})
    encryption = stack._prop(lid, "BucketEncryption")
    if encryption:
        rules = [
            {
                "ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"],
                **({"BucketKeyEnabled": rule["BucketKeyEnabled"]} if "BucketKeyEnabled" in rule else {}),
            }
            for rule in encryption["ServerSideEncryptionConfiguration"]
        ]
        configuration: Any = {"Rules": rules}
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=configuration)


def _create_table(stack: Stack, session: boto3.Session, lid: str) -> None:
    client = session.client("dynamodb")
    props = stack.resolve(stack.resources[lid].get("Properties", {}))
    name = stack.ref(lid)
    kwargs: dict[str, Any] = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": props.get("BillingMode", "PROVISIONED"),
    }
    if kwargs["BillingMode"] == "PROVISIONED":
        kwargs["ProvisionedThroughput"] = props.get(
            "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
        )
    if props.get("GlobalSecondaryIndexes"):
        kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    with contextlib.suppress(client.exceptions.ResourceInUseException):
        client.create_table(**kwargs)
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            client.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)


def _create_queue(stack: Stack, session: boto3.Session, lid: str) -> None:
    session.client("sqs").create_queue(QueueName=stack.get_att(lid, "QueueName"))


def _create_topic(stack: Stack, session: boto3.Session, lid: str) -> None:
    session.client("sns").create_topic(Name=stack.get_att(lid, "TopicName"))


def _create_stream(stack: Stack, session: boto3.Session, lid: str) -> None:
    kinesis = session.client("kinesis")
    shards = stack._prop(lid, "ShardCount")
    with contextlib.suppress(kinesis.exceptions.ResourceInUseException):
        kinesis.create_stream(StreamName=stack.ref(lid), ShardCount=int(shards or 1))


def _create_glue_database(stack: Stack, session: boto3.Session, lid: str) -> None:
    glue = session.client("glue")
    database = stack._prop(lid, "DatabaseInput")
    with contextlib.suppress(glue.exceptions.AlreadyExistsException):
        glue.create_database(DatabaseInput=database)


def _create_crawler(stack: Stack, session: boto3.Session, lid: str) -> None:
    glue = session.client("glue")
    props = stack.resolve(stack.resources[lid].get("Properties", {}))
    kwargs = {k: v for k, v in props.items() if k in _CRAWLER_KEYS}
    kwargs["Name"] = stack.ref(lid)
    with contextlib.suppress(glue.exceptions.AlreadyExistsException):
        glue.create_crawler(**kwargs)


_CRAWLER_KEYS = {
    "Role",
    "DatabaseName",
    "Targets",
    "TablePrefix",
    "SchemaChangePolicy",
    "Configuration",
    "RecrawlPolicy",
    "Description",
    "Schedule",
    "CrawlerSecurityConfiguration",
}


def _create_job(stack: Stack, session: boto3.Session, lid: str) -> None:
    """Create a Glue job, uploading its script to the artifacts bucket as `sam package` or the deploy step would.

    A local script path is uploaded as `sam package` does; a script in the artifacts bucket means the project's
    job artifacts (`glue/*.py`, `glue/datalake.zip`), which scripts/package-artifacts.py uploads after `sam deploy`.
    """
    glue = session.client("glue")
    props = stack.resolve(stack.resources[lid].get("Properties", {}))
    command = dict(props["Command"])
    script = str(command.get("ScriptLocation", ""))
    artifacts = stack.artifacts_bucket()
    if script and not script.startswith("s3://"):
        command["ScriptLocation"] = package_file(session, stack, script)
    elif artifacts is not None and script.startswith(f"s3://{artifacts}/"):
        upload_glue_artifacts(session, artifacts)
    kwargs = {k: v for k, v in props.items() if k in _JOB_KEYS}
    # DefaultArguments is a map of strings: CloudFormation passes a number (a `!Ref` to a Number parameter) as text.
    if "DefaultArguments" in kwargs:
        kwargs["DefaultArguments"] = {name: env_str(value) for name, value in kwargs["DefaultArguments"].items()}
    kwargs.update(Name=stack.ref(lid), Command=command, Role=props.get("Role", "lakebox"))
    try:
        glue.create_job(**kwargs)
    except glue.exceptions.AlreadyExistsException:
        # A job of a saved lake: bring its definition up to this deployment's parameters, as a stack update would.
        name = kwargs.pop("Name")
        glue.update_job(JobName=name, JobUpdate=kwargs)  # type: ignore[arg-type]


_JOB_KEYS = {
    "Description",
    "DefaultArguments",
    "GlueVersion",
    "MaxRetries",
    "Timeout",
    "WorkerType",
    "NumberOfWorkers",
    "ExecutionProperty",
    "SecurityConfiguration",
    "Tags",
    "MaxCapacity",
}


def _create_workgroup(stack: Stack, session: boto3.Session, lid: str) -> None:
    athena = session.client("athena")
    props = stack.resolve(stack.resources[lid].get("Properties", {}))
    configuration = props.get("WorkGroupConfiguration", {})
    with contextlib.suppress(ClientError):
        athena.create_work_group(
            Name=props["Name"], Configuration=configuration, Description=props.get("Description", "")
        )


def _create_named_query(stack: Stack, session: boto3.Session, lid: str) -> None:
    """Create the named query, or take the one a saved lake already holds (same workgroup, name, database and SQL)."""
    props = stack.resolve(stack.resources[lid].get("Properties", {}))
    athena = session.client("athena")
    wanted = {
        "Name": props["Name"],
        "Description": props.get("Description", ""),
        "Database": props["Database"],
        "QueryString": props["QueryString"],
        "WorkGroup": props.get("WorkGroup", "primary"),
    }
    query_id = _saved_named_query(athena, wanted)
    if query_id is None:
        query_id = athena.create_named_query(**wanted)["NamedQueryId"]
    stack._created[lid] = {"Ref": query_id, "NamedQueryId": query_id}


def _saved_named_query(athena: Any, wanted: dict[str, str]) -> str | None:
    """The id of a named query of the workgroup that is `wanted` already (a restart on a saved lake), else None."""
    for page in athena.get_paginator("list_named_queries").paginate(WorkGroup=wanted["WorkGroup"]):
        for query_id in page.get("NamedQueryIds", []):
            saved = athena.get_named_query(NamedQueryId=query_id)["NamedQuery"]
            if all(saved.get(k) == wanted[k] for k in ("Name", "Database", "QueryString")):
                return str(query_id)
    return None


def _create_lf_tag(stack: Stack, session: boto3.Session, lid: str) -> None:
    lakeformation = session.client("lakeformation")
    props = stack.resolve(stack.resources[lid].get("Properties", {}))
    with contextlib.suppress(lakeformation.exceptions.AlreadyExistsException):
        lakeformation.create_lf_tag(TagKey=props["TagKey"], TagValues=props["TagValues"])
    stack._created[lid] = {"Ref": props["TagKey"]}


def package_file(session: boto3.Session, stack: Stack, relative: str) -> str:
    """Upload a local file the template names to the artifacts bucket, as `sam package` does; its s3:// URI."""
    bucket = stack.artifacts_bucket()
    if bucket is None:
        raise StackError(f"cannot package {relative}: the template has no artifacts bucket")
    path = stack.root / relative
    if not path.exists():
        raise StackError(f"cannot package {relative}: no such file")
    key = f"lakebox-package/{relative}"
    session.client("s3").upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}"


def _noop(stack: Stack, session: boto3.Session, lid: str) -> None:
    stack._physical(lid)


_CREATORS: dict[str, Callable[[Stack, boto3.Session, str], None]] = {
    "AWS::KMS::Key": _noop,
    "AWS::S3::Bucket": _create_bucket,
    "AWS::DynamoDB::Table": _create_table,
    "AWS::SQS::Queue": _create_queue,
    "AWS::SNS::Topic": _create_topic,
    "AWS::Kinesis::Stream": _create_stream,
    "AWS::Glue::Database": _create_glue_database,
    "AWS::Glue::Crawler": _create_crawler,
    "AWS::Glue::Job": _create_job,
    "AWS::Athena::WorkGroup": _create_workgroup,
    "AWS::LakeFormation::Tag": _create_lf_tag,
    "AWS::Athena::NamedQuery": _create_named_query,
    "AWS::EMRServerless::Application": _noop,
    "AWS::Serverless::Function": _noop,
    "AWS::Serverless::StateMachine": _noop,
}
_CREATE_ORDER = {"AWS::KMS::Key": 0, "AWS::S3::Bucket": 10, "AWS::Glue::Database": 20, "AWS::Athena::NamedQuery": 60}


def deploy_time_parameters(stack: Stack) -> set[str]:
    """Parameters that reach resources created on the endpoint, or the conditions deciding which exist (fixed
    when the stack comes up).

    Functions and state machines are resolved by each command from its own parameters; everything else (jobs,
    buckets, tables, crawlers) is created once, by the box that owns the endpoint.
    """
    names = set(stack.parameters)
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "Ref" and isinstance(value, str) and value in names:
                    found.add(value)
                elif key == "Fn::Sub":
                    text = value[0] if isinstance(value, list) else value
                    found.update(n for n in re.findall(r"\$\{([^}!.]+)\}", str(text)) if n in names)
                    if isinstance(value, list):
                        walk(value[1])
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for resource in stack.resources.values():
        if resource["Type"] not in (
            "AWS::Serverless::Function",
            "AWS::Lambda::Function",
            "AWS::Serverless::StateMachine",
            "AWS::StepFunctions::StateMachine",
        ):
            walk(resource.get("Properties", {}))
    walk(stack.template.get("Conditions", {}))  # conditions decide which resources exist at all
    return found

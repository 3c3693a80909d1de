"""Security and wiring properties of template.yaml, asserted on the parsed template."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lakebox.cfn.template import load_template

ROOT = Path(__file__).resolve().parents[2]
T_EVAL = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)

Template = dict[str, Any]
Statement = dict[str, Any]

LOG_BUCKET = "AccessLogsBucket"
STATEFUL_TYPES = (
    "AWS::S3::Bucket",
    "AWS::DynamoDB::Table",
    "AWS::KMS::Key",
    "AWS::SQS::Queue",
    "AWS::Logs::LogGroup",
    "AWS::Kinesis::Stream",
    "AWS::Glue::Database",
)
# Actions that have no resource-level scope in IAM, so `Resource: "*"` is the narrowest there is.
UNSCOPED_ACTIONS = frozenset(
    {
        "lakeformation:GetDataAccess",
        "cloudwatch:PutMetricData",
        "ecr:GetAuthorizationToken",
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DeleteNetworkInterface",
        "ec2:DescribeVpcs",
        "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups",
        "glue:GetSecurityConfiguration",
        "lakeformation:AddLFTagsToResource",
        "lakeformation:GetResourceLFTags",
    }
)


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template(ROOT / "template.yaml")


def _resources(template: Template, *types: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] in types}


def _target(value: Any) -> str | None:
    """The logical id a `Ref` or `Fn::GetAtt` points at, else None."""
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            return str(value["Fn::GetAtt"][0])
    return None


def _sub_text(value: Any) -> str:
    """The text of a plain string or an `Fn::Sub` template."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return str(sub[0] if isinstance(sub, list) else sub)
    return ""


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _documents(policy: Any) -> Iterator[dict[str, Any]]:
    """Policy documents in an entry of a SAM `Policies` list, both branches of an `Fn::If` included."""
    if isinstance(policy, dict) and "Fn::If" in policy:
        for branch in policy["Fn::If"][1:]:
            yield from _documents(branch)
    elif isinstance(policy, dict) and "Statement" in policy:
        yield policy


def iam_statements(template: Template) -> Iterator[tuple[str, Statement]]:
    """Every statement of an identity policy: IAM roles and policies, and inline SAM `Policies`."""
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        kind = resource["Type"]
        documents: list[dict[str, Any]] = []
        if kind == "AWS::IAM::Role":
            documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
        elif kind in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
            documents = [props["PolicyDocument"]]
        elif kind in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
            documents = [d for p in _as_list(props.get("Policies", [])) for d in _documents(p)]
        for document in documents:
            for statement in _as_list(document["Statement"]):
                yield name, statement


def resource_policy_statements(template: Template) -> Iterator[tuple[str, Statement]]:
    """Every statement of a resource policy: buckets, queues, topics and the key."""
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        document = props.get("PolicyDocument") if resource["Type"].endswith("Policy") else None
        if resource["Type"] == "AWS::KMS::Key":
            document = props["KeyPolicy"]
        if document is not None and resource["Type"] not in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
            for statement in _as_list(document["Statement"]):
                yield name, statement


def service_wide_actions(statement: Statement) -> list[str]:
    """The actions of an Allow statement that grant everything (`*`) or everything of a service (`s3:*`)."""
    if statement.get("Effect") != "Allow":
        return []
    actions = [str(a) for a in _as_list(statement.get("Action", []))]
    return [a for a in actions if a == "*" or a.endswith(":*")]


def bucket_policy(template: Template, bucket: str) -> dict[str, Any]:
    policies = [
        r["Properties"]["PolicyDocument"]
        for r in _resources(template, "AWS::S3::BucketPolicy").values()
        if _target(r["Properties"]["Bucket"]) == bucket
    ]
    assert len(policies) == 1, f"{bucket} has {len(policies)} bucket policies"
    return policies[0]


# ------------------------------------------------------------------------------------------------------- buckets


def test_template_has_the_eight_buckets_of_the_lake(template: Template) -> None:
    # GIVEN the template WHEN its buckets are listed THEN they are the zones, results, artifacts, logs and audit
    assert set(_resources(template, "AWS::S3::Bucket")) == {
        "AuditBucket",
        "AccessLogsBucket",
        "LandingBucket",
        "RawBucket",
        "ProcessedBucket",
        "CuratedBucket",
        "AthenaResultsBucket",
        "ArtifactsBucket",
    }


def test_every_bucket_but_the_log_bucket_encrypts_with_the_data_lake_key(template: Template) -> None:
    # GIVEN every bucket except the access-log destination
    for name, bucket in _resources(template, "AWS::S3::Bucket").items():
        if name == LOG_BUCKET:
            continue
        # WHEN its default encryption is read
        (rule,) = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        default = rule["ServerSideEncryptionByDefault"]
        # THEN it is SSE-KMS with DataLakeKey and an S3 bucket key
        assert default["SSEAlgorithm"] == "aws:kms", name
        assert _target(default["KMSMasterKeyID"]) == "DataLakeKey", name
        assert rule["BucketKeyEnabled"] is True, name


def test_access_log_bucket_uses_sse_s3_as_server_access_logging_requires(template: Template) -> None:
    # GIVEN the access-log bucket (S3 server access logging cannot deliver to SSE-KMS buckets)
    bucket = template["Resources"][LOG_BUCKET]["Properties"]
    # WHEN its default encryption is read
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    # THEN it is SSE-S3
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}


def test_every_bucket_is_versioned_private_and_owner_enforced(template: Template) -> None:
    for name, bucket in _resources(template, "AWS::S3::Bucket").items():
        # GIVEN a bucket WHEN its access settings are read
        props = bucket["Properties"]
        # THEN versioning is on, every public access block is set and ACLs are disabled
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}, name
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, name
        assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}, name


def test_every_bucket_has_a_policy_denying_insecure_transport(template: Template) -> None:
    for name in _resources(template, "AWS::S3::Bucket"):
        # GIVEN a bucket WHEN its bucket policy is read
        statements = _as_list(bucket_policy(template, name)["Statement"])
        # THEN one statement denies every request over plain HTTP on the bucket and its objects
        denies = [
            s
            for s in statements
            if s["Effect"] == "Deny"
            and s["Principal"] == "*"
            and s["Action"] == "s3:*"
            and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert len(denies) == 1, name
        covered = {_target(r) or _sub_text(r) for r in _as_list(denies[0]["Resource"])}
        assert covered == {name, f"${{{name}.Arn}}/*"}, name


def test_every_bucket_but_the_log_bucket_logs_to_it_under_its_own_prefix(template: Template) -> None:
    prefixes = []
    for name, bucket in _resources(template, "AWS::S3::Bucket").items():
        if name == LOG_BUCKET:
            continue
        # GIVEN a bucket WHEN its logging configuration is read
        logging = bucket["Properties"]["LoggingConfiguration"]
        # THEN it delivers to AccessLogsBucket, after the bucket policy that admits the delivery exists
        assert _target(logging["DestinationBucketName"]) == LOG_BUCKET, name
        assert bucket["DependsOn"] == "AccessLogsBucketPolicy", name
        prefixes.append(logging["LogFilePrefix"])
    # AND no two buckets share a prefix
    assert len(prefixes) == len(set(prefixes)) == 7
    assert all(p.endswith("/") for p in prefixes)


def test_access_log_bucket_admits_log_delivery_only_from_this_account(template: Template) -> None:
    # GIVEN the access-log bucket's policy
    statements = _as_list(bucket_policy(template, LOG_BUCKET)["Statement"])
    # WHEN its Allow statements are read
    allows = [s for s in statements if s["Effect"] == "Allow"]
    # THEN the only grant is PutObject to S3's log delivery, conditioned on this account
    assert len(allows) == 1
    (allow,) = allows
    assert allow["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert allow["Action"] == "s3:PutObject"
    assert allow["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def _rules(template: Template, bucket: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = template["Resources"][bucket]["Properties"]["LifecycleConfiguration"]["Rules"]
    return rules


def test_lifecycle_rules_follow_the_retention_parameters(template: Template) -> None:
    # GIVEN the lifecycle rules of every bucket
    # WHEN they are read THEN each bucket expires noncurrent versions and aborts stale multipart uploads
    for name in _resources(template, "AWS::S3::Bucket"):
        rules = [r for r in _rules(template, name) if r["Status"] == "Enabled"]
        assert any(
            r.get("NoncurrentVersionExpiration") == {"NoncurrentDays": {"Ref": "NoncurrentVersionExpirationDays"}}
            for r in rules
        ), name
        assert any("AbortIncompleteMultipartUpload" in r for r in rules), name
    # AND landing objects and Athena results expire, raw objects move to Glacier, after their parameters' days
    expiries = {
        n: [r.get("ExpirationInDays") for r in _rules(template, n)] for n in ("LandingBucket", "AthenaResultsBucket")
    }
    assert {"Ref": "LandingExpirationDays"} in expiries["LandingBucket"]
    assert {"Ref": "AthenaResultsExpirationDays"} in expiries["AthenaResultsBucket"]
    transitions = [t for r in _rules(template, "RawBucket") for t in r.get("Transitions", [])]
    assert transitions == [{"StorageClass": "GLACIER", "TransitionInDays": {"Ref": "RawTransitionToGlacierDays"}}]
    # AND processed event data (every registered dataset but reference data, and its rollups), catalog backups and
    # audit logs expire after theirs; reference data is kept
    from datalake.contracts import REGISTRY

    processed = {r.get("Prefix"): r.get("ExpirationInDays") for r in _rules(template, "ProcessedBucket")}
    assert processed == {
        **{f"{d.name}/": {"Ref": "ProcessedRetentionDays"} for d in REGISTRY.values() if not d.keep_versions},
        **{
            f"{r.name}/": {"Ref": "ProcessedRetentionDays"}
            for d in REGISTRY.values()
            if not d.keep_versions
            for r in d.rollups
        },
        None: None,
    }
    assert {"sales/", "clickstream/"} <= set(processed) and "products/" not in processed
    artifacts = {r.get("Prefix"): r.get("ExpirationInDays") for r in _rules(template, "ArtifactsBucket")}
    assert artifacts["catalog-backups/"] == {"Ref": "CatalogBackupRetentionDays"}
    assert [r["ExpirationInDays"] for r in _rules(template, "AuditBucket")] == [{"Ref": "AuditLogRetentionDays"}]


def test_audit_trail_is_validated_encrypted_and_records_the_lakes_object_events(template: Template) -> None:
    trail = template["Resources"]["AuditTrail"]
    assert trail["Condition"] == "UseCloudTrail"
    props = trail["Properties"]
    assert props["EnableLogFileValidation"] is True and props["IsMultiRegionTrail"] is True
    assert props["KMSKeyId"] == {"Fn::GetAtt": ["DataLakeKey", "Arn"]}
    assert props["S3BucketName"] == {"Ref": "AuditBucket"}
    (selector,) = props["EventSelectors"]
    assert selector["ReadWriteType"] == "All" and selector["IncludeManagementEvents"] is True
    buckets = {v["Fn::Sub"].split(".Arn}")[0].lstrip("${") for v in selector["DataResources"][0]["Values"]}
    assert buckets == {"LandingBucket", "RawBucket", "ProcessedBucket", "CuratedBucket", "ArtifactsBucket"}
    # AND only this trail may write to the audit bucket, only under AWSLogs/<account>/
    statements = template["Resources"]["AuditBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    (write,) = [s for s in statements if s.get("Action") == "s3:PutObject"]
    assert write["Principal"] == {"Service": "cloudtrail.amazonaws.com"}
    assert "aws:SourceArn" in write["Condition"]["StringEquals"]


def test_raw_and_curated_replicate_only_when_the_replica_buckets_are_given(template: Template) -> None:
    for name in ("RawBucket", "CuratedBucket"):
        replication = template["Resources"][name]["Properties"]["ReplicationConfiguration"]
        condition, when_true, when_false = replication["Fn::If"]
        assert condition == "ReplicateZones" and when_false == {"Ref": "AWS::NoValue"}
        (rule,) = when_true["Rules"]
        assert rule["SourceSelectionCriteria"] == {"SseKmsEncryptedObjects": {"Status": "Enabled"}}
        assert rule["Destination"]["EncryptionConfiguration"] == {"ReplicaKmsKeyID": {"Ref": "ReplicaKmsKeyArn"}}
    assert template["Resources"]["ReplicationRole"]["Condition"] == "ReplicateZones"


def test_landing_bucket_sends_events_that_the_ingest_rule_matches(template: Template) -> None:
    # GIVEN the landing bucket and the ingest function's EventBridge rule
    landing = template["Resources"]["LandingBucket"]["Properties"]
    event = template["Resources"]["IngestFileFunction"]["Properties"]["Events"]["LandingObjectCreated"]
    # WHEN they are read
    pattern = event["Properties"]["Pattern"]
    # THEN landing notifies EventBridge and the rule selects its "Object Created" events, with retries and a DLQ
    assert landing["NotificationConfiguration"] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}
    assert event["Type"] == "EventBridgeRule"
    assert pattern["source"] == ["aws.s3"]
    assert pattern["detail-type"] == ["Object Created"]
    assert [_target(n) for n in pattern["detail"]["bucket"]["name"]] == ["LandingBucket"]
    assert event["Properties"]["RetryPolicy"] == {"MaximumRetryAttempts": 4, "MaximumEventAgeInSeconds": 3600}
    assert _target(event["Properties"]["DeadLetterConfig"]["Arn"]) == "IngestEventsDeadLetterQueue"


# ------------------------------------------------------------------------------------------ other stateful data


def test_every_dynamodb_table_has_point_in_time_recovery_and_kms_encryption(template: Template) -> None:
    tables = _resources(template, "AWS::DynamoDB::Table")
    assert set(tables) == {"IdempotencyTable", "ManifestsTable", "RunsTable", "WatermarksTable"}
    for name, table in tables.items():
        # GIVEN a table WHEN its protection is read
        props = table["Properties"]
        # THEN it has point-in-time recovery and SSE with DataLakeKey
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}, name
        sse = props["SSESpecification"]
        assert sse["SSEEnabled"] is True, name
        assert sse["SSEType"] == "KMS", name
        assert _target(sse["KMSMasterKeyId"]) == "DataLakeKey", name
    # AND the idempotency table expires its records on `expiration`
    ttl = tables["IdempotencyTable"]["Properties"]["TimeToLiveSpecification"]
    assert ttl == {"AttributeName": "expiration", "Enabled": True}


def test_every_stateful_resource_is_retained_on_delete_and_replace(template: Template) -> None:
    for name, resource in _resources(template, *STATEFUL_TYPES).items():
        # GIVEN a resource that holds data WHEN its policies are read THEN deleting the stack keeps the data
        assert resource.get("DeletionPolicy") == "Retain", name
        assert resource.get("UpdateReplacePolicy") == "Retain", name


def test_queues_topics_and_streams_are_encrypted_with_the_data_lake_key(template: Template) -> None:
    # GIVEN every queue, topic and stream
    queues = _resources(template, "AWS::SQS::Queue")
    topics = _resources(template, "AWS::SNS::Topic")
    streams = _resources(template, "AWS::Kinesis::Stream")
    assert queues and topics and streams
    # WHEN their encryption is read THEN it is DataLakeKey
    for name, queue in queues.items():
        assert _target(queue["Properties"]["KmsMasterKeyId"]) == "DataLakeKey", name
    for name, topic in topics.items():
        assert _target(topic["Properties"]["KmsMasterKeyId"]) == "DataLakeKey", name
    for name, stream in streams.items():
        encryption = stream["Properties"]["StreamEncryption"]
        assert encryption["EncryptionType"] == "KMS", name
        assert _target(encryption["KeyId"]) == "DataLakeKey", name


def test_every_log_group_is_encrypted_and_has_retention(template: Template) -> None:
    groups = _resources(template, "AWS::Logs::LogGroup")
    assert groups
    for name, group in groups.items():
        # GIVEN a log group WHEN its settings are read THEN it is encrypted with DataLakeKey and expires
        props = group["Properties"]
        assert _target(props["KmsKeyId"]) == "DataLakeKey", name
        assert props["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name


def test_kms_key_rotates_and_only_the_account_holds_every_key_action(template: Template) -> None:
    # GIVEN the data lake key
    key = template["Resources"]["DataLakeKey"]["Properties"]
    # WHEN its policy is read
    statements = _as_list(key["KeyPolicy"]["Statement"])
    wide = [s for s in statements if service_wide_actions(s)]
    # THEN it rotates, and `kms:*` goes to the account root alone (delegating to IAM), services get key use only
    assert key["EnableKeyRotation"] is True
    assert len(wide) == 1
    assert wide[0]["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
    services = [s for s in statements if "Service" in s["Principal"]]
    assert services
    for statement in services:
        assert all(a.startswith("kms:") and not a.endswith("*") for a in _as_list(statement["Action"]))
    # AND CloudWatch Logs may use it only for this account's log groups
    (logs,) = [s for s in services if "logs" in _sub_text(s["Principal"]["Service"])]
    context = logs["Condition"]["StringLike"]["kms:EncryptionContext:aws:logs:arn"]
    assert _sub_text(context).startswith("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:")


# ------------------------------------------------------------------------------------------------------ functions


def test_every_function_logs_to_its_own_encrypted_log_group_and_is_traced(template: Template) -> None:
    functions = _resources(template, "AWS::Serverless::Function")
    globals_ = template["Globals"]["Function"]
    assert globals_["Tracing"] == "Active"
    assert _target(globals_["KmsKeyArn"]) == "DataLakeKey"
    groups = _resources(template, "AWS::Logs::LogGroup")
    used = []
    for name, function in functions.items():
        # GIVEN a function WHEN its logging and tracing are read
        props = function["Properties"]
        group = _target(props["LoggingConfig"]["LogGroup"])
        # THEN it logs to `<Function>LogGroup`, which exists exactly when the function does, and traces with X-Ray
        assert group == f"{name}LogGroup", name
        assert group in groups, name
        assert groups[group].get("Condition") == function.get("Condition"), name
        assert props.get("Tracing", "Active") == "Active", name
        used.append(group)
    assert len(used) == len(set(used))


def test_every_function_code_directory_has_a_requirements_file(template: Template) -> None:
    # GIVEN every function and layer WHEN its code directory is looked up THEN `sam build` finds its manifest there
    uris = [f["Properties"]["CodeUri"] for f in _resources(template, "AWS::Serverless::Function").values()]
    uris += [
        layer["Properties"]["ContentUri"] for layer in _resources(template, "AWS::Serverless::LayerVersion").values()
    ]
    for uri in uris:
        assert (ROOT / uri / "requirements.txt").is_file(), uri


def test_ingest_file_function_retries_boundedly_and_keeps_failures(template: Template) -> None:
    # GIVEN the file ingestion function WHEN its async invocation settings are read
    props = template["Resources"]["IngestFileFunction"]["Properties"]
    invoke = props["EventInvokeConfig"]
    # THEN it retries twice and sends what still fails to the encrypted IngestFailureQueue
    assert invoke["MaximumRetryAttempts"] == 2
    assert invoke["DestinationConfig"]["OnFailure"]["Type"] == "SQS"
    assert _target(invoke["DestinationConfig"]["OnFailure"]["Destination"]) == "IngestFailureQueue"
    assert props["Handler"] == "app.lambda_handler"
    assert props["CodeUri"] == "functions/ingest_file/"


def test_spark_job_auto_scales_to_parameterised_workers_without_glue_level_retries(template: Template) -> None:
    # GIVEN the raw -> processed Glue job and the parameters that size it (docs/scaling.md)
    props = template["Resources"]["RawToProcessedJob"]["Properties"]
    parameters = template["Parameters"]
    # WHEN its capacity settings are read
    arguments = props["DefaultArguments"]
    # THEN worker type and the most workers come from parameters, and Glue scales between them (Glue 3.0 and later)
    assert props["WorkerType"] == {"Ref": "GlueWorkerType"}
    assert props["NumberOfWorkers"] == {"Ref": "GlueMaxWorkers"}
    assert arguments["--enable-auto-scaling"] == "true"
    assert float(props["GlueVersion"]) >= 3.0
    assert parameters["GlueWorkerType"]["Default"] in parameters["GlueWorkerType"]["AllowedValues"]
    assert {"G.1X", "G.2X"} <= set(parameters["GlueWorkerType"]["AllowedValues"])
    assert parameters["GlueMaxWorkers"]["MinValue"] >= 2 <= parameters["GlueMaxWorkers"]["Default"]
    # AND a failed run is not retried by Glue behind the state machine's back (startJobRun.sync follows one run)
    assert props["MaxRetries"] == 0


def _stem(name: str) -> str:
    """A dataset name as the template's logical ids spell it: `page_views` -> `PageViews`."""
    return "".join(part.capitalize() for part in name.split("_"))


def _stream_datasets(template: Template) -> dict[str, str]:
    """The template's stream-delivered datasets: logical-id stem -> dataset name (the StreamDatasets mapping)."""
    return {stem: entry["Dataset"] for stem, entry in template["Mappings"]["StreamDatasets"].items()}


def _loops(value: Any) -> Iterator[tuple[str, list[Any]]]:
    """Every `Fn::ForEach` loop of a template as written: (loop name, [identifier, collection, fragment])."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and key.startswith("Fn::ForEach::"):
                yield key, item
            yield from _loops(item)
    elif isinstance(value, list):
        for item in value:
            yield from _loops(item)


def test_the_templates_stream_datasets_are_the_registrys() -> None:
    # GIVEN the template as written (loops unexpanded) and the registry's stream-delivered datasets
    import yaml

    from datalake.contracts import Delivery, delivered_by
    from lakebox.cfn.template import _CfnLoader

    written = yaml.load((ROOT / "template.yaml").read_text(encoding="utf-8"), Loader=_CfnLoader)
    registry = sorted(d.name for d in delivered_by(Delivery.STREAM))
    declared = _stream_datasets(written)
    hint = "StreamDatasets in template.yaml: " + ", ".join(f"{_stem(n)}: {{Dataset: {n}}}" for n in registry)
    # WHEN they are compared THEN StreamDatasets lists exactly the registry's, each under its PascalCase stem
    assert sorted(declared.values()) == registry, hint
    assert all(_stem(name) == stem for stem, name in declared.items()), hint
    # AND every loop over Dataset iterates exactly those stems
    loops = {name: item for name, item in _loops(written) if item[0] == "Dataset"}
    assert len(loops) >= 4
    for name, (_, collection, _) in loops.items():
        assert sorted(collection) == sorted(declared), f"{name} iterates {collection}, not {sorted(declared)}"


def test_the_templates_per_dataset_declarations_are_the_registrys() -> None:
    # GIVEN the template as written (loops unexpanded) and the registry
    from datalake.contracts import REGISTRY
    from lakebox.cfn import datasets as dataset_template

    declared = dataset_template.read((ROOT / "template.yaml").read_text(encoding="utf-8"))
    # WHEN they are compared THEN the Datasets mapping, the alarm loops and the processed retention rules follow the
    # registry; a failure says what to write in template.yaml
    gaps = dataset_template.gaps(declared, REGISTRY.values())
    assert gaps == [], "template.yaml: " + "; ".join(gaps)


def test_every_dataset_gets_a_quarantine_alarm_and_keeps_the_logical_ids_deployed_before(template: Template) -> None:
    # GIVEN the alarms the template declared one by one before its per-dataset loops (ADR 0021)
    before = {
        "SalesQuarantineRateAlarm", "ProductsQuarantineRateAlarm", "CustomersQuarantineRateAlarm",
        "ClickstreamQuarantineRateAlarm", "SalesFreshnessAlarm", "ClickstreamFreshnessAlarm",
        "ClickstreamStreamIteratorAgeAlarm",
    }  # fmt: skip
    # WHEN the loops are expanded THEN each keeps its logical id, so a deployed stack updates them in place
    alarms = {lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert before <= alarms
    # AND the dashboard names no per-dataset alarm: its per-dataset series are SEARCH expressions over the metrics
    body = _sub_text(template["Resources"]["DataLakeDashboard"]["Properties"]["DashboardBody"])
    assert not [lid for lid in alarms if lid.endswith(("QuarantineRateAlarm", "FreshnessAlarm")) and lid in body]
    assert not [name for name in ("sales", "products", "customers", "clickstream") if f'"{name}"' in body]


def test_every_stream_dataset_gets_its_stream_mapping_firehose_delivery_and_alarms(template: Template) -> None:
    resources = template["Resources"]
    for stem, name in _stream_datasets(template).items():
        # GIVEN a stream-delivered dataset WHEN the loops are expanded THEN each of its resources exists
        stream = resources[f"{stem}Stream"]
        assert stream["Type"] == "AWS::Kinesis::Stream"
        assert stream["Properties"]["Name"]["Fn::Sub"][1]["Name"] == {
            "Fn::FindInMap": ["StreamDatasets", stem, "Dataset"]
        }
        mapping = resources[f"IngestStreamFunction{stem}Records"]
        assert mapping["Type"] == "AWS::Lambda::EventSourceMapping"
        assert mapping["Properties"]["EventSourceArn"] == {"Fn::Sub": f"${{{stem}Stream.Arn}}"}
        delivery = resources[f"{stem}DeliveryStream"]
        assert delivery["Condition"] == "UseFirehose"
        assert delivery["Properties"]["KinesisStreamSourceConfiguration"]["KinesisStreamARN"] == {
            "Fn::Sub": f"${{{stem}Stream.Arn}}"
        }
        for alarm in (f"{stem}QuarantineRateAlarm", f"{stem}StreamIteratorAgeAlarm"):
            assert resources[alarm]["Type"] == "AWS::CloudWatch::Alarm"
        dims = resources[f"{stem}QuarantineRateAlarm"]["Properties"]["Metrics"][0]["MetricStat"]["Metric"]["Dimensions"]
        assert dims[1] == {"Name": "dataset", "Value": {"Fn::FindInMap": ["Datasets", stem, "Dataset"]}}
        assert name


def test_stream_mapping_reports_partial_failures_and_bounds_retries(template: Template) -> None:
    for stem in _stream_datasets(template):
        # GIVEN each stream's event source mapping to the stream ingestion function
        kinesis = template["Resources"][f"IngestStreamFunction{stem}Records"]["Properties"]
        # WHEN its settings are read THEN a poison record is bisected out, retried a bounded number of times, kept
        assert kinesis["FunctionName"] == {"Ref": "IngestStreamFunction"}
        assert kinesis["BisectBatchOnFunctionError"] is True
        assert kinesis["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert kinesis["MaximumRetryAttempts"] == 3
        assert kinesis["MaximumRecordAgeInSeconds"] == 3600
        assert _target(kinesis["DestinationConfig"]["OnFailure"]["Destination"]) == "StreamFailureQueue"
        assert kinesis["BatchSize"] == {"Ref": "StreamBatchSize"}
        assert kinesis["Enabled"] == {"Fn::If": ["UseFirehose", False, True]}


def test_firehose_writes_under_the_prefix_the_batch_manifests_name(template: Template) -> None:
    from datalake.firehose import output_prefix
    from lakebox.services.firehose import evaluate_prefix

    keys = {"year": "2026", "month": "11", "day": "01", "hour": "09", "batch": "0a1b2c3d4e5f6a7b"}
    for stem, name in _stream_datasets(template).items():
        # GIVEN the delivery stream's Prefix, its dataset's name substituted as CloudFormation would
        pattern, variables = template["Resources"][f"{stem}DeliveryStream"]["Properties"][
            "ExtendedS3DestinationConfiguration"
        ]["Prefix"]["Fn::Sub"]
        assert variables == {"Name": {"Fn::FindInMap": ["StreamDatasets", stem, "Dataset"]}}
        prefix = pattern.replace("${Name}", name)
        # WHEN Firehose evaluates it for a record's partition keys THEN it is the prefix the manifest counts under
        assert evaluate_prefix(prefix, keys=keys, moment=T_EVAL) == output_prefix(name, keys)
        assert output_prefix(name, keys) == f"{name}/year=2026/month=11/day=01/hour=09/0a1b2c3d4e5f6a7b-"


def test_lakebox_expands_the_loops_as_sam_cli_does() -> None:
    # GIVEN SAM CLI's own AWS::LanguageExtensions processor (installed with the template checks)
    sam_python = ROOT / ".tools" / "sam" / "bin" / "python"
    if not sam_python.exists():
        pytest.skip("SAM CLI is not installed under .tools (bash scripts/lint-iac.sh installs it)")
    import json
    import subprocess

    script = (
        "import json, sys\n"
        "from samcli.yamlhelper import yaml_parse\n"
        "from samcli.lib.cfn_language_extensions.sam_integration import expand_language_extensions\n"
        "t = yaml_parse(open(sys.argv[1]).read())\n"
        "out = expand_language_extensions(t, {'AWS::Region': 'us-east-1'}, enabled=True).expanded_template\n"
        "print(json.dumps({s: sorted(out.get(s, {})) for s in ('Resources', 'Outputs', 'Conditions')}))\n"
    )
    done = subprocess.run(
        [str(sam_python), "-c", script, str(ROOT / "template.yaml")],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # WHEN lakebox reads the same template THEN it has the same resources, outputs and conditions
    ours = load_template(ROOT / "template.yaml")
    assert json.loads(done.stdout) == {s: sorted(ours.get(s, {})) for s in ("Resources", "Outputs", "Conditions")}


# ------------------------------------------------------------------------------------------------------------ IAM


def test_wildcard_detector_flags_everything_and_service_wide_grants() -> None:
    # GIVEN statements granting all, one service, one action, and a deny of one service
    # WHEN the detector reads them THEN only the two wide grants are flagged
    assert service_wide_actions({"Effect": "Allow", "Action": "*"}) == ["*"]
    assert service_wide_actions({"Effect": "Allow", "Action": ["s3:GetObject", "s3:*"]}) == ["s3:*"]
    assert service_wide_actions({"Effect": "Allow", "Action": "s3:GetObject"}) == []
    assert service_wide_actions({"Effect": "Deny", "Action": "s3:*"}) == []


def test_no_identity_policy_grants_every_action_of_a_service(template: Template) -> None:
    # GIVEN every identity policy statement of the template (roles, managed policies, SAM inline policies)
    statements = list(iam_statements(template))
    assert len(statements) > 50
    # WHEN their actions are read THEN none is `*` or `service:*`
    offenders = [(name, service_wide_actions(s)) for name, s in statements if service_wide_actions(s)]
    assert offenders == []


def test_no_resource_policy_grants_every_action_of_a_service_except_the_key_to_its_account(template: Template) -> None:
    # GIVEN every resource policy statement (buckets, queues, topics, key)
    offenders = [
        name
        for name, statement in resource_policy_statements(template)
        if service_wide_actions(statement)
        and not (
            name == "DataLakeKey"
            and statement["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
        )
    ]
    # WHEN they are read THEN only the key policy's grant to the account itself is service-wide
    assert offenders == []


def test_wildcard_resources_only_for_actions_without_resource_scope(template: Template) -> None:
    # GIVEN every identity policy statement that applies to Resource "*"
    for name, statement in iam_statements(template):
        if "*" not in _as_list(statement.get("Resource", [])):
            continue
        # WHEN its actions are read THEN each is one IAM cannot scope to a resource
        actions = set(_as_list(statement["Action"]))
        assert actions <= UNSCOPED_ACTIONS, (name, statement.get("Sid"), sorted(actions - UNSCOPED_ACTIONS))


PEOPLES_ROLES = ("AnalystRole", "MlRole")


def test_roles_trust_their_service_only_for_this_account(template: Template) -> None:
    for name, role in _resources(template, "AWS::IAM::Role").items():
        if name in PEOPLES_ROLES:
            continue
        # GIVEN a role WHEN its trust policy is read
        (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        # THEN one AWS service may assume it, on behalf of this account only
        assert set(trust["Principal"]) == {"Service"}, name
        condition = trust["Condition"]["StringEquals"]
        assert condition in (
            {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
            {"sts:ExternalId": {"Ref": "AWS::AccountId"}},
        ), name


def test_peoples_roles_trust_only_this_accounts_principals_with_mfa(template: Template) -> None:
    for name in PEOPLES_ROLES:
        # GIVEN a role people assume WHEN its trust policy is read
        (trust,) = template["Resources"][name]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        # THEN only this account's principals (whose own policy allows it) may assume it, and only with MFA
        assert trust["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
        assert trust["Condition"] == {"Bool": {"aws:MultiFactorAuthPresent": "true"}}


# ---------------------------------------------------------------------------------------------- analytics, checks


def test_athena_workgroups_enforce_encrypted_results_and_a_scan_cutoff(template: Template) -> None:
    groups = _resources(template, "AWS::Athena::WorkGroup")
    assert set(groups) == {"PrimaryWorkGroup", "AnalyticsWorkGroup", "MlDataWorkGroup"}
    for name, group in groups.items():
        # GIVEN a workgroup WHEN its configuration is read
        config = group["Properties"]["WorkGroupConfiguration"]
        results = config["ResultConfiguration"]
        # THEN clients cannot override it, results are SSE-KMS in AthenaResultsBucket, and scans are capped
        assert config["EnforceWorkGroupConfiguration"] is True, name
        assert config["BytesScannedCutoffPerQuery"] == {"Ref": "BytesScannedCutoffPerQuery"}, name
        assert config["EngineVersion"] == {"SelectedEngineVersion": "Athena engine version 3"}, name
        assert results["EncryptionConfiguration"]["EncryptionOption"] == "SSE_KMS", name
        assert _target(results["EncryptionConfiguration"]["KmsKey"]) == "DataLakeKey", name
        assert _sub_text(results["OutputLocation"]).startswith("s3://${AthenaResultsBucket}/"), name
        assert _sub_text(group["Properties"]["Name"]).startswith("${AWS::StackName}-"), name


def test_pipeline_state_machine_logs_everything_encrypted_and_traces(template: Template) -> None:
    # GIVEN the pipeline state machine WHEN its logging and tracing are read
    props = template["Resources"]["PipelineStateMachine"]["Properties"]
    logging = props["Logging"]
    # THEN it logs every event with execution data to PipelineLogGroup and traces with X-Ray
    assert props["Type"] == "STANDARD"
    assert logging["Level"] == "ALL"
    assert logging["IncludeExecutionData"] is True
    assert _target(logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]) == "PipelineLogGroup"
    assert props["Tracing"] == {"Enabled": True}


def test_every_checkov_skip_names_its_check_and_reason(template: Template) -> None:
    skips = [
        (name, skip)
        for name, resource in template["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for name, skip in skips:
        # GIVEN a skipped checkov check WHEN it is read THEN it names one check and says why, in a sentence
        assert skip["id"].startswith("CKV_AWS_"), name
        assert len(skip["comment"].split()) >= 5, (name, skip["id"])


def test_template_keeps_the_logical_ids_other_parts_read(template: Template) -> None:
    # GIVEN the names lakebox, the state machine and the handlers rely on
    parameters = {
        "Environment", "GlueDatabaseName", "LandingExpirationDays", "RawTransitionToGlacierDays",
        "NoncurrentVersionExpirationDays", "AthenaResultsExpirationDays", "LogRetentionDays", "AlertEmail",
        "PipelineSchedule", "BytesScannedCutoffPerQuery", "StreamBatchSize", "StreamBatchWindowSeconds",
        "StreamDelivery", "MskClusterArn", "MskTopic", "SourceApiBaseUrl", "SourceApiSecretName",
        "ApiPullSchedule", "AWSSDKPandasLayerArn",
    }  # fmt: skip
    resources = {
        "DataLakeKey", "DataLakeKeyAlias", "CommonLayer", "IngestFileFunction", "IngestEventsDeadLetterQueue",
        "IngestFailureQueue", "GlueDatabase", "RawCrawler", "ProcessedCrawler", "CrawlerRole",
        "GlueSecurityConfiguration", "RawToProcessedJob", "GlueJobRole", "EmrServerlessApplication", "EmrJobRole",
        "CheckQualityFunction", "PlanCurationFunction", "AlertsTopic", "PipelineStateMachine", "PipelineLogGroup",
        "ClickstreamStream", "IngestStreamFunction", "StreamFailureQueue", "ClickstreamDeliveryStream",
        "TransformRecordsFunction", "IngestApiFunction",
    }  # fmt: skip
    # WHEN the template is read THEN every one is declared
    assert parameters <= set(template["Parameters"])
    assert resources <= set(template["Resources"])
    assert set(template["Conditions"]) >= {"HasAlertEmail", "HasMsk", "UseFirehose"}

"""The SAM template's resources brought up on the local endpoint, with names resolved as CloudFormation would."""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import io
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
from botocore.exceptions import ClientError

from lakebox.alarms import record_invocation
from lakebox.errors import LakeboxError
from lakebox.template import load_template

logger = logging.getLogger(__name__)

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
PARTITION = "aws"


class StackError(LakeboxError):
    """The template asks for something lakebox cannot bring up; the message names the resource."""


@dataclass
class FunctionSpec:
    """A Lambda function as the template declares it, with its environment resolved."""

    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    environment: dict[str, str]
    timeout: int
    memory: int
    events: dict[str, dict[str, Any]]
    event_invoke: dict[str, Any]
    layer_dirs: list[Path] = field(default_factory=list)


@dataclass
class LambdaContext:
    """The Lambda context object handed to a handler."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: int
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _started: float = field(default_factory=time.monotonic)

    @property
    def log_group_name(self) -> str:
        """The function's log group."""
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        """A log stream name in Lambda's format."""
        return time.strftime("%Y/%m/%d/[$LATEST]") + self.aws_request_id.replace("-", "")

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's timeout."""
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))


_PSEUDO = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT_ID,
    "AWS::Partition": PARTITION,
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::NotificationARNs": [],
}
_NO_VALUE = object()
_SUB = re.compile(r"\$\{([^}!][^}]*)\}")
_INVOKE_LOCK = threading.RLock()


class Stack:
    """template.yaml, resolved and (after `deploy`) created on the endpoint the session points at.

    Parameters
    ----------
    root
        The project root holding template.yaml and the paths it names.
    session
        A boto3 session whose clients reach the local endpoint (through `AWS_ENDPOINT_URL`).
    stack_name
        The stack name used in generated resource names.
    parameters
        Template parameter overrides; the template's defaults fill the rest.
    log_dir
        Where each function's stdout (its CloudWatch log, locally) is appended.
    environment
        Variables every invocation gets on top of its template environment (the endpoint and credentials).
    """

    def __init__(
        self,
        root: Path,
        session: boto3.Session,
        *,
        stack_name: str = "lakebox",
        parameters: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self.root = root
        self.environment = dict(environment or {})
        self.session = session
        self.stack_name = stack_name
        self.template = load_template(root / "template.yaml")
        self.resources: dict[str, dict[str, Any]] = self.template["Resources"]
        self.globals: dict[str, Any] = self.template.get("Globals", {})
        self.parameters = self._parameters(parameters or {})
        self.log_dir = log_dir or root / ".lakebox" / "logs"
        self._conditions: dict[str, bool] = {}
        self._created: dict[str, dict[str, Any]] = {}
        self._modules: dict[str, ModuleType] = {}
        self._functions: dict[str, FunctionSpec] | None = None
        self.invoke_hooks: list[Callable[[str, Any], None]] = []

    # ------------------------------------------------------------------ parameters, conditions, intrinsics
    def _parameters(self, overrides: Mapping[str, str]) -> dict[str, Any]:
        declared: dict[str, Any] = self.template.get("Parameters", {})
        unknown = set(overrides) - set(declared)
        if unknown:
            raise StackError(f"unknown template parameters: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, spec in declared.items():
            value = overrides.get(name, spec.get("Default"))
            if value is None:
                raise StackError(f"parameter {name} has no default; pass it with --parameter {name}=VALUE")
            if str(spec.get("Type", "")).startswith("List<") or spec.get("Type") == "CommaDelimitedList":
                value = [v.strip() for v in str(value).split(",")] if isinstance(value, str) else value
            values[name] = value
        return values

    def condition(self, name: str) -> bool:
        """Evaluate a named condition of the template."""
        if name not in self._conditions:
            definition = self.template.get("Conditions", {}).get(name)
            if definition is None:
                raise StackError(f"unknown condition {name}")
            self._conditions[name] = bool(self.resolve(definition))
        return self._conditions[name]

    def active(self, logical_id: str) -> bool:
        """Whether a resource exists in this deployment (its Condition, if any, holds)."""
        cond = self.resources[logical_id].get("Condition")
        return cond is None or self.condition(cond)

    def resolve(self, value: Any) -> Any:
        """Resolve intrinsic functions in `value` the way CloudFormation would for this deployment."""
        resolved = self._resolve(value)
        return None if resolved is _NO_VALUE else resolved

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self._resolve(x) for x in value) if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            handler = _INTRINSICS.get(key)
            if handler is not None:
                return handler(self, arg)
        return {k: v for k, v in ((k, self._resolve(v)) for k, v in value.items()) if v is not _NO_VALUE}

    def ref(self, name: str) -> Any:
        """What `!Ref name` gives: a parameter's value, a pseudo parameter, or a resource's physical id."""
        if name == "AWS::StackName":
            return self.stack_name
        if name == "AWS::StackId":
            return f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{self.stack_name}/lakebox"
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in _PSEUDO:
            return _PSEUDO[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            return self._physical(name)["Ref"]
        raise StackError(f"!Ref {name}: no such parameter or resource")

    def get_att(self, logical_id: str, attribute: str) -> Any:
        """What `!GetAtt logical_id.attribute` gives."""
        if logical_id not in self.resources:
            raise StackError(f"!GetAtt {logical_id}.{attribute}: no such resource")
        attrs = self._physical(logical_id)
        if attribute not in attrs:
            raise StackError(f"!GetAtt {logical_id}.{attribute}: lakebox does not know this attribute")
        return attrs[attribute]

    # ------------------------------------------------------------------ physical names
    def _generated_name(self, logical_id: str, limit: int = 64, *, lower: bool = False) -> str:
        name = f"{self.stack_name}-{logical_id}"
        return (name.lower() if lower else name)[:limit]

    def _prop(self, logical_id: str, *path: str) -> Any:
        node: Any = self.resources[logical_id].get("Properties", {})
        for part in path:
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return self.resolve(node)

    def _physical(self, logical_id: str) -> dict[str, Any]:
        if logical_id in self._created:
            return self._created[logical_id]
        kind = self.resources[logical_id]["Type"]
        arn = f"arn:{PARTITION}"
        attrs: dict[str, Any]
        if kind == "AWS::S3::Bucket":
            name = self._prop(logical_id, "BucketName") or self._generated_name(logical_id, 63, lower=True)
            attrs = {
                "Ref": name,
                "Arn": f"{arn}:s3:::{name}",
                "DomainName": f"{name}.s3.amazonaws.com",
                "RegionalDomainName": f"{name}.s3.{REGION}.amazonaws.com",
            }
        elif kind == "AWS::DynamoDB::Table":
            name = self._prop(logical_id, "TableName") or self._generated_name(logical_id, 255)
            table_arn = f"{arn}:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name}"
            attrs = {"Ref": name, "Arn": table_arn, "StreamArn": f"{table_arn}/stream/lakebox"}
        elif kind == "AWS::SQS::Queue":
            name = self._prop(logical_id, "QueueName") or self._generated_name(logical_id, 80)
            endpoint = os.environ.get("AWS_ENDPOINT_URL", "https://sqs.us-east-1.amazonaws.com").rstrip("/")
            attrs = {
                "Ref": f"{endpoint}/{ACCOUNT_ID}/{name}",
                "QueueUrl": f"{endpoint}/{ACCOUNT_ID}/{name}",
                "Arn": f"{arn}:sqs:{REGION}:{ACCOUNT_ID}:{name}",
                "QueueName": name,
            }
        elif kind == "AWS::SNS::Topic":
            name = self._prop(logical_id, "TopicName") or self._generated_name(logical_id, 256)
            topic_arn = f"{arn}:sns:{REGION}:{ACCOUNT_ID}:{name}"
            attrs = {"Ref": topic_arn, "TopicArn": topic_arn, "TopicName": name}
        elif kind in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            name = self._prop(logical_id, "FunctionName") or self._generated_name(logical_id, 64)
            attrs = {"Ref": name, "Arn": f"{arn}:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"}
        elif kind in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"):
            name = self._prop(logical_id, "Name") or self._prop(logical_id, "StateMachineName")
            name = name or self._generated_name(logical_id, 80)
            sm_arn = f"{arn}:states:{REGION}:{ACCOUNT_ID}:stateMachine:{name}"
            attrs = {"Ref": sm_arn, "Arn": sm_arn, "Name": name}
        elif kind == "AWS::Kinesis::Stream":
            name = self._prop(logical_id, "Name") or self._generated_name(logical_id, 128)
            attrs = {"Ref": name, "Arn": f"{arn}:kinesis:{REGION}:{ACCOUNT_ID}:stream/{name}"}
        elif kind == "AWS::KMS::Key":
            created = self._created_kms_key(logical_id)
            attrs = {"Ref": created, "Arn": f"{arn}:kms:{REGION}:{ACCOUNT_ID}:key/{created}", "KeyId": created}
        elif kind == "AWS::IAM::Role":
            name = self._prop(logical_id, "RoleName") or self._generated_name(logical_id, 64)
            attrs = {"Ref": name, "Arn": f"{arn}:iam::{ACCOUNT_ID}:role/{name}", "RoleId": f"AROA{logical_id.upper()}"}
        elif kind == "AWS::Glue::Database":
            attrs = {"Ref": self._prop(logical_id, "DatabaseInput", "Name")}
        elif kind == "AWS::Athena::WorkGroup":
            attrs = {"Ref": self._prop(logical_id, "Name")}
        elif kind == "AWS::EMRServerless::Application":
            app_id = self._created_emr_application(logical_id)
            app_arn = f"{arn}:emr-serverless:{REGION}:{ACCOUNT_ID}:/applications/{app_id}"
            attrs = {"Ref": app_id, "ApplicationId": app_id, "Arn": app_arn}
        elif kind == "AWS::Logs::LogGroup":
            name = self._prop(logical_id, "LogGroupName") or self._generated_name(logical_id, 512)
            attrs = {"Ref": name, "Arn": f"{arn}:logs:{REGION}:{ACCOUNT_ID}:log-group:{name}:*"}
        elif kind == "AWS::Serverless::LayerVersion":
            name = self._prop(logical_id, "LayerName") or self._generated_name(logical_id, 64)
            attrs = {"Ref": f"{arn}:lambda:{REGION}:{ACCOUNT_ID}:layer:{name}:1"}
        else:
            name = self._name_property(logical_id) or self._generated_name(logical_id, 64)
            service = kind.split("::")[1].lower()
            attrs = {
                "Ref": name,
                "Arn": f"{arn}:{service}:{REGION}:{ACCOUNT_ID}:{logical_id.lower()}/{name}",
                "Name": name,
            }
        self._created[logical_id] = attrs
        return attrs

    def _name_property(self, logical_id: str) -> str | None:
        for key in ("Name", "DeliveryStreamName", "ScheduleName", "RuleName", "QueueName"):
            value = self._prop(logical_id, key)
            if isinstance(value, str):
                return value
        return None

    def _created_kms_key(self, logical_id: str) -> str:
        kms = self.session.client("kms")
        description = f"{self.stack_name}/{logical_id}"
        for key in kms.list_keys()["Keys"]:
            meta = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
            if meta.get("Description") == description:
                return str(key["KeyId"])
        key_id = kms.create_key(Description=description)["KeyMetadata"]["KeyId"]
        if self._prop(logical_id, "EnableKeyRotation"):
            kms.enable_key_rotation(KeyId=key_id)
        return str(key_id)

    def _created_emr_application(self, logical_id: str) -> str:
        client = self.session.client("emr-serverless")
        name = self._prop(logical_id, "Name") or self._generated_name(logical_id, 64)
        for app in client.list_applications()["applications"]:
            if app["name"] == name and app["state"] not in ("TERMINATED",):
                return str(app["id"])
        created = client.create_application(
            name=name,
            releaseLabel=self._prop(logical_id, "ReleaseLabel") or "emr-7.5.0",
            type=self._prop(logical_id, "Type") or "SPARK",
        )
        return str(created["applicationId"])

    # ------------------------------------------------------------------ functions
    @property
    def functions(self) -> dict[str, FunctionSpec]:
        """Every active Lambda function, by logical id."""
        if self._functions is None:
            self._functions = {
                lid: self._function_spec(lid)
                for lid, res in self.resources.items()
                if res["Type"] == "AWS::Serverless::Function" and self.active(lid)
            }
        return self._functions

    def _function_spec(self, logical_id: str) -> FunctionSpec:
        defaults: dict[str, Any] = self.globals.get("Function", {})
        props: dict[str, Any] = self.resources[logical_id].get("Properties", {})
        env = {
            **(self.resolve(defaults.get("Environment", {}).get("Variables", {})) or {}),
            **(self.resolve(props.get("Environment", {}).get("Variables", {})) or {}),
        }
        code_uri = props.get("CodeUri", defaults.get("CodeUri"))
        if not isinstance(code_uri, str):
            raise StackError(f"{logical_id}: CodeUri must be a local folder for lakebox")
        physical = self._physical(logical_id)
        return FunctionSpec(
            logical_id=logical_id,
            name=physical["Ref"],
            arn=physical["Arn"],
            code_dir=(self.root / code_uri).resolve(),
            handler=str(props.get("Handler", defaults.get("Handler", "app.lambda_handler"))),
            environment={k: _env_str(v) for k, v in env.items()},
            timeout=int(self.resolve(props.get("Timeout", defaults.get("Timeout", 3)))),
            memory=int(self.resolve(props.get("MemorySize", defaults.get("MemorySize", 128)))),
            events=props.get("Events", {}) or {},
            event_invoke=self.resolve(props.get("EventInvokeConfig", {})) or {},
            layer_dirs=self._layer_dirs([*defaults.get("Layers", []), *props.get("Layers", [])]),
        )

    def _layer_dirs(self, layers: list[Any]) -> list[Path]:
        """Local folders of the template's own layers; Lambda puts their content on the import path."""
        folders = []
        for layer in layers:
            if isinstance(layer, dict) and set(layer) == {"Ref"} and layer["Ref"] in self.resources:
                content = self.resources[layer["Ref"]].get("Properties", {}).get("ContentUri")
                if isinstance(content, str):
                    folders.append((self.root / content).resolve())
        return folders

    def function(self, name: str) -> FunctionSpec:
        """Find a function by logical id, physical name or ARN (qualifiers ignored)."""
        wanted = name.rsplit(":function:", maxsplit=1)[-1].split(":", maxsplit=1)[0] if ":function:" in name else name
        for spec in self.functions.values():
            if wanted in (spec.logical_id, spec.name):
                return spec
        known = ", ".join(sorted(self.functions))
        raise StackError(f"no function {name!r} in template.yaml (functions: {known})")

    def invoke(self, function: str, payload: Any) -> Any:
        """Run a function's handler in this process with its template environment, as Lambda would.

        The payload and the result go through JSON, as they would over the Lambda API. Exceptions raised by the
        handler propagate unchanged (their class name is the Lambda `errorType`).
        """
        spec = self.function(function)
        event = json.loads(json.dumps(payload))
        with _INVOKE_LOCK, self._function_env(spec), self._function_log(spec):
            module = self._module(spec)
            handler_name = spec.handler.rsplit(".", 1)[1]
            context = LambdaContext(spec.name, spec.arn, spec.memory, spec.timeout)
            for hook in self.invoke_hooks:
                hook(spec.logical_id, event)
            failed = True
            try:
                result = getattr(module, handler_name)(event, context)
                failed = False
            finally:
                record_invocation(self, spec.name, failed)
        return json.loads(json.dumps(result, default=str))

    def _module(self, spec: FunctionSpec) -> ModuleType:
        module = self._modules.get(spec.logical_id)
        if module is None:
            module_name, _ = spec.handler.rsplit(".", 1)
            path = spec.code_dir / f"{module_name.replace('.', '/')}.py"
            if not path.exists():
                raise StackError(f"{spec.logical_id}: handler file {path} does not exist")
            unique = f"lakebox_fn_{spec.logical_id}"
            loader_spec = importlib.util.spec_from_file_location(unique, path)
            if loader_spec is None or loader_spec.loader is None:
                raise StackError(f"{spec.logical_id}: cannot import {path}")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[unique] = module
            sys.path.insert(0, str(spec.code_dir))
            sys.path.extend(str(d) for d in spec.layer_dirs if str(d) not in sys.path)
            try:
                loader_spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(spec.code_dir))
            self._modules[spec.logical_id] = module
        return module

    @contextlib.contextmanager
    def _function_env(self, spec: FunctionSpec) -> Iterator[None]:
        runtime = {
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_SERVICE_NAME": spec.environment.get("POWERTOOLS_SERVICE_NAME", spec.logical_id),
        }
        saved = dict(os.environ)
        os.environ.update(self.environment)
        os.environ.update(spec.environment)
        os.environ.update(runtime)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)

    @contextlib.contextmanager
    def _function_log(self, spec: FunctionSpec) -> Iterator[None]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stream = _LOG_STREAMS.get(spec.name)
        if stream is None or stream.closed:
            stream = _LOG_STREAMS[spec.name] = (self.log_dir / f"{spec.name}.log").open("a", encoding="utf-8")
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            try:
                yield
            finally:
                stream.flush()

    # ------------------------------------------------------------------ state machines
    def state_machine(self, logical_id: str) -> tuple[dict[str, Any], dict[str, str]]:
        """A state machine's definition with its DefinitionSubstitutions applied, and the substitutions."""
        resource = self.resources.get(logical_id)
        if resource is None or "StateMachine" not in resource["Type"]:
            names = [k for k, v in self.resources.items() if "StateMachine" in v["Type"]]
            raise StackError(f"no state machine {logical_id!r} (state machines: {', '.join(names)})")
        props = resource.get("Properties", {})
        subs = {k: _env_str(v) for k, v in (self.resolve(props.get("DefinitionSubstitutions", {})) or {}).items()}
        if "DefinitionUri" in props:
            text = (self.root / str(props["DefinitionUri"])).read_text(encoding="utf-8")
        elif "Definition" in props:
            text = json.dumps(props["Definition"])
        else:
            raise StackError(f"{logical_id}: lakebox needs Definition or a local DefinitionUri")
        missing = sorted(set(re.findall(r"\$\{(\w+)\}", text)) - set(subs))
        if missing:
            raise StackError(f"{logical_id}: placeholders without substitution: {', '.join(missing)}")
        for key, value in subs.items():
            text = text.replace("${" + key + "}", value.replace("\\", "\\\\").replace('"', '\\"'))
        return json.loads(text), subs

    def artifacts_bucket(self) -> str | None:
        """The name of the template's artifacts bucket (the bucket whose logical id names artifacts), if any."""
        return next(
            (
                str(self.ref(lid))
                for lid, r in self.resources.items()
                if r["Type"] == "AWS::S3::Bucket" and "Artifact" in lid
            ),
            None,
        )

    def package_file(self, relative: str) -> str:
        """Upload a local file the template names to the artifacts bucket; return its s3:// URI."""
        bucket = self.artifacts_bucket()
        if bucket is None:
            raise StackError(f"cannot package {relative}: the template has no artifacts bucket")
        path = self.root / relative
        if not path.exists():
            raise StackError(f"cannot package {relative}: no such file")
        key = f"lakebox-package/{relative}"
        self.session.client("s3").upload_file(str(path), bucket, key)
        return f"s3://{bucket}/{key}"

    # ------------------------------------------------------------------ creation
    def deploy(self, progress: Callable[[str], None] | None = None) -> dict[str, list[str]]:
        """Create every resource lakebox emulates on the endpoint; return what was created and what was not."""
        report: dict[str, list[str]] = {"created": [], "not emulated": []}
        order = sorted(self.resources, key=lambda lid: _CREATE_ORDER.get(self.resources[lid]["Type"], 50))
        for logical_id in order:
            if not self.active(logical_id):
                continue
            kind = self.resources[logical_id]["Type"]
            creator = _CREATORS.get(kind)
            if creator is None:
                report["not emulated"].append(f"{logical_id} ({kind})")
                continue
            try:
                creator(self, logical_id)
            except ClientError as exc:
                raise StackError(f"creating {logical_id} ({kind}): {exc}") from exc
            report["created"].append(logical_id)
            if progress:
                progress(logical_id)
        return report


_LOG_STREAMS: dict[str, io.TextIOWrapper] = {}


def _env_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


# ---------------------------------------------------------------------- intrinsic functions
def _fn_sub(stack: Stack, arg: Any) -> str:
    if isinstance(arg, list):
        template, variables = arg[0], {k: stack.resolve(v) for k, v in arg[1].items()}
    else:
        template, variables = arg, {}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in variables:
            return str(variables[name])
        if "." in name and name.split(".", 1)[0] in stack.resources:
            logical_id, attribute = name.split(".", 1)
            return str(stack.get_att(logical_id, attribute))
        return str(stack.ref(name))

    return _SUB.sub(replace, str(template)).replace("${!", "${")


def _fn_get_att(stack: Stack, arg: Any) -> Any:
    logical_id, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
    return stack.get_att(str(logical_id), str(stack.resolve(attribute)))


def _fn_if(stack: Stack, arg: Any) -> Any:
    name, when_true, when_false = arg
    return stack._resolve(when_true if stack.condition(name) else when_false)


def _fn_select(stack: Stack, arg: Any) -> Any:
    index, items = arg
    return stack.resolve(items)[int(stack.resolve(index))]


def _fn_split(stack: Stack, arg: Any) -> Any:
    sep, text = arg
    return str(stack.resolve(text)).split(sep)


def _fn_join(stack: Stack, arg: Any) -> str:
    sep, items = arg
    return str(sep).join(str(x) for x in stack.resolve(items))


def _fn_find_in_map(stack: Stack, arg: Any) -> Any:
    name, first, second = (stack.resolve(x) for x in arg[:3])
    return stack.template["Mappings"][name][first][second]


_INTRINSICS: dict[str, Callable[[Stack, Any], Any]] = {
    "Ref": lambda s, a: s.ref(str(a)),
    "Fn::Sub": _fn_sub,
    "Fn::GetAtt": _fn_get_att,
    "Fn::If": _fn_if,
    "Fn::Select": _fn_select,
    "Fn::Split": _fn_split,
    "Fn::Join": _fn_join,
    "Fn::FindInMap": _fn_find_in_map,
    "Fn::Equals": lambda s, a: s.resolve(a[0]) == s.resolve(a[1]),
    "Fn::Not": lambda s, a: not s.resolve(a[0]),
    "Fn::And": lambda s, a: all(s.resolve(x) for x in a),
    "Fn::Or": lambda s, a: any(s.resolve(x) for x in a),
    "Condition": lambda s, a: s.condition(str(a)),
    "Fn::GetAZs": lambda s, a: [f"{REGION}a", f"{REGION}b", f"{REGION}c"],
    "Fn::Base64": lambda s, a: base64.b64encode(str(s.resolve(a)).encode()).decode(),
    "Fn::ToJsonString": lambda s, a: json.dumps(s.resolve(a)),
}


# ---------------------------------------------------------------------- resource creators
def _create_bucket(stack: Stack, lid: str) -> None:
    s3 = stack.session.client("s3")
    name = stack.ref(lid)
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


def _create_table(stack: Stack, lid: str) -> None:
    client = stack.session.client("dynamodb")
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


def _create_queue(stack: Stack, lid: str) -> None:
    stack.session.client("sqs").create_queue(QueueName=stack.get_att(lid, "QueueName"))


def _create_topic(stack: Stack, lid: str) -> None:
    stack.session.client("sns").create_topic(Name=stack.get_att(lid, "TopicName"))


def _create_stream(stack: Stack, lid: str) -> None:
    kinesis = stack.session.client("kinesis")
    shards = stack._prop(lid, "ShardCount")
    with contextlib.suppress(kinesis.exceptions.ResourceInUseException):
        kinesis.create_stream(StreamName=stack.ref(lid), ShardCount=int(shards or 1))


def _create_glue_database(stack: Stack, lid: str) -> None:
    glue = stack.session.client("glue")
    database = stack._prop(lid, "DatabaseInput")
    with contextlib.suppress(glue.exceptions.AlreadyExistsException):
        glue.create_database(DatabaseInput=database)


def _create_crawler(stack: Stack, lid: str) -> None:
    glue = stack.session.client("glue")
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


def _create_job(stack: Stack, lid: str) -> None:
    """Create a Glue job, uploading its script to the artifacts bucket as `sam package` or the deploy step would.

    A local script path is uploaded as `sam package` does; a script in the artifacts bucket means the project's
    job artifacts (`glue/*.py`, `glue/datalake.zip`), which scripts/package-artifacts.py uploads after `sam deploy`.
    """
    glue = stack.session.client("glue")
    props = stack.resolve(stack.resources[lid].get("Properties", {}))
    command = dict(props["Command"])
    script = str(command.get("ScriptLocation", ""))
    artifacts = stack.artifacts_bucket()
    if script and not script.startswith("s3://"):
        command["ScriptLocation"] = stack.package_file(script)
    elif artifacts is not None and script.startswith(f"s3://{artifacts}/"):
        from lakebox.glue import upload_glue_artifacts

        upload_glue_artifacts(stack.session, artifacts)
    kwargs = {k: v for k, v in props.items() if k in _JOB_KEYS}
    # DefaultArguments is a map of strings: CloudFormation passes a number (a `!Ref` to a Number parameter) as text.
    if "DefaultArguments" in kwargs:
        kwargs["DefaultArguments"] = {name: _env_str(value) for name, value in kwargs["DefaultArguments"].items()}
    kwargs.update(Name=stack.ref(lid), Command=command, Role=props.get("Role", "lakebox"))
    with contextlib.suppress(glue.exceptions.AlreadyExistsException):
        glue.create_job(**kwargs)


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


def _create_workgroup(stack: Stack, lid: str) -> None:
    athena = stack.session.client("athena")
    props = stack.resolve(stack.resources[lid].get("Properties", {}))
    configuration = props.get("WorkGroupConfiguration", {})
    with contextlib.suppress(ClientError):
        athena.create_work_group(
            Name=props["Name"], Configuration=configuration, Description=props.get("Description", "")
        )


def _create_named_query(stack: Stack, lid: str) -> None:
    props = stack.resolve(stack.resources[lid].get("Properties", {}))
    created = stack.session.client("athena").create_named_query(
        Name=props["Name"],
        Description=props.get("Description", ""),
        Database=props["Database"],
        QueryString=props["QueryString"],
        WorkGroup=props.get("WorkGroup", "primary"),
    )
    stack._created[lid] = {"Ref": created["NamedQueryId"], "NamedQueryId": created["NamedQueryId"]}


def _create_lf_tag(stack: Stack, lid: str) -> None:
    lakeformation = stack.session.client("lakeformation")
    props = stack.resolve(stack.resources[lid].get("Properties", {}))
    with contextlib.suppress(lakeformation.exceptions.AlreadyExistsException):
        lakeformation.create_lf_tag(TagKey=props["TagKey"], TagValues=props["TagValues"])
    stack._created[lid] = {"Ref": props["TagKey"]}


def _noop(stack: Stack, lid: str) -> None:
    stack._physical(lid)


_CREATORS: dict[str, Callable[[Stack, str], None]] = {
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

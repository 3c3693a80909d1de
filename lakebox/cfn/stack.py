"""template.yaml as CloudFormation resolves it for one deployment: parameters, conditions, intrinsics, names.

A `Stack` holds template facts only. Creating its resources on an endpoint is `lakebox.cfn.provision`; running its
functions is the box's Lambda runtime (`lakebox.services.lambdas`).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lakebox.cfn.template import load_template
from lakebox.errors import LakeboxError

logger = logging.getLogger(__name__)

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
PARTITION = "aws"


class StackError(LakeboxError):
    """The template asks for something lakebox cannot bring up; the message names the resource."""


_PSEUDO = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT_ID,
    "AWS::Partition": PARTITION,
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::NotificationARNs": [],
}
_NO_VALUE = object()
ServiceIds = Callable[["Stack", str, str], str]
"""Creates (or finds) on the endpoint the resource of a logical id whose physical id the service gives, not the
template (a KMS key, an EMR Serverless application): `(stack, resource type, logical id) -> id`
(lakebox.cfn.provision)."""


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


_SUB = re.compile(r"\$\{([^}!][^}]*)\}")


class Stack:
    """template.yaml, resolved for one deployment.

    Parameters
    ----------
    root
        The project root holding template.yaml and the paths it names.
    stack_name
        The stack name used in generated resource names.
    parameters
        Template parameter overrides, checked against the template's `Type`, `AllowedValues`, pattern and bounds;
        the template's defaults fill the rest.
    trusted_parameters
        Overrides lakebox itself makes (a local sample API's `http://` URL), not checked.
    service_ids
        How the physical id of a resource the service names is obtained (see `ServiceIds`); without it such a
        resource cannot be referenced.
    """

    def __init__(
        self,
        root: Path,
        *,
        stack_name: str = "lakebox",
        parameters: Mapping[str, str] | None = None,
        trusted_parameters: Mapping[str, str] | None = None,
        service_ids: ServiceIds | None = None,
    ) -> None:
        self.root = root
        self.stack_name = stack_name
        self.template = load_template(root / "template.yaml")
        self.resources: dict[str, dict[str, Any]] = self.template["Resources"]
        self.globals: dict[str, Any] = self.template.get("Globals", {})
        self.parameters = self._parameters({**(trusted_parameters or {}), **(parameters or {})}, set(parameters or {}))
        self._service_ids = service_ids
        self._conditions: dict[str, bool] = {}
        self._created: dict[str, dict[str, Any]] = {}
        self._functions: dict[str, FunctionSpec] | None = None

    # ------------------------------------------------------------------ parameters, conditions, intrinsics
    def _parameters(self, overrides: Mapping[str, str], checked: set[str]) -> dict[str, Any]:
        declared: dict[str, Any] = self.template.get("Parameters", {})
        unknown = set(overrides) - set(declared)
        if unknown:
            raise StackError(f"unknown template parameters: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, spec in declared.items():
            value = overrides.get(name, spec.get("Default"))
            if value is None:
                raise StackError(f"parameter {name} has no default; pass it with --parameter {name}=VALUE")
            if name in checked:
                _check_parameter(name, spec, str(value))
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
            created = self._service_id(kind, logical_id)
            attrs = {"Ref": created, "Arn": f"{arn}:kms:{REGION}:{ACCOUNT_ID}:key/{created}", "KeyId": created}
        elif kind == "AWS::IAM::Role":
            name = self._prop(logical_id, "RoleName") or self._generated_name(logical_id, 64)
            attrs = {"Ref": name, "Arn": f"{arn}:iam::{ACCOUNT_ID}:role/{name}", "RoleId": f"AROA{logical_id.upper()}"}
        elif kind == "AWS::Glue::Database":
            attrs = {"Ref": self._prop(logical_id, "DatabaseInput", "Name")}
        elif kind == "AWS::Athena::WorkGroup":
            attrs = {"Ref": self._prop(logical_id, "Name")}
        elif kind == "AWS::EMRServerless::Application":
            app_id = self._service_id(kind, logical_id)
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

    def _service_id(self, kind: str, logical_id: str) -> str:
        if self._service_ids is None:
            raise StackError(f"{logical_id} ({kind}): its id is given by the endpoint, and this stack has none")
        return self._service_ids(self, kind, logical_id)

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
            environment={k: env_str(v) for k, v in env.items()},
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

    # ------------------------------------------------------------------ state machines
    def state_machines(self) -> list[str]:
        """The logical ids of the state machines this deployment has (their Condition, if any, holds)."""
        return [lid for lid, r in self.resources.items() if "StateMachine" in r["Type"] and self.active(lid)]

    def state_machine(self, logical_id: str) -> tuple[dict[str, Any], dict[str, str]]:
        """A state machine's definition with its DefinitionSubstitutions applied, and the substitutions."""
        resource = self.resources.get(logical_id)
        if resource is None or "StateMachine" not in resource["Type"]:
            names = [k for k, v in self.resources.items() if "StateMachine" in v["Type"]]
            raise StackError(f"no state machine {logical_id!r} (state machines: {', '.join(names)})")
        props = resource.get("Properties", {})
        subs = {k: env_str(v) for k, v in (self.resolve(props.get("DefinitionSubstitutions", {})) or {}).items()}
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


def _check_parameter(name: str, spec: Mapping[str, Any], value: str) -> None:
    """Refuse a parameter value CloudFormation would refuse: its `Type`, `AllowedValues`, pattern and bounds."""
    kind = str(spec.get("Type", "String"))
    items = (
        [v.strip() for v in value.split(",")] if kind.startswith("List<") or kind == "CommaDelimitedList" else [value]
    )
    for item in items:
        if "Number" in kind:
            try:
                number = float(item)
            except ValueError:
                raise StackError(f"parameter {name} is a {kind}: {item!r} is not a number") from None
            if "MinValue" in spec and number < float(spec["MinValue"]):
                raise StackError(f"parameter {name}={item} is below its MinValue {spec['MinValue']}")
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                raise StackError(f"parameter {name}={item} is above its MaxValue {spec['MaxValue']}")
        allowed = spec.get("AllowedValues")
        if allowed is not None and item not in [str(a) for a in allowed]:
            choices = ", ".join(str(a) for a in allowed)
            raise StackError(f"parameter {name}={item!r} is not one of its AllowedValues ({choices})")
        pattern = spec.get("AllowedPattern")
        if pattern is not None and re.fullmatch(str(pattern), item) is None:
            raise StackError(f"parameter {name}={item!r} does not match its AllowedPattern {pattern}")
        if "MinLength" in spec and len(item) < int(spec["MinLength"]):
            raise StackError(f"parameter {name} is shorter than its MinLength {spec['MinLength']}")
        if "MaxLength" in spec and len(item) > int(spec["MaxLength"]):
            raise StackError(f"parameter {name} is longer than its MaxLength {spec['MaxLength']}")


def env_str(value: Any) -> str:
    """A template value as an environment variable or job argument: booleans lower case, objects as JSON."""
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

__all__ = ["ACCOUNT_ID", "PARTITION", "REGION", "FunctionSpec", "ServiceIds", "Stack", "StackError", "env_str"]

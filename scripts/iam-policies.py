#!/usr/bin/env python3
"""Write every IAM policy document of deployed templates to JSON files, for a policy linter (parliament).

    .venv/bin/python scripts/iam-policies.py OUT_DIR TRANSFORMED_TEMPLATE...

The templates are template.yaml after the SAM transform (scripts/sam_transform.py), so the roles SAM generates
for functions and state machines are included. Intrinsic functions are resolved as lakebox resolves them (names
and ARNs in CloudFormation's formats, account 123456789012, us-east-1). Resources whose Condition is false under
the template's parameter defaults are skipped in that copy. Written: the inline policies of roles, managed
policies, and the resource policies of buckets, queues, topics and the key, one file each,
``<LogicalId>.<PolicyName>.json``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lakebox.cfn.stack import ACCOUNT_ID, REGION, Stack  # noqa: E402
from lakebox.cfn.template import load_template  # noqa: E402

RESOURCE_POLICIES = {
    "AWS::S3::BucketPolicy": "PolicyDocument",
    "AWS::SQS::QueuePolicy": "PolicyDocument",
    "AWS::SNS::TopicPolicy": "PolicyDocument",
}


def _resolver(path: Path) -> Stack:
    """A stack of the transformed template that resolves without an endpoint (keys and applications stubbed)."""
    stack = Stack(REPO)
    stack.template = load_template(path)
    stack.resources = stack.template["Resources"]
    for logical_id, resource in stack.resources.items():
        if resource["Type"] == "AWS::KMS::Key":
            key = "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"
            arn = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/{key}"
            stack._created[logical_id] = {"Ref": key, "Arn": arn, "KeyId": key}
        elif resource["Type"] == "AWS::EMRServerless::Application":
            app = "00fabcdefghijklm"
            arn = f"arn:aws:emr-serverless:{REGION}:{ACCOUNT_ID}:/applications/{app}"
            stack._created[logical_id] = {"Ref": app, "ApplicationId": app, "Arn": arn}
    return stack


def policies(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(file stem, policy document) of every identity and resource policy of one transformed template."""
    stack = _resolver(path)
    for logical_id, resource in stack.resources.items():
        if not stack.active(logical_id):
            continue
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::IAM::Role":
            for policy in stack.resolve(props.get("Policies", [])) or []:
                yield f"{logical_id}.{policy['PolicyName']}", policy["PolicyDocument"]
        elif kind in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
            yield f"{logical_id}.policy", stack.resolve(props["PolicyDocument"])
        elif kind in RESOURCE_POLICIES:
            yield f"{logical_id}.resource-policy", stack.resolve(props[RESOURCE_POLICIES[kind]])
        elif kind == "AWS::KMS::Key":
            yield f"{logical_id}.key-policy", stack.resolve(props["KeyPolicy"])


def main(argv: Sequence[str] | None = None) -> int:
    """Write the files; print how many."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(args[0])
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.json"):
        stale.unlink()
    written = 0
    for template in args[1:]:
        for stem, document in policies(Path(template)):
            (out / f"{stem}.json").write_text(json.dumps(document, indent=2), encoding="utf-8")
            written += 1
    print(f"    wrote {len(list(out.glob('*.json')))} policy documents ({written} with duplicates) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Write the CloudFormation template that the SAM transform makes of template.yaml, offline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

# Run with the SAM CLI's own interpreter (.tools/sam/bin/python): these come with aws-sam-cli, not the project.
from samcli.commands.validate.lib.exceptions import InvalidSamDocumentException
from samcli.lib.translate.sam_template_validator import SamTemplateValidator
from samcli.yamlhelper import yaml_parse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lakebox.cfn.template import LANGUAGE_EXTENSIONS, expand_for_each


def expand_language_extensions(template: dict[str, Any]) -> dict[str, Any]:
    """The template with its `Fn::ForEach` loops expanded and `AWS::LanguageExtensions` dropped from `Transform`."""
    transforms = template.get("Transform")
    listed = [transforms] if isinstance(transforms, str) else list(transforms or [])
    if LANGUAGE_EXTENSIONS not in listed:
        return template
    for section in ("Conditions", "Resources", "Outputs"):
        if section in template:
            template[section] = expand_for_each(template[section], template)
    rest = [t for t in listed if t != LANGUAGE_EXTENSIONS]
    template["Transform"] = rest[0] if len(rest) == 1 else rest
    return template


class BundledPoliciesOnly:
    """A managed-policy loader for offline use: SAM resolves AWS managed policy names from its bundled map.

    The translator calls `load` only for a policy name missing from that map; offline it cannot be resolved.
    """

    def load(self) -> dict[str, str]:
        """Refuse to look a managed policy up in IAM.

        Returns
        -------
        dict[str, str]
            Never returns.

        Raises
        ------
        SystemExit
            Always: the template names a managed policy that SAM does not know offline.
        """
        raise SystemExit("sam_transform: the template names a managed policy unknown to SAM's bundled map")


def main(argv: list[str] | None = None) -> int:
    """Translate a SAM template to CloudFormation and write it as YAML.

    Parameters
    ----------
    argv
        Command-line arguments: the SAM template, the output path, optionally `--region` and `--set NAME=VALUE`.

    Returns
    -------
    int
        0 when the template translated, 1 when SAM rejected it.
    """
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("template", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument(
        "--expand-only", action="store_true", help="write the template with its Fn::ForEach loops expanded, still SAM"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="use VALUE as parameter NAME's default, so a scanner that evaluates conditions sees that variant",
    )
    args = parser.parse_args(argv)

    template = yaml_parse(args.template.read_text(encoding="utf-8"))
    parameters = template.get("Parameters", {})
    for assignment in args.set:
        name, _, value = assignment.partition("=")
        if name not in parameters:
            print(f"sam_transform: {args.template} has no parameter {name}", file=sys.stderr)
            return 1
        parameters[name]["Default"] = value
    # AWS::LanguageExtensions runs before the SAM transform, as in CloudFormation: the Fn::ForEach loops expand
    # first. lakebox's expander (the one lakebox runs, held to SAM CLI's by tests/unit/test_template.py) expands
    # only the loops; SAM CLI's also resolves conditions and pseudo parameters, which a scan must not see resolved.
    template = expand_language_extensions(template)
    if args.expand_only:
        plain = json.loads(json.dumps(template))  # SAM's parser gives OrderedDicts; YAML writes plain mappings
        args.output.write_text(yaml.safe_dump(plain, sort_keys=False, width=120), encoding="utf-8")
        print(f"    expanded {args.template} -> {args.output}")
        return 0
    validator = SamTemplateValidator(template, BundledPoliciesOnly(), region=args.region)
    try:
        translated = validator.get_translated_template_if_valid()
    except InvalidSamDocumentException as exc:
        print(f"sam_transform: {args.template} is not a valid SAM template: {exc}", file=sys.stderr)
        return 1
    args.output.write_text(translated, encoding="utf-8")
    print(f"    transformed {args.template} -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

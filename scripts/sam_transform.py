"""Write the CloudFormation template that the SAM transform makes of template.yaml, offline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Run with the SAM CLI's own interpreter (.tools/sam/bin/python): these come with aws-sam-cli, not the project.
from samcli.commands.validate.lib.exceptions import InvalidSamDocumentException
from samcli.lib.translate.sam_template_validator import SamTemplateValidator
from samcli.yamlhelper import yaml_parse


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

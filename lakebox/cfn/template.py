"""Read template.yaml as CloudFormation does: short-form intrinsic tags become their long form, and the
`AWS::LanguageExtensions` transform's `Fn::ForEach` loops are expanded."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml


class _CfnLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A YAML loader that understands `!Ref`, `!Sub`, `!GetAtt` and the other short forms.

    On libyaml's C parser when PyYAML has it (the template parses in a tenth of the time), the same constructors.
    """


def _construct(tag: str) -> Any:
    name = "Ref" if tag == "Ref" else f"Fn::{tag}"

    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {name: value}

    return construct


for _tag in (
    "Ref",
    "Sub",
    "GetAtt",
    "Join",
    "If",
    "Equals",
    "Not",
    "And",
    "Or",
    "Select",
    "Split",
    "FindInMap",
    "GetAZs",
    "ImportValue",
    "Base64",
    "Cidr",
    "Condition",
    "Length",
    "ToJsonString",
):
    _CfnLoader.add_constructor(f"!{_tag}", _construct(_tag))
_CfnLoader.add_constructor("!Condition", lambda loader, node: {"Condition": loader.construct_scalar(node)})


LANGUAGE_EXTENSIONS = "AWS::LanguageExtensions"
FOR_EACH = "Fn::ForEach::"


def _transforms(document: dict[str, Any]) -> list[str]:
    declared = document.get("Transform") or []
    return [declared] if isinstance(declared, str) else [str(t) for t in declared]


def _collection(value: Any, document: dict[str, Any], loop: str) -> list[str]:
    """A loop's collection: a list of strings, or `Ref` to a CommaDelimitedList parameter (its default)."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        spec = document.get("Parameters", {}).get(value["Ref"])
        if spec is None or "Default" not in spec:
            raise ValueError(f"{loop}: collection {value} is not a parameter with a default")
        default = spec["Default"]
        value = default if isinstance(default, list) else [v.strip() for v in str(default).split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{loop}: the collection must be a list of strings or a Ref to a list parameter")
    return value


def _substitute(value: Any, identifier: str, item: str) -> Any:
    """`${identifier}` and `&{identifier}` (item without non-alphanumerics) replaced, `Ref identifier` by the item."""
    if isinstance(value, str):
        return value.replace(f"${{{identifier}}}", item).replace(
            f"&{{{identifier}}}", re.sub(r"[^A-Za-z0-9]", "", item)
        )
    if isinstance(value, list):
        return [_substitute(v, identifier, item) for v in value]
    if isinstance(value, dict):
        if value == {"Ref": identifier}:
            return item
        return {_substitute(k, identifier, item): _substitute(v, identifier, item) for k, v in value.items()}
    return value


def expand_for_each(value: Any, document: dict[str, Any]) -> Any:
    """`value` with every `Fn::ForEach::Name: [Identifier, Collection, {OutputKey: OutputValue}]` expanded in place.

    As the `AWS::LanguageExtensions` transform does: each item of the collection stamps out the fragment with the
    identifier replaced, the outputs merge into the mapping that held the loop, and loops nest.

    Raises
    ------
    ValueError
        A malformed loop, or two loops (or a loop and a key) producing the same key.
    """
    if isinstance(value, list):
        return [expand_for_each(v, document) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not (isinstance(key, str) and key.startswith(FOR_EACH)):
            if key in out:
                raise ValueError(f"{key} is declared twice once the Fn::ForEach loops are expanded")
            out[key] = expand_for_each(item, document)
            continue
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str) and isinstance(item[2], dict)):
            raise ValueError(f"{key} must be [Identifier, Collection, {{OutputKey: OutputValue}}]")
        identifier, _, fragment = item
        for element in _collection(item[1], document, key):
            for output_key, output in expand_for_each(_substitute(fragment, identifier, element), document).items():
                if output_key in out or output_key in value:
                    raise ValueError(f"{key} produces {output_key}, which is declared already")
                out[output_key] = output
    return out


def load_template(path: Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template file into plain dicts and lists, its `Fn::ForEach` loops expanded."""
    with path.open(encoding="utf-8") as handle:
        document = yaml.load(handle, Loader=_CfnLoader)
    if not isinstance(document, dict) or "Resources" not in document:
        raise ValueError(f"{path} is not a CloudFormation template (no Resources)")
    if LANGUAGE_EXTENSIONS in _transforms(document):
        for section in ("Conditions", "Resources", "Outputs"):
            if section in document:
                document[section] = expand_for_each(document[section], document)
    return document

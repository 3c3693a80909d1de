"""The template's per-dataset declarations (ADR 0021): what template.yaml lists for the registry, and the edit that
declares a new dataset in it.

The template cannot read the registry, so it lists each dataset once (the `Datasets` mapping), iterates those stems
in its `Fn::ForEach` loops (quarantine-rate and freshness alarms) and writes one processed-zone expiration rule per
event dataset (a lifecycle rule is a list item, which no loop can make). `gaps` says what differs from the registry;
`declare` writes what a file-delivered dataset needs, so `lakebox dataset new` leaves nothing to add by hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from datalake.contracts import Dataset, Delivery
from lakebox.cfn.template import _CfnLoader
from lakebox.errors import LakeboxError

QUARANTINE_LOOP = "Fn::ForEach::DatasetQuarantineAlarms"
FRESHNESS_LOOP = "Fn::ForEach::DatasetFreshnessAlarms"
RETENTION_BUCKET = "ProcessedBucket"


def stem(name: str) -> str:
    """A dataset name as logical ids spell it: `page_views` -> `PageViews`."""
    return "".join(part.capitalize() for part in name.split("_"))


def entry(dataset: Dataset) -> dict[str, str]:
    """The dataset's `Datasets` mapping entry: its name and the `service` dimension of the metrics counting it."""
    streamed = Delivery.STREAM in dataset.deliveries
    return {
        "Dataset": dataset.name,
        "Service": "ingest_stream" if streamed else "ingest_file",
        "FirehoseService": "transform_records" if streamed else "ingest_file",
    }


def has_freshness(dataset: Dataset) -> bool:
    """True when the dataset declares a freshness rule (and so gets a freshness alarm)."""
    return any(check.kind == "freshness" for check in dataset.checks)


def expires(dataset: Dataset) -> bool:
    """True for event data, which the processed zone keeps `ProcessedRetentionDays`; reference data keeps versions."""
    return not dataset.keep_versions


def retained(dataset: Dataset) -> list[str]:
    """The processed-zone folders that expire with an event dataset: its own and its rollups' (ADR 0030), which a run
    rewrites with the same days; none for reference data."""
    return [dataset.name, *(rollup.name for rollup in dataset.rollups)] if expires(dataset) else []


def retention_rule_id(name: str) -> str:
    """The lifecycle rule id of a dataset's processed-zone expiration."""
    return f"Expire{stem(name)}AfterRetention"


@dataclass(frozen=True)
class Declared:
    """What the template as written declares per dataset."""

    datasets: dict[str, dict[str, str]]
    quarantine: list[str]
    freshness: list[str]
    retention: dict[str, str]
    """Prefix -> rule id of the processed bucket's expiration rules."""


def _loop(resources: Mapping[str, Any], name: str) -> list[str]:
    loop = resources.get(name)
    if not isinstance(loop, list) or len(loop) != 3 or not isinstance(loop[1], list):
        raise LakeboxError(f"template.yaml has no {name} loop over a list of stems")
    return [str(s) for s in loop[1]]


def read(text: str) -> Declared:
    """The per-dataset declarations of a template's text (loops unexpanded)."""
    document = yaml.load(text, Loader=_CfnLoader)  # the safe loader, with CloudFormation's tags
    try:
        resources = document["Resources"]
        rules = resources[RETENTION_BUCKET]["Properties"]["LifecycleConfiguration"]["Rules"]
    except (KeyError, TypeError):
        raise LakeboxError(f"template.yaml has no {RETENTION_BUCKET} with lifecycle rules") from None
    return Declared(
        datasets={str(k): dict(v) for k, v in document.get("Mappings", {}).get("Datasets", {}).items()},
        quarantine=_loop(resources, QUARANTINE_LOOP),
        freshness=_loop(resources, FRESHNESS_LOOP),
        retention={
            str(r["Prefix"]): str(r["Id"])
            for r in rules
            if r.get("Prefix") and r.get("ExpirationInDays") == {"Ref": "ProcessedRetentionDays"}
        },
    )


def gaps(declared: Declared, registry: Iterable[Dataset]) -> list[str]:
    """Each difference between the template's declarations and the registry, as the edit that closes it."""
    datasets = sorted(registry, key=lambda d: d.name)
    problems = []
    wanted = {stem(d.name): entry(d) for d in datasets}
    for key, value in wanted.items():
        if declared.datasets.get(key) != value:
            fields = ", ".join(f"{k}: {v}" for k, v in value.items())
            problems.append(f"Mappings.Datasets: write `{key}: {{{fields}}}`")
    problems += [f"Mappings.Datasets: remove {key} (no such dataset)" for key in declared.datasets if key not in wanted]
    for loop, stems in (
        (QUARANTINE_LOOP, sorted(wanted)),
        (FRESHNESS_LOOP, sorted(stem(d.name) for d in datasets if has_freshness(d))),
    ):
        current = declared.quarantine if loop == QUARANTINE_LOOP else declared.freshness
        if sorted(current) != stems:
            problems.append(f"{loop}: iterate [{', '.join(stems)}], not [{', '.join(current)}]")
    prefixes = {f"{name}/": retention_rule_id(name) for d in datasets for name in retained(d)}
    for prefix, rule in prefixes.items():
        if declared.retention.get(prefix) != rule:
            problems.append(
                f"{RETENTION_BUCKET} LifecycleConfiguration: add rule {rule} (Prefix: {prefix}, "
                "ExpirationInDays: !Ref ProcessedRetentionDays)"
            )
    problems += [
        f"{RETENTION_BUCKET} LifecycleConfiguration: remove rule {rule} (no event dataset or rollup {prefix})"
        for prefix, rule in declared.retention.items()
        if prefix not in prefixes
    ]
    return problems


def _add_to_loop(text: str, loop: str, item: str) -> str:
    pattern = re.compile(rf"(^  {re.escape(loop)}:\n    - \w+\n    - \[)([^\]]*)(\])", re.MULTILINE)
    found = pattern.search(text)
    if found is None:
        raise LakeboxError(f"template.yaml: cannot find the collection of {loop}")
    items = sorted({*(s.strip() for s in found.group(2).split(",") if s.strip()), item})
    return text[: found.start(2)] + ", ".join(items) + text[found.end(2) :]


def _add_mapping_entry(text: str, key: str, value: Mapping[str, str]) -> str:
    found = re.search(r"^  Datasets:\n((?:    .*\n)*)", text, re.MULTILINE)
    if found is None:
        raise LakeboxError("template.yaml: cannot find the Datasets mapping")
    lines = [line for line in found.group(1).splitlines(keepends=True) if not line.startswith(f"    {key}:")]
    fields = ", ".join(f"{k}: {v}" for k, v in value.items())
    lines.append(f"    {key}: {{{fields}}}\n")
    lines.sort()
    return text[: found.start(1)] + "".join(lines) + text[found.end(1) :]


def _add_retention_rule(text: str, name: str) -> str:
    bucket = text.index(f"\n  {RETENTION_BUCKET}:\n")
    anchor = text.index("          - Id: ExpireNoncurrentVersions\n", bucket)
    rule = (
        f"          - Id: {retention_rule_id(name)}\n"
        "            Status: Enabled\n"
        f"            Prefix: {name}/\n"
        "            ExpirationInDays: !Ref ProcessedRetentionDays\n"
    )
    return text[:anchor] + rule + text[anchor:]


def declare(text: str, dataset: Dataset) -> str:
    """The template's text with a file-delivered dataset declared: its mapping entry, its stem in the alarm loops,
    and its expiration rule when it is event data. A dataset already declared is left as it is.

    Raises
    ------
    LakeboxError
        For a stream-delivered dataset (its stream resources are declared by hand, ADR 0014) or a template whose
        declarations cannot be found.
    """
    if Delivery.STREAM in dataset.deliveries:
        raise LakeboxError(f"{dataset.name} is stream-delivered: declare its stream in template.yaml (ADR 0014)")
    declared = read(text)
    key = stem(dataset.name)
    if declared.datasets.get(key) != entry(dataset):
        text = _add_mapping_entry(text, key, entry(dataset))
    if key not in declared.quarantine:
        text = _add_to_loop(text, QUARANTINE_LOOP, key)
    if has_freshness(dataset) and key not in declared.freshness:
        text = _add_to_loop(text, FRESHNESS_LOOP, key)
    for name in retained(dataset):
        if f"{name}/" not in declared.retention:
            text = _add_retention_rule(text, name)
    return text


def declare_file(path: Path, dataset: Dataset) -> str:
    """Declare a file-delivered dataset in the template at `path` (see `declare`); what was done, in one line."""
    text = path.read_text(encoding="utf-8")
    try:
        updated = declare(text, dataset)
    except LakeboxError as exc:
        return f"{path.name} not changed ({exc}): declare {dataset.name}'s alarms and retention by hand (ADR 0021)"
    if updated == text:
        return f"{path.name} already declares {dataset.name}'s alarms and retention"
    path.write_text(updated, encoding="utf-8")
    parts = ["quarantine-rate alarm"]
    parts += ["freshness alarm"] if has_freshness(dataset) else []
    parts += ["processed retention rule"] if expires(dataset) else []
    return f"{path.name}: declared {dataset.name} ({', '.join(parts)}; ADR 0021)"

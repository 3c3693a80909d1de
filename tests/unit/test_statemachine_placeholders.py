"""Every state machine's ${Placeholders} are exactly the DefinitionSubstitutions the template gives it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from lakebox.cfn.template import load_template
from lakebox.sfn import validate_definition

ROOT = Path(__file__).resolve().parents[2]
ASL_FILES = sorted((ROOT / "statemachines").glob("*.asl.json"))
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
STATE_MACHINE_TYPES = ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")


def _state_machines() -> dict[str, dict[str, Any]]:
    """The template's state machines by the ASL file they point at (relative to the project root)."""
    resources = load_template(ROOT / "template.yaml")["Resources"]
    found: dict[str, dict[str, Any]] = {}
    for logical_id, resource in resources.items():
        if resource["Type"] in STATE_MACHINE_TYPES:
            properties = resource.get("Properties", {})
            uri = properties.get("DefinitionUri") or properties.get("DefinitionS3Location")
            if isinstance(uri, str):
                found[uri.removeprefix("./")] = {"logical_id": logical_id, **properties}
    return found


def test_there_is_a_state_machine_definition() -> None:
    # GIVEN the repository WHEN statemachines/ is listed THEN it holds at least the pipeline
    assert ROOT / "statemachines" / "pipeline.asl.json" in ASL_FILES


@pytest.mark.parametrize("path", ASL_FILES, ids=lambda path: path.name)
def test_placeholders_equal_the_definition_substitutions(path: Path) -> None:
    # GIVEN an ASL file and the template resource that deploys it
    relative = path.relative_to(ROOT).as_posix()
    machines = _state_machines()
    assert relative in machines, f"no state machine in template.yaml has DefinitionUri {relative}"
    substitutions = set(machines[relative].get("DefinitionSubstitutions") or {})

    # WHEN the placeholders of the file are collected
    placeholders = set(PLACEHOLDER.findall(path.read_text(encoding="utf-8")))

    # THEN both sets are the same: nothing left unresolved, nothing substituted in vain
    assert placeholders - substitutions == set(), "placeholders without a substitution"
    assert substitutions - placeholders == set(), "substitutions no placeholder uses"


@pytest.mark.parametrize("path", ASL_FILES, ids=lambda path: path.name)
def test_definition_is_valid_for_the_local_executor_once_substituted(path: Path) -> None:
    # GIVEN an ASL file whose placeholders are filled with sample values
    text = PLACEHOLDER.sub(lambda match: f"sample-{match.group(1)}", path.read_text(encoding="utf-8"))

    # WHEN it is validated THEN every state is well formed and uses only what the executor runs
    validate_definition(json.loads(text))

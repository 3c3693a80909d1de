"""Every sample event in events/ runs as shipped: `lakebox invoke FUNCTION --event FILE`, with no other option."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lakebox import cli
from lakebox.cfn.template import load_template
from tests.conftest import EVENTS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted(EVENTS.glob("*/*.json"))


def _function(folder: str) -> str:
    """The logical id of the function whose code is `functions/<folder>/`."""
    resources = load_template(ROOT / "template.yaml")["Resources"]
    (found,) = [
        lid
        for lid, r in resources.items()
        if r["Type"] == "AWS::Serverless::Function"
        and str(r["Properties"].get("CodeUri", "")).rstrip("/") == f"functions/{folder}"
    ]
    return str(found)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sample_event_runs_as_shipped(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a fresh local lake
    monkeypatch.setenv("LAKEBOX_HOME", str(tmp_path / "lake"))
    monkeypatch.chdir(ROOT)
    # WHEN the sample event is invoked on its function with no option at all
    code = cli.main(["invoke", _function(path.parent.name), "--event", str(path.relative_to(ROOT))])
    out, err = capsys.readouterr()
    # THEN the function ran and answered (a scheduled pull reached the local sample API and landed its records)
    assert code == 0, err[-2000:]
    result = json.loads(out)
    if path.parent.name == "ingest_api":
        assert result["status"] == "LANDED" and result["records"] > 0, result

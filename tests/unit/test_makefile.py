"""`make`'s own output: the first `make run` tells what it is doing while it installs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FAKE_PIP = """#!/bin/sh
# pip as it prints a fresh install (one Collecting line a requirement), or nothing with --quiet
case " $* " in *" --quiet "*|*" -q "*) exit 0 ;; esac
echo "Collecting boto3==1.40.0 (from -r requirements/dev.txt (line 3))"
echo "  Using cached boto3-1.40.0-py3-none-any.whl (139 kB)"
echo "Collecting pyspark==3.5.5 (from -r requirements/dev.txt (line 9))"
echo "Installing collected packages: boto3, pyspark"
echo "Successfully installed boto3-1.40.0 pyspark-3.5.5"
"""


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_the_dependency_install_says_what_it_does(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for name in ("python", "pip"):
        tool = venv / "bin" / name
        tool.write_text(FAKE_PIP)
        tool.chmod(0o755)
    # WHEN make installs the dependencies (a pip that prints what a fresh install prints)
    ran = subprocess.run(
        ["make", "--no-print-directory", "-B", f"VENV={venv}", "PYTHON=sh", f"{venv}/.installed"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    # THEN it says it installs, names each package as pip reaches it, and says when it is done
    assert lines[0].startswith("make: installing dependencies into"), lines
    assert "  boto3==1.40.0" in lines and "  pyspark==3.5.5" in lines, lines
    assert lines[-1] == "make: dependencies installed", lines

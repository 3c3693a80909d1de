"""Every `lakebox …` command in README.md's workflow blocks runs, as written, against a lake of its own.

The blocks are read from README.md (```bash fences) and run in order in one LAKEBOX_HOME, from the project root,
as a user would paste them. A block that starts `lakebox up` runs with `up` running (on a free port in place of
4566), and its `export …` and `aws …` lines run too, with the environment the block exports and nothing else of
the test's. What is not run, and why:

- the block of `lakebox dataset new orders --from orders.csv`: it writes a contract module into the project's
  registry, from a file of the reader's own (tests/integration/test_new_dataset.py runs it in a copy);
- the "Use your own tools" block (AWS CLI, awswrangler, shell loops): tests/integration/test_endpoint_clients.py
  runs those clients against `up`;
- `make run` is run as the `lakebox run` it stands for, smaller (`--rows 2000 --stream-seconds 0 --api-rows 50`);
- lines behind a `#` are comments (the whole-object replay is one: the sample quarantines no whole object).

A word the README names as a placeholder (`QUARANTINE_KEY`) is filled from the lake, as a reader fills it from
what `lakebox quarantine` printed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli
from tests.integration.test_workbench import Up, _free_port

pytestmark = pytest.mark.slow

FENCE = re.compile(r"```bash\n(.*?)```", re.S)
LAKEBOX = ".venv/bin/lakebox"
MAKE_RUN = ("run", "--rows", "2000", "--stream-seconds", "0", "--api-rows", "50")
EXPECTED_EXIT = {("query", "--as", "analyst", "SELECT * FROM sales"): 1}
"""Commands the README shows failing on purpose (its comment says so), with the exit they must end with."""
NOT_RUN = ("dataset new", "aws athena")
"""Blocks holding one of these are not run (see the module's doc)."""
WRITTEN_IN_ROOT = ("samples", "bad.jsonl")
"""What the README's commands write in the project folder; removed afterwards unless it was there before."""


@dataclass
class Block:
    """One README block as the test runs it: `up` or not, and its lines as argument lists."""

    up: bool = False
    lines: list[tuple[str, ...]] = field(default_factory=list)


def readme_blocks(text: str) -> list[Block]:
    """The README's bash blocks that run lakebox, in order: lakebox lines without `.venv/bin/lakebox`, and the
    `export`/`aws` lines of a block that starts `up`."""
    blocks = []
    for body in FENCE.findall(text):
        if LAKEBOX not in body:
            continue
        if any(marker in body for marker in NOT_RUN):
            continue
        block = Block()
        for line in body.splitlines():
            words = shlex.split(line, comments=True)
            if words[:2] == ["make", "run"]:
                block.lines.append(MAKE_RUN)
            elif words[:2] == [LAKEBOX, "up"]:
                block.up = True
            elif words[:1] == [LAKEBOX]:
                block.lines.append(tuple(words[1:]))
            elif words[:1] in (["export"], ["aws"]) and block.up:
                block.lines.append(tuple(words))
        blocks.append(block)
    return blocks


def _readme() -> list[Block]:
    return readme_blocks((ROOT / "README.md").read_text(encoding="utf-8"))


def test_the_readme_workflow_blocks_are_found() -> None:
    blocks = _readme()
    verbs = {line[0] for block in blocks for line in block.lines}
    assert {"sample", "put", "execute", "query", "quarantine", "replay", "runs", "dashboard", "aws"} <= verbs
    assert any(block.up for block in blocks)


def _fill(command: tuple[str, ...], home: Path) -> tuple[str, ...]:
    if "QUARANTINE_KEY" not in command:
        return command
    listed = run_cli(home, "quarantine", "--dataset", "sales", "--json")
    assert listed.returncode == 0, listed.stderr
    key = next(o["key"] for o in json.loads(listed.stdout)["object_states"] if o["state"] == "outstanding")
    return tuple(key if word == "QUARANTINE_KEY" else word for word in command)


def _aws(command: tuple[str, ...], exported: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """An `aws` line with only what the README exported (the test's fake credentials are not the reader's)."""
    tools = ROOT / ".tools" / "clients" / "awscli" / "bin" / "aws"
    executable = str(tools) if tools.exists() else shutil.which("aws")
    if executable is None:
        pytest.skip("no AWS CLI: run `bash scripts/ensure-clients.sh`")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | exported
    environment["AWS_CONFIG_FILE"] = environment["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    return subprocess.run(
        [executable, *command[1:]], cwd=ROOT, env=environment, capture_output=True, text=True, check=False
    )


def test_every_readme_command_runs_as_written(tmp_path: Path) -> None:
    home = tmp_path / "lake"
    existed = {name for name in WRITTEN_IN_ROOT if (ROOT / name).exists()}
    ran: list[str] = []
    try:
        for block in _readme():
            port = _free_port()
            up = Up(home, port) if block.up else None
            exported: dict[str, str] = {}
            try:
                for line in block.lines:
                    words = tuple(w.replace(":4566", f":{port}") for w in line)
                    if words[0] == "export":
                        exported.update(w.split("=", 1) for w in words[1:])  # type: ignore[arg-type]
                        continue
                    if words[0] == "aws":
                        result = _aws(words, exported)
                    else:
                        words = _fill(words, home)
                        result = run_cli(home, *words)
                    expected = EXPECTED_EXIT.get(line, 0)
                    assert result.returncode == expected, (
                        f"{shlex.join(words)} exited {result.returncode}, not {expected}:\n"
                        f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}\n{up.output()[-2000:] if up else ''}"
                    )
                    ran.append(words[0])
            finally:
                if up is not None:
                    up.stop()
    finally:
        for name in set(WRITTEN_IN_ROOT) - existed:
            path = ROOT / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    assert {"run", "sample", "put", "aws", "execute", "replay"} <= set(ran)


def test_lakebox_help_lists_every_readme_verb() -> None:
    verbs = {line[0] for block in _readme() for line in block.lines} - {"export", "aws"}
    shown = subprocess.run(
        [sys.executable, "-m", "lakebox.cli", "--help"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert all(verb in shown.stdout for verb in verbs), shown.stdout

"""Long outputs through the command line: listings cut to their newest rows with what is left out said, and output
taller than a terminal paged through `$PAGER`, never when standard output is not a terminal or in CI."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.integration

RUNS = 25


def _record_runs(home: Path, count: int = RUNS) -> list[str]:
    """`count` recorded pipeline runs, one a minute, as the executor writes them to the lake's `runs/` folder."""
    folder = home / "runs"
    folder.mkdir(parents=True)
    names = []
    for n in range(count):
        name = f"lakebox-run-{n:03d}"
        started = f"2026-12-07T08:{n:02d}:00+00:00"
        document: dict[str, object] = {
            "name": name,
            "state_machine": "PipelineStateMachine",
            "status": "SUCCEEDED" if n % 4 else "FAILED",
            "started": started,
            "stopped": f"2026-12-07T08:{n:02d}:30+00:00",
            "seconds": 30.0,
            "input": {},
            "datasets": ["sales"],
            "note": None,
            "held": None,
            "error": None if n % 4 else "States.TaskFailed",
            "cause": None if n % 4 else "the Spark job failed",
            "states": [{"state": "Run Spark Job", "started": started, "seconds": 25.0, "attempts": 1, "retries": 0}],
        }
        (folder / f"20261207T08{n:02d}00000000-{name}.json").write_text(json.dumps(document))
        names.append(name)
    return names


def _shown(output: str, names: list[str]) -> list[str]:
    return [name for name in names if name in output]


def test_runs_shows_the_newest_and_says_how_many_more(tmp_path: Path) -> None:
    # GIVEN a lake with 25 recorded runs
    names = _record_runs(tmp_path)
    # WHEN `lakebox runs` prints to a pipe
    listed = run_cli(tmp_path, "runs")
    # THEN it shows the newest 20, and says what it left out and how to see it
    assert listed.returncode == 0, listed.stderr
    assert _shown(listed.stdout, names) == names[-20:]
    assert "… and 5 more; --all to show all" in listed.stdout
    assert f"{RUNS} runs" in listed.stdout
    # AND --all shows every run, with no such line; --json is never cut
    every = run_cli(tmp_path, "runs", "--all")
    assert _shown(every.stdout, names) == names and "more;" not in every.stdout
    assert len(json.loads(run_cli(tmp_path, "runs", "--json", "--all").stdout)) == RUNS


def _in_a_terminal(home: Path, *args: str, env: dict[str, str]) -> tuple[int, str]:
    """Run `lakebox ARGS` with its standard output a terminal (a pseudo-terminal); its exit status and output."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CI"))}
    environment |= {"LAKEBOX_HOME": str(home), "COLUMNS": "160", "LINES": "15"} | env
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "lakebox.cli", *args],
        cwd=ROOT,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=subprocess.PIPE,
    )
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the command ended
                break
            if not chunk:
                break
            chunks.append(chunk)
        elif process.poll() is not None:
            break
    code = process.wait(60)
    os.close(leader)
    return code, b"".join(chunks).decode(errors="replace")


def test_output_taller_than_the_terminal_goes_through_the_pager(tmp_path: Path) -> None:
    names = _record_runs(tmp_path / "lake")
    paged = tmp_path / "paged.txt"
    pager = {"PAGER": f"sh -c 'cat > {paged}'"}
    # GIVEN a terminal of 15 lines WHEN every run (25) is listed
    code, screen = _in_a_terminal(tmp_path / "lake", "runs", "--all", env=pager)
    # THEN the listing went to the pager, whole, and not straight to the terminal
    assert code == 0
    assert _shown(paged.read_text(), names) == names
    assert not _shown(screen, names)
    # AND output that fits the terminal is printed as it is
    paged.unlink()
    code, screen = _in_a_terminal(tmp_path / "lake", "runs", "--limit", "2", env=pager)
    assert code == 0 and _shown(screen, names) == names[-2:] and not paged.exists()
    # AND in CI, or with PAGER=cat, nothing is paged
    for quiet in ({"CI": "true"}, {"PAGER": "cat"}):
        code, screen = _in_a_terminal(tmp_path / "lake", "runs", "--all", env=pager | quiet)
        assert code == 0 and _shown(screen, names) == names and not paged.exists(), quiet


def test_output_to_a_pipe_is_never_paged(tmp_path: Path) -> None:
    names = _record_runs(tmp_path / "lake")
    paged = tmp_path / "paged.txt"
    listed = run_cli(tmp_path / "lake", "runs", "--all", env={"PAGER": f"sh -c 'cat > {paged}'", "LINES": "5"})
    assert listed.returncode == 0 and _shown(listed.stdout, names) == names
    assert not paged.exists()


@pytest.mark.slow
def test_quarantine_lists_the_first_objects_outstanding_first_and_says_how_many_more(tmp_path: Path) -> None:
    # GIVEN 23 objects quarantined whole (malformed JSON documents)
    files = []
    for n in range(23):
        path = tmp_path / f"broken-{n:02d}.json"
        path.write_text('{"transaction_id": "T1", "quantity": ')
        files.append(str(path))
    home = tmp_path / "lake"
    put = run_cli(home, "put", *files, "--dataset", "sales")
    assert put.returncode == 3, put.stderr  # every object quarantined
    # WHEN the quarantine is listed
    listed = run_cli(home, "quarantine", "--samples", "0")
    # THEN 20 objects are shown and the rest is counted, with how to see them
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("broken-") == 20, listed.stdout
    assert "23 objects" in listed.stdout and "… and 3 more; --all to show all" in listed.stdout
    every = run_cli(home, "quarantine", "--samples", "0", "--all")
    assert every.stdout.count("broken-") == 23 and "more;" not in every.stdout

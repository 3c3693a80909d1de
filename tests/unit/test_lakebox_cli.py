"""The command line's own behaviour: usage errors, tables at a terminal's width (no box is opened)."""

from __future__ import annotations

import pytest

from lakebox import cli


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["nosuch"], "lakebox: error: argument command: invalid choice: 'nosuch'"),
        (["run", "--rows", "-5"], "lakebox run: error: argument --rows: -5 is not above zero"),
        ([], "lakebox: error: the following arguments are required: command"),
        (["query"], "lakebox query: error: the following arguments are required: sql"),
    ],
)
def test_a_usage_error_is_one_line_with_the_command_that_helps(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == cli.EXIT_USAGE
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(expected), lines[0]
    helper = "lakebox --help" if expected.startswith("lakebox:") else f"lakebox {argv[0]} --help"
    assert lines[0].endswith(f"(help: {helper})"), lines[0]


def test_the_hint_after_run_names_a_command_that_works_outside_the_venv(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    venv_script = Path(sys.executable).parent / "lakebox"
    if not venv_script.exists():
        pytest.skip("lakebox is not installed as a script next to this interpreter")
    # GIVEN a shell in the project whose PATH does not hold the venv (no `activate`)
    monkeypatch.chdir(root)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert shutil.which("lakebox") is None
    hint = cli.kept_lake_hint()
    # THEN the hint spells each command so that this shell runs it
    command = hint.split("`")[1].split(" query ")[0]
    assert command != "lakebox"
    ran = subprocess.run([*command.split(), "--help"], capture_output=True, text=True, check=False, cwd=root)
    assert ran.returncode == 0, ran.stderr
    assert "usage: lakebox" in ran.stdout

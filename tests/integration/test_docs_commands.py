"""Every command in README.md and docs/*.md runs as written against a lake of its own, or is excused with its reason.

The commands are read from the documents' ```bash blocks, and from the `$ ` lines of plain blocks (a command shown
with its output, which must then appear). Each block runs as one bash script, as a reader pastes it, from a copy of
the project (so what the commands write, `samples/`, a contract module, a template entry, stays out of the
project) with `LAKEBOX_HOME` in a temporary folder. The documents run in order in one lake, as a reader who
followed the README goes on to the other documents: README.md, docs/datasets.md (which adds a dataset, `returns`,
beside the README's `orders`), docs/governance.md, docs/runbook.md.

What is changed before a command runs, and why:

- `make run` runs as the `lakebox run` it stands for, smaller (`--rows 2000 --stream-seconds 0 --api-rows 50`),
  once: README shows it twice (set-up, then the lake you keep), and the second would only run the demo again;
- `lakebox up --port 4566` runs in the background on a free port (every `:4566` of the blocks that follow it reads
  that port) while the blocks that need it run: the one that starts it and those that name its endpoint;
- the word the README names as a placeholder, `QUARANTINE_KEY`, is filled from the lake, as a reader fills it from
  what `lakebox quarantine` printed.

What is not run is `EXCUSED`: one pattern per kind of command that cannot run here by its nature, with the
reason. A command that is neither run successfully nor excused fails the test; so does an excuse that no longer
matches anything, and a placeholder (`<…>`) in a command that is run. Excused commands are still checked where it
is cheap: every `aws` command's operation and options against the CLI's service models, every `python scripts/…`
command's arguments against the script's parser, every `$(out X)` and `$(res X)` against the template (ADR 0028).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.integration.test_workbench import _free_port

FENCE = re.compile(r"^([ \t]*)```(\w*)\n(.*?)^[ \t]*```", re.S | re.M)
HEADING = re.compile(r"^#+ (.+)$", re.M)
DOCUMENTS = ("README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")))
LAKE = ("README.md", "docs/datasets.md", "docs/governance.md", "docs/runbook.md")
"""The documents that hold commands, run in this order in one lake (see the module's doc)."""
MAKE_RUN = ".venv/bin/lakebox run --rows 2000 --stream-seconds 0 --api-rows 50"
UP = re.compile(r"^\.venv/bin/lakebox up\b")
ENDPOINT = "127.0.0.1:4566"
PLACEHOLDER = re.compile(r"<[^<>\s][^<>]*>")
EXPECTED_EXIT = {'.venv/bin/lakebox query --as analyst "SELECT * FROM sales"': 1}
"""Commands the documents show failing on purpose (their comment or output says so), with the exit they end with."""
DEPLOYED_STACK = (
    r"\$STACK\b|\$\((out|res) |\$(RAW|LANDING|PROCESSED|CURATED|PIPELINE|Q|ROLE_ARN|RUN_ID|DB)\b"
    r"|^(STACK|LANDING|PIPELINE|DB)=|^(out|res)\(\)"
)
EXCUSED: tuple[tuple[str, str], ...] = (
    (
        DEPLOYED_STACK,
        "the deployed stack: the runbook reads its names from the stack's CloudFormation outputs and resources "
        "(`out`, `res`), which lakebox's endpoint does not serve; the local equivalents are lakebox commands",
    ),
    (
        r"^(JOB=\$\()?aws sagemaker ",
        "SageMaker on the account: lakebox's endpoint serves no SageMaker API; it runs the training and transform "
        "jobs as local processes, which `lakebox run` reports (their logs: .lakebox/logs/sagemaker/)",
    ),
    (r"^git switch ", "checks out a release: it would change the very tree the tests run from"),
    (r"^make deploy\b", "deploys to an AWS account (`sam deploy`); the template checks run in tests/unit"),
    (
        r"^aws secretsmanager create-secret --name datalake/source-api ",
        "creates the source API's secret in the AWS account, before the first deploy (lakebox serves a sample API)",
    ),
    (r"^make test\b", "the whole suite, of which this test is a part"),
    (
        r"^make bench\b|^\.venv/bin/python bench/",
        "benchmarks: minutes each at 100k to 5M rows on a shared machine; they print figures, not verdicts",
    ),
)
"""What is not run: a pattern (on the command as written) and the reason."""
CLI_GLOBALS = frozenset(
    {
        "--query",
        "--output",
        "--region",
        "--endpoint-url",
        "--no-paginate",
        "--max-items",
        "--page-size",
        "--starting-token",
        "--debug",
        "--profile",
        "--cli-input-json",
        "--no-cli-pager",
    }
)
CLI_CUSTOM = {("cloudtrail", "validate-logs"): frozenset({"--trail-arn", "--start-time", "--end-time"})}
"""AWS CLI commands that are not one API operation, with their options."""
S3_COMMANDS = frozenset({"cp", "ls", "mv", "rm", "sync", "mb", "rb", "presign", "website"})


@dataclass(frozen=True)
class Command:
    """One command of a document as written (continuation lines and here-documents included)."""

    document: str
    section: str
    text: str
    shown: str | None = None
    """The output a `$ ` transcript shows after the command (`…` where it elides)."""

    @property
    def bare(self) -> str:
        """The command without a trailing comment (one-line commands)."""
        return re.sub(r"\s+#[^'\"]*$", "", self.text) if "\n" not in self.text else self.text

    def excuse(self) -> str | None:
        return next((why for pattern, why in EXCUSED if re.search(pattern, self.text, re.M)), None)


@dataclass
class Block:
    document: str
    section: str
    commands: list[Command] = field(default_factory=list)

    @property
    def starts_up(self) -> bool:
        return bool(self.commands) and bool(UP.match(self.commands[0].text))

    @property
    def needs_up(self) -> bool:
        return self.starts_up or any(ENDPOINT in c.text and not c.excuse() for c in self.commands)


def _split(body: str) -> list[str]:
    """A bash block's commands: comment lines dropped, `\\` continuations and here-documents kept whole."""
    lines, commands, i = body.splitlines(), [], 0
    while i < len(lines):
        text = lines[i]
        i += 1
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        while text.endswith("\\") and i < len(lines):
            text, i = f"{text}\n{lines[i]}", i + 1
        heredoc = re.search(r"<<-?'?(\w+)'?", text)
        while heredoc and i < len(lines):
            text, i = f"{text}\n{lines[i]}", i + 1
            if lines[i - 1] == heredoc.group(1):
                break
        commands.append(text)
    return commands


def _transcript(body: str) -> list[tuple[str, str]]:
    """The `$ ` lines of a plain block, each with the output shown under it."""
    pairs: list[tuple[str, str]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            pairs.append((line[2:], ""))
        elif pairs:
            pairs[-1] = (pairs[-1][0], f"{pairs[-1][1]}{line}\n")
    return pairs


def blocks_of(document: str) -> list[Block]:
    """The blocks of commands of one document, in order."""
    text = (ROOT / document).read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        indent, language, body = match.groups()
        body = textwrap.dedent(body) if indent else body
        headings = HEADING.findall(text, 0, match.start())
        block = Block(document, headings[-1] if headings else "")
        if language == "bash":
            block.commands = [Command(document, block.section, c) for c in _split(body)]
        elif not language:
            block.commands = [Command(document, block.section, c, shown) for c, shown in _transcript(body)]
        if block.commands:
            blocks.append(block)
    return blocks


def all_commands() -> list[Command]:
    return [c for document in DOCUMENTS for block in blocks_of(document) for c in block.commands]


# ---------------------------------------------------------------------- what is run, what is excused
def test_every_document_with_commands_is_run_in_a_lake() -> None:
    with_commands = {document for document in DOCUMENTS if blocks_of(document)}
    assert with_commands <= set(LAKE), with_commands


def test_every_excuse_has_a_use_and_run_commands_hold_no_placeholder() -> None:
    commands = all_commands()
    unused = [pattern for pattern, _ in EXCUSED if not any(re.search(pattern, c.text, re.M) for c in commands)]
    assert not unused, f"excuses that match no command any more: {unused}"
    placeholders = [c.text for c in commands if not c.excuse() and PLACEHOLDER.search(c.text)]
    assert not placeholders, f"commands a reader cannot paste as they are: {placeholders}"
    expected = {command for command in EXPECTED_EXIT}
    assert expected <= {c.bare for c in commands}, "an expected failure no document shows any more"


def test_the_documented_workflow_is_among_what_runs() -> None:
    run = [c.text for c in all_commands() if not c.excuse()]
    verbs = {m.group(1) for t in run if (m := re.match(r"(?:\.venv/bin/)?lakebox (\w+)", t))}
    assert {"up", "sample", "put", "execute", "query", "quarantine", "replay", "runs", "dashboard"} <= verbs
    assert {"dataset", "alarms", "catalog"} <= verbs
    assert any(t.startswith("make run") for t in run) and any(t.startswith("aws ") for t in run)
    assert any(t.startswith("cat > returns.csv") for t in run)


def _aws_words(text: str) -> list[list[str]]:
    """The `aws …` invocations in a command, each as its words up to the next shell operator."""
    text = re.sub(r"\$\([^()]*\)", "VALUE", text.replace("\\\n", " "))
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|<>()")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    runs: list[list[str]] = []
    current: list[str] | None = None
    words = list(lexer)
    for word in words:
        if current is not None and word and set(word) <= set(";&|<>()"):
            runs.append(current)
            current = None
        elif current is not None:
            current.append(word)
        elif word == "aws":
            current = []
    if current is not None:
        runs.append(current)
    return runs


def test_every_aws_command_names_an_operation_and_options_the_cli_has() -> None:
    import botocore.session
    from botocore import xform_name

    session = botocore.session.get_session()
    problems = []
    for command in all_commands():
        for words in _aws_words(command.text):
            service, operation, rest = words[0], words[1], words[2:]
            options = {w.split("=", 1)[0] for w in rest if w.startswith("--")}
            if service == "s3":
                allowed: frozenset[str] | set[str] = {"--recursive", "--exclude", "--include", "--dryrun", "--quiet"}
                known = operation in S3_COMMANDS
            elif (service, operation) in CLI_CUSTOM:
                allowed, known = CLI_CUSTOM[(service, operation)], True
            else:
                model = session.get_service_model("s3" if service == "s3api" else service)
                names = {xform_name(name, "-"): name for name in model.operation_names}
                known = operation in names
                shape = model.operation_model(names[operation]).input_shape if known else None
                members = shape.members if shape is not None else {}
                allowed = {f"--{xform_name(m, '-')}" for m in members} | {
                    f"--no-{xform_name(m, '-')}" for m, s in members.items() if s.type_name == "boolean"
                }
            if not known:
                problems.append(f"{command.document}: aws {service} {operation}: no such command")
            elif wrong := options - set(allowed) - CLI_GLOBALS:
                problems.append(f"{command.document}: aws {service} {operation}: no option {sorted(wrong)}")
    assert not problems, "\n".join(problems)


def test_every_excused_script_accepts_its_documented_arguments(tmp_path: Path) -> None:
    """`python scripts/…` against a stack cannot run here, but its command line can be parsed: with names filled in
    and an endpoint that answers nothing, it must fail on the connection (1), not on its arguments (2)."""
    scripts = [c for c in all_commands() if c.excuse() and c.text.lstrip().startswith("python scripts/")]
    assert scripts
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for command in scripts:
        text = re.sub(r"\$\([^()]*\)|\$\w+", "stack-value", command.text.replace("\\\n", " "))
        words = shlex.split(PLACEHOLDER.sub("value", text), comments=True)
        result = subprocess.run(
            [sys.executable, str(ROOT / words[1]), *words[2:]],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 1 and "usage:" not in result.stderr, (command.text, result.stderr)


def test_the_stack_outputs_and_resources_the_runbook_reads_exist() -> None:
    from lakebox.cfn.template import load_template

    template = load_template(ROOT / "template.yaml")
    texts = [(ROOT / document).read_text(encoding="utf-8") for document in DOCUMENTS]
    outputs = {name for text in texts for name in re.findall(r"\$\(out (\w+)\)", text)}
    resources = {name for text in texts for name in re.findall(r"\$\(res (\w+)\)", text)}
    assert outputs and resources
    assert not outputs - set(template["Outputs"]), "outputs the template does not have"
    assert not resources - set(template["Resources"]), "resources the template does not have"


def test_lakebox_help_lists_every_documented_verb() -> None:
    verbs = {m.group(1) for c in all_commands() if (m := re.match(r"(?:\.venv/bin/)?lakebox (\w+)", c.text))}
    shown = subprocess.run(
        [sys.executable, "-m", "lakebox.cli", "--help"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert all(verb in shown.stdout for verb in verbs), (verbs, shown.stdout)


# ---------------------------------------------------------------------- running them
def _project_copy(target: Path) -> Path:
    """The project's files (tracked and new, as git lists them) under `target`, with the project's .venv and .tools."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    for linked in (".venv", ".tools"):
        if (ROOT / linked).exists():
            (target / linked).symlink_to(ROOT / linked)
    return target


def _environment(project: Path, home: Path) -> dict[str, str]:
    """A reader's shell in the project: no AWS settings of the test's (nor a credentials file), the copy's code."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHONPATH", "LAKEBOX_"))}
    clients = ROOT / ".tools" / "clients" / "awscli" / "bin"
    if clients.exists():
        environment["PATH"] = f"{clients}{os.pathsep}{environment['PATH']}"
    return environment | {
        "LAKEBOX_HOME": str(home),
        "PYTHONPATH": f"{project}{os.pathsep}{project / 'layers' / 'common'}",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


class Background:
    """`lakebox up` as the README starts it, on `port`, until stopped with Ctrl-C's signal."""

    def __init__(self, command: str, project: Path, environment: dict[str, str], home: Path) -> None:
        self.log = (home.parent / f"up-{time.monotonic_ns()}.log").open("w")
        self.process = subprocess.Popen(
            shlex.split(command, comments=True), cwd=project, env=environment, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 300
        while not self._recorded(home):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{command} did not start: {self.output()}")
            time.sleep(0.2)

    def _recorded(self, home: Path) -> bool:
        try:
            return int(json.loads((home / "endpoint.json").read_text())["pid"]) == self.process.pid
        except (OSError, ValueError, KeyError):
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(120)
        self.log.close()

    def output(self) -> str:
        return Path(self.log.name).read_text()


@contextmanager
def _lake(tmp_path: Path) -> Iterator[tuple[Path, Path, dict[str, str]]]:
    project = _project_copy(tmp_path / "project")
    home = tmp_path / "lake"
    yield project, home, _environment(project, home)


def _quarantine_key(project: Path, environment: dict[str, str]) -> str:
    listed = subprocess.run(
        [".venv/bin/lakebox", "quarantine", "--dataset", "sales", "--json"],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    return str(next(o["key"] for o in json.loads(listed.stdout)["object_states"] if o["state"] == "outstanding"))


MARK = "::docs-command::"


def _script(commands: list[str], statuses: Path) -> str:
    """One bash script of the block's commands, each followed by its exit status written to `statuses`."""
    lines = [f"exec 3>{shlex.quote(str(statuses))}"]
    for number, text in enumerate(commands):
        lines += [f"echo '{MARK} {number}'; echo '{MARK} {number}' >&2", text, "echo $? >&3"]
    return "\n".join(lines) + "\n"


def _parts(output: str, count: int) -> list[str]:
    parts = [""] * count
    current = None
    for line in output.splitlines(keepends=True):
        if line.startswith(MARK):
            current = int(line.split()[1])
        elif current is not None:
            parts[current] += line
    return parts


def _shown_in(shown: str, output: str) -> bool:
    """Whether the output holds what the document shows, in order, `…` standing for anything."""
    position = 0
    for line in shown.strip().splitlines():
        for fragment in filter(None, (f.strip() for f in line.split("…"))):
            found = output.find(fragment, position)
            if found < 0:
                return False
            position = found + len(fragment)
    return True


@pytest.mark.slow
def test_every_documented_command_runs_as_written(tmp_path: Path) -> None:
    ran: list[str] = []
    up: Background | None = None
    port = _free_port()
    with _lake(tmp_path) as (project, home, environment):
        try:
            for block in [b for document in LAKE for b in blocks_of(document)]:
                if up is not None and not block.needs_up:
                    up.stop()
                    up = None
                commands = [c for c in block.commands if not c.excuse()]
                if any(text.startswith(MAKE_RUN) for text in ran):
                    commands = [c for c in commands if not c.text.startswith("make run")]
                if not commands:
                    continue
                port = _free_port() if up is None else port  # a new `up`, a new port
                if block.needs_up and up is None:
                    start = commands[0].text if block.starts_up else f".venv/bin/lakebox up --port {port}"
                    up = Background(
                        start.replace(":4566", f":{port}").replace(" 4566", f" {port}"), project, environment, home
                    )
                if block.starts_up:
                    commands = commands[1:]
                texts = []
                for command in commands:
                    text = MAKE_RUN if command.text.startswith("make run") else command.text
                    text = text.replace(":4566", f":{port}")
                    if "QUARANTINE_KEY" in text:
                        text = text.replace("QUARANTINE_KEY", _quarantine_key(project, environment))
                    texts.append(text)
                statuses = tmp_path / "statuses"
                result = subprocess.run(
                    ["bash", "-c", _script(texts, statuses)],
                    cwd=project,
                    env=environment,
                    capture_output=True,
                    text=True,
                    timeout=1800,
                    check=False,
                )
                codes = [int(line) for line in statuses.read_text().split()]
                outs, errs = _parts(result.stdout, len(texts)), _parts(result.stderr, len(texts))
                for number, command in enumerate(commands):
                    where = f"{command.document} ({command.section}): {texts[number]}"
                    assert number < len(codes), (
                        f"{where} did not finish:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
                    )
                    expected = EXPECTED_EXIT.get(command.bare, 0)
                    assert codes[number] == expected, (
                        f"{where} exited {codes[number]}, not {expected}:\n{outs[number][-3000:]}\n"
                        f"{errs[number][-3000:]}\n{up.output()[-2000:] if up else ''}"
                    )
                    if command.shown is not None:
                        assert _shown_in(command.shown, outs[number] + errs[number]), (
                            f"{where}: the document shows\n{command.shown}\nbut it printed\n"
                            f"{outs[number]}{errs[number]}"
                        )
                    ran.append(texts[number])
        finally:
            if up is not None:
                up.stop()
    ran_words = {" ".join(t.split()[:2]) for t in ran}
    assert {".venv/bin/lakebox sample", ".venv/bin/lakebox replay", ".venv/bin/lakebox alarms"} <= ran_words
    assert {"aws s3", "aws athena", "cat >", "jq --arg", MAKE_RUN} <= ran_words | set(ran)
    contracts = project / "layers" / "common" / "datalake" / "contracts"
    assert (contracts / "orders.py").exists() and (contracts / "returns.py").exists()

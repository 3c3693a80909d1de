"""Shared fixtures: fake AWS credentials, environment restore, Lambda context, sample events, local stacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"


@pytest.fixture(scope="module", autouse=True)
def _module_environment() -> Iterator[None]:
    """No endpoint or profile left by an earlier module reaches this module's own fixtures; restored afterwards."""
    saved = dict(os.environ)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "LAKEBOX_HOME"):
        os.environ.pop(name, None)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def _aws_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials and a region for every test; the environment is restored afterwards."""
    saved = dict(os.environ)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "DataLake")
    yield
    os.environ.clear()
    os.environ.update(saved)


@dataclass
class FakeLambdaContext:
    """The attributes of a Lambda context that handlers and Powertools read."""

    function_name: str = "test-function"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/test-function"
    log_stream_name: str = "2026/11/23/[$LATEST]abc"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    """A Lambda context for calling handlers directly."""
    return FakeLambdaContext()


@contextmanager
def unregistered(*names: str) -> Iterator[None]:
    """The registry without the datasets `names` for the block, restored after.

    Tests that scaffold an example dataset (`orders`, `visits`) hold whatever a project registered with `lakebox
    dataset new`, including a dataset of the same name.
    """
    import datalake.contracts as contracts

    saved = dict(contracts.REGISTRY)
    for name in names:
        contracts._DATASETS.pop(name, None)
    try:
        yield
    finally:
        contracts._DATASETS.clear()
        contracts._DATASETS.update(saved)


def load_event(name: str) -> dict[str, Any]:
    """Read a sample event from events/ (the same files `sam local invoke -e` and `lakebox invoke` use)."""
    path = EVENTS / name
    if not path.suffix:
        path = path.with_suffix(".json")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def run_cli(
    home: Path, *args: str, stdin: str | None = None, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `lakebox ARGS` in a process of its own, with its lake in `home` (never the project's `.lakebox/`)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    environment["LAKEBOX_HOME"] = str(home)
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "lakebox.cli", *args],
        cwd=ROOT,
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The template's stack on a moto server of its own, with a lake home of its own (one per test module): its
    runs, logs and metrics are the module's alone, so no test sees what another module's box recorded."""
    from lakebox.runtime import lakebox

    saved = dict(os.environ)
    os.environ["LAKEBOX_HOME"] = str(tmp_path_factory.mktemp("lakebox-home"))
    with lakebox(ROOT, reuse=False) as box:
        yield box
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local SparkSession for the whole run (`local[2]`, UTC, 2 shuffle partitions), shared with lakebox jobs."""
    from lakebox.services.glue import local_spark

    session = local_spark()
    yield session
    session.stop()
    local_spark.cache_clear()

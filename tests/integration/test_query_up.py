"""`lakebox query` with `lakebox up` running: the endpoint's Athena answers, with the in-process path's output."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli
from tests.integration.test_workbench import Up, _free_port

pytestmark = pytest.mark.integration

TYPED_SQL = (
    "SELECT CAST(1.50 AS decimal(10,2)) AS price, CAST(3 AS tinyint) AS small, 1e0/3 AS third, nan() AS nothing, "
    "'' AS empty, CAST(NULL AS varchar) AS missing, ARRAY['a, b', 'c'] AS words, ARRAY[ARRAY[1, 2]] AS nested, "
    "MAP(ARRAY['k'], ARRAY[CAST(2.5 AS decimal(4,1))]) AS amounts, CAST(ROW(1, 'x') AS ROW(i int, s varchar)) AS pair, "
    "TIMESTAMP '2024-01-02 03:04:05.123' AS moment, TIMESTAMP '2024-01-02 03:04:05 Europe/Berlin' AS zoned, "
    "DATE '2024-01-01' AS day, from_hex('ab01') AS raw, true AS yes"
)


@pytest.fixture(scope="module")
def up_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("query-up") / "lake"
    up = Up(home, _free_port())
    try:
        yield home
    finally:
        up.stop()


@pytest.fixture
def in_process(up_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A box in this process on the running up's endpoint: the path `lakebox query` took before (and takes for --as)."""
    from lakebox.box import open_box

    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LAKEBOX_HOME", str(up_home))
    with open_box() as box:
        yield box


def test_query_through_up_prints_what_the_in_process_path_prints(
    up_home: Path, in_process: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from lakebox.app.query import query
    from lakebox.cli import _print_table

    # GIVEN lakebox up, WHEN the same query runs through its endpoint (the CLI) and in process
    served_json = run_cli(up_home, "query", "--json", TYPED_SQL)
    served_table = run_cli(up_home, "query", TYPED_SQL)
    local = query(in_process, TYPED_SQL)  # type: ignore[arg-type]
    # THEN the JSON is the same document: columns, Athena types, decimals as exact strings, '' apart from null
    assert served_json.returncode == 0, served_json.stderr
    document = json.loads(served_json.stdout)
    assert document == json.loads(json.dumps(local.to_json()))
    assert document["types"][0] == "decimal(10,2)" and document["rows"][0]["price"] == "1.50"
    assert document["rows"][0]["empty"] == "" and document["rows"][0]["missing"] is None
    # AND the table is the same text, cell for cell (Python's values: a string inside an array stays quoted)
    columns = list(local.columns)
    _print_table(
        f"{len(local.rows)} rows, {local.bytes_scanned:,} bytes scanned",
        [dict(zip(columns, row, strict=True)) for row in local.rows],
        columns,
    )
    assert served_table.returncode == 0, served_table.stderr
    assert served_table.stdout == capsys.readouterr().out
    assert "['a, b', 'c']" in served_table.stdout


def test_the_served_rows_are_the_engines_values_with_their_types(up_home: Path, in_process: object) -> None:
    from lakebox.app.query import query
    from lakebox.app.query_up import query_up
    from lakebox.home import LakeHome
    from lakebox.home.up import running_up

    up = running_up(LakeHome.of(ROOT, {"LAKEBOX_HOME": str(up_home)}))
    assert up is not None and up.workgroup == "lakebox-analytics"
    served = query_up(up, TYPED_SQL)
    local = query(in_process, TYPED_SQL)  # type: ignore[arg-type]
    assert served.columns == local.columns and served.types == local.types
    assert served.bytes_scanned == local.bytes_scanned
    assert repr(served.rows) == repr(local.rows)  # the same Python types and values (NaN included, zone by name)


def test_a_failed_query_is_one_line_with_athenas_error(up_home: Path, in_process: object) -> None:
    from lakebox.app.query import query
    from lakebox.services.athena import QueryFailedError

    result = run_cli(up_home, "query", "SELECT nope FROM nowhere")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert re.fullmatch(r"lakebox: error: query [0-9a-f-]{36} FAILED: TABLE_NOT_FOUND: .*nowhere.*", lines[0]), lines
    with pytest.raises(QueryFailedError) as local:
        query(in_process, "SELECT nope FROM nowhere")  # type: ignore[arg-type]
    assert lines[0].split(" FAILED: ", 1)[1] == str(local.value).split(" FAILED: ", 1)[1]
    unknown = run_cli(up_home, "query", "--workgroup", "nope", "SELECT 1")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == (
        "lakebox: error: unknown workgroup 'nope' (workgroups: lakebox-analytics, lakebox-ml_data, lakebox-primary, "
        "primary)"
    )


def test_query_through_up_imports_neither_the_stack_nor_the_engine(up_home: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    environment["LAKEBOX_HOME"] = str(up_home)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "lakebox.cli", "query", "SELECT 1"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time")}
    assert "lakebox.app.query_up" in imported
    assert not imported & {"lakebox.box", "lakebox.cfn", "boto3", "botocore", "duckdb", "sqlglot", "moto"}


def test_as_a_persona_the_query_runs_in_process_where_the_grants_apply(up_home: Path) -> None:
    # the endpoint's Athena runs any workgroup; the analyst's role may not use the ML one
    assert run_cli(up_home, "query", "--workgroup", "lakebox-ml_data", "SELECT 1").returncode == 0
    refused = run_cli(up_home, "query", "--as", "analyst", "--workgroup", "lakebox-ml_data", "SELECT 1")
    assert refused.returncode == 1
    assert "AnalystRole/lakebox is not authorized to perform" in refused.stderr
    assert "workgroup/lakebox-ml_data" in refused.stderr
    unknown = run_cli(up_home, "query", "--as", "nobody", "SELECT 1")
    assert unknown.returncode == 1 and "no persona 'nobody'" in unknown.stderr

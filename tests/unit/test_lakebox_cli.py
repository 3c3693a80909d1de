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


def _first_column(text: str) -> str:
    """The first column of the first table in `text`, its folded lines joined."""
    body = text.split("┩", 1)[1].split("└", 1)[0]
    return "".join(line.split("│")[1].strip() for line in body.splitlines() if line.startswith("│"))


def test_tables_fit_80_columns_and_keep_every_value_whole(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    run = {
        "execution": "lakebox-run-20261207T070000-9f2c4d6e8a0b4c1d",
        "status": "SUCCEEDED",
        "seconds": 123.4,
        "datasets": "sales, products, customers, clickstream",
        "bytes_scanned": 123_456_789,
        "note": "curated 5 tables; nothing skipped",
    }
    forecast = [
        {
            "forecast_date": f"2026-12-{day:02d}",
            "region": "central",
            "forecast": 1234.5,
            "lower": 1000.1,
            "upper": 1500.9,
        }
        for day in range(8, 11)
    ]
    cli._print_table("pipeline run", [run], list(run))
    cli._print_table("curated.sales_forecast", forecast, list(forecast[0]))
    printed = capsys.readouterr().out
    assert max(len(line) for line in printed.splitlines()) <= 80, printed
    assert "…" not in printed
    # every short value (a date, a status) stays on one line, whole
    for value in ("SUCCEEDED", "2026-12-08", "2026-12-10"):
        assert any(value in line for line in printed.splitlines()), printed
    # and a long one folds onto lines that, put together, give it back
    assert _first_column(printed) == run["execution"]


def test_the_progress_line_shows_each_stage_its_own_live_time_and_the_whole(tmp_path: object) -> None:
    import io

    from rich.console import Console

    now = [100.0]
    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    # GIVEN a run whose first stage is shown at once, and a Spark job that starts 5 s later
    with cli.stage_progress(console, lambda: now[0]) as show:
        show("Ingest")
        now[0] += 5
        show("Run Spark Job")
        # WHEN the Spark job has run for 2 minutes 5 seconds
        now[0] += 125
        bar = console._live_stack[0]  # the live display the progress draws
        with console.capture() as captured:
            console.print(bar.renderable)
    line = captured.get()
    # THEN the line says how long this stage has run, and the run as a whole
    assert "Run Spark Job" in line
    assert "0:02:05" in line, line
    assert "(130s in all)" in line, line


def test_the_forecast_after_run_is_one_row_a_date_and_fits_80_columns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    regions = ("central", "east", "north", "online", "south", "west")
    columns = ["forecast_date", "region", "currency", "yhat", "yhat_lower", "yhat_upper", "model_version"]
    # GIVEN a 14-day forecast of six regions (84 rows), as `lakebox run` reads it from sales_forecast
    values = [
        [f"2026-12-{day:02d}", region, "USD", 12345.678 + day, 10000.0, 15000.0, "sales-forecast-run-0"]
        for day in range(8, 22)
        for region in regions
    ]
    # WHEN it is summarised and printed
    title, rows = cli.forecast_by_region(columns, values)
    cli._print_table(title, rows, list(rows[0]))
    printed = capsys.readouterr().out
    # THEN one row a date, a column a region, whole numbers, within 80 columns, and the query for the intervals
    assert len(rows) == 14 and list(rows[0]) == ["forecast_date", *regions]
    assert rows[0]["central"] == 12354
    assert max(len(line) for line in printed.splitlines()) <= 80, printed
    assert "2026-12-21" in printed and "…" not in printed
    assert 'query "SELECT * FROM sales_forecast ORDER BY forecast_date, region"' in title


def test_a_forecast_in_several_currencies_keeps_them_apart() -> None:
    columns = ["forecast_date", "region", "currency", "yhat", "yhat_lower", "yhat_upper", "model_version"]
    values = [["2026-12-08", "north", currency, 10.4, 9, 11, "m"] for currency in ("EUR", "USD")]
    _, rows = cli.forecast_by_region(columns, values)
    assert rows == [{"forecast_date": "2026-12-08", "north EUR": 10, "north USD": 10}]


def test_the_tables_lakebox_run_ends_with_keep_their_right_border_at_80_columns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    # GIVEN the ingestion table and the one-row run summary `lakebox run` prints (seven and ten columns)
    ingested = [
        {
            "key": key,
            "dataset": key.split("/")[0],
            "status": "PARTIAL",
            "read": 2001,
            "landed": 2000,
            "quarantined": 1,
            "expected bad": 1,
        }
        for key in ("products/products.csv", "clickstream/clickstream.json", "sales/api/20261207T092921Z.jsonl.gz")
    ]
    run = {
        "run": "lakebox-6c5cf76c1b73",
        "status": "SUCCEEDED",
        "datasets": "clickstream,customers,products,sales",
        "dates": 57,
        "curated queries": 33,
        "bytes scanned": 257482,
        "forecast": "SUCCEEDED",
        "smape model": 46.161,
        "smape seasonal naive": 47.5,
        "error": None,
    }
    # WHEN they are printed at 80 columns
    cli._print_table("ingested", ingested, list(ingested[0]))
    cli._print_table("pipeline run", [run], list(run))
    printed = capsys.readouterr().out
    lines = [line for line in printed.splitlines() if line.strip() and line[0] in "┏┃┡│└"]
    # THEN no table is cut by the screen's edge: every line fits and ends with the table's right border
    assert all(len(line) <= 80 and line.rstrip()[-1] in "┓┃┩│┘" for line in lines), printed
    # AND the run summary, too wide as columns, is a field a line, each value whole
    for field, value in run.items():
        assert any(field in line and (value is None or str(value) in line) for line in lines), (field, printed)
    # AND the ingestion's short values (counts, statuses) stay whole while the keys fold
    assert all(any("PARTIAL" in line and "2000" in line for line in lines) for _ in ingested)

"""The curation ledger: which runs each table absorbed, the horizon they fold into, the verdicts that hold datasets."""

from __future__ import annotations

import datetime as dt

from datalake.ledger import Backlog, Ledger, ProcessingRun, TableEntry, Verdict, advance
from datalake.runs import RunSummary

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
TABLES = ["a", "b"]


def _backlog(ledger: Ledger, *runs: tuple[str, dt.timedelta], verdicts: dict[str, Verdict] | None = None) -> Backlog:
    listed = tuple(ProcessingRun(run_id, NOW - age) for run_id, age in runs)
    return Backlog(ledger, listed, {r.run_id: RunSummary(run_id=r.run_id) for r in listed}, verdicts or {})


def test_runs_every_table_absorbed_fold_into_the_horizon_up_to_the_first_one_missing() -> None:
    # GIVEN three settled runs; table b has not absorbed r2 (it was held)
    hour = dt.timedelta(hours=1)
    ledger = Ledger(tables={"a": TableEntry(), "b": TableEntry(absorbed=["r1"])})
    backlog = _backlog(ledger, ("r1", 3 * hour), ("r2", 2 * hour), ("r3", hour))

    # WHEN only a is published
    after = advance(backlog, ["a"], TABLES, "run-x", NOW)

    # THEN r1 folds into the horizon; r2 and r3 stay listed where absorbed
    assert after.horizon == NOW - 3 * hour
    assert after.tables["a"].absorbed == ["r2", "r3"] and after.tables["a"].published_by == "run-x"
    assert after.tables["b"].absorbed == []
    # AND the pending runs of b are r2 and r3 on the next plan
    assert _backlog(after, ("r2", 2 * hour), ("r3", hour)).pending("b") == ["r2", "r3"]


def test_recent_runs_and_runs_sharing_a_second_with_a_pending_one_do_not_fold() -> None:
    # GIVEN a run of a minute ago absorbed by every table, and two runs in one second of which b lacks the second
    second = dt.timedelta(hours=1)
    ledger = Ledger(tables={"a": TableEntry(), "b": TableEntry(absorbed=["r1"])})
    backlog = _backlog(ledger, ("r1", second), ("r2", second))
    after = advance(backlog, ["a"], TABLES, "run-x", NOW)
    # THEN r1 cannot fold: a summary listed after the horizon must be later than it, and r2 shares its second
    assert after.horizon is None
    recent = advance(_backlog(Ledger(), ("r9", dt.timedelta(minutes=1))), TABLES, TABLES, "run-y", NOW)
    assert recent.horizon is None and recent.tables["a"].absorbed == ["r9"]


def test_a_table_the_ledger_does_not_know_blocks_the_horizon_and_is_not_known() -> None:
    # GIVEN a ledger that knows only a
    backlog = _backlog(Ledger(tables={"a": TableEntry()}), ("r1", dt.timedelta(hours=2)))
    assert backlog.known("a") and not backlog.known("b")
    # WHEN a is published THEN nothing folds while b has never been built
    assert advance(backlog, ["a"], TABLES, "run-x", NOW).horizon is None


def test_the_latest_failed_verdict_holds_a_dataset() -> None:
    failed = Verdict(run_id="r2", passed=False, checked_at=NOW, reasons=["freshness: old"])
    passed = Verdict(run_id="r1", passed=True, checked_at=NOW)
    backlog = _backlog(Ledger(), verdicts={"sales": failed, "products": passed})
    assert list(backlog.held()) == ["sales"]

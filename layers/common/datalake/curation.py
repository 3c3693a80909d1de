"""Curated tables: render the Athena statements that rebuild them for a run (CTAS per run, then publish)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Final

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from datalake.aws import AwsClients, aws_error, error_code
from datalake.contracts import REGISTRY, Dataset
from datalake.ledger import LEDGER_KEY, Backlog, advance, ledger_document, load_backlog, processed_dates
from datalake.runs import load_run_summary
from datalake.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_glue.client import GlueClient
    from mypy_boto3_s3.client import S3Client

MAX_PARTITIONS_PER_QUERY: Final = 100
"""Athena writes at most 100 partitions per CTAS or INSERT INTO; longer date lists are split."""
MAX_DATES: Final = 3660
"""The most dates one plan rebuilds (ten years); a longer list is a mistake, not a backfill."""
_IDENTIFIER: Final = re.compile(r"^[a-z_][a-z0-9_]{0,254}$")
_PLACEHOLDER: Final = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
_HEADER: Final = re.compile(r"^--\s*(name|description):\s*(.+)$", re.MULTILINE)
_READS: Final = re.compile(r"\{\{\s*database\s*\}\}\.([a-z_][a-z0-9_]*)")


@dataclass(frozen=True)
class CuratedTable:
    """A curated table and how it is rebuilt, from the `Curated` declaration of the dataset that feeds it.

    Parameters
    ----------
    name
        The table's name in the catalog and its folder in the curated bucket.
    partition_column
        The date partition a run rebuilds for the dates it processed; None for a table rebuilt whole.
    sources
        Processed datasets whose change calls for a rebuild: the dataset that declares it, and those it reads.
    dataset
        The dataset that declares it; a partitioned table's dates are that dataset's.
    inputs
        Every dataset its SQL reads, directly, through a reference view (`<dataset>_history`, `_current`) or through
        a curated table declared before it: a dataset the gate holds holds the tables it is an input of (ADR 0017).
        Its sources when empty.
    history
        The versioned datasets its SQL reads through their `<dataset>_history` view (point-in-time enrichment): on a
        date none of their versions begins, every row of the day takes the version valid at its start (ADR 0027).
    rollups
        The rollup tables (`Rollup`, ADR 0030) its SQL reads, directly or through a curated table declared before it:
        each belongs to its dataset (an input), and the table waits while one is missing from the catalog.
    """

    name: str
    partition_column: str | None
    sources: frozenset[str]
    dataset: str = ""
    inputs: frozenset[str] = frozenset()
    history: frozenset[str] = frozenset()
    rollups: frozenset[str] = frozenset()

    @property
    def reads(self) -> frozenset[str]:
        """The datasets the table's rows depend on: its inputs and its sources."""
        return self.inputs | self.sources


def curated_tables(registry: Mapping[str, Dataset] = REGISTRY) -> tuple[CuratedTable, ...]:
    """Every curated table the registered datasets declare, by dataset name, then in declaration order.

    A table may read curated tables declared before it (its plan's statements run after theirs); it then reads
    whatever they read.

    Raises
    ------
    ValueError
        When two datasets declare the same table, a table reads a dataset that is not registered, or a table reads a
        curated table declared after it.
    """
    tables: dict[str, CuratedTable] = {}
    declared: dict[str, str] = {}
    for name, dataset in sorted(registry.items()):
        for table in dataset.curated:
            if table.name in declared:
                raise ValueError(f"curated table {table.name!r} is declared by {declared[table.name]} and {name}")
            declared[table.name] = name
    for name, dataset in sorted(registry.items()):
        for table in dataset.curated:
            unknown = sorted(set(table.reads) - set(registry))
            if unknown:
                raise ValueError(f"curated table {table.name!r} of {name} reads unknown datasets {unknown}")
            sources = frozenset({name, *table.reads})
            inputs, history, rollups = _sql_inputs(table.name, registry, tables, declared)
            tables[table.name] = CuratedTable(
                _identifier(table.name, "table"), table.partition_column, sources, name, inputs, history, rollups
            )
    return tuple(tables.values())


def _sql_inputs(
    table: str, registry: Mapping[str, Dataset], earlier: Mapping[str, CuratedTable], declared: Collection[str]
) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """The registered datasets `curated/<table>.sql` reads (by name, through their reference views or rollups, or
    through the curated tables declared before it), those it reads through their history views, and the rollups."""
    try:
        text = sql_text(f"curated/{table}.sql")
    except FileNotFoundError:
        return frozenset(), frozenset(), frozenset()
    rollup_of = {rollup.name: name for name, dataset in registry.items() for rollup in dataset.rollups}
    found: set[str] = set()
    history: set[str] = set()
    rollups: set[str] = set()
    for name in _READS.findall(text):
        if name in earlier:
            found.update(earlier[name].reads)
            rollups.update(earlier[name].rollups)
            continue
        if name in rollup_of:
            found.add(rollup_of[name])
            rollups.add(name)
            continue
        if name in declared:
            raise ValueError(f"curated table {table!r} reads curated table {name!r}, which is declared after it")
        for candidate in (name, name.removesuffix("_history"), name.removesuffix("_current")):
            if candidate in registry:
                found.add(candidate)
                if name.endswith("_history") and candidate != name:
                    history.add(candidate)
                break
    return frozenset(found), frozenset(history), frozenset(rollups)


@dataclass(frozen=True)
class ReferenceView:
    """A view over a versioned reference dataset's processed rows (ADR 0007), rendered from a generic template.

    `<dataset>_history` gives each version its validity span (SCD type 2); `<dataset>_current` the latest version.
    """

    name: str
    template: str
    values: Mapping[str, str]


def reference_views(registry: Mapping[str, Dataset] = REGISTRY) -> tuple[ReferenceView, ...]:
    """The views of every dataset that keeps its versions: every history view, then every current view.

    A current view reads its history view, so the history views come first.
    """
    versioned = [d for _, d in sorted(registry.items()) if d.keep_versions and d.version_field is not None]
    history, current = [], []
    for dataset in versioned:
        assert dataset.version_field is not None
        columns = [*dataset.contract.model_fields, *(d.name for d in dataset.derived)]
        values = {
            "source": dataset.name,
            "columns": ",\n    ".join(f"v.{c} AS {c}" for c in columns),
            "inner_columns": ",\n        ".join(f"s.{c}" for c in columns),
            "current_columns": ",\n    ".join(f"h.{c} AS {c}" for c in columns),
            "key": ", ".join(f"s.{c}" for c in dataset.key),
            "version": dataset.version_field,
        }
        history.append(ReferenceView(f"{dataset.name}_history", "views/history.sql", values))
        current.append(ReferenceView(f"{dataset.name}_current", "views/current.sql", values))
    return (*history, *current)


class Statement(BaseModel):
    """One Athena statement of a plan; `name` is `<table>/<step>` and statements run in list order."""

    model_config = ConfigDict(frozen=True)

    name: str
    table: str
    step: str
    query: str


class TableGroup(BaseModel):
    """One table's (or view's) statements of a plan, in the order they must run."""

    model_config = ConfigDict(frozen=True)

    table: str
    queries: list[Statement]


class DateWindow(BaseModel):
    """An inclusive range of sale dates."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: dt.date
    end: dt.date

    @model_validator(mode="after")
    def _ordered(self) -> DateWindow:
        if self.end < self.start:
            raise ValueError("window end is before its start")
        if (self.end - self.start).days >= MAX_DATES:
            raise ValueError(f"a window covers at most {MAX_DATES} dates")
        return self

    def dates(self) -> list[dt.date]:
        """Every date of the window, in order."""
        return [self.start + dt.timedelta(days=n) for n in range((self.end - self.start).days + 1)]


class CurationRequest(BaseModel):
    """What the pipeline passes to the planner: the run, and optionally the dates to rebuild.

    Without `dates` or `window`, the dates and changed datasets come from the Spark run's summary.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    run_id: str = Field(min_length=1, max_length=80)
    execution_id: str | None = None
    datasets: list[str] = Field(default_factory=list)
    dates: list[dt.date] | None = Field(default=None, max_length=MAX_DATES)
    window: DateWindow | None = None


class CurationPlan(BaseModel):
    """The planner's answer: statements to run one after another, and what they rebuild."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    dates: list[dt.date]
    changed: list[str]
    queries: list[Statement]


class HeldTable(BaseModel):
    """A curated table left as it is because the gate holds a dataset it reads: which, and why."""

    model_config = ConfigDict(frozen=True)

    table: str
    datasets: list[str]
    reasons: list[str]
    pending_runs: int
    """Processing runs whose changes wait for it (they are built once the datasets pass)."""


class WaitingTable(BaseModel):
    """A curated table not built yet because a dataset it reads was never processed (no catalog table): which."""

    model_config = ConfigDict(frozen=True)

    table: str
    datasets: list[str]
    reason: str


class LedgerPlan(BaseModel):
    """The curation plan of a pipeline run over the ledger's backlog (ADR 0017)."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    status: str
    """SUCCEEDED when every table is caught up with processed; PARTIAL when the gate holds a dataset."""
    dates: list[dt.date]
    changed: list[str]
    tables: list[str]
    """The tables this run rebuilds."""
    held: list[HeldTable]
    held_datasets: dict[str, list[str]]
    """Datasets the gate holds, with the failed rules of their latest verdict."""
    waiting: list[WaitingTable] = Field(default_factory=list)
    """Tables left out because a dataset they read has no processed table yet; built whole once it has one."""
    queries: list[Statement]
    """Every statement, in an order that runs them one after another."""
    waves: list[list[TableGroup]] = Field(default_factory=list)
    """The same statements as waves of table groups (`plan_waves`): the waves one after another, the groups of a wave
    at once, a group's statements in order."""
    ledger_key: str
    ledger: str
    """The ledger to write once the queries have published the tables (JSON text)."""


@dataclass(frozen=True)
class TablePlan:
    """What each table rebuilds: its dates (partitioned tables) or whole; and the partitioned tables to declare even
    with no date to build (the ledger does not know them yet), so that the tables reading them find them, empty."""

    dates: Mapping[str, Sequence[dt.date]]
    whole: frozenset[str]
    declare: frozenset[str] = frozenset()


@dataclass(frozen=True)
class NamedQuery:
    """A saved question from `sql/named`: its title, description and SQL (tables unqualified)."""

    key: str
    name: str
    description: str
    query: str


@dataclass(frozen=True)
class RunChanges:
    """What a processing run changed: per dataset feeding a date-partitioned table, the dates to rebuild; the
    datasets with new rows."""

    dates_by_dataset: Mapping[str, tuple[dt.date, ...]]
    changed: frozenset[str]

    @property
    def dates(self) -> tuple[dt.date, ...]:
        """Every date some table rebuilds, in order."""
        return tuple(sorted({day for days in self.dates_by_dataset.values() for day in days}))


# ---------------------------------------------------------------------------------------------- SQL files


def sql_text(relative: str) -> str:
    """The text of a file under `datalake/sql`, e.g. ``curated/daily_sales_by_region.sql``."""
    resource = resources.files("datalake").joinpath("sql", *relative.split("/"))
    return resource.read_text(encoding="utf-8")


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill the ``{{ name }}`` placeholders of a SQL template; every placeholder must have a value.

    Raises
    ------
    KeyError
        When the template names a placeholder `values` lacks.
    """

    def fill(match: re.Match[str]) -> str:
        name = match[1]
        if name not in values:
            raise KeyError(f"SQL template needs a value for {name!r}")
        return values[name]

    return _PLACEHOLDER.sub(fill, template).strip()


def named_queries() -> list[NamedQuery]:
    """Every saved question in `sql/named`, sorted by file name; the title and description come from its header."""
    folder = resources.files("datalake").joinpath("sql", "named")
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        text = entry.read_text(encoding="utf-8")
        header = dict(_HEADER.findall(text))
        key = entry.name.removesuffix(".sql")
        body = "\n".join(line for line in text.splitlines() if not _HEADER.match(line)).strip()
        found.append(NamedQuery(key, header.get("name", key), header.get("description", ""), body))
    return found


# ------------------------------------------------------------------------------------------------- plans


def plan_statements(
    *,
    database: str,
    curated_bucket: str,
    run_id: str,
    dates: Sequence[dt.date],
    changed: Collection[str],
    tables: Sequence[CuratedTable] | None = None,
    dates_by_dataset: Mapping[str, Sequence[dt.date]] | None = None,
    by_table: TablePlan | None = None,
    version_dates: Mapping[str, Collection[dt.date]] | None = None,
    available: Collection[str] | None = None,
) -> list[Statement]:
    """Render the statements that rebuild the curated tables for one run, in the order they must run.

    Parameters
    ----------
    database
        The Glue database holding the processed and curated tables.
    curated_bucket
        The curated zone's bucket.
    run_id
        The run (the pipeline's execution name); it names the stage tables and the run folders.
    dates
        Sale dates to rebuild in the date-partitioned tables.
    changed
        Processed datasets with new rows; a table rebuilt whole is planned when one of its sources changed.
    tables
        The tables to plan (every declared one by default).
    dates_by_dataset
        When given, a date-partitioned table rebuilds the dates of the dataset that feeds it (none when absent)
        instead of `dates`: a run that changed one dataset's dates leaves the other datasets' tables alone.
    by_table
        When given, what each table rebuilds (the ledger's backlog, ADR 0017), instead of `dates` and `changed`.
    version_dates
        Per versioned dataset, every date one of its versions begins on (`version_start_dates`); a table's query
        reads the rows of its other dates without their event time (ADR 0027). A dataset absent (or None): every date
        is taken as one where a version may begin, so every row is enriched at its own event time.
    available
        When given, the datasets whose processed table exists: only their reference views are rendered (a view over a
        missing table cannot be created). Every dataset's by default.

    Returns
    -------
    list[Statement]
        Views first, then per table: create the published table if missing, drop a stale stage, CTAS the
        stage into the run folder (INSERT INTO for each further 100 dates), re-point the published
        partitions or location at the run folder, drop the stage from the catalog (its files stay).
    """
    database = _identifier(database, "database")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", curated_bucket):
        raise ValueError(f"invalid bucket name {curated_bucket!r}")
    every = sorted(set(dates))
    token = run_token(run_id)
    statements: list[Statement] = []
    for table in curated_tables() if tables is None else tables:
        if by_table is not None:
            days = sorted(set(by_table.dates.get(table.name, ())))
            rebuild_whole = table.name in by_table.whole
        else:
            days = every if dates_by_dataset is None else sorted(set(dates_by_dataset.get(table.dataset, ())))
            rebuild_whole = bool(table.sources & set(changed))
        if len(days) > MAX_DATES:
            raise ValueError(f"a plan rebuilds at most {MAX_DATES} dates, not {len(days)}")
        if table.partition_column is not None and days:
            statements.extend(_partitioned(table, database, curated_bucket, token, days, version_dates))
        elif table.partition_column is not None and by_table is not None and table.name in by_table.declare:
            statements.append(_declare(table, database, curated_bucket))
        elif table.partition_column is None and rebuild_whole:
            statements.extend(_whole(table, database, curated_bucket, token))
    if not statements:
        return []
    views = [
        _statement(
            view.name,
            "view",
            "rebuild/view.sql",
            database=database,
            view=view.name,
            select=_select(view.template, database, **view.values),
        )
        for view in reference_views()
        if available is None or view.values["source"] in available
    ]
    return views + statements


def plan_waves(queries: Sequence[Statement], database: str) -> list[list[TableGroup]]:
    """Group a plan's statements by the table (or view) they build, and the groups into waves that may run at once.

    A group reads another when one of its statements names that group's table as ``<database>.<table>``, the way
    every statement the planner renders names what it reads (`curated/*.sql`, the reference views). A group's wave is
    one after the last wave of the groups it reads; a group reading none is in the first. The groups of a wave
    read only groups of earlier waves, so they run at once; within a wave they keep the plan's order, as do a group's
    statements.

    Parameters
    ----------
    queries
        A plan's statements in the order they run one after another (`plan_statements`).
    database
        The database the statements name their tables in.

    Raises
    ------
    ValueError
        When a group reads a group that comes after it in `queries` (run one after another, it would have read the
        table as it was before this plan).
    """
    grouped: dict[str, list[Statement]] = {}
    for statement in queries:
        grouped.setdefault(statement.table, []).append(statement)
    reference = re.compile(rf"(?<![\w./:-]){re.escape(database)}\.([a-z_][a-z0-9_]*)\b", re.IGNORECASE)
    order = {table: position for position, table in enumerate(grouped)}
    wave: dict[str, int] = {}
    for table, statements in grouped.items():
        reads = {name.lower() for s in statements for name in reference.findall(s.query)} & (set(grouped) - {table})
        later = sorted(name for name in reads if order[name] > order[table])
        if later:
            raise ValueError(f"{table} reads {', '.join(later)}, which the plan builds after it")
        wave[table] = 1 + max((wave[name] for name in reads), default=-1)
    waves: list[list[TableGroup]] = [[] for _ in range(1 + max(wave.values(), default=-1))]
    for table, statements in grouped.items():
        waves[wave[table]].append(TableGroup(table=table, queries=statements))
    return waves


def plan_run(request: CurationRequest, *, database: str, curated_bucket: str, changes: RunChanges) -> CurationPlan:
    """The plan of a pipeline run: the request's own dates or window when it gives them, else the run's changes."""
    by_dataset: Mapping[str, Sequence[dt.date]] | None
    if request.dates is not None or request.window is not None:
        days = sorted({*(request.dates or []), *(request.window.dates() if request.window else [])})
        changed = frozenset(request.datasets or {source for t in curated_tables() for source in t.sources})
        # datasets named: only their partitioned tables rebuild the dates; none named: every partitioned table
        by_dataset = {name: tuple(days) for name in request.datasets} if request.datasets else None
    else:
        days, changed, by_dataset = list(changes.dates), changes.changed, changes.dates_by_dataset
    queries = plan_statements(
        database=database,
        curated_bucket=curated_bucket,
        run_id=request.run_id,
        dates=days,
        changed=changed,
        dates_by_dataset=by_dataset,
    )
    return CurationPlan(run_id=request.run_id, dates=days, changed=sorted(changed), queries=queries)


def plan_curation(request: CurationRequest, *, settings: Settings, clients: AwsClients) -> LedgerPlan:
    """The curation entry point: rebuild whatever curated has not absorbed of processed (ADR 0017).

    Every table the gate does not hold rebuilds the changes of every processing run it has not absorbed (its dates,
    or whole), plus the request's own dates or window when it names them; a table the ledger does not know yet is
    rebuilt from every processed partition. Tables reading a held dataset are left as they are and listed.

    Parameters
    ----------
    request
        What the pipeline passes (the run id, and optionally dates or a window to rebuild as well).
    settings
        Needs `processed_bucket` (run summaries, verdicts, partitions) and `curated_bucket` (the ledger);
        `glue_database`.
    clients
        AWS clients (S3, and Glue for the catalog's processed tables).
    """
    processed = settings.require("processed_bucket")
    curated = settings.require("curated_bucket")
    backlog = load_backlog(clients.s3, processed, curated)
    every = curated_tables()
    needed = {name for t in every for name in t.reads | t.rollups}
    available = processed_tables(clients.glue, settings.glue_database, needed)
    waiting = waiting_tables(every, available)
    left_out = {entry.table for entry in waiting}
    tables = [table for table in every if table.name not in left_out]
    wanted = table_plan(backlog, tables, request, lambda dataset: processed_dates(clients.s3, processed, dataset))
    held = held_tables(backlog, tables)
    on_hold = {entry.table for entry in held}
    building = [table for table in tables if table.name not in on_hold]
    enriched = {name for table in building if wanted.dates.get(table.name) for name in table.history}
    queries = plan_statements(
        database=settings.glue_database,
        curated_bucket=curated,
        run_id=request.run_id,
        dates=[],
        changed=[],
        tables=building,
        by_table=wanted,
        version_dates=version_start_dates(clients.s3, processed, enriched),
        available=available,
    )
    built = [table.name for table in building]
    # a waiting table the ledger never knew is built whole from every partition once its inputs exist: the runs
    # before then need not wait for it to fold into the horizon (one it knew keeps them, as a held table does)
    tracked = [table.name for table in every if table.name not in left_out or backlog.known(table.name)]
    ledger = advance(backlog, built, tracked, request.run_id, dt.datetime.now(dt.UTC))
    rebuilt = sorted({*wanted.dates, *wanted.whole} - on_hold)
    # news only: what runs some table has not absorbed changed (absorbed runs stay listed until the horizon folds them)
    pending = {run for table in tables for run in backlog.pending(table.name)}
    changed = sorted(
        {
            name
            for run, summary in backlog.summaries.items()
            if run in pending
            for name, part in summary.datasets.items()
            if part.changed
        }
    )
    return LedgerPlan(
        run_id=request.run_id,
        status="PARTIAL" if backlog.held() else "SUCCEEDED",
        dates=sorted({day for name, days in wanted.dates.items() if name not in on_hold for day in days}),
        changed=changed,
        tables=rebuilt,
        held=held,
        held_datasets={name: verdict.reasons for name, verdict in backlog.held().items()},
        waiting=waiting,
        queries=queries,
        waves=plan_waves(queries, settings.glue_database),
        ledger_key=LEDGER_KEY,
        ledger=ledger_document(ledger),
    )


def table_plan(
    backlog: Backlog,
    tables: Sequence[CuratedTable],
    request: CurationRequest,
    partitions_of: Callable[[str], Sequence[dt.date]],
) -> TablePlan:
    """What each table rebuilds to absorb the backlog (held tables included; the caller leaves them out).

    A partitioned table rebuilds, for every run it has not absorbed, the dates its dataset's rows were written to,
    emptied of, or whose reference data changed (in that dataset's part of the summary or, for a run that did not
    process it, the summary's `reference_dates`); a table the ledger lacks rebuilds every processed partition of
    its dataset (`partitions_of`), and is declared even when there is none (a table reading it then finds it
    empty). A whole table is rebuilt when a run it has not absorbed changed a dataset it
    reads, or when the ledger lacks it. The request's dates or window are added for the datasets it names (every
    table when it names none).
    """
    explicit = sorted({*(request.dates or []), *(request.window.dates() if request.window else [])})
    named = set(request.datasets)
    forced = request.dates is not None or request.window is not None
    dates: dict[str, list[dt.date]] = {}
    whole: set[str] = set()
    declare: set[str] = set()
    for table in tables:
        pending = [backlog.summaries[run] for run in backlog.pending(table.name) if run in backlog.summaries]
        asked = forced and (not named or table.dataset in named or bool(table.reads & named))
        if table.partition_column is None:
            touched = any(
                part.changed for summary in pending for name, part in summary.datasets.items() if name in table.reads
            )
            if touched or not backlog.known(table.name) or asked:
                whole.add(table.name)
            continue
        days: set[dt.date] = set(explicit) if asked and (not named or table.dataset in named) else set()
        if not backlog.known(table.name):
            days.update(partitions_of(table.dataset))
            declare.add(table.name)
        for summary in pending:
            part = summary.datasets.get(table.dataset)
            if part is not None:
                days.update(part.partitions, part.partitions_removed, part.reference_dates)
            days.update(summary.reference_dates.get(table.dataset, ()))
        if days:
            dates[table.name] = sorted(days)
    return TablePlan(dates, frozenset(whole), frozenset(declare))


def held_tables(backlog: Backlog, tables: Sequence[CuratedTable]) -> list[HeldTable]:
    """The tables that read a dataset the gate holds, with the datasets and their failed rules."""
    held = backlog.held()
    found = []
    for table in tables:
        blocked = sorted(table.reads & set(held))
        if blocked:
            reasons = [f"{name}: {reason}" for name in blocked for reason in held[name].reasons or ["held"]]
            found.append(
                HeldTable(
                    table=table.name, datasets=blocked, reasons=reasons, pending_runs=len(backlog.pending(table.name))
                )
            )
    return found


def processed_tables(glue: GlueClient, database: str, datasets: Collection[str]) -> frozenset[str]:
    """The datasets among `datasets` whose processed table is in the catalog (the Spark job declares it the first time
    it processes the dataset, rows or none, and its rollups' tables with it; a rollup's name is checked alike).

    Raises
    ------
    TransientError
        When Glue throttles or fails transiently.
    TerminalError
        When the catalog cannot be read (e.g. access denied).
    """
    found = set()
    for name in sorted(datasets):
        try:
            glue.get_table(DatabaseName=database, Name=name)
        except ClientError as exc:
            if error_code(exc) == "EntityNotFoundException":
                continue
            raise aws_error(exc, f"reading the catalog table {database}.{name}") from exc
        found.add(name)
    return frozenset(found)


def waiting_tables(tables: Sequence[CuratedTable], available: Collection[str]) -> list[WaitingTable]:
    """The tables reading a dataset that has no processed table yet, or a rollup not catalogued yet (the Spark job
    builds it with its dataset): they are neither built nor failed, they wait."""
    found = []
    for table in tables:
        missing = sorted((table.reads | table.rollups) - set(available))
        if missing:
            reason = f"waiting for input: {', '.join(missing)}"
            found.append(WaitingTable(table=table.name, datasets=missing, reason=reason))
    return found


def run_changes(s3: S3Client, processed_bucket: str, run_id: str) -> RunChanges:
    """What the Spark run `run_id` changed, from its summary (``<processed>/_runs/<run_id>/summary.json``).

    The dates to rebuild are, for every dataset a date-partitioned curated table reads: the dates the run wrote,
    the dates it emptied (their rows moved away, so their curated rows must go too), and the dates whose rows a
    reference change touches (enrichment is point-in-time at curation, ADR 0007).

    Raises
    ------
    TerminalError
        When the run wrote no summary (the processing step did not run with this run id).
    TransientError
        When S3 throttles or fails transiently.
    """
    summary = load_run_summary(s3, processed_bucket, run_id)
    dated = {table.dataset for table in curated_tables() if table.partition_column is not None}
    by_dataset = {
        name: tuple(sorted({*part.partitions, *part.partitions_removed, *part.reference_dates}))
        for name, part in sorted(summary.datasets.items())
        if name in dated
    }
    changed = frozenset(name for name, part in summary.datasets.items() if part.changed)
    return RunChanges({name: days for name, days in by_dataset.items() if days}, changed)


def run_token(run_id: str) -> str:
    """The run id as it appears in stage table names and run folders: lowercase letters, digits and `_`."""
    token = re.sub(r"[^a-z0-9]+", "_", run_id.lower()).strip("_")
    if not token:
        raise ValueError(f"run id {run_id!r} has no letters or digits")
    return token[:80]


def _partitioned(
    table: CuratedTable,
    database: str,
    bucket: str,
    token: str,
    days: list[dt.date],
    version_dates: Mapping[str, Collection[dt.date]] | None,
) -> Iterator[Statement]:
    column = table.partition_column
    assert column is not None
    stage = f"{table.name}__{token}"
    base = f"s3://{bucket}/{table.name}/"
    run_folder = f"{base}runs/{token}/"
    yield _statement(table.name, "table", f"curated/{table.name}.table.sql", database=database, location=base)
    yield _statement(table.name, "clean", "rebuild/drop_stage.sql", database=database, stage=stage)
    chunks = [days[i : i + MAX_PARTITIONS_PER_QUERY] for i in range(0, len(days), MAX_PARTITIONS_PER_QUERY)]
    for number, chunk in enumerate(chunks):
        versioned = versioned_days(table, chunk, version_dates)
        select = _select(
            f"curated/{table.name}.sql",
            database,
            dates=_date_list(chunk),
            steady_dates=_date_list([day for day in chunk if day not in versioned]),
            versioned_dates=_date_list(versioned),
        )
        if number == 0:
            yield _statement(
                table.name,
                "build",
                "rebuild/build_partitioned_stage.sql",
                database=database,
                stage=stage,
                location=run_folder,
                partition_column=column,
                select=select,
            )
        else:
            yield _statement(
                table.name, "build", "rebuild/append_stage.sql", database=database, stage=stage, select=select
            )
    for chunk in chunks:
        specs = ",\n".join(f"PARTITION ({column} = '{day.isoformat()}')" for day in chunk)
        located = "\n".join(
            f"PARTITION ({column} = '{day.isoformat()}') LOCATION '{run_folder}{column}={day.isoformat()}/'"
            for day in chunk
        )
        yield _statement(
            table.name,
            "unpublish",
            "rebuild/unpublish_partitions.sql",
            database=database,
            table=table.name,
            partitions=specs,
        )
        yield _statement(
            table.name,
            "publish",
            "rebuild/publish_partitions.sql",
            database=database,
            table=table.name,
            partitions=located,
        )
    yield _statement(table.name, "cleanup", "rebuild/drop_stage.sql", database=database, stage=stage)


def _declare(table: CuratedTable, database: str, bucket: str) -> Statement:
    """Create a partitioned table with no partition yet (its SQL over no processed row is empty)."""
    location = f"s3://{bucket}/{table.name}/"
    return _statement(table.name, "table", f"curated/{table.name}.table.sql", database=database, location=location)


def _whole(table: CuratedTable, database: str, bucket: str, token: str) -> Iterator[Statement]:
    stage = f"{table.name}__{token}"
    run_folder = f"s3://{bucket}/{table.name}/runs/{token}/"
    yield _statement(table.name, "table", f"curated/{table.name}.table.sql", database=database, location=run_folder)
    yield _statement(table.name, "clean", "rebuild/drop_stage.sql", database=database, stage=stage)
    yield _statement(
        table.name,
        "build",
        "rebuild/build_stage.sql",
        database=database,
        stage=stage,
        location=run_folder,
        select=_select(f"curated/{table.name}.sql", database),
    )
    yield _statement(
        table.name, "publish", "rebuild/publish_location.sql", database=database, table=table.name, location=run_folder
    )
    yield _statement(table.name, "cleanup", "rebuild/drop_stage.sql", database=database, stage=stage)


def _statement(table: str, step: str, template: str, /, **values: str) -> Statement:
    return Statement(name=f"{table}/{step}", table=table, step=step, query=render(sql_text(template), values))


def _select(path: str, database: str, **values: str) -> str:
    return render(sql_text(path), {"database": database, **values})


def _date_list(days: Sequence[dt.date]) -> str:
    """The dates as SQL literals for an `IN (...)` list; `NULL` (no row matches, no partition is read) when empty."""
    return ", ".join(f"DATE '{day.isoformat()}'" for day in days) or "NULL"


def versioned_days(
    table: CuratedTable, days: Sequence[dt.date], version_dates: Mapping[str, Collection[dt.date]] | None
) -> list[dt.date]:
    """The days among `days` on which a version of a dataset the table reads through its history view may begin.

    On the other days (`steady_dates` in the table's SQL) the version valid at the start of the day is valid all day,
    so the query enriches the day's rows without reading their event time (ADR 0027). Every day is versioned when
    the version dates of one of those datasets are unknown.
    """
    if not table.history:
        return []
    begun: set[dt.date] = set()
    for name in table.history:
        known = None if version_dates is None else version_dates.get(name)
        if known is None:
            return list(days)
        begun.update(known)
    return [day for day in days if day in begun]


def version_start_dates(s3: S3Client, processed_bucket: str, datasets: Collection[str]) -> dict[str, list[dt.date]]:
    """Per versioned dataset, every date one of its versions begins on: its processed partitions, when the dataset
    is partitioned by its version field (a version begins at its version field's time); others are left out."""
    found: dict[str, list[dt.date]] = {}
    for name in sorted(datasets):
        dataset = REGISTRY.get(name)
        if dataset is not None and dataset.version_field is not None and dataset.version_field == dataset.event_time:
            found[name] = processed_dates(s3, processed_bucket, name)
    return found


def _identifier(value: str, what: str) -> str:
    if not _IDENTIFIER.fullmatch(value):
        raise ValueError(f"invalid {what} name {value!r}: use lowercase letters, digits and _")
    return value

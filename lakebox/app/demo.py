"""`lakebox run`: the whole pipeline on generated sample data for the example datasets, kept in the local lake.

Generates the sample files (`lakebox.app.sample`), puts them through the landing rules, streams events for a few
seconds, fires the scheduled pull from the sample source API, runs the pipeline with its defaults, reads the
curated headline tables and the forecast, and writes the dashboard. `run_demo` returns what happened as a
`DemoReport`; `lakebox.cli` prints it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakebox.app.dashboard import build_dashboard
from lakebox.app.pipeline import forecast_rows, headline_rows
from lakebox.app.sample import SampleSpec, generate
from lakebox.app.source_api import API_ID_OFFSET, install_secret, sample_sales, serve
from lakebox.app.stream import StreamRun, run_stream, stream_datasets
from lakebox.box import summary_row

if TYPE_CHECKING:
    from lakebox.box import Lakebox
    from lakebox.sfn import Execution

OpenBox = Callable[[Mapping[str, str]], contextlib.AbstractContextManager["Lakebox"]]
"""Opens the box the demo runs on, given the parameters lakebox sets itself (the sample API's URL)."""


@dataclass(frozen=True)
class DemoParams:
    """The sample's size and shape, the streaming phase, and where the dashboard goes (the options of `run`)."""

    rows: int = 20_000
    bad_rate: float = 0.02
    seed: int = 7
    stream_seconds: float = 3.0
    stream_rate: float = 200.0
    api_rows: int = 2_000
    days: int = 56
    weekly_amplitude: float = 0.3
    dashboard: Path | None = None


@dataclass
class DemoReport:
    """What `lakebox run` did: each file's ingestion, the streams, the scheduled pull, the pipeline and its output."""

    ingested: list[dict[str, Any]] = field(default_factory=list)
    streamed: list[StreamRun] = field(default_factory=list)
    pulled: list[dict[str, Any]] = field(default_factory=list)
    execution: Execution | None = None
    curated: dict[str, tuple[list[str], list[list[Any]]]] = field(default_factory=dict)
    forecast: tuple[list[str], list[list[Any]]] | None = None
    dashboard: Path | None = None

    @property
    def stream_rows(self) -> list[dict[str, Any]]:
        """One summary row a stream."""
        return [s.summary() for s in self.streamed]

    @property
    def ok(self) -> bool:
        """Every file ingested, no stream record failed, the pull worked and the pipeline succeeded."""
        stream_ok = all(row.get("to failure queue", 0) == 0 for row in self.stream_rows)
        pull_ok = all(not p["error"] for p in self.pulled)
        pipeline_ok = self.execution is not None and self.execution.status == "SUCCEEDED"
        ingest_ok = all(r["status"] not in ("FAILED", None) for r in self.ingested)
        return ingest_ok and stream_ok and pull_ok and pipeline_ok


def run_demo(params: DemoParams, open_box: OpenBox, progress: Callable[[str], None]) -> DemoReport:
    """Generate sample data, ingest every file through the stack, stream, pull, run the pipeline, read the output."""
    spec = SampleSpec(
        sales=params.rows,
        bad_rate=params.bad_rate,
        end=dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0),
        seed=params.seed,
        days=params.days,
        weekly_amplitude=params.weekly_amplitude,
    )
    report = DemoReport()
    with serve(sample_sales(spec, params.api_rows, start=API_ID_OFFSET)) as source_api:
        progress("starting the local stack")
        with open_box({"SourceApiBaseUrl": source_api.url}) as box:
            progress(f"generating sample data ({params.rows:,} sales)")
            with tempfile.TemporaryDirectory() as folder:
                files = generate(Path(folder), spec)
                for generated in files:
                    progress(f"ingesting {generated.path.name} ({generated.records:,} records)")
                    key, deliveries = box.put_file(generated.path, generated.dataset)
                    for delivery in deliveries:
                        row = summary_row(key, delivery)
                        row["expected bad"] = generated.bad
                        report.ingested.append(row)
            for stream_dataset in stream_datasets() if params.stream_seconds > 0 else []:
                report.streamed.append(
                    run_stream(
                        box,
                        dataset=stream_dataset,
                        rate=params.stream_rate,
                        seconds=params.stream_seconds,
                        seed=params.seed,
                        bad_rate=params.bad_rate,
                        window=1.0,
                        progress=progress,
                    )
                )
            progress("firing the scheduled pull from the sample source API")
            install_secret(box.session, str(box.stack.ref("SourceApiSecretName")), source_api.token)
            firing, landed = box.fire_schedule("IngestApiFunction.DailyPull")
            report.pulled.append({"schedule": firing.schedule.name, **(firing.result or {}), "error": firing.error})
            report.ingested.extend(summary_row(key, delivery) | {"expected bad": None} for key, delivery in landed)
            execution = report.execution = box.execute(
                "PipelineStateMachine",
                {},
                progress=lambda s: progress(f"pipeline: {s}"),
            )
            progress("reading the curated tables")
            report.curated = headline_rows(box) if execution.status == "SUCCEEDED" else {}
            report.forecast = forecast_rows(box, execution.output) if execution.status == "SUCCEEDED" else None
            report.dashboard = build_dashboard(box, params.dashboard, progress=progress).path
    return report

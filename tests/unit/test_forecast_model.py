"""ml/forecast: the script-mode training entry and the batch inference entry, run as SageMaker runs them."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
FORECAST = ROOT / "ml" / "forecast"


@pytest.fixture(scope="module")
def ml() -> Iterator[dict[str, ModuleType]]:
    """The three modules of ml/forecast, imported the way the container does (their folder on sys.path)."""
    sys.path.insert(0, str(FORECAST))
    try:
        yield {name: importlib.import_module(name) for name in ("forecaster", "train", "inference")}
    finally:
        sys.path.remove(str(FORECAST))


def seasonal_rows(days: int = 70, *, noise: float = 0.1, seed: int = 1) -> list[dict[str, Any]]:
    """Daily revenue of three regions with a weekly cycle, a slow trend and multiplicative noise."""
    rng = np.random.default_rng(seed)
    start = dt.date(2026, 8, 3)
    rows = []
    for region, level in (("north", 30_000.0), ("south", 18_000.0), ("online", 9_000.0)):
        for n in range(days):
            day = start + dt.timedelta(days=n)
            weekly = 1 + 0.35 * np.sin(2 * np.pi * day.weekday() / 7)
            value = level * weekly * (1 + 0.003 * n) * rng.normal(1, noise)
            rows.append({"sale_date": day, "region": region, "currency": "USD", "revenue": round(value, 2)})
    return rows


def test_model_beats_seasonal_naive_on_the_backtest(ml: dict[str, ModuleType]) -> None:
    # GIVEN ten weeks of noisy weekly-seasonal sales in three regions
    f = ml["forecaster"]
    series = f.build_series(seasonal_rows())
    # WHEN the model is trained with a two-fold, 14-day backtest
    model = f.train(series, f.Options(horizon=14, folds=2), model_version="v1")
    # THEN its sMAPE is below the seasonal-naive baseline's, overall and in every region
    assert model.backtest["smape_model"] < model.backtest["smape_seasonal_naive"]
    for errors in model.backtest["series"].values():
        assert errors["smape_model"] < errors["smape_seasonal_naive"]
    assert 0.5 <= model.backtest["interval_coverage"] <= 1.0


def test_forecast_has_one_ordered_row_per_region_and_horizon_day(ml: dict[str, ModuleType]) -> None:
    f = ml["forecaster"]
    model = f.train(f.build_series(seasonal_rows()), f.Options(horizon=10), model_version="v7", trained_at="T")
    rows = model.forecast()
    keys = {(r["region"], r["forecast_date"]) for r in rows}
    last = dt.date(2026, 8, 3) + dt.timedelta(days=69)
    expected_days = {(last + dt.timedelta(days=n)).isoformat() for n in range(1, 11)}
    assert len(rows) == len(keys) == 3 * 10
    assert {day for _, day in keys} == expected_days
    assert all(0 <= r["yhat_lower"] <= r["yhat"] <= r["yhat_upper"] for r in rows)
    assert {r["model_version"] for r in rows} == {"v7"}


def test_missing_days_are_zero_sales_and_same_day_rows_add_up(ml: dict[str, ModuleType]) -> None:
    f = ml["forecaster"]
    rows = [
        {"sale_date": "2026-01-01", "region": "n", "currency": "USD", "revenue": 5},
        {"sale_date": "2026-01-01", "region": "n", "currency": "USD", "revenue": 7},
        {"sale_date": "2026-01-04", "region": "n", "currency": "USD", "revenue": 1},
    ]
    (series,) = f.build_series(rows)
    assert series.values.tolist() == [12.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "no training rows"),
        (seasonal_rows(days=30), "needs 42 days of history"),
        ([{"sale_date": "2026-01-01", "region": "n"}], "unusable"),
        ([{"sale_date": "yesterday", "region": "n", "revenue": 1}], "unusable"),
        ([{"sale_date": "2026-01-01", "region": "n", "revenue": "nan"}], "not a number"),
    ],
)
def test_unusable_training_data_is_a_clear_error(ml: dict[str, ModuleType], rows: list[Any], message: str) -> None:
    f = ml["forecaster"]
    with pytest.raises(f.ForecastError, match=message):
        f.train(f.build_series(rows), f.Options(), model_version="v")


def test_smape_and_seasonal_naive(ml: dict[str, ModuleType]) -> None:
    f = ml["forecaster"]
    assert f.smape(np.array([100.0, 0.0]), np.array([100.0, 0.0])) == 0.0
    assert f.smape(np.array([100.0]), np.array([0.0])) == pytest.approx(200.0)
    history = np.arange(14, dtype=float)
    assert f.seasonal_naive(history, 9).tolist() == [7, 8, 9, 10, 11, 12, 13, 7, 8]


def _sagemaker_dirs(tmp: Path) -> dict[str, Path]:
    dirs = {
        name: tmp / "opt" / "ml" / part
        for name, part in (
            ("model", "model"),
            ("train", "input/data/train"),
            ("output", "output"),
            ("data", "output/data"),
        )
    }
    for folder in dirs.values():
        folder.mkdir(parents=True, exist_ok=True)
    return dirs


def _environment(dirs: dict[str, Path]) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "SM_MODEL_DIR": str(dirs["model"]),
        "SM_CHANNEL_TRAIN": str(dirs["train"]),
        "SM_OUTPUT_DIR": str(dirs["output"]),
        "SM_OUTPUT_DATA_DIR": str(dirs["data"]),
        "TRAINING_JOB_NAME": "sales-forecast-test-0",
    }


def test_train_script_reads_the_channel_and_inference_round_trips_the_model(
    ml: dict[str, ModuleType], tmp_path: Path
) -> None:
    # GIVEN the training channel as Athena writes it (Parquet) and SageMaker's environment
    dirs = _sagemaker_dirs(tmp_path)
    pd.DataFrame(seasonal_rows()).to_parquet(dirs["train"] / "part-0.parquet")
    # WHEN train.py runs as the container runs it: a process with the hyperparameters as flags
    done = subprocess.run(
        [sys.executable, str(FORECAST / "train.py"), "--horizon", "7", "--sagemaker_program", "train.py"],
        env=_environment(dirs),
        capture_output=True,
        text=True,
        check=False,
        cwd=FORECAST,
    )
    # THEN it writes the model and its metrics, and prints the backtest errors for the MetricDefinitions
    assert done.returncode == 0, done.stderr
    metrics = json.loads((dirs["model"] / "metrics.json").read_text())
    assert metrics["model_version"] == "sales-forecast-test-0"
    assert metrics["smape_model"] < metrics["smape_seasonal_naive"]
    assert json.loads((dirs["data"] / "metrics.json").read_text()) == metrics
    assert f"backtest smape_model={metrics['smape_model']:.3f};" in done.stdout
    # AND the inference entry loads it and answers a JSON-lines request with JSON-lines rows
    inference = ml["inference"]
    model = inference.model_fn(str(dirs["model"]))
    requests = inference.input_fn(b'{"horizon": 3, "regions": ["north"]}\n{}\n', "application/json")
    body = inference.output_fn(inference.predict_fn(requests, model), "application/jsonlines")
    rows = [json.loads(line) for line in body.splitlines()]
    assert len(rows) == 3 + 3 * 7
    assert rows[0]["region"] == "north" and rows[0]["model_version"] == "sales-forecast-test-0"
    assert set(rows[0]) == {
        "forecast_date",
        "region",
        "currency",
        "yhat",
        "yhat_lower",
        "yhat_upper",
        "model_version",
        "trained_at",
    }


def test_train_script_failure_goes_to_the_failure_file(tmp_path: Path) -> None:
    dirs = _sagemaker_dirs(tmp_path)
    pd.DataFrame(seasonal_rows(days=20)).to_csv(dirs["train"] / "window.csv", index=False)
    done = subprocess.run(
        [sys.executable, str(FORECAST / "train.py")],
        env=_environment(dirs),
        capture_output=True,
        text=True,
        check=False,
        cwd=FORECAST,
    )
    assert done.returncode == 1
    assert "needs 42 days of history" in (dirs["output"] / "failure").read_text()
    assert not (dirs["model"] / "model.joblib").exists()


def test_inference_rejects_what_it_cannot_read(ml: dict[str, ModuleType]) -> None:
    inference = ml["inference"]
    f = ml["forecaster"]
    with pytest.raises(f.ForecastError, match="content type"):
        inference.input_fn(b"1,2", "text/csv")
    with pytest.raises(f.ForecastError, match="line 2 is not JSON"):
        inference.input_fn(b'{}\n{"horizon":', "application/json")
    assert inference.input_fn(b"", "application/json") == [{}]

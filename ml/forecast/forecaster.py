"""Daily revenue forecast per region: a robust weekday-and-trend regression per series, judged against seasonal naive.

The regression is scikit-learn's HuberRegressor (squared loss near the fit, absolute loss beyond it), so a day that
is not like the others (the partial first day of a lake's history, an outage, a promotion) does not bend the trend.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.linear_model import HuberRegressor

SEASON = 7
"""The series' season in days: sales follow the week."""
MIN_TRAIN_DAYS = 2 * SEASON
"""The least history one fit needs (every weekday seen twice)."""


class ForecastError(ValueError):
    """The training data cannot give a forecast (too short, no rows, bad columns); the message says why."""


@dataclass(frozen=True)
class Options:
    """What the training job's hyperparameters choose.

    Parameters
    ----------
    horizon
        Days forecast after the last day of history.
    folds
        Rolling-origin backtest folds, each holding out ``horizon`` days.
    interval
        Coverage of the prediction interval (0.8: the 10th to 90th percentile of backtest errors).
    alpha
        L2 regularisation of the regression (on revenue scaled by the series' median).
    """

    horizon: int = 14
    folds: int = 2
    interval: float = 0.8
    alpha: float = 1e-4

    def __post_init__(self) -> None:
        if not 1 <= self.horizon <= 366:
            raise ForecastError(f"horizon must be 1 to 366 days, not {self.horizon}")
        if not 1 <= self.folds <= 12:
            raise ForecastError(f"folds must be 1 to 12, not {self.folds}")
        if not 0.0 < self.interval < 1.0:
            raise ForecastError(f"interval must be between 0 and 1, not {self.interval}")
        if self.alpha < 0:
            raise ForecastError(f"alpha must not be negative, not {self.alpha}")


@dataclass
class Series:
    """One series: a region (and its currency) with a value for every day from ``start``."""

    region: str
    currency: str
    start: dt.date
    values: np.ndarray

    @property
    def end(self) -> dt.date:
        """The last day of history."""
        return self.start + dt.timedelta(days=len(self.values) - 1)


@dataclass
class SeriesModel:
    """A fitted series: its regression, the day it counts trend from, its last day and interval half-widths."""

    region: str
    currency: str
    origin: dt.date
    end: dt.date
    regression: Regression
    lower_error: float
    upper_error: float


@dataclass
class Forecaster:
    """The trained model: one :class:`SeriesModel` per series, the options, the backtest and its provenance."""

    options: Options
    series: list[SeriesModel]
    backtest: dict[str, Any]
    model_version: str
    trained_at: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def forecast(self, horizon: int | None = None, regions: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Rows of ``forecast_date, region, currency, yhat, yhat_lower, yhat_upper, model_version, trained_at``.

        Parameters
        ----------
        horizon
            Days after each series' last day (the trained horizon when omitted).
        regions
            Only these regions (all when omitted).

        Returns
        -------
        list[dict[str, Any]]
            One row per series and day, ``yhat_lower <= yhat <= yhat_upper``, none below zero.
        """
        days = self.options.horizon if horizon is None else int(horizon)
        if not 1 <= days <= 366:
            raise ForecastError(f"horizon must be 1 to 366 days, not {days}")
        wanted = None if regions is None else set(regions)
        rows = []
        for model in self.series:
            if wanted is not None and model.region not in wanted:
                continue
            dates = [model.end + dt.timedelta(days=n) for n in range(1, days + 1)]
            predicted = _predict(model.regression, model.origin, dates)
            for day, value in zip(dates, predicted, strict=True):
                yhat = max(0.0, float(value))
                rows.append(
                    {
                        "forecast_date": day.isoformat(),
                        "region": model.region,
                        "currency": model.currency,
                        "yhat": round(yhat, 2),
                        "yhat_lower": round(max(0.0, yhat - model.lower_error), 2),
                        "yhat_upper": round(yhat + model.upper_error, 2),
                        "model_version": self.model_version,
                        "trained_at": self.trained_at,
                    }
                )
        return rows


# ------------------------------------------------------------------------------------------------ series


def build_series(rows: Iterable[Mapping[str, Any]]) -> list[Series]:
    """Daily series per (region, currency) from ``sale_date, region, currency, revenue`` rows.

    Days without a row inside a series' range are days without sales (zero revenue); rows of one day and series
    are summed. Raises :class:`ForecastError` when a row lacks a column or holds an unreadable value.
    """
    totals: dict[tuple[str, str], dict[dt.date, float]] = {}
    for number, row in enumerate(rows, start=1):
        try:
            day = _as_date(row["sale_date"])
            key = (str(row["region"]), str(row.get("currency") or ""))
            revenue = float(row["revenue"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ForecastError(f"training row {number} is unusable ({exc!r}): {dict(row)}") from exc
        if not math.isfinite(revenue):
            raise ForecastError(f"training row {number} has a revenue that is not a number: {dict(row)}")
        by_day = totals.setdefault(key, {})
        by_day[day] = by_day.get(day, 0.0) + revenue
    found = []
    for (region, currency), by_day in sorted(totals.items()):
        start, end = min(by_day), max(by_day)
        length = (end - start).days + 1
        values = np.zeros(length)
        for day, value in by_day.items():
            values[(day - start).days] = value
        found.append(Series(region, currency, start, values))
    return found


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if hasattr(value, "date") and callable(value.date):  # pandas / numpy timestamps
        return _as_date(value.date())
    return dt.date.fromisoformat(str(value)[:10])


# ------------------------------------------------------------------------------------------------ model


@dataclass
class Regression:
    """A Huber regression on revenue divided by ``scale`` (the series' median), so one setting fits every series."""

    estimator: HuberRegressor
    scale: float

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Revenue for each row of features."""
        return np.asarray(self.estimator.predict(features), dtype=float) * self.scale


def _features(origin: dt.date, dates: Sequence[dt.date]) -> np.ndarray:
    """Trend in weeks since ``origin`` and a one-hot weekday, one row per date."""
    out = np.zeros((len(dates), 1 + SEASON))
    for i, day in enumerate(dates):
        out[i, 0] = (day - origin).days / SEASON
        out[i, 1 + day.weekday()] = 1.0
    return out


def _fit(series_start: dt.date, values: np.ndarray, alpha: float) -> Regression:
    dates = [series_start + dt.timedelta(days=n) for n in range(len(values))]
    scale = float(np.median(np.abs(values))) or 1.0
    estimator = HuberRegressor(epsilon=1.35, alpha=alpha, max_iter=1000)
    estimator.fit(_features(series_start, dates), values / scale)
    return Regression(estimator, scale)


def _predict(regression: Regression, origin: dt.date, dates: Sequence[dt.date]) -> np.ndarray:
    return regression.predict(_features(origin, dates))


def seasonal_naive(history: np.ndarray, horizon: int, season: int = SEASON) -> np.ndarray:
    """The baseline: each day takes the value of the last observed day of the same weekday."""
    if len(history) < season:
        raise ForecastError(f"seasonal naive needs {season} days of history, not {len(history)}")
    last_season = history[-season:]
    return np.array([last_season[h % season] for h in range(horizon)], dtype=float)


def smape(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Symmetric mean absolute percentage error in percent (0 to 200); a day where both are zero counts as 0."""
    actual = np.asarray(actual, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    if actual.shape != predicted.shape or actual.size == 0:
        raise ForecastError("sMAPE needs two series of the same, non-zero length")
    denominator = np.abs(actual) + np.abs(predicted)
    ratio = np.divide(2.0 * np.abs(predicted - actual), denominator, out=np.zeros_like(actual), where=denominator > 0)
    return float(100.0 * ratio.mean())


def _interval(errors: np.ndarray, tail: float) -> tuple[float, float]:
    """How far below and above the forecast the interval reaches: quantiles of the backtest errors (actual - yhat)."""
    return max(0.0, -float(np.quantile(errors, tail))), max(0.0, float(np.quantile(errors, 1.0 - tail)))


def history_needed(options: Options) -> int:
    """Days of history a training run needs for its backtest folds."""
    return MIN_TRAIN_DAYS + options.folds * options.horizon


def train(
    series: Sequence[Series], options: Options, *, model_version: str, trained_at: str | None = None
) -> Forecaster:
    """Backtest on rolling origins, then fit every series on its whole history.

    Parameters
    ----------
    series
        The daily series (from :func:`build_series`).
    options
        Horizon, folds, interval and regularisation.
    model_version
        What the forecast rows carry as ``model_version`` (the training job's name on SageMaker).
    trained_at
        ISO-8601 UTC time of training (now when omitted).

    Returns
    -------
    Forecaster
        The model, with ``backtest`` holding both sMAPEs, the folds and the interval's coverage (each fold judged by
        an interval drawn from the other folds' errors; None with one fold).

    Raises
    ------
    ForecastError
        When there is no series, or one is shorter than :func:`history_needed`.
    """
    if not series:
        raise ForecastError("no training rows: the training window holds no sales")
    needed = history_needed(options)
    short = [f"{s.region}/{s.currency} ({len(s.values)} days)" for s in series if len(s.values) < needed]
    if short:
        raise ForecastError(
            f"a backtest of {options.folds} x {options.horizon} days needs {needed} days of history per series; "
            f"too short: {', '.join(short)}"
        )
    horizon = options.horizon
    actual_all, model_all, naive_all = [], [], []
    models = []
    covered = total = 0
    per_series = {}
    tail = (1.0 - options.interval) / 2.0
    for item in series:
        fold_errors: list[np.ndarray] = []
        fold_actual, fold_model, fold_naive = [], [], []
        for fold in range(options.folds, 0, -1):
            cut = len(item.values) - fold * horizon
            history, actual = item.values[:cut], item.values[cut : cut + horizon]
            regression = _fit(item.start, history, options.alpha)
            dates = [item.start + dt.timedelta(days=cut + n) for n in range(horizon)]
            predicted = np.maximum(_predict(regression, item.start, dates), 0.0)
            fold_actual.append(actual)
            fold_model.append(predicted)
            fold_naive.append(seasonal_naive(history, horizon))
            fold_errors.append(actual - predicted)
        lower_error, upper_error = _interval(np.concatenate(fold_errors), tail)
        if len(fold_errors) > 1:  # coverage measured honestly: each fold judged by the other folds' errors
            for k, errors in enumerate(fold_errors):
                low, high = _interval(np.concatenate([e for j, e in enumerate(fold_errors) if j != k]), tail)
                covered += int(np.sum((errors <= high) & (errors >= -low)))
                total += errors.size
        actual_s, model_s, naive_s = (np.concatenate(x) for x in (fold_actual, fold_model, fold_naive))
        per_series[f"{item.region}/{item.currency}"] = {
            "smape_model": round(smape(actual_s, model_s), 3),
            "smape_seasonal_naive": round(smape(actual_s, naive_s), 3),
        }
        actual_all.append(actual_s)
        model_all.append(model_s)
        naive_all.append(naive_s)
        models.append(
            SeriesModel(
                item.region,
                item.currency,
                item.start,
                item.end,
                _fit(item.start, item.values, options.alpha),
                lower_error,
                upper_error,
            )
        )
    actual_v, model_v, naive_v = (np.concatenate(x) for x in (actual_all, model_all, naive_all))
    backtest = {
        "smape_model": round(smape(actual_v, model_v), 3),
        "smape_seasonal_naive": round(smape(actual_v, naive_v), 3),
        "folds": options.folds,
        "horizon": horizon,
        "interval": options.interval,
        "interval_coverage": round(covered / total, 3) if total else None,
        "series": per_series,
    }
    stamp = trained_at or dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Forecaster(options, models, backtest, model_version, stamp)

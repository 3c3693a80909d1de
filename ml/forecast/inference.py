"""SageMaker inference entry (batch transform) for the sales forecast: model_fn, input_fn, predict_fn, output_fn.

A request is one JSON object per line, ``{"horizon": 14, "regions": ["north"]}`` (both optional: the trained horizon
and every region); the response is JSON lines, one forecast row per region and day, the columns of the curated
``sales_forecast`` table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import joblib

sys.path.insert(0, str(Path(__file__).resolve().parent))

from forecaster import Forecaster, ForecastError

MODEL_FILE = "model.joblib"
JSON_TYPES = ("application/json", "application/jsonlines", "application/x-jsonlines")


def model_fn(model_dir: str) -> Forecaster:
    """Load the model that train.py wrote to SM_MODEL_DIR (unpacked from model.tar.gz)."""
    model = joblib.load(Path(model_dir) / MODEL_FILE)
    if not isinstance(model, Forecaster):
        raise ForecastError(f"{model_dir}/{MODEL_FILE} is not a sales forecast model")
    return model


def input_fn(request_body: str | bytes, content_type: str = "application/json") -> list[dict[str, Any]]:
    """Parse requests: JSON objects, one a line (an empty body asks for the default forecast)."""
    if content_type.split(";", maxsplit=1)[0].strip() not in JSON_TYPES:
        raise ForecastError(f"unsupported content type {content_type!r}: send {' or '.join(JSON_TYPES)}")
    text = request_body.decode("utf-8") if isinstance(request_body, bytes) else request_body
    requests: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ForecastError(f"request line {number} is not JSON: {exc}") from exc
        if not isinstance(request, dict):
            raise ForecastError(f"request line {number} is not a JSON object")
        requests.append(request)
    return requests or [{}]


def predict_fn(requests: list[dict[str, Any]], model: Forecaster) -> list[dict[str, Any]]:
    """Forecast rows for every request."""
    rows: list[dict[str, Any]] = []
    for request in requests:
        horizon = request.get("horizon")
        regions = request.get("regions")
        rows.extend(model.forecast(None if horizon is None else int(horizon), regions))
    return rows


def output_fn(prediction: list[dict[str, Any]], accept: str = "application/jsonlines") -> str:
    """JSON lines (what Athena's JSON SerDe reads)."""
    if accept.split(";", maxsplit=1)[0].strip() not in JSON_TYPES:
        raise ForecastError(f"unsupported accept type {accept!r}: ask for {' or '.join(JSON_TYPES)}")
    return "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in prediction)

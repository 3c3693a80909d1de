"""SageMaker script-mode training entry: the sales forecast from the `train` channel to a model in SM_MODEL_DIR.

The SageMaker scikit-learn container runs `python train.py --horizon 14 ...` (one flag per hyperparameter) with
SM_MODEL_DIR, SM_CHANNEL_TRAIN and SM_OUTPUT_DATA_DIR set; whatever it writes to SM_MODEL_DIR becomes
model.tar.gz. A failure is written to /opt/ml/output/failure (SageMaker's FailureReason) and exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import joblib

sys.path.insert(0, str(Path(__file__).resolve().parent))

from forecaster import ForecastError, Options, build_series, train

MODEL_FILE = "model.joblib"
METRICS_FILE = "metrics.json"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Hyperparameters as flags, SageMaker's directories from its environment (overridable for local runs)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--horizon", type=int, default=14, help="days to forecast")
    parser.add_argument("--folds", type=int, default=2, help="rolling-origin backtest folds")
    parser.add_argument("--interval", type=float, default=0.8, help="prediction interval coverage")
    parser.add_argument("--alpha", type=float, default=1e-4, help="L2 regularisation of the Huber regression")
    parser.add_argument("--model-version", "--model_version", dest="model_version", default=None)
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    parser.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train"))
    parser.add_argument("--output-data-dir", default=os.environ.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"))
    args, _unknown = parser.parse_known_args(argv)  # the container also passes sagemaker_* hyperparameters
    return args


def read_rows(folder: Path) -> Iterator[dict[str, Any]]:
    """Every row of the channel's Parquet, CSV and JSON-lines files (Athena CTAS or UNLOAD output)."""
    import pandas as pd

    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
    if not files:
        raise ForecastError(f"the training channel {folder} holds no files")
    for path in files:
        name = path.name.lower()
        if name.endswith((".csv", ".csv.gz")):
            frame = pd.read_csv(path)
        elif name.endswith((".json", ".jsonl", ".json.gz", ".jsonl.gz")):
            frame = pd.read_json(path, lines=True)
        else:
            frame = pd.read_parquet(path)
        yield from frame.to_dict(orient="records")


def main(argv: Sequence[str] | None = None) -> int:
    """Train, write model and metrics; print the backtest errors in the form the MetricDefinitions match."""
    args = parse_args(argv)
    try:
        options = Options(horizon=args.horizon, folds=args.folds, interval=args.interval, alpha=args.alpha)
        version = args.model_version or os.environ.get("TRAINING_JOB_NAME") or "local"
        model = train(build_series(read_rows(Path(args.train))), options, model_version=version)
    except ForecastError as exc:
        failure = Path(os.environ.get("SM_OUTPUT_DIR", "/opt/ml/output")) / "failure"
        if failure.parent.is_dir():
            failure.write_text(str(exc), encoding="utf-8")
        print(f"training failed: {exc}", file=sys.stderr)
        return 1
    model_dir = Path(args.model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, model_dir / MODEL_FILE)
    metrics = {"model_version": model.model_version, "trained_at": model.trained_at, **model.backtest}
    (model_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    output = Path(args.output_data_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / METRICS_FILE).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    print(f"backtest smape_model={model.backtest['smape_model']:.3f};")
    print(f"backtest smape_seasonal_naive={model.backtest['smape_seasonal_naive']:.3f};")
    if model.backtest["interval_coverage"] is not None:
        print(f"backtest interval_coverage={model.backtest['interval_coverage']:.3f};")
    print(f"trained {len(model.series)} series, horizon {options.horizon} days, model {model.model_version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

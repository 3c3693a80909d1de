"""The template's CloudWatch alarms evaluated on this machine, against the metrics lakebox records.

The metrics are those of `lakebox.services.metrics` (what the services publish, and the EMF lines of the function
logs) and, from a running endpoint, the depths of the queues the alarms watch. `evaluate` then applies each
`AWS::CloudWatch::Alarm` of the template (single metric or metric math) to the last evaluation periods ending now,
with the template's statistic, threshold, comparison and missing-data treatment.
"""

from __future__ import annotations

import ast
import math
import operator
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from lakebox.errors import LakeboxError
from lakebox.services.metrics import Datapoint, MetricStore, dims_of, emf_datapoints

if TYPE_CHECKING:
    import boto3

    from lakebox.cfn.stack import Stack

ALARM: Final = "ALARM"
OK: Final = "OK"
INSUFFICIENT_DATA: Final = "INSUFFICIENT_DATA"


# ---------------------------------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class MetricQuery:
    """One metric of an alarm: what to read and how to aggregate it per period."""

    id: str
    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    stat: str
    period: int


@dataclass(frozen=True)
class AlarmDefinition:
    """An `AWS::CloudWatch::Alarm` of the template, resolved for this deployment."""

    logical_id: str
    description: str
    metrics: tuple[MetricQuery, ...]
    expression: str | None
    """The metric math expression whose value is compared (None: the one metric is)."""
    period: int
    evaluation_periods: int
    datapoints_to_alarm: int
    threshold: float
    comparison: str
    treat_missing: str


@dataclass(frozen=True)
class AlarmState:
    """An alarm's state now, with the value that decided it."""

    name: str
    state: str
    value: float | None
    threshold: float
    comparison: str
    reason: str
    description: str = field(default="", compare=False)


_COMPARISONS: Final[dict[str, Callable[[float, float], bool]]] = {
    "GreaterThanThreshold": operator.gt,
    "GreaterThanOrEqualToThreshold": operator.ge,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}
_SYMBOLS: Final = {
    "GreaterThanThreshold": ">",
    "GreaterThanOrEqualToThreshold": ">=",
    "LessThanThreshold": "<",
    "LessThanOrEqualToThreshold": "<=",
}


def definitions(stack: Stack) -> list[AlarmDefinition]:
    """The template's alarms that exist in this deployment (their Condition holds), resolved."""
    found = []
    for logical_id, resource in stack.resources.items():
        if resource["Type"] != "AWS::CloudWatch::Alarm" or not stack.active(logical_id):
            continue
        props = stack.resolve(resource.get("Properties", {}))
        found.append(_definition(logical_id, props))
    return found


def _definition(logical_id: str, props: Mapping[str, Any]) -> AlarmDefinition:
    evaluation_periods = int(props["EvaluationPeriods"])
    expression = None
    if "Metrics" in props:
        queries = []
        for item in props["Metrics"]:
            if "MetricStat" in item:
                stat = item["MetricStat"]
                metric = stat["Metric"]
                queries.append(
                    MetricQuery(
                        id=str(item["Id"]),
                        namespace=str(metric["Namespace"]),
                        name=str(metric["MetricName"]),
                        dimensions=dims_of({d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}),
                        stat=str(stat["Stat"]),
                        period=int(stat["Period"]),
                    )
                )
            elif item.get("ReturnData", True):
                expression = str(item["Expression"])
        if expression is None:
            returned = [q for q, item in zip(queries, props["Metrics"], strict=False) if item.get("ReturnData", True)]
            expression = returned[0].id if returned else queries[0].id
        period = max(q.period for q in queries)
    else:
        period = int(props["Period"])
        queries = [
            MetricQuery(
                id="m",
                namespace=str(props["Namespace"]),
                name=str(props["MetricName"]),
                dimensions=dims_of({d["Name"]: d["Value"] for d in props.get("Dimensions", [])}),
                stat=str(props.get("Statistic") or props.get("ExtendedStatistic")),
                period=period,
            )
        ]
    comparison = str(props["ComparisonOperator"])
    if comparison not in _COMPARISONS:
        raise LakeboxError(f"{logical_id}: lakebox cannot evaluate {comparison}")
    return AlarmDefinition(
        logical_id=logical_id,
        description=str(props.get("AlarmDescription", "")),
        metrics=tuple(queries),
        expression=expression,
        period=period,
        evaluation_periods=evaluation_periods,
        datapoints_to_alarm=int(props.get("DatapointsToAlarm", evaluation_periods)),
        threshold=float(props["Threshold"]),
        comparison=comparison,
        treat_missing=str(props.get("TreatMissingData", "missing")),
    )


def _aggregate(values: Sequence[float], stat: str) -> float | None:
    if not values:
        return None
    if stat == "Sum":
        return math.fsum(values)
    if stat == "Maximum":
        return max(values)
    if stat == "Minimum":
        return min(values)
    if stat == "Average":
        return math.fsum(values) / len(values)
    if stat == "SampleCount":
        return float(len(values))
    raise LakeboxError(f"lakebox cannot compute the statistic {stat}")


def evaluate(alarm: AlarmDefinition, datapoints: Iterable[Datapoint], now: float | None = None) -> AlarmState:
    """The alarm's state over its last `evaluation_periods` periods ending at `now`."""
    now = time.time() if now is None else now
    wanted = {(q.namespace, q.name, q.dimensions): q for q in alarm.metrics}
    periods = [(now - (k + 1) * alarm.period, now - k * alarm.period) for k in range(alarm.evaluation_periods)]
    buckets: dict[str, list[list[float]]] = {q.id: [[] for _ in periods] for q in alarm.metrics}
    for point in datapoints:
        query = wanted.get((point.namespace, point.name, point.dimensions))
        if query is None:
            continue
        for index, (start, end) in enumerate(periods):
            if start <= point.timestamp < end:
                buckets[query.id][index].append(point.value)
    values: list[float | None] = []
    for index in range(len(periods)):
        inputs = {q.id: _aggregate(buckets[q.id][index], q.stat) for q in alarm.metrics}
        values.append(_compute(alarm.expression or alarm.metrics[0].id, inputs))
    return _state(alarm, values)


def _state(alarm: AlarmDefinition, values: list[float | None]) -> AlarmState:
    compare = _COMPARISONS[alarm.comparison]
    symbol = _SYMBOLS[alarm.comparison]
    latest = next((v for v in values if v is not None), None)
    present = [v for v in values if v is not None]
    if not present and alarm.treat_missing in ("missing", "ignore"):
        return AlarmState(
            alarm.logical_id, INSUFFICIENT_DATA, None, alarm.threshold, symbol, "no datapoints", alarm.description
        )
    breaching = sum(
        1
        for v in values
        if (v is not None and compare(v, alarm.threshold)) or (v is None and alarm.treat_missing == "breaching")
    )
    state = ALARM if breaching >= alarm.datapoints_to_alarm else OK
    shown = "no data" if latest is None else f"{latest:g}"
    reason = (
        f"{breaching} of {len(values)} periods of {alarm.period}s breach {symbol} {alarm.threshold:g} (latest {shown})"
    )
    return AlarmState(alarm.logical_id, state, latest, alarm.threshold, symbol, reason, alarm.description)


# ------------------------------------------------------------------------------- metric math (the alarms' subset)

_BINARY: Final[dict[type[ast.operator], Callable[[float, float], float]]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: lambda a, b: a / b if b else math.nan,
    ast.Pow: operator.pow,
}
_COMPARE: Final[dict[type[ast.cmpop], Callable[[float, float], bool]]] = {
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}


def _compute(expression: str, inputs: Mapping[str, float | None]) -> float | None:
    """A metric math expression at one period; None when none of the metrics it reads has a value."""
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        raise LakeboxError(f"lakebox cannot read the metric math {expression!r}") from exc
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} & set(inputs)
    if not names or all(inputs[n] is None for n in names):
        return None
    values = {name: (value if value is not None else 0.0) for name, value in inputs.items()}
    result = _eval(tree.body, values, expression)
    return None if isinstance(result, list) or math.isnan(result) else float(result)


def _eval(node: ast.expr, values: Mapping[str, float], text: str) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if isinstance(node, ast.Name) and node.id in values:
        return values[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_eval(node.left, values, text), _eval(node.right, values, text))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(node.operand, values, text)
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
        left, right = _eval(node.left, values, text), _eval(node.comparators[0], values, text)
        return 1.0 if _COMPARE[type(node.ops[0])](left, right) else 0.0
    if isinstance(node, ast.List):
        return [_eval(item, values, text) for item in node.elts]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        args = [_eval(arg, values, text) for arg in node.args]
        function = node.func.id.upper()
        if function == "IF" and len(args) in (2, 3):
            return args[1] if args[0] else (args[2] if len(args) == 3 else math.nan)
        if function in ("SUM", "MAX", "MIN", "AVG") and len(args) == 1 and isinstance(args[0], list):
            items = args[0]
            reducers: dict[str, Callable[[list[float]], float]] = {
                "SUM": math.fsum,
                "MAX": max,
                "MIN": min,
                "AVG": lambda xs: math.fsum(xs) / len(xs),
            }
            return reducers[function](items)
    raise LakeboxError(f"lakebox cannot evaluate {ast.unparse(node)!r} in the metric math {text!r}")


# ------------------------------------------------------------------------------------------------------ the box


def sampled_queue_depths(stack: Stack, session: boto3.Session) -> list[Datapoint]:
    """The visible messages of each queue the alarms watch, read now from a running endpoint."""
    sqs = session.client("sqs")
    now = time.time()
    points = []
    for alarm in definitions(stack):
        for query in alarm.metrics:
            if (query.namespace, query.name) != ("AWS/SQS", "ApproximateNumberOfMessagesVisible"):
                continue
            name = dict(query.dimensions).get("QueueName", "")
            try:
                url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
                attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
            except sqs.exceptions.QueueDoesNotExist:
                continue
            depth = float(attributes["Attributes"]["ApproximateNumberOfMessages"])
            points.append(Datapoint("AWS/SQS", query.name, query.dimensions, depth, now - 1))
    return points


def alarm_states(
    stack: Stack,
    metrics: MetricStore,
    log_dir: Path,
    session: boto3.Session | None = None,
    now: float | None = None,
) -> list[AlarmState]:
    """Every alarm of the deployment, evaluated on the recorded metrics, the EMF lines of the function logs in
    `log_dir`, and (given a session of a running endpoint) the queue depths now."""
    points = [*metrics, *emf_datapoints(log_dir)]
    if session is not None:
        points.extend(sampled_queue_depths(stack, session))
    return [evaluate(alarm, points, now) for alarm in definitions(stack)]


def alarms_in_alarm(
    stack: Stack,
    metrics: MetricStore,
    log_dir: Path,
    session: boto3.Session | None = None,
    now: float | None = None,
) -> list[AlarmState]:
    """The alarms in state ALARM now (what `lakebox status` lists)."""
    return [state for state in alarm_states(stack, metrics, log_dir, session, now) if state.state == ALARM]


__all__ = [
    "ALARM",
    "INSUFFICIENT_DATA",
    "OK",
    "AlarmDefinition",
    "AlarmState",
    "Datapoint",
    "LakeboxError",
    "MetricStore",
    "alarm_states",
    "alarms_in_alarm",
    "definitions",
    "emf_datapoints",
    "evaluate",
    "sampled_queue_depths",
]

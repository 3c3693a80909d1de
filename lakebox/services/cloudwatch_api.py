"""CloudWatch on the endpoint: the template's alarms evaluated on what the box recorded, and its metrics (the
service metrics lakebox records and the functions' EMF lines), over Smithy RPC v2 CBOR and JSON 1.0."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from lakebox.services import cbor
from lakebox.services.serve import AwsRequest, AwsResponse, ServiceError, unsupported

if TYPE_CHECKING:
    from pathlib import Path

    import boto3

    from lakebox.cfn.stack import Stack
    from lakebox.services.metrics import Datapoint, MetricStore

_TARGET: Final = "GraniteServiceVersion20100801"
_CBOR_PATH: Final = f"/service/{_TARGET}/operation/"


@dataclass
class CloudWatchApi:
    """CloudWatch's API: DescribeAlarms, ListMetrics, GetMetricData, GetMetricStatistics; the rest refused by name.

    Parameters
    ----------
    stack
        The resolved template (its alarms).
    session
        A session reaching the endpoint (the alarms on queue depths read them there).
    metrics
        The box's metric store.
    logs
        The folder of the function logs (their EMF lines are metrics too).
    """

    stack: Stack
    session: boto3.Session
    metrics: MetricStore
    logs: Path
    signing_names: tuple[str, ...] = ("monitoring",)
    target_prefixes: tuple[str, ...] = (_TARGET,)

    def handle(self, request: AwsRequest) -> AwsResponse | AwsRequest:
        """Answer a CloudWatch request in the protocol it came in."""
        is_cbor = request.path.startswith(_CBOR_PATH)
        if is_cbor:
            operation = request.path[len(_CBOR_PATH) :].strip("/")
            params = cbor.loads(request.body) if request.body else {}
        elif request.target:
            operation, params = request.target, request.json()
        else:
            raise unsupported("CloudWatch", "the query protocol (use an SDK that speaks JSON or CBOR)")
        handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "DescribeAlarms": self.describe_alarms,
            "ListMetrics": self.list_metrics,
            "GetMetricData": self.get_metric_data,
        }
        try:
            handler = handlers.get(operation)
            if handler is None:
                raise unsupported("CloudWatch", operation)
            result = handler(params if isinstance(params, dict) else {})
        except ServiceError as exc:
            if not is_cbor:
                raise
            body = {"__type": f"com.amazonaws.cloudwatch#{exc.code}", "message": exc.message}
            return AwsResponse(exc.status, cbor.dumps(body), _CBOR_HEADERS)
        if is_cbor:
            return AwsResponse(200, cbor.dumps(result), _CBOR_HEADERS)
        return AwsResponse(
            200, json.dumps(result, default=_json_time).encode(), {"Content-Type": "application/x-amz-json-1.0"}
        )

    def _points(self) -> list[Datapoint]:
        from lakebox.services.metrics import emf_datapoints

        return [*self.metrics, *emf_datapoints(self.logs)]

    def describe_alarms(self, params: dict[str, Any]) -> dict[str, Any]:
        """DescribeAlarms: the template's alarms with the state lakebox evaluates now (as `lakebox alarms`)."""
        from lakebox.services.alarms import alarm_states, definitions

        names = set(params.get("AlarmNames") or [])
        prefix = str(params.get("AlarmNamePrefix") or "")
        wanted_state = params.get("StateValue")
        now = dt.datetime.now(dt.UTC)
        account = self.stack.resolve({"Ref": "AWS::AccountId"})
        states = {s.name: s for s in alarm_states(self.stack, self.metrics, self.logs, self.session)}
        alarms = []
        for alarm in definitions(self.stack):
            name = str(self.stack.ref(alarm.logical_id))
            state = states.get(alarm.logical_id) or states.get(name)
            if (names and name not in names) or not name.startswith(prefix):
                continue
            if state is None or (wanted_state and state.state != wanted_state):
                continue
            item: dict[str, Any] = {
                "AlarmName": name,
                "AlarmArn": f"arn:aws:cloudwatch:us-east-1:{account}:alarm:{name}",
                "AlarmDescription": alarm.description,
                "ActionsEnabled": True,
                "StateValue": state.state,
                "StateReason": state.reason,
                "StateUpdatedTimestamp": now,
                "EvaluationPeriods": alarm.evaluation_periods,
                "DatapointsToAlarm": alarm.datapoints_to_alarm,
                "Threshold": alarm.threshold,
                "ComparisonOperator": alarm.comparison,
                "TreatMissingData": alarm.treat_missing,
            }
            if alarm.expression is None or (len(alarm.metrics) == 1 and alarm.expression == alarm.metrics[0].id):
                metric = alarm.metrics[0]
                item.update(
                    Namespace=metric.namespace,
                    MetricName=metric.name,
                    Dimensions=[{"Name": k, "Value": v} for k, v in metric.dimensions],
                    Statistic=metric.stat,
                    Period=metric.period,
                )
            else:
                item["Metrics"] = [
                    {
                        "Id": q.id,
                        "ReturnData": False,
                        "MetricStat": {
                            "Metric": {
                                "Namespace": q.namespace,
                                "MetricName": q.name,
                                "Dimensions": [{"Name": k, "Value": v} for k, v in q.dimensions],
                            },
                            "Period": q.period,
                            "Stat": q.stat,
                        },
                    }
                    for q in alarm.metrics
                ] + [{"Id": "expression", "Expression": alarm.expression, "ReturnData": True}]
            alarms.append(item)
        return {"MetricAlarms": alarms, "CompositeAlarms": []}

    def list_metrics(self, params: dict[str, Any]) -> dict[str, Any]:
        """ListMetrics: every metric the box has a datapoint of, by namespace, name and dimensions."""
        namespace, name = params.get("Namespace"), params.get("MetricName")
        filters = {(d["Name"], d.get("Value")) for d in params.get("Dimensions") or []}
        seen: dict[tuple[str, str, tuple[tuple[str, str], ...]], None] = {}
        for point in self._points():
            if (namespace and point.namespace != namespace) or (name and point.name != name):
                continue
            dims = dict(point.dimensions)
            if any(key not in dims or (value is not None and dims[key] != value) for key, value in filters):
                continue
            seen[(point.namespace, point.name, point.dimensions)] = None
        metrics = [
            {"Namespace": ns, "MetricName": metric, "Dimensions": [{"Name": k, "Value": v} for k, v in dims]}
            for ns, metric, dims in sorted(seen)
        ]
        return {"Metrics": metrics}

    def get_metric_data(self, params: dict[str, Any]) -> dict[str, Any]:
        """GetMetricData of MetricStat queries, aggregated per period between StartTime and EndTime."""
        from lakebox.services.alarms import _aggregate
        from lakebox.services.metrics import dims_of

        start, end = _seconds(params.get("StartTime")), _seconds(params.get("EndTime"))
        if start is None or end is None or end <= start:
            raise ServiceError("InvalidParameterValue", "StartTime must be before EndTime")
        points = self._points()
        results = []
        for query in params.get("MetricDataQueries") or []:
            stat = query.get("MetricStat")
            if not stat:
                raise unsupported("CloudWatch", "GetMetricData with metric math expressions")
            metric = stat["Metric"]
            dims = dims_of({d["Name"]: d["Value"] for d in metric.get("Dimensions") or []})
            period = int(stat["Period"])
            selected = _select(points, metric["Namespace"], metric["MetricName"], dims, start, end)
            buckets: dict[int, list[float]] = {}
            for point in selected:
                slot = int(start + ((point.timestamp - start) // period) * period)
                buckets.setdefault(slot, []).append(point.value)
            stamps = sorted(buckets, reverse=params.get("ScanBy", "TimestampDescending") != "TimestampAscending")
            values = [_aggregate(buckets[s], str(stat["Stat"])) for s in stamps]
            results.append(
                {
                    "Id": query["Id"],
                    "Label": query.get("Label") or metric["MetricName"],
                    "Timestamps": [dt.datetime.fromtimestamp(s, dt.UTC) for s in stamps],
                    "Values": [float(v) for v in values if v is not None],
                    "StatusCode": "Complete",
                }
            )
        return {"MetricDataResults": results, "Messages": []}


_CBOR_HEADERS: Final = {"Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor"}


def _select(
    points: Iterable[Datapoint],
    namespace: str,
    name: str,
    dims: tuple[tuple[str, str], ...],
    start: float,
    end: float,
) -> list[Datapoint]:
    return [
        p
        for p in points
        if p.namespace == namespace and p.name == name and p.dimensions == dims and start <= p.timestamp < end
    ]


def _seconds(value: Any) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return None


def _json_time(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return str(value)

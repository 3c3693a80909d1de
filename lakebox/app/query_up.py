"""`lakebox query` against a running `lakebox up`: Athena's API on its endpoint, over one HTTP connection.

The command then imports neither the stack nor the engine (nor boto3): it signs Athena's JSON 1.1 requests itself
(SigV4 with the box's local credentials), starts the query, polls it, and reads the whole result with the
endpoint's `LakeboxTypedRows` extension of GetQueryResults, so the rows are the very values the in-process path
prints (`lakebox.services.athena_result`). The endpoint runs the query on the box's own engine, so a persona's
grants (`--as`) are not applied there: that path stays in process (`lakebox.app.query`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.client
import json
import time
from typing import Any, Final
from urllib.parse import urlsplit

from lakebox.errors import LakeboxError
from lakebox.home.up import LOCAL_KEY, UpRecord
from lakebox.services.athena_result import QueryResult, decode_value

_TARGET: Final = "AmazonAthena"
_FINAL: Final = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


class QueryFailed(LakeboxError):
    """A query that ended FAILED or CANCELLED: the message is the in-process path's (`QueryFailedError`)."""


class AthenaOnEndpoint:
    """Athena's JSON 1.1 API on a `lakebox up` endpoint, over one kept-alive connection."""

    def __init__(self, endpoint: str, region: str, *, timeout: float = 3600.0) -> None:
        parts = urlsplit(endpoint)
        self._host = parts.netloc
        self._region = region
        self._connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """One Athena operation; an error answer raises `LakeboxError` with Athena's code and message."""
        body = json.dumps(params).encode()
        headers = self._signed(operation, body)
        self._connection.request("POST", "/", body=body, headers=headers)
        response = self._connection.getresponse()
        payload = response.read()
        try:
            document = json.loads(payload) if payload.strip() else {}
        except ValueError:
            document = {"message": payload.decode("utf-8", "replace")[:300]}
        if response.status >= 400:
            code = str(document.get("__type") or response.getheader("x-amzn-ErrorType") or response.status)
            message = document.get("message") or document.get("Message") or ""
            raise LakeboxError(f"{code.rsplit('#', 1)[-1].split(':', maxsplit=1)[0]}: {message}".rstrip(": "))
        if not isinstance(document, dict):
            raise LakeboxError(f"Athena {operation} answered {str(document)[:200]}")
        return document

    def _signed(self, operation: str, body: bytes) -> dict[str, str]:
        """SigV4 headers for a JSON 1.1 call (the endpoint routes on the credential scope's service name)."""
        now = dt.datetime.now(dt.UTC)
        stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        headers = {
            "content-type": "application/x-amz-json-1.1",
            "host": self._host,
            "x-amz-date": stamp,
            "x-amz-security-token": LOCAL_KEY,
            "x-amz-target": f"{_TARGET}.{operation}",
        }
        names = ";".join(sorted(headers))
        canonical = "\n".join(
            [
                "POST",
                "/",
                "",
                *(f"{name}:{headers[name]}" for name in sorted(headers)),
                "",
                names,
                hashlib.sha256(body).hexdigest(),
            ]
        )
        scope = f"{day}/{self._region}/athena/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = f"AWS4{LOCAL_KEY}".encode()
        for part in (day, self._region, "athena", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={LOCAL_KEY}/{scope}, SignedHeaders={names}, Signature={signature}"
        )
        return headers


def query_up(up: UpRecord, sql: str, *, workgroup: str | None = None) -> QueryResult:
    """Run `sql` on the running `up`'s Athena in `workgroup` (its default when None), as `lakebox.app.query`
    does in process: the same workgroup check, the same failure text, the same rows and types."""
    if not up.workgroup:
        raise LakeboxError("this lakebox up did not record its Athena workgroup: restart it")
    athena = AthenaOnEndpoint(up.endpoint, up.region or "us-east-1")
    try:
        chosen = workgroup or up.workgroup
        try:
            started = athena.call("StartQueryExecution", {"QueryString": sql, "WorkGroup": chosen})
        except LakeboxError:  # the workgroups are listed only to name them when the one asked for is not there
            known = [wg["Name"] for wg in athena.call("ListWorkGroups", {})["WorkGroups"]]
            if chosen not in known:
                raise LakeboxError(f"unknown workgroup {chosen!r} (workgroups: {', '.join(sorted(known))})") from None
            raise
        execution_id = str(started["QueryExecutionId"])
        pause = 0.002
        while True:
            status = athena.call("GetQueryExecution", {"QueryExecutionId": execution_id})["QueryExecution"]["Status"]
            if status["State"] in _FINAL:
                break
            time.sleep(pause)
            pause = min(pause * 1.5, 0.1)
        if status["State"] != "SUCCEEDED":
            reason = status.get("StateChangeReason") or "unknown failure"
            raise QueryFailed(f"query {execution_id} {status['State']}: {reason}")
        typed = athena.call("GetQueryResults", {"QueryExecutionId": execution_id, "LakeboxTypedRows": True})
    finally:
        athena.close()
    result = typed["LakeboxTypedRows"]
    return QueryResult(
        columns=tuple(result["Columns"]),
        types=tuple(result["Types"]),
        rows=[tuple(decode_value(v) for v in row) for row in result["Rows"]],
        bytes_scanned=int(result["DataScannedInBytes"]),
        execution_id=execution_id,
        output_location=result.get("OutputLocation"),
    )

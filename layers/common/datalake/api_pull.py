"""Scheduled pull from the source HTTP API: what changed since the watermark, landed as one object per run."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

import msgspec
import requests
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, model_validator
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from datalake.aws import AwsClients, aws_error, error_code
from datalake.contracts import Delivery, delivered_by, get_dataset
from datalake.exceptions import TerminalError, TransientError, UnknownDatasetError
from datalake.landing import ENCODER, PartitionFile, upload
from datalake.settings import Settings

logger = logging.getLogger(__name__)

UTC = dt.UTC
CHANGE_FIELD = "updated_at"
"""The source API's change-tracking field: the watermark follows it; it is not part of the record landed."""
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_PAGES = 100_000


class PullStatus(StrEnum):
    """Outcome of one scheduled pull."""

    LANDED = "LANDED"
    PARTIAL = "PARTIAL"
    NO_NEW_RECORDS = "NO_NEW_RECORDS"


class PullResult(BaseModel):
    """What one run fetched and where it landed; the watermark moved only if `landing_key` was written."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    source: str
    dataset: str
    status: PullStatus
    records: int
    pages: int
    landing_key: str | None = None
    watermark_before: str | None = None
    watermark_after: str | None = None
    started_at: str
    finished_at: str


@dataclass(frozen=True)
class SourceApi:
    """How to reach the source API: base URL, bearer token, page size, per-request timeout and retry policy."""

    base_url: str
    token: str
    page_size: int = 500
    timeout_seconds: float = 10.0
    retries: int = 5
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 20.0

    def session(self) -> requests.Session:
        """A `requests` session that retries idempotent GETs on connection errors, 408, 429 and 5xx, with backoff."""
        retry = Retry(
            total=self.retries,
            connect=self.retries,
            read=self.retries,
            status=self.retries,
            backoff_factor=self.backoff_seconds,
            backoff_max=self.backoff_max_seconds,
            status_forcelist=TRANSIENT_STATUSES,
            allowed_methods=frozenset({"GET"}),
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        http = requests.Session()
        adapter = HTTPAdapter(max_retries=retry)
        http.mount("https://", adapter)
        http.mount("http://", adapter)
        http.headers.update({"Authorization": f"Bearer {self.token}", "Accept": "application/json"})
        return http


class PullDetail(BaseModel):
    """The schedule's input detail: which dataset to pull (the API resource and landing prefix).

    Without one, the dataset is the one the registry delivers by the API; the name must be a registered dataset
    that declares API delivery.
    """

    dataset: str | None = None
    attempt: str | None = None

    @model_validator(mode="after")
    def _pulled_dataset(self) -> PullDetail:
        if self.dataset is None:
            pulled = [d.name for d in delivered_by(Delivery.API)]
            if len(pulled) != 1:
                raise ValueError(f"name the dataset to pull: the registry delivers {pulled or 'none'} by the API")
            self.dataset = pulled[0]
            return self
        try:
            dataset = get_dataset(self.dataset)
        except UnknownDatasetError as exc:
            raise ValueError(str(exc)) from None
        if Delivery.API not in dataset.deliveries:
            raise ValueError(f"dataset {self.dataset!r} is not delivered by the source API")
        return self


class PullEvent(EventBridgeModel):
    """The scheduled event: an EventBridge-shaped input whose `time` is the scheduled time."""

    detail: PullDetail


SECRET_MAX_AGE_SECONDS = 300
"""How long the token read from Secrets Manager is reused across invocations (a rotation shows within minutes)."""


def source_api_from_secret(settings: Settings, secrets: SecretsProvider) -> SourceApi:
    """The source API of the settings, with its token from the Secrets Manager secret they name (cached briefly).

    Raises
    ------
    TerminalError
        When the secret cannot be read or holds no token.
    """
    name = settings.require("source_api_secret_name")
    try:
        secret = secrets.get(name, max_age=SECRET_MAX_AGE_SECONDS)
    except GetParameterError as exc:
        raise TerminalError(f"reading secret {name}: {exc}") from exc
    text = secret.decode() if isinstance(secret, bytes) else str(secret)
    return SourceApi(
        base_url=settings.require("source_api_base_url"),
        token=token_from_secret(text),
        page_size=settings.source_api_page_size,
        timeout_seconds=settings.source_api_timeout_seconds,
    )


def token_from_secret(secret: str) -> str:
    """The API token in a secret: the `token` field of a JSON secret, or the whole secret string."""
    text = secret.strip()
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TerminalError(f"the source API secret is not valid JSON: {exc.msg}") from exc
        token = document.get("token") if isinstance(document, dict) else None
        if not isinstance(token, str) or not token:
            raise TerminalError('the source API secret has no "token" field')
        return token
    if not text:
        raise TerminalError("the source API secret is empty")
    return text


class _Page(msgspec.Struct):
    items: list[Any]
    next_cursor: str | None = None


_PAGE = msgspec.json.Decoder(_Page, float_hook=Decimal)


def fetch_pages(http: requests.Session, api: SourceApi, resource: str, since: str | None) -> Iterator[list[Any]]:
    """Yield the items of each page of `GET <base>/<resource>?updated_since=&limit=&cursor=`.

    Raises
    ------
    TransientError
        The API stayed unreachable or kept answering 408, 429 or 5xx through every retry.
    TerminalError
        The API refused the credentials, answered another 4xx, sent a page that is not the expected JSON, or
        repeated a cursor.
    """
    url = f"{api.base_url.rstrip('/')}/{resource}"
    params: dict[str, str | int] = {"limit": api.page_size}
    if since:
        params["updated_since"] = since
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        try:
            response = http.get(url, params=params, timeout=(min(5.0, api.timeout_seconds), api.timeout_seconds))
        except requests.RequestException as exc:
            raise TransientError(f"GET {url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code in TRANSIENT_STATUSES:
            raise TransientError(f"GET {url}: HTTP {response.status_code} after {api.retries} retries")
        if response.status_code in (401, 403):
            raise TerminalError(f"GET {url}: HTTP {response.status_code}: the source API refused the credentials")
        if response.status_code != 200:
            raise TerminalError(f"GET {url}: HTTP {response.status_code}: {response.text[:200]}")
        try:
            page = _PAGE.decode(response.content)
        except msgspec.DecodeError as exc:
            raise TerminalError(f"GET {url}: unexpected page: {exc}") from exc
        yield page.items
        if not page.next_cursor:
            return
        if page.next_cursor in seen:
            raise TerminalError(f"GET {url}: the API repeated cursor {page.next_cursor!r}")
        seen.add(page.next_cursor)
        params["cursor"] = page.next_cursor
    raise TerminalError(f"GET {url}: more than {MAX_PAGES} pages in one run")


def _changed_at(item: Any) -> dt.datetime | None:
    value = item.get(CHANGE_FIELD) if isinstance(item, dict) else None
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


@dataclass
class _Landing:
    """The run's object, holding back the records of the latest change time until a later one arrives.

    When a run stops early, records sharing the last change time may continue on the next page; holding them back
    lets the watermark stop just before them, so the next run fetches them all.
    """

    file: PartitionFile
    records: int = 0
    latest: dt.datetime | None = None
    committed: dt.datetime | None = None
    held: list[bytes] = field(default_factory=list)

    def add(self, item: Any) -> None:
        changed = _changed_at(item)
        record = {k: v for k, v in item.items() if k != CHANGE_FIELD} if isinstance(item, dict) else item
        line = ENCODER.encode(record) + b"\n"
        if changed is None:
            self._write(line)
            return
        if self.latest is None or changed > self.latest:
            self.release()
            self.latest = changed
        elif changed < self.latest:
            self._write(line)
            return
        self.held.append(line)

    def _write(self, line: bytes) -> None:
        self.file.add(line)
        self.records += 1

    def release(self) -> None:
        """Write the held records: their change time is complete."""
        for line in self.held:
            self._write(line)
        self.held.clear()
        if self.latest is not None:
            self.committed = self.latest


def read_watermark(clients: AwsClients, table: str, source: str) -> str | None:
    """The source's watermark (ISO-8601), or None before its first successful run."""
    try:
        item = clients.dynamodb.Table(table).get_item(Key={"source": source}, ConsistentRead=True).get("Item")
    except ClientError as exc:
        raise aws_error(exc, f"reading the watermark of {source}") from exc
    value = item.get("watermark") if item else None
    return str(value) if value else None


def advance_watermark(
    clients: AwsClients, table: str, source: str, *, old: str | None, new: str, run_id: str, records: int, now: str
) -> None:
    """Move the watermark from `old` to `new`, only if no other run moved it meanwhile.

    Raises
    ------
    TerminalError
        The watermark is no longer `old` (another run advanced it): this run's object stays, its duplicates are
        removed downstream by the dataset key.
    """
    condition = "attribute_not_exists(#w)" if old is None else "#w = :old"
    values: dict[str, Any] = {":new": new, ":run": run_id, ":n": records, ":at": now}
    if old is not None:
        values[":old"] = old
    try:
        clients.dynamodb.Table(table).update_item(
            Key={"source": source},
            UpdateExpression="SET #w = :new, last_run_id = :run, last_records = :n, updated_at = :at",
            ConditionExpression=condition,
            ExpressionAttributeNames={"#w": "watermark"},
            ExpressionAttributeValues=values,
        )
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            raise TerminalError(f"the watermark of {source} moved during run {run_id}") from exc
        raise aws_error(exc, f"advancing the watermark of {source}") from exc


def run_id_for(scheduled_time: dt.datetime) -> str:
    """A run's id from its scheduled time (`20261123T020000Z`): retries of one scheduled run share it."""
    return scheduled_time.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def pull_to_landing(
    run_id: str,
    *,
    dataset: str,
    api: SourceApi,
    settings: Settings,
    clients: AwsClients,
    http: requests.Session | None = None,
    deadline: float | None = None,
    now: dt.datetime | None = None,
) -> PullResult:
    """Fetch what changed at the source since the watermark and land it as `<dataset>/api/<run_id>.jsonl.gz`.

    The watermark (in the watermarks table, keyed `<dataset>-api`) advances to the latest change time landed, and
    only after the object is written; a run that fails anywhere leaves it where it was, so the next run fetches the
    same records again.

    Parameters
    ----------
    run_id
        The run's id; the landing key derives from it, so a retried run overwrites its own object.
    dataset
        The dataset pulled: the API resource and the landing prefix.
    api
        The source API and its credentials.
    settings
        The landing bucket, the watermarks table and the gzip level.
    clients
        AWS clients.
    http
        The HTTP session (defaults to `api.session()`).
    deadline
        A `time.monotonic()` value after which no further page is requested; what was fetched is landed and the
        watermark stops before the records that may continue on the next page.
    now
        The run time (for tests).

    Returns
    -------
    PullResult
        What was fetched and landed, and the watermark before and after.
    """
    started = now or dt.datetime.now(UTC)
    bucket = settings.require("landing_bucket")
    table = settings.require("watermarks_table")
    source = f"{dataset}-api"
    before = read_watermark(clients, table, source)
    key = f"{dataset}/api/{run_id}.jsonl.gz"
    landing = _Landing(PartitionFile(key, settings.gzip_level))
    pages = 0
    complete = True
    session = http or api.session()
    try:
        for items in fetch_pages(session, api, dataset, before):
            pages += 1
            for item in items:
                landing.add(item)
            if deadline is not None and time.monotonic() > deadline:
                complete = False
                break
        if complete or landing.records == 0:
            landing.release()
    except (TransientError, TerminalError):
        landing.file.discard()
        raise
    finally:
        if http is None:
            session.close()
    after = landing.committed.isoformat() if landing.committed else before
    base = {"run_id": run_id, "source": source, "dataset": dataset, "pages": pages, "watermark_before": before}
    if landing.records == 0:
        landing.file.discard()
        finished = dt.datetime.now(UTC).isoformat()
        status = PullStatus.NO_NEW_RECORDS
        return PullResult(
            **base,
            status=status,
            records=0,
            watermark_after=before,
            started_at=started.isoformat(),
            finished_at=finished,
        )
    upload(clients, bucket, landing.file)
    finished = dt.datetime.now(UTC).isoformat()
    if after is not None and after != before:
        advance_watermark(
            clients, table, source, old=before, new=after, run_id=run_id, records=landing.records, now=finished
        )
    status = PullStatus.LANDED if complete else PullStatus.PARTIAL
    logger.info("run %s landed %d records at %s; watermark %s -> %s", run_id, landing.records, key, before, after)
    return PullResult(
        **base,
        status=status,
        records=landing.records,
        landing_key=key,
        watermark_after=after,
        started_at=started.isoformat(),
        finished_at=finished,
    )

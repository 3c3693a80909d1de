"""Scheduled API pull: paginated, retried, landed as one object; the watermark moves only after the write."""

from __future__ import annotations

import datetime as dt
import gzip
import importlib.util
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from moto import mock_aws

from datalake.api_pull import PullStatus, SourceApi, pull_to_landing, run_id_for, token_from_secret
from datalake.aws import AwsClients
from datalake.exceptions import TerminalError, TransientError
from datalake.settings import Settings
from lakebox.app.sample import SampleSpec
from lakebox.app.source_api import SourceApiServer, sample_sales, serve
from tests.conftest import ROOT, load_event

SPEC = SampleSpec(seed=5)


@dataclass
class Lake:
    settings: Settings
    clients: AwsClients
    api: SourceApiServer

    def source(self, **overrides: Any) -> SourceApi:
        options: dict[str, Any] = {
            "base_url": self.api.url,
            "token": self.api.token,
            "page_size": 100,
            "backoff_seconds": 0.01,
            "timeout_seconds": 5.0,
        }
        return SourceApi(**(options | overrides))

    def pull(self, run_id: str, **kwargs: Any) -> Any:
        api = kwargs.pop("api", None) or self.source()
        return pull_to_landing(run_id, dataset="sales", api=api, settings=self.settings, clients=self.clients, **kwargs)

    def watermark(self) -> str | None:
        item = self.clients.dynamodb.Table("watermarks").get_item(Key={"source": "sales-api"}).get("Item")
        return str(item["watermark"]) if item else None

    def landed(self, key: str) -> list[dict[str, Any]]:
        body = self.clients.s3.get_object(Bucket="landing", Key=key)["Body"].read()
        return [json.loads(line) for line in gzip.decompress(body).splitlines()]

    def object_keys(self) -> list[str]:
        return sorted(o["Key"] for o in self.clients.s3.list_objects_v2(Bucket="landing").get("Contents", []))


@pytest.fixture
def lake() -> Iterator[Lake]:
    with mock_aws(), serve(sample_sales(SPEC, 450)) as api:
        session = boto3.Session(region_name="us-east-1")
        session.client("s3").create_bucket(Bucket="landing")
        session.client("dynamodb").create_table(
            TableName="watermarks",
            KeySchema=[{"AttributeName": "source", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "source", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        settings = Settings(landing_bucket="landing", watermarks_table="watermarks")
        yield Lake(settings, AwsClients.from_session(session), api)


def test_first_pull_lands_every_page_as_one_object_and_sets_the_watermark(lake: Lake) -> None:
    # GIVEN a source holding 450 sales (a few unparsable lines left out), pages of 100
    expected = lake.api.records
    # WHEN the first scheduled run pulls
    result = lake.pull("20261102T020000Z")
    # THEN every record lands in one object, without the source's change-tracking field
    assert (result.status, result.records, result.pages) == (PullStatus.LANDED, expected, -(-expected // 100))
    assert result.landing_key == "sales/api/20261102T020000Z.jsonl.gz" and lake.object_keys() == [result.landing_key]
    records = lake.landed(result.landing_key)
    assert len(records) == expected and all("updated_at" not in r for r in records)
    # AND the watermark is the latest change time landed
    latest = max(dt.datetime.fromisoformat(r["updated_at"]) for r in sample_sales(SPEC, 450))
    assert lake.watermark() == latest.isoformat() == result.watermark_after


def test_the_next_pull_fetches_only_what_changed_since(lake: Lake) -> None:
    lake.pull("run-1")
    later = SampleSpec(seed=5, end=SPEC.end + dt.timedelta(days=1))
    fresh = [r for r in sample_sales(later, 40, start=10_000) if r["updated_at"] > "2026-11-01T00:00:00.000000Z"]
    lake.api.add(fresh)
    result = lake.pull("run-2")
    assert result.records == len(fresh) > 0
    assert {r["transaction_id"] for r in lake.landed("sales/api/run-2.jsonl.gz")} == {
        r["transaction_id"] for r in fresh
    }
    nothing = lake.pull("run-3")
    assert (nothing.status, nothing.records, nothing.landing_key) == (PullStatus.NO_NEW_RECORDS, 0, None)
    assert lake.object_keys() == ["sales/api/run-1.jsonl.gz", "sales/api/run-2.jsonl.gz"]


def test_the_watermark_does_not_move_when_the_landing_write_fails(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the landing bucket throttling every write
    original = BaseClient._make_api_call

    def throttled(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if operation == "PutObject":
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "injected"}}, operation)
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", throttled)
    # WHEN a run pulls
    with pytest.raises(TransientError, match="SlowDown"):
        lake.pull("run-1")
    # THEN nothing landed and the watermark was not set
    monkeypatch.setattr(BaseClient, "_make_api_call", original)
    assert lake.object_keys() == [] and lake.watermark() is None
    # AND the next run fetches the same records again
    assert lake.pull("run-2").records == lake.api.records


def test_transient_api_errors_are_retried_with_backoff(lake: Lake) -> None:
    lake.api.fail_next(3, status=503)
    started = time.monotonic()
    result = lake.pull("run-1")
    assert result.records == lake.api.records
    assert lake.api.requests == result.pages + 3
    assert time.monotonic() - started >= 0.01 + 0.02


def test_an_api_that_stays_down_fails_the_run_and_keeps_the_watermark(lake: Lake) -> None:
    lake.pull("run-1")
    before = lake.watermark()
    lake.api.fail_next(10, status=502)
    with pytest.raises(TransientError, match="HTTP 502"):
        lake.pull("run-2", api=lake.source(retries=2))
    assert lake.watermark() == before and lake.object_keys() == ["sales/api/run-1.jsonl.gz"]


def test_rejected_credentials_are_terminal(lake: Lake) -> None:
    with pytest.raises(TerminalError, match="refused the credentials"):
        lake.pull("run-1", api=lake.source(token="wrong"))
    assert lake.watermark() is None


def test_an_unreachable_api_is_transient(lake: Lake) -> None:
    api = SourceApi("http://127.0.0.1:9", "t", retries=1, backoff_seconds=0.01, timeout_seconds=1.0)
    with pytest.raises(TransientError, match="ConnectionError"):
        lake.pull("run-1", api=api)


def test_a_run_stopped_by_its_deadline_lands_what_it_has_and_the_next_run_gets_the_rest(lake: Lake) -> None:
    # GIVEN records sharing change times across page boundaries
    same_time = [
        {**r, "updated_at": "2026-10-31T12:00:00.000000Z", "transaction_id": f"TSAME{i:03d}"}
        for i, r in enumerate(sample_sales(SPEC, 30, start=20_000))
    ]
    lake.api.add(same_time)
    source_ids = sorted(str(r["transaction_id"]) for r in [*sample_sales(SPEC, 450), *same_time])
    # WHEN a run must stop after its first page, and the next one runs to the end
    first = lake.pull("run-1", deadline=time.monotonic() - 1, api=lake.source(page_size=60))
    second = lake.pull("run-2", api=lake.source(page_size=60))
    # THEN the first is partial, and together the runs land every record exactly once
    assert first.status is PullStatus.PARTIAL and 0 < first.records < 60
    ids = sorted(r["transaction_id"] for key in lake.object_keys() for r in lake.landed(key))
    assert ids == source_ids
    assert second.watermark_after is not None and second.watermark_after > (first.watermark_after or "")


@pytest.mark.parametrize(("secret", "token"), [('{"token": "abc"}', "abc"), ("  plain-token\n", "plain-token")])
def test_the_token_is_read_from_a_json_or_plain_secret(secret: str, token: str) -> None:
    assert token_from_secret(secret) == token


@pytest.mark.parametrize("secret", ['{"user": "x"}', "", "{not json"])
def test_a_secret_without_a_token_is_terminal(secret: str) -> None:
    with pytest.raises(TerminalError):
        token_from_secret(secret)


def test_the_run_id_is_the_scheduled_time_in_utc() -> None:
    moment = dt.datetime(2026, 11, 2, 3, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert run_id_for(moment) == "20261102T020000Z"


# ---------------------------------------------------------------------------------------------------- handler
def test_handler_pulls_with_the_secret_and_names_the_run_by_the_scheduled_time(
    lake: Lake, monkeypatch: pytest.MonkeyPatch, lambda_context: Any
) -> None:
    # GIVEN the secret in Secrets Manager and the handler configured as the template configures it
    lake.clients.session.client("secretsmanager").create_secret(
        Name="datalake/source-api", SecretString=json.dumps({"token": lake.api.token})
    )
    for name, value in {
        "DL_LANDING_BUCKET": "landing",
        "DL_WATERMARKS_TABLE": "watermarks",
        "DL_SOURCE_API_BASE_URL": lake.api.url,
        "DL_SOURCE_API_SECRET_NAME": "datalake/source-api",
        "POWERTOOLS_SERVICE_NAME": "ingest_api",
    }.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("ingest_api_app", ROOT / "functions/ingest_api/app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "ingest_api_app", module)
    spec.loader.exec_module(module)
    # WHEN the sample scheduled event arrives
    result = module.lambda_handler(load_event("ingest_api/scheduled_pull"), lambda_context)
    # THEN the run is named by its scheduled time and lands everything
    assert result["landing_key"] == "sales/api/20261102T020000Z.jsonl.gz"
    assert result["records"] == lake.api.records and result["status"] == "LANDED"


def test_the_pulled_dataset_comes_from_the_registry_and_must_be_delivered_by_the_api() -> None:
    from pydantic import ValidationError

    from datalake.api_pull import PullDetail

    # GIVEN a schedule's detail that names no dataset THEN it is the one the registry delivers by the API
    assert PullDetail().dataset == "sales"
    # AND a dataset that does not arrive by the API, or is unknown, is refused with its reason
    with pytest.raises(ValidationError, match="not delivered by the source API"):
        PullDetail(dataset="products")
    with pytest.raises(ValidationError, match="unknown dataset"):
        PullDetail(dataset="nope")

"""The engine's AWS clients: one session, each client built once and only when first used."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from moto import mock_aws

from datalake.aws import AwsClients


def _counting_session() -> tuple[boto3.Session, list[str]]:
    session = boto3.Session(region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    built: list[str] = []

    def record(event_name: str, **_: Any) -> None:
        built.append(event_name.rsplit(".", 1)[-1])

    session.events.register("creating-client-class", record)
    return session, built


def test_no_client_is_built_until_it_is_used() -> None:
    session, built = _counting_session()
    clients = AwsClients.from_session(session)
    assert built == []
    with mock_aws():
        session.client("dynamodb").create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        built.clear()
        clients.dynamodb.Table("t").put_item(Item={"k": "a"})
        assert clients.dynamodb.Table("t").get_item(Key={"k": "a"})["Item"] == {"k": "a"}
    assert built == ["dynamodb"]


def test_each_client_is_built_once_even_when_threads_ask_together() -> None:
    session, built = _counting_session()
    clients = AwsClients.from_session(session)
    with ThreadPoolExecutor(8) as pool:
        s3s = set(map(id, pool.map(lambda _: clients.s3, range(32))))
        events = set(map(id, pool.map(lambda _: clients.events, range(32))))
    assert len(s3s) == 1 and len(events) == 1
    assert sorted(built) == ["eventbridge", "s3"]

"""Partition projection and TABLESAMPLE on the local Athena, against a moto server: a projected table is read from
the partitions its `projection.*` properties define (dates, integers, enums, injected), never as 0 rows."""

from __future__ import annotations

import io
import logging
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from moto.server import ThreadedMotoServer

from lakebox.services.athena import AthenaEngine, QueryFailedError

pytestmark = pytest.mark.integration

DATABASE = "lake"
BUCKET = "data"


@dataclass
class Lake:
    endpoint: str
    session: boto3.Session
    engine: AthenaEngine


def _put(s3: object, key: str, values: list[int]) -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"amount": pa.array(values, pa.int64())}), buffer)
    s3.put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())  # type: ignore[attr-defined]


def _table(glue: object, name: str, keys: list[tuple[str, str]], location: str, parameters: dict[str, str]) -> None:
    glue.create_table(  # type: ignore[attr-defined]
        DatabaseName=DATABASE,
        TableInput={
            "Name": name,
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": "parquet", **parameters},
            "PartitionKeys": [{"Name": n, "Type": t} for n, t in keys],
            "StorageDescriptor": {
                "Columns": [{"Name": "amount", "Type": "bigint"}],
                "Location": location,
                "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
            },
        },
    )


@pytest.fixture(scope="module")
def lake() -> Iterator[Lake]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # moto keeps one state per process, shared by every server in it: start from an empty account
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10).close()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", endpoint)
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        s3, glue = session.client("s3"), session.client("glue")
        for bucket in (BUCKET, "results"):
            s3.create_bucket(Bucket=bucket)
        glue.create_database(DatabaseInput={"Name": DATABASE})
        # dates in a custom layout, with the date as a DATE key
        for day, values in (("2026/11/01", [1, 2]), ("2026/11/02", [10]), ("2026/11/05", [100])):
            _put(s3, f"events/{day}/part-0.parquet", values)
        _table(
            glue,
            "events",
            [("dt", "date")],
            f"s3://{BUCKET}/events/",
            {
                "projection.enabled": "true",
                "projection.dt.type": "date",
                "projection.dt.format": "yyyy/MM/dd",
                "projection.dt.range": "2026/11/01,2026/11/30",
                "projection.dt.interval": "1",
                "projection.dt.interval.unit": "DAYS",
                "storage.location.template": f"s3://{BUCKET}/events/${{dt}}/",
            },
        )
        # integers zero-padded and an enum, in the Hive layout; no partition is in the catalog
        for shard, region, values in (("01", "eu", [5]), ("02", "eu", [6]), ("02", "us", [7]), ("09", "us", [8])):
            _put(s3, f"shards/shard={shard}/region={region}/part-0.parquet", values)
        _table(
            glue,
            "shards",
            [("shard", "string"), ("region", "string")],
            f"s3://{BUCKET}/shards/",
            {
                "projection.enabled": "true",
                "projection.shard.type": "integer",
                "projection.shard.range": "1,3",
                "projection.shard.digits": "2",
                "projection.region.type": "enum",
                "projection.region.values": "eu,us",
            },
        )
        # an injected key: values come from the query
        for device, values in (("a1", [3]), ("b2", [4, 4])):
            _put(s3, f"devices/{device}/part-0.parquet", values)
        _table(
            glue,
            "devices",
            [("device", "string")],
            f"s3://{BUCKET}/devices/",
            {
                "projection.enabled": "true",
                "projection.device.type": "injected",
                "storage.location.template": f"s3://{BUCKET}/devices/${{device}}",
            },
        )
        # a thousand rows to sample
        _put(s3, "numbers/part-0.parquet", list(range(1000)))
        _table(glue, "numbers", [], f"s3://{BUCKET}/numbers/", {})
        engine = AthenaEngine(session, default_output="s3://results/athena/", default_database=DATABASE)
        yield Lake(endpoint, session, engine)
        engine.close()
    server.stop()


@pytest.fixture(autouse=True)
def _endpoint(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", lake.endpoint)


def test_date_projection_reads_the_template_locations(lake: Lake) -> None:
    # GIVEN a table with projection.enabled over dates and no partition in the catalog
    # WHEN it is queried
    result = lake.engine.query("SELECT dt, sum(amount) FROM events GROUP BY dt ORDER BY dt")
    # THEN every projected day with files is read, typed as the DATE key
    assert [(str(d), n) for d, n in result.rows] == [("2026-11-01", 3), ("2026-11-02", 10), ("2026-11-05", 100)]


def test_date_projection_prunes_on_the_key(lake: Lake) -> None:
    everything = lake.engine.query("SELECT sum(amount) FROM events")
    one_day = lake.engine.query("SELECT sum(amount) FROM events WHERE dt = DATE '2026-11-02'")
    assert one_day.rows == [(10,)]
    assert 0 < one_day.bytes_scanned < everything.bytes_scanned


def test_integer_and_enum_projection_stays_inside_its_range(lake: Lake) -> None:
    # GIVEN shard 09 lies outside the projected range 1..3
    result = lake.engine.query("SELECT shard, region, amount FROM shards ORDER BY amount")
    # THEN it is not read, as Athena does not read it
    assert result.rows == [("01", "eu", 5), ("02", "eu", 6), ("02", "us", 7)]


def test_injected_projection_takes_its_values_from_the_where_clause(lake: Lake) -> None:
    result = lake.engine.query("SELECT sum(amount) FROM devices WHERE device IN ('a1', 'b2')")
    assert result.rows == [(11,)]


def test_injected_projection_without_a_value_fails_as_athena_does(lake: Lake) -> None:
    with pytest.raises(QueryFailedError, match="CONSTRAINT_VIOLATION: For the injected projected partition column"):
        lake.engine.query("SELECT count(*) FROM devices")


@pytest.mark.parametrize("method", ["BERNOULLI", "SYSTEM"])
def test_tablesample_samples_instead_of_reading_everything(lake: Lake, method: str) -> None:
    # GIVEN a thousand rows
    # WHEN sampled at 0, 100 and 20 percent
    none = lake.engine.query(f"SELECT count(*) FROM numbers TABLESAMPLE {method} (0)")
    every = lake.engine.query(f"SELECT count(*) FROM numbers TABLESAMPLE {method} (100)")
    some = lake.engine.query(f"SELECT count(*) FROM numbers TABLESAMPLE {method} (20)")
    # THEN the counts follow the percentage (SYSTEM samples whole blocks, as Athena samples whole splits)
    assert none.rows == [(0,)]
    assert every.rows == [(1000,)]
    if method == "BERNOULLI":
        assert 50 < some.rows[0][0] < 400

"""The columnar path changes no verdict, reason or landed value: the per-record path (pydantic the judge) agrees."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import json
import os
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Annotated, Any, Literal
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from pydantic import Field, StringConstraints

from datalake import ingest
from datalake.columnar import blocks, columnar_plan, newline_positions
from datalake.contracts import REGISTRY, get_dataset
from datalake.contracts.base import Contract, Dataset, EventTime
from datalake.ingest import ObjectRef, _Sink
from datalake.readers import iter_line_batches
from datalake.validation import RecordValidator, validator_for
from lakebox.app.sample import SampleSpec, sales_lines
from tests.unit.test_ingest import Lake, _create_lake
from tests.unit.test_validation import BASE as SALE

NOW = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)
MAX_LINE = 4096


def _outputs(sink: _Sink) -> tuple[int, dict[dt.date, Counter[bytes]], Counter[bytes]]:
    """What a sink holds: records read, landed lines per event date, quarantined lines (order within a file aside)."""
    landed = {
        day: Counter(gzip.decompress(part.finish().read()).splitlines()) for day, part in sink.landed_files.items()
    }
    quarantined = (
        Counter(gzip.decompress(sink.quarantine_file.finish().read()).splitlines())
        if sink.quarantine_file
        else Counter()
    )
    return sink.read, landed, quarantined


def _sink(dataset: Dataset) -> _Sink:
    ref = ObjectRef("landing", f"{dataset.name}/f.jsonl", "v1", "etag", None)
    return _Sink(ref, dataset, NOW, 1, f"_originals/{dataset.name}/f.jsonl")


def _both_paths(data: bytes, dataset: Dataset, chunk: int = 1 << 20) -> tuple[Any, Any]:
    """Route `data` through the columnar path and through the per-record path alone; return both outcomes."""
    validator = validator_for(dataset)
    columnar, per_record = _sink(dataset), _sink(dataset)
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    ingest._read_json_lines(iter(pieces), validator, columnar, MAX_LINE)
    ingest._judge_lines(iter_line_batches(iter(pieces), MAX_LINE), 0, validator, per_record, MAX_LINE)
    return _outputs(columnar), _outputs(per_record)


json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(
        [
            "2026-11-01T10:00:00Z",
            "2026-11-01T10:00:00",
            "2026-02-30T10:00:00Z",
            "2026-11-01T23:59:60Z",
            "0001-01-01T00:30:00+01:00",
            "9999-12-31T23:00:00-01:00",
            "2026-11-01T10:00:00.1234567Z",
            "2026-11-01T10:00:00-17:59",
            "2026-11-01",
            "12.345",
            "0.01",
            "1e3",
            "+12",
            "USD",
            "Ünïcödé",
            "T\u00e91",
        ]
    ),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
)
raw_numbers = st.sampled_from(
    [b"1e3", b"12.340", b"12.30", b"0.00", b"-0.0", b"9999999999.99", b"99999999999.99", b"1.2300000000000000000001"]
)


@st.composite
def sale_lines(draw: st.DrawFn) -> bytes:
    """One line of a sales file: valid, or broken in one of the ways producers break them."""
    record = dict(SALE, transaction_id=f"T{draw(st.integers(0, 10**6))}")
    record["event_time"] = draw(
        st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2030, 1, 1)).map(
            lambda t: t.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z")
        )
    )
    kind = draw(st.sampled_from(["valid", "valid", "valid", "field", "missing", "extra", "raw", "text", "escape"]))
    if kind == "field":
        record[draw(st.sampled_from(sorted(SALE)))] = draw(json_values)
    elif kind == "missing":
        record.pop(draw(st.sampled_from(sorted(SALE))))
    elif kind == "extra":
        record[draw(st.sampled_from(["note", "_line", "unit_price "]))] = draw(json_values)
    elif kind == "raw":
        text = json.dumps(record).replace('"unit_price": 19.99', '"unit_price": ' + draw(raw_numbers).decode())
        return text.encode()
    elif kind == "text":
        return draw(
            st.sampled_from(
                [
                    b"",
                    b"   ",
                    b"not json",
                    b"{",
                    b"[1, 2]",
                    b"null",
                    json.dumps(record).encode() + b"  ",
                    json.dumps(record).encode() + json.dumps(record).encode(),
                    json.dumps(record).encode().replace(b'"T', b'"\xffT', 1),
                    json.dumps(record).encode().replace(b'"north"', b'"north"\r', 1),
                    json.dumps({**record, "transaction_id": "T1"}).encode().replace(b"}", b', "transaction_id": "T2"}'),
                ]
            )
        )
    elif kind == "escape":
        return json.dumps(record, ensure_ascii=True).replace('"T', '"\\u0054', 1).encode()
    return json.dumps(record, ensure_ascii=draw(st.booleans())).encode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(sale_lines(), max_size=40), final_newline=st.booleans(), split=st.booleans())
def test_columnar_and_per_record_paths_agree_on_blocks_mixing_good_and_bad_rows(
    lines: list[bytes], final_newline: bool, split: bool
) -> None:
    # GIVEN a file of sales lines, valid and broken (types, ranges, unknown fields, spellings, blank lines, bytes)
    data = b"\n".join(lines) + (b"\n" if final_newline else b"")
    # WHEN it is judged by the columnar path (refused blocks split down to single lines, when `split`) and by the
    # per-record path alone
    with mock.patch.object(ingest, "PER_RECORD_LINES", 1 if split else 64), mock.patch.object(ingest, "SPLIT_WAYS", 2):
        columnar, per_record = _both_paths(data, get_dataset("sales"), chunk=97)
    # THEN the same records are read, the same lines land on the same dates, the same reasons are quarantined
    assert columnar == per_record


def test_a_clean_file_lands_through_the_columnar_path_exactly_as_the_per_record_path_lands_it() -> None:
    # GIVEN a generated sales file with no defect, over several blocks
    data = b"\n".join(line for line, _ in sales_lines(SampleSpec(sales=3_000, bad_rate=0.0, duplicate_rate=0)))
    # WHEN both paths judge it, the columnar one in blocks of 64 KiB
    with mock.patch.object(ingest, "blocks", lambda chunks, max_line: blocks(chunks, max_line, 64 * 1024)):
        columnar, per_record = _both_paths(data, get_dataset("sales"), chunk=10_000)
    # THEN every record landed, byte for byte as the per-record path lands it
    assert columnar == per_record
    assert columnar[0] == 3_000 and sum(sum(c.values()) for c in columnar[1].values()) == 3_000


def test_generated_defects_are_judged_as_the_contract_judges_them() -> None:
    # GIVEN the sample generator's defects, one in five lines
    data = b"\n".join(line for line, _ in sales_lines(SampleSpec(sales=2_000, bad_rate=0.2)))
    # WHEN both paths judge them THEN they agree, and some landed and some were quarantined
    columnar, per_record = _both_paths(data, get_dataset("sales"))
    assert columnar == per_record
    assert columnar[1] and columnar[2]


@pytest.mark.parametrize(
    "data",
    [b"", b"\n", b"\xef\xbb\xbf", b"\n\n\n", b"\xef\xbb\xbf" + json.dumps(SALE).encode() + b"\r\n"],
    ids=["empty", "newline", "bom-only", "blank-lines", "bom-crlf"],
)
def test_empty_and_blank_files_agree(data: bytes) -> None:
    columnar, per_record = _both_paths(data, get_dataset("sales"))
    assert columnar == per_record


def test_an_oversized_line_is_quarantined_and_the_lines_after_it_still_land() -> None:
    # GIVEN a line over the cap between valid lines, in blocks smaller than the line
    big = json.dumps(SALE | {"store_id": "S" * 10_000}).encode()
    data = b"\n".join([json.dumps(SALE).encode(), big, json.dumps(SALE | {"transaction_id": "T2"}).encode()])
    with mock.patch.object(ingest, "blocks", lambda chunks, max_line: blocks(chunks, max_line, 1024)):
        columnar, per_record = _both_paths(data, get_dataset("sales"), chunk=512)
    # THEN both paths agree: two landed, the big one quarantined as too long
    assert columnar == per_record
    assert columnar[0] == 3 and b"line_too_long" in next(iter(columnar[2]))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registered_contract_maps_to_a_columnar_plan(name: str) -> None:
    assert columnar_plan(REGISTRY[name]) is not None


class Meter(Contract):
    """A contract of every type the columnar path maps, nullable and constrained."""

    meter_id: Annotated[str, StringConstraints(min_length=2, max_length=6, pattern=r"^M\d+$")]
    read_at: EventTime
    kwh: Annotated[Decimal, Field(ge=0, max_digits=8, decimal_places=3)]
    peak: Annotated[Decimal, Field(gt=0, max_digits=20, decimal_places=2)] | None = None
    phase: Literal[1, 2, 3]
    volts: Annotated[float, Field(gt=0, lt=1000)]
    count: Annotated[int, Field(ge=-5, le=2**62)]
    online: bool
    label: str | None = None
    fixed_at: EventTime | None = None


METER = Dataset(name="meters", contract=Meter, key=("meter_id",), event_time="read_at")
METER_BASE: dict[str, Any] = {
    "meter_id": "M1",
    "read_at": "2026-11-01T10:00:00.123456+05:30",
    "kwh": "12.5",
    "phase": 2,
    "volts": 230.0,
    "count": 7,
    "online": True,
}
meter_values = st.one_of(
    json_values,
    st.sampled_from(
        [1, 2, 3, 4, "2", 0, -5, -6, 2**62, 2**62 + 1, 2**63, 1.0, 999.9999, 1000, "M12345", "M123456", "M", "Mx"]
    ),
    st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**6), max_value=10**6).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-(10**19), max_value=10**19).map(float),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(st.sampled_from([*METER_BASE, "peak", "label", "fixed_at", "other"]), meter_values), max_size=12
    )
)
def test_columnar_and_per_record_paths_agree_on_every_mapped_type(rows: list[tuple[str, Any]]) -> None:
    # GIVEN meter readings, each with one field set to an arbitrary value (big ints, nulls, unicode, decimals)
    data = b"".join(json.dumps(METER_BASE | {field: value}).encode() + b"\n" for field, value in rows)
    # WHEN both paths judge them THEN they agree
    with mock.patch.object(ingest, "PER_RECORD_LINES", 1):
        columnar, per_record = _both_paths(data, METER)
    # (the per-record fast path leaves bounds other than `> 0` to pydantic, which re-encodes what it accepts; the
    # columnar path checks them and lands canonical text as received: the same values either way)
    assert _values(columnar, Meter) == _values(per_record, Meter)


def _values(outcome: Any, contract: type[Contract]) -> Any:
    """An outcome with each landed line read back as the contract's values (`0.0` equals `0`) and its lineage."""
    read, landed, quarantined = outcome

    def value(line: bytes) -> tuple[tuple[tuple[str, Any], ...], tuple[tuple[str, Any], ...]]:
        document = json.loads(line, parse_float=Decimal)
        lineage = tuple(sorted((k, v) for k, v in document.items() if k.startswith("_")))
        record = {k: v for k, v in document.items() if not k.startswith("_")}
        model = contract.model_validate(record, strict=False)
        return tuple(sorted(model.model_dump().items())), lineage

    values = {day: Counter(value(line) for line in lines.elements()) for day, lines in landed.items()}
    return read, values, quarantined


def test_the_columnar_checks_pass_the_canonical_spellings_of_every_mapped_type() -> None:
    # GIVEN canonical readings WHEN the plan judges them THEN every row passes without the per-record path
    plan = columnar_plan(METER)
    assert plan is not None
    rows = [METER_BASE, METER_BASE | {"peak": 1.25, "label": "é", "fixed_at": None, "kwh": 0}]
    block = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    verdict = plan.judge(block, newline_positions(block))
    assert verdict is not None and verdict.ok.tolist() == [True, True]
    assert verdict.days.tolist() == [(dt.date(2026, 11, 1) - dt.date(1970, 1, 1)).days] * 2
    # AND a spelling the contract accepts but would not land as received is left to the per-record path
    exponent = json.dumps(METER_BASE).replace('"kwh": "12.5"', '"kwh": 1e3').encode()
    odd = plan.judge(exponent + b"\n", newline_positions(exponent + b"\n"))
    assert odd is not None and odd.ok.tolist() == [False]
    assert RecordValidator(METER).check_json(exponent).ok


@pytest.fixture
def lake() -> Iterator[Lake]:
    with mock_aws():
        yield _create_lake()


def _landed(lake: Lake, manifest: Any) -> list[Counter[str]]:
    """The raw and quarantine lines of an ingestion, less the lineage naming its object version."""

    def lines(keys: list[str]) -> Counter[str]:
        found: Counter[str] = Counter()
        for key in keys:
            body = lake.clients.s3.get_object(Bucket="raw", Key=key)["Body"].read()
            for line in gzip.decompress(body).splitlines():
                record = {k: v for k, v in json.loads(line).items() if k not in ("_source_version", "_original_key")}
                found[json.dumps(record, sort_keys=True)] += 1
        return found

    return [lines(manifest.output_keys), lines(manifest.quarantine_keys)]


@pytest.mark.parametrize(
    ("key", "body", "status"),
    [
        ("sales/empty.jsonl", b"", "SKIPPED"),
        ("sales/blank.jsonl", b"\n \n", "SKIPPED"),
        ("sales/header.csv", (",".join(SALE) + "\r\n").encode(), "SKIPPED"),
        ("sales/mixed.jsonl", None, "PARTIAL"),
        ("sales/mixed.jsonl.gz", None, "PARTIAL"),
    ],
    ids=["empty", "blank", "csv-header-only", "mixed", "mixed-gzip"],
)
def test_an_object_lands_the_same_through_either_path(
    lake: Lake, key: str, body: bytes | None, status: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an object: empty, blank, a CSV header alone, or sample sales with one defect in ten
    lines = b"\n".join(line for line, _ in sales_lines(SampleSpec(sales=1_500, bad_rate=0.1)))
    if body is None:
        body = gzip.compress(lines, mtime=0) if key.endswith(".gz") else lines
    # WHEN it is ingested with the columnar path, and again (a new version, other bytes) with the per-record path
    columnar = lake.ingest(key, body)
    monkeypatch.setattr(ingest, "columnar_plan", lambda dataset: None)
    again = gzip.compress(lines, mtime=1) if key.endswith(".gz") else body + b"\n"
    per_record = lake.ingest(key, again)
    # THEN the manifests agree on status and counts, and the same lines land and are quarantined
    assert columnar.status == per_record.status == status
    counts = ("records_read", "records_landed", "records_quarantined", "event_dates")
    assert [getattr(columnar, c) for c in counts] == [getattr(per_record, c) for c in counts]
    assert _landed(lake, columnar) == _landed(lake, per_record)


def test_the_timestamp_pattern_takes_the_years_the_fast_path_takes_and_no_other() -> None:
    # GIVEN the columnar timestamp pattern (RE2 syntax, which Python's `re` reads the same way here)
    import re

    from datalake.columnar import TIME_PATTERN

    pattern = re.compile(TIME_PATTERN)
    # WHEN every year is tried THEN exactly 0002-9998 match (0000, 0001 and 9999 are left to the contract)
    years = [y for y in range(10_000) if pattern.match(f"{y:04d}-01-01T00:00:00Z")]
    assert (years[0], years[-1], len(years)) == (2, 9998, 9997)
    # AND the fields' ranges hold: no month 13, day 32, hour 24, second 60 or offset of 18 hours
    for text in ("2026-13-01T00:00:00Z", "2026-01-32T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T00:00:60Z"):
        assert pattern.match(text) is None, text
    assert pattern.match("2026-01-01T00:00:00+18:00") is None
    assert pattern.match("2026-01-01T00:00:00.123456-17:59")


def test_blocks_read_ahead_arrive_in_order_and_carry_the_readers_error() -> None:
    from datalake.columnar import prefetched
    from datalake.exceptions import ObjectRejectedError

    # GIVEN blocks read ahead by a thread WHEN they are consumed THEN they come in order, and stop at an open line
    assert list(prefetched(iter([b"a\n", b"b\n", b"c\n"]))) == [b"a\n", b"b\n", b"c\n"]
    rest = iter([b"a\n", b"open", b"never read\n"])
    assert list(prefetched(rest)) == [b"a\n", b"open"]
    assert list(rest) == [b"never read\n"]

    # AND an error of the reader (a gzip bomb found in the third block) is raised where the blocks are consumed
    def bomb() -> Iterator[bytes]:
        yield b"a\n"
        yield b"b\n"
        raise ObjectRejectedError("gzip bomb", "too large")

    seen = []
    with pytest.raises(ObjectRejectedError):
        for block in prefetched(bomb()):
            seen.append(block)
    assert seen == [b"a\n", b"b\n"]
    # AND a consumer that stops early does not leave the reader waiting
    endless = prefetched(iter([b"x\n"] * 1000))
    assert next(endless) == b"x\n"
    endless.close()


def test_an_object_rejected_mid_stream_is_quarantined_whole(lake: Lake) -> None:
    # GIVEN a gzip object that expands past the decompressed cap after some valid lines
    import dataclasses

    lines = b"".join(json.dumps(SALE | {"transaction_id": f"T{i}"}).encode() + b"\n" for i in range(20_000))
    settings = dataclasses.replace(lake, settings=lake.settings.model_copy(update={"max_decompressed_bytes": 1 << 20}))
    # WHEN it is ingested THEN the object is quarantined whole with its reason, nothing landed
    manifest = settings.ingest("sales/big.jsonl.gz", gzip.compress(lines))
    assert manifest.status == "QUARANTINED" and manifest.reason and "gzip bomb" in manifest.reason
    assert manifest.output_keys == []


def test_a_files_writer_thread_keeps_its_order_and_raises_its_error_in_the_caller() -> None:
    from datalake.landing import PartitionFile, Writer

    # GIVEN two files compressed on one writer thread, lines added one by one and as texts
    writer = Writer()
    first, second = PartitionFile("a.json.gz", 1, writer), PartitionFile("b.json.gz", 1, writer)
    first.add(b'{"n":1}\n')
    first.reserve(2)
    writer.submit(lambda: first.write_text(b'{"n":2}\n{"n":3}\n'))
    second.add_many([b'{"n":4}\n'])
    first.add(b'{"n":5}\n')
    # WHEN the files are finished THEN each holds its lines in the order given, and counts them
    assert gzip.decompress(first.finish().read()).splitlines() == [b'{"n":%d}' % n for n in (1, 2, 3, 5)]
    assert gzip.decompress(second.finish().read()) == b'{"n":4}\n'
    assert (first.records, second.records) == (4, 1)

    # AND an error raised on the writer's thread is raised in the caller, at the latest when the file is finished
    failing = Writer()
    part = PartitionFile("c.json.gz", 1, failing)

    def broken() -> None:
        raise OSError("no space left on device")

    failing.submit(broken)
    with pytest.raises(OSError, match="no space"):
        part.add_many([b"{}\n"] * 5000)  # a flush hands the lines to the writer, which reports what it raised
        part.finish()
    part.discard()


def test_output_objects_are_written_in_parallel_and_named_in_order() -> None:
    from datalake.aws import AwsClients
    from datalake.landing import SINGLE_PUT_BYTES, PartitionFile, upload_all

    with mock_aws():
        clients = AwsClients.from_session()
        clients.s3.create_bucket(Bucket="raw")
        # GIVEN small objects and one past the single-put size (random bytes do not compress)
        parts = [PartitionFile(f"k{n}.json.gz", 1) for n in range(5)]
        for n, part in enumerate(parts):
            part.add(b'{"n":%d}\n' % n)
        parts[2].add(os.urandom(SINGLE_PUT_BYTES + 1024) + b"\n")
        # WHEN they are written THEN every key comes back in the order given, each object whole
        assert upload_all(clients, "raw", parts) == [f"k{n}.json.gz" for n in range(5)]
        for n in range(5):
            body = gzip.decompress(clients.s3.get_object(Bucket="raw", Key=f"k{n}.json.gz")["Body"].read())
            assert body.startswith(b'{"n":%d}\n' % n)
        assert len(gzip.decompress(clients.s3.get_object(Bucket="raw", Key="k2.json.gz")["Body"].read())) > (
            SINGLE_PUT_BYTES
        )


def _incompressible(size: int) -> bytes:
    """Lines of random hex: gzip keeps about half their size, so a few MiB of them pass a part's size."""
    text = os.urandom(size // 2).hex().encode()
    return b"".join(text[i : i + 127] + b"\n" for i in range(0, len(text), 127))


def test_a_large_output_object_is_written_in_parts_while_it_is_built() -> None:
    from datalake.aws import AwsClients
    from datalake.landing import PART_BYTES, PartitionFile, PartUploads, upload_all

    with mock_aws():
        clients = AwsClients.from_session()
        clients.s3.create_bucket(Bucket="raw")
        parts = PartUploads(clients, "raw")
        part = PartitionFile("big.json.gz", 1, parts=parts)
        # GIVEN an output object whose compressed bytes pass a part's size while lines are still added
        first = _incompressible(3 * PART_BYTES)
        part.add_many(first.splitlines(keepends=True))
        part.reserve(0)  # hands the pending lines to the compressor
        parts.close()  # waits for the parts in flight
        # THEN its first part is written before the object is finished, and the object does not exist yet
        [upload] = clients.s3.list_multipart_uploads(Bucket="raw")["Uploads"]
        listed = clients.s3.list_parts(Bucket="raw", Key="big.json.gz", UploadId=upload["UploadId"])["Parts"]
        assert len(listed) >= 1 and all(p["Size"] >= PART_BYTES for p in listed)
        assert "Contents" not in clients.s3.list_objects_v2(Bucket="raw")
        # WHEN more lines follow and the object is written
        rest = b'{"n":1}\n'
        part.add(rest)
        assert upload_all(clients, "raw", [part]) == ["big.json.gz"]
        # THEN it holds every line in order, and no upload is left open
        body = clients.s3.get_object(Bucket="raw", Key="big.json.gz")["Body"].read()
        assert gzip.decompress(body) == first + rest
        assert "Uploads" not in clients.s3.list_multipart_uploads(Bucket="raw")
        part.discard()  # once written, discarding it changes nothing
        assert gzip.decompress(clients.s3.get_object(Bucket="raw", Key="big.json.gz")["Body"].read()) == first + rest


def test_a_discarded_streamed_object_leaves_no_upload_and_no_object() -> None:
    from datalake.aws import AwsClients
    from datalake.landing import PART_BYTES, PartitionFile, PartUploads, Writer

    with mock_aws():
        clients = AwsClients.from_session()
        clients.s3.create_bucket(Bucket="raw")
        # GIVEN an object whose first parts were written on the writer's thread
        parts, writer = PartUploads(clients, "raw"), Writer()
        part = PartitionFile("big.json.gz", 1, writer, parts)
        part.add_many(_incompressible(3 * PART_BYTES).splitlines(keepends=True))
        part.reserve(0)
        writer.submit(lambda: None)
        writer.submit(lambda: None)  # the flush before it has run
        assert part.streamed
        # WHEN it is discarded (a duplicate, a rejected object)
        part.discard()
        parts.close()
        # THEN its multipart upload is aborted and nothing was written
        assert "Uploads" not in clients.s3.list_multipart_uploads(Bucket="raw")
        assert "Contents" not in clients.s3.list_objects_v2(Bucket="raw")


def test_a_part_that_fails_is_raised_as_our_error_and_its_upload_aborted(monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.client import BaseClient

    from datalake.aws import AwsClients
    from datalake.exceptions import TransientError
    from datalake.landing import PART_BYTES, PartitionFile, PartUploads, upload_all

    real = BaseClient._make_api_call

    def slow_down(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if operation == "UploadPart" and params["PartNumber"] == 2:
            raise self.exceptions.ClientError({"Error": {"Code": "SlowDown", "Message": "slow down"}}, operation)
        return real(self, operation, params)

    with mock_aws():
        clients = AwsClients.from_session()
        clients.s3.create_bucket(Bucket="raw")
        # GIVEN an object of several parts, S3 throttling its second
        monkeypatch.setattr(BaseClient, "_make_api_call", slow_down)
        parts = PartUploads(clients, "raw")
        part = PartitionFile("big.json.gz", 1, parts=parts)
        part.add_many(_incompressible(5 * PART_BYTES).splitlines(keepends=True))
        # WHEN it is written THEN the failure is a retryable error naming the object, and no upload is left open
        with pytest.raises(TransientError, match=r"big\.json\.gz: SlowDown"):
            upload_all(clients, "raw", [part])
        parts.close()
        assert "Uploads" not in clients.s3.list_multipart_uploads(Bucket="raw")
        assert "Contents" not in clients.s3.list_objects_v2(Bucket="raw")


def test_an_ingestion_whose_objects_are_written_in_parts_lands_what_one_put_each_lands(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    import moto.s3.models

    from datalake import landing

    # GIVEN sample sales ingested with every object written whole at the end
    lines = b"\n".join(line for line, _ in sales_lines(SampleSpec(sales=8_000, bad_rate=0.05, days=1))) + b"\n"
    monkeypatch.setattr(landing, "PART_BYTES", 1 << 40)
    whole = lake.ingest("sales/whole.jsonl", lines)
    # WHEN the same lines (another object) are ingested with parts of 4 KiB, which S3 (here) then accepts
    monkeypatch.setattr(landing, "PART_BYTES", 4096)
    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", 4096)
    parted = lake.ingest("sales/parted.jsonl", lines + b"\n")
    # THEN the objects were written in parts, and the manifests and the landed and quarantined lines agree
    etags = [lake.clients.s3.head_object(Bucket="raw", Key=k)["ETag"] for k in parted.output_keys]
    assert any("-" in etag for etag in etags)
    counts = ("status", "records_read", "records_landed", "records_quarantined", "event_dates")
    assert [getattr(whole, c) for c in counts] == [getattr(parted, c) for c in counts]
    strip = ("_source_key", "_source_version", "_original_key")

    def records(keys: list[str]) -> Counter[str]:
        found: Counter[str] = Counter()
        for key in keys:
            body = gzip.decompress(lake.clients.s3.get_object(Bucket="raw", Key=key)["Body"].read())
            for line in body.splitlines():
                found[json.dumps({k: v for k, v in json.loads(line).items() if k not in strip}, sort_keys=True)] += 1
        return found

    assert records(whole.output_keys) == records(parted.output_keys)
    assert records(whole.quarantine_keys) == records(parted.quarantine_keys)
    assert "Uploads" not in lake.clients.s3.list_multipart_uploads(Bucket="raw")


IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9_\-]*$"
identifier_text = st.text(alphabet=st.sampled_from("aZ09_-.é\u00ff \\^]\n"), max_size=6) | st.text(max_size=4)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.none() | identifier_text, min_size=1, max_size=30))
@pytest.mark.parametrize("least", [None, 1])
@pytest.mark.parametrize("most", [None, 3])
@pytest.mark.parametrize("pattern", [IDENTIFIER, r"^[A-Z][a-z\-]+$", r"^[a\]_]$", r"^[._\\^-][a-c.]*$"])
def test_a_pattern_of_byte_classes_judges_every_string_as_the_regular_expression(
    pattern: str, least: int | None, most: int | None, values: list[str | None]
) -> None:
    # GIVEN a pattern of ASCII classes and strings (non-ASCII, escapes, newlines, empty, nulls, several chunks)
    import pyarrow as pa
    import pyarrow.compute as pc

    from datalake.columnar import _by_chunk, _in_classes, _length_within, arrow_scalar, byte_classes

    classes = byte_classes(pattern)
    assert classes is not None
    sized = dataclasses.replace(classes, least=least, most=most)
    half = len(values) // 2
    column = pa.chunked_array([pa.array(values[:half], pa.string()), pa.array(values[half:], pa.string())])
    # WHEN the byte lookup judges them (with the length bounds, when given) THEN every non-null value has the
    # verdict of the regular expression and of the length kernels
    found = _by_chunk(column, check=lambda chunk: _in_classes(chunk, classes=sized)).to_pylist()
    expected = pc.match_substring_regex(column, pattern)
    if least is not None or most is not None:
        low, high = (None if b is None else arrow_scalar(str(b), pa.int32()) for b in (least, most))
        expected = pc.and_kleene(expected, _length_within(column, low=low, high=high))
    expected = expected.to_pylist()
    assert [f for f, v in zip(found, values, strict=True) if v is not None] == [e for e in expected if e is not None]


@pytest.mark.parametrize("pattern", [r"^M\d+$", r"^[^a]*$", r"^[é]*$", r"^[a-z]+$", r"[a-z]*", r"^[[:alpha:]]*$"])
def test_a_pattern_beyond_byte_classes_keeps_the_regular_expression(pattern: str) -> None:
    from datalake.columnar import byte_classes

    assert byte_classes(pattern) is None


time_texts = st.lists(st.sampled_from("0123456789-T:Z+ ./"), min_size=20, max_size=20).map("".join)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        time_texts
        | st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)).map(
            lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
        )
        | st.sampled_from(["0001-01-01T00:00:00Z", "9999-01-01T00:00:00Z", "2026-11-01T24:00:00Z", "2026-00-01T1"]),
        min_size=1,
        max_size=20,
    )
)
def test_the_timestamp_check_judges_as_the_timestamp_pattern(values: list[str]) -> None:
    # GIVEN timestamp texts of the pattern's commonest length with every byte varied, and some of other lengths
    import pyarrow as pa
    import pyarrow.compute as pc

    from datalake.columnar import TIME_PATTERN, _canonical_time

    column = pa.chunked_array([pa.array(values, pa.string())])
    # WHEN the numpy check judges them THEN it gives the pattern's verdicts
    assert _canonical_time(column).to_pylist() == pc.match_substring_regex(column, TIME_PATTERN).to_pylist()

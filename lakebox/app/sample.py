"""Deterministic sample data for every dataset, with a chosen share of bad records of many kinds."""

from __future__ import annotations

import csv
import datetime as dt
import enum
import gzip
import io
import json
import math
import random
import re
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import AwareDatetime, BaseModel, NaiveDatetime

from datalake.contracts import Dataset

REGIONS = ("north", "south", "east", "west", "central", "online")
CATEGORIES = ("electronics", "grocery", "apparel", "home", "toys", "sports", "beauty", "books")
CURRENCY = "USD"
PAYMENTS = ("card", "cash", "wallet", "transfer")
CHANNELS = ("store", "web", "mobile")
SEGMENTS = ("consumer", "small_business", "enterprise")
EVENT_TYPES = ("page_view", "product_view", "add_to_cart", "remove_from_cart", "checkout", "search")
DEVICES = ("desktop", "mobile", "tablet")
DISCOUNTS = (1.0, 1.0, 1.0, 0.9, 0.8)
"""A sale's price is its product's list price, sometimes discounted."""
SESSION_EVENTS = 5
"""Events per clickstream session: consecutive events belong to one visit of one visitor."""
SESSION_SECONDS = 1_800
"""How long a visit lasts at most."""

SALES_DEFECTS = (
    "negative_quantity",
    "unknown_currency",
    "naive_timestamp",
    "missing_field",
    "extra_field",
    "quantity_as_string",
    "price_scale",
    "malformed_json",
    "not_utf8",
)


@dataclass
class Generated:
    """A generated file and what it holds: records in total, how many are bad, and by which defect."""

    path: Path
    dataset: str
    records: int
    bad: int
    defects: dict[str, int] = field(default_factory=dict)

    @property
    def good(self) -> int:
        """Records that satisfy the contract."""
        return self.records - self.bad


@dataclass(frozen=True)
class SampleSpec:
    """What to generate: sizes, the share of bad records, the time window and the seed."""

    sales: int = 20_000
    products: int = 200
    customers: int = 2_000
    clicks: int = 5_000
    bad_rate: float = 0.02
    duplicate_rate: float = 0.005
    days: int = 7
    end: dt.datetime = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    seed: int = 7
    weekly_amplitude: float = 0.0
    """How much busier the busiest weekday is than the average (0: every day alike), for a forecastable week."""


def _ts(rng: random.Random, spec: SampleSpec) -> dt.datetime:
    moment = spec.end - dt.timedelta(seconds=rng.randrange(spec.days * 86_400))
    amplitude = spec.weekly_amplitude
    while amplitude > 0:  # rejection sampling: a weekday is kept in proportion to 1 + a*sin(2*pi*weekday/7)
        weight = 1.0 + amplitude * math.sin(2 * math.pi * moment.weekday() / 7)
        if rng.random() * (1.0 + amplitude) <= weight:
            break
        moment = spec.end - dt.timedelta(seconds=rng.randrange(spec.days * 86_400))
    return moment


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + "Z"


def product_ids(spec: SampleSpec) -> list[str]:
    """The product ids the sample uses, shared by products and sales."""
    return [f"P{n:05d}" for n in range(spec.products)]


def customer_ids(spec: SampleSpec) -> list[str]:
    """The customer ids the sample uses, shared by customers, sales and clickstream."""
    return [f"C{n:06d}" for n in range(spec.customers)]


def sales_lines(spec: SampleSpec, count: int | None = None, *, start: int = 0) -> Iterator[tuple[bytes, str | None]]:
    """Yield `(json_line, defect)` for `count` sales; `defect` is None for a valid record."""
    rng = random.Random(spec.seed * 1_000_003 + start)
    prices = {row["product_id"]: float(row["list_price"]) for row in product_rows(spec)}
    products = product_ids(spec)
    customers = customer_ids(spec)
    total = spec.sales if count is None else count
    last: bytes | None = None
    for n in range(start, start + total):
        if last is not None and rng.random() < spec.duplicate_rate:
            yield last, None
            continue
        product = rng.choice(products)
        record: dict[str, object] = {
            "transaction_id": f"T{spec.seed:02d}{n:09d}",
            "event_time": _iso(_ts(rng, spec)),
            "customer_id": rng.choice(customers),
            "product_id": product,
            "store_id": f"S{rng.randrange(40):03d}",
            "region": rng.choice(REGIONS),
            "quantity": rng.randint(1, 5),
            "unit_price": max(0.01, round(prices[product] * rng.choice(DISCOUNTS), 2)),
            "currency": CURRENCY,
            "payment_method": rng.choice(PAYMENTS),
            "channel": rng.choice(CHANNELS),
        }
        defect = rng.choice(SALES_DEFECTS) if rng.random() < spec.bad_rate else None
        line = _defective(record, defect) if defect else json.dumps(record, separators=(",", ":")).encode()
        last = line if defect is None else None
        yield line, defect


def _defective(record: dict[str, object], defect: str) -> bytes:
    bad = dict(record)
    if defect == "negative_quantity":
        bad["quantity"] = -abs(int(str(bad["quantity"])))
    elif defect == "unknown_currency":
        bad["currency"] = "XYZ"
    elif defect == "naive_timestamp":
        bad["event_time"] = str(bad["event_time"]).removesuffix("Z")
    elif defect == "missing_field":
        del bad["unit_price"]
    elif defect == "extra_field":
        bad["coupon"] = "SAVE10"
    elif defect == "quantity_as_string":
        bad["quantity"] = str(bad["quantity"])
    elif defect == "price_scale":
        bad["unit_price"] = 12.345
    elif defect == "malformed_json":
        return json.dumps(bad, separators=(",", ":")).encode()[:-7]
    elif defect == "not_utf8":
        return json.dumps(bad, separators=(",", ":")).encode().replace(b'"store_id":"S', b'"store_id":"S\xff', 1)
    return json.dumps(bad, separators=(",", ":")).encode()


def write_sales(path: Path, spec: SampleSpec, *, compress: bool = False) -> Generated:
    """Write the sales sample as JSON lines (gzip when `compress`)."""
    result = Generated(path, "sales", 0, 0)
    opener = gzip.open if compress else open
    with opener(path, "wb") as out:
        buffer: list[bytes] = []
        for line, defect in sales_lines(spec):
            buffer.append(line)
            result.records += 1
            if defect:
                result.bad += 1
                result.defects[defect] = result.defects.get(defect, 0) + 1
            if len(buffer) >= 10_000:
                out.write(b"\n".join(buffer) + b"\n")
                buffer.clear()
        if buffer:
            out.write(b"\n".join(buffer) + b"\n")
    return result


def product_rows(spec: SampleSpec) -> list[dict[str, str]]:
    """The sample's products as CSV rows: a list price, and a unit cost of 45-80% of it (the margin varies)."""
    rng = random.Random(spec.seed + 1)
    margins = random.Random(spec.seed + 3)
    rows = []
    for pid in product_ids(spec):
        category = rng.choice(CATEGORIES)
        price = round(rng.uniform(1, 500), 2)
        rows.append(
            {
                "product_id": pid,
                "name": f"Product {pid[1:]}",
                "category": category,
                "list_price": f"{price:.2f}",
                "currency": CURRENCY,
                "active": rng.choice(("true", "true", "false")),
                "updated_at": _iso(spec.end - dt.timedelta(days=spec.days + 1)),
                "unit_cost": f"{max(0.01, price * margins.uniform(0.45, 0.8)):.2f}",
            }
        )
    return rows


def write_products(path: Path, spec: SampleSpec) -> Generated:
    """Write the product reference data as CSV (one row with an unknown category is bad)."""
    rows = product_rows(spec)
    rows.append({**rows[0], "product_id": "PBAD", "category": "weapons"})
    _write_csv(path, rows)
    return Generated(path, "products", len(rows), 1, {"unknown_category": 1})


def write_customers(path: Path, spec: SampleSpec) -> Generated:
    """Write the customer reference data as CSV (one row with a naive timestamp is bad)."""
    rng = random.Random(spec.seed + 2)
    rows = []
    for cid in customer_ids(spec):
        signup = spec.end - dt.timedelta(days=rng.randrange(30, 900))
        rows.append(
            {
                "customer_id": cid,
                "name": f"Customer {cid[1:]}",
                "segment": rng.choice(SEGMENTS),
                "region": rng.choice(REGIONS),
                "country": rng.choice(("US", "GB", "DE", "FR", "ES")),
                "signup_date": _iso(signup),
                "updated_at": _iso(spec.end - dt.timedelta(days=spec.days + 1)),
            }
        )
    rows.append({**rows[0], "customer_id": "CBAD", "updated_at": "2026-01-01T00:00:00"})
    _write_csv(path, rows)
    return Generated(path, "customers", len(rows), 1, {"naive_timestamp": 1})


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def click_events(spec: SampleSpec, count: int, *, start: int = 0) -> Iterator[tuple[dict[str, object], str | None]]:
    """Yield `(event, defect)` clickstream events; a defective event has an unknown event type.

    Every `SESSION_EVENTS` consecutive events are one session: one visitor (a customer, or anonymous) within
    `SESSION_SECONDS`, so a day never has more identified visitors than sessions.
    """
    rng = random.Random(spec.seed * 7 + start)
    products = product_ids(spec)
    customers = customer_ids(spec)
    for n in range(start, start + count):
        session = n // SESSION_EVENTS
        visit = random.Random(spec.seed * 1_000_033 + session)  # a session is one visitor's, at one time
        began = _ts(visit, spec)
        visitor = visit.choice(customers) if visit.random() < 0.6 else None
        moment = min(spec.end, began + dt.timedelta(seconds=rng.randrange(SESSION_SECONDS)))
        kind = rng.choice(EVENT_TYPES)
        event: dict[str, object] = {
            "event_id": f"E{spec.seed:02d}{n:09d}",
            "event_time": _iso(moment),
            "session_id": f"SES{spec.seed:02d}{session:08d}",
            "customer_id": visitor,
            "event_type": kind,
            "page": f"/p/{rng.choice(products)}" if kind != "search" else "/search",
            "product_id": rng.choice(products) if kind in {"product_view", "add_to_cart"} else None,
            "device": rng.choice(DEVICES),
        }
        defect = None
        if rng.random() < spec.bad_rate:
            event["event_type"] = "teleport"
            defect = "unknown_event_type"
        yield event, defect


EventSource = Callable[[SampleSpec, int, int], Iterator[tuple[dict[str, object], str | None]]]
"""`(spec, count, start) -> (event, defect)`: `count` generated events of a dataset numbered from `start`, a defect
naming what makes an event break its contract (None for a valid one)."""

STREAM_EVENTS: Mapping[str, EventSource] = {
    "clickstream": lambda spec, count, start: click_events(spec, count, start=start),
}
"""The sample domain's event generators by stream-delivered dataset (what `lakebox stream` produces)."""


def write_clickstream(path: Path, spec: SampleSpec) -> Generated:
    """Write the clickstream sample as a JSON array (the format some exporters produce)."""
    result = Generated(path, "clickstream", 0, 0)
    events = []
    for event, defect in click_events(spec, spec.clicks):
        events.append(event)
        result.records += 1
        if defect:
            result.bad += 1
            result.defects[defect] = result.defects.get(defect, 0) + 1
    path.write_text(json.dumps(events), encoding="utf-8")
    return result


def generate(folder: Path, spec: SampleSpec) -> list[Generated]:
    """Write one file per dataset into `folder`, reference data first; return what each file holds."""
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_products(folder / "products.csv", spec),
        write_customers(folder / "customers.csv", spec),
        write_sales(folder / "sales.jsonl.gz", spec, compress=True),
        write_clickstream(folder / "clickstream.json", spec),
    ]


def put_sample_spec(rows: int, *, bad_rate: float = 0.02, seed: int = 7, now: dt.datetime | None = None) -> SampleSpec:
    """What `lakebox sample` writes: `rows` sales over the last 7 days to the hour, products and customers in
    proportion (every sale's product and customer among them), as many click events as sales."""
    end = (now or dt.datetime.now(dt.UTC)).replace(minute=0, second=0, microsecond=0)
    return SampleSpec(
        sales=rows,
        products=max(5, rows // 20),
        customers=max(10, rows // 5),
        clicks=rows,
        bad_rate=bad_rate,
        seed=seed,
        end=end,
    )


def order_rows(spec: SampleSpec) -> list[dict[str, str]]:
    """Orders of the sample's customers, a dataset the registry does not have: the sample `lakebox dataset new`
    starts from (one order per ten sales, at least ten; every row valid)."""
    rng = random.Random(spec.seed + 4)
    customers = customer_ids(spec)
    moments = sorted(_ts(rng, spec) for _ in range(max(10, spec.sales // 10)))
    return [
        {
            "order_id": f"O{n:07d}",
            "ordered_at": _iso(moment),
            "customer_id": rng.choice(customers),
            "channel": rng.choice(CHANNELS),
            "items": str(rng.randint(1, 6)),
            "amount": f"{rng.uniform(5, 900):.2f}",
            "currency": CURRENCY,
        }
        for n, moment in enumerate(moments, start=1)
    ]


def write_orders(path: Path, spec: SampleSpec) -> Generated:
    """Write the orders sample as CSV (a dataset to add with `lakebox dataset new orders --from <path>`)."""
    rows = order_rows(spec)
    _write_csv(path, rows)
    return Generated(path, "orders", len(rows), 0)


def write_sample(folder: Path, spec: SampleSpec) -> list[Generated]:
    """`lakebox sample`: the files the README's workflow puts, uncompressed, into `folder`.

    `products.csv`, `customers.csv`, `sales.jsonl` and `clickstream.json`, and `orders.csv` (a dataset not yet
    registered, for `lakebox dataset new`); existing files of those names are replaced, nothing else in `folder` is
    touched.
    """
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_products(folder / "products.csv", spec),
        write_customers(folder / "customers.csv", spec),
        write_sales(folder / "sales.jsonl", spec),
        write_clickstream(folder / "clickstream.json", spec),
        write_orders(folder / "orders.csv", spec),
    ]


def to_bytes(lines: Iterator[bytes]) -> bytes:
    """Join generated lines into one JSON-lines payload."""
    buffer = io.BytesIO()
    for line in lines:
        buffer.write(line + b"\n")
    return buffer.getvalue()


# ------------------------------------------------------------------------------ events from a contract
def _bounds(metadata: list[Any]) -> tuple[float, float]:
    low, high = 1.0, 1000.0
    for item in metadata:
        for name, shift in (("gt", 1), ("ge", 0)):
            if getattr(item, name, None) is not None:
                low = float(getattr(item, name)) + shift
        for name, shift in (("lt", -1), ("le", 0)):
            if getattr(item, name, None) is not None:
                high = float(getattr(item, name)) + shift
    return low, max(low, min(high, low + 1000))


def _text(name: str, n: int, metadata: list[Any]) -> str:
    """A string the field's pattern and lengths accept: the first of a few shapes that fits."""
    pattern = next((getattr(m, "pattern", None) for m in metadata if getattr(m, "pattern", None)), None)
    limit = min((int(m.max_length) for m in metadata if getattr(m, "max_length", None)), default=64)
    stem = "".join(c for c in name.title() if c.isalnum())[:8] or "V"
    shapes = (f"{stem}{n:06d}", f"/{stem.lower()}/{n}", f"{stem.lower()}{n}", f"{n}", stem.upper()[:2], stem.upper())
    for shape in shapes:
        if len(shape) <= limit and (pattern is None or re.search(pattern, shape)):
            return shape
    return f"{stem}{n}"[:limit]


def _value(name: str, annotation: Any, metadata: list[Any], rng: random.Random, n: int, moment: dt.datetime) -> Any:
    """A JSON value for one contract field, within its type's constraints."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _value(name, args[0], [*metadata, *args[1:]], rng, n, moment)
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return (
            None
            if len(options) < len(args) and rng.random() < 0.2
            else _value(name, options[0], metadata, rng, n, moment)
        )
    if origin is Literal:
        return rng.choice(args)
    if origin in (list, tuple, set, frozenset):
        return [_value(name, args[0] if args else str, [], rng, n + i, moment) for i in range(rng.randint(1, 3))]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return rng.choice(list(annotation)).value
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {
            field: _value(field, info.annotation, list(info.metadata), rng, n, moment)
            for field, info in annotation.model_fields.items()
            if info.is_required() or rng.random() < 0.5
        }
    if annotation is bool:
        return rng.random() < 0.5
    if annotation is int:
        low, high = _bounds(metadata)
        return rng.randint(math.ceil(low), math.floor(high))
    if annotation is float:
        low, high = _bounds(metadata)
        return round(rng.uniform(low, high), 3)
    if annotation is Decimal:
        low, high = _bounds(metadata)
        return f"{rng.uniform(low, high):.2f}"
    if annotation in (AwareDatetime, NaiveDatetime) or (
        isinstance(annotation, type) and issubclass(annotation, dt.datetime)
    ):
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if isinstance(annotation, type) and issubclass(annotation, dt.date):
        return moment.date().isoformat()
    return _text(name, n, metadata)


def contract_events(dataset: Dataset) -> EventSource:
    """Events generated from a dataset's contract alone, for a stream-delivered dataset with no sample generator.

    Each field gets a value its type and constraints accept (literals and enums from their choices, numbers within
    their bounds, strings fitted to their pattern, nested models and lists filled in); a defective event lacks its
    event-time field.
    """

    def generate(spec: SampleSpec, count: int, start: int) -> Iterator[tuple[dict[str, object], str | None]]:
        rng = random.Random(spec.seed * 11 + start)
        for n in range(start, start + count):
            moment = spec.end - dt.timedelta(seconds=rng.uniform(0, 3600))
            event: dict[str, object] = {
                name: _value(name, info.annotation, list(info.metadata), rng, n, moment)
                for name, info in dataset.contract.model_fields.items()
                if info.is_required() or rng.random() < 0.7
            }
            defect = None
            if rng.random() < spec.bad_rate:
                event.pop(dataset.event_time, None)
                defect = f"{dataset.event_time}_missing"
            yield event, defect

    return generate


def stream_events(dataset: Dataset) -> EventSource:
    """The generator of a stream-delivered dataset's events: its sample domain one, else one from its contract."""
    return STREAM_EVENTS.get(dataset.name) or contract_events(dataset)

"""A seeded scenario of the sample domain with the awkward cases a real lake receives, in two deliveries.

Delivered before the first run: the newer versions of products and customers, and the first sales file.
Delivered before the second run: the older versions (late, out of order), a re-delivery of some newer versions,
and a second sales file that corrects records of the first (some moved to another day), repeats some, and adds
new ones. About 3% of every file is invalid in varied ways; many valid values use odd but legal spellings.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from tests.integration.truth.judge import csv_text, micros
from tests.integration.truth.spellings import CSV_BOOLEANS, Raw, epoch_seconds, json_line, timestamp

UTC = dt.UTC
START = dt.datetime(2025, 6, 1, tzinfo=UTC)
DAYS = 10
AS_OF = START + dt.timedelta(days=DAYS)
"""The time the runs are judged at (freshness): the end of the scenario's window."""
REGIONS = ("north", "south", "east", "west", "central", "online")
CATEGORIES = ("electronics", "grocery", "apparel", "home", "toys", "sports", "beauty", "books")
SEGMENTS = ("consumer", "small_business", "enterprise")
CURRENCIES = ("USD", "USD", "USD", "EUR", "EUR", "GBP")
PRODUCT_HEADER = ("product_id", "name", "category", "list_price", "currency", "active", "updated_at", "unit_cost")
CUSTOMER_HEADER = ("customer_id", "name", "segment", "region", "country", "signup_date", "updated_at")
SALE_DEFECTS = (
    "negative_quantity",
    "unknown_currency",
    "naive_timestamp",
    "missing_field",
    "unknown_field",
    "malformed",
)


@dataclass(frozen=True)
class File:
    """One object put on the landing bucket: its dataset, file name and bytes."""

    dataset: str
    name: str
    body: bytes


@dataclass
class Scenario:
    """The files of each delivery, in the order they are put."""

    first: list[File] = field(default_factory=list)
    second: list[File] = field(default_factory=list)


class _Clock:
    """Distinct instants: no two sales share an event time, so "the latest sale of a day" is never a tie."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[int] = set()

    def take(self, moment: dt.datetime) -> dt.datetime | None:
        if micros(moment) in self.used:
            return None
        self.used.add(micros(moment))
        return moment

    def any_second(self, start: dt.datetime, days: float) -> dt.datetime:
        while True:
            moment = start + dt.timedelta(seconds=self.rng.randrange(int(days * 86_400)))
            if (taken := self.take(moment)) is not None:
                return taken


def _spelling(rng: random.Random, clock: _Clock, day: int) -> tuple[str, dt.datetime]:
    """An event time on `day` of the window, spelled plainly three times in four, otherwise in an odd legal way."""
    base = START + dt.timedelta(days=day)
    style = rng.choice(["plain"] * 9 + ["no_seconds", "lower", "india", "east_edge", "west_edge", "nanos", "epoch"])
    if style == "no_seconds":
        while (moment := clock.take(base + dt.timedelta(minutes=rng.randrange(1440)))) is None:
            pass
        return timestamp(moment, digits=-1), moment
    if style == "nanos":
        while (moment := clock.take(base + dt.timedelta(days=1, microseconds=-1))) is None:
            base += dt.timedelta(days=1) if day + 1 < DAYS else dt.timedelta(days=-1)
        return timestamp(moment, digits=6, extra="9"), moment
    moment = clock.any_second(base, 1)
    if style == "lower":
        return timestamp(moment, zone="z", separator="t"), moment
    if style == "india":
        return timestamp(moment, offset_minutes=330), moment
    if style == "east_edge":
        return timestamp(moment, offset_minutes=23 * 60 + 59), moment
    if style == "west_edge":
        return timestamp(moment, offset_minutes=-(23 * 60 + 59)), moment
    if style == "epoch":
        return epoch_seconds(moment), moment
    return timestamp(moment), moment


def _price(rng: random.Random) -> object:
    """A unit price as a JSON string or number, with 0 to 2 places written (`"12.5"`, `12.50`, `7`)."""
    cents = rng.randrange(50, 50_000)
    value = Decimal(cents) / 100
    form = rng.choice(["string", "number", "fixed_number", "fixed_string"])
    if form == "string":
        return format(value.normalize(), "f")
    if form == "number":
        return Raw(format(value.normalize(), "f"))
    return Raw(f"{value:.2f}") if form == "fixed_number" else f"{value:.2f}"


def _flag(rng: random.Random, value: bool) -> str:
    spelling = rng.choice(CSV_BOOLEANS[value])
    return rng.choice([spelling, spelling.upper(), spelling.title()])


def _odd_time(rng: random.Random, moment: dt.datetime) -> str:
    """A reference record's timestamp: mostly plain, sometimes with an offset, lowercase or epoch seconds."""
    return rng.choice(
        [
            timestamp(moment),
            timestamp(moment),
            timestamp(moment, offset_minutes=rng.choice([330, -300, 23 * 60 + 59, -(23 * 60 + 59)])),
            timestamp(moment, zone="z", separator="t"),
            epoch_seconds(moment),
        ]
    )


# ------------------------------------------------------------------------------------------ reference data


def _products(rng: random.Random) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(newer versions, older versions): P01-P22 have both, P23-P26 only the older, P27-P28 only the newer."""
    newer, older = [], []
    for n in range(1, 29):
        pid = f"P{n:02d}"
        category = rng.choice(CATEGORIES)
        currency = rng.choice(("USD", "EUR"))
        if n <= 26:
            updated = START - dt.timedelta(days=12) + dt.timedelta(seconds=rng.randrange(5 * 86_400))
            older.append(_product(rng, pid, f"Product {n} mk1", category, currency, updated, True))
        if n <= 22 or n >= 27:
            updated = START + dt.timedelta(days=3, seconds=rng.randrange(4 * 86_400))
            changed = rng.choice(CATEGORIES) if rng.random() < 0.5 else category
            newer.append(_product(rng, pid, f"Product {n} mk2", changed, currency, updated, rng.random() < 0.8))
    return newer, older


def _product(
    rng: random.Random, pid: str, name: str, category: str, currency: str, updated: dt.datetime, active: bool
) -> dict[str, str]:
    price = Decimal(rng.randrange(100, 90_000)) / 100
    return {
        "product_id": pid,
        "name": name,
        "category": category,
        "list_price": rng.choice([format(price.normalize(), "f"), f"{price:.2f}"]),
        "currency": currency,
        "active": _flag(rng, active),
        "updated_at": _odd_time(rng, updated),
        "unit_cost": _unit_cost(random.Random(f"{pid}|{name}|{updated.isoformat()}"), price),
    }


def _unit_cost(rng: random.Random, price: Decimal) -> str:
    """A unit cost below the list price, in varied spellings; about one version in six has none (the column empty).

    Drawn from its own generator, so the scenario's other values are those it had before products had a cost.
    """
    if rng.random() < 0.17:
        return ""
    cost = max(Decimal("0.01"), (price * Decimal(rng.randrange(40, 85)) / 100).quantize(Decimal("0.01")))
    return rng.choice([format(cost.normalize(), "f"), f"{cost:.2f}"])


def _customers(rng: random.Random) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(newer versions, older versions): C01-C30 have both, C31-C36 only the older, C37-C38 only the newer."""
    newer, older = [], []
    for n in range(1, 39):
        cid = f"C{n:02d}"
        signup = START - dt.timedelta(days=rng.randrange(60, 900), seconds=rng.randrange(86_400))
        if n <= 36:
            updated = START - dt.timedelta(days=15) + dt.timedelta(seconds=rng.randrange(5 * 86_400))
            older.append(_customer(rng, cid, signup, updated))
        if n <= 30 or n >= 37:
            updated = START + dt.timedelta(days=2, seconds=rng.randrange(5 * 86_400))
            newer.append(_customer(rng, cid, signup, updated))
    return newer, older


def _customer(rng: random.Random, cid: str, signup: dt.datetime, updated: dt.datetime) -> dict[str, str]:
    return {
        "customer_id": cid,
        "name": f"Customer {cid[1:]}",
        "segment": rng.choice(SEGMENTS),
        "region": rng.choice(REGIONS),
        "country": rng.choice(("US", "GB", "DE", "FR", "IN")),
        "signup_date": _odd_time(rng, signup),
        "updated_at": _odd_time(rng, updated),
    }


def _spoil_reference(
    rng: random.Random, rows: list[dict[str, str]], kinds: dict[str, Callable[[dict[str, str]], None]]
):
    """Insert one spoiled copy per kind at random places (about 3% of a file of reference data)."""
    for spoil in kinds.values():
        bad = dict(rng.choice(rows))
        spoil(bad)
        rows.insert(rng.randrange(len(rows) + 1), bad)


PRODUCT_DEFECTS: dict[str, Callable[[dict[str, str]], None]] = {
    "unknown_category": lambda r: r.update(category="weapons"),
    "naive_timestamp": lambda r: r.update(updated_at="2025-06-05T10:00:00"),
    "not_a_boolean": lambda r: r.update(active="maybe"),
}
CUSTOMER_DEFECTS: dict[str, Callable[[dict[str, str]], None]] = {
    "missing_field": lambda r: r.update(segment=""),
    "extra_cell": lambda r: r.update(_extra_cells="surplus"),
    "bad_country": lambda r: r.update(country="usa"),
}


# ------------------------------------------------------------------------------------------------ sales


@dataclass
class _Sale:
    fields: dict[str, object]
    day: int = 0

    def line(self) -> bytes:
        return json_line(self.fields.items())


def _sale(rng: random.Random, clock: _Clock, tid: str, days: range = range(DAYS)) -> _Sale:
    day = rng.choice(days)
    event_time, _ = _spelling(rng, clock, day)
    return _Sale(
        {
            "transaction_id": tid,
            "event_time": event_time,
            "customer_id": rng.choice([f"C{n:02d}" for n in range(1, 41)] + ["C99"]),
            "product_id": f"P{rng.randrange(1, 31):02d}",
            "store_id": f"S{rng.randrange(12):03d}",
            "region": rng.choice(REGIONS),
            "quantity": Raw(str(rng.randint(1, 5))),
            "unit_price": _price(rng),
            "currency": rng.choice(CURRENCIES),
            "payment_method": rng.choice(("card", "cash", "wallet", "transfer")),
            "channel": rng.choice(("store", "web", "mobile")),
        },
        day,
    )


def _spoiled(rng: random.Random, sale: _Sale, defect: str) -> bytes:
    fields = dict(sale.fields)
    if defect == "negative_quantity":
        fields["quantity"] = Raw("-2")
    elif defect == "unknown_currency":
        fields["currency"] = "XYZ"
    elif defect == "naive_timestamp":
        fields["event_time"] = "2025-06-03T12:00:00"
    elif defect == "missing_field":
        del fields["unit_price"]
    elif defect == "unknown_field":
        fields["coupon"] = "SAVE10"
    else:
        return json_line(fields.items())[: -rng.randrange(2, 9)]
    return json_line(fields.items())


def _sales(rng: random.Random, clock: _Clock) -> tuple[list[bytes], list[bytes]]:
    """Two sales files: the second corrects, moves and repeats records of the first and adds new ones.

    The second file's records lie on the last days only, and the sales it moves come from the first days: a
    run that deduplicated only the dates it touches would keep the moved sales' old rows.
    """
    first = [_sale(rng, clock, f"S{n:04d}") for n in range(1, 301)]
    ancient = _sale(rng, clock, "S0000")
    ancient.fields.update(event_time="1899-12-31T23:59:59Z", product_id="P01", customer_id="C01")
    first.insert(rng.randrange(len(first)), ancient)
    lines = [s.line() for s in first]
    for sale in rng.sample(first, 6):  # the same line twice in one file
        lines.insert(rng.randrange(len(lines) + 1), sale.line())
    for sale in rng.sample(first, 4):  # corrected later in the same file: the later line wins
        lines.append(_Sale({**sale.fields, "quantity": Raw(str(rng.randint(6, 9)))}).line())
    late = range(DAYS - 3, DAYS)
    second = [_sale(rng, clock, f"S{n:04d}", late).line() for n in range(301, 381)]
    early = [sale for sale in first[1:] if sale.day < 4]
    recent = [sale for sale in first[1:] if sale.day in late]
    corrections = [
        {**sale.fields, "event_time": _spelling(rng, clock, rng.choice(late))[0]} for sale in rng.sample(early, 15)
    ]
    for sale in rng.sample(recent, 15):
        repriced = {"quantity": Raw(str(rng.randint(1, 5))), "unit_price": _price(rng)}
        corrections.append({**sale.fields, **(repriced if rng.random() < 0.6 else {})})
    for fields in corrections:
        second.insert(rng.randrange(len(second) + 1), _Sale(fields).line())
    for sale in rng.sample(recent, 3):  # an invalid correction leaves the earlier version standing
        second.append(_spoiled(rng, sale, "negative_quantity"))
    for lines_of_file in (lines, second):
        for n in range(max(1, round(len(lines_of_file) * 0.03))):
            bad = _spoiled(rng, _sale(rng, clock, f"X{rng.randrange(10**6):06d}"), SALE_DEFECTS[n % len(SALE_DEFECTS)])
            lines_of_file.insert(rng.randrange(len(lines_of_file) + 1), bad)
    return lines, second


def generate(seed: int = 7) -> Scenario:
    """The scenario's files for `seed`: the same bytes every time."""
    rng = random.Random(seed)
    clock = _Clock(rng)
    products_new, products_old = _products(rng)
    customers_new, customers_old = _customers(rng)
    products_new.insert(rng.randrange(len(products_new)), dict(products_new[0]))  # the same row twice in a file
    for row in rng.sample(products_new, 2):  # a version delivered again later, with a correction: it wins
        products_old.append({**row, "name": f"{row['name']} (renamed)"})
    for row in rng.sample(customers_new, 2):
        customers_old.append({**row, "name": f"{row['name']} (renamed)", "segment": "enterprise"})
    for rows, defects in (
        (products_new, PRODUCT_DEFECTS),
        (products_old, PRODUCT_DEFECTS),
        (customers_new, CUSTOMER_DEFECTS),
        (customers_old, CUSTOMER_DEFECTS),
    ):
        _spoil_reference(rng, rows, dict(rng.sample(sorted(defects.items()), 1)))
    sales_first, sales_second = _sales(rng, clock)
    return Scenario(
        first=[
            File("products", "products-newer.csv", csv_text(products_new, PRODUCT_HEADER).encode()),
            File("customers", "customers-newer.csv", csv_text(customers_new, CUSTOMER_HEADER).encode()),
            File("sales", "sales-1.jsonl", b"\n".join(sales_first) + b"\n"),
        ],
        second=[
            File("products", "products-older.csv", csv_text(products_old, PRODUCT_HEADER).encode()),
            File("customers", "customers-older.csv", csv_text(customers_old, CUSTOMER_HEADER).encode()),
            File("sales", "sales-2.jsonl", b"\n".join(sales_second) + b"\n"),
        ],
    )

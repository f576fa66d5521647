"""Generate realistic customer order events as JSON Lines (deterministic for a given seed).

    python examples/generate_orders.py --count 1200 --out examples/data/orders.jsonl

Produces a few hundred customers buying from a catalogue of products over
five weeks (2025-03-01 .. 2025-04-04, plus a few late-February and April
stragglers), mostly on marketplace US with some UK and DE orders. The data
exercises every path of the pipeline: repeat purchases of the same product,
redelivered events (same ``eventId`` twice), undelivered orders, low-trust and
fraud-flagged customers, poor reviewers, cheap items, customers who opted in to
no channel, and about one malformed line in 110 (broken JSON, a missing field,
a negative value, an impossible date, ...).

The same ``--seed`` and ``--count`` always give the same file, byte for byte.
"""

import argparse
import json
import random
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

RANGE_START = datetime(2025, 3, 1, tzinfo=UTC)
RANGE_DAYS = 35  # through 2025-04-04

CATEGORIES = {
    # category: (price range, media eligible)
    "Electronics": ((15.0, 450.0), True),
    "Books": ((6.0, 40.0), False),
    "Home & Kitchen": ((8.0, 180.0), True),
    "Apparel": ((9.0, 120.0), True),
    "Grocery": ((2.0, 25.0), False),
    "Toys": ((7.0, 80.0), True),
    "Beauty": ((4.0, 60.0), True),
}

MARKETPLACES = (("US", "USD", 0.92), ("UK", "GBP", 0.04), ("DE", "EUR", 0.04))


@dataclass
class Product:
    product_id: str
    category: str
    price: float
    media_eligible: bool


@dataclass
class Customer:
    customer_id: str
    marketplace: str
    currency: str
    trust: float | None
    fraud: bool
    review_quality: float | None
    prior_reviews: int
    opt_ins: dict[str, bool]
    favourites: list[Product]


def _iso(moment: datetime) -> str:
    # isoformat is strftime's "%Y-%m-%dT%H:%M:%S" here (UTC, whole seconds) at a third of its cost.
    return moment.isoformat()[:19] + "Z"


def _asin(rng: random.Random) -> str:
    return "B0" + "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(8))


def _catalogue(rng: random.Random, size: int) -> list[Product]:
    products = []
    for _ in range(size):
        category = rng.choice(sorted(CATEGORIES))
        (low, high), media = CATEGORIES[category]
        products.append(Product(_asin(rng), category, round(rng.uniform(low, high), 2), media))
    return products


def _customers(rng: random.Random, size: int, products: list[Product]) -> list[Customer]:
    customers = []
    for number in range(size):
        roll = rng.random()
        marketplace, currency = next(
            (m, c) for m, c, share in _cumulative(MARKETPLACES) if roll < share
        )
        trust_roll = rng.random()
        if trust_roll < 0.03:
            trust = None  # new account, not yet rated
        elif trust_roll < 0.09:
            trust = round(rng.uniform(0.02, 0.29), 3)
        else:
            trust = round(rng.uniform(0.45, 0.99), 3)
        has_reviews = rng.random() < 0.65
        opt_ins = {
            "email": rng.random() < 0.8,
            "push": rng.random() < 0.55,
            "sms": rng.random() < 0.2,
            "inApp": rng.random() < 0.4,
        }
        if rng.random() < 0.05:
            opt_ins = {channel: False for channel in opt_ins}
        customers.append(
            Customer(
                customer_id=f"C{100000 + number * 37:06d}",
                marketplace=marketplace,
                currency=currency,
                trust=trust,
                fraud=rng.random() < 0.015,
                review_quality=round(0.1 + 0.9 * rng.betavariate(3, 1.5), 3) if has_reviews else None,
                prior_reviews=rng.randint(1, 40) if has_reviews else 0,
                opt_ins=opt_ins,
                favourites=rng.sample(products, 3),
            )
        )
    return customers


def _cumulative(shares: tuple[tuple[str, str, float], ...]) -> list[tuple[str, str, float]]:
    total, out = 0.0, []
    for marketplace, currency, share in shares:
        total += share
        out.append((marketplace, currency, total))
    out[-1] = (out[-1][0], out[-1][1], 1.0 + 1e-9)
    return out


def _order_date(rng: random.Random) -> datetime:
    roll = rng.random()
    if roll < 0.015:
        day = -rng.randint(1, 5)  # late February: outside the payload's date range
    elif roll < 0.03:
        day = RANGE_DAYS + rng.randint(0, 2)  # after 2025-04-04
    else:
        day = rng.randrange(RANGE_DAYS)
    return RANGE_START + timedelta(days=day, seconds=rng.randrange(86400))


def _event(rng: random.Random, customer: Customer, products: list[Product]) -> dict:
    # Customers rebuy their favourites now and then: several events per (customer, product).
    product = rng.choice(customer.favourites) if rng.random() < 0.12 else rng.choice(products)
    ordered = _order_date(rng)
    days_before_end = (RANGE_START + timedelta(days=RANGE_DAYS) - ordered).days
    undelivered = rng.random() < (0.6 if days_before_end < 4 else 0.03)
    delivered = None if undelivered else ordered + timedelta(hours=rng.randint(20, 150))
    quantity = 1 if rng.random() < 0.85 else rng.randint(2, 4)
    price = product.price if rng.random() < 0.93 else round(rng.uniform(0.99, 4.5), 2)  # a cheap add-on
    return {
        "eventId": f"evt-{rng.getrandbits(48):012x}",
        "customerId": customer.customer_id,
        "orderId": f"ORD-{rng.randint(100, 999)}-{rng.randint(1000000, 9999999)}",
        "marketplace": customer.marketplace,
        "productId": product.product_id,
        "category": product.category,
        "orderDate": _iso(ordered),
        "deliveryDate": _iso(delivered) if delivered else None,
        "orderValue": round(price * quantity, 2),
        "currency": customer.currency,
        "quantity": quantity,
        "channelOptIns": dict(customer.opt_ins),
        "customerTrustScore": customer.trust,
        "fraudFlag": customer.fraud,
        "reviewQualityScore": customer.review_quality,
        "priorReviewCount": customer.prior_reviews,
        "mediaEligible": product.media_eligible,
    }


def _malformed(kind: int, good: dict) -> str:
    """One broken line of a given kind, derived from a good event."""
    bad = dict(good)
    if kind == 0:
        return json.dumps(bad, separators=(",", ":"))[:90]  # truncated mid-write
    if kind == 1:
        del bad["customerId"]
    elif kind == 2:
        bad["orderValue"] = -abs(bad["orderValue"]) - 1
    elif kind == 3:
        bad["orderDate"] = "2025-02-30T10:15:00Z"
    elif kind == 4:
        return json.dumps([bad["eventId"], bad["customerId"]])
    elif kind == 5:
        bad["orderValue"] = "twelve"
    elif kind == 6:
        bad["deliveryDate"] = "2025-02-01T00:00:00Z"  # before the order
    elif kind == 7:
        bad["eventId"] = "  "
    elif kind == 8:
        bad["currency"] = "usd$"
    elif kind == 9:
        bad["customerTrustScore"] = 1.7
    else:
        return "-- export interrupted, resuming --"
    return json.dumps(bad, separators=(",", ":"))


MALFORMED_KINDS = 11
_COMPACT = json.JSONEncoder(separators=(",", ":"))  # json.dumps(..., separators=...) makes one per call


def generate(count: int, seed: int = 7) -> list[str]:
    """``count`` JSON Lines (about one in 110 malformed, one in 100 a redelivered duplicate).

    >>> len(generate(50)) == 50
    True
    """
    rng = random.Random(seed)
    products = _catalogue(rng, max(10, count // 12))
    customers = _customers(rng, max(5, count // 4), products)
    malformed = max(1, round(count / 110)) if count >= 20 else 0
    broken_at = set(rng.sample(range(1, count), malformed)) if malformed else set()
    lines: list[str] = []
    previous: str | None = None
    kind = 0
    while len(lines) < count:
        event = _event(rng, rng.choice(customers), products)
        if len(lines) in broken_at:
            lines.append(_malformed(kind % MALFORMED_KINDS, event))
            kind += 1
        elif previous is not None and rng.random() < 0.01:
            lines.append(previous)  # the exporter delivered the same event twice
        else:
            previous = _COMPACT.encode(event)
            lines.append(previous)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1200, help="number of lines to write (default 1200)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--out", type=Path, required=True, help="JSON Lines file to write")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(line + "\n" for line in generate(args.count, args.seed)), encoding="utf-8")
    print(f"wrote {args.count} lines to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A tiny order-event source and Filter output with hand-computed HeavyETL expectations.

Date range 2025-03-01 .. 2025-03-31 (a plain date end covers that whole day),
so the reference time is 2025-04-01T00:00:00Z. Marketplace US.

======  ==========================================================  =================
record  what                                                        class
======  ==========================================================  =================
e1      C1, order O1, product P1, 03-10 08:00, 10.00                EVENT
e2      C1, order O1, product P2, 03-10 08:00, 5.50                 EVENT
e3      C1, order O2, product P1, 03-20 12:00, 20.25                EVENT
e3      redelivered with another value (999.00): the first wins      DUPLICATE
e4      C1, 02-27 (before the range)                                OUTSIDE_DATE_RANGE
e5      C1, marketplace UK                                          OTHER_MARKETPLACE
e6      C2, order O5, product P5, 03-31 12:00, 7.00                 EVENT
e7      C2, 04-01 00:00 (the first instant after the range)         OUTSIDE_DATE_RANGE
e8      C9 (no candidate), 03-05                                    EVENT
e9      orderValue "twelve", no orderId                             MALFORMED
e10     orderValue -5                                               MALFORMED
e11     orderDate 2025-02-30                                        MALFORMED
e12     currency "usd"                                              MALFORMED
e13     delivered before it was ordered                             MALFORMED
======  ==========================================================  =================

C1: orders {O1, O2} -> orderCount 2; total 10 + 5.5 + 20.25 = 35.75; average
35.75 / 2 = 17.875 -> 17.88; products {P1, P2} -> 2; last order 03-20 12:00,
11.5 days before 04-01 00:00. C2: one order of 7.00, 0.5 days before.
C3 has only malformed records: its candidate is kept without new features.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

from stages.domain import Candidate, CandidateAttributes, Subject, candidate_context

DATE_START = "2025-03-01"
DATE_END = "2025-03-31"
PROGRAM = "reviews"
MARKETPLACE = "US"


def _event(event_id: str, customer: str, order: str, product: str, ordered: str, value: Any, **extra: Any) -> dict:
    event = {
        "eventId": event_id,
        "customerId": customer,
        "orderId": order,
        "marketplace": MARKETPLACE,
        "productId": product,
        "category": "Books",
        "orderDate": ordered,
        "deliveryDate": None,
        "orderValue": value,
        "currency": "USD",
        "quantity": 1,
        "channelOptIns": {"email": True, "push": False},
        "customerTrustScore": 0.8,
        "fraudFlag": False,
        "reviewQualityScore": 0.7,
        "priorReviewCount": 2,
        "mediaEligible": False,
    }
    event.update(extra)
    return event


RECORDS: list[dict[str, Any]] = [
    _event("e1", "C1", "O1", "P1", "2025-03-10T08:00:00Z", 10.00, deliveryDate="2025-03-12T08:00:00Z"),
    _event("e2", "C1", "O1", "P2", "2025-03-10T08:00:00Z", 5.50),
    _event("e3", "C1", "O2", "P1", "2025-03-20T12:00:00Z", 20.25),
    _event("e3", "C1", "O2", "P1", "2025-03-20T12:00:00Z", 999.00),
    _event("e4", "C1", "O3", "P3", "2025-02-27T09:00:00Z", 100.00),
    _event("e5", "C1", "O4", "P4", "2025-03-15T09:00:00Z", 40.00, marketplace="UK", currency="GBP"),
    _event("e6", "C2", "O5", "P5", "2025-03-31T12:00:00Z", 7.00),
    _event("e7", "C2", "O6", "P6", "2025-04-01T00:00:00Z", 50.00),
    _event("e8", "C9", "O7", "P1", "2025-03-05T00:00:00Z", 3.00),
    {"eventId": "e9", "customerId": "C3", "orderValue": "twelve"},
    _event("e10", "C3", "O8", "P9", "2025-03-11T00:00:00Z", -5.0),
    _event("e11", "C3", "O9", "P9", "2025-02-30T10:00:00Z", 5.0),
    _event("e12", "C3", "O10", "P9", "2025-03-12T00:00:00Z", 5.0, currency="usd"),
    _event("e13", "C3", "O11", "P9", "2025-03-12T00:00:00Z", 5.0, deliveryDate="2025-03-01T00:00:00Z"),
]

EXPECTED_FEATURES = {
    "C1": {"orderCount": 2, "totalOrderValue": 35.75, "avgOrderValue": 17.88, "daysSinceLastOrder": 11.5, "distinctSubjects": 2},
    "C2": {"orderCount": 1, "totalOrderValue": 7.0, "avgOrderValue": 7.0, "daysSinceLastOrder": 0.5, "distinctSubjects": 1},
}

EXPECTED_SOURCE_METRICS = {
    "sourceRecordCount": 14,
    "sourceEventCount": 5,
    "sourceMalformedCount": 5,
    "sourceSkippedCount": 3,
    "sourceSkipped": {"otherMarketplace": 1, "outsideDateRange": 2},
    "duplicateEventCount": 1,
}


def jsonl_source() -> bytes:
    """The records as JSON Lines, with a blank line in the middle (not a record)."""
    lines = [json.dumps(record) for record in RECORDS]
    lines.insert(5, "")
    return ("\n".join(lines) + "\n").encode()


def json_array_source() -> bytes:
    """The records as one pretty-printed JSON array."""
    return json.dumps(RECORDS, indent=2).encode()


def csv_source() -> bytes:
    """The records as CSV with dotted columns for nested fields and empty cells for absent values."""
    columns = [name for name in RECORDS[0] if name != "channelOptIns"] + ["channelOptIns.email", "channelOptIns.push"]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for record in RECORDS:
        row = []
        for column in columns:
            if column.startswith("channelOptIns."):
                value = record.get("channelOptIns", {}).get(column.split(".", 1)[1])
            else:
                value = record.get(column)
            row.append("" if value is None else json.dumps(value) if isinstance(value, bool) else str(value))
        writer.writerow(row)
    return out.getvalue().encode()


def _candidate(customer: str, product: str, **features: float) -> dict[str, Any]:
    delivered = datetime(2025, 3, 12, 8, tzinfo=UTC)
    return Candidate(
        customer_id=customer,
        context=candidate_context(PROGRAM, MARKETPLACE),
        subject=Subject(type="PRODUCT", id=product, metadata={"category": "Books"}),
        attributes=CandidateAttributes(
            event_date=delivered,
            delivery_date=delivered,
            order_value=12.5,
            currency="USD",
            channel_eligibility={"email": True},
            customer_trust_score=0.8,
            review_quality_score=0.7,
            order_count=1,
        ),
        features=features,
    ).to_json()


def filter_output() -> dict[str, Any]:
    """A Filter output: four passed candidates (C1 twice, C2, C3) and one rejected.

    C1/P1 already has features: ``orderCount`` is replaced, ``legacyScore`` kept.
    """
    return {
        "programId": PROGRAM,
        "marketplace": MARKETPLACE,
        "dateRange": {"start": DATE_START, "end": DATE_END},
        "candidates": [
            _candidate("C1", "P1", orderCount=99.0, legacyScore=0.3),
            _candidate("C1", "P2"),
            _candidate("C2", "P5"),
            _candidate("C3", "P9"),
        ],
        "rejected": [_candidate("C4", "P1")],
        "metrics": {"inputCount": 5, "passedCount": 4, "rejectedCount": 1, "rejectionReasons": {"TRUST_SCORE_LOW": 1}},
    }


def job_arguments(execution_id: str, bucket: str, source_uri: str, *, date_end: str = DATE_END) -> dict[str, str]:
    """The Arguments the batch workflow's HeavyETL state passes, resolved for one execution."""
    return {
        "--execution-id": execution_id,
        "--input-bucket": bucket,
        "--input-key": f"executions/{execution_id}/Filter/output.json",
        "--output-bucket": bucket,
        "--output-key": f"executions/{execution_id}/HeavyETL/output.json",
        "--source-uri": source_uri,
        "--date-start": DATE_START,
        "--date-end": date_end,
    }

"""The floor: a plain streaming standard-library program doing the pipeline's logical work.

It is the peer row beside ceap's end-to-end run (``python -m benchmarks``, the ``e2e-*``
scenarios run both on the same file): what the same work costs with nothing but the
standard library, one process, one core. The work, stage by stage:

- ETL: read the JSON Lines source one line at a time; validate each order event as
  ``stages.etl.OrderEvent`` does (ids not blank, ISO dates, delivery not before the order,
  a finite order value >= 0, a three-letter currency, scores in [0, 1], ...) and count the
  malformed lines as errors (written to ``errors.jsonl``); keep the events of the payload's
  marketplace and date range; hash-partition them by (customer, product) into scratch
  files so that memory stays bounded; then per partition drop redelivered event ids and
  merge each candidate's events (latest order, latest delivery and its timing window, order
  value summed in the latest currency, latest opt-ins, trust and review quality, fraud and
  media flags, order ids).
- Filter: the same eight checks with the same thresholds (consumed, no eligible channel,
  no timing window, fraud, trust, review quality, order value, event age), every reason
  kept; rejected candidates go to ``rejected.jsonl`` with their rejection history.
- Score: both models of ``stages/config/score_models.json`` (the logistic propensity
  model's base variant with review-quality imputation, and the recency-value heuristic).
- Store: per batch of 1,000 candidates, read the stored rows by key, keep their creation
  time and consumed state, bump the version only when the content changed, and upsert
  the changed ones into SQLite (WAL, ``synchronous=NORMAL``, as the embedded candidate
  store) in one transaction.
- Reactive: the first channel of the priority list (push, email, inApp, sms) that the
  candidate opted in to and whose threshold (0.5) its primary score meets; claim the
  engagement (customer, subject, program, marketplace, timing window) in SQLite, the
  first claim winning; write one action per claimed engagement to ``actions.jsonl``.

    python benchmarks/floor.py PAYLOAD.json [--out DIR]

prints one JSON line with what it counted and its wall time. On the same file it counts
what ceap counts (on the example: 1,031 candidates, 581 stored, 473 actions) and writes the
same actions (the same ids, channels and scores; checked on 10,000 generated events). It imports nothing of ceap
(it reads the shipped model configuration as a JSON file), so it runs as a plain script.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sqlite3
import sys
import tempfile
import time
import uuid
import zlib
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "stages" / "config" / "score_models.json"

CHANNELS = ("email", "push", "sms", "inApp")
CHANNEL_PRIORITY = ("push", "email", "inApp", "sms")
MIN_TRUST, MIN_QUALITY, MIN_VALUE, MAX_AGE_DAYS, MIN_SCORE = 0.3, 0.4, 5.0, 30, 0.5
WINDOW_START_DAYS, WINDOW_END_DAYS, TTL_DAYS = 3, 30, 30
#: As ETL: one scratch partition per 3 MiB of source, so a partition's candidates fit in memory.
PARTITION_SOURCE_BYTES = 3 * 1024 * 1024
BATCH = 1000
_CURRENCY = re.compile(r"[A-Z]{3}\Z")
_IDS = ("eventId", "customerId", "orderId", "marketplace", "productId")

_SCHEMA = """
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS candidates (
    pk TEXT NOT NULL, sk TEXT NOT NULL, customer_id TEXT NOT NULL, subject_id TEXT NOT NULL,
    score REAL, channels TEXT NOT NULL, data TEXT NOT NULL, version INTEGER NOT NULL,
    consumed INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (pk, sk)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS engagement_claims (
    key TEXT PRIMARY KEY, execution_id TEXT NOT NULL, claimed_at TEXT NOT NULL
) WITHOUT ROWID;
"""
_GET = "SELECT data, version, consumed, created_at FROM candidates WHERE pk = ? AND sk = ?"
_UPSERT = """
INSERT INTO candidates (pk, sk, customer_id, subject_id, score, channels, data, version, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (pk, sk) DO UPDATE SET score = excluded.score, channels = excluded.channels, data = excluded.data,
    version = excluded.version, updated_at = excluded.updated_at
"""


class Malformed(ValueError):
    """An order event that ETL would refuse."""


def _no_constant(name: str) -> Any:
    raise Malformed(f"{name} is not a finite number")


def _time(value: Any, field: str) -> float:
    if not isinstance(value, str):
        raise Malformed(f"{field} must be an ISO 8601 date-time")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Malformed(f"{field} {value!r} is not a date-time") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _number(value: Any, field: str, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Malformed(f"{field} must be a number")
    try:
        number = float(value)
    except ValueError:
        raise Malformed(f"{field} {value!r} is not a number") from None
    if not math.isfinite(number) or (low is not None and number < low) or (high is not None and number > high):
        raise Malformed(f"{field} {value!r} is out of range")
    return number


def _flag(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise Malformed(f"{field} must be true or false")
    return value


def _count(value: Any, field: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise Malformed(f"{field} must be an integer >= {low}")
    return value


def order_event(line: bytes) -> dict[str, Any]:
    """One source line as a validated event (dates as epoch seconds); raises :class:`Malformed`."""
    try:
        e = json.loads(line, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as err:
        raise Malformed(f"not valid JSON: {err}") from None
    if not isinstance(e, dict):
        raise Malformed(f"expected a JSON object, got {type(e).__name__}")
    for field in _IDS:
        value = e.get(field)
        if not isinstance(value, str) or not value.strip():
            raise Malformed(f"{field} is missing or blank")
        e[field] = value.strip()
    e["orderDate"] = ordered = _time(e.get("orderDate"), "orderDate")
    delivered = e.get("deliveryDate")
    if delivered is not None:
        e["deliveryDate"] = delivered = _time(delivered, "deliveryDate")
        if delivered < ordered:
            raise Malformed("deliveryDate is before orderDate")
    e["orderValue"] = _number(e.get("orderValue"), "orderValue", low=0)
    if not isinstance(e.get("currency"), str) or not _CURRENCY.match(e["currency"]):
        raise Malformed("currency must be three capital letters")
    e["quantity"] = _count(e.get("quantity", 1), "quantity", 1)
    opt_ins = e.get("channelOptIns") or {}
    if not isinstance(opt_ins, dict) or not all(isinstance(v, bool) for v in opt_ins.values()):
        raise Malformed("channelOptIns must map channels to true or false")
    e["channelOptIns"] = opt_ins
    for field in ("customerTrustScore", "reviewQualityScore"):
        if e.get(field) is not None:
            e[field] = _number(e[field], field, low=0, high=1)
    e["fraudFlag"] = _flag(e.get("fraudFlag", False), "fraudFlag")
    e["mediaEligible"] = _flag(e.get("mediaEligible", False), "mediaEligible")
    e["priorReviewCount"] = _count(e.get("priorReviewCount", 0), "priorReviewCount", 0)
    if e.get("category") is not None and not isinstance(e["category"], str):
        raise Malformed("category must be a string")
    return e


def _isoformat(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _iso(ts: float) -> str:
    """As the stages' models write a UTC date-time: ``2025-03-01T10:00:00Z``."""
    return _isoformat(ts).replace("+00:00", "Z")


def _latest_known(events: list[dict[str, Any]], field: str) -> Any:
    return next((e[field] for e in reversed(events) if e.get(field) is not None), None)


def merge(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The candidate of one (customer, product) from its events, oldest first (as ETL merges)."""
    latest = events[-1]
    deliveries = [e["deliveryDate"] for e in events if e.get("deliveryDate") is not None]
    delivery = max(deliveries) if deliveries else None
    order_ids = list(dict.fromkeys(e["orderId"] for e in events))
    return {
        "customerId": latest["customerId"], "productId": latest["productId"],
        "category": _latest_known(events, "category"),
        "eventDate": latest["orderDate"], "deliveryDate": delivery,
        "window": (delivery + WINDOW_START_DAYS * 86400, delivery + WINDOW_END_DAYS * 86400) if delivery else None,
        "orderValue": round(sum(e["orderValue"] for e in events if e["currency"] == latest["currency"]), 2),
        "currency": latest["currency"],
        "mediaEligible": any(e["mediaEligible"] for e in events),
        "optIns": dict(latest["channelOptIns"]),
        "trust": _latest_known(events, "customerTrustScore"),
        "fraud": any(e["fraudFlag"] for e in events),
        "quality": _latest_known(events, "reviewQualityScore"),
        "priorReviews": max(e["priorReviewCount"] for e in events),
        "orderIds": order_ids, "orderCount": len(order_ids),
        "eventIds": [e["eventId"] for e in events],
        "consumed": False,
    }


def rejections(c: dict[str, Any], as_of: float) -> list[str]:
    """Every Filter check the candidate fails (reason codes, in the chain's order)."""
    reasons = []
    if c["consumed"]:
        reasons.append("ALREADY_CONSUMED")
    if not any(c["optIns"].get(ch) for ch in CHANNELS):
        reasons.append("CHANNEL_INELIGIBLE")
    if c["window"] is None:
        reasons.append("TIMING_WINDOW_MISSING")
    if c["fraud"]:
        reasons.append("FRAUD_DETECTED")
    if c["trust"] is None or c["trust"] < MIN_TRUST:
        reasons.append("TRUST_SCORE_LOW")
    if c["quality"] is not None and c["quality"] < MIN_QUALITY:
        reasons.append("QUALITY_SCORE_LOW")
    if c["orderValue"] < MIN_VALUE:
        reasons.append("ORDER_VALUE_LOW")
    if c["eventDate"] < as_of - MAX_AGE_DAYS * 86400:
        reasons.append("EVENT_TOO_OLD")
    return reasons


def _days(since: float | None, as_of: float) -> float | None:
    return None if since is None else max(0.0, (as_of - since) / 86400)


def _features(c: dict[str, Any], as_of: float) -> dict[str, float | None]:
    return {
        "logOrderValue": math.log1p(max(0.0, c["orderValue"])),
        "trustScore": c["trust"],
        "reviewQuality": c["quality"],
        "daysSinceDelivery": _days(c["deliveryDate"], as_of),
        "daysSinceEvent": _days(c["eventDate"], as_of),
        "mediaEligible": 1.0 if c["mediaEligible"] else 0.0,
        "logPriorReviewCount": math.log1p(c["priorReviews"]),
        "orderCount": float(c["orderCount"]),
    }


def _logistic(model: dict[str, Any], features: dict[str, float | None]) -> tuple[float, float, dict[str, Any]]:
    variant = model["base"]  # the enriched variant needs HeavyETL's aggregates, which the realtime flow has not
    z, imputed = variant["intercept"], []
    for name, coefficient in variant["coefficients"].items():
        value = features.get(name)
        if value is None and name in model.get("imputation", {}):
            value = model["imputation"][name]
            imputed.append(name)
        if value is None:
            raise ValueError(f"missing input {name}")
        z += coefficient * value
    value = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
    confidence = max(0.05, variant["confidence"] - model.get("imputationConfidencePenalty", 0.1) * len(imputed))
    return value, confidence, {"variant": "base", "logit": round(z, 6), "imputed": imputed}


def _recency_value(model: dict[str, Any], c: dict[str, Any], as_of: float) -> tuple[float, float, dict[str, Any]]:
    days = _days(c["deliveryDate"] or c["eventDate"], as_of)
    recency = 0.5 ** (days / model["halfLifeDays"])
    worth = min(1.0, math.log1p(max(0.0, c["orderValue"])) / math.log1p(model["valueCap"]))
    total = model["recencyWeight"] + model["valueWeight"]
    value = (model["recencyWeight"] * recency + model["valueWeight"] * worth) / total
    return value, model["confidence"], {"recency": round(recency, 6), "value": round(worth, 6)}


def scores(c: dict[str, Any], models: dict[str, Any], as_of: float, now: str) -> dict[str, dict[str, Any]]:
    """Every model's score (a failing model falls back to its configured value, as Score does)."""
    features = _features(c, as_of)
    out = {}
    for model_id, model in models.items():
        try:
            if model["kind"] == "logistic":
                value, confidence, metadata = _logistic(model, features)
            else:
                value, confidence, metadata = _recency_value(model, c, as_of)
            metadata = {"fallback": False, **metadata}
        except (ValueError, ArithmeticError) as err:
            value, confidence = model["fallback"]["value"], model["fallback"]["confidence"]
            metadata = {"fallback": True, "reason": str(err)}
        out[model_id] = {"modelId": model_id, "value": value, "confidence": confidence, "timestamp": now,
                         "metadata": metadata}
    return out


def engagement_key(c: dict[str, Any], program: str, market: str) -> str:
    window = c["window"]
    parts = [c["customerId"], "PRODUCT", c["productId"], program, market,
             _isoformat(window[0]) if window else "", _isoformat(window[1]) if window else ""]
    return hashlib.sha256("".join(f"{len(p)}:{p}|" for p in parts).encode()).hexdigest()[:32]


def _arm(program: str, customer: str) -> str:
    digest = hashlib.sha256(f"{program}|{customer}".encode()).digest()
    return "treatment" if int.from_bytes(digest[:4], "big") % 10_000 / 100 < 50 else "control"


#: Which filter of the chain gives each reason code.
FILTER_OF = {"ALREADY_CONSUMED": "eligibility", "CHANNEL_INELIGIBLE": "eligibility", "TIMING_WINDOW_MISSING": "eligibility",
             "FRAUD_DETECTED": "trust", "TRUST_SCORE_LOW": "trust", "QUALITY_SCORE_LOW": "quality",
             "ORDER_VALUE_LOW": "business", "EVENT_TOO_OLD": "business"}


def document(c: dict[str, Any], program: str, market: str, scored: dict[str, Any],
             rejected: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """A candidate as a JSON document: what the candidate store keeps (the timestamps live in their own
    columns), or with its ``rejectionHistory`` what the rejected output holds."""
    window = c["window"]
    return {
        "customerId": c["customerId"],
        "context": [{"type": "program", "id": program}, {"type": "marketplace", "id": market}],
        "subject": {"type": "PRODUCT", "id": c["productId"], "metadata": {"category": c["category"]} if c["category"] else {}},
        "scores": {k: {key: v for key, v in s.items() if key != "timestamp"} for k, s in scored.items()},
        "attributes": {
            "eventDate": _iso(c["eventDate"]), "deliveryDate": _iso(c["deliveryDate"]) if c["deliveryDate"] else None,
            "timingWindow": {"start": _iso(window[0]), "end": _iso(window[1])} if window else None,
            "orderValue": c["orderValue"], "currency": c["currency"], "mediaEligible": c["mediaEligible"],
            "channelEligibility": c["optIns"], "customerTrustScore": c["trust"], "fraudSuspected": c["fraud"],
            "reviewQualityScore": c["quality"], "priorReviewCount": c["priorReviews"], "orderCount": c["orderCount"],
            "orderIds": c["orderIds"], "sourceEventIds": c["eventIds"], "consumed": c["consumed"],
        },
        "metadata": {"sourceConnectorId": "order-events", "experimentTreatment": _arm(program, c["customerId"])},
        "rejectionHistory": rejected or [],
        "features": {},
    }


class Floor:
    """One run's state: the payload's scope, the open outputs and the counters."""

    def __init__(self, payload: dict[str, Any], out: Path) -> None:
        self.program, self.market = payload["programId"], payload["marketplace"]
        self.start = _time(payload["dateRange"]["start"], "dateRange.start")
        end = payload["dateRange"]["end"]
        # A date as the end covers its whole day (as stages.domain.DateRange); a date-time is the last instant.
        self.end = _time(end, "dateRange.end") + (86400 if len(end) == 10 else 1e-6)
        self.as_of = self.end  # Filter and Score measure age against the end of the date range
        config = json.loads(MODELS.read_text(encoding="utf-8"))
        self.models, self.primary = config["models"], config["primaryModel"]
        self.execution = str(uuid.uuid4())
        self.now = _iso(time.time())
        self.out = out
        self.counts: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.db = sqlite3.connect(out / "floor.sqlite3", isolation_level=None)
        self.db.executescript(_SCHEMA)

    def etl(self, source: Path) -> list[Path]:
        """Pass 1: validate, scope and partition every event; returns the scratch partitions."""
        partitions = max(1, min(4096, -(-source.stat().st_size // PARTITION_SOURCE_BYTES)))
        paths = [self.out / f"spill-{n:05d}.jsonl" for n in range(partitions)]
        spills = [path.open("w", encoding="utf-8") for path in paths]
        with source.open("rb") as lines, (self.out / "errors.jsonl").open("w", encoding="utf-8") as errors:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                self.counts["read"] += 1
                try:
                    e = order_event(line)
                except Malformed as err:
                    self.counts["errors"] += 1
                    errors.write(json.dumps({"line": number, "reason": str(err)}) + "\n")
                    continue
                if e["marketplace"] != self.market or not self.start <= e["orderDate"] < self.end:
                    self.counts["skipped"] += 1
                    continue
                e["line"] = number
                key = f"{e['customerId']}\x1f{e['productId']}".encode()
                spills[zlib.crc32(key) % partitions if partitions > 1 else 0].write(json.dumps(e) + "\n")
        for spill in spills:
            spill.close()
        return paths

    def candidates(self, path: Path) -> list[dict[str, Any]]:
        """Pass 2, one partition: drop redeliveries, merge each candidate's events."""
        by_candidate: dict[tuple[str, str], list[dict[str, Any]]] = {}
        seen: set[tuple[str, str, str]] = set()
        with path.open("rb") as lines:
            for line in lines:
                e = json.loads(line)
                identity = (e["customerId"], e["productId"], e["eventId"])
                if identity in seen:
                    self.counts["duplicates"] += 1
                    continue
                seen.add(identity)
                by_candidate.setdefault(identity[:2], []).append(e)
        path.unlink()
        return [merge(sorted(events, key=lambda e: (e["orderDate"], e["line"]))) for events in by_candidate.values()]

    def filter_and_score(self, merged: list[dict[str, Any]], rejected: Any) -> list[dict[str, Any]]:
        passed = []
        for c in merged:
            self.counts["candidates"] += 1
            reasons = rejections(c, self.as_of)
            if reasons:
                self.reasons.update(reasons)
                history = [{"filterId": FILTER_OF[code], "reasonCode": code, "timestamp": self.now} for code in reasons]
                rejected.write(json.dumps(document(c, self.program, self.market, {}, history)) + "\n")
                continue
            c["scores"] = scores(c, self.models, self.as_of, self.now)
            passed.append(c)
        self.counts["passed"] += len(passed)
        return passed

    def store(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Read the stored rows of a batch, merge, write the changed ones in one transaction."""
        pk = f"#PROGRAM#{self.program}#MARKETPLACE#{self.market}"
        keys = [(f"CUSTOMER#{c['customerId']}{pk}", f"SUBJECT#PRODUCT#{c['productId']}") for c in batch]
        read = self.db.execute
        read("BEGIN IMMEDIATE")  # read and write under one lock: nothing changes a row in between
        rows = []
        for c, key in zip(batch, keys):
            old = read(_GET, key).fetchone()
            c["consumed"] = bool(old and old[2])
            data = json.dumps(document(c, self.program, self.market, c["scores"]), separators=(",", ":"))
            channels = json.dumps(sorted(ch for ch in CHANNELS if c["optIns"].get(ch)))
            if old is None or old[0] != data:
                rows.append((*key, c["customerId"], c["productId"], c["scores"][self.primary]["value"], channels, data,
                             (old[1] + 1) if old else 1, old[3] if old else self.now, self.now))
        self.db.executemany(_UPSERT, rows)
        self.db.execute("COMMIT")
        self.counts["stored"] += len(batch)
        return batch

    def react(self, batch: list[dict[str, Any]], actions: Any) -> None:
        """Choose a channel, claim the engagements, write one action per claimed one."""
        chosen = []
        for c in batch:
            score = c["scores"][self.primary]["value"]
            channel = next((ch for ch in CHANNEL_PRIORITY if c["optIns"].get(ch) and score >= MIN_SCORE), None)
            if c["consumed"] or channel is None:
                self.counts["notActioned"] += 1
                continue
            chosen.append((c, channel, engagement_key(c, self.program, self.market)))
        if not chosen:
            return
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany("INSERT OR IGNORE INTO engagement_claims (key, execution_id, claimed_at) VALUES (?, ?, ?)",
                            [(key, self.execution, self.now) for _, _, key in chosen])
        holders = dict(self.db.execute(
            f"SELECT key, execution_id FROM engagement_claims WHERE key IN ({','.join('?' for _ in chosen)})",
            [key for _, _, key in chosen]))
        self.db.execute("COMMIT")
        for c, channel, key in chosen:
            if holders.get(key) != self.execution:
                self.counts["notActioned"] += 1
                continue
            window = c["window"]
            actions.write(json.dumps({
                "actionId": hashlib.sha256(f"{key}|{channel}".encode()).hexdigest()[:32],
                "executionId": self.execution, "programId": self.program, "marketplace": self.market,
                "customerId": c["customerId"], "subject": {"type": "PRODUCT", "id": c["productId"]},
                "channel": channel, "templateId": f"{self.program}.{channel}",
                "score": c["scores"][self.primary]["value"], "modelId": self.primary,
                "notBefore": _iso(window[0]), "notAfter": _iso(window[1]),
                "experimentTreatment": _arm(self.program, c["customerId"]), "createdAt": self.now,
            }) + "\n")
            self.counts["actions"] += 1


def run(payload: dict[str, Any], source: Path, out: Path) -> dict[str, Any]:
    """Do the work with its outputs in ``out``; return what it counted."""
    floor = Floor(payload, out)
    partitions = floor.etl(source)
    with (out / "rejected.jsonl").open("w", encoding="utf-8") as rejected, \
            (out / "actions.jsonl").open("w", encoding="utf-8") as actions:
        for path in partitions:
            passed = floor.filter_and_score(floor.candidates(path), rejected)
            for start in range(0, len(passed), BATCH):
                floor.react(floor.store(passed[start:start + BATCH]), actions)
    floor.db.close()
    return {**{k: floor.counts[k] for k in ("read", "errors", "skipped", "duplicates", "candidates", "passed",
                                             "stored", "actions")},
            "rejectionReasons": dict(sorted(floor.reasons.items()))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("payload", type=Path, help="the execution input: {programId, marketplace, dateRange, source}")
    parser.add_argument("--out", type=Path, help="where the database and the JSON Lines outputs go (default: a temporary folder)")
    args = parser.parse_args(argv)
    payload = json.loads(args.payload.read_text(encoding="utf-8"))
    source = (args.payload.parent / payload["source"]).resolve()
    with tempfile.TemporaryDirectory(prefix="ceap-floor-") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        began = time.perf_counter()
        counts = run(payload, source, out)
        wall = time.perf_counter() - began
    print(json.dumps({**counts, "wallSeconds": round(wall, 3), "recordsPerSecond": round(counts["read"] / wall)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

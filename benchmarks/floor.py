"""The floor: a plain streaming standard-library script doing the pipeline's logical work.

It reads the JSON Lines order events one line at a time, keeps those of the payload's
marketplace and date range, merges the events of each (customer, product), checks
eligibility (delivered, trust score, fraud, order value, an opted-in channel), computes a
logistic score, upserts the candidates into SQLite in batches and writes one action per
candidate above the threshold. It is the peer row beside ceap's end-to-end run: what the
same work costs with nothing but the standard library.

    python -m benchmarks.floor PAYLOAD.json [--db PATH] [--actions PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

CHANNELS = ("push", "email", "inApp", "sms")


def _date(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def run(payload: dict[str, Any], source: Path, db: Path, actions_path: Path) -> dict[str, int]:
    """Do the work; return what it counted."""
    start = _date(payload["dateRange"]["start"] + "T00:00:00+00:00")
    end = _date(payload["dateRange"]["end"] + "T00:00:00+00:00") + timedelta(days=1)
    market = payload["marketplace"]
    candidates: dict[tuple[str, str], dict[str, Any]] = {}
    read = errors = 0
    with source.open("rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            read += 1
            try:
                e = json.loads(line)
                if e["marketplace"] != market:
                    continue
                ordered = _date(e["orderDate"])
                if not start <= ordered < end:
                    continue
                value = float(e["orderValue"])
                key = (e["customerId"], e["productId"])
            except (ValueError, KeyError, TypeError):
                errors += 1
                continue
            c = candidates.setdefault(key, {"value": 0.0, "delivered": None})
            c["value"] += value
            c["trust"] = e.get("customerTrustScore")
            c["fraud"] = c.get("fraud", False) or bool(e.get("fraudFlag"))
            c["optIns"] = e.get("channelOptIns") or {}
            if e.get("deliveryDate"):
                c["delivered"] = e["deliveryDate"]
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE IF NOT EXISTS candidates (pk TEXT, sk TEXT, score REAL, data TEXT, PRIMARY KEY (pk, sk))")
    stored = actions = 0
    batch: list[tuple[str, str, float, str]] = []
    with actions_path.open("w", encoding="utf-8") as out:
        for (customer, product), c in candidates.items():
            trust = c.get("trust")
            channels = [ch for ch in CHANNELS if c["optIns"].get(ch)]
            if c["delivered"] is None or trust is None or trust < 0.3 or c["fraud"] or c["value"] < 5 or not channels:
                continue
            score = 1 / (1 + math.exp(-(-1.0 + 0.4 * math.log1p(c["value"]) + 1.5 * trust)))
            batch.append((f"CUSTOMER#{customer}#PROGRAM#{payload['programId']}#MARKETPLACE#{market}",
                          f"SUBJECT#PRODUCT#{product}", score, json.dumps(c)))
            if len(batch) >= 1000:
                conn.executemany("INSERT OR REPLACE INTO candidates VALUES (?, ?, ?, ?)", batch)
                stored += len(batch)
                batch = []
            if score >= 0.5:
                out.write(json.dumps({"customerId": customer, "productId": product, "channel": channels[0],
                                      "score": score}) + "\n")
                actions += 1
        conn.executemany("INSERT OR REPLACE INTO candidates VALUES (?, ?, ?, ?)", batch)
        stored += len(batch)
    conn.commit()
    conn.close()
    return {"read": read, "errors": errors, "candidates": len(candidates), "stored": stored, "actions": actions}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("payload", type=Path)
    args = parser.parse_args(argv)
    payload = json.loads(args.payload.read_text())
    source = (args.payload.parent / payload["source"]).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        counts = run(payload, source, Path(tmp) / "floor.sqlite3", Path(tmp) / "actions.jsonl")
        wall = time.perf_counter() - began
    import resource

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({**counts, "wallSeconds": round(wall, 2), "recordsPerSecond": round(counts["read"] / wall),
                      "peakRssMb": round(peak_mb, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

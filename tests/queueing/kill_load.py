"""The load of the kill -9 tests (``ceap pipe``, ``ceap serve``): one-order messages, some poison, and the checks.

Each message names a source file of one order of its own customer (``CK{i}``); a poison
message names a file that is not there, so its ETL fails permanently. After the kills and
restarts, :func:`assert_each_stored_once` holds the store to "nothing lost, nothing twice".
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from adapters.local.queue import SQLiteQueues
from ceap_engine.ports import QueueCounts, ReceivedMessage

ROOT = Path(__file__).resolve().parents[2]
QUEUE, DLQ = "ceap-workflow-realtime-queue", "ceap-workflow-realtime-dlq"
# One order the realtime workflow stores and acts on; each message gets its own customer.
ORDER = {"eventId": "evt-7702d7caa8b4", "customerId": "C100000", "orderId": "ORD-353-4735622"}


def order_line(i: int) -> str:
    """The example order as customer ``CK{i}``'s (a JSON line)."""
    for line in (ROOT / "examples" / "data" / "orders.jsonl").read_text().splitlines():
        if ORDER["eventId"] in line:
            record = json.loads(line)
            record.update(eventId=f"evt-k{i}", customerId=f"CK{i}", orderId=f"ORD-K-{i}")
            return json.dumps(record)
    raise AssertionError("the example order is gone from examples/data/orders.jsonl")


@dataclass
class Load:
    sources: Path
    payloads: list[dict]
    poison: set[int]


def make_load(folder: Path, messages: int, rng: random.Random, *, always_poison: int) -> Load:
    """``messages`` payloads under ``folder``, about 10% of them poison (and ``always_poison``)."""
    folder.mkdir()
    poison = {i for i in range(messages) if rng.random() < 0.1} | {always_poison}
    payloads = []
    for i in range(messages):
        source = folder / f"m{i}.jsonl"
        if i not in poison:
            source.write_text(order_line(i) + "\n")
        payloads.append({"programId": "review-solicitation", "marketplace": "US",
                         "dateRange": {"start": "2025-03-01", "end": "2025-04-04"}, "source": str(source)})
    return Load(folder, payloads, poison)


def queue_state(queue_file: Path) -> tuple[QueueCounts, list[ReceivedMessage]]:
    """The realtime queue's counts and its DLQ's messages, read from the queue file."""

    async def read() -> tuple[QueueCounts, list[ReceivedMessage]]:
        with SQLiteQueues(queue_file) as queues:
            return await queues.counts(QUEUE), await queues.peek(DLQ, 1000)

    return asyncio.run(read())


def assert_each_stored_once(load: Load, store: Path, queue_file: Path) -> None:
    """Nothing left on the queue; exactly the poison in the DLQ after 3 deliveries; one row and one action each."""
    counts, dead = queue_state(queue_file)
    assert counts == QueueCounts()  # nothing left behind, nothing in flight
    dead_ids = {json.loads(m.body)["source"] for m in dead}
    assert dead_ids == {str(load.sources / f"m{i}.jsonl") for i in load.poison}  # only the poison is in the DLQ ...
    assert all(m.receive_count == 3 for m in dead)  # ... after exactly 3 deliveries, kills or not
    db = sqlite3.connect(store / "candidates.sqlite3")
    rows = db.execute("SELECT customer_id, COUNT(*) FROM candidates WHERE customer_id LIKE 'CK%' "
                      "GROUP BY customer_id").fetchall()
    db.close()
    stored = {f"CK{i}" for i in range(len(load.payloads)) if i not in load.poison}
    # Every other message was stored, each exactly once, however often it was delivered.
    assert dict(rows) == dict.fromkeys(stored, 1)
    actions: dict[str, set] = {}
    for path in (store / "buckets").rglob("Reactive/actions-*.jsonl"):  # the actions parts of every execution
        for line in path.read_text().splitlines():
            action = json.loads(line)
            actions.setdefault(action["customerId"], set()).add((action.get("subjectId"), action["channel"]))
    assert set(actions) == stored
    assert all(len(identities) == 1 for identities in actions.values())  # one action identity per message

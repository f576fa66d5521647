"""``ceap pipe --local`` killed with ``kill -9`` at seeded moments and restarted: nothing is lost."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from adapters.local.queue import SQLiteQueues
from ceap_engine.pipeline import REALTIME
from ceap_engine.ports import OutgoingMessage, QueueCounts
from ceap_engine.queueing.pipe import create_workflow_queues

ROOT = Path(__file__).resolve().parents[2]
# One order the realtime workflow stores and acts on; each message gets its own customer.
ORDER = {"eventId": "evt-7702d7caa8b4", "customerId": "C100000", "orderId": "ORD-353-4735622"}


def _order_line(i: int) -> str:
    for line in (ROOT / "examples" / "data" / "orders.jsonl").read_text().splitlines():
        if ORDER["eventId"] in line:
            record = json.loads(line)
            record.update(eventId=f"evt-k{i}", customerId=f"CK{i}", orderId=f"ORD-K-{i}")
            return json.dumps(record)
    raise AssertionError("the example order is gone from examples/data/orders.jsonl")


async def _send(store: Path, payloads: list[dict]) -> None:
    with SQLiteQueues(store / "queues.sqlite3") as queues:
        queue, _ = await create_workflow_queues(queues, REALTIME)
        for start in range(0, len(payloads), 10):
            batch = [OutgoingMessage(json.dumps(p), id=str(i)) for i, p in enumerate(payloads[start:start + 10])]
            assert not (await queues.send_batch(queue, batch)).failed


async def _state(store: Path) -> tuple[QueueCounts, list]:
    with SQLiteQueues(store / "queues.sqlite3") as queues:
        return await queues.counts("ceap-workflow-realtime-queue"), await queues.peek("ceap-workflow-realtime-dlq", 1000)


def test_a_pipe_killed_at_seeded_moments_and_restarted_loses_nothing_and_stores_once(tmp_path: Path) -> None:
    seed = 1609
    print(f"kill -9 seed: {seed}")
    rng = random.Random(seed)
    store, sources = tmp_path / "store", tmp_path / "sources"
    sources.mkdir()
    messages = 200  # enough work that every seeded kill lands mid-run, on a fast machine too
    poison = {i for i in range(messages) if rng.random() < 0.1} | {3}
    payloads = []
    for i in range(messages):
        source = sources / f"m{i}.jsonl"
        if i not in poison:
            source.write_text(_order_line(i) + "\n")
        payloads.append({"programId": "review-solicitation", "marketplace": "US",
                         "dateRange": {"start": "2025-03-01", "end": "2025-04-04"}, "source": str(source)})
    asyncio.run(_send(store, payloads))

    kills = [rng.uniform(1.0, 2.5) for _ in range(3)]
    print(f"kill -9 after {', '.join(f'{k:.2f}' for k in kills)} s of each run")
    command = [sys.executable, "-m", "ceap_engine.cli", "pipe", "--local", "--store", str(store), "--format", "json"]
    killed = 0
    for round_ in range(len(kills) + 3):
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = process.communicate(timeout=kills[round_] if round_ < len(kills) else 300)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)  # the seeded moment: no clean shutdown
            process.communicate()
            killed += 1
            continue
        assert process.returncode in (0, 1), err
        counts, dead = asyncio.run(_state(store))
        if counts == QueueCounts():
            break
    assert killed >= 1  # at least one run really was killed mid-way

    counts, dead = asyncio.run(_state(store))
    assert counts == QueueCounts()  # nothing left behind, nothing in flight
    dead_ids = {json.loads(m.body)["source"] for m in dead}
    assert dead_ids == {str(sources / f"m{i}.jsonl") for i in poison}  # only the poison is in the DLQ ...
    assert all(m.receive_count == 3 for m in dead)  # ... after exactly 3 deliveries
    db = sqlite3.connect(store / "candidates.sqlite3")
    rows = db.execute("SELECT customer_id, COUNT(*) FROM candidates WHERE customer_id LIKE 'CK%' "
                      "GROUP BY customer_id").fetchall()
    db.close()
    # Every other message was stored, each exactly once, however often it was delivered.
    assert dict(rows) == {f"CK{i}": 1 for i in range(messages) if i not in poison}
    actions: dict[str, set] = {}
    for path in (store / "buckets").rglob("Reactive/actions-*.jsonl"):
        for line in path.read_text().splitlines():
            action = json.loads(line)
            actions.setdefault(action["customerId"], set()).add((action.get("subjectId"), action["channel"]))
    assert set(actions) == {f"CK{i}" for i in range(messages) if i not in poison}
    assert all(len(identities) == 1 for identities in actions.values())  # one action identity per message

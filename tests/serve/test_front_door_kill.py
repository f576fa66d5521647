"""``ceap serve`` killed with ``kill -9`` mid-load at seeded moments and restarted: no message lost, stored once."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import time
from pathlib import Path

from adapters.local.queue import SQLiteQueues
from ceap_engine.cli.serve import running_serve
from ceap_engine.ports import QueueCounts
from tests.queueing.test_pipe_kill import _order_line
from tests.serve.conftest import start_server

QUEUE, DLQ = "ceap-workflow-realtime-queue", "ceap-workflow-realtime-dlq"


async def _state(data: Path) -> tuple[QueueCounts, list]:
    with SQLiteQueues(data / "queues.sqlite3") as queues:
        return await queues.counts(QUEUE), await queues.peek(DLQ, 1000)


def test_serve_killed_mid_load_and_restarted_loses_no_message_and_stores_each_once(tmp_path: Path) -> None:
    seed = 2417
    print(f"kill -9 seed: {seed}")
    rng = random.Random(seed)
    data, sources = tmp_path / "data", tmp_path / "sources"
    sources.mkdir()
    messages = 200
    poison = {i for i in range(messages) if rng.random() < 0.1} | {7}
    bodies = []
    for i in range(messages):
        source = sources / f"m{i}.jsonl"
        if i not in poison:
            source.write_text(_order_line(i) + "\n")
        bodies.append(json.dumps({"programId": "review-solicitation", "marketplace": "US",
                                  "dateRange": {"start": "2025-03-01", "end": "2025-04-04"}, "source": str(source)}))
    kills = [rng.uniform(0.5, 2.0) for _ in range(3)]
    print(f"kill -9 after {', '.join(f'{k:.2f}' for k in kills)} s of each run")

    server = start_server(data, "--clock", "virtual")
    sqs = server.sqs()
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    for start in range(0, messages, 10):
        batch = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start:start + 10])]
        assert not sqs.send_message_batch(QueueUrl=url, Entries=batch).get("Failed")
    interrupted = 0
    for moment in kills:
        time.sleep(moment)  # the seeded moment of this run
        server.kill()  # no shutdown hook runs
        counts, _ = asyncio.run(_state(data))
        interrupted += counts != QueueCounts()
        assert running_serve(data) is None  # its serve.json is left behind, and nothing answers there
        server = start_server(data, "--clock", "virtual")
    assert interrupted >= 1  # at least one kill landed mid-load

    deadline = time.monotonic() + 120
    while asyncio.run(_state(data))[0] != QueueCounts():
        assert time.monotonic() < deadline, "the queue did not empty after the restarts"
        time.sleep(0.1)
    server.stop()
    assert not (data / "serve.json").exists()  # a clean stop withdraws it

    counts, dead = asyncio.run(_state(data))
    assert counts == QueueCounts()
    assert {json.loads(m.body)["source"] for m in dead} == {str(sources / f"m{i}.jsonl") for i in poison}
    assert all(m.receive_count == 3 for m in dead)  # exactly 3 deliveries, kills or not
    db = sqlite3.connect(data / "store" / "candidates.sqlite3")
    rows = db.execute("SELECT customer_id, COUNT(*) FROM candidates WHERE customer_id LIKE 'CK%' "
                      "GROUP BY customer_id").fetchall()
    db.close()
    # Every other message was stored, each exactly once, however often it was delivered.
    assert dict(rows) == {f"CK{i}": 1 for i in range(messages) if i not in poison}
    actions: dict[str, set] = {}
    for path in (data / "store" / "buckets").rglob("Reactive/actions.jsonl"):
        for line in path.read_text().splitlines():
            action = json.loads(line)
            actions.setdefault(action["customerId"], set()).add((action.get("subjectId"), action["channel"]))
    assert set(actions) == {f"CK{i}" for i in range(messages) if i not in poison}
    assert all(len(identities) == 1 for identities in actions.values())

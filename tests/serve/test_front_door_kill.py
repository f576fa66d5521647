"""``ceap serve`` killed with ``kill -9`` mid-load at seeded moments and restarted: no message lost, stored once."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from ceap_engine.cli.serve import running_serve
from ceap_engine.ports import QueueCounts
from tests.queueing.kill_load import QUEUE, assert_each_stored_once, make_load, queue_state
from tests.serve.conftest import start_server


def test_serve_killed_mid_load_and_restarted_loses_no_message_and_stores_each_once(tmp_path: Path) -> None:
    seed = 2417
    print(f"kill -9 seed: {seed}")
    rng = random.Random(seed)
    data = tmp_path / "data"
    load = make_load(tmp_path / "sources", 200, rng, always_poison=7)
    kills = [rng.uniform(0.5, 2.0) for _ in range(3)]
    print(f"kill -9 after {', '.join(f'{k:.2f}' for k in kills)} s of each run")

    server = start_server(data, "--clock", "virtual")
    sqs = server.sqs()
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    for start in range(0, len(load.payloads), 10):
        batch = [{"Id": str(i), "MessageBody": json.dumps(p)} for i, p in enumerate(load.payloads[start:start + 10])]
        assert not sqs.send_message_batch(QueueUrl=url, Entries=batch).get("Failed")
    interrupted = 0
    for moment in kills:
        time.sleep(moment)  # the seeded moment of this run
        server.kill()  # no shutdown hook runs
        interrupted += queue_state(data / "queues.sqlite3")[0] != QueueCounts()
        assert running_serve(data) is None  # its serve.json is left behind, and nothing answers there
        server = start_server(data, "--clock", "virtual")
    assert interrupted >= 1  # at least one kill landed mid-load

    deadline = time.monotonic() + 120
    while queue_state(data / "queues.sqlite3")[0] != QueueCounts():
        assert time.monotonic() < deadline, "the queue did not empty after the restarts"
        time.sleep(0.1)
    server.stop()
    assert not (data / "serve.json").exists()  # a clean stop withdraws it

    assert_each_stored_once(load, data / "store", data / "queues.sqlite3")

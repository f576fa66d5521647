"""``ceap pipe --local`` killed with ``kill -9`` at seeded moments and restarted: nothing is lost."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

from adapters.local.queue import SQLiteQueues
from ceap_engine.pipeline import REALTIME
from ceap_engine.ports import OutgoingMessage, QueueCounts
from ceap_engine.queueing.pipe import create_workflow_queues
from tests.queueing.kill_load import ROOT, assert_each_stored_once, make_load, queue_state


async def _send(store: Path, payloads: list[dict]) -> None:
    with SQLiteQueues(store / "queues.sqlite3") as queues:
        queue, _ = await create_workflow_queues(queues, REALTIME)
        for start in range(0, len(payloads), 10):
            batch = [OutgoingMessage(json.dumps(p), id=str(i)) for i, p in enumerate(payloads[start:start + 10])]
            assert not (await queues.send_batch(queue, batch)).failed


def test_a_pipe_killed_at_seeded_moments_and_restarted_loses_nothing_and_stores_once(tmp_path: Path) -> None:
    seed = 1609
    print(f"kill -9 seed: {seed}")
    rng = random.Random(seed)
    store = tmp_path / "store"
    # 200: enough work that every seeded kill lands mid-run, on a fast machine too
    load = make_load(tmp_path / "sources", 200, rng, always_poison=3)
    asyncio.run(_send(store, load.payloads))

    # The seeded moments are counted in deliveries, not seconds: a whole drain takes about a second
    # on a fast machine and much longer on a loaded one, so a kill after N seconds may come after
    # the end, or before the first delivery. Each kill lands right after the Nth delivery's line,
    # while the Pipe goes on with the next message.
    kills = [rng.randint(2, 8) for _ in range(3)]
    print(f"kill -9 after {', '.join(map(str, kills))} deliveries of each run")
    command = [sys.executable, "-m", "ceap_engine.cli", "pipe", "--local", "--store", str(store)]
    killed = 0
    for round_ in range(len(kills) + 3):
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        guard = threading.Timer(300, process.kill)  # a hung pipe fails the test, it does not hang it
        guard.start()
        try:
            if round_ < len(kills):
                delivered = 0
                assert process.stdout is not None
                for line in process.stdout:  # one line per delivery, flushed as it goes
                    delivered += " message " in line
                    if delivered == kills[round_]:
                        os.kill(process.pid, signal.SIGKILL)  # the seeded moment: no clean shutdown
                        break
                _, err = process.communicate()
                if delivered == kills[round_]:
                    killed += 1
                    continue
            else:
                _, err = process.communicate()
        finally:
            guard.cancel()
        assert process.returncode in (0, 1), err
        if queue_state(store / "queues.sqlite3")[0] == QueueCounts():
            break
    assert killed == len(kills)  # every seeded run really was killed mid-way

    assert_each_stored_once(load, store, store / "queues.sqlite3")

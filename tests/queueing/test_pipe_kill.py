"""``ceap pipe --local`` killed with ``kill -9`` at seeded moments and restarted: nothing is lost."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
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
        if queue_state(store / "queues.sqlite3")[0] == QueueCounts():
            break
    assert killed >= 1  # at least one run really was killed mid-way

    assert_each_stored_once(load, store, store / "queues.sqlite3")

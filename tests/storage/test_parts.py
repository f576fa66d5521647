"""Part writers sharing a memory budget (ceap_engine.storage.parts.SharedBudget)."""

import asyncio
import random

import pytest

from ceap_engine.storage.memory import MemoryObjectStore
from ceap_engine.storage.parts import PartWriter, SharedBudget, split_lines


class CountingStore(MemoryObjectStore):
    """Counts the puts in flight at once (each put waits a loop turn, as a real write does)."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = self.most_in_flight = 0

    async def put(self, bucket, key, data, content_type="application/octet-stream"):
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0)
        await super().put(bucket, key, data, content_type)
        self.in_flight -= 1


async def test_the_writers_stay_within_their_budget_and_write_every_line_once_in_order():
    store = CountingStore()
    writers = SharedBudget([PartWriter(store, "bkt", lambda n, p=p: f"p{p:02d}-{n:04d}", max_bytes=2_000)
                            for p in range(20)], budget=5_000, concurrency=3)
    rnd = random.Random(7)
    sent: list[list[bytes]] = [[] for _ in range(20)]
    for batch in range(200):
        for i in range(rnd.randrange(1, 30)):
            p = rnd.randrange(20)
            line = b"%d-%d-" % (batch, i) + b"x" * rnd.randrange(0, 120)
            sent[p].append(line)
            if not writers[p].try_add(line):
                await writers[p].add_line(line)
        await writers.trim()
        assert writers.buffered_bytes <= 5_000
    written = await writers.close()

    assert writers.buffered_bytes == 0 and len(written) == 20
    for p, parts in enumerate(written):
        got = [line for part in parts for line in split_lines(await store.get("bkt", part.key))]
        assert got == sent[p]
        assert sum(part.records for part in parts) == len(sent[p])
    assert sum(len(parts) for parts in written) > 3 * 20  # trims wrote parts early, beside the full ones
    assert store.most_in_flight == 3  # writes went in parallel, never more than `concurrency` at once


async def test_a_trim_within_the_budget_writes_nothing():
    store = MemoryObjectStore()
    writers = SharedBudget([PartWriter(store, "bkt", lambda n, p=p: f"p{p}-{n}") for p in range(3)], budget=100)
    for p in range(3):
        assert writers[p].try_add(b"x" * 30)
    await writers.trim()
    assert writers.buffered_bytes == 93 and await store.list("bkt") == []


@pytest.mark.parametrize("run", [1, 3, 7, 50])
async def test_lines_added_in_runs_make_the_parts_they_make_one_by_one(run: int) -> None:
    lines = [b"x" * (n % 13 + 1) for n in range(50)]
    made = {}
    for how in ("one by one", "in runs"):
        store = MemoryObjectStore()
        writer = PartWriter(store, "bkt", lambda n: f"p{n}", max_records=8, max_bytes=60)
        if how == "one by one":
            for line in lines:
                await writer.add_line(line)
        else:
            for start in range(0, len(lines), run):
                await writer.add_lines(lines[start : start + run])
        parts = await writer.close()
        made[how] = [(p.key, p.records, p.bytes, await store.get("bkt", p.key)) for p in parts]
    assert made["in runs"] == made["one by one"]
    assert b"".join(body for *_, body in made["in runs"]) == b"".join(line + b"\n" for line in lines)
    assert all(records <= 8 and size <= 60 for _, records, size, _ in made["in runs"])

"""MapRun: the limiter UpdateMapRun resizes, the tolerated failures, and the counts DescribeMapRun shows."""

from __future__ import annotations

import asyncio

from ceap_engine.asl.map_run import MapRun, allowed_failures
from ceap_engine.errors import StatesError
from ceap_engine.runtime.clock import VirtualClock

ARN = "arn:aws:states:us-east-1:123456789012:mapRun:m/Fan:1"
MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:m/Fan"


def test_allowed_failures_takes_whichever_allows_more() -> None:
    assert allowed_failures(None, None, 10) == 0
    assert allowed_failures(1, 50, 10) == 5
    assert allowed_failures(7, 50, 10) == 7
    assert allowed_failures(None, 33.3, 10) == 3


def test_raising_max_concurrency_starts_the_waiting_children() -> None:
    async def scenario() -> list[int]:
        run = MapRun(ARN, "exec", MACHINE, VirtualClock(), [1, 1, 1], max_concurrency=1)
        await run.acquire()
        waiting = [asyncio.ensure_future(run.acquire()) for _ in range(2)]
        await asyncio.sleep(0)
        before = sum(w.done() for w in waiting)
        run.update(max_concurrency=3)
        await asyncio.wait_for(asyncio.gather(*waiting), 1)
        return [before, run._running]

    assert asyncio.run(scenario()) == [0, 3]


def test_children_are_counted_by_status_and_by_items() -> None:
    async def scenario() -> MapRun:
        run = MapRun(ARN, "exec", MACHINE, VirtualClock(), [2, 2, 1], child_type="EXPRESS", tolerated_count=1)

        async def ok() -> str:
            return "ok"

        async def bad() -> None:
            raise StatesError("Item.Bad", "no")

        await run.run_child(0, {"Items": [1, 2]}, None, ok)
        try:
            await run.run_child(2, {"Items": [5]}, None, bad)
        except StatesError:
            pass
        return run

    run = asyncio.run(scenario())
    assert run.tolerated == 1 and ":express:m/Fan:" in run.children[0].arn
    counts, items = run.counts(), run.counts(by_items=True)
    assert (counts["succeeded"], counts["failed"], counts["pending"], counts["total"]) == (1, 1, 1, 3)
    assert (items["succeeded"], items["failed"], items["pending"], items["total"]) == (2, 1, 2, 5)
    run.finish("SUCCEEDED")
    assert run.counts()["failuresNotRedrivable"] == 1

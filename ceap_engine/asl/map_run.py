"""A Distributed Map run while it runs: its children, their counts, and the settings UpdateMapRun changes.

The Distributed Map state makes one :class:`MapRun` per run and reports it to the engine's
:class:`MapRuns` (when it has one): an endpoint answers DescribeMapRun, UpdateMapRun and
ListExecutions by ``mapRunArn`` from there. ``max_concurrency`` and the tolerated failures
may change while the run goes on, as UpdateMapRun changes them on AWS: children waiting for
a slot start when the limit rises, and the next failure is judged by the new threshold.

Example::

    run = MapRun(arn, execution_arn, "arn:...:stateMachine:m/Fan", clock=clock, items=[1, 1, 1],
                 child_type="EXPRESS", max_concurrency=1)
    run.update(max_concurrency=3)   # the two waiting children start
    run.counts()["succeeded"]
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ceap_engine.errors import StatesError

__all__ = ["ChildExecution", "MapRun", "MapRuns", "allowed_failures"]


def allowed_failures(count: int | None, percentage: float | None, total: int) -> int:
    """How many failed children a run tolerates: the count or the percentage, whichever allows more."""
    allowed = 0
    if count is not None:
        allowed = max(allowed, count)
    if percentage is not None:
        allowed = max(allowed, math.floor(total * percentage / 100))
    return allowed


@dataclass
class ChildExecution:
    """One child workflow execution of a run (items: how many items its input holds)."""

    arn: str
    name: str
    index: int
    items: int
    input: Any
    start_date: float
    status: str = "RUNNING"
    stop_date: float | None = None
    output: Any = None
    error: str | None = None
    cause: str | None = None
    frame: Any = None  # the child's frame: its execution's history, once it runs


@dataclass
class MapRun:
    """One Distributed Map run: the limiter of its children and their statuses."""

    arn: str
    execution_arn: str
    state_machine_arn: str  # the children's: ``arn:...:stateMachine:<machine>/<label>``
    clock: Any
    items: list[int]  # items per child, in child order
    child_type: str = "STANDARD"
    max_concurrency: int = 0
    tolerated_count: int | None = None
    tolerated_percentage: float | None = None
    start_date: float = 0.0
    status: str = "RUNNING"
    stop_date: float | None = None
    results_written: bool = False
    children: list[ChildExecution] = field(default_factory=list)
    _running: int = 0
    _waiters: deque[asyncio.Future] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.start_date = self.start_date or self.clock.time()

    # -- settings --------------------------------------------------------------------
    @property
    def tolerated(self) -> int:
        return allowed_failures(self.tolerated_count, self.tolerated_percentage, len(self.items))

    def update(self, *, max_concurrency: int | None = None, tolerated_count: int | None = None,
               tolerated_percentage: float | None = None) -> None:
        """Change the run's settings (UpdateMapRun); waiting children start if the limit rose."""
        if max_concurrency is not None:
            self.max_concurrency = max_concurrency
        if tolerated_count is not None:
            self.tolerated_count = tolerated_count
        if tolerated_percentage is not None:
            self.tolerated_percentage = tolerated_percentage
        self._wake()

    # -- the limiter (the interface of an asyncio.Semaphore, with a limit that may change) ----
    def _free(self) -> bool:
        return self.max_concurrency <= 0 or self._running < self.max_concurrency

    async def acquire(self) -> None:
        while not self._free():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                else:  # woken, then cancelled: the slot goes to the next one
                    self._wake()
                raise
        self._running += 1

    def release(self) -> None:
        self._running -= 1
        self._wake()

    def _wake(self) -> None:
        """Wake as many waiting children, first come first, as there are free slots."""
        slots = len(self._waiters) if self.max_concurrency <= 0 else self.max_concurrency - self._running
        while slots > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                slots -= 1

    # -- children --------------------------------------------------------------------
    async def run_child(self, index: int, value: Any, frame: Any, running: Callable[[], Awaitable[Any]]) -> Any:
        """Run one child (``running()``), recording its status as a child execution."""
        name = str(uuid.uuid4())
        kind = "express" if self.child_type == "EXPRESS" else "execution"
        machine = self.state_machine_arn.split(":stateMachine:", 1)
        child = ChildExecution(f"{machine[0]}:{kind}:{machine[1]}:{name}", name, index, self.items[index], value,
                               self.clock.time(), frame=frame)
        self.children.append(child)
        try:
            child.output = await running()
        except asyncio.CancelledError:
            self._end(child, "ABORTED")
            raise
        except StatesError as err:
            self._end(child, "TIMED_OUT" if err.error == "States.Timeout" else "FAILED", err.error, err.cause)
            raise
        self._end(child, "SUCCEEDED")
        return child.output

    def _end(self, child: ChildExecution, status: str, error: str | None = None, cause: str | None = None) -> None:
        child.status, child.stop_date, child.error, child.cause = status, self.clock.time(), error, cause

    def finish(self, status: str) -> None:
        self.status = status
        self.stop_date = self.clock.time()

    def counts(self, *, by_items: bool = False) -> dict[str, int]:
        """``executionCounts`` (or ``itemCounts``) as DescribeMapRun has them."""
        weight = (lambda c: c.items) if by_items else (lambda c: 1)
        total = sum(self.items) if by_items else len(self.items)
        tally = dict.fromkeys(("running", "succeeded", "failed", "timedOut", "aborted"), 0)
        key = {"RUNNING": "running", "SUCCEEDED": "succeeded", "FAILED": "failed", "TIMED_OUT": "timedOut",
               "ABORTED": "aborted"}
        for child in self.children:
            tally[key[child.status]] += weight(child)
        started = sum(tally.values())
        unsuccessful = tally["failed"] + tally["timedOut"] + tally["aborted"]
        written = tally["succeeded"] + unsuccessful if self.results_written else 0
        return {"pending": total - started, **tally, "total": total, "resultsWritten": written,
                "failuresNotRedrivable": unsuccessful if self.status != "RUNNING" else 0, "pendingRedrive": 0}


class MapRuns:
    """The map runs of an engine, by ARN; ``on_end`` hooks see each run that ended."""

    def __init__(self) -> None:
        self.runs: dict[str, MapRun] = {}
        self.on_end: list[Callable[[MapRun], None]] = []

    def started(self, run: MapRun) -> None:
        self.runs[run.arn] = run

    def ended(self, run: MapRun) -> None:
        for hook in self.on_end:
            hook(run)

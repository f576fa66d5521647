"""Measuring a run: the concurrency-limited driver, latency percentiles, peak RSS, result rows.

Every scenario drives its executions the same way (:func:`drive`): ``concurrency``
workers, each starting one execution (one asyncio task, as an engine needs),
awaiting it and starting the next, until ``executions`` have run. Only the
executions in flight are alive at any time, so a run of 100k executions needs
no more memory than a run of 1k, apart from one float per execution for its
latency (an ``array('d')``: 0.8 MB at 100k).

Example::

    run = asyncio.run(drive(1000, 10, lambda i: asyncio.sleep(0)))
    row = result_row("sleep", run, transitions=0)
"""

from __future__ import annotations

import asyncio
import math
import resource
import sys
import time
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["REQUIRED_KEYS", "Run", "drive", "peak_rss_mib", "percentile", "result_row"]

#: The keys every result row has, in the order of the JSON document the issue specifies.
REQUIRED_KEYS = (
    "name",
    "executions",
    "concurrency",
    "executions_per_s",
    "transitions_per_s",
    "p50_ms",
    "p99_ms",
    "peak_rss_mib",
)


@dataclass
class Run:
    """What :func:`drive` measured: wall time, each execution's latency (seconds), and
    this process's CPU time over the run (well below the wall time: the machine was busy)."""

    executions: int
    concurrency: int
    wall_s: float
    latencies_s: array
    cpu_s: float | None = None


async def drive(executions: int, concurrency: int, run_one: Callable[[int], Awaitable[Any]]) -> Run:
    """Run ``run_one(0) .. run_one(executions - 1)`` with at most ``concurrency`` in flight.

    The latency of one execution is the wall time from the call of
    ``run_one`` (which starts it) to its end, so at high concurrency it
    includes the time the execution waits for the event loop.

    >>> run = asyncio.run(drive(4, 2, lambda i: asyncio.sleep(0)))
    >>> run.executions, run.concurrency, len(run.latencies_s)
    (4, 2, 4)
    """
    if executions < 1 or concurrency < 1:
        raise ValueError(f"executions and concurrency must be at least 1, got {executions} and {concurrency}")
    latencies = array("d", bytes(8 * executions))
    next_index = 0
    clock = time.perf_counter

    async def worker() -> None:
        nonlocal next_index
        while next_index < executions:
            index = next_index
            next_index += 1
            started = clock()
            await run_one(index)
            latencies[index] = clock() - started

    workers = min(concurrency, executions)
    cpu_started = time.process_time()
    started = clock()
    await asyncio.gather(*(worker() for _ in range(workers)))
    wall = clock() - started
    return Run(executions, concurrency, wall, latencies, time.process_time() - cpu_started)


def percentile(values: array | list[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` 0.5 is the median).

    >>> percentile([4.0, 1.0, 3.0, 2.0], 0.5), percentile([4.0, 1.0, 3.0, 2.0], 0.99)
    (2.0, 4.0)
    """
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    # ceil(fraction * n), minus a hair so 0.5 * 4 is rank 2, not 3 after float error
    rank = max(1, math.ceil(fraction * len(ordered) - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def current_rss_mib() -> float | None:
    """This process's resident set size now, in MiB (``None`` where /proc is missing)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * resource.getpagesize() / (1024 * 1024)


def result_row(name: str, run: Run, *, transitions: int, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """One entry of ``results``: the required keys (rounded for reading) plus ``details``.

    ``transitions`` is the total number of state transitions of the run;
    ``peak_rss_mib`` is read when the row is made, so make it last.
    ``details.executions_per_cpu_s`` is the rate over this process's CPU time.
    """
    wall = run.wall_s
    cpu = run.cpu_s
    return {
        "name": name,
        "executions": run.executions,
        "concurrency": run.concurrency,
        "executions_per_s": round(run.executions / wall, 1),
        "transitions_per_s": round(transitions / wall, 1),
        "p50_ms": round(percentile(run.latencies_s, 0.50) * 1000, 3),
        "p99_ms": round(percentile(run.latencies_s, 0.99) * 1000, 3),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "details": {
            "wall_s": round(wall, 3),
            "cpu_s": None if cpu is None else round(cpu, 3),
            # The rate if this process had had a core to itself: on a shared machine
            # (cpu_s well below wall_s) it is the engine's own cost, the wall rate is not.
            "executions_per_cpu_s": round(run.executions / cpu, 1) if cpu else None,
            "per_execution_us": round(wall / run.executions * 1e6, 1),
            "transitions": transitions,
            **(details or {}),
        },
    }

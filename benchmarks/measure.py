"""Measuring a run: the concurrency-limited driver, latency percentiles, peak RSS, result rows.

Every scenario drives its executions the same way (:func:`drive`): ``concurrency``
workers, each starting one execution (one asyncio task, as an engine needs),
awaiting it and starting the next, until ``executions`` have run. Only the
executions in flight are alive at any time, so a run of 100k executions needs
no more memory than a run of 1k, apart from one float per execution for its
latency (an ``array('d')``: 0.8 MB at 100k).

Peak memory of a command that starts processes of its own (``ceap run --local`` and its
worker processes) is the peak of the *summed* RSS of the whole process tree, sampled from a
thread every :data:`SAMPLE_INTERVAL_S` (:class:`ProcessTreeRss`, :func:`run_sampled`): a
worker's memory counts, which a process's own ``ru_maxrss`` would not show.

Example::

    run = asyncio.run(drive(1000, 10, lambda i: asyncio.sleep(0)))
    row = result_row("sleep", run, transitions=0)
    done = run_sampled(["ceap", "run", "--local", "payload.json"], stdout=out, stderr=err)
    done.peak_rss_mib   # the process tree's peak, MiB
"""

from __future__ import annotations

import asyncio
import math
import os
import resource
import subprocess
import sys
import threading
import time
from array import array
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Self

__all__ = [
    "REQUIRED_KEYS",
    "SAMPLE_INTERVAL_S",
    "ProcessRun",
    "ProcessTreeRss",
    "Run",
    "drive",
    "peak_rss_mib",
    "percentile",
    "result_row",
    "run_sampled",
]

#: How often the process tree's RSS is read (the issue asks for at least every 200 ms).
SAMPLE_INTERVAL_S = 0.1

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


# -- the summed RSS of a process tree ------------------------------------------------------------

_PROC = Path("/proc")


def _parent_of(pid: int) -> int | None:
    """The parent pid from ``/proc/<pid>/stat`` (``None`` if the process is gone)."""
    try:
        data = (_PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
    fields = data[data.rindex(b")") + 2 :].split(None, 2)
    return int(fields[1]) if len(fields) > 1 else None


def _rss_kib(pid: int) -> int | None:
    """``VmRSS`` from ``/proc/<pid>/status`` in KiB (``None``: gone; 0: a zombie has none)."""
    try:
        data = (_PROC / str(pid) / "status").read_bytes()
    except OSError:
        return None
    at = data.find(b"VmRSS:")
    return 0 if at < 0 else int(data[at + 6 : data.index(b"\n", at)].split()[0])


class ProcessTreeRss:
    """The summed RSS of process ``root`` and all its descendants, sampled from a thread.

    Each sample lists ``/proc``, finds the processes new since the last sample whose parent
    is in the tree (so a worker started between two samples is counted from the next one),
    and adds up their ``VmRSS``. Pages shared between processes (the interpreter's code)
    count once per process, as any sum of RSS does. Only processes new since the last
    sample have their ``stat`` read, so a sample costs well under a millisecond.

    >>> with ProcessTreeRss(os.getpid()) as tree:
    ...     _ = tree.sample()
    >>> tree.peak_mib > 0 and tree.samples >= 1
    True
    """

    def __init__(self, root: int, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.root = root
        self.interval_s = interval_s
        self.peak_mib = 0.0
        self.samples = 0
        self.most_processes = 0
        self._tree = {root}
        self._others: set[int] = set()  # seen alive and not ours: not read again while alive
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> float:
        """Read the tree's RSS now (MiB), update the peak and return the reading."""
        try:
            alive = {int(name) for name in os.listdir(_PROC) if name.isdigit()}
        except OSError:
            return 0.0
        # A pid that ended may be reused by an unrelated process (or by one of ours): forget it.
        self._tree &= alive | {self.root}
        self._others &= alive
        parents = {pid: _parent_of(pid) for pid in alive - self._tree - self._others}
        grew = True
        while grew:  # a child and its own child may both be new in this sample
            grew = False
            for pid, parent in list(parents.items()):
                if parent in self._tree:
                    self._tree.add(pid)
                    del parents[pid]
                    grew = True
        self._others.update(pid for pid, parent in parents.items() if parent is not None)
        total_kib, processes = 0, 0
        for pid in self._tree:
            rss = _rss_kib(pid)
            if rss is not None:
                total_kib += rss
                processes += 1
        mib = total_kib / 1024
        self.samples += 1
        self.peak_mib = max(self.peak_mib, mib)
        self.most_processes = max(self.most_processes, processes)
        return mib

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> Self:
        self.sample()
        self._thread = threading.Thread(target=self._loop, name=f"rss-of-{self.root}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


@dataclass(frozen=True)
class ProcessRun:
    """What :func:`run_sampled` measured of one command."""

    returncode: int
    wall_s: float
    #: Peak of the summed RSS of the command's process tree (sampled), MiB.
    peak_rss_mib: float
    #: The largest single process's own peak (``ru_maxrss`` of the command's process), MiB.
    process_peak_rss_mib: float
    samples: int
    most_processes: int


def run_sampled(
    argv: Sequence[str], *, stdout: IO[bytes], stderr: IO[bytes], interval_s: float = SAMPLE_INTERVAL_S,
    cwd: Path | None = None,
) -> ProcessRun:
    """Run ``argv`` to its end, sampling its process tree's RSS every ``interval_s``.

    Without ``/proc`` (not Linux) the peak is the command's own ``ru_maxrss``.
    """
    started = time.perf_counter()
    process = subprocess.Popen(list(argv), stdout=stdout, stderr=stderr, cwd=cwd)
    with ProcessTreeRss(process.pid, interval_s) as tree:
        # wait4 gives this child's own rusage, so its peak RSS is not mixed with the harness's.
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    own = usage.ru_maxrss / (1024 * 1024) if sys.platform == "darwin" else usage.ru_maxrss / 1024
    return ProcessRun(process.returncode, wall, tree.peak_mib if tree.peak_mib > 0 else own, own, tree.samples,
                      tree.most_processes)

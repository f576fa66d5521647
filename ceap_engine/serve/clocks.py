"""``--wait-time-scale``: a clock whose timers run ``scale`` times as long.

Step Functions Local's ``WAIT_TIME_SCALE`` shortens Wait states only; this scales every
timer the engine sets through its clock - Waits, retry intervals, and also task timeouts
and heartbeats (so a timeout keeps its proportion to the waits around it). Timestamps are
the inner clock's: the history shows the scaled gaps as they really passed.

Example::

    clock = ScaledClock(RealClock(), 0.01)   # a 300 s retry interval takes 3 s
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ceap_engine.ports import Activity, Clock, TimerHandle

__all__ = ["ScaledClock"]


class ScaledClock:
    """Wraps a :class:`~ceap_engine.ports.Clock`; sleeps and timers last ``scale`` times as long."""

    def __init__(self, inner: Clock, scale: float) -> None:
        if not scale >= 0:
            raise ValueError(f"the wait time scale must be >= 0, got {scale}")
        self.inner = inner
        self.scale = scale

    def time(self) -> float:
        return self.inner.time()

    def now(self) -> datetime:
        return self.inner.now()

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds * self.scale)

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        return self.inner.call_later(delay * self.scale, callback)

    def activity(self) -> Activity:
        return self.inner.activity()

"""Clocks: real time, and virtual time that skips idle waits.

The engine never calls :func:`asyncio.sleep` or :func:`time.time` itself; it
asks its :class:`Clock`. With :class:`VirtualClock` a 300 s Glue retry interval
passes instantly while the history still shows the 300 s gap.

How virtual time decides it may jump: every unit of work the engine runs (an
execution, a Parallel branch, a Map iteration) is an :class:`Activity`. An
activity counts as *busy* unless it is inside :meth:`Clock.sleep`. Time jumps to
the next timer only when no activity is busy. Work that a task runner does in a
thread, a subprocess or over a socket happens while its activity is busy, so
virtual time never skips past it.

Example::

    clock = VirtualClock(start=0)
    async def main():
        with clock.activity():
            await clock.sleep(300)
        assert clock.time() == 300
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import time as _time
from collections.abc import Callable
from datetime import UTC, datetime

from ceap_engine.ports import Clock, TimerHandle

__all__ = ["Activity", "Clock", "RealClock", "TimerHandle", "VirtualClock", "WallBackstop", "pause_wall_backstops",
           "restart_wall_backstops",
           "to_datetime"]


def to_datetime(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)


class Activity:
    """A unit of engine work that virtual time must not skip past while busy.

    Create it with :meth:`Clock.activity` *before* scheduling the coroutine that
    runs it (so the clock counts it at once) and enter it inside that coroutine.
    """

    __slots__ = ("_clock", "_deferred", "_token", "busy", "closed")

    def __init__(self, clock: _ActivityAccounting | None) -> None:
        self._clock = clock
        self._token: contextvars.Token | None = None
        self.busy = True
        self.closed = False
        #: A timer of this activity's that goes on the clock when the activity first waits.
        self._deferred: _DeferredTimer | None = None
        if clock is not None:
            clock._busy += 1

    def __enter__(self) -> Activity:
        self._token = _current_activity.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _current_activity.reset(self._token)
            self._token = None
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._deferred = None
        if self.busy and self._clock is not None:
            self.busy = False
            self._clock._set_idle()

    def idle(self) -> _Idle:
        """Count this activity as idle while it waits for its children.

        A Map or Parallel state waits for its iterations, which are activities
        of their own; while it waits it must not keep time from moving.
        """
        return _Idle(self)

    def wake(self) -> None:
        """Count this (idle) activity as busy again, now.

        A child calls it on its parent right before the child ends, so that no
        instant passes in which neither counts as busy.
        """
        self._acquire()

    def _release(self) -> None:
        if self.busy and not self.closed:
            self.busy = False
            if self._deferred is not None:
                self._deferred.arm()
            if self._clock is not None:
                self._clock._set_idle()

    def _acquire(self) -> None:
        if not self.busy and not self.closed:
            self.busy = True
            if self._clock is not None:
                self._clock._busy += 1


class _Idle:
    __slots__ = ("_activity",)

    def __init__(self, activity: Activity) -> None:
        self._activity = activity

    def __enter__(self) -> None:
        self._activity._release()

    def __exit__(self, *exc: object) -> None:
        self._activity._acquire()


_current_activity: contextvars.ContextVar[Activity | None] = contextvars.ContextVar(
    "ceap_current_activity", default=None
)


class _ActivityAccounting:
    _busy: int = 0

    def _set_idle(self) -> None:
        self._busy -= 1


class RealClock(_ActivityAccounting):
    """Wall-clock time; sleeps really sleep."""

    #: ``time.time`` itself: the interpreter reads the clock a few times a state.
    time = staticmethod(_time.time)

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        return asyncio.get_running_loop().call_later(max(0.0, delay), callback)

    def activity(self) -> Activity:
        return Activity(None)


class _Timer:
    __slots__ = ("_clock", "callback", "cancelled", "deadline")

    def __init__(self, deadline: float, callback: Callable[[], None], clock: VirtualClock) -> None:
        self.deadline = deadline
        self.callback: Callable[[], None] | None = callback
        self.cancelled = False
        self._clock: VirtualClock | None = clock

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        # A cancelled timer stays in the heap until its deadline; drop the
        # callback now so it no longer keeps the execution (its task, frame and
        # history) alive, as asyncio's TimerHandle.cancel does.
        self.callback = None
        clock, self._clock = self._clock, None
        if clock is not None:
            clock._timer_cancelled()


class _DeferredTimer:
    """A virtual timer that is put on the clock only once its activity waits (see
    :meth:`VirtualClock.call_later_once_waiting`)."""

    __slots__ = ("_activity", "_clock", "_timer", "callback", "deadline")

    def __init__(self, clock: VirtualClock, deadline: float, callback: Callable[[], None]) -> None:
        self._clock: VirtualClock | None = clock
        self._activity: Activity | None = None
        self._timer: _Timer | None = None
        self.deadline = deadline
        self.callback: Callable[[], None] | None = callback

    def arm(self) -> None:
        clock, callback = self._clock, self.callback
        if clock is None or callback is None or self._timer is not None:
            return
        self._forget()
        self.callback = None
        self._timer = clock._schedule(self.deadline, callback)

    def _forget(self) -> None:
        activity, self._activity = self._activity, None
        if activity is not None and activity._deferred is self:
            activity._deferred = None
        if self._clock is not None:
            self._clock._deferred.discard(self)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        else:
            self._forget()
        self._clock = None
        self.callback = None


class VirtualClock(_ActivityAccounting):
    """Time that stands still while work runs and jumps when all work waits.

    ``start`` is the initial time as a datetime or epoch seconds (default:
    the real time now). Time only moves at jumps, so every event recorded
    between two jumps carries the same timestamp.
    """

    def __init__(self, start: datetime | float | None = None) -> None:
        if start is None:
            start = _time.time()
        elif isinstance(start, datetime):
            if start.tzinfo is None:
                start = start.replace(tzinfo=UTC)
            start = start.timestamp()
        self._now = float(start)
        self._busy = 0
        self._heap: list[tuple[float, int, _Timer]] = []
        self._cancelled_in_heap = 0
        self._seq = itertools.count()
        self._advance_scheduled = False
        #: Timers waiting for their activity to wait (:meth:`call_later_once_waiting`).
        self._deferred: set[_DeferredTimer] = set()

    # -- reading time -------------------------------------------------
    def time(self) -> float:
        return self._now

    def now(self) -> datetime:
        return to_datetime(self._now)

    @property
    def busy_activities(self) -> int:
        return self._busy

    # -- timers -------------------------------------------------------
    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        return self._schedule(self._now + max(0.0, delay), callback)

    def _schedule(self, deadline: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(deadline, callback, self)
        heapq.heappush(self._heap, (deadline, next(self._seq), timer))
        self._maybe_schedule_advance()
        return timer

    def call_later_once_waiting(self, activity: Activity, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """:meth:`call_later` for a deadline of ``activity``'s own (an execution's timeout).

        Virtual time cannot pass while the activity is busy, so the timer goes on
        the clock only when the activity first waits - most executions never do
        and then cost no timer at all. The deadline still counts from now.
        """
        deferred = _DeferredTimer(self, self._now + max(0.0, delay), callback)
        # Only the clock's own Activity knows when it first waits; a wrapped one (a Pipe's) arms at once.
        if (isinstance(activity, Activity) and activity.busy and not activity.closed and activity._clock is self
                and activity._deferred is None):
            activity._deferred = deferred
            deferred._activity = activity
            self._deferred.add(deferred)
        else:
            deferred.arm()
        return deferred

    def _timer_cancelled(self) -> None:
        # Every execution arms timeouts it nearly always cancels; while time
        # stands still they would pile up. Rebuild the heap once they are the
        # majority (asyncio's own rule), so its size tracks live timers.
        self._cancelled_in_heap += 1
        heap = self._heap
        if self._cancelled_in_heap > 100 and self._cancelled_in_heap * 2 > len(heap):
            self._heap = [entry for entry in heap if not entry[2].cancelled]
            heapq.heapify(self._heap)
            self._cancelled_in_heap = 0

    def _pop_timer(self) -> _Timer:
        _, _, timer = heapq.heappop(self._heap)
        if timer.cancelled:  # only cancel() marks a timer still in the heap
            self._cancelled_in_heap -= 1
        return timer

    async def sleep(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        activity = _current_activity.get()
        if activity is None or activity.closed or activity._clock is not self:
            # A caller outside any engine activity (a test awaiting the clock
            # directly): it is only waiting, so it does not hold time back.
            activity = None
        elif activity._deferred is not None:
            activity._deferred.arm()  # before this sleep's own timer, so it fires first at a tie
        fut: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not fut.done():
                if activity is not None:
                    activity._acquire()  # busy again before anything else runs
                fut.set_result(None)

        timer = self.call_later(seconds, wake)
        if activity is not None:
            activity._release()
        try:
            await fut
        finally:
            timer.cancel()
            if activity is not None:
                activity._acquire()

    def activity(self) -> Activity:
        return Activity(self)

    # -- time skipping ------------------------------------------------
    def _set_idle(self) -> None:
        self._busy -= 1
        if self._busy == 0:
            self._maybe_schedule_advance()

    def _maybe_schedule_advance(self) -> None:
        if self._busy == 0 and self._heap and not self._advance_scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._advance_scheduled = True
            # One loop iteration later: callbacks already queued (a task woken
            # by a cancellation, a child just created) run first and may make
            # work busy again.
            loop.call_soon(self._advance)

    def _advance(self) -> None:
        self._advance_scheduled = False
        if self._busy:
            return
        while self._heap and self._heap[0][2].cancelled:
            self._pop_timer()
        if not self._heap:
            return
        deadline = self._heap[0][0]
        if deadline > self._now:
            self._now = deadline
        while self._heap and self._heap[0][0] <= self._now:
            self._fire(self._pop_timer())
        self._maybe_schedule_advance()

    @staticmethod
    def _fire(timer: _Timer) -> None:
        if not timer.cancelled:
            callback = timer.callback
            timer.cancelled = True
            timer.callback = None
            timer._clock = None
            callback()  # type: ignore[misc]

    def advance(self, seconds: float) -> None:
        """Move time forward by hand (tests), firing every timer that comes due."""
        for deferred in list(self._deferred):
            deferred.arm()  # time moves although their activities are busy
        target = self._now + seconds
        while self._heap and self._heap[0][0] <= target:
            deadline = self._heap[0][0]
            timer = self._pop_timer()
            self._now = max(self._now, deadline)
            self._fire(timer)
        self._now = target


class WallBackstop:
    """A wall-time timer that backs up a virtual-clock timer of the same delay.

    Under a :class:`VirtualClock` a busy loop or a hung task holds virtual time
    still, so a virtual timeout would never fire. This timer fires ``callback``
    after ``seconds`` of wall time - unless at that moment no work is busy
    (virtual time is about to jump, so the virtual timer will decide); it then
    looks again after the same delay.

    Example::

        backstop = WallBackstop(clock, 5, on_timeout)
        ...
        backstop.cancel()
    """

    __slots__ = ("_callback", "_clock", "_handle", "_paused", "_seconds")

    def __init__(self, clock: Clock, seconds: float, callback: Callable[[], None], *,
                 restartable: bool = False) -> None:
        self._clock = clock
        self._seconds = max(0.0, seconds)
        self._callback = callback
        self._paused = False
        self._handle: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(self._seconds, self._fire)
        if restartable:  # see restart_wall_backstops; the finished ones are dropped as new ones come
            _RESTARTABLE.set((*(b for b in _RESTARTABLE.get() if b._handle is not None or b._paused), self))

    def restart(self) -> None:
        """Count the full delay again from now (nothing if it fired or was cancelled)."""
        if self._handle is not None or self._paused:
            if self._handle is not None:
                self._handle.cancel()
            self._paused = False
            self._handle = asyncio.get_running_loop().call_later(self._seconds, self._fire)

    def pause(self) -> None:
        """Stop counting until :meth:`restart` (nothing if it fired or was cancelled)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
            self._paused = True

    def _fire(self) -> None:
        if getattr(self._clock, "busy_activities", 1) == 0:
            self._handle = asyncio.get_running_loop().call_later(self._seconds, self._fire)
            return
        self._handle = None
        self._callback()

    def cancel(self) -> None:
        self._paused = False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


_RESTARTABLE: contextvars.ContextVar[tuple[WallBackstop, ...]] = contextvars.ContextVar("ceap_wall_backstops",
                                                                                        default=())


def pause_wall_backstops() -> None:
    """Hold the wall-time backstops of the current task's timeouts while its local call waits for its turn
    (:func:`restart_wall_backstops` counts them again, in full, once it starts)."""
    for backstop in _RESTARTABLE.get():
        backstop.pause()


def restart_wall_backstops() -> None:
    """Restart the wall-time backstops of the current task's timeouts (Task TimeoutSeconds, heartbeats).

    For a local runner whose call had to wait its turn (a free core, a worker process) before it
    could start: on AWS each call gets its own Lambda at once, so the wait is this machine's, not
    the call's, and must not count against its timeout. The virtual timers are not touched.
    """
    for backstop in _RESTARTABLE.get():
        backstop.restart()

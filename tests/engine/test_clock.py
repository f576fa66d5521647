"""Virtual time: jumps only when every activity waits; real work holds it back."""

import asyncio
import time

from ceap_engine.runtime.clock import RealClock, VirtualClock


async def test_sleep_jumps_without_wall_time():
    clock = VirtualClock(start=1000.0)
    began = time.perf_counter()
    with clock.activity():
        await clock.sleep(300)
        await clock.sleep(600)
    assert clock.time() == 1900.0
    assert time.perf_counter() - began < 0.5


async def test_time_does_not_jump_while_another_activity_is_busy():
    clock = VirtualClock(start=0)
    order = []

    async def sleeper(activity):
        with activity:
            await clock.sleep(20)
            order.append(("woke", clock.time()))

    async def worker(activity):
        with activity:
            # Real work in a thread: the activity stays busy, time must not move.
            await asyncio.to_thread(time.sleep, 0.05)
            order.append(("worked", clock.time()))

    a, b = clock.activity(), clock.activity()
    await asyncio.gather(sleeper(a), worker(b))
    assert order == [("worked", 0.0), ("woke", 20.0)]


async def test_concurrent_sleepers_wake_in_deadline_order():
    clock = VirtualClock(start=0)
    woke = []

    async def sleeper(seconds, activity):
        with activity:
            await clock.sleep(seconds)
            woke.append((seconds, clock.time()))

    await asyncio.gather(*(sleeper(s, clock.activity()) for s in (40, 20, 300)))
    assert woke == [(20, 20.0), (40, 40.0), (300, 300.0)]


async def test_timer_fires_while_activity_sleeps_and_can_cancel_it():
    clock = VirtualClock(start=0)
    activity = clock.activity()

    async def long_sleep():
        with activity:
            await clock.sleep(60)

    task = asyncio.ensure_future(long_sleep())
    clock.call_later(5, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert task.cancelled()
    assert clock.time() == 5.0
    assert clock.busy_activities == 0


async def test_idle_parent_lets_children_sleep():
    clock = VirtualClock(start=0)
    parent = clock.activity()

    async def child(activity):
        with activity:
            await clock.sleep(10)

    with parent:
        children = [asyncio.ensure_future(child(clock.activity())) for _ in range(3)]
        with parent.idle():
            await asyncio.gather(*children)
    assert clock.time() == 10.0


async def test_sleep_outside_any_activity_is_pure_waiting():
    clock = VirtualClock(start=0)
    await clock.sleep(3)
    assert clock.time() == 3.0


async def test_real_clock_sleeps_for_real():
    clock = RealClock()
    before = clock.time()
    await clock.sleep(0.01)
    assert clock.time() - before >= 0.009


def test_manual_advance_fires_due_timers():
    clock = VirtualClock(start=0)
    fired = []
    clock.call_later(5, lambda: fired.append(clock.time()))
    clock.call_later(50, lambda: fired.append(clock.time()))
    clock.advance(10)
    assert fired == [5.0] and clock.time() == 10.0


async def test_a_timer_once_waiting_goes_on_the_clock_when_its_activity_first_waits():
    clock = VirtualClock(start=0)
    fired = []
    with clock.activity() as activity:
        clock.call_later_once_waiting(activity, 10, lambda: fired.append(clock.time()))
        assert clock._heap == []  # a busy activity holds time still: no timer needed yet
        await clock.sleep(4)
        assert len(clock._heap) == 1  # armed on the first wait, due 10 s after it was asked for
        await clock.sleep(20)
    assert fired == [10.0]


async def test_a_timer_once_waiting_that_is_cancelled_first_never_reaches_the_clock():
    clock = VirtualClock(start=0)
    fired = []
    with clock.activity() as activity:
        clock.call_later_once_waiting(activity, 10, lambda: fired.append(clock.time())).cancel()
        await clock.sleep(30)
    assert fired == [] and clock._deferred == set()


def test_manual_advance_fires_a_timer_once_waiting_of_a_busy_activity():
    clock = VirtualClock(start=0)
    fired = []
    activity = clock.activity()
    clock.call_later_once_waiting(activity, 10, lambda: fired.append(clock.time()))
    clock.advance(15)
    assert fired == [10.0]

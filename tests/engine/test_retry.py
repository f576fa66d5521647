"""The retry policy as pure functions: schedules, matching, exhaustion."""

import random

import pytest

from ceap_engine.asl.retry import BackoffSchedule, Catcher, Retrier, decide, error_matches, find_catcher


@pytest.mark.parametrize(
    ("interval", "rate", "attempts", "max_delay", "waits"),
    [
        (20, 2.0, 2, None, [20, 40]),
        (3, 1.5, 2, None, [3, 4.5]),
        (1, 2.0, 5, 5, [1, 2, 4, 5, 5]),
        (300, 2.0, 2, None, [300, 600]),
        (1, 1.0, 3, None, [1, 1, 1]),
        (7, 3.0, 4, 100, [7, 21, 63, 100]),
    ],
)
def test_backoff_schedule(interval, rate, attempts, max_delay, waits):
    schedule = BackoffSchedule(interval, rate, attempts, max_delay)
    assert [schedule.delay(r) for r in range(attempts)] == waits


def test_full_jitter_is_uniform_below_the_delay_and_seedable():
    schedule = BackoffSchedule(10, 2.0, 3, None, "FULL")
    first = [schedule.delay(2, random.Random(7)) for _ in range(3)]
    again = [schedule.delay(2, random.Random(7)) for _ in range(3)]
    assert first == again
    samples = [schedule.delay(2, random.Random(seed)) for seed in range(500)]
    assert all(0 <= s <= 40 for s in samples)
    assert min(samples) < 5 and max(samples) > 35  # spread over the whole interval


@pytest.mark.parametrize(
    ("pattern", "error", "matches"),
    [
        ("States.ALL", "Lambda.ServiceException", True),
        ("States.ALL", "States.Timeout", True),
        ("States.ALL", "States.DataLimitExceeded", True),  # recorded AWS executions catch it
        ("States.ALL", "States.Runtime", False),
        ("States.Runtime", "States.Runtime", False),
        ("States.TaskFailed", "Custom.Error", True),
        ("States.TaskFailed", "States.HeartbeatTimeout", True),
        ("States.TaskFailed", "States.Timeout", False),
        ("States.Timeout", "States.Timeout", True),
        ("Ceap.PermanentError", "Ceap.PermanentError", True),
        ("Ceap.PermanentError", "Ceap.Permanent", False),
    ],
)
def test_error_matching(pattern, error, matches):
    assert error_matches(pattern, error) is matches


def test_first_matching_retrier_applies_and_keeps_its_own_counter():
    permanent = Retrier(("Ceap.PermanentError",), BackoffSchedule(1, 2.0, 0))
    everything = Retrier(("States.ALL",), BackoffSchedule(20, 2.0, 2))
    retriers = [permanent, everything]
    assert decide(retriers, [0, 0], "Ceap.PermanentError").retry is False
    assert decide(retriers, [0, 0], "Ceap.PermanentError").retrier_index == 0
    first = decide(retriers, [0, 0], "Boom")
    assert (first.retry, first.delay, first.retrier_index) == (True, 20, 1)
    assert decide(retriers, [0, 1], "Boom").delay == 40
    exhausted = decide(retriers, [0, 2], "Boom")
    assert (exhausted.retry, exhausted.retrier_index) == (False, 1)


def test_exhausted_retrier_does_not_fall_through_to_later_retriers():
    specific = Retrier(("Lambda.TooManyRequestsException",), BackoffSchedule(1, 2.0, 1))
    generic = Retrier(("States.ALL",), BackoffSchedule(1, 2.0, 5))
    decision = decide([specific, generic], [1, 0], "Lambda.TooManyRequestsException")
    assert decision.retry is False and decision.retrier_index == 0


def test_no_matching_retrier_gives_up_without_index():
    decision = decide([Retrier(("A",), BackoffSchedule())], [0], "B")
    assert decision == decision.__class__(False, 0.0, None)


def test_runtime_is_never_retried_even_by_all():
    decision = decide([Retrier(("States.ALL",), BackoffSchedule())], [0], "States.Runtime")
    assert decision.retry is False


def test_catchers_in_order():
    catchers = [Catcher(("A",), "HandleA", 0), Catcher(("States.TaskFailed",), "Any", 1), Catcher(("States.ALL",), "Last", 2)]
    assert find_catcher(catchers, "A").next == "HandleA"
    assert find_catcher(catchers, "B").next == "Any"
    assert find_catcher(catchers, "States.Timeout").next == "Last"
    assert find_catcher(catchers, "States.Runtime") is None

"""Retry and catch policy, as pure functions (tenacity-style).

The interpreter asks :func:`decide` what to do after a failed attempt and
sleeps through its :class:`~ceap_engine.ports.Clock`; nothing here sleeps.

AWS rules implemented here:

- Retriers are scanned in order; the first whose ``ErrorEquals`` matches the
  error applies. Each retrier keeps its own attempt counter for the state
  visit. When the matching retrier is exhausted, control goes to Catch - later
  retriers are not tried.
- The delay before retry ``r`` (0 = first retry) of a retrier is
  ``min(IntervalSeconds * BackoffRate ** r, MaxDelaySeconds)``; with
  ``JitterStrategy: FULL`` it is uniform in ``[0, delay]``.
- ``States.ALL`` matches every error but ``States.Runtime``;
  ``States.TaskFailed`` matches every error but ``States.Timeout`` and
  ``States.Runtime``. ``States.Runtime`` is never retried or caught. (AWS's
  recorded executions show a Task's ``States.DataLimitExceeded`` caught by
  ``States.ALL``; a state's own output over the limit fails the execution
  before Retry/Catch are consulted - a ``Terminal`` error of the
  states module.)

Example::

    >>> schedule = BackoffSchedule(interval_seconds=20, backoff_rate=2.0, max_attempts=2)
    >>> [schedule.delay(r) for r in range(schedule.max_attempts)]
    [20.0, 40.0]
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ALL",
    "BackoffSchedule",
    "Catcher",
    "Retrier",
    "RetryDecision",
    "decide",
    "error_matches",
    "find_catcher",
]

ALL = "States.ALL"
TASK_FAILED = "States.TaskFailed"
RUNTIME = "States.Runtime"
TIMEOUT = "States.Timeout"


def error_matches(pattern: str, error: str) -> bool:
    """Does an ``ErrorEquals`` entry match an error name?

    >>> error_matches("States.ALL", "Lambda.ServiceException")
    True
    >>> error_matches("States.TaskFailed", "States.Timeout")
    False
    """
    if error == RUNTIME:
        # Recorded AWS executions: even ErrorEquals ["States.Runtime"] does not catch it.
        return False
    if pattern == error:
        return True
    if pattern == ALL:
        return True
    if pattern == TASK_FAILED:
        return error != TIMEOUT
    return False


def _any_match(patterns: Sequence[str], error: str) -> bool:
    for p in patterns:
        if error_matches(p, error):
            return True
    return False


@dataclass(frozen=True, slots=True)
class BackoffSchedule:
    """The waits of one retrier: interval, backoff, cap, jitter."""

    interval_seconds: float = 1.0
    backoff_rate: float = 2.0
    max_attempts: int = 3
    max_delay_seconds: float | None = None
    jitter: str = "NONE"  # or "FULL"

    def delay(self, retry_index: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry ``retry_index`` (0 = the first retry)."""
        d = float(self.interval_seconds) * float(self.backoff_rate) ** retry_index
        if self.max_delay_seconds is not None and d > self.max_delay_seconds:
            d = float(self.max_delay_seconds)
        if self.jitter == "FULL":
            d = (rng or random).uniform(0.0, d)
        return d


@dataclass(frozen=True, slots=True)
class Retrier:
    error_equals: tuple[str, ...]
    schedule: BackoffSchedule

    def matches(self, error: str) -> bool:
        return _any_match(self.error_equals, error)


@dataclass(frozen=True, slots=True)
class Catcher:
    error_equals: tuple[str, ...]
    next: str
    index: int = 0

    def matches(self, error: str) -> bool:
        return _any_match(self.error_equals, error)


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What to do after a failed attempt.

    ``retry`` true: wait ``delay`` seconds and try again (``retrier_index`` is
    the retrier that matched, whose counter the caller increments). Otherwise
    give up (go to Catch); ``retrier_index`` is then the exhausted retrier or
    ``None`` when no retrier matched.
    """

    retry: bool
    delay: float = 0.0
    retrier_index: int | None = None


def decide(
    retriers: Sequence[Retrier],
    attempts: Sequence[int],
    error: str,
    rng: random.Random | None = None,
) -> RetryDecision:
    """Decide whether to retry ``error`` given each retrier's attempts so far.

    >>> r = Retrier(("States.ALL",), BackoffSchedule(3, 1.5, 2))
    >>> decide([r], [1], "Boom").delay
    4.5
    """
    for i, retrier in enumerate(retriers):
        if retrier.matches(error):
            done = attempts[i]
            if done < retrier.schedule.max_attempts:
                return RetryDecision(True, retrier.schedule.delay(done, rng), i)
            return RetryDecision(False, 0.0, i)
    return RetryDecision(False)


def find_catcher(catchers: Sequence[Catcher], error: str) -> Catcher | None:
    """The first catcher whose ``ErrorEquals`` matches ``error``."""
    for c in catchers:
        if c.matches(error):
            return c
    return None

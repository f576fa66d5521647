"""The ceap pytest plugin (registered through the ``pytest11`` entry point).

Fixtures, each fresh per test:

- ``ceap_clock``: a :class:`~ceap_engine.runtime.clock.VirtualClock` starting at a fixed instant;
- ``ceap_stage_env``: a :class:`~ceap_engine.testing.StageTestEnvironment` on that clock;
- ``ceap_workflow_env``: a :class:`~ceap_engine.testing.WorkflowTestEnvironment` on that clock.
"""

from __future__ import annotations

import pytest

from ceap_engine.runtime.clock import VirtualClock
from ceap_engine.testing import StageTestEnvironment, WorkflowTestEnvironment

#: 2026-01-01T00:00:00Z: tests see the same "now" on every run.
TEST_EPOCH = 1_767_225_600.0


@pytest.fixture
def ceap_clock() -> VirtualClock:
    """A virtual clock at 2026-01-01T00:00:00Z: waits and retries cost no wall time."""
    return VirtualClock(start=TEST_EPOCH)


@pytest.fixture
def ceap_stage_env(ceap_clock: VirtualClock) -> StageTestEnvironment:
    """Run one stage with in-memory storage on ``ceap_clock``."""
    return StageTestEnvironment(clock=ceap_clock)


@pytest.fixture
def ceap_workflow_env(ceap_clock: VirtualClock) -> WorkflowTestEnvironment:
    """Run whole workflows locally with in-memory storage on ``ceap_clock``."""
    return WorkflowTestEnvironment(clock=ceap_clock)

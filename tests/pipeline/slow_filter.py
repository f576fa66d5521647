"""A Filter stage that takes 0.6 s of wall time per part (for the slot-wait timeout test)."""

from __future__ import annotations

import time

from stages.filter import FilterInput, FilterOutput
from stages.filter import run as filter_run

SECONDS = 0.6


def run(input: FilterInput, context: object) -> FilterOutput:
    time.sleep(SECONDS)  # a sync stage runs in a worker thread: its execution stays busy
    return filter_run(input, context)  # type: ignore[arg-type]

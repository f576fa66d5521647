"""Two small stages for the Pipe's load-and-fault test: one stored row and one action per message.

``Work`` fails permanently on a poison payload and, like ``Act``, transiently (a
``ConnectionError``) on a seeded share of attempts; it upserts the message's row,
``Act`` writes its action under a key named by the message, so a message delivered
several times still leaves exactly one of each.
"""

from __future__ import annotations

import random

from pydantic import BaseModel

from ceap_engine.pipeline.stage import PermanentError, StageContext
from ceap_engine.ports import CandidateRecord

PROGRAM = "load"
FAULTS = random.Random(0)
TRANSIENT_RATE = 0.10


class Job(BaseModel):
    id: str
    poison: bool = False


def _maybe_fail(what: str) -> None:
    if FAULTS.random() < TRANSIENT_RATE:
        raise ConnectionError(f"{what}: the store did not answer (injected)")


async def work(input: Job, context: StageContext) -> Job:
    if input.poison:
        raise PermanentError(f"payload {input.id} is poison (injected)")
    _maybe_fail("Work")
    assert context.candidates is not None
    await context.candidates.put_batch([CandidateRecord(input.id, PROGRAM, "US", "JOB", input.id,
                                                        data={"id": input.id})])
    return input


async def act(input: Job, context: StageContext) -> Job:
    _maybe_fail("Act")
    await context.objects.put(context.bucket, f"actions/{input.id}.json", b'{"channel": "email"}')
    return input

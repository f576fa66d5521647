"""The stage contract: what a stage function receives and how it fails.

A stage is an ordinary (sync or async) function::

    def run(input: FilterInput, context: StageContext) -> FilterOutput: ...

``input`` and the return value are pydantic models (the runtime reads the
annotations to validate the previous stage's output and to serialise the
result). The output model's ``metrics`` field, if any, becomes the stage's
counts in the state machine. A stage that fails raises: a
:class:`PermanentError` for what can never succeed (bad input data), any other
exception for what a retry may fix.

This module is a stage's whole view of the engine: everything a stage may use
(the context, its ports and value types, the errors it raises or catches) is
exported here, and stage code imports from nowhere else in ``ceap_engine``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ceap_engine.errors import ConditionFailed, InvalidKey, ObjectNotFound, StorageError
from ceap_engine.pipeline.layout import execution_key
from ceap_engine.ports import CandidateRecord, CandidateStore, Clock, ObjectStore
from ceap_engine.runtime.clock import RealClock
from ceap_engine.storage.candidates import CandidateWrites, write_candidates

__all__ = [
    "CandidateRecord",
    "CandidateStore",
    "CandidateWrites",
    "Clock",
    "ConditionFailed",
    "InvalidKey",
    "ObjectNotFound",
    "ObjectStore",
    "PermanentError",
    "StageContext",
    "StorageError",
    "write_candidates",
]


class PermanentError(Exception):
    """A stage failure that a retry cannot fix (bad input data, failed validation).

    Its error name in the state machine is ``Ceap.PermanentError``: the
    workflow's first retrier matches that name with ``MaxAttempts: 0``, so the
    execution goes straight to its Catch. (Lambda reports an exception's
    ``type(e).__name__`` as the error name, hence the class name below.)
    """


PermanentError.__name__ = "Ceap.PermanentError"
PermanentError.__qualname__ = "Ceap.PermanentError"


@dataclass
class StageContext:
    """Everything a stage may use besides its input.

    ``objects`` and ``candidates`` are the storage ports; ``bucket`` is the
    workflow bucket in which ``executions/{execution_id}/...`` lives;
    ``config`` is the stage's own configuration (for example model
    coefficients); ``lambda_context`` is the (real or fake) Lambda context.
    """

    execution_id: str
    stage: str
    bucket: str
    objects: ObjectStore
    candidates: CandidateStore | None = None
    previous_stage: str | None = None
    clock: Clock = field(default_factory=RealClock)
    config: Mapping[str, Any] = field(default_factory=dict)
    lambda_context: Any = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("ceap.stage"))

    def output_key(self, name: str = "output.json") -> str:
        """Key of an artefact of this stage: ``executions/{id}/{stage}/{name}``."""
        return execution_key(self.execution_id, self.stage, name)

    async def read_source(self, uri: str) -> bytes:
        """Read a source file: ``s3://bucket/key`` from the object store, else a local path."""
        if uri.startswith("s3://"):
            bucket, _, key = uri[5:].partition("/")
            return await self.objects.get(bucket, key)
        import asyncio
        from pathlib import Path

        return await asyncio.to_thread(Path(uri).read_bytes)

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
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ceap_engine.errors import ConditionFailed, InvalidKey, ObjectNotFound, StorageError
from ceap_engine.pipeline.layout import execution_key, part_key, range_scratch_key, spill_key
from ceap_engine.ports import CandidateRecord, CandidateStore, Clock, EncodedDocument, ObjectStore, document_text
from ceap_engine.runtime.clock import RealClock
from ceap_engine.storage.parts import (
    MAX_PART_BYTES,
    MAX_PART_RECORDS,
    NonFiniteNumber,
    PartInfo,
    PartWriter,
    SharedBudget,
    decode_line,
    encode_record,
    nesting_depth_exceeds,
    split_lines,
)
from ceap_engine.storage.candidates import CandidateWrites, record_consumed, write_candidates
from ceap_engine.pipeline.record_codec import RecordCodec, RecordWire, encode_struct, encode_structs, paused_gc

__all__ = [
    "CandidateRecord",
    "CandidateStore",
    "CandidateWrites",
    "Clock",
    "ConditionFailed",
    "EncodedDocument",
    "InvalidKey",
    "MAX_PART_BYTES",
    "MAX_PART_RECORDS",
    "NonFiniteNumber",
    "ObjectNotFound",
    "ObjectStore",
    "PartInfo",
    "PartWriter",
    "PermanentError",
    "RecordCodec",
    "RecordWire",
    "SourceSteps",
    "StageContext",
    "StorageError",
    "record_consumed",
    "write_candidates",
    "decode_line",
    "document_text",
    "encode_record",
    "encode_struct",
    "encode_structs",
    "nesting_depth_exceeds",
    "paused_gc",
    "run_source_steps",
    "split_lines",
]


class PermanentError(Exception):
    """A stage failure that a retry cannot fix (bad input data, failed validation).

    Its error name in the state machine is ``Ceap.PermanentError``: the
    workflow's first retrier matches that name with ``MaxAttempts: 0``, so the
    execution goes straight to its Catch. (Lambda reports an exception's
    ``type(e).__name__`` as the error name, hence the class name below.)
    """

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        # Pickled by a function, not by the class's (renamed) path: a worker process sends it back.
        return _permanent_error, self.args


def _permanent_error(*args: object) -> PermanentError:
    return PermanentError(*args)


PermanentError.__name__ = "Ceap.PermanentError"
PermanentError.__qualname__ = "Ceap.PermanentError"



@dataclass(frozen=True)
class SourceSteps:
    """A first stage that fans out over byte ranges of its source (``run.source_steps``, ETL's).

    The built definition runs it as four steps (docs/architecture.md); the runtime keeps the
    plan and each call's summary in the bucket and hands them to the next steps:

    * ``plan(input, context) -> dict``: one quick call; ``"ranges"`` and ``"groups"`` are the
      items of the two Maps (JSON objects with an ``"index"``), anything else is the plan's own;
    * ``split(input, context, plan, range) -> dict``: one call per range; what it counted (JSON);
    * ``merge(input, context, plan, group, range_summaries) -> dict``: one call per group, after
      every range; what it counted;
    * ``finish(input, context, plan, range_summaries, merge_summaries) -> output``: the stage's
      output model, its parts adopted into ``context`` (:meth:`StageContext.adopt_parts`).
    """

    plan: Callable[[Any, "StageContext"], Awaitable[dict[str, Any]]]
    split: Callable[[Any, "StageContext", dict[str, Any], dict[str, Any]], Awaitable[dict[str, Any]]]
    merge: Callable[[Any, "StageContext", dict[str, Any], dict[str, Any], list[dict[str, Any]]], Awaitable[dict[str, Any]]]
    finish: Callable[[Any, "StageContext", dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]], Awaitable[Any]]


async def run_source_steps(steps: SourceSteps, input: Any, context: StageContext) -> Any:
    """All of a first stage's steps in this one call, one after another (a workflow whose first stage does
    not fan out): the same summaries pass from step to step, and each merge's scratch is removed after it."""
    plan = await steps.plan(input, context)
    ranges = [await steps.split(input, context, plan, item) for item in plan["ranges"]]
    merges = []
    for group in plan["groups"]:
        merges.append(await steps.merge(input, context, plan, group, ranges))
        for key in merges[-1].get("scratch", ()):
            await context.objects.delete(context.bucket, key)
    return await steps.finish(input, context, plan, ranges, merges)


def _read_file_range(path: str, start: int, end: int) -> bytes:
    with open(path, "rb", buffering=0) as handle:
        return os.pread(handle.fileno(), max(0, end - start), start)


#: What a stage's spill writers buffer in memory together (see :meth:`StageContext.spill_writers`).
SPILL_BUFFER_BYTES = 16 * 1024 * 1024
#: ... and what one of them buffers at most before it writes a part.
SPILL_PART_BYTES = 4 * 1024 * 1024

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
    part_index: int | None = None
    writers: dict[str, list[PartWriter]] = field(default_factory=dict)
    adopted: dict[str, list[PartInfo]] = field(default_factory=dict)
    #: The part writers by (stream, part index), in the order they were made (see part_writer).
    named: dict[tuple[str, int], list[PartWriter]] = field(default_factory=dict, repr=False)

    def part_writer(self, stream: str, *, index: int | None = None, always_one: bool = False,
                    max_records: int = MAX_PART_RECORDS) -> PartWriter:
        """A writer of bounded JSON Lines parts of ``stream`` (``candidates``, ``errors``, ``actions``...).

        Its parts are named after ``index`` (default: this call's part index, else 0)::

            writer = context.part_writer("actions", always_one=True)
            await writer.add(action.to_json()); parts = await writer.close()
        """
        base = index if index is not None else (self.part_index or 0)
        # A part that goes through the stage in slices calls it once a slice, on this same context:
        # a later slice's writer numbers its objects after the earlier ones' (part-00007.1.jsonl,
        # .2, ...), so no slice overwrites another's, and only the first must write an empty part.
        earlier = self.named.setdefault((stream, base), [])
        offset = sum(len(w.parts) for w in earlier)
        writer = PartWriter(
            self.objects,
            self.bucket,
            lambda n: part_key(self.execution_id, self.stage, stream, base, n + offset),
            always_one=always_one and not offset,
            max_records=max_records,
        )
        earlier.append(writer)
        self.writers.setdefault(stream, []).append(writer)
        return writer

    def first_part_key(self, stream: str, *, index: int | None = None) -> str:
        """The key of the first object of ``stream`` for this part (what :meth:`part_writer` names it).

        It exists once the part's first ``always_one`` writer has closed: a later slice whose own
        writer wrote nothing (no actions in it) names that object, as every slice must name one.
        """
        return part_key(self.execution_id, self.stage, stream, index if index is not None else (self.part_index or 0), 0)

    def spill_writers(self, partitions: int, *, source_range: int = 0) -> SharedBudget:
        """Writers of scratch parts, one a partition (for a stage that partitions its input before merging).

        Together they buffer :data:`SPILL_BUFFER_BYTES` (call their ``trim()`` between batches
        of adds), so memory does not grow with the source however many partitions a big day
        needs. ``source_range``: the byte range of the source whose records these are
        (``spill/r00003/p00017-000000.jsonl``).
        """
        def writer(partition: int) -> PartWriter:
            return PartWriter(self.objects, self.bucket,
                              lambda n: spill_key(self.execution_id, self.stage, partition, n, source_range=source_range),
                              max_records=MAX_PART_RECORDS * 100, max_bytes=SPILL_PART_BYTES)

        return SharedBudget([writer(p) for p in range(partitions)], budget=SPILL_BUFFER_BYTES)

    def scratch_writer(self, stream: str, source_range: int) -> PartWriter:
        """A writer of one source range's scratch parts of ``stream`` (``spill/r00003/errors-000000.jsonl``),
        which a later step reads and removes."""
        return PartWriter(self.objects, self.bucket,
                          lambda n: range_scratch_key(self.execution_id, self.stage, source_range, stream, n))

    def adopt_parts(self, stream: str, parts: list[PartInfo]) -> None:
        """Count parts that other calls of this stage wrote (a fanned-out first stage's) as this call's output."""
        self.adopted.setdefault(stream, []).extend(parts)

    def written_parts(self) -> dict[str, list[PartInfo]]:
        """Every part the stage's writers wrote (and the parts it adopted), by stream."""
        out = {stream: list(parts) for stream, parts in self.adopted.items()}
        adopted = {p.key for parts in self.adopted.values() for p in parts}
        for stream, writers in self.writers.items():
            out.setdefault(stream, []).extend(p for w in writers for p in w.parts if p.key not in adopted)
        return out

    def output_key(self, name: str = "output.json") -> str:
        """Key of an artefact of this stage: ``executions/{id}/{stage}/{name}``."""
        return execution_key(self.execution_id, self.stage, name)

    async def read_source_lines(self, uri: str, chunk_bytes: int = 1 << 20) -> Any:
        """The source's lines as bytes, streamed: a local file line by line, an S3 object in chunks.

        The object store port has no ranged read, so an ``s3://`` source is read through
        the store's ``get_stream`` when it has one (the S3 adapter streams the body) and
        whole otherwise (the in-memory and file stores of tests and local runs).
        """
        if uri.startswith("s3://"):
            bucket, _, key = uri[5:].partition("/")
            stream = getattr(self.objects, "get_stream", None)
            if stream is None:
                data = await self.objects.get(bucket, key)
                for line in data.split(b"\n"):
                    yield line
                return
            rest = b""
            async for chunk in stream(bucket, key, chunk_bytes):
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()
                for line in lines:
                    yield line
            if rest:
                yield rest
            return
        import asyncio

        handle = await asyncio.to_thread(open, uri, "rb")
        try:
            while True:
                lines = await asyncio.to_thread(handle.readlines, chunk_bytes)
                if not lines:
                    break
                for line in lines:
                    yield line.rstrip(b"\n")
        finally:
            handle.close()

    async def source_size(self, uri: str) -> int:
        """The source's length in bytes: ``s3://bucket/key`` by the store's ``size`` (HeadObject), else the file's."""
        if uri.startswith("s3://"):
            bucket, _, key = uri[5:].partition("/")
            return await self.objects.size(bucket, key)
        import asyncio
        import os

        return (await asyncio.to_thread(os.stat, uri)).st_size

    async def read_source_range(self, uri: str, start: int, end: int) -> bytes:
        """Bytes ``start`` up to ``end`` of the source (clipped to its length): an S3 ranged GET, or a file read."""
        if uri.startswith("s3://"):
            bucket, _, key = uri[5:].partition("/")
            return await self.objects.get_range(bucket, key, start, end)
        import asyncio

        return await asyncio.to_thread(_read_file_range, uri, start, end)

    async def read_source(self, uri: str) -> bytes:
        """Read a source file: ``s3://bucket/key`` from the object store, else a local path."""
        if uri.startswith("s3://"):
            bucket, _, key = uri[5:].partition("/")
            return await self.objects.get(bucket, key)
        import asyncio
        from pathlib import Path

        return await asyncio.to_thread(Path(uri).read_bytes)

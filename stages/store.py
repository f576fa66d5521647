"""Store: upsert scored candidates into the candidate store.

Each candidate becomes a :class:`~ceap_engine.ports.CandidateRecord` keyed
``CUSTOMER#{c}#PROGRAM#{p}#MARKETPLACE#{m}`` / ``SUBJECT#{type}#{id}``, with
``score`` = the primary model's value and ``channels`` = the channels it is
eligible for, written with one ``put_batch`` call (the store splits it into
batches of 25).

What a write keeps of a record already in the store (read first, by key):

* ``metadata.createdAt`` and the consumed state (``consumed``, ``consumedAt``,
  ``consumedChannel``) - a new order must not make an engaged customer
  eligible again;
* ``metadata.version``: +1 on every write that changes what the candidate says
  (:func:`stages.domain.same_content`: timestamps and executions aside); a
  candidate that says the same as the stored one is not written at all, so a
  re-run, a retry or a resume changes no row and no version.

Every write is conditional on the version read (optimistic concurrency,
:func:`~ceap_engine.pipeline.stage.write_candidates`): when a ``ceap event`` or
a concurrent run wrote the record in between, it is read again and merged
again, so no update is lost and a consumed candidate stays consumed.

Counting: ``inputCount = storedCount + failedCount + errorCount``; the log says how many of
the stored needed no write and how many writes lost a race and were redone.
Writes refused for what the record is (a DynamoDB limit, a bad value) are
listed under ``failed`` with the store's reason. Writes that failed for a
passing reason (throttling after the adapter's own retries, a record other
writers kept changing) fail the stage with a
:class:`~ceap_engine.errors.StorageError` naming the count, so the state
machine's Retry applies - and the retry rewrites nothing already stored. If
*every* write fails the stage raises too (the store is down, not the data
wrong). A missing candidate store is a :class:`PermanentError` (the workflow
is wired wrong).
"""

from datetime import datetime
from typing import Any

from pydantic import Field

from ceap_engine.pipeline.stage import (
    CandidateRecord,
    CandidateStore,
    PermanentError,
    RecordWire,
    StageContext,
    StorageError,
    document_text,
    encode_struct,
    write_candidates,
)

from . import wire
from .config import load_default
from .domain import (
    CamelModel,
    Candidate,
    DateRange,
    RecordFailure,
    eligible_channel_set,
    record_failure,
)
from .wire import CANDIDATES

__all__ = [
    "FailedWrite",
    "StoreInput",
    "StoreMetrics",
    "StoreOutput",
    "decide_write",
    "primary_model_of",
    "primary_score",
    "require_candidate_store",
    "run",
    "stored_candidate",
]

#: How many existing records are read at once before writing.
READ_CONCURRENCY = 16


class StoreInput(CamelModel):
    """Score's output: the scored ``candidates`` and the ``primaryModel``; other fields are ignored."""

    program_id: str | None = None
    marketplace: str | None = None
    date_range: DateRange | None = None
    primary_model: str | None = None
    candidates: list[Candidate]


class FailedWrite(CamelModel):
    customer_id: str
    subject_type: str
    subject_id: str
    pk: str
    sk: str
    reason: str


class StoreMetrics(CamelModel):
    input_count: int
    stored_count: int
    failed_count: int
    error_count: int = 0


class StoreOutput(CamelModel):
    program_id: str | None = None
    marketplace: str | None = None
    date_range: DateRange | None = None
    primary_model: str | None = None
    candidates: list[Candidate]
    failed: list[FailedWrite] = Field(default_factory=list)
    errors: list[RecordFailure] = Field(default_factory=list)
    metrics: StoreMetrics


def require_candidate_store(context: StageContext) -> CandidateStore:
    """``context.candidates``, or a :class:`PermanentError` saying the workflow lacks one."""
    if context.candidates is None:
        raise PermanentError(
            f"stage {context.stage} needs a candidate store but the stage context has none: "
            "configure the workflow's candidate store (SQLite locally, DynamoDB on AWS)"
        )
    return context.candidates


def primary_model_of(context: StageContext) -> str:
    """The primary model named in the stage config, else the shipped default (``score_models.json``)."""
    configured = context.config.get("primaryModel")
    if configured is not None:
        if not isinstance(configured, str) or not configured:
            raise PermanentError(f"stage {context.stage} config primaryModel must be a model id, got {configured!r}")
        return configured
    return str(load_default("score_models.json")["primaryModel"])


def primary_score(candidate: Any, primary_model: str) -> float | None:
    """The primary model's value, or ``None`` when the candidate has no such score."""
    score = candidate.scores.get(primary_model)
    return None if score is None else score.value


def stored_candidate(existing: CandidateRecord | None) -> wire.Candidate | None:
    """The candidate a stored record holds, or ``None`` (no record, or a document that is not a valid candidate)."""
    if existing is None:
        return None
    text = document_text(existing)  # as the stores read records: the text, unparsed
    if text is None and not existing.data:
        return None
    try:
        record = CANDIDATES.codec.decode_line(text.encode() if text is not None else encode_struct(existing.data))
    except (TypeError, ValueError):
        return None
    return record if isinstance(record, wire.Candidate) else None  # an unreadable old document is replaced


def decide_write(
    candidate: wire.Candidate, existing: CandidateRecord | None, *, now: datetime, execution_id: str, primary_model: str
) -> wire.Candidate | None:
    """The candidate to write over ``existing`` (the stored record), or ``None`` when nothing changes.

    Keeps the stored ``createdAt`` and consumed state; the version is the stored
    one + 1 (1 for a new candidate); ``None`` when the result says the same as
    the stored candidate (:func:`~stages.wire.same_content`: timestamps and versions
    aside) and would be ranked the same (score of ``primary_model``, channels).

    >>> c = wire.Candidate(customer_id="C-1", subject=wire.Subject(type="PRODUCT", id="B0X1"))
    >>> decide_write(c, None, now=datetime(2025, 3, 1), execution_id="e-1", primary_model="m").metadata.version
    1
    """
    return _decide(candidate, existing, stored_candidate(existing), now=now, execution_id=execution_id,
                   primary_model=primary_model)


def _decide(
    candidate: wire.Candidate, existing: CandidateRecord | None, before: wire.Candidate | None, *, now: datetime,
    execution_id: str, primary_model: str,
) -> wire.Candidate | None:
    """:func:`decide_write` with ``before = stored_candidate(existing)`` read by the caller (who needs it too)."""
    # The version is set at once: what the comparison below compares leaves versions aside.
    version = 1 if existing is None else existing.version + 1
    attributes = candidate.attributes
    if before is None:
        metadata = wire.replace(candidate.metadata, updated_at=now, workflow_execution_id=execution_id,
                                version=version)
    else:
        metadata = wire.replace(candidate.metadata, updated_at=now, workflow_execution_id=execution_id,
                                version=version, created_at=before.metadata.created_at or candidate.metadata.created_at)
        if before.attributes.consumed and not attributes.consumed:
            # A new order must not make an engaged customer eligible again.
            attributes = wire.replace(attributes, consumed=True, consumed_at=before.attributes.consumed_at,
                                      consumed_channel=before.attributes.consumed_channel)
    merged = wire.replace(candidate, metadata=metadata, attributes=attributes)
    if (
        before is not None
        and existing is not None
        and wire.same_content(merged, before)
        and existing.score == primary_score(merged, primary_model)
        and existing.channels == eligible_channel_set(merged)  # type: ignore[arg-type]
    ):
        return None
    return merged


def _record_of(candidate: wire.Candidate, score: float | None) -> tuple[CandidateRecord, bytes]:
    """``candidate.to_record(score)``, and the JSON line it holds, from one encoding of the candidate.

    The record's ``data`` is that text (:class:`~stages.domain.EncodedDocument`), not a dict built
    beside it: no store reads the dict of a record it writes, and building it cost more than
    encoding. The line is what the stage outputs for the candidate, so it is not encoded again.

    >>> c = wire.Candidate(customer_id="C-1", subject=wire.Subject(type="PRODUCT", id="B0X1"))
    >>> record, line = _record_of(c, 0.5)
    >>> record == c.to_record(0.5), record.data_json == line.decode() == c.encoded()
    (True, True)
    """
    line = encode_struct(candidate)
    return candidate.to_record(score, text=line.decode()), line


async def run(input: StoreInput, context: StageContext) -> StoreOutput:
    """Upsert ``input.candidates``; pass the stored ones on to Reactive.

    Example::

        out = await run(StoreInput.model_validate(score_output_json), context)
        out.metrics.stored_count + out.metrics.failed_count == out.metrics.input_count
    """
    return CANDIDATES.typed_output(await _run_wire(CANDIDATES.wire_input(input), context))


async def _run_wire(input: StoreInput, context: StageContext) -> StoreOutput:
    """:func:`run` on wire candidates (:mod:`stages.wire`): what the stage runtime calls on a part."""
    store = require_candidate_store(context)
    primary_model = input.primary_model or primary_model_of(context)
    now = wire.utc(context.clock.now())  # as the models keep timestamps
    # One write per key; with duplicate keys in the input the last one wins, as an upsert would.
    keys = [candidate.key for candidate in input.candidates]
    latest: dict[tuple[str, str], wire.Candidate] = dict(zip(keys, input.candidates, strict=True))
    decided: dict[tuple[str, str], wire.Candidate | bytes] = {}  # bytes: the line written
    # A candidate that cannot become a record is that record's error, not the batch's.
    errors: dict[tuple[str, str], RecordFailure] = {}

    def decide(key: tuple[str, str], existing: CandidateRecord | None) -> CandidateRecord | None:
        try:
            before = stored_candidate(existing)
            after = _decide(latest[key], existing, before, now=now, execution_id=context.execution_id,
                            primary_model=primary_model)
            if after is None:
                # Unchanged: what Reactive sees is the stored candidate (with its consumed state and version).
                decided[key] = before or latest[key]
                return None
            record, line = _record_of(after, primary_score(after, primary_model))
        except Exception as err:  # noqa: BLE001 - one record's failure is that record's error
            errors[key] = record_failure(latest[key], err)
            return None
        if errors:  # an earlier attempt's error of this key is over
            errors.pop(key, None)
        decided[key] = line  # handed on as the very text stored: encoded once
        return record

    writes = await write_candidates(store, list(latest), decide, read_concurrency=READ_CONCURRENCY)

    stored: list[wire.Candidate | bytes] = []
    failed: list[FailedWrite] = []
    current, refused = writes.current, writes.failed
    for candidate, key in zip(input.candidates, keys, strict=True):
        if errors and key in errors:  # (each test of an empty dict skipped: they are, nearly always)
            continue
        if key in current and not (refused and key in refused):
            stored.append(decided[key])
            continue
        failed.append(
            FailedWrite(
                customer_id=candidate.customer_id,
                subject_type=candidate.subject.type,
                subject_id=candidate.subject.id,
                pk=key[0],
                sk=key[1],
                reason=writes.failed.get(key, "the candidate store did not report this record as stored"),
            )
        )

    if writes.retryable:
        sample = "; ".join(f"{k[0]}/{k[1]}: {writes.failed[k]}" for k in list(writes.retryable)[:3])
        raise StorageError(
            f"{len(writes.retryable)} of {len(latest)} candidate writes failed for a passing reason after the "
            f"store's retries ({len(latest) - len(writes.failed)} stored; for example {sample}); the stage fails so "
            "that its Retry writes them again - what is stored already is not rewritten"
        )
    if failed and not stored:
        sample = "; ".join(f"{f.pk}/{f.sk}: {f.reason}" for f in failed[:3])
        raise StorageError(f"every one of {len(failed)} candidate writes failed (for example {sample}); retry later")
    if failed:
        context.log.warning("Store: %d of %d candidate writes failed", len(failed), len(input.candidates))
    context.log.info(
        "Store: %d candidates, %d unchanged (not rewritten), %d writes redone after a concurrent update",
        len(latest), len(writes.unchanged), writes.conflicts,
    )
    return StoreOutput.model_construct(  # the candidates are Structs, valid as decoded
        program_id=input.program_id,
        marketplace=input.marketplace,
        date_range=input.date_range,
        primary_model=primary_model,
        candidates=stored,
        failed=failed,
        errors=list(errors.values()),
        metrics=StoreMetrics(input_count=len(input.candidates), stored_count=len(stored), failed_count=len(failed),
                             error_count=sum(1 for key in keys if key in errors)),
    )


# Store takes 4,000 records a call, twice the runtime's slice: its writes go into the candidate store a call at a
# time (one put_batch, one SQLite transaction), and on a big file a transaction costs nearly the same whatever it
# holds (each dirties nearly every leaf of the key and ranking indexes). Measured here, the million-order day
# end to end (parts of 2,000-5,600 candidates), 2 workers: Store 30.8-31.1 -> 25.1 s, the run 64.9-66.0 -> 58.4 s,
# peak RSS 262-271 -> 284 MiB (100k orders: 219-222 -> 236). A whole part a call (up to 10,000) gave 21.7 s but
# 298 MiB: the 1M run's peak grew past 1.25x the 100k run's (the bound), as a call holds its Structs.
run.wire = RecordWire(CANDIDATES.codec, _run_wire, slice_records=4_000)  # type: ignore[attr-defined]

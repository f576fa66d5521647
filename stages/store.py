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
* ``metadata.version``: +1 when another execution wrote it, unchanged when
  this execution did (a re-run or a retry of the same execution therefore
  writes the same records again and duplicates nothing).

Counting: ``inputCount = storedCount + failedCount + errorCount``; failed writes are listed
under ``failed`` with the store's reason. If *every* write fails the stage
raises :class:`~ceap_engine.errors.StorageError` so the state machine's Retry
applies (the store is down, not the data wrong). A missing candidate store is
a :class:`PermanentError` (the workflow is wired wrong).
"""

import asyncio

from pydantic import Field

from ceap_engine.pipeline.stage import CandidateRecord, CandidateStore, PermanentError, StageContext, StorageError

from .config import load_default
from .domain import CamelModel, Candidate, DateRange, RecordFailure, record_failure

__all__ = [
    "FailedWrite",
    "StoreInput",
    "StoreMetrics",
    "StoreOutput",
    "primary_model_of",
    "primary_score",
    "require_candidate_store",
    "run",
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


def primary_score(candidate: Candidate, primary_model: str) -> float | None:
    """The primary model's value, or ``None`` when the candidate has no such score."""
    score = candidate.scores.get(primary_model)
    return None if score is None else score.value


def _merged_with_existing(candidate: Candidate, existing: CandidateRecord | None, execution_id: str) -> Candidate:
    if existing is None or not existing.data:
        return candidate
    try:
        before = Candidate.model_validate(existing.data)
    except ValueError:
        return candidate  # an unreadable old document is replaced, not merged
    metadata = candidate.metadata.model_copy(
        update={
            "created_at": before.metadata.created_at or candidate.metadata.created_at,
            "version": before.metadata.version
            if before.metadata.workflow_execution_id == execution_id
            else before.metadata.version + 1,
        }
    )
    attributes = candidate.attributes
    if before.attributes.consumed and not attributes.consumed:
        attributes = attributes.model_copy(
            update={
                "consumed": True,
                "consumed_at": before.attributes.consumed_at,
                "consumed_channel": before.attributes.consumed_channel,
            }
        )
    return candidate.model_copy(update={"metadata": metadata, "attributes": attributes})


def _records_of(prepared: list[Candidate], primary_model: str) -> tuple[dict[tuple[str, str], CandidateRecord], list[RecordFailure]]:
    """One record per key (with duplicate keys the last one wins, as an upsert would); a
    candidate that cannot become a record is that record's error, not the batch's."""
    records: dict[tuple[str, str], CandidateRecord] = {}
    errors: list[RecordFailure] = []
    for candidate in prepared:
        try:
            records[candidate.key] = candidate.to_record(primary_score(candidate, primary_model))
        except Exception as err:  # noqa: BLE001
            errors.append(record_failure(candidate, err))
    return records, errors


async def run(input: StoreInput, context: StageContext) -> StoreOutput:
    """Upsert ``input.candidates``; pass the stored ones on to Reactive.

    Example::

        out = await run(StoreInput.model_validate(score_output_json), context)
        out.metrics.stored_count + out.metrics.failed_count == out.metrics.input_count
    """
    store = require_candidate_store(context)
    primary_model = input.primary_model or primary_model_of(context)
    now = context.clock.now()
    limit = asyncio.Semaphore(READ_CONCURRENCY)

    async def prepare(candidate: Candidate) -> Candidate:
        async with limit:
            existing = await store.get(*candidate.key)
        fresh = candidate.model_copy(
            update={
                "metadata": candidate.metadata.model_copy(
                    update={"updated_at": now, "workflow_execution_id": context.execution_id}
                )
            }
        )
        return _merged_with_existing(fresh, existing, context.execution_id)

    prepared = list(await asyncio.gather(*(prepare(c) for c in input.candidates)))
    records, errors = _records_of(prepared, primary_model)
    prepared = [c for c in prepared if c.key in records]
    result = await store.put_batch(list(records.values())) if records else None
    stored_keys = set(result.stored) if result else set()
    failures = dict(result.failed) if result else {}

    stored: list[Candidate] = []
    failed: list[FailedWrite] = []
    for candidate in prepared:
        key = candidate.key
        if key in stored_keys and key not in failures:
            stored.append(candidate)
            continue
        failed.append(
            FailedWrite(
                customer_id=candidate.customer_id,
                subject_type=candidate.subject.type,
                subject_id=candidate.subject.id,
                pk=key[0],
                sk=key[1],
                reason=failures.get(key, "the candidate store did not report this record as stored"),
            )
        )

    if input.candidates and not stored:
        sample = "; ".join(f"{f.pk}/{f.sk}: {f.reason}" for f in failed[:3])
        raise StorageError(f"every one of {len(failed)} candidate writes failed (for example {sample}); retry later")
    if failed:
        context.log.warning("Store: %d of %d candidate writes failed", len(failed), len(input.candidates))
    return StoreOutput(
        program_id=input.program_id,
        marketplace=input.marketplace,
        date_range=input.date_range,
        primary_model=primary_model,
        candidates=stored,
        failed=failed,
        errors=errors,
        metrics=StoreMetrics(input_count=len(input.candidates), stored_count=len(stored), failed_count=len(failed),
                             error_count=len(errors)),
    )

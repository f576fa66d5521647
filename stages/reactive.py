"""Reactive: turn stored candidates into engagement actions, and react to single customer events.

**Batch** (:func:`run`): for each stored candidate, pick the first channel of
``channelPriority`` that the candidate is eligible for and whose threshold its
primary score meets (``channelMinScores[channel]``, else ``minScore``). The
actions are written as JSON Lines to
``executions/{executionId}/Reactive/actions-NNNNN.jsonl`` parts in the workflow bucket
(the file is written even when empty, so ``actionsKey`` always names an
object). An action's ``actionId`` comes from what it is - customer, subject,
program, marketplace, timing window and channel (:func:`stages.domain.action_id`)
- never from the execution, so the same input run again, or resumed after a
crash, gives the same ids and a delivery system can drop repeats.

Effects happen once per engagement window: before it writes its actions
Reactive claims each engagement (:func:`stages.domain.engagement_key`: customer,
subject, program, marketplace, window) in the candidate store
(``claim_engagements``, atomic: the first execution to claim holds it). A
candidate whose engagement another execution holds is skipped
(``ALREADY_ACTIONED``), whatever the channel; the same execution run again (a
resume, a re-run under its name) holds its claims and writes the same actions
again. Just before it acts, Reactive also reads the candidate again from the
candidate store: one consumed since Store (a ``ceap event`` in the meantime) is
skipped as ``ALREADY_CONSUMED``. Candidates without an action are counted under
``skipped`` by reason::

    inputCount = actionCount + sum(skipped.values())
    skipped reasons: ALREADY_CONSUMED, ALREADY_ACTIONED, NO_SCORE, NO_ELIGIBLE_CHANNEL, SCORE_BELOW_THRESHOLD

The batch does not mark candidates consumed: an action is a request, and the
delivery system reports the engagement back as an ``ENGAGEMENT_CONSUMED`` event.

On a part (the stage runtime's fast path) Reactive reads each candidate as
:class:`stages.wire.ActionCandidate`: the fields above and no others, checked as
the model checks them; the rest of the line is skipped unread (Store checked the
whole candidate before storing it).

**Single events** (:func:`handle_event`): an order or engagement event
creates or updates one candidate in the candidate store, unless it is a
duplicate:

* same ``eventId`` seen less than ``dedupWindowSeconds`` (300) ago
  -> ``DUPLICATE_EVENT_ID``;
* same customer + subject + event type seen less than that ago (a client that
  fires twice with new ids) -> ``DUPLICATE_WITHIN_WINDOW``;
* the candidate already lists the ``eventId`` among its ``sourceEventIds``
  (a redelivery after the window) -> ``ALREADY_APPLIED``.

A duplicate writes nothing. "Seen" is recorded by two marker objects in the
workflow bucket, ``events/dedup/<sha256>.json`` (one for the event id, one for
customer + subject + event type), each holding ``seenAt``; they are written
only after the candidate was stored, so an event whose write failed is not
marked and its retry goes through. Markers older than the window are simply
overwritten; an S3 lifecycle rule on ``events/dedup/`` may expire them. Two
identical events arriving at the very same moment may both pass (the object
store has no conditional write); the ``sourceEventIds`` check still keeps a
redelivered id from being counted twice in the candidate's order value.
"""

import asyncio
import hashlib
import json
import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import Field

from ceap_engine.pipeline.stage import (
    CandidateRecord,
    NonFiniteNumber,
    ObjectNotFound,
    RecordWire,
    StageContext,
    StorageError,
    encode_structs,
    record_consumed,
    write_candidates,
)

from .domain import (
    DEFAULT_TIMING_WINDOW_END_DAYS,
    DEFAULT_TIMING_WINDOW_START_DAYS,
    CamelModel,
    Candidate,
    CandidateMetadata,
    DateRange,
    Subject,
    UtcDatetime,
    candidate_context,
    eligible_channel_set,
    engagement_action_id,
    engagement_key,
    engagement_key_for,
    experiment_arm,
    RecordFailure,
    load_config,
    record_failure,
    timing_window_after,
)
from . import wire
from .store import primary_model_of, primary_score, require_candidate_store
from .wire import CANDIDATES

__all__ = [
    "CustomerEvent",
    "EngagementAction",
    "EventResult",
    "ReactiveConfig",
    "ReactiveInput",
    "ReactiveMetrics",
    "ReactiveOutput",
    "dedup_marker_keys",
    "handle_event",
    "run",
]

#: Candidates keep at most this many source event ids (newest last).
MAX_SOURCE_EVENT_IDS = 50

#: How many candidate re-reads are in flight at once.
IO_CONCURRENCY = 16


class ReactiveConfig(CamelModel):
    """Settings of both entry points (all optional).

    ``minScore`` (0.5) and ``channelMinScores`` (per channel, overriding
    ``minScore``); ``channelPriority`` (push, email, inApp, sms): the first
    eligible channel that meets its threshold wins; ``templates``: template id
    per channel (default ``{programId}.{channel}``); ``primaryModel``: whose
    score counts when the input does not name one (as Store's output does;
    default: ``score_models.json``'s);
    ``dedupWindowSeconds`` (300); ``timingWindowStartDays``/``EndDays`` (3/30),
    ``candidateTtlDays`` (30) and ``treatmentPercent`` (50) for candidates
    created from events.
    """

    min_score: float = Field(0.5, ge=0, le=1)
    channel_min_scores: dict[str, float] = Field(default_factory=dict)
    channel_priority: list[str] = Field(default_factory=lambda: ["push", "email", "inApp", "sms"], min_length=1)
    templates: dict[str, str] = Field(default_factory=dict)
    primary_model: str | None = None
    dedup_window_seconds: float = Field(300, ge=0)
    timing_window_start_days: float = Field(DEFAULT_TIMING_WINDOW_START_DAYS, ge=0)
    timing_window_end_days: float = Field(DEFAULT_TIMING_WINDOW_END_DAYS, ge=0)
    candidate_ttl_days: float = Field(30, gt=0)
    treatment_percent: float = Field(50, ge=0, le=100)


class ReactiveInput(CamelModel):
    """Store's output: the stored ``candidates``; other fields are ignored."""

    program_id: str | None = None
    marketplace: str | None = None
    date_range: DateRange | None = None
    primary_model: str | None = None
    candidates: list[Candidate]


class EngagementAction(CamelModel):
    """One request to engage a customer on a channel (one line of an ``actions-NNNNN.jsonl`` part)."""

    action_id: str
    execution_id: str
    program_id: str
    marketplace: str
    customer_id: str
    subject: Subject
    channel: str
    template_id: str
    score: float
    model_id: str
    not_before: UtcDatetime | None = None
    not_after: UtcDatetime | None = None
    experiment_treatment: str | None = None
    created_at: UtcDatetime


class ReactiveMetrics(CamelModel):
    input_count: int
    action_count: int
    actions_by_channel: dict[str, int] = Field(default_factory=dict)


class ReactiveOutput(CamelModel):
    program_id: str | None = None
    marketplace: str | None = None
    actions_bucket: str
    actions_key: str
    actions_keys: list[str] = Field(default_factory=list)
    skipped: dict[str, int] = Field(default_factory=dict)
    errors: list[RecordFailure] = Field(default_factory=list)
    metrics: ReactiveMetrics


async def _consumed_now(context: StageContext, keys: list[tuple[str, str]]) -> list[bool]:
    """Whether each stored candidate is consumed now (an event may have come in since Store).

    Through the store's ``consumed_many`` where it has one (the flag alone, not the documents),
    else its ``get_many``, else 16 ``get`` calls at a time.
    """
    store = context.candidates
    if store is None or not keys:
        return [False] * len(keys)
    consumed_many = getattr(store, "consumed_many", None)
    if consumed_many is not None:
        return list(await consumed_many(keys))
    get_many = getattr(store, "get_many", None)
    if get_many is not None:
        records = await get_many(keys)
    else:
        limit = asyncio.Semaphore(IO_CONCURRENCY)

        async def get(key: tuple[str, str]) -> CandidateRecord | None:
            async with limit:
                return await store.get(*key)

        records = await asyncio.gather(*(get(key) for key in keys))
    return [record_consumed(stored) for stored in records]


def _choose(candidate: Candidate, score: float | None, config: ReactiveConfig) -> tuple[str | None, str | None]:
    """``(channel, None)`` or ``(None, skip reason)``."""
    if candidate.attributes.consumed:
        return None, "ALREADY_CONSUMED"
    if score is None:
        return None, "NO_SCORE"
    priority = config.channel_priority
    eligible = eligible_channel_set(candidate, priority)  # type: ignore[arg-type]  # order does not matter here
    if not eligible:
        return None, "NO_ELIGIBLE_CHANNEL"
    for channel in config.channel_priority:
        if channel in eligible and score >= config.channel_min_scores.get(channel, config.min_score):
            return channel, None
    return None, "SCORE_BELOW_THRESHOLD"


def _action_for(
    candidate: wire.Candidate, input: ReactiveInput, config: ReactiveConfig, primary_model: str, execution_id: str,
    now: datetime,
) -> tuple[dict[str, object] | None, str | None]:
    """The candidate's action (an :class:`EngagementAction` in its JSON form), or ``(None, skip reason)``.

    The action's ``engagement`` (:func:`~stages.domain.engagement_key`) comes along in the
    result's second place instead of a skip reason.
    """
    score = primary_score(candidate, primary_model)
    channel, skip_reason = _choose(candidate, score, config)
    if channel is None:
        return None, skip_reason
    assert score is not None
    program, marketplace = candidate.program_and_marketplace()
    program_id = program or input.program_id or ""
    window = candidate.attributes.timing_window
    engagement = engagement_key_for(candidate, program, marketplace)  # type: ignore[arg-type]
    # The fields of EngagementAction in its order (tests/stages/test_reactive.py compares the two).
    return {
        "actionId": engagement_action_id(engagement, channel),
        "executionId": execution_id,
        "programId": program_id,
        "marketplace": marketplace or input.marketplace or "",
        "customerId": candidate.customer_id,
        "subject": {"type": candidate.subject.type, "id": candidate.subject.id, "metadata": {}},
        "channel": channel,
        "templateId": config.templates.get(channel, f"{program_id}.{channel}"),
        "score": score,
        "modelId": primary_model,
        "notBefore": window.start if window else None,
        "notAfter": window.end if window else None,
        "experimentTreatment": candidate.metadata.experiment_treatment,
        "createdAt": now,
    }, engagement


async def run(input: ReactiveInput, context: StageContext) -> ReactiveOutput:
    """Write one engagement action per qualifying candidate to this part's ``actions-NNNNN.jsonl``.

    Example::

        out = await run(ReactiveInput.model_validate(store_output_json), context)
        lines = (await context.objects.get(out.actions_bucket, out.actions_key)).splitlines()
        len(lines) == out.metrics.action_count
    """
    return await _run_wire(CANDIDATES.wire_input(input), context)


async def _run_wire(input: ReactiveInput, context: StageContext) -> ReactiveOutput:
    """:func:`run` on wire candidates (:mod:`stages.wire`): what the stage runtime calls on a part."""
    config: ReactiveConfig = load_config(ReactiveConfig, context.config, "Reactive")
    primary_model = input.primary_model or primary_model_of(context)
    now = wire.utc(context.clock.now())  # as the models keep timestamps
    skipped: Counter[str] = Counter()
    errors: list[RecordFailure] = []

    chosen: list[tuple[wire.Candidate, dict[str, object], str]] = []
    for candidate in input.candidates:
        try:
            action, skip_or_engagement = _action_for(candidate, input, config, primary_model, context.execution_id, now)
        except Exception as err:  # noqa: BLE001 - one record's failure is that record's error, not the batch's
            errors.append(record_failure(candidate, err))  # type: ignore[arg-type]
            continue
        if action is None:
            skipped[skip_or_engagement or "UNKNOWN"] += 1
        else:
            chosen.append((candidate, action, skip_or_engagement or ""))

    consumed_now = await _consumed_now(context, [candidate.key for candidate, _, _ in chosen])
    rechecks: list[str | None] = ["ALREADY_CONSUMED" if gone else None for gone in consumed_now]
    # One execution issues each engagement: claim them all at once (a resumed
    # execution finds its own claims again), skip those another execution holds.
    engagements = [engagement if why is None else "" for (_, _, engagement), why in zip(chosen, rechecks, strict=True)]
    open_engagements = [key for key in engagements if key]
    store = context.candidates
    holders = await store.claim_engagements(open_engagements, context.execution_id) if store and open_engagements else {}
    for n, key in enumerate(engagements):
        if key and holders.get(key, context.execution_id) != context.execution_id:
            rechecks[n] = "ALREADY_ACTIONED"
    actions: list[dict[str, object]] = []
    for (_, action, _), skip_reason in zip(chosen, rechecks, strict=True):
        if skip_reason is not None:
            skipped[skip_reason] += 1
            continue
        actions.append(action)

    # Actions are a record stream of their own (actions-NNNNN.jsonl beside the manifest),
    # written even when empty so that actionsKey always names an object.
    writer = context.part_writer("actions", always_one=True)
    written: list[dict[str, object]] = []
    for action in actions:
        if not math.isfinite(action["score"]):  # type: ignore[arg-type]
            errors.append(RecordFailure(key=f"{action['customerId']}/{action['subject']['id']}",  # type: ignore[index]
                                        reason_code="NON_FINITE",
                                        message=str(NonFiniteNumber("the action's score is not a finite number"))))
            continue
        written.append(action)
    actions = written
    await writer.add_lines(encode_structs(actions))  # one encoder call for the part's actions, added as a run
    parts = await writer.close()
    # Only a part's first slice writes an empty object; a later slice without actions writes none
    # and names the first slice's (a re-run of a part in slices: every engagement already claimed).
    key = parts[0].key if parts else context.first_part_key("actions")
    by_channel = Counter(str(a["channel"]) for a in actions)
    context.log.info("Reactive wrote %d actions to s3://%s/%s", len(actions), context.bucket, key)
    return ReactiveOutput(
        program_id=input.program_id,
        marketplace=input.marketplace,
        actions_bucket=context.bucket,
        actions_key=key,
        actions_keys=[p.key for p in parts],
        skipped=dict(sorted(skipped.items())),
        errors=errors,
        metrics=ReactiveMetrics(
            input_count=len(input.candidates),
            action_count=len(actions),
            actions_by_channel=dict(sorted(by_channel.items())),
        ),
    )


run.wire = RecordWire(wire.ACTION_CANDIDATES, _run_wire)  # type: ignore[attr-defined]  # the fields it reads only


# -- single customer events ---------------------------------------------------


class CustomerEvent(CamelModel):
    """One event about a customer and a subject, arriving outside the batch.

    ``ORDER_PLACED`` / ``ORDER_DELIVERED`` create or update the candidate
    (an order's value is added once per ``orderId``; delivery sets the
    timing window); ``ENGAGEMENT_CONSUMED`` marks it engaged on ``channel``.
    Optional fields left out leave the candidate's values as they were.

    >>> CustomerEvent.model_validate({"eventId": "ev-1", "eventType": "ORDER_DELIVERED",
    ...     "customerId": "C-1", "programId": "reviews", "marketplace": "US",
    ...     "subject": {"type": "PRODUCT", "id": "B0X1"}}).event_type
    'ORDER_DELIVERED'
    """

    event_id: str = Field(min_length=1)
    event_type: Literal["ORDER_PLACED", "ORDER_DELIVERED", "ENGAGEMENT_CONSUMED"]
    customer_id: str = Field(min_length=1)
    program_id: str = Field(min_length=1)
    marketplace: str = Field(min_length=1)
    subject: Subject
    occurred_at: UtcDatetime | None = None
    order_id: str | None = None
    order_value: float | None = Field(None, ge=0)
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    delivery_date: UtcDatetime | None = None
    channel_eligibility: dict[str, bool] | None = None
    channel: str | None = None
    customer_trust_score: float | None = Field(None, ge=0, le=1)
    review_quality_score: float | None = Field(None, ge=0, le=1)
    fraud_flag: bool | None = None
    media_eligible: bool | None = None


class EventResult(CamelModel):
    """What :func:`handle_event` did: ``CREATED``, ``UPDATED`` or ``DEDUPLICATED`` (with ``reason``)."""

    event_id: str
    status: Literal["CREATED", "UPDATED", "DEDUPLICATED"]
    reason: str | None = None
    pk: str
    sk: str
    version: int | None = None


def dedup_marker_keys(event: CustomerEvent) -> dict[str, str]:
    """The two marker keys of an event: ``{"DUPLICATE_EVENT_ID": key, "DUPLICATE_WITHIN_WINDOW": key}``.

    Hashes keep arbitrary ids out of object keys (no '/', no length limit).
    """

    def key(text: str) -> str:
        return f"events/dedup/{hashlib.sha256(text.encode('utf-8')).hexdigest()}.json"

    return {
        "DUPLICATE_EVENT_ID": key(f"event-id|{event.event_id}"),
        "DUPLICATE_WITHIN_WINDOW": key(
            f"customer-subject-type|{event.customer_id}|{event.subject.type}|{event.subject.id}|{event.event_type}"
        ),
    }


async def _seen_at(context: StageContext, key: str) -> datetime | None:
    try:
        marker = json.loads(await context.objects.get(context.bucket, key))
        seen = datetime.fromisoformat(marker["seenAt"])
        return seen if seen.tzinfo is not None else seen.replace(tzinfo=UTC)
    except ObjectNotFound:
        return None
    except (ValueError, KeyError, TypeError):
        context.log.warning("ignoring unreadable dedup marker s3://%s/%s", context.bucket, key)
        return None


def _apply_event(
    before: Candidate | None, event: CustomerEvent, config: ReactiveConfig, now: datetime, execution_id: str
) -> Candidate:
    occurred = event.occurred_at or now
    if before is None:
        candidate = Candidate(
            customer_id=event.customer_id,
            context=candidate_context(event.program_id, event.marketplace),
            subject=event.subject,
            metadata=CandidateMetadata(
                created_at=now,
                version=1,
                source_connector_id="customer-events",
                experiment_treatment=experiment_arm(event.program_id, event.customer_id, config.treatment_percent),
            ),
        )
        version = 1
    else:
        candidate = before
        version = before.metadata.version + 1

    a = candidate.attributes
    changes: dict[str, object] = {
        "source_event_ids": [*a.source_event_ids, event.event_id][-MAX_SOURCE_EVENT_IDS:],
    }
    if event.event_type in ("ORDER_PLACED", "ORDER_DELIVERED"):
        changes["event_date"] = max(a.event_date, occurred) if a.event_date else occurred
        new_order = event.order_id is None or event.order_id not in a.order_ids
        if new_order and event.order_value is not None:
            changes["order_value"] = round((a.order_value or 0.0) + event.order_value, 2)
        if event.order_id is not None and new_order:
            changes["order_ids"] = [*a.order_ids, event.order_id]
            changes["order_count"] = a.order_count + 1
        if event.currency is not None:
            changes["currency"] = event.currency
    if event.event_type == "ORDER_DELIVERED":
        delivered = event.delivery_date or occurred
        changes["delivery_date"] = delivered
        changes["timing_window"] = timing_window_after(
            delivered, config.timing_window_start_days, config.timing_window_end_days
        )
    if event.event_type == "ENGAGEMENT_CONSUMED":
        changes.update(consumed=True, consumed_at=occurred, consumed_channel=event.channel)
    if event.channel_eligibility is not None:
        changes["channel_eligibility"] = {**a.channel_eligibility, **event.channel_eligibility}
    if event.customer_trust_score is not None:
        changes["customer_trust_score"] = event.customer_trust_score
    if event.review_quality_score is not None:
        changes["review_quality_score"] = event.review_quality_score
    if event.fraud_flag is not None:
        changes["fraud_suspected"] = a.fraud_suspected or event.fraud_flag
    if event.media_eligible is not None:
        changes["media_eligible"] = event.media_eligible

    expires = now + timedelta(days=config.candidate_ttl_days)
    metadata = candidate.metadata.model_copy(
        update={
            "updated_at": now,
            "version": version,
            "workflow_execution_id": execution_id,
            "expires_at": max(candidate.metadata.expires_at, expires) if candidate.metadata.expires_at else expires,
        }
    )
    return candidate.model_copy(update={"attributes": a.model_copy(update=changes), "metadata": metadata})


def _readable(existing: CandidateRecord | None, context: StageContext) -> Candidate | None:
    if existing is None or not existing.data:
        return None
    try:
        return Candidate.model_validate(existing.data)
    except ValueError:
        # An unreadable stored document would otherwise block every event of this key.
        context.log.warning("replacing unreadable candidate %s/%s", existing.pk, existing.sk)
        return None


async def handle_event(event: CustomerEvent, context: StageContext) -> EventResult:
    """Create or update the event's candidate, unless the event is a duplicate (see the module doc).

    Example::

        result = await handle_event(CustomerEvent.model_validate(event_json), context)
        result.status  # "CREATED", "UPDATED" or "DEDUPLICATED"
    """
    config: ReactiveConfig = load_config(ReactiveConfig, context.config, "Reactive")
    store = require_candidate_store(context)
    now = context.clock.now()
    window = timedelta(seconds=config.dedup_window_seconds)
    pk, sk = Candidate(
        customer_id=event.customer_id, context=candidate_context(event.program_id, event.marketplace), subject=event.subject
    ).key

    markers = dedup_marker_keys(event)
    for reason, key in markers.items():
        seen = await _seen_at(context, key)
        if seen is not None and now - seen < window:
            return EventResult(event_id=event.event_id, status="DEDUPLICATED", reason=reason, pk=pk, sk=sk)

    primary_model = primary_model_of(context)
    outcome: dict[str, Candidate | None] = {}

    def decide(key: tuple[str, str], stored: CandidateRecord | None) -> CandidateRecord | None:
        # Called again with the fresh record when a concurrent write (a run's Store,
        # another event) got in between: the event is applied to what is stored now.
        before = _readable(stored, context)
        outcome["before"] = before
        if before is not None and event.event_id in before.attributes.source_event_ids:
            outcome["after"] = None
            return None
        after = _apply_event(before, event, config, now, context.execution_id)
        if stored is not None:
            after = after.model_copy(update={"metadata": after.metadata.model_copy(
                update={"version": stored.version + 1})})
        outcome["after"] = after
        return after.to_record(primary_score(after, primary_model))

    writes = await write_candidates(store, [(pk, sk)], decide)
    before, candidate = outcome.get("before"), outcome.get("after")
    if (pk, sk) in writes.failed:
        reason = writes.failed[(pk, sk)]
        raise StorageError(f"could not store candidate {pk}/{sk} for event {event.event_id}: {reason}; retry the event")
    if candidate is None:
        return EventResult(
            event_id=event.event_id,
            status="DEDUPLICATED",
            reason="ALREADY_APPLIED",
            pk=pk,
            sk=sk,
            version=before.metadata.version if before is not None else None,
        )

    marker = json.dumps({"eventId": event.event_id, "eventType": event.event_type, "seenAt": now.isoformat()}).encode()
    for key in markers.values():
        await context.objects.put(context.bucket, key, marker, content_type="application/json")
    return EventResult(
        event_id=event.event_id,
        status="CREATED" if before is None else "UPDATED",
        pk=pk,
        sk=sk,
        version=candidate.metadata.version,
    )

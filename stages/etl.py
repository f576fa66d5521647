"""ETL: read customer order events and turn them into candidates.

Input (the execution payload)::

    {"programId": "review-solicitation", "marketplace": "US",
     "dateRange": {"start": "2025-03-01", "end": "2025-03-31"},
     "source": "examples/data/orders.jsonl"}

``source`` is a local path or ``s3://bucket/key``; its extension picks the
format: ``.jsonl``/``.ndjson`` (JSON Lines), ``.json`` (JSON Lines, or one JSON array) or
``.csv`` (a header row; nested fields as dotted columns such as
``channelOptIns.email``; empty cells count as absent). One record is one
:class:`OrderEvent`.

Streaming, in steps (the built-in workflows run each as its own calls; :func:`run` runs them in
one): :func:`plan` cuts a JSON Lines source into byte ranges (``rangeBytes``, 32 MiB) and fixes the
hash partitions and their groups (:mod:`stages.etl_source` reads a range, line-aligned; a
``.json`` array or a CSV file is one range, read whole); :func:`split`, per range, validates and
scopes each record and spills in-scope events by (customer, product) partition (``spill/``), so
a candidate's events meet in one partition; :func:`merge`, per group of partitions, merges each
partition's events from every range in source order and writes its candidates to bounded
``part-NNNNN.jsonl`` parts (at most 10,000 candidates each); :func:`finish` adds it all up.
Malformed records go to ``errors-NNNNN.jsonl`` parts with their source line number, a ``reasonCode``
(``INVALID_JSON``, ``INVALID_RECORD``, ``TOO_DEEP`` for JSON nested deeper than 64
levels, ``NON_FINITE``, ``INVALID_ENCODING``) and the message; a candidate whose merge
fails (a sum that overflows to infinity: ``NON_FINITE``; a date past year 9999:
``OVERFLOW``) is an error too, with the lines of its events. No record fails the stage.

How each record is counted (the three metrics stay exact)::

    processedCount   = transformedCount + errorCount
    recordsRead      = processedCount + skipped.otherMarketplace + skipped.outsideDateRange

* a record that is not valid JSON/CSV or fails :class:`OrderEvent` validation
  is an **error**: counted in ``errorCount`` and listed in ``errors`` with its
  line number and reason (we cannot tell its scope, so it counts as processed);
* a valid record of another marketplace, or whose ``orderDate`` lies outside
  ``dateRange``, is **skipped**: it belongs to another execution, so it is not
  processed here; it is counted beside the metrics under ``skipped``;
* every other record is **transformed**: it went into exactly one candidate.
  Blank lines are not records.

The stage's reconciliation: ``recordsRead = candidates + merged + errors +
skipped``, where ``merged`` counts the events that went into a candidate another
event already started (and redeliveries).

Merging: there is one candidate per (customer, product). A record whose
``eventId`` was already seen for that candidate is a redelivery: it is transformed (counted) but
adds nothing (first occurrence wins; see ``duplicateEventCount``). Of the
remaining events of a candidate, ordered by ``orderDate``:

* ``eventDate`` is the latest order date, ``deliveryDate`` the latest delivery
  date (none if nothing was delivered yet), the timing window follows from it;
* ``orderValue`` is the sum over the events in the latest event's currency
  (events in another currency are not added: sums across currencies mean
  nothing); ``orderIds`` and ``sourceEventIds`` list what went in;
* channel opt-ins, trust score and review quality are the latest known values
  (preferences change; the newest wins); ``fraudSuspected`` and
  ``mediaEligible`` are true if any event says so; ``priorReviewCount`` is the
  largest seen.
"""

import asyncio
import json
import zlib
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any, Self

import msgspec
from pydantic import Field, ValidationError, field_validator, model_validator

from ceap_engine.pipeline.stage import (
    NonFiniteNumber,
    PartInfo,
    PartWriter,
    RecordCodec,
    SourceSteps,
    StageContext,
    decode_line,
    encode_struct,
    encode_structs,
    paused_gc,
    run_source_steps,
    split_lines,
)

from . import wire

from .domain import (
    DEFAULT_TIMING_WINDOW_END_DAYS,
    DEFAULT_TIMING_WINDOW_START_DAYS,
    CamelModel,
    DateRange,
    UtcDatetime,
    describe_validation_error,
    experiment_arm,
    is_finite,
    load_config,
)
from .etl_source import ParsedRecord, range_records, records, source_format, source_size, splits_into_ranges

__all__ = ["EtlConfig", "EtlInput", "EtlMetrics", "EtlOutput", "OrderEvent", "RecordError", "SkippedRecords", "finish", "merge", "plan", "run",
           "source_format", "split"]


class EtlInput(CamelModel):
    """The execution payload: which program, marketplace and dates to read from which source."""

    program_id: str = Field(min_length=1)
    marketplace: str = Field(min_length=1)
    date_range: DateRange
    source: str = Field(min_length=1)


class EtlConfig(CamelModel):
    """ETL settings (all optional).

    ``timingWindowStartDays``/``timingWindowEndDays`` (3/30): the engagement
    window after delivery; ``candidateTtlDays`` (30): ``expiresAt`` is
    creation + this; ``treatmentPercent`` (50): share of customers in the
    ``treatment`` arm (the rest are ``control``), assigned by a stable hash of
    program and customer; ``sourceConnectorId`` ("order-events");
    ``partitions`` (0 = from the source's size): how many hash partitions the
    events are spread over before merging; ``partRecords`` (10,000): the most
    candidates one part holds (the Map's unit of work downstream); ``rangeBytes`` (32 MiB): the
    size of the byte ranges a JSON Lines source is read in, one call each.
    """

    timing_window_start_days: float = Field(DEFAULT_TIMING_WINDOW_START_DAYS, ge=0)
    timing_window_end_days: float = Field(DEFAULT_TIMING_WINDOW_END_DAYS, ge=0)
    candidate_ttl_days: float = Field(30, gt=0)
    treatment_percent: float = Field(50, ge=0, le=100)
    source_connector_id: str = "order-events"
    partitions: int = Field(0, ge=0, le=4096)
    part_records: int = Field(10_000, ge=1, le=10_000)
    range_bytes: int = Field(32 * 1024 * 1024, ge=1024)

    @model_validator(mode="after")
    def _window(self) -> Self:
        if self.timing_window_end_days < self.timing_window_start_days:
            raise ValueError("timingWindowEndDays must not be smaller than timingWindowStartDays")
        return self


class OrderEvent(CamelModel):
    """One customer order event (one product of one order), as exported by the order system.

    >>> OrderEvent.model_validate({"eventId": "e1", "customerId": "C1", "orderId": "O1",
    ...     "marketplace": "US", "productId": "B01", "orderDate": "2025-03-02T10:00:00Z",
    ...     "orderValue": 25.5, "currency": "USD"}).quantity
    1
    """

    event_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    order_id: str = Field(min_length=1)
    marketplace: str = Field(min_length=1)
    product_id: str = Field(min_length=1)
    category: str | None = None
    order_date: UtcDatetime
    delivery_date: UtcDatetime | None = None
    order_value: float = Field(ge=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    quantity: int = Field(1, ge=1)
    channel_opt_ins: dict[str, bool] = Field(default_factory=dict)
    customer_trust_score: float | None = Field(None, ge=0, le=1)
    fraud_flag: bool = False
    review_quality_score: float | None = Field(None, ge=0, le=1)
    prior_review_count: int = Field(0, ge=0)
    media_eligible: bool = False

    @field_validator("event_id", "customer_id", "order_id", "marketplace", "product_id")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value

    @field_validator("order_value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not is_finite(value):
            raise ValueError("must be a finite number")
        return value

    @model_validator(mode="after")
    def _delivered_after_ordered(self) -> Self:
        if self.delivery_date is not None and self.delivery_date < self.order_date:
            raise ValueError(
                f"deliveryDate {self.delivery_date.isoformat()} is before orderDate {self.order_date.isoformat()}"
            )
        return self


class RecordError(CamelModel):
    """A malformed source record: where it is (line, or position in a JSON array) and what is wrong."""

    line: int
    reason: str
    reason_code: str = "INVALID_RECORD"
    event_id: str | None = None
    key: str | None = None
    lines: list[int] = Field(default_factory=list)


class SkippedRecords(CamelModel):
    """Valid records that belong to another execution's scope."""

    other_marketplace: int = 0
    outside_date_range: int = 0


class EtlMetrics(CamelModel):
    processed_count: int
    transformed_count: int
    error_count: int


class EtlOutput(CamelModel):
    """What ETL counted; its candidates and errors are in its parts (see the module doc)."""

    program_id: str
    marketplace: str
    date_range: DateRange
    source: str
    skipped: SkippedRecords = Field(default_factory=SkippedRecords)
    records_read: int = 0
    duplicate_event_count: int = 0
    candidate_count: int = 0
    partitions: int = 1
    metrics: EtlMetrics
    reconciliation: dict[str, int] = Field(default_factory=dict)


def _validate(record: ParsedRecord) -> tuple[OrderEvent | None, RecordError | None]:
    if record.error is not None:
        return None, RecordError(line=record.line, reason=record.error, reason_code=record.code)
    if record.raw is not None:
        try:
            return OrderEvent.model_validate_json(record.raw), None
        except ValidationError as err:
            kinds = {e.get("type") for e in err.errors()}
            if "json_invalid" in kinds:
                try:
                    record.raw.decode("utf-8")
                except UnicodeDecodeError as bad:
                    return None, RecordError(line=record.line, reason=f"not UTF-8 text (byte {bad.start})",
                                             reason_code="INVALID_ENCODING")
                try:
                    json.loads(record.raw)
                except json.JSONDecodeError as bad:
                    return None, RecordError(line=record.line, reason=f"not valid JSON: {bad.msg} (column {bad.colno})",
                                             reason_code="INVALID_JSON")
                except (ValueError, RecursionError) as bad:
                    return None, RecordError(line=record.line, reason=f"not valid JSON: {bad}", reason_code="INVALID_JSON")
            try:
                value = decode_line(record.raw)
            except NonFiniteNumber as bad:
                return None, RecordError(line=record.line, reason=str(bad), reason_code="NON_FINITE")
            except (ValueError, RecursionError) as bad:
                return None, RecordError(line=record.line, reason=f"not valid JSON: {bad}", reason_code="INVALID_JSON")
            record = ParsedRecord(record.line, value=value)
    value = record.value
    if not isinstance(value, dict):
        return None, RecordError(line=record.line, reason=f"expected a JSON object, got {type(value).__name__}")
    event_id = value.get("eventId")
    event_id = event_id if isinstance(event_id, str) and event_id.strip() else None
    try:
        return OrderEvent.model_validate(value), None
    except ValidationError as err:
        return None, RecordError(line=record.line, reason=describe_validation_error(err), event_id=event_id)


class _Shared:
    """What every candidate of one merge call has in common, made once for the call.

    The context entries and the metadata of each experiment arm are the same objects in
    every candidate built with them: each candidate is encoded at once and never changed,
    so sharing them writes the same bytes as building them per candidate.
    """

    def __init__(self, payload: EtlInput, config: EtlConfig, now: datetime, execution_id: str) -> None:
        self.payload, self.config = payload, config
        self.window_start = timedelta(days=config.timing_window_start_days)
        self.window_end = timedelta(days=config.timing_window_end_days)
        self.context = [wire.ContextEntry(type="program", id=payload.program_id),
                        wire.ContextEntry(type="marketplace", id=payload.marketplace)]
        expires = now + timedelta(days=config.candidate_ttl_days)
        self.metadata = {
            arm: wire.CandidateMetadata(created_at=now, updated_at=now, expires_at=expires, version=1,
                                        source_connector_id=config.source_connector_id,
                                        workflow_execution_id=execution_id, experiment_treatment=arm)
            for arm in ("treatment", "control")
        }


def _merge(lined_events: list[tuple[int, wire.SpilledOrderEvent]], shared: _Shared) -> wire.Candidate:
    if len(lined_events) == 1:  # most candidates: one event, nothing to order or combine
        latest = lined_events[0][1]
        events: Sequence[wire.SpilledOrderEvent] = (latest,)
        delivery = latest.delivery_date
        order_value = round(0 + latest.order_value, 2)  # what sum() of one value gives (-0.0 becomes 0.0)
        trust, review, category = latest.customer_trust_score, latest.review_quality_score, latest.category
        media, fraud, prior_reviews = latest.media_eligible, latest.fraud_flag, latest.prior_review_count
        order_ids = [latest.order_id]
    else:
        # Oldest first; on equal order dates the later line counts as the newer event.
        events = [event for _, event in sorted(lined_events, key=lambda pair: (pair[1].order_date, pair[0]))]
        latest = events[-1]
        deliveries = [e.delivery_date for e in events if e.delivery_date is not None]
        delivery = max(deliveries) if deliveries else None

        def latest_known(attribute: str) -> Any:
            return next((getattr(e, attribute) for e in reversed(events) if getattr(e, attribute) is not None), None)

        order_value = round(sum(e.order_value for e in events if e.currency == latest.currency), 2)
        trust, review = latest_known("customer_trust_score"), latest_known("review_quality_score")
        category = latest_known("category")
        media, fraud = any(e.media_eligible for e in events), any(e.fraud_flag for e in events)
        prior_reviews = max(e.prior_review_count for e in events)
        order_ids = list(dict.fromkeys(e.order_id for e in events))
    if not is_finite(order_value):  # the wire encoder would write it as null
        raise NonFiniteNumber("the record holds Infinity, which is not a finite number")
    attributes = wire.CandidateAttributes(
        event_date=latest.order_date,
        delivery_date=delivery,
        timing_window=(
            wire.TimingWindow(start=delivery + shared.window_start, end=delivery + shared.window_end)
            if delivery is not None
            else None
        ),
        order_value=order_value,
        currency=latest.currency,
        media_eligible=media,
        channel_eligibility=dict(latest.channel_opt_ins),
        customer_trust_score=trust,
        fraud_suspected=fraud,
        review_quality_score=review,
        prior_review_count=prior_reviews,
        order_count=len(order_ids),
        order_ids=order_ids,
        source_event_ids=[e.event_id for e in events],
    )
    arm = experiment_arm(shared.payload.program_id, latest.customer_id, shared.config.treatment_percent)
    return wire.Candidate(
        customer_id=latest.customer_id,
        context=shared.context,
        subject=wire.Subject(type="PRODUCT", id=latest.product_id, metadata={"category": category} if category else {}),
        attributes=attributes,
        metadata=shared.metadata[arm],
    )


#: Target size of one hash partition, in source bytes (about 8,000 order events).
PARTITION_SOURCE_BYTES = 3 * 1024 * 1024
#: The partitions are merged by at most this many calls: one wave of the realtime workflow's inline Map.
MERGE_GROUPS = 40


def _partition_count(size: int, config: EtlConfig) -> int:
    if config.partitions:
        return config.partitions
    return max(1, min(4096, -(-size // PARTITION_SOURCE_BYTES)))


def _partition_of(customer_id: str, product_id: str, partitions: int) -> int:
    # crc32, not hash(): the same candidate lands in the same partition in every process.
    return zlib.crc32(f"{customer_id}\x1f{product_id}".encode()) % partitions if partitions > 1 else 0


def _merge_failure(err: Exception) -> tuple[str, str]:
    if isinstance(err, NonFiniteNumber) or (isinstance(err, ValueError) and "finite" in str(err).lower()):
        return "NON_FINITE", f"a merged value is not a finite number: {err}"
    if isinstance(err, OverflowError):
        return "OVERFLOW", f"a date is out of range: {err}"
    if isinstance(err, ValidationError):
        return "INVALID_RECORD", describe_validation_error(err)
    return "RECORD_FAILED", f"{type(err).__name__}: {err}"


#: Order events on the wire (:mod:`stages.wire`), refereed by :class:`OrderEvent`.
EVENTS = RecordCodec(wire.OrderEvent, OrderEvent, utc_checked=True)  # events are never handed on as read
#: The events :func:`split` spilled, read back by :func:`merge`: checked once, when split read them.
_SPILLED = msgspec.json.Decoder(wire.SpilledOrderEvent)


async def plan(input: EtlInput, context: StageContext) -> dict[str, Any]:
    """Step 1: the source's byte ranges (the Map of :func:`split` calls) and the partition groups (of :func:`merge`).

    A JSON Lines source is cut every ``rangeBytes`` (32 MiB: about 70,000 events); a JSON
    array, a CSV file or a source of one range is read whole by one call, as before.
    """
    config: EtlConfig = load_config(EtlConfig, context.config, "ETL")
    fmt = source_format(input.source)
    size = await source_size(input.source, context)
    ranged = await splits_into_ranges(fmt, input.source, context)
    step = config.range_bytes if ranged else max(1, size)
    ranges = [{"index": i, "start": start, "end": min(size, start + step), "bytes": min(size, start + step) - start}
              for i, start in enumerate(range(0, max(1, size), step))]
    partitions = _partition_count(size, config)
    count = min(MERGE_GROUPS, partitions)
    groups = []
    for g in range(count):
        first, end = g * partitions // count, (g + 1) * partitions // count
        groups.append({"index": g, "first": first, "end": end, "bytes": size * (end - first) // partitions})
    return {"ranges": ranges, "groups": groups, "format": fmt, "ranged": ranged, "size": size,
            "partitions": partitions, "now": wire.utc(context.clock.now()).isoformat()}


async def split(input: EtlInput, context: StageContext, plan: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """Step 2, one call per byte range: validate and scope its records, spill each event to its hash partition.

    Errors go to the range's scratch with their line number within the range (:func:`merge`
    makes it the source's); so does the spill, whose lines are ``<line>\\t<event>``.
    """
    index, partitions = int(item["index"]), int(plan["partitions"])
    errors = context.scratch_writer("errors", index)
    spills = context.spill_writers(partitions, source_range=index)
    counts = {"lines": 0, "recordsRead": 0, "transformed": 0, "errors": 0, "otherMarketplace": 0,
              "outsideDateRange": 0}
    market, in_range = input.marketplace, input.date_range.test()
    fast = EVENTS.fast
    async for batch in _range_of(input.source, context, plan, item, counts):
        counts["recordsRead"] += len(batch)
        for record in batch:
            # The common case - a well-formed event line - takes the fast path; anything else is
            # refused, or read, by the model exactly as before.
            event = fast(record.raw) if record.raw is not None else None
            spilled = record.raw  # a line the fast path took decodes to the same event: spilled as it is
            if event is None:
                model_event, error = _validate(record)
                if error is not None:
                    counts["errors"] += 1
                    await errors.add(error.to_json())
                    continue
                assert model_event is not None
                event = EVENTS.from_model(model_event)
                spilled = encode_struct(event)  # the model's reading, in the Struct's form
            if event.marketplace != market:
                counts["otherMarketplace"] += 1
                continue
            if not in_range(event.order_date):
                counts["outsideDateRange"] += 1
                continue
            counts["transformed"] += 1
            line = b"%d\t" % record.line + spilled  # type: ignore[operator]
            spill = spills[_partition_of(event.customer_id, event.product_id, partitions)]
            if not spill.try_add(line):
                await spill.add_line(line)
        await spills.trim()  # a piece of the source at a time: the spills' memory is bounded, not the range's
    written = await spills.close()
    return {"index": index, **counts, "errorParts": [p.to_json() for p in await errors.close()],
            "spills": {str(p): [part.to_json() for part in parts] for p, parts in enumerate(written) if parts}}


async def _range_of(uri: str, context: StageContext, plan: dict[str, Any], item: dict[str, Any],
                    counts: dict[str, int]) -> AsyncIterator[list[ParsedRecord]]:
    """The range's records, in lists: one a piece of the source read (a document read whole: 1,000 records each)."""
    if not plan["ranged"]:  # one document, read whole: line numbers are the source's already
        batch: list[ParsedRecord] = []
        async for record in records(plan["format"], uri, context):
            batch.append(record)
            if len(batch) == 1_000:  # the caller trims its spills once a list, not once a record
                yield batch
                batch = []
        if batch:
            yield batch
        return
    async for batch in range_records(uri, context, int(item["start"]), int(item["end"]), int(plan["size"])):
        if batch:
            counts["lines"] = batch[-1][0]
        yield [record for _, record in batch if record is not None]


async def merge(input: EtlInput, context: StageContext, plan: dict[str, Any], group: dict[str, Any],
                range_summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Step 3, one call per group of partitions: merge each partition's events from every range into candidates.

    The events of a partition are read range by range in source order, so "first occurrence
    wins" and the order tiebreak (the absolute line) are the whole source's. The call also
    renumbers the errors of its share of the ranges (range ``r`` for ``r % groups == g``) with
    their source lines, and lists the scratch it consumed (``scratch``: removed once its
    summary is stored).
    """
    config: EtlConfig = load_config(EtlConfig, context.config, "ETL")
    g, groups = int(group["index"]), len(plan["groups"])
    summaries = sorted(range_summaries, key=lambda s: s["index"])
    offsets, total = [], 0
    for summary in summaries:
        offsets.append(total)
        total += int(summary["lines"])
    shared = _Shared(input, config, datetime.fromisoformat(plan["now"]), context.execution_id)
    writer = context.part_writer("candidates", index=g, max_records=config.part_records)
    errors = context.part_writer("errors", index=len(summaries) + g)
    candidates = duplicates = failed_events = 0
    scratch: list[str] = []
    for partition in range(int(group["first"]), int(group["end"])):
        with paused_gc():  # one partition's events at a time: see paused_gc
            by_candidate: dict[tuple[str, str], list[tuple[int, wire.SpilledOrderEvent]]] = {}
            seen: set[tuple[str, str, str]] = set()
            for summary, offset in zip(summaries, offsets, strict=True):
                for part in summary["spills"].get(str(partition), ()):
                    scratch.append(part["key"])
                    for line in split_lines(await context.objects.get(context.bucket, part["key"])):
                        number, _, body = line.partition(b"\t")
                        event = _SPILLED.decode(body)  # split wrote it from a checked event
                        identity = (event.customer_id, event.product_id, event.event_id)
                        if identity in seen:
                            duplicates += 1
                            continue
                        seen.add(identity)
                        by_candidate.setdefault((event.customer_id, event.product_id), []).append(
                            (offset + int(number), event))
            built: list[wire.Candidate] = []  # encoded together, a run at a time (see encode_structs)
            for (customer_id, product_id), events in by_candidate.items():
                try:
                    built.append(_merge(events, shared))
                except (ValueError, OverflowError, RecursionError, ArithmeticError) as err:
                    code, message = _merge_failure(err)
                    failed_events += len(events)
                    await errors.add(RecordError(
                        line=min(n for n, _ in events), reason=message, reason_code=code, key=f"{customer_id}/{product_id}",
                        lines=sorted(n for n, _ in events), event_id=events[0][1].event_id,
                    ).to_json())
                    continue
                if len(built) == _ENCODE_RUN:
                    await _write_run(writer, built)
                    candidates += len(built)
                    built = []
            await _write_run(writer, built)
            candidates += len(built)
    range_errors: dict[str, list[dict[str, Any]]] = {}
    for summary, offset in zip(summaries, offsets, strict=True):
        if summary["index"] % groups == g and summary["errorParts"]:
            range_errors[str(summary["index"])] = await _renumber(context, summary, offset, scratch)
    return {"index": g, "candidates": candidates, "duplicates": duplicates, "failedEvents": failed_events,
            "candidateParts": [p.to_json() for p in await writer.close()],
            "mergeErrorParts": [p.to_json() for p in await errors.close()],
            "rangeErrorParts": range_errors, "scratch": scratch}


#: Candidates a merge encodes in one call: most of the cost of one call a candidate saved, a bounded list held.
_ENCODE_RUN = 1_000


async def _write_run(writer: PartWriter, built: list[wire.Candidate]) -> None:
    await writer.add_lines(encode_structs(built))


async def _renumber(context: StageContext, summary: dict[str, Any], offset: int, scratch: list[str]) -> list[dict[str, Any]]:
    """A range's errors with their source line numbers, as parts of the stage's ``errors`` stream."""
    out = context.part_writer("errors", index=int(summary["index"]))
    for part in summary["errorParts"]:
        scratch.append(part["key"])
        for line in split_lines(await context.objects.get(context.bucket, part["key"])):
            error = decode_line(line)
            error["line"] += offset
            await out.add(error)
    return [p.to_json() for p in await out.close()]


async def finish(input: EtlInput, context: StageContext, plan: dict[str, Any], range_summaries: list[dict[str, Any]],
                 merge_summaries: list[dict[str, Any]]) -> EtlOutput:
    """Step 4: the stage's output (counts, reconciliation) from what the ranges and merges counted."""
    ranges = sorted(range_summaries, key=lambda s: s["index"])
    merges = sorted(merge_summaries, key=lambda s: s["index"])

    def total(summaries: list[dict[str, Any]], name: str) -> int:
        return sum(int(s[name]) for s in summaries)

    renumbered = {int(r): parts for m in merges for r, parts in m["rangeErrorParts"].items()}
    context.adopt_parts("candidates", [PartInfo.from_json(p) for m in merges for p in m["candidateParts"]])
    context.adopt_parts("errors", [PartInfo.from_json(p) for r in sorted(renumbered) for p in renumbered[r]]
                        + [PartInfo.from_json(p) for m in merges for p in m["mergeErrorParts"]])
    records_read, transformed = total(ranges, "recordsRead"), total(ranges, "transformed")
    skipped = SkippedRecords(other_marketplace=total(ranges, "otherMarketplace"),
                             outside_date_range=total(ranges, "outsideDateRange"))
    candidates, duplicates, failed_events = total(merges, "candidates"), total(merges, "duplicates"), total(merges, "failedEvents")
    error_count = total(ranges, "errors") + failed_events
    unique = transformed - duplicates
    merged = unique - failed_events - candidates + duplicates
    partitions = int(plan["partitions"])
    context.log.info(
        "ETL read %d records from %s in %d ranges: %d transformed into %d candidates (%d partitions), %d malformed, "
        "%d skipped", records_read, input.source, len(ranges), transformed, candidates, partitions, error_count,
        skipped.other_marketplace + skipped.outside_date_range,
    )
    return EtlOutput(
        program_id=input.program_id,
        marketplace=input.marketplace,
        date_range=input.date_range,
        source=input.source,
        skipped=skipped,
        records_read=records_read,
        duplicate_event_count=duplicates,
        candidate_count=candidates,
        partitions=partitions,
        metrics=EtlMetrics(
            processed_count=transformed - failed_events + error_count,
            transformed_count=transformed - failed_events,
            error_count=error_count,
        ),
        reconciliation={
            "in": records_read,
            "out": candidates,
            "errors": error_count,
            "skipped": skipped.other_marketplace + skipped.outside_date_range,
            "merged": merged,
        },
    )


async def run(input: EtlInput, context: StageContext) -> EtlOutput:
    """Stream ``input.source`` and write one candidate per (customer, product) in scope to parts.

    The four steps in one call (a workflow whose ETL does not fan out); the built-in workflows
    run them as separate calls (``run.source_steps``, docs/architecture.md). Raises
    :class:`PermanentError` when the source is missing or cannot be read in its format;
    malformed records never raise (see the module doc).

    Example::

        out = await run(EtlInput.model_validate(payload), context)
        out.metrics.processed_count == out.metrics.transformed_count + out.metrics.error_count
    """
    return await run_source_steps(run.source_steps, input, context)


run.source_steps = SourceSteps(plan=plan, split=split, merge=merge, finish=finish)  # type: ignore[attr-defined]

#: ``source_format`` (imported above) is what the CLI checks a payload's source with before anything runs.

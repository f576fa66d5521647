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

Streaming: JSON Lines (local file or S3 object body) are read line by line and
never held whole; CSV is streamed from a local file; a ``.json`` array is read whole
(it is one document). In-scope events are hash-partitioned by (customer, product)
into scratch parts (``spill/``), so a candidate's events meet in one partition; each
partition is then merged on its own and its candidates written to bounded
``part-NNNNN.jsonl`` parts (at most 10,000 candidates each). Malformed records
go to ``errors-NNNNN.jsonl`` parts with their line number, a ``reasonCode``
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

import csv
import io
import json
import os
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import PurePosixPath
from typing import Any, Self

from pydantic import Field, ValidationError, field_validator, model_validator

from ceap_engine.pipeline.stage import (
    InvalidKey,
    NonFiniteNumber,
    ObjectNotFound,
    PermanentError,
    RecordCodec,
    StageContext,
    decode_line,
    encode_struct,
    nesting_depth_exceeds,
    paused_gc,
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

__all__ = ["EtlConfig", "EtlInput", "EtlMetrics", "EtlOutput", "OrderEvent", "RecordError", "SkippedRecords", "run"]


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
    candidates one part holds (the Map's unit of work downstream).
    """

    timing_window_start_days: float = Field(DEFAULT_TIMING_WINDOW_START_DAYS, ge=0)
    timing_window_end_days: float = Field(DEFAULT_TIMING_WINDOW_END_DAYS, ge=0)
    candidate_ttl_days: float = Field(30, gt=0)
    treatment_percent: float = Field(50, ge=0, le=100)
    source_connector_id: str = "order-events"
    partitions: int = Field(0, ge=0, le=4096)
    part_records: int = Field(10_000, ge=1, le=10_000)

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


@dataclass
class _ParsedRecord:
    line: int
    value: Any = None
    error: str | None = None
    raw: bytes | None = None  # a JSON line, validated straight from its bytes
    code: str = "INVALID_JSON"


def _source_format(uri: str) -> str:
    if uri.startswith("s3://") and not uri[5:].partition("/")[2]:
        raise PermanentError(f"source {uri!r} names a bucket but no object key: use s3://bucket/path/orders.jsonl")
    path = uri[5:].partition("/")[2] if uri.startswith("s3://") else uri
    suffix = PurePosixPath(path.replace("\\", "/")).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        return "json"
    if suffix == ".csv":
        return "csv"
    raise PermanentError(
        f"cannot tell the format of source {uri!r} from its extension {suffix or '(none)'!r}: "
        "name the file .jsonl (JSON Lines), .json or .csv"
    )


def _missing(uri: str) -> PermanentError:
    hint = (
        "check the bucket and key"
        if uri.startswith("s3://")
        else "check the path (the CLI resolves a relative path against the payload file)"
    )
    return PermanentError(f"source {uri!r} does not exist: {hint}")


async def _read(uri: str, context: StageContext) -> str:
    try:
        raw = await context.read_source(uri)
    except (FileNotFoundError, ObjectNotFound):
        raise _missing(uri) from None
    except (IsADirectoryError, NotADirectoryError, PermissionError, InvalidKey) as err:
        raise PermanentError(f"source {uri!r} cannot be read: {err}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise PermanentError(
            f"source {uri!r} is not UTF-8 text (byte {err.start}): export it as UTF-8 JSON Lines or CSV"
        ) from None


async def _source_lines(uri: str, context: StageContext) -> AsyncIterator[bytes]:
    try:
        first = True
        async for line in context.read_source_lines(uri):
            if first:
                line = line.removeprefix(b"\xef\xbb\xbf")
                first = False
            yield line
    except (FileNotFoundError, ObjectNotFound):
        raise _missing(uri) from None
    except (IsADirectoryError, NotADirectoryError, PermissionError, InvalidKey) as err:
        raise PermanentError(f"source {uri!r} cannot be read: {err}") from None


def _parse_line(number: int, line: bytes) -> _ParsedRecord | None:
    """One JSON line as a record to validate, or an error with its reason code; None if blank."""
    line = line.strip()
    if not line:
        return None
    if nesting_depth_exceeds(line):
        return _ParsedRecord(number, error="JSON nested deeper than 64 levels", code="TOO_DEEP")
    if line[:1] == b"{":
        return _ParsedRecord(number, raw=line)  # the common case: validated straight from the bytes
    try:
        return _ParsedRecord(number, value=decode_line(line))
    except NonFiniteNumber as err:
        return _ParsedRecord(number, error=str(err), code="NON_FINITE")
    except UnicodeDecodeError as err:
        return _ParsedRecord(number, error=f"not UTF-8 text (byte {err.start})", code="INVALID_ENCODING")
    except json.JSONDecodeError as err:
        return _ParsedRecord(number, error=f"not valid JSON: {err.msg} (column {err.colno})")


async def _json_lines(uri: str, context: StageContext) -> AsyncIterator[_ParsedRecord]:
    number = 0
    async for line in _source_lines(uri, context):
        number += 1
        record = _parse_line(number, line)
        if record is not None:
            yield record


def _json_array(text: str, uri: str) -> Iterator[_ParsedRecord]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as err:
        raise PermanentError(
            f"source {uri!r} starts like a JSON array but is not valid JSON ({err.msg} at line {err.lineno}, "
            f"column {err.colno}): fix it or export it as JSON Lines (.jsonl)"
        ) from None
    if not isinstance(items, list):
        raise PermanentError(f"source {uri!r} must be JSON Lines or one JSON array of records")
    for position, item in enumerate(items, start=1):
        yield _ParsedRecord(position, value=item)


def _unflatten(row: dict[str, str]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for column, cell in row.items():
        if cell is None or cell == "":
            continue  # an empty cell is an absent field, so defaults and "Field required" apply
        target = record
        *parents, leaf = column.strip().split(".")
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                break
        else:
            target[leaf] = cell
    return record


def _csv_rows(text: str, uri: str) -> Iterator[_ParsedRecord]:
    # strict: a stray or unterminated quote would otherwise swallow the rest of the file silently.
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        for row in reader:
            if None in row:  # DictReader puts surplus cells under the key None
                yield _ParsedRecord(
                    reader.line_num,
                    error=f"row has {len(reader.fieldnames or []) + len(row[None])} cells but the header "
                    f"has {len(reader.fieldnames or [])} columns",
                )
                continue
            if all(cell in (None, "") for cell in row.values()):
                continue
            yield _ParsedRecord(reader.line_num, value=_unflatten(row))
    except csv.Error as err:
        raise PermanentError(f"source {uri!r} is not readable as CSV at line {reader.line_num}: {err}") from None


async def _records(fmt: str, uri: str, context: StageContext) -> AsyncIterator[_ParsedRecord]:
    if fmt == "jsonl" or (fmt == "json" and not await _starts_with_bracket(uri, context)):
        async for record in _json_lines(uri, context):
            yield record
        return
    text = await _read(uri, context)
    for record in _csv_rows(text, uri) if fmt == "csv" else _json_array(text, uri):
        yield record


async def _starts_with_bracket(uri: str, context: StageContext) -> bool:
    async for line in _source_lines(uri, context):
        if line.strip():
            return line.lstrip().startswith(b"[")
    return False


def _validate(record: _ParsedRecord) -> tuple[OrderEvent | None, RecordError | None]:
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
            record = _ParsedRecord(record.line, value=value)
    value = record.value
    if not isinstance(value, dict):
        return None, RecordError(line=record.line, reason=f"expected a JSON object, got {type(value).__name__}")
    event_id = value.get("eventId")
    event_id = event_id if isinstance(event_id, str) and event_id.strip() else None
    try:
        return OrderEvent.model_validate(value), None
    except ValidationError as err:
        return None, RecordError(line=record.line, reason=describe_validation_error(err), event_id=event_id)


def _merge(
    lined_events: list[tuple[int, wire.OrderEvent]], payload: EtlInput, config: EtlConfig, now: datetime,
    execution_id: str,
) -> wire.Candidate:
    # Oldest first; on equal order dates the later line counts as the newer event.
    events = [event for _, event in sorted(lined_events, key=lambda pair: (pair[1].order_date, pair[0]))]
    latest = events[-1]
    deliveries = [e.delivery_date for e in events if e.delivery_date is not None]
    delivery = max(deliveries) if deliveries else None
    same_currency = [e for e in events if e.currency == latest.currency]

    def latest_known(attribute: str) -> Any:
        return next((getattr(e, attribute) for e in reversed(events) if getattr(e, attribute) is not None), None)

    order_value = round(sum(e.order_value for e in same_currency), 2)
    if not is_finite(order_value):  # the wire encoder would write it as null
        raise NonFiniteNumber("the record holds Infinity, which is not a finite number")
    attributes = wire.CandidateAttributes(
        event_date=latest.order_date,
        delivery_date=delivery,
        timing_window=(
            wire.TimingWindow(start=delivery + timedelta(days=config.timing_window_start_days),
                              end=delivery + timedelta(days=config.timing_window_end_days))
            if delivery is not None
            else None
        ),
        order_value=order_value,
        currency=latest.currency,
        media_eligible=any(e.media_eligible for e in events),
        channel_eligibility=dict(latest.channel_opt_ins),
        customer_trust_score=latest_known("customer_trust_score"),
        fraud_suspected=any(e.fraud_flag for e in events),
        review_quality_score=latest_known("review_quality_score"),
        prior_review_count=max(e.prior_review_count for e in events),
        order_count=len({e.order_id for e in events}),
        order_ids=list(dict.fromkeys(e.order_id for e in events)),
        source_event_ids=[e.event_id for e in events],
    )
    category = latest_known("category")
    return wire.Candidate(
        customer_id=latest.customer_id,
        context=[wire.ContextEntry(type="program", id=payload.program_id),
                 wire.ContextEntry(type="marketplace", id=payload.marketplace)],
        subject=wire.Subject(type="PRODUCT", id=latest.product_id, metadata={"category": category} if category else {}),
        attributes=attributes,
        metadata=wire.CandidateMetadata(
            created_at=now,
            updated_at=now,
            expires_at=now + timedelta(days=config.candidate_ttl_days),
            version=1,
            source_connector_id=config.source_connector_id,
            workflow_execution_id=execution_id,
            experiment_treatment=experiment_arm(payload.program_id, latest.customer_id, config.treatment_percent),
        ),
    )


#: Target size of one hash partition, in source bytes (about 8,000 order events).
PARTITION_SOURCE_BYTES = 3 * 1024 * 1024


def _partition_count(uri: str, config: EtlConfig) -> int:
    if config.partitions:
        return config.partitions
    if uri.startswith("s3://"):
        return 64  # the object's size is not known before reading: enough for ~500k events per 64 parts
    try:
        size = os.stat(uri).st_size
    except OSError:
        return 1
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
EVENTS = RecordCodec(wire.OrderEvent, OrderEvent)


async def run(input: EtlInput, context: StageContext) -> EtlOutput:
    """Stream ``input.source`` and write one candidate per (customer, product) in scope to parts.

    Raises :class:`PermanentError` when the source is missing or cannot be
    read in its format; malformed records never raise (see the module doc).

    Example::

        out = await run(EtlInput.model_validate(payload), context)
        out.metrics.processed_count == out.metrics.transformed_count + out.metrics.error_count
    """
    config: EtlConfig = load_config(EtlConfig, context.config, "ETL")
    fmt = _source_format(input.source)
    partitions = _partition_count(input.source, config)
    errors = context.part_writer("errors")
    spills = [context.spill_writer(p, partitions) for p in range(partitions)]

    error_count = 0
    transformed = 0
    records_read = 0
    skipped = SkippedRecords()
    market, in_range = input.marketplace, input.date_range.contains

    # Pass 1: validate, scope and partition every record, keeping none of them in memory.
    async for record in _records(fmt, input.source, context):
        records_read += 1
        # The common case - a well-formed event line - takes the fast path; anything else is
        # refused, or read, by the model exactly as before.
        event = EVENTS.fast(record.raw) if record.raw is not None else None
        if event is None:
            model_event, error = _validate(record)
            if error is not None:
                error_count += 1
                await errors.add(error.to_json())
                continue
            assert model_event is not None
            event = EVENTS.from_model(model_event)
        if event.marketplace != market:
            skipped.other_marketplace += 1
            continue
        if not in_range(event.order_date):
            skipped.outside_date_range += 1
            continue
        transformed += 1
        line = b"%d\t" % record.line + encode_struct(event)
        await spills[_partition_of(event.customer_id, event.product_id, partitions)].add_line(line)

    # Pass 2: each partition holds every event of its candidates; merge it and write the candidates.
    now = wire.utc(context.clock.now())
    writer = context.part_writer("candidates", max_records=config.part_records)
    candidates = duplicates = failed_events = 0
    for spill in spills:
        await spill.close()
        with paused_gc():  # one partition's events at a time: see paused_gc
            by_candidate: dict[tuple[str, str], list[tuple[int, wire.OrderEvent]]] = {}
            seen: set[tuple[str, str, str]] = set()
            for part in spill.parts:
                for line in split_lines(await context.objects.get(context.bucket, part.key)):
                    number, _, body = line.partition(b"\t")
                    event = EVENTS.decode_own(body)  # written by pass 1 from a valid event
                    identity = (event.customer_id, event.product_id, event.event_id)
                    if identity in seen:
                        duplicates += 1
                        continue
                    seen.add(identity)
                    by_candidate.setdefault((event.customer_id, event.product_id), []).append((int(number), event))
            for (customer_id, product_id), events in by_candidate.items():
                try:
                    line = encode_struct(_merge(events, input, config, now, context.execution_id))
                except (ValueError, OverflowError, RecursionError, ArithmeticError) as err:
                    code, message = _merge_failure(err)
                    failed_events += len(events)
                    await errors.add(RecordError(
                        line=min(n for n, _ in events), reason=message, reason_code=code, key=f"{customer_id}/{product_id}",
                        lines=sorted(n for n, _ in events), event_id=events[0][1].event_id,
                    ).to_json())
                    continue
                await writer.add_line(line)
                candidates += 1
        for part in spill.parts:
            await context.objects.delete(context.bucket, part.key)
    await writer.close()
    await errors.close()

    error_count += failed_events
    unique = transformed - duplicates
    merged = unique - failed_events - candidates + duplicates
    context.log.info(
        "ETL read %d records from %s: %d transformed into %d candidates (%d partitions), %d malformed, %d skipped",
        records_read, input.source, transformed, candidates, partitions, error_count,
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


#: The CLI checks a payload's source with this before anything runs (exit 2, nothing written).
source_format = _source_format

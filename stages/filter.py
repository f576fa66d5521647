"""Filter: keep the candidates the platform may engage, and say why the others may not.

Every candidate goes through the whole chain (so a rejected candidate carries
*all* its reasons, not just the first); each failed check appends a
``{filterId, reason, reasonCode, timestamp}`` entry to its
``rejectionHistory``. Only data known before scoring is used.

=============  ========================  ===================================================
filterId       reasonCode                rejects when
=============  ========================  ===================================================
eligibility    ALREADY_CONSUMED          the candidate was already engaged
eligibility    CHANNEL_INELIGIBLE        no allowed channel (``channels``) is opted in
eligibility    TIMING_WINDOW_MISSING     no timing window (nothing delivered yet)
trust          FRAUD_DETECTED            an order of the candidate was flagged as fraud
trust          TRUST_SCORE_LOW           trust score missing or below ``minTrustScore``
quality        QUALITY_SCORE_LOW         review quality known and below ``minQualityScore``
business       ORDER_VALUE_LOW           order value missing or below ``minOrderValue``
business       EVENT_TOO_OLD             latest order older than ``maxEventAgeDays``
=============  ========================  ===================================================

Config defaults: ``minTrustScore`` 0.3, ``minQualityScore`` 0.4 (a customer
without reviews has no quality score and passes), ``minOrderValue`` 5.0 (in
the candidate's currency), ``maxEventAgeDays`` 30 counted back from the
reference time (``asOf``, else the end of the date range, else now; see
:func:`stages.domain.reference_time`), ``channels`` = all known channels.

``rejectionReasons`` counts rejected candidates per code; a candidate with two
reasons counts under both, so the counts may add up to more than
``rejectedCount``. ``inputCount = passedCount + rejectedCount + errorCount`` always:
a candidate on which a check itself fails (a date out of range...) is not rejected
but reported under ``errors`` with its key, a reason code and the message.
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import Field

from ceap_engine.pipeline.stage import RecordWire, StageContext

from . import wire
from .domain import (
    CHANNELS,
    CamelModel,
    Candidate,
    DateRange,
    RecordFailure,
    load_config,
    record_failure,
    reference_time,
)
from .wire import CANDIDATES

__all__ = ["CHECKS", "FilterCheck", "FilterConfig", "FilterInput", "FilterMetrics", "FilterOutput", "run"]


class FilterConfig(CamelModel):
    """Thresholds of the filter chain; see the module doc for what each one does."""

    min_trust_score: float = Field(0.3, ge=0, le=1)
    min_quality_score: float = Field(0.4, ge=0, le=1)
    min_order_value: float = Field(5.0, ge=0)
    max_event_age_days: float = Field(30, gt=0)
    channels: list[str] = Field(default_factory=lambda: list(CHANNELS), min_length=1)
    as_of: str | None = None


class FilterInput(CamelModel):
    """ETL's output (or anything with ``candidates``); other fields are ignored."""

    program_id: str | None = None
    marketplace: str | None = None
    date_range: DateRange | None = None
    candidates: list[Candidate]


class FilterMetrics(CamelModel):
    input_count: int
    passed_count: int
    rejected_count: int
    error_count: int = 0
    rejection_reasons: dict[str, int] = Field(default_factory=dict)


class FilterOutput(CamelModel):
    program_id: str | None = None
    marketplace: str | None = None
    date_range: DateRange | None = None
    candidates: list[Candidate]
    rejected: list[Candidate]
    errors: list[RecordFailure] = Field(default_factory=list)
    metrics: FilterMetrics


@dataclass(frozen=True)
class _Settings:
    config: FilterConfig
    as_of: datetime
    allowed: frozenset[str] = frozenset()  # config.channels, for lookups
    oldest: datetime | None = None  # as_of - maxEventAgeDays

    @classmethod
    def of(cls, config: FilterConfig, as_of: datetime) -> "_Settings":
        return cls(config, as_of, frozenset(config.channels), as_of - timedelta(days=config.max_event_age_days))


@dataclass(frozen=True)
class FilterCheck:
    """One rule of the chain: ``explain`` returns why it rejects a candidate, or ``None``."""

    filter_id: str
    reason_code: str
    explain: Callable[[wire.Candidate, _Settings], str | None]


def _already_consumed(c: wire.Candidate, s: _Settings) -> str | None:
    if not c.attributes.consumed:
        return None
    via = f" via {c.attributes.consumed_channel}" if c.attributes.consumed_channel else ""
    return f"already engaged{via}"


def _channel_ineligible(c: wire.Candidate, s: _Settings) -> str | None:
    allowed = s.allowed
    for channel, opted_in in c.attributes.channel_eligibility.items():
        if opted_in and channel in allowed:
            return None  # eligible_channels(c, allowed) is not empty
    return f"opted in to none of the allowed channels ({', '.join(s.config.channels)})"


def _timing_window_missing(c: wire.Candidate, s: _Settings) -> str | None:
    return None if c.attributes.timing_window is not None else "no timing window: the order is not delivered yet"


def _fraud(c: wire.Candidate, s: _Settings) -> str | None:
    return "an order of this customer and product is flagged as fraud" if c.attributes.fraud_suspected else None


def _trust_low(c: wire.Candidate, s: _Settings) -> str | None:
    trust = c.attributes.customer_trust_score
    if trust is None:
        return "no customer trust score"
    if trust < s.config.min_trust_score:
        return f"customer trust score {trust:.2f} is below {s.config.min_trust_score:.2f}"
    return None


def _quality_low(c: wire.Candidate, s: _Settings) -> str | None:
    quality = c.attributes.review_quality_score
    if quality is not None and quality < s.config.min_quality_score:
        return f"review quality score {quality:.2f} is below {s.config.min_quality_score:.2f}"
    return None


def _order_value_low(c: wire.Candidate, s: _Settings) -> str | None:
    value = c.attributes.order_value
    if value is None:
        return "no order value"
    if value < s.config.min_order_value:
        currency = f" {c.attributes.currency}" if c.attributes.currency else ""
        return f"order value {value:.2f}{currency} is below {s.config.min_order_value:.2f}"
    return None


def _event_too_old(c: wire.Candidate, s: _Settings) -> str | None:
    event_date = c.attributes.event_date
    if event_date is None:
        return "no event date"
    if event_date < s.oldest:  # type: ignore[operator]
        age = (s.as_of - event_date).total_seconds() / 86400
        return f"latest order is {age:.1f} days old (limit {s.config.max_event_age_days:g} days)"
    return None


#: The chain, in order: eligibility, trust, quality, business rules.
CHECKS: tuple[FilterCheck, ...] = (
    FilterCheck("eligibility", "ALREADY_CONSUMED", _already_consumed),
    FilterCheck("eligibility", "CHANNEL_INELIGIBLE", _channel_ineligible),
    FilterCheck("eligibility", "TIMING_WINDOW_MISSING", _timing_window_missing),
    FilterCheck("trust", "FRAUD_DETECTED", _fraud),
    FilterCheck("trust", "TRUST_SCORE_LOW", _trust_low),
    FilterCheck("quality", "QUALITY_SCORE_LOW", _quality_low),
    FilterCheck("business", "ORDER_VALUE_LOW", _order_value_low),
    FilterCheck("business", "EVENT_TOO_OLD", _event_too_old),
)


#: :data:`CHECKS` as plain triples ``(filterId, reasonCode, explain)``: the chain runs once per record.
_CHAIN = tuple((check.filter_id, check.reason_code, check.explain) for check in CHECKS)


def rejections(candidate: wire.Candidate, settings: _Settings, now: datetime) -> list[wire.Rejection]:
    """Every check of the chain that rejects ``candidate`` (empty: it passes)."""
    found = []
    for filter_id, reason_code, explain in _CHAIN:
        why = explain(candidate, settings)
        if why is not None:
            found.append(wire.Rejection(filter_id=filter_id, reason=why, reason_code=reason_code, timestamp=now))
    return found


def run(input: FilterInput, context: StageContext) -> FilterOutput:
    """Split ``input.candidates`` into passed and rejected (with reasons).

    Example::

        out = run(FilterInput.model_validate(etl_output_json), context)
        out.metrics.input_count == out.metrics.passed_count + out.metrics.rejected_count
    """
    return CANDIDATES.typed_output(_run_wire(CANDIDATES.wire_input(input), context))


def _run_wire(input: FilterInput, context: StageContext) -> FilterOutput:
    """:func:`run` on wire candidates (:mod:`stages.wire`): what the stage runtime calls on a part."""
    config: FilterConfig = load_config(FilterConfig, context.config, "Filter")
    settings = _Settings.of(config, reference_time(context.config, input.date_range, context.clock))
    now = wire.utc(context.clock.now())  # as the models keep timestamps
    passed: list[wire.Candidate | bytes] = []
    rejected: list[wire.Candidate] = []
    reasons: Counter[str] = Counter()

    errors: list[RecordFailure] = []

    lines = getattr(input.candidates, "lines", None)  # CANDIDATES.line_of, looked up once a slice
    for n, candidate in enumerate(input.candidates):
        try:
            found = rejections(candidate, settings, now)
        except Exception as err:  # noqa: BLE001 - one record's failure is that record's error, not the batch's
            errors.append(record_failure(candidate, err))
            continue
        if not found:
            passed.append(lines and lines[n] or candidate)  # untouched: passed on as read
            continue
        reasons.update({rejection.reason_code for rejection in found})
        rejected.append(wire.replace(candidate, rejection_history=[*candidate.rejection_history, *found]))

    context.log.info("Filter passed %d of %d candidates; rejections: %s", len(passed), len(input.candidates), dict(reasons))
    return FilterOutput.model_construct(  # the candidates are Structs, valid as decoded
        program_id=input.program_id,
        marketplace=input.marketplace,
        date_range=input.date_range,
        candidates=passed,
        rejected=rejected,
        errors=errors,
        metrics=FilterMetrics(
            input_count=len(input.candidates),
            passed_count=len(passed),
            rejected_count=len(rejected),
            error_count=len(errors),
            rejection_reasons=dict(sorted(reasons.items())),
        ),
    )


run.wire = RecordWire(CANDIDATES.codec, _run_wire)  # type: ignore[attr-defined]

"""The CEAP domain model: candidates and what every stage shares.

A :class:`Candidate` is one (customer, subject) pair the platform may engage,
for example "ask customer C-1 to review product B0X1 on marketplace US". Its
JSON form is camelCase (``customerId``, ``rejectionHistory``) because that is
what the stages exchange through the object store and what the candidate store
keeps::

    >>> c = Candidate(customer_id="C-1", context=candidate_context("reviews", "US"),
    ...               subject=Subject(type="PRODUCT", id="B0X1"))
    >>> c.key
    ('CUSTOMER#C-1#PROGRAM#reviews#MARKETPLACE#US', 'SUBJECT#PRODUCT#B0X1')
    >>> c.to_json()["customerId"]
    'C-1'

Every model here ignores fields it does not know, so a stage accepts the
previous stage's output even when that carries more than it needs.
"""

from hashlib import sha256
import logging
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from ceap_engine.pipeline.stage import CandidateRecord, Clock, EncodedDocument, PermanentError

__all__ = [
    "CHANNELS",
    "DEFAULT_TIMING_WINDOW_END_DAYS",
    "DEFAULT_TIMING_WINDOW_START_DAYS",
    "Candidate",
    "CandidateAttributes",
    "CandidateMetadata",
    "CandidateViews",
    "CamelModel",
    "ContextEntry",
    "DateRange",
    "ModelScore",
    "RecordFailure",
    "Rejection",
    "Subject",
    "TimingWindow",
    "UtcDatetime",
    "action_id",
    "candidate_context",
    "content_of",
    "describe_validation_error",
    "EncodedDocument",
    "eligible_channel_set",
    "eligible_channels",
    "engagement_action_id",
    "engagement_key",
    "engagement_key_for",
    "experiment_arm",
    "is_finite",
    "load_config",
    "record_failure",
    "reference_time",
    "same_content",
    "timing_window_after",
]

#: The engagement channels the platform knows, in no particular order.
CHANNELS: tuple[str, ...] = ("email", "push", "sms", "inApp")

#: A candidate's timing window opens this many days after delivery ...
DEFAULT_TIMING_WINDOW_START_DAYS = 3
#: ... and closes this many days after delivery.
DEFAULT_TIMING_WINDOW_END_DAYS = 30


def _as_utc(value: datetime) -> datetime:
    # A timestamp without an offset is read as UTC: the platform runs in UTC
    # and a local-time reading would make results depend on the machine.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


#: A datetime normalised to UTC (naive values are taken to be UTC already).
UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


class CamelModel(BaseModel):
    """Base of every stage model: snake_case in Python, camelCase in JSON."""

    # Non-finite numbers are refused on input and serialised as the bare constants on output,
    # which the part writer detects and rejects (they are never written as valid-looking JSON).
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", allow_inf_nan=False, ser_json_inf_nan="constants"
    )

    def to_json(self) -> dict[str, Any]:
        """The JSON form the stages exchange (camelCase keys, ISO 8601 dates)."""
        return self.model_dump(mode="json", by_alias=True)


class ContextEntry(CamelModel):
    """One scope a candidate belongs to, for example ``{"type": "program", "id": "reviews"}``."""

    type: str
    id: str


class Subject(CamelModel):
    """What the engagement is about, for example ``{"type": "PRODUCT", "id": "B0X1"}``."""

    type: str = Field(min_length=1)
    id: str = Field(min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict)


class ModelScore(CamelModel):
    """One model's verdict on a candidate; ``metadata.fallback`` is true when the model failed."""

    model_id: str
    value: float
    confidence: float = Field(ge=0.0, le=1.0)
    timestamp: UtcDatetime
    metadata: dict[str, Any] = Field(default_factory=dict)


class TimingWindow(CamelModel):
    """When the candidate may be engaged (for a review request: some days after delivery)."""

    start: UtcDatetime
    end: UtcDatetime

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end < self.start:
            raise ValueError(f"timing window ends ({self.end.isoformat()}) before it starts ({self.start.isoformat()})")
        return self


def timing_window_after(
    delivery: datetime,
    start_days: float = DEFAULT_TIMING_WINDOW_START_DAYS,
    end_days: float = DEFAULT_TIMING_WINDOW_END_DAYS,
) -> TimingWindow:
    """The engagement window of a delivery: ``[delivery + start_days, delivery + end_days]``.

    >>> timing_window_after(datetime(2025, 3, 1, tzinfo=UTC)).start.day
    4
    """
    return TimingWindow(start=delivery + timedelta(days=start_days), end=delivery + timedelta(days=end_days))


class CandidateAttributes(CamelModel):
    """What is known about a candidate before scoring.

    The first block is the platform's attribute set; the second holds the
    signals the Filter and Score stages use (all known before scoring):
    ``customerTrustScore`` and ``reviewQualityScore`` in ``[0, 1]``,
    ``fraudSuspected``, ``priorReviewCount``, and the orders and source events
    the candidate was built from.
    """

    event_date: UtcDatetime | None = None
    delivery_date: UtcDatetime | None = None
    timing_window: TimingWindow | None = None
    order_value: float | None = None
    currency: str | None = None
    media_eligible: bool = False
    channel_eligibility: dict[str, bool] = Field(default_factory=dict)
    consumed: bool = False
    consumed_at: UtcDatetime | None = None
    consumed_channel: str | None = None

    customer_trust_score: float | None = None
    fraud_suspected: bool = False
    review_quality_score: float | None = None
    prior_review_count: int = 0
    order_count: int = 0
    order_ids: list[str] = Field(default_factory=list)
    source_event_ids: list[str] = Field(default_factory=list)


class CandidateMetadata(CamelModel):
    """Lifecycle of a candidate record: when, by which execution, which version."""

    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None
    expires_at: UtcDatetime | None = None
    version: int = 1
    source_connector_id: str | None = None
    workflow_execution_id: str | None = None
    experiment_treatment: str | None = None


class Rejection(CamelModel):
    """Why a filter turned a candidate down; ``reasonCode`` is the stable, countable part."""

    filter_id: str
    reason: str
    reason_code: str
    timestamp: UtcDatetime


class CandidateViews:
    """What both forms of a candidate - :class:`Candidate` and the Struct of :mod:`stages.wire` -
    derive from their fields: the context ids and the record the candidate store keeps."""

    __slots__ = ()
    customer_id: str
    context: Any
    subject: Any

    def context_id(self, type_: str) -> str | None:
        """The id of the first context entry of this type (``"program"``, ``"marketplace"``)."""
        return next((entry.id for entry in self.context if entry.type == type_), None)

    def program_and_marketplace(self) -> tuple[str, str]:
        """``(program_id, marketplace)`` in one pass over the context (for per-record code that needs both).

        >>> Candidate(customer_id="C-1", context=candidate_context("reviews", "US"),
        ...           subject=Subject(type="PRODUCT", id="B0X1")).program_and_marketplace()
        ('reviews', 'US')
        """
        program = marketplace = None
        for entry in self.context:
            kind = entry.type
            if kind == "program":
                if program is None:
                    program = entry.id
            elif kind == "marketplace" and marketplace is None:
                marketplace = entry.id
        return program or "", marketplace or ""

    @property
    def program_id(self) -> str:
        return self.context_id("program") or ""

    @property
    def marketplace(self) -> str:
        return self.context_id("marketplace") or ""

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    def encoded(self) -> str | None:
        """:meth:`to_json` as compact JSON text when this form has it at hand, else ``None``."""
        return None

    def to_record(self, score: float | None = None, *, text: str | None = None) -> CandidateRecord:
        """This candidate as the candidate store keeps it (keys, score, eligible channels, JSON).

        ``text``: the candidate's JSON, already encoded by the caller; the record's data is then
        that text (:class:`EncodedDocument`, parsed only if read), not a dict built beside it.
        """
        program, marketplace = self.program_and_marketplace()
        subject = self.subject
        # In the order of CandidateRecord's fields, not by name: a third less of the record's construction.
        return CandidateRecord(
            self.customer_id,
            program,
            marketplace,
            subject.type,
            subject.id,
            score,
            eligible_channel_set(self),  # type: ignore[arg-type]
            self.to_json() if text is None else EncodedDocument(text),
            self.encoded() if text is None else text,
            self.attributes.consumed is True,
        )


class Candidate(CamelModel, CandidateViews):
    """One (customer, subject) pair that the platform may engage.

    ``features`` holds numeric aggregates a HeavyETL (Spark) job adds between
    Filter and Score (``orderCount``, ``totalOrderValue``, ``avgOrderValue``,
    ``daysSinceLastOrder``, ``distinctSubjects``); it is empty until then.
    """

    customer_id: str = Field(min_length=1)
    context: list[ContextEntry] = Field(default_factory=list)
    subject: Subject
    scores: dict[str, ModelScore] = Field(default_factory=dict)
    attributes: CandidateAttributes = Field(default_factory=CandidateAttributes)
    metadata: CandidateMetadata = Field(default_factory=CandidateMetadata)
    rejection_history: list[Rejection] = Field(default_factory=list)
    features: dict[str, float] = Field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        """The candidate store key ``(pk, sk)``; the layout itself lives in :class:`CandidateRecord`."""
        record = CandidateRecord(
            customer_id=self.customer_id,
            program_id=self.program_id,
            marketplace=self.marketplace,
            subject_type=self.subject.type,
            subject_id=self.subject.id,
        )
        return record.pk, record.sk


def experiment_arm(program_id: str, customer_id: str, treatment_percent: float = 50) -> str:
    """``"treatment"`` or ``"control"``: a stable assignment by a hash of program and customer.

    The same customer always lands in the same arm of a program, whichever
    stage or execution asks.

    >>> experiment_arm("reviews", "C-1", 100), experiment_arm("reviews", "C-1", 0)
    ('treatment', 'control')
    """
    digest = sha256(f"{program_id}|{customer_id}".encode()).digest()
    bucket = int.from_bytes(digest[:4], "big") % 10_000 / 100  # 0.00 .. 99.99
    return "treatment" if bucket < treatment_percent else "control"


def candidate_context(program_id: str, marketplace: str) -> list[ContextEntry]:
    """The context entries that place a candidate in a program and a marketplace.

    >>> [e.type for e in candidate_context("reviews", "US")]
    ['program', 'marketplace']
    """
    return [ContextEntry(type="program", id=program_id), ContextEntry(type="marketplace", id=marketplace)]


def eligible_channels(candidate: Candidate, allowed: tuple[str, ...] | list[str] | None = None) -> list[str]:
    """The channels a candidate opted in to (restricted to ``allowed`` when given), sorted."""
    return sorted(eligible_channel_set(candidate, allowed))


def eligible_channel_set(candidate: Candidate, allowed: Any = None) -> frozenset[str]:
    """:func:`eligible_channels` unsorted, as a set (per-record code that only tests or stores it).

    >>> c = Candidate(customer_id="C-1", subject=Subject(type="PRODUCT", id="B0X1"),
    ...               attributes={"channelEligibility": {"sms": True, "email": True, "push": False}})
    >>> sorted(eligible_channel_set(c)), eligible_channel_set(c, ("email", "push"))
    (['email', 'sms'], frozenset({'email'}))
    """
    eligibility = candidate.attributes.channel_eligibility.items()
    # Lists, not generators: a generator's frame per call cost more than the few channels it walks.
    if allowed is None:
        return frozenset([channel for channel, opted_in in eligibility if opted_in])
    return frozenset([channel for channel, opted_in in eligibility if opted_in and channel in allowed])


_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _parse_date_or_datetime(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        try:
            if _DATE_ONLY.match(text):
                return date.fromisoformat(text)
            return datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 date (2025-03-01) or date-time (2025-03-01T12:00:00Z)")
    return value


def _utc_if_datetime(value: date | datetime) -> date | datetime:
    return _as_utc(value) if isinstance(value, datetime) else value


DateOrDatetime = Annotated[
    datetime | date, BeforeValidator(_parse_date_or_datetime), AfterValidator(_utc_if_datetime)
]


class DateRange(CamelModel):
    """An inclusive range of dates or date-times.

    A plain date as ``end`` covers that whole day (UTC), so
    ``{"start": "2025-03-01", "end": "2025-03-31"}`` is all of March.

    >>> r = DateRange(start="2025-03-01", end="2025-03-31")
    >>> r.contains(datetime(2025, 3, 31, 23, 59, tzinfo=UTC))
    True
    """

    start: DateOrDatetime
    end: DateOrDatetime

    @property
    def start_time(self) -> datetime:
        if isinstance(self.start, datetime):
            return self.start
        return datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)

    @property
    def end_time(self) -> datetime:
        """The first instant after the range (exclusive) for a date ``end``, else ``end`` itself."""
        if isinstance(self.end, datetime):
            return self.end
        return datetime(self.end.year, self.end.month, self.end.day, tzinfo=UTC) + timedelta(days=1)

    def contains(self, moment: datetime) -> bool:
        moment = _as_utc(moment)
        if moment < self.start_time:
            return False
        if isinstance(self.end, datetime):
            return moment <= self.end
        return moment < self.end_time

    def test(self) -> Callable[[datetime], bool]:
        """:meth:`contains` with the bounds worked out once, for a loop over many moments (ETL's events).

        >>> DateRange(start="2025-03-01", end="2025-03-31").test()(datetime(2025, 4, 1, tzinfo=UTC))
        False
        """
        start, end, inclusive = self.start_time, self.end_time, isinstance(self.end, datetime)

        def test(moment: datetime) -> bool:
            if moment.tzinfo is None:  # as _as_utc reads it; an aware moment compares in UTC as it is
                moment = moment.replace(tzinfo=UTC)
            if moment < start:
                return False
            return moment <= end if inclusive else moment < end

        return test

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        # A date end covers its whole day (end_time is exclusive); a date-time end is inclusive.
        empty = self.end_time <= self.start_time if not isinstance(self.end, datetime) else self.end_time < self.start_time
        if empty:
            raise ValueError(
                f"dateRange.end ({self.end.isoformat()}) is before dateRange.start ({self.start.isoformat()}): "
                "swap them or fix the payload"
            )
        return self


def reference_time(config: Mapping[str, Any], date_range: DateRange | None, clock: Clock) -> datetime:
    """The "now" that age and recency rules measure against.

    In order: the stage config's ``asOf`` (ISO 8601), else the end of the
    execution's date range, else the clock. Measuring against the date range
    makes a re-run or a backfill of an old range give the same result as the
    original run; in daily operation the range ends today, so it is "now".

    >>> reference_time({"asOf": "2025-03-10T00:00:00Z"}, None, None).day
    10
    """
    as_of = config.get("asOf")
    if as_of is not None:
        try:
            parsed = _parse_date_or_datetime(as_of)
        except ValueError as err:
            raise PermanentError(f"stage config asOf: {err}") from None
        if isinstance(parsed, datetime):
            return _as_utc(parsed)
        if isinstance(parsed, date):
            return datetime(parsed.year, parsed.month, parsed.day, tzinfo=UTC)
        raise PermanentError(f"stage config asOf must be an ISO 8601 string, got {as_of!r}")
    if date_range is not None:
        return date_range.end_time
    return clock.now()


def describe_validation_error(error: ValidationError) -> str:
    """One line naming each bad field and what is wrong with it.

    >>> try:
    ...     Subject.model_validate({"type": "PRODUCT"})
    ... except ValidationError as e:
    ...     describe_validation_error(e)
    'id: Field required'
    """
    parts = []
    for problem in error.errors(include_url=False):
        where = ".".join(str(p) for p in problem["loc"]) or "record"
        message = problem["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def load_config(model: type[CamelModel], config: Mapping[str, Any], stage: str) -> Any:
    """Validate a stage's config against ``model``; bad config is a :class:`PermanentError`.

    Unknown keys are ignored with a warning (the runtime may pass shared keys;
    a typo then shows up in the log instead of failing every execution).

    >>> class C(CamelModel):
    ...     min_score: float = 0.5
    >>> load_config(C, {"minScore": 0.7}, "Reactive").min_score
    0.7
    """
    known = set(model.model_fields) | {f.alias for f in model.model_fields.values() if f.alias}
    unknown = sorted(str(k) for k in config if k not in known)
    if unknown:
        logging.getLogger("ceap.stage").warning(
            "%s stage config: ignoring unknown key(s) %s; known keys: %s",
            stage,
            ", ".join(unknown),
            ", ".join(sorted(f.alias or n for n, f in model.model_fields.items())),
        )
    try:
        return model.model_validate(dict(config))
    except ValidationError as err:
        raise PermanentError(
            f"invalid {stage} stage config: {describe_validation_error(err)} - fix the workflow's stage config"
        ) from None


def is_finite(value: float) -> bool:
    """False for NaN and infinities (which JSON cannot carry and models must not emit)."""
    return math.isfinite(value)


# -- identity of effects: what an action or a stored row *is*, never which execution made it --


def engagement_key(candidate: Candidate) -> str:
    """What one engagement is: customer, subject, program, marketplace and engagement window.

    A customer is engaged about a subject at most once per timing window, whichever
    channel, execution or re-run asks; Reactive skips a candidate whose engagement an
    earlier execution already issued. A candidate without a window has one engagement.

    >>> c = Candidate(customer_id="C-1", context=candidate_context("reviews", "US"),
    ...               subject=Subject(type="PRODUCT", id="B0X1"))
    >>> len(engagement_key(c)), engagement_key(c) == engagement_key(c.model_copy())
    (32, True)
    """
    return engagement_key_for(candidate, *candidate.program_and_marketplace())


def engagement_key_for(candidate: Candidate, program: str, marketplace: str) -> str:
    """:func:`engagement_key` for a caller that has the candidate's program and marketplace at hand
    (:meth:`CandidateViews.program_and_marketplace`): Reactive, once per record."""
    window = candidate.attributes.timing_window
    subject = candidate.subject
    customer, kind, id_ = candidate.customer_id, subject.type, subject.id
    start, end = (window.start.isoformat(), window.end.isoformat()) if window else ("", "")
    # Length-prefixed, so that no id containing the separator can collide with another split.
    text = (f"{len(customer)}:{customer}|{len(kind)}:{kind}|{len(id_)}:{id_}|{len(program)}:{program}|"
            f"{len(marketplace)}:{marketplace}|{len(start)}:{start}|{len(end)}:{end}|")
    return sha256(text.encode("utf-8")).hexdigest()[:32]


def action_id(candidate: Candidate, channel: str) -> str:
    """An engagement action's identity: its :func:`engagement_key` and channel, never the execution.

    The same input run twice, or resumed after a crash, gives the same ids, so a
    delivery system can drop repeats.

    >>> c = Candidate(customer_id="C-1", context=candidate_context("reviews", "US"),
    ...               subject=Subject(type="PRODUCT", id="B0X1"))
    >>> action_id(c, "email") != action_id(c, "push")
    True
    """
    return engagement_action_id(engagement_key(candidate), channel)


def engagement_action_id(engagement: str, channel: str) -> str:
    """:func:`action_id` from the candidate's :func:`engagement_key` (for a caller that has it already)."""
    return sha256(f"{engagement}|{channel}".encode()).hexdigest()[:32]


# What changes between two runs over the same data without the candidate changing:
# when and by which execution it was computed and stored.
_VOLATILE_METADATA = ("createdAt", "updatedAt", "expiresAt", "version", "workflowExecutionId")


def content_of(document: dict[str, Any]) -> dict[str, Any]:
    """What a candidate's JSON form (camelCase) says, timestamps and version aside (changed in place)."""
    for name in _VOLATILE_METADATA:
        document["metadata"].pop(name, None)
    for score in document["scores"].values():
        score.pop("timestamp", None)
    for rejection in document["rejectionHistory"]:
        rejection.pop("timestamp", None)
    return document


def same_content(a: Candidate, b: Candidate) -> bool:
    """Whether two candidates say the same thing, timestamps and version aside.

    Store writes a candidate only when it is not :func:`same_content` as the stored
    one: a re-run over the same data changes no row and no version.

    >>> c = Candidate(customer_id="C-1", subject=Subject(type="PRODUCT", id="B0X1"))
    >>> same_content(c, c.model_copy(update={"metadata": CandidateMetadata(version=7)}))
    True
    """
    return content_of(a.to_json()) == content_of(b.to_json())


class RecordFailure(CamelModel):
    """One record a stage could not process: its key, a reason code and the message (an errors part line)."""

    key: str | None = None
    reason_code: str
    message: str


def failure_reason(err: BaseException) -> str:
    """The reason code of a per-record failure.

    >>> failure_reason(OverflowError("date value out of range")), failure_reason(RecursionError())
    ('OVERFLOW', 'TOO_DEEP')
    """
    if isinstance(err, OverflowError):
        return "OVERFLOW"
    if isinstance(err, RecursionError):
        return "TOO_DEEP"
    if isinstance(err, ValueError) and ("finite" in str(err).lower() or "nan" in str(err).lower()):
        return "NON_FINITE"
    if isinstance(err, ValidationError):
        return "INVALID_RECORD"
    return "RECORD_FAILED"


def record_failure(candidate: "Candidate", err: BaseException) -> RecordFailure:
    """The :class:`RecordFailure` of ``candidate`` for ``err`` (its key ``pk/sk``, reason code, message)."""
    try:
        key = "/".join(candidate.key)
    except Exception:  # noqa: BLE001 - a record broken enough to have no key is still reported
        key = getattr(candidate, "customer_id", None)
    message = str(err) if not isinstance(err, ValidationError) else describe_validation_error(err)
    return RecordFailure(key=key, reason_code=failure_reason(err), message=f"{type(err).__name__}: {message}"[:1000])

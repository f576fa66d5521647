"""The candidate on the wire: msgspec Structs mirroring :mod:`stages.domain`'s pydantic models.

The stages' per-record work runs on these (a part of 10,000 candidates decodes in tens of
milliseconds instead of a second); the pydantic models stay the typed API, the arbiter of
what a valid record is (see :class:`~ceap_engine.pipeline.stage.RecordCodec`) and the
form in which tests and callers build candidates. Field names, aliases and defaults are
the models' (``tests/stages/test_wire.py`` holds the two schemas side by side), so a
record reads the same either way and encodes to the same JSON.

The Structs are strict where the models are lax (a number must be a number, a
timestamp must carry an offset): what they refuse goes to the model, which accepts or
rejects it as it always did.

    >>> c = CANDIDATES.codec.decode_line(b'{"customerId":"C-1","subject":{"type":"PRODUCT","id":"B0X1"}}')
    >>> c.key
    ('CUSTOMER#C-1#PROGRAM##MARKETPLACE#', 'SUBJECT#PRODUCT#B0X1')
"""

from datetime import datetime, timezone
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import Meta, Struct, field

from ceap_engine.pipeline.stage import RecordCodec

from . import domain

__all__ = [
    "ACTION_CANDIDATES",
    "CANDIDATES",
    "ActionAttributes",
    "ActionCandidate",
    "ActionMetadata",
    "ActionScore",
    "ActionSubject",
    "Candidate",
    "Candidates",
    "CandidateAttributes",
    "CandidateMetadata",
    "ContextEntry",
    "ModelScore",
    "OrderEvent",
    "SpilledOrderEvent",
    "Rejection",
    "Subject",
    "TimingWindow",
    "UtcTimingWindow",
    "content",
    "replace",
    "same_content",
    "to_builtins",
    "utc",
]

#: A timestamp with an offset (naive ones go to the model, which reads them as UTC).
Timestamp = Annotated[datetime, Meta(tz=True)]
NonEmpty = Annotated[str, Meta(min_length=1)]
Unit = Annotated[float, Meta(ge=0.0, le=1.0)]

T = TypeVar("T")
_encoder = msgspec.json.Encoder()


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC (a naive one is taken to be UTC), as the models keep every timestamp."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)

replace = msgspec.structs.replace
to_builtins = msgspec.to_builtins


class _Wire(Struct, rename="camel", kw_only=True, gc=False):
    # gc=False: records hold no reference cycles, so the collector need not track them.
    pass


class ContextEntry(_Wire, kw_only=True):
    type: str
    id: str


class Subject(_Wire, kw_only=True):
    type: NonEmpty
    id: NonEmpty
    metadata: dict[str, Any] = {}


class ModelScore(_Wire, kw_only=True):
    model_id: str
    value: float
    confidence: Unit
    timestamp: Timestamp
    metadata: dict[str, Any] = {}


class TimingWindow(_Wire, kw_only=True):
    start: Timestamp
    end: Timestamp

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError("timing window ends before it starts")  # the model says it in full


class CandidateAttributes(_Wire, kw_only=True):
    event_date: Timestamp | None = None
    delivery_date: Timestamp | None = None
    timing_window: TimingWindow | None = None
    order_value: float | None = None
    currency: str | None = None
    media_eligible: bool = False
    channel_eligibility: dict[str, bool] = {}
    consumed: bool = False
    consumed_at: Timestamp | None = None
    consumed_channel: str | None = None
    customer_trust_score: float | None = None
    fraud_suspected: bool = False
    review_quality_score: float | None = None
    prior_review_count: int = 0
    order_count: int = 0
    order_ids: list[str] = []
    source_event_ids: list[str] = []


class CandidateMetadata(_Wire, kw_only=True):
    created_at: Timestamp | None = None
    updated_at: Timestamp | None = None
    expires_at: Timestamp | None = None
    version: int = 1
    source_connector_id: str | None = None
    workflow_execution_id: str | None = None
    experiment_treatment: str | None = None


class Rejection(_Wire, kw_only=True):
    filter_id: str
    reason: str
    reason_code: str
    timestamp: Timestamp


def _plain_id(value: str) -> bool:
    """An id as :class:`stages.etl.OrderEvent` keeps it: not blank, no surrounding whitespace, one line.

    Exactly what the pattern ``^\\S(?:.*\\S)?\\Z`` accepts (``str.isspace`` is the ``\\s`` of
    :mod:`re`), tested in a few string calls: the pattern as a msgspec constraint ran the
    regex engine five times an event, more than half of decoding it. The model strips a
    padded id: such an event goes to the model.

    >>> [_plain_id(s) for s in ("B01", "a b", "", " B01", "B01\\t", "a\\nb", "\\u00a0x")]
    [True, True, False, False, False, False, False]
    """
    return bool(value) and not value[0].isspace() and not value[-1].isspace() and "\n" not in value


def _currency_code(value: str) -> bool:
    """Three letters A-Z: what the pattern ``^[A-Z]{3}\\Z`` accepts.

    >>> [_currency_code(s) for s in ("USD", "usd", "US", "ÄBC", "US1", "USD\\n")]
    [True, False, False, False, False, False]
    """
    return len(value) == 3 and value.isascii() and value.isalpha() and value.isupper()


class SpilledOrderEvent(_Wire, kw_only=True):
    """An order event's fields without :class:`OrderEvent`'s checks: for lines ETL wrote from a checked event."""

    event_id: str  # ids and currency: checked in __post_init__ (_plain_id, _currency_code)
    customer_id: str
    order_id: str
    marketplace: str
    product_id: str
    category: str | None = None
    order_date: Timestamp
    delivery_date: Timestamp | None = None
    order_value: Annotated[float, Meta(ge=0.0)]
    currency: str
    quantity: Annotated[int, Meta(ge=1)] = 1
    channel_opt_ins: dict[str, bool] = {}
    customer_trust_score: Unit | None = None
    fraud_flag: bool = False
    review_quality_score: Unit | None = None
    prior_review_count: Annotated[int, Meta(ge=0)] = 0
    media_eligible: bool = False


class OrderEvent(SpilledOrderEvent, kw_only=True):
    """:class:`stages.etl.OrderEvent` on the wire."""

    def __post_init__(self) -> None:
        # What the model would strip or refuse goes to the model, which says it in full.
        if not (_plain_id(self.event_id) and _plain_id(self.customer_id) and _plain_id(self.order_id)
                and _plain_id(self.marketplace) and _plain_id(self.product_id)):
            raise ValueError("an id is blank or has surrounding whitespace")
        if not _currency_code(self.currency):
            raise ValueError("currency is not three letters A-Z")
        delivery = self.delivery_date
        if self.order_date.tzinfo is not timezone.utc or (delivery is not None and delivery.tzinfo is not timezone.utc):
            raise ValueError("a timestamp is not in UTC")  # the model converts it (its codec does not scan: utc_checked)
        if delivery is not None and delivery < self.order_date:
            raise ValueError("deliveryDate is before orderDate")


class Candidate(_Wire, domain.CandidateViews, kw_only=True):
    """:class:`stages.domain.Candidate` on the wire, with the same keys and helpers."""

    customer_id: NonEmpty
    context: list[ContextEntry] = []
    subject: Subject
    scores: dict[str, ModelScore] = {}
    attributes: CandidateAttributes = field(default_factory=CandidateAttributes)
    metadata: CandidateMetadata = field(default_factory=CandidateMetadata)
    rejection_history: list[Rejection] = []
    features: dict[str, float] = {}

    @property
    def key(self) -> tuple[str, str]:
        program = marketplace = ""
        for entry in self.context:
            if entry.type == "program" and not program:
                program = entry.id
            elif entry.type == "marketplace" and not marketplace:
                marketplace = entry.id
        return (f"CUSTOMER#{self.customer_id}#PROGRAM#{program}#MARKETPLACE#{marketplace}",
                f"SUBJECT#{self.subject.type}#{self.subject.id}")

    def to_json(self) -> dict[str, Any]:
        """The JSON form (camelCase keys, ISO 8601 timestamps), as the model's ``to_json``."""
        return to_builtins(self)

    def encoded(self) -> str:
        # One C call instead of the store's JSON encoder (its numbers are finite: decoded, or checked by Score).
        return _encoder.encode(self).decode()


class UtcTimingWindow(TimingWindow, kw_only=True):
    """:class:`TimingWindow` that refuses a bound not in UTC itself, so its lines need no offset scan."""

    def __post_init__(self) -> None:
        # msgspec reads "Z" (and "+00:00") as timezone.utc; any other offset goes to the model, which converts it.
        if self.start.tzinfo is not timezone.utc or self.end.tzinfo is not timezone.utc:
            raise ValueError("a timing window bound is not in UTC")
        super().__post_init__()


class ActionScore(_Wire, kw_only=True):
    value: float


class ActionSubject(_Wire, kw_only=True):
    type: NonEmpty
    id: NonEmpty


class ActionAttributes(_Wire, kw_only=True):
    timing_window: UtcTimingWindow | None = None
    channel_eligibility: dict[str, bool] = {}
    consumed: bool = False


class ActionMetadata(_Wire, kw_only=True):
    experiment_treatment: str | None = None


class ActionCandidate(_Wire, domain.CandidateViews, kw_only=True):
    """The fields of a candidate that Reactive reads to choose and write its action, and no others.

    A projection of :class:`Candidate` (the same names, types and defaults; the other fields are
    skipped unread): decoding it costs about a third of the whole candidate's. Reactive hands no
    candidate on and writes none back, and Store checked each stored candidate in full before
    writing it, so what Reactive reads is all it checks: a line the model would refuse only for a
    field Reactive never reads is read like any other (see :data:`ACTION_CANDIDATES`).

    >>> c = ACTION_CANDIDATES.decode_line(b'{"customerId":"C-1","subject":{"type":"PRODUCT","id":"B0X1"},"features":{"x":1.0}}')
    >>> c.key, c.attributes.consumed
    (('CUSTOMER#C-1#PROGRAM##MARKETPLACE#', 'SUBJECT#PRODUCT#B0X1'), False)
    """

    customer_id: NonEmpty
    context: list[ContextEntry] = []
    subject: ActionSubject
    scores: dict[str, ActionScore] = {}
    attributes: ActionAttributes = field(default_factory=ActionAttributes)
    metadata: ActionMetadata = field(default_factory=ActionMetadata)

    key = Candidate.key


class Candidates:
    """The candidate codec and conversions between the model and the Struct."""

    def __init__(self) -> None:
        self.codec = RecordCodec(Candidate, domain.Candidate)

    def line_of(self, candidates: list[Any], index: int) -> bytes | None:
        """The line ``candidates[index]`` was decoded from (:class:`DecodedRecords`), else ``None``.

        A stage hands an unchanged candidate on as this line: nothing is encoded again.
        """
        lines = getattr(candidates, "lines", None)
        return (lines[index] or None) if lines is not None else None

    def to_wire(self, candidates: list[domain.Candidate]) -> list[Candidate]:
        return [self.codec.from_model(c) for c in candidates]

    def to_models(self, candidates: list[Any]) -> list[Any]:
        """Struct candidates (and encoded candidate lines) as models; anything else as it is."""
        return [
            self.codec.to_model(c) if isinstance(c, Candidate)
            else domain.Candidate.model_validate_json(c) if isinstance(c, bytes) else c
            for c in candidates
        ]

    def wire_input(self, input: T) -> T:
        """A stage input model holding model candidates, as the fast path takes it (Struct candidates)."""
        return input.model_copy(update={"candidates": self.to_wire(input.candidates)})  # type: ignore[attr-defined]

    def typed_output(self, output: T) -> T:
        """A fast path's output (Struct candidates in its record lists) as the typed API returns it."""
        update = {
            name: self.to_models(value)
            for name in type(output).model_fields  # type: ignore[attr-defined]
            if isinstance(value := getattr(output, name), list) and value
            and isinstance(value[0], Candidate | bytes)
        }
        return output.model_copy(update=update) if update else output  # type: ignore[attr-defined]


#: How the stages read and write candidates: these Structs, refereed by the pydantic model.
CANDIDATES = Candidates()

#: How Reactive reads candidates: :class:`ActionCandidate`, refereed by the pydantic model for what
#: the projection refuses. Its only timestamps refuse an offset other than UTC themselves
#: (:class:`UtcTimingWindow`), and Reactive never hands a line on, so lines are not scanned.
ACTION_CANDIDATES = RecordCodec(ActionCandidate, domain.Candidate, utc_checked=True)


def content(candidate: Candidate) -> dict[str, Any]:
    """What a candidate says, timestamps and version aside (:func:`stages.domain.same_content` on the wire)."""
    return domain.content_of(to_builtins(candidate))


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# domain._VOLATILE_METADATA as CandidateMetadata's fields, each set to None: what a write changes
# without changing what the candidate says.
_NO_VOLATILE_METADATA = {f.name: None for f in msgspec.structs.fields(CandidateMetadata)
                         if f.encode_name in domain._VOLATILE_METADATA}


def _said(candidate: Candidate) -> Candidate:
    """``candidate`` with the fields :func:`content` leaves out set to one fixed value."""
    return replace(
        candidate,
        metadata=replace(candidate.metadata, **_NO_VOLATILE_METADATA),
        scores={name: replace(score, timestamp=_EPOCH) for name, score in candidate.scores.items()},
        rejection_history=[replace(rejection, timestamp=_EPOCH) for rejection in candidate.rejection_history],
    )


def same_content(a: Candidate, b: Candidate) -> bool:
    """``content(a) == content(b)``, compared as Structs (field by field, in C) instead of as two built dicts.

    The timestamps of a Struct candidate are in UTC (the codec sees to it), so equal instants are
    equal texts, as :func:`content` compares them.

    >>> c = CANDIDATES.codec.decode_line(b'{"customerId":"C-1","subject":{"type":"PRODUCT","id":"B0X1"}}')
    >>> same_content(c, replace(c, metadata=CandidateMetadata(version=7))), same_content(c, replace(c, customer_id="C-2"))
    (True, False)
    """
    return _said(a) == _said(b)

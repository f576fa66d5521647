"""Score: every model gives every candidate a score, and failures are counted, not hidden.

Models come from ``stages/config/score_models.json`` (a workflow may replace
``primaryModel`` or ``models`` through the stage config):

* ``logistic`` - a propensity model ``sigmoid(intercept + sum(coef * feature))``.
  Its ``base`` variant uses what ETL knows; its ``enriched`` variant also uses
  the HeavyETL aggregates in ``candidate.features`` and is chosen when every
  aggregate it names is present. A missing review quality is imputed (and
  lowers the confidence); any other missing input is a model failure.
* ``recencyValue`` - a heuristic mixing how recently the order was delivered
  with how much it was worth.

Each writes ``scores[modelId] = {modelId, value, confidence, timestamp,
metadata}`` with ``timestamp = context.clock.now()``. When a model fails on a
candidate it falls back to its configured ``fallback`` value and confidence,
with ``metadata.fallback = true`` and the reason. Counting (all in candidates)::

    inputCount    = scoredCount + errorCount + recordErrorCount
    scoredCount   candidates that at least one model scored (these go to Store)
    fallbackCount scored candidates on which at least one model fell back
    errorCount    candidates every model failed on: kept under ``unscored``
                  (with their fallback scores, for inspection), not stored

    recordErrorCount candidates the stage itself failed on (listed under ``errors``
                  with key, reason code and message)

``fallbacksByModel`` gives the number of fallbacks per model over all candidates.
"""

from math import exp, isfinite, log1p
from collections import Counter
from collections.abc import Callable, Mapping
from functools import cached_property
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import Field, model_validator

from ceap_engine.pipeline.stage import NonFiniteNumber, RecordWire, StageContext

from . import wire
from .config import load_default
from .domain import (
    CamelModel,
    Candidate,
    DateRange,
    RecordFailure,
    load_config,
    record_failure,
    reference_time,
)
from .wire import CANDIDATES

__all__ = [
    "FEATURES",
    "LogisticModel",
    "ModelFailure",
    "RecencyValueModel",
    "ScoreConfig",
    "ScoreInput",
    "ScoreMetrics",
    "ScoreOutput",
    "run",
    "score_config",
]


class ModelFailure(Exception):
    """A model cannot score this candidate (for example a required input is missing)."""


# ``x if x > 0.0 else 0.0`` is ``max(0.0, x)`` (NaN too: both give 0.0) without a builtin call: these run
# per feature per candidate.

def _days_between(earlier: datetime | None, later: datetime) -> float | None:
    if earlier is None:
        return None
    days = (later - earlier).total_seconds() / 86400
    return days if days > 0.0 else 0.0


def _clamped_log1p(value: float) -> float:
    return log1p(value if value > 0.0 else 0.0)


def _log1p(value: float | None) -> float | None:
    return None if value is None else _clamped_log1p(value)


def _feature(key: str, transform: Callable[[float], float] = lambda x: x) -> Callable[[Candidate, datetime], float | None]:
    def read(candidate: Candidate, as_of: datetime) -> float | None:
        value = candidate.features.get(key)
        return None if value is None else transform(value)

    read.feature_key = key  # type: ignore[attr-defined] # the HeavyETL aggregate it reads (None: unknown)
    return read


#: Features a model may name: (candidate, reference time) -> value, or None when unknown.
#: The first group comes from ETL attributes, the second from HeavyETL ``features``.
FEATURES: dict[str, Callable[[Candidate, datetime], float | None]] = {
    "logOrderValue": lambda c, t: _log1p(c.attributes.order_value),
    "trustScore": lambda c, t: c.attributes.customer_trust_score,
    "reviewQuality": lambda c, t: c.attributes.review_quality_score,
    "daysSinceDelivery": lambda c, t: _days_between(c.attributes.delivery_date, t),
    "daysSinceEvent": lambda c, t: _days_between(c.attributes.event_date, t),
    "mediaEligible": lambda c, t: 1.0 if c.attributes.media_eligible else 0.0,
    "logPriorReviewCount": lambda c, t: log1p(c.attributes.prior_review_count),
    "orderCount": lambda c, t: float(c.attributes.order_count),
    "logLifetimeOrderCount": _feature("orderCount", _clamped_log1p),
    "logTotalOrderValue": _feature("totalOrderValue", _clamped_log1p),
    "logAvgOrderValue": _feature("avgOrderValue", _clamped_log1p),
    "daysSinceLastOrder": _feature("daysSinceLastOrder"),
    "logDistinctSubjects": _feature("distinctSubjects", _clamped_log1p),
}

#: The features that exist only once HeavyETL ran (an ``enriched`` variant needs them).
HEAVY_ETL_FEATURES = frozenset(
    {"logLifetimeOrderCount", "logTotalOrderValue", "logAvgOrderValue", "daysSinceLastOrder", "logDistinctSubjects"}
)

_Read = Callable[[Candidate, datetime], float | None]
#: One term of a logistic variant: feature name, coefficient, its read, its imputed value (``None``: not imputed).
_Term = tuple[str, float, _Read, float | None]


class Fallback(CamelModel):
    value: float
    confidence: float = Field(ge=0, le=1)


class LogisticVariant(CamelModel):
    intercept: float
    coefficients: dict[str, float]
    confidence: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _known_features(self) -> Self:
        unknown = sorted(set(self.coefficients) - set(FEATURES))
        if unknown:
            raise ValueError(f"unknown feature(s) {', '.join(unknown)}; known: {', '.join(sorted(FEATURES))}")
        return self


class LogisticModel(CamelModel):
    """A logistic propensity model with a base and an optional HeavyETL-enriched variant."""

    kind: Literal["logistic"]
    description: str = ""
    base: LogisticVariant
    enriched: LogisticVariant | None = None
    imputation: dict[str, float] = Field(default_factory=dict)
    imputation_confidence_penalty: float = Field(0.1, ge=0, le=1)
    fallback: Fallback

    @cached_property
    def _enriched_needs(self) -> frozenset[str]:
        """The HeavyETL features the enriched variant names (all present: it is the one used)."""
        return frozenset(f for f in (self.enriched.coefficients if self.enriched else {}) if f in HEAVY_ETL_FEATURES)

    def _terms(self, variant: LogisticVariant) -> tuple[_Term, ...]:
        return tuple((name, coefficient, FEATURES[name], self.imputation.get(name))
                     for name, coefficient in variant.coefficients.items())

    @cached_property
    def _compiled(self) -> tuple[tuple[_Term, ...], tuple[tuple[_Read, ...], tuple[_Term, ...]] | None]:
        """The base variant's terms, and the enriched one's with the reads that choose it.

        Looked up once per model instead of once per candidate (a part's config is read
        once a slice, its candidates are scored thousands of times).
        """
        enriched = None
        if self.enriched is not None:
            # The enriched variant is chosen when each of these aggregates is in candidate.features
            # (a HeavyETL feature reads None exactly when its aggregate is missing).
            needs = tuple(FEATURES[f].feature_key for f in self._enriched_needs)  # type: ignore[attr-defined]
            enriched = needs, self._terms(self.enriched)
        return self._terms(self.base), enriched

    def score(self, candidate: Candidate, as_of: datetime) -> tuple[float, float, dict[str, Any]]:
        """``(value, confidence, metadata)``; raises :class:`ModelFailure` if an input is missing.

        The metadata starts with ``fallback: False`` (as the score's metadata shows it).
        """
        terms, enriched = self._compiled
        variant_name, variant = "base", self.base
        if enriched is not None:
            needs, enriched_terms = enriched
            aggregates = candidate.features
            if aggregates and all(aggregates.get(key) is not None for key in needs):
                variant_name, variant, terms = "enriched", self.enriched, enriched_terms
        z = variant.intercept
        imputed = []
        for name, coefficient, read, imputation in terms:
            value = read(candidate, as_of)
            if value is None:
                if imputation is None:
                    raise ModelFailure(f"missing input {name}")
                value = imputation
                imputed.append(name)
            if not isfinite(value):
                raise ModelFailure(f"input {name} is not a finite number")
            z += coefficient * value
        value = 1.0 / (1.0 + exp(-z)) if z >= 0 else exp(z) / (1.0 + exp(z))
        confidence = variant.confidence - self.imputation_confidence_penalty * len(imputed)
        confidence = confidence if confidence > 0.05 else 0.05  # max(0.05, confidence), without the call
        return value, confidence, {"fallback": False, "variant": variant_name, "logit": round(z, 6), "imputed": imputed}


class RecencyValueModel(CamelModel):
    """A heuristic: ``recencyWeight * recency + valueWeight * value``, both in [0, 1]."""

    kind: Literal["recencyValue"]
    description: str = ""
    half_life_days: float = Field(gt=0)
    value_cap: float = Field(gt=0)
    recency_weight: float = Field(ge=0)
    value_weight: float = Field(ge=0)
    confidence: float = Field(ge=0, le=1)
    fallback: Fallback

    @cached_property
    def _log1p_cap(self) -> float:
        return log1p(self.value_cap)

    @model_validator(mode="after")
    def _some_weight(self) -> Self:
        if self.recency_weight + self.value_weight <= 0:
            raise ValueError("recencyWeight + valueWeight must be positive")
        return self

    def score(self, candidate: Candidate, as_of: datetime) -> tuple[float, float, dict[str, Any]]:
        """``(value, confidence, metadata)`` (metadata first ``fallback: False``); raises :class:`ModelFailure`
        if an input is missing."""
        attributes = candidate.attributes
        days = _days_between(attributes.delivery_date or attributes.event_date, as_of)
        if days is None:
            raise ModelFailure("missing input: neither deliveryDate nor eventDate")
        if attributes.order_value is None:
            raise ModelFailure("missing input: orderValue")
        recency = 0.5 ** (days / self.half_life_days)
        value = attributes.order_value
        worth = log1p(value if value > 0.0 else 0.0) / self._log1p_cap
        worth = worth if worth < 1.0 else 1.0  # min(1.0, worth), NaN included
        total = self.recency_weight + self.value_weight
        value = (self.recency_weight * recency + self.value_weight * worth) / total
        return value, self.confidence, {"fallback": False, "recency": round(recency, 6), "value": round(worth, 6)}


ScoringModel = Annotated[LogisticModel | RecencyValueModel, Field(discriminator="kind")]


class ScoreConfig(CamelModel):
    """``primaryModel`` (whose value Store and Reactive use), ``models`` by id, optional ``asOf``."""

    primary_model: str
    models: dict[str, ScoringModel] = Field(min_length=1)
    as_of: str | None = None

    @model_validator(mode="after")
    def _primary_exists(self) -> Self:
        if self.primary_model not in self.models:
            raise ValueError(f"primaryModel {self.primary_model!r} is not one of the models ({', '.join(self.models)})")
        return self


def score_config(overrides: Mapping[str, Any], stage: str = "Score") -> ScoreConfig:
    """The shipped ``score_models.json`` with top-level keys replaced by ``overrides``."""
    return load_config(ScoreConfig, {**load_default("score_models.json"), **overrides}, stage)


class ScoreInput(CamelModel):
    """Filter's (or HeavyETL's) output: ``candidates``; other fields are ignored."""

    program_id: str | None = None
    marketplace: str | None = None
    date_range: DateRange | None = None
    candidates: list[Candidate]


class ScoreMetrics(CamelModel):
    input_count: int
    scored_count: int
    fallback_count: int
    error_count: int
    record_error_count: int = 0


class ScoreOutput(CamelModel):
    program_id: str | None = None
    marketplace: str | None = None
    date_range: DateRange | None = None
    primary_model: str
    candidates: list[Candidate]
    unscored: list[Candidate] = Field(default_factory=list)
    errors: list[RecordFailure] = Field(default_factory=list)
    fallbacks_by_model: dict[str, int] = Field(default_factory=dict)
    metrics: ScoreMetrics


def _apply(
    model_id: str, model: LogisticModel | RecencyValueModel, candidate: Candidate, as_of: datetime, now: datetime
) -> tuple[wire.ModelScore, bool]:
    """The model's score of the candidate and whether it fell back (a plain pair: this runs per model per record)."""
    try:
        value, confidence, metadata = model.score(candidate, as_of)
        if not isfinite(value):
            raise ModelFailure(f"model produced {value}")
        return wire.ModelScore(model_id=model_id, value=value, confidence=confidence, timestamp=now, metadata=metadata), False
    except Exception as err:  # any failure of one model on one candidate falls back; it is counted below
        reason = str(err) if isinstance(err, ModelFailure) else f"{type(err).__name__}: {err}"
        return wire.ModelScore(
            model_id=model_id,
            value=model.fallback.value,
            confidence=model.fallback.confidence,
            timestamp=now,
            metadata={"fallback": True, "reason": reason},
        ), True


def run(input: ScoreInput, context: StageContext) -> ScoreOutput:
    """Score every candidate with every configured model.

    Example::

        out = run(ScoreInput.model_validate(filter_output_json), context)
        out.candidates[0].scores["review-propensity-v1"].value   # 0.0 .. 1.0
    """
    return CANDIDATES.typed_output(_run_wire(CANDIDATES.wire_input(input), context))


def _finite_metadata(metadata: Mapping[str, Any]) -> None:
    # The wire encoder would write a non-finite number as null: refuse it as the model's encoder did.
    for value in metadata.values():
        if isinstance(value, float) and not isfinite(value):
            raise NonFiniteNumber("a score's metadata holds a non-finite number (Infinity or NaN)")


def _run_wire(input: ScoreInput, context: StageContext) -> ScoreOutput:
    """:func:`run` on wire candidates (:mod:`stages.wire`): what the stage runtime calls on a part."""
    config = score_config(context.config)
    as_of = reference_time(context.config, input.date_range, context.clock)
    now = wire.utc(context.clock.now())  # as the models keep timestamps
    scored: list[wire.Candidate] = []
    unscored: list[wire.Candidate] = []
    fallbacks: Counter[str] = Counter()
    with_fallback = 0

    errors: list[RecordFailure] = []

    models = list(config.models.items())
    for candidate in input.candidates:
        failed: list[str] = []
        try:
            scores = dict(candidate.scores)  # the candidate's other scores first, in their order, as {**old, **new}
            for model_id, model in models:
                score, fell_back = _apply(model_id, model, candidate, as_of, now)
                _finite_metadata(score.metadata)
                scores[model_id] = score
                if fell_back:
                    failed.append(model_id)
            updated = wire.replace(candidate, scores=scores)
        except Exception as err:  # noqa: BLE001 - one record's failure is that record's error, not the batch's
            errors.append(record_failure(candidate, err))
            continue
        if not failed:
            scored.append(updated)
            continue
        fallbacks.update(failed)
        if len(failed) == len(models):
            unscored.append(updated)
            continue
        scored.append(updated)
        with_fallback += 1

    if fallbacks:
        context.log.warning("Score fell back %s times (by model); %d candidates unscored", dict(fallbacks), len(unscored))
    return ScoreOutput.model_construct(  # the candidates are Structs, valid as decoded
        program_id=input.program_id,
        marketplace=input.marketplace,
        date_range=input.date_range,
        primary_model=config.primary_model,
        candidates=scored,
        unscored=unscored,
        errors=errors,
        fallbacks_by_model=dict(sorted(fallbacks.items())),
        metrics=ScoreMetrics(
            input_count=len(input.candidates),
            scored_count=len(scored),
            fallback_count=with_fallback,
            error_count=len(unscored),
            record_error_count=len(errors),
        ),
    )


run.wire = RecordWire(CANDIDATES.codec, _run_wire)  # type: ignore[attr-defined]

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

import math
from math import exp, isfinite
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


def _days_between(earlier: datetime | None, later: datetime) -> float | None:
    if earlier is None:
        return None
    return max(0.0, (later - earlier).total_seconds() / 86400)


def _log1p(value: float | None) -> float | None:
    return None if value is None else math.log1p(max(0.0, value))


def _feature(key: str, transform: Callable[[float], float] = lambda x: x) -> Callable[[Candidate, datetime], float | None]:
    def read(candidate: Candidate, as_of: datetime) -> float | None:
        value = candidate.features.get(key)
        return None if value is None else transform(value)

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
    "logPriorReviewCount": lambda c, t: math.log1p(c.attributes.prior_review_count),
    "orderCount": lambda c, t: float(c.attributes.order_count),
    "logLifetimeOrderCount": _feature("orderCount", lambda x: math.log1p(max(0.0, x))),
    "logTotalOrderValue": _feature("totalOrderValue", lambda x: math.log1p(max(0.0, x))),
    "logAvgOrderValue": _feature("avgOrderValue", lambda x: math.log1p(max(0.0, x))),
    "daysSinceLastOrder": _feature("daysSinceLastOrder"),
    "logDistinctSubjects": _feature("distinctSubjects", lambda x: math.log1p(max(0.0, x))),
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
            enriched = tuple(FEATURES[f] for f in self._enriched_needs), self._terms(self.enriched)
        return self._terms(self.base), enriched

    def score(self, candidate: Candidate, as_of: datetime) -> tuple[float, float, dict[str, Any]]:
        """``(value, confidence, metadata)``; raises :class:`ModelFailure` if an input is missing."""
        terms, enriched = self._compiled
        variant_name, variant = "base", self.base
        if enriched is not None:
            needs, enriched_terms = enriched
            for read in needs:
                if read(candidate, as_of) is None:
                    break
            else:
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
        confidence = max(0.05, variant.confidence - self.imputation_confidence_penalty * len(imputed))
        return value, confidence, {"variant": variant_name, "logit": round(z, 6), "imputed": imputed}


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

    @model_validator(mode="after")
    def _some_weight(self) -> Self:
        if self.recency_weight + self.value_weight <= 0:
            raise ValueError("recencyWeight + valueWeight must be positive")
        return self

    def score(self, candidate: Candidate, as_of: datetime) -> tuple[float, float, dict[str, Any]]:
        """``(value, confidence, metadata)``; raises :class:`ModelFailure` if an input is missing."""
        attributes = candidate.attributes
        days = _days_between(attributes.delivery_date or attributes.event_date, as_of)
        if days is None:
            raise ModelFailure("missing input: neither deliveryDate nor eventDate")
        if attributes.order_value is None:
            raise ModelFailure("missing input: orderValue")
        recency = 0.5 ** (days / self.half_life_days)
        worth = min(1.0, math.log1p(max(0.0, attributes.order_value)) / math.log1p(self.value_cap))
        total = self.recency_weight + self.value_weight
        value = (self.recency_weight * recency + self.value_weight * worth) / total
        return value, self.confidence, {"recency": round(recency, 6), "value": round(worth, 6)}


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
        return wire.ModelScore(
            model_id=model_id,
            value=value,
            confidence=confidence,
            timestamp=now,
            metadata={"fallback": False, **metadata},
        ), False
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
        try:
            verdicts = [(model_id, *_apply(model_id, model, candidate, as_of, now)) for model_id, model in models]
            for _, score, _ in verdicts:
                _finite_metadata(score.metadata)
            scores = dict(candidate.scores)  # the candidate's other scores first, in their order, as {**old, **new}
            for model_id, score, _ in verdicts:
                scores[model_id] = score
            updated = wire.replace(candidate, scores=scores)
        except Exception as err:  # noqa: BLE001 - one record's failure is that record's error, not the batch's
            errors.append(record_failure(candidate, err))
            continue
        failed = [model_id for model_id, _, fell_back in verdicts if fell_back]
        if not failed:
            scored.append(updated)
            continue
        fallbacks.update(failed)
        if len(failed) == len(verdicts):
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

import inspect
import math
from datetime import UTC, datetime, timedelta

import pytest

from ceap_engine.pipeline.stage import PermanentError
from stages import score as score_stage
from stages.config import load_default
from stages.domain import DateRange, ModelScore
from stages.score import ScoreInput, ScoreOutput, score_config

from .conftest import NOW, make_candidate, through_json

# Reference time for recency: the end of this range, 2025-04-05T00:00Z.
DATE_RANGE = DateRange.model_validate({"start": "2025-03-01", "end": "2025-04-04"})
PROPENSITY, HEURISTIC = "review-propensity-v1", "recency-value-v1"
HEAVY_ETL = {"orderCount": 7, "totalOrderValue": 310.0, "avgOrderValue": 44.3, "daysSinceLastOrder": 3, "distinctSubjects": 5}
FALLBACK = {"value": 0.1, "confidence": 0.05}


def run_score(make_context, *candidates, config=None, date_range=DATE_RANGE) -> ScoreOutput:
    payload = ScoreInput(program_id="reviews", marketplace="US", date_range=date_range, candidates=list(candidates))
    return score_stage.run(payload, make_context("Score", config))


def logistic(intercept, coefficients, **extra):
    return {"kind": "logistic", "base": {"intercept": intercept, "coefficients": coefficients, "confidence": 0.6},
            "fallback": FALLBACK, **extra}


def sigmoid(z):
    return 1 / (1 + math.exp(-z))


def assert_reconciles(out: ScoreOutput) -> None:
    m = out.metrics
    assert m.input_count == m.scored_count + m.error_count
    assert len(out.candidates) == m.scored_count and len(out.unscored) == m.error_count
    assert m.fallback_count <= m.scored_count


def test_run_is_a_plain_function_taking_input_and_context():
    assert not inspect.iscoroutinefunction(score_stage.run)
    assert list(inspect.signature(score_stage.run).parameters) == ["input", "context"]


def test_the_shipped_config_loads_through_importlib_resources():
    shipped = load_default("score_models.json")
    assert shipped["primaryModel"] == PROPENSITY
    config = score_config({})
    assert set(config.models) == {PROPENSITY, HEURISTIC}
    assert config.models[PROPENSITY].enriched is not None


def test_every_model_scores_every_candidate(make_context, clock):
    out = run_score(make_context, make_candidate("C1"), make_candidate("C2", order_value=300.0))
    assert out.metrics.model_dump() == {"input_count": 2, "scored_count": 2, "fallback_count": 0, "error_count": 0, "record_error_count": 0}
    assert out.primary_model == PROPENSITY and out.fallbacks_by_model == {}
    for candidate in out.candidates:
        assert set(candidate.scores) == {PROPENSITY, HEURISTIC}
        for model_id, s in candidate.scores.items():
            assert s.model_id == model_id and 0 < s.value < 1 and 0 < s.confidence <= 1
            assert s.timestamp == clock.now() and s.metadata["fallback"] is False
    assert out.candidates[0].scores[PROPENSITY].metadata["variant"] == "base"


def test_logistic_value_is_the_sigmoid_of_the_linear_score(make_context):
    config = {"primaryModel": "p", "models": {"p": logistic(-1.0, {"trustScore": 2.0, "logOrderValue": 0.5, "daysSinceDelivery": -0.1})}}
    [c] = run_score(make_context, make_candidate(customer_trust_score=0.8, order_value=42.5), config=config).candidates
    days = 7.5  # delivered 2025-03-28T12:00, measured at 2025-04-05T00:00
    expected = sigmoid(-1.0 + 2.0 * 0.8 + 0.5 * math.log1p(42.5) - 0.1 * days)
    assert c.scores["p"].value == pytest.approx(expected)
    assert c.scores["p"].confidence == 0.6
    assert c.scores["p"].metadata["logit"] == pytest.approx(math.log(expected / (1 - expected)), abs=1e-5)


def test_propensity_grows_with_trust_and_falls_with_time_since_delivery(make_context):
    low, high = make_candidate("C1", customer_trust_score=0.4), make_candidate("C2", customer_trust_score=0.95)
    recent = make_candidate("C3", delivery_date=datetime(2025, 4, 3, tzinfo=UTC))
    stale = make_candidate("C4", delivery_date=datetime(2025, 3, 8, tzinfo=UTC))
    low, high, recent, stale = run_score(make_context, low, high, recent, stale).candidates
    assert low.scores[PROPENSITY].value < high.scores[PROPENSITY].value
    assert stale.scores[PROPENSITY].value < recent.scores[PROPENSITY].value
    assert stale.scores[HEURISTIC].value < recent.scores[HEURISTIC].value


def test_heavy_etl_features_switch_the_propensity_model_to_its_enriched_variant(make_context):
    plain = make_candidate("C1")
    enriched = make_candidate("C2").model_copy(update={"features": HEAVY_ETL})
    partial = make_candidate("C3").model_copy(update={"features": {"orderCount": 7}})
    plain, enriched, partial = run_score(make_context, plain, enriched, partial).candidates
    assert enriched.scores[PROPENSITY].metadata["variant"] == "enriched"
    assert enriched.scores[PROPENSITY].confidence == 0.8
    assert enriched.scores[PROPENSITY].value != plain.scores[PROPENSITY].value
    assert partial.scores[PROPENSITY].metadata["variant"] == "base"
    assert partial.scores[PROPENSITY].value == plain.scores[PROPENSITY].value


def test_enriched_variant_uses_the_features_values(make_context):
    model = logistic(0.0, {"trustScore": 0.0})
    model["enriched"] = {"intercept": 0.0, "coefficients": {"logLifetimeOrderCount": 1.0, "daysSinceLastOrder": -0.5}, "confidence": 0.9}
    c = make_candidate().model_copy(update={"features": {"orderCount": 3.0, "daysSinceLastOrder": 2.0}})
    [scored] = run_score(make_context, c, config={"primaryModel": "p", "models": {"p": model}}).candidates
    assert scored.scores["p"].value == pytest.approx(sigmoid(math.log1p(3.0) - 1.0))


def test_a_missing_review_quality_is_imputed_at_lower_confidence(make_context):
    [c] = run_score(make_context, make_candidate(review_quality_score=None)).candidates
    s = c.scores[PROPENSITY]
    assert s.metadata["fallback"] is False and s.metadata["imputed"] == ["reviewQuality"]
    assert s.confidence == pytest.approx(0.5)


def test_heuristic_mixes_recency_half_life_and_capped_value(make_context):
    config = {"primaryModel": "h", "models": {"h": {
        "kind": "recencyValue", "halfLifeDays": 10, "valueCap": 100, "recencyWeight": 1, "valueWeight": 1,
        "confidence": 0.5, "fallback": FALLBACK}}}
    delivered_10_days_ago = make_candidate(delivery_date=datetime(2025, 3, 26, tzinfo=UTC), order_value=500.0)
    [c] = run_score(make_context, delivered_10_days_ago, config=config).candidates
    assert c.scores["h"].value == pytest.approx((0.5 + 1.0) / 2)
    assert c.scores["h"].metadata["recency"] == pytest.approx(0.5)


def test_a_failing_model_falls_back_and_is_counted(make_context, clock):
    no_trust = make_candidate("C1", customer_trust_score=None)
    out = run_score(make_context, no_trust, make_candidate("C2"))
    assert out.metrics.model_dump() == {"input_count": 2, "scored_count": 2, "fallback_count": 1, "error_count": 0, "record_error_count": 0}
    assert out.fallbacks_by_model == {PROPENSITY: 1}
    s = out.candidates[0].scores[PROPENSITY]
    assert (s.value, s.confidence) == (0.1, 0.05)
    assert s.metadata == {"fallback": True, "reason": "missing input trustScore"}
    assert s.timestamp == clock.now()
    assert out.candidates[0].scores[HEURISTIC].metadata["fallback"] is False
    assert_reconciles(out)


def test_a_non_finite_input_is_a_model_failure(make_context):
    broken = make_candidate().model_copy(update={"features": {**HEAVY_ETL, "avgOrderValue": math.inf}})
    out = run_score(make_context, broken)
    assert out.candidates[0].scores[PROPENSITY].metadata["reason"] == "input logAvgOrderValue is not a finite number"
    assert out.metrics.fallback_count == 1


def test_a_candidate_no_model_can_score_is_an_error_and_kept(make_context):
    hopeless = make_candidate("C1", order_value=None, delivery_date=None, event_date=None)
    out = run_score(make_context, hopeless, make_candidate("C2"), make_candidate("C3", customer_trust_score=None))
    assert out.metrics.model_dump() == {"input_count": 3, "scored_count": 2, "fallback_count": 1, "error_count": 1, "record_error_count": 0}
    [kept] = out.unscored
    assert kept.customer_id == "C1"
    assert {m: s.metadata["fallback"] for m, s in kept.scores.items()} == {PROPENSITY: True, HEURISTIC: True}
    assert out.fallbacks_by_model == {HEURISTIC: 1, PROPENSITY: 2}
    assert [c.customer_id for c in out.candidates] == ["C2", "C3"]
    assert_reconciles(out)


def test_scores_of_other_models_are_kept(make_context):
    earlier = ModelScore(model_id="legacy", value=0.3, confidence=0.9, timestamp=NOW - timedelta(days=1))
    c = make_candidate().model_copy(update={"scores": {"legacy": earlier}})
    [scored] = run_score(make_context, c).candidates
    assert scored.scores["legacy"] == earlier and PROPENSITY in scored.scores


def test_without_a_date_range_recency_is_measured_against_the_clock(make_context, clock):
    c = make_candidate(delivery_date=NOW - timedelta(days=10))
    [before] = run_score(make_context, c, date_range=None).candidates
    clock.advance(10 * 86400)
    [after] = run_score(make_context, c, date_range=None).candidates
    assert after.scores[HEURISTIC].metadata["recency"] == pytest.approx(before.scores[HEURISTIC].metadata["recency"] / 2)


class TestConfig:
    def test_primary_model_can_be_switched(self, make_context):
        assert run_score(make_context, make_candidate(), config={"primaryModel": HEURISTIC}).primary_model == HEURISTIC

    def test_models_can_be_replaced(self, make_context):
        config = {"primaryModel": "only", "models": {"only": logistic(0.0, {"trustScore": 1.0})}}
        [c] = run_score(make_context, make_candidate(), config=config).candidates
        assert set(c.scores) == {"only"}

    @pytest.mark.parametrize(
        ("config", "message"),
        [
            ({"primaryModel": "nope"}, "primaryModel 'nope' is not one of the models"),
            ({"primaryModel": "p", "models": {"p": logistic(0.0, {"shoeSize": 1.0})}}, "unknown feature(s) shoeSize"),
            ({"primaryModel": "p", "models": {"p": {"kind": "neural", "fallback": FALLBACK}}}, "does not match any of the expected tags"),
            ({"primaryModel": "p", "models": {}}, "models"),
            ({"primaryModel": "p", "models": {"p": logistic(0.0, {"trustScore": 1.0}, fallback={"value": 0.1, "confidence": 2})}}, "confidence"),
        ],
    )
    def test_bad_config_is_a_permanent_error(self, make_context, config, message):
        with pytest.raises(PermanentError, match="invalid Score stage config") as caught:
            run_score(make_context, make_candidate(), config=config)
        assert message in str(caught.value)


def test_input_ignores_what_filter_adds_and_output_round_trips(make_context):
    filter_like = {
        "programId": "reviews",
        "dateRange": {"start": "2025-03-01", "end": "2025-04-04"},
        "candidates": [make_candidate().to_json()],
        "rejected": [make_candidate("C9").to_json()],
        "metrics": {"inputCount": 2, "passedCount": 1, "rejectedCount": 1, "rejectionReasons": {}},
    }
    out = score_stage.run(ScoreInput.model_validate(filter_like), make_context("Score"))
    data = out.to_json()
    assert data["metrics"] == {"inputCount": 1, "scoredCount": 1, "fallbackCount": 0, "errorCount": 0, "recordErrorCount": 0}
    assert data["primaryModel"] == PROPENSITY
    assert set(data["candidates"][0]["scores"][PROPENSITY]) == {"modelId", "value", "confidence", "timestamp", "metadata"}
    assert through_json(ScoreOutput, out) == out

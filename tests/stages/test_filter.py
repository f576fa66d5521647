import inspect
from datetime import UTC, datetime, timedelta

import pytest

from ceap_engine.pipeline.stage import PermanentError
from stages import filter as filter_stage
from stages.domain import DateRange, Rejection
from stages.filter import CHECKS, FilterInput, FilterOutput

from .conftest import NOW, make_candidate, through_json

# The reference time of these tests is the end of this range: 2025-04-05T00:00Z.
DATE_RANGE = DateRange.model_validate({"start": "2025-03-01", "end": "2025-04-04"})


def run_filter(make_context, *candidates, config=None, date_range=DATE_RANGE) -> FilterOutput:
    payload = FilterInput(program_id="reviews", marketplace="US", date_range=date_range, candidates=list(candidates))
    return filter_stage.run(payload, make_context("Filter", config))


def codes(candidate) -> list[str]:
    return [r.reason_code for r in candidate.rejection_history]


def test_run_is_a_plain_function_taking_input_and_context():
    assert not inspect.iscoroutinefunction(filter_stage.run)
    assert list(inspect.signature(filter_stage.run).parameters) == ["input", "context"]


def test_a_good_candidate_passes_untouched(make_context):
    good = make_candidate()
    out = run_filter(make_context, good)
    assert out.candidates == [good] and out.rejected == []
    assert out.metrics.model_dump() == {"input_count": 1, "passed_count": 1, "rejected_count": 0, "error_count": 0, "rejection_reasons": {}}
    assert (out.program_id, out.marketplace, out.date_range) == ("reviews", "US", DATE_RANGE)


REASONS = [
    pytest.param({"consumed": True, "consumed_channel": "email"}, "ALREADY_CONSUMED", "eligibility", "via email", id="consumed"),
    pytest.param({"channel_eligibility": {"email": False, "push": False}}, "CHANNEL_INELIGIBLE", "eligibility", "none of the allowed channels", id="no-opt-in"),
    pytest.param({"channel_eligibility": {}}, "CHANNEL_INELIGIBLE", "eligibility", "none of the allowed", id="no-channels-known"),
    pytest.param({"timing_window": None}, "TIMING_WINDOW_MISSING", "eligibility", "not delivered", id="no-window"),
    pytest.param({"fraud_suspected": True}, "FRAUD_DETECTED", "trust", "fraud", id="fraud"),
    pytest.param({"customer_trust_score": 0.29}, "TRUST_SCORE_LOW", "trust", "0.29 is below 0.30", id="low-trust"),
    pytest.param({"customer_trust_score": None}, "TRUST_SCORE_LOW", "trust", "no customer trust score", id="no-trust"),
    pytest.param({"review_quality_score": 0.2}, "QUALITY_SCORE_LOW", "quality", "0.20 is below 0.40", id="low-quality"),
    pytest.param({"order_value": 4.99}, "ORDER_VALUE_LOW", "business", "4.99 USD is below 5.00", id="low-value"),
    pytest.param({"order_value": None}, "ORDER_VALUE_LOW", "business", "no order value", id="no-value"),
    pytest.param({"event_date": datetime(2025, 3, 5, 23, tzinfo=UTC)}, "EVENT_TOO_OLD", "business", "days old (limit 30 days)", id="old"),
    pytest.param({"event_date": None}, "EVENT_TOO_OLD", "business", "no event date", id="no-event-date"),
]


@pytest.mark.parametrize(("attributes", "code", "filter_id", "reason"), REASONS)
def test_each_rule_rejects_with_its_code_and_a_reason(make_context, clock, attributes, code, filter_id, reason):
    out = run_filter(make_context, make_candidate(**attributes), make_candidate("C2"))
    [rejected] = out.rejected
    [rejection] = rejected.rejection_history
    assert (rejection.reason_code, rejection.filter_id) == (code, filter_id)
    assert reason in rejection.reason
    assert rejection.timestamp == clock.now()
    assert out.metrics.model_dump() == {"input_count": 2, "passed_count": 1, "rejected_count": 1, "error_count": 0, "rejection_reasons": {code: 1}}


def test_every_reason_code_of_the_chain_is_covered_above():
    assert {check.reason_code for check in CHECKS} == {p.values[1] for p in REASONS}


@pytest.mark.parametrize(
    "attributes",
    [
        {"customer_trust_score": 0.3},
        {"review_quality_score": 0.4},
        {"review_quality_score": None},  # no reviews yet: nothing to judge
        {"order_value": 5.0},
        {"event_date": datetime(2025, 3, 6, tzinfo=UTC)},  # exactly 30 days before 2025-04-05
        {"channel_eligibility": {"sms": True}},
    ],
)
def test_values_on_the_threshold_pass(make_context, attributes):
    out = run_filter(make_context, make_candidate(**attributes))
    assert out.metrics.passed_count == 1, out.rejected


def test_all_reasons_of_a_candidate_are_recorded_in_chain_order(make_context):
    bad = make_candidate(fraud_suspected=True, customer_trust_score=0.1, order_value=1.0, timing_window=None)
    out = run_filter(make_context, bad, make_candidate("C2", fraud_suspected=True))
    assert codes(out.rejected[0]) == ["TIMING_WINDOW_MISSING", "FRAUD_DETECTED", "TRUST_SCORE_LOW", "ORDER_VALUE_LOW"]
    assert out.metrics.rejection_reasons == {
        "FRAUD_DETECTED": 2, "ORDER_VALUE_LOW": 1, "TIMING_WINDOW_MISSING": 1, "TRUST_SCORE_LOW": 1
    }
    assert out.metrics.rejected_count == 2


def test_earlier_rejection_history_is_kept(make_context):
    earlier = Rejection(filter_id="trust", reason="old", reason_code="TRUST_SCORE_LOW", timestamp=NOW - timedelta(days=9))
    c = make_candidate(order_value=1.0).model_copy(update={"rejection_history": [earlier]})
    [rejected] = run_filter(make_context, c).rejected
    assert rejected.rejection_history[0] == earlier and codes(rejected) == ["TRUST_SCORE_LOW", "ORDER_VALUE_LOW"]


def test_nothing_is_lost_on_a_mixed_population(make_context):
    population = [
        make_candidate(f"C{i}", order_value=float(i), customer_trust_score=(i % 10) / 10) for i in range(100)
    ]
    out = run_filter(make_context, *population)
    m = out.metrics
    assert m.input_count == m.passed_count + m.rejected_count == 100
    assert len(out.candidates) == m.passed_count and len(out.rejected) == m.rejected_count
    assert {c.customer_id for c in out.candidates} | {c.customer_id for c in out.rejected} == {f"C{i}" for i in range(100)}
    assert all(c.rejection_history for c in out.rejected)
    assert m.rejection_reasons == {"ORDER_VALUE_LOW": 5, "TRUST_SCORE_LOW": 30}
    assert m.rejected_count == 30 + 5 - 3  # C0, C1 and C2 are low on both counts


class TestConfig:
    def test_thresholds_come_from_config(self, make_context):
        c = make_candidate(customer_trust_score=0.5, review_quality_score=0.5, order_value=10.0)
        config = {"minTrustScore": 0.6, "minQualityScore": 0.6, "minOrderValue": 20}
        [rejected] = run_filter(make_context, c, config=config).rejected
        assert codes(rejected) == ["TRUST_SCORE_LOW", "QUALITY_SCORE_LOW", "ORDER_VALUE_LOW"]

    def test_allowed_channels_come_from_config(self, make_context):
        c = make_candidate(channel_eligibility={"email": True})
        [rejected] = run_filter(make_context, c, config={"channels": ["push", "sms"]}).rejected
        assert codes(rejected) == ["CHANNEL_INELIGIBLE"] and "push, sms" in rejected.rejection_history[0].reason

    def test_max_event_age_from_config(self, make_context):
        c = make_candidate(event_date=datetime(2025, 3, 25, tzinfo=UTC))
        assert codes(run_filter(make_context, c, config={"maxEventAgeDays": 7}).rejected[0]) == ["EVENT_TOO_OLD"]

    def test_as_of_overrides_the_date_range(self, make_context):
        c = make_candidate(event_date=datetime(2025, 3, 26, tzinfo=UTC))
        assert run_filter(make_context, c, config={"asOf": "2025-06-01"}).metrics.rejection_reasons == {"EVENT_TOO_OLD": 1}

    def test_without_a_date_range_age_is_measured_against_the_clock(self, make_context, clock):
        c = make_candidate(event_date=NOW - timedelta(days=29))
        assert run_filter(make_context, c, date_range=None).metrics.passed_count == 1
        clock.advance(2 * 86400)
        assert run_filter(make_context, c, date_range=None).metrics.rejection_reasons == {"EVENT_TOO_OLD": 1}

    @pytest.mark.parametrize("bad", [{"minTrustScore": 2}, {"channels": []}, {"maxEventAgeDays": 0}, {"minOrderValue": "x"}])
    def test_bad_config_is_a_permanent_error(self, make_context, bad):
        with pytest.raises(PermanentError, match="invalid Filter stage config"):
            run_filter(make_context, make_candidate(), config=bad)


def test_input_ignores_what_etl_adds_and_output_round_trips(make_context):
    etl_like = {
        "programId": "reviews",
        "marketplace": "US",
        "dateRange": {"start": "2025-03-01", "end": "2025-04-04"},
        "source": "orders.jsonl",
        "errors": [{"line": 3, "reason": "bad"}],
        "metrics": {"processedCount": 2, "transformedCount": 1, "errorCount": 1},
        "candidates": [make_candidate().to_json(), make_candidate("C2", order_value=1.0).to_json()],
    }
    out = filter_stage.run(FilterInput.model_validate(etl_like), make_context("Filter"))
    data = out.to_json()
    assert data["metrics"] == {"inputCount": 2, "passedCount": 1, "rejectedCount": 1, "errorCount": 0, "rejectionReasons": {"ORDER_VALUE_LOW": 1}}
    assert data["rejected"][0]["rejectionHistory"][0]["reasonCode"] == "ORDER_VALUE_LOW"
    assert through_json(FilterOutput, out) == out


def test_an_empty_input_passes_nothing_and_fails_nothing(make_context):
    out = run_filter(make_context)
    assert out.metrics.model_dump() == {"input_count": 0, "passed_count": 0, "rejected_count": 0, "error_count": 0, "rejection_reasons": {}}

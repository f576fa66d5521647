import logging
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from ceap_engine.pipeline.stage import PermanentError
from ceap_engine.ports import CandidateRecord
from ceap_engine.runtime.clock import VirtualClock
from stages.domain import (
    CamelModel,
    Candidate,
    DateRange,
    ContextEntry,
    ModelScore,
    describe_validation_error,
    eligible_channels,
    experiment_arm,
    load_config,
    reference_time,
    timing_window_after,
)

from .conftest import NOW, make_candidate


class TestDateRange:
    def test_a_date_end_covers_that_whole_day(self):
        r = DateRange.model_validate({"start": "2025-03-01", "end": "2025-03-31"})
        assert r.contains(datetime(2025, 3, 1, 0, 0, tzinfo=UTC))
        assert r.contains(datetime(2025, 3, 31, 23, 59, 59, tzinfo=UTC))
        assert not r.contains(datetime(2025, 4, 1, 0, 0, tzinfo=UTC))
        assert not r.contains(datetime(2025, 2, 28, 23, 59, tzinfo=UTC))
        assert r.end_time == datetime(2025, 4, 1, tzinfo=UTC)

    def test_a_datetime_end_is_inclusive_to_the_instant(self):
        r = DateRange.model_validate({"start": "2025-03-01T00:00:00Z", "end": "2025-03-02T12:00:00+02:00"})
        assert r.end == datetime(2025, 3, 2, 10, tzinfo=UTC)
        assert r.contains(datetime(2025, 3, 2, 10, tzinfo=UTC))
        assert not r.contains(datetime(2025, 3, 2, 10, 0, 1, tzinfo=UTC))

    def test_naive_datetimes_are_utc(self):
        r = DateRange.model_validate({"start": "2025-03-01T06:00:00", "end": "2025-03-01T07:00:00"})
        assert r.start == datetime(2025, 3, 1, 6, tzinfo=UTC)

    @pytest.mark.parametrize("window", [{"start": "2025-03-01", "end": "2025-03-31"},
                                        {"start": "2025-03-01T00:00:00Z", "end": "2025-03-02T12:00:00+02:00"},
                                        {"start": "2025-03-01T06:00:00", "end": "2025-03-01"}])
    def test_its_test_for_many_moments_agrees_with_contains(self, window):
        r = DateRange.model_validate(window)
        test = r.test()
        edges = [r.start_time, r.end_time, r.start_time.replace(tzinfo=None), r.end_time.replace(tzinfo=None)]
        moments = [m + timedelta(microseconds=d) for m in edges for d in (-1, 0, 1)]
        moments += [datetime(2025, 3, 2, 11, 59, 59, tzinfo=timezone(timedelta(hours=2))),
                    datetime(2025, 3, 1, 1, tzinfo=timezone(timedelta(hours=-5)))]
        assert [test(m) for m in moments] == [r.contains(m) for m in moments]
        assert any(test(m) for m in moments) and not all(test(m) for m in moments)

    def test_single_day_range_is_valid(self):
        r = DateRange.model_validate({"start": "2025-03-01", "end": "2025-03-01"})
        assert r.contains(datetime(2025, 3, 1, 12, tzinfo=UTC))

    def test_end_before_start_is_refused_with_both_dates_named(self):
        with pytest.raises(ValidationError) as caught:
            DateRange.model_validate({"start": "2025-03-10", "end": "2025-03-01"})
        assert "2025-03-01" in str(caught.value) and "before dateRange.start" in str(caught.value)

    def test_not_a_date_is_refused_with_the_expected_format(self):
        with pytest.raises(ValidationError) as caught:
            DateRange.model_validate({"start": "March 1st", "end": "2025-03-01"})
        assert "ISO 8601" in str(caught.value)

    def test_json_form_keeps_dates_as_dates(self):
        r = DateRange.model_validate({"start": "2025-03-01", "end": "2025-03-31T12:00:00Z"})
        assert r.to_json() == {"start": "2025-03-01", "end": "2025-03-31T12:00:00Z"}
        assert isinstance(r.start, date) and not isinstance(r.start, datetime)


class TestCandidate:
    def test_json_is_camel_case_and_round_trips(self):
        c = make_candidate()
        data = c.to_json()
        assert {"customerId", "context", "subject", "scores", "attributes", "metadata", "rejectionHistory", "features"} <= set(data)
        assert {"eventDate", "deliveryDate", "timingWindow", "orderValue", "mediaEligible", "channelEligibility",
                "consumed", "consumedAt", "consumedChannel"} <= set(data["attributes"])
        assert {"createdAt", "updatedAt", "expiresAt", "version", "sourceConnectorId", "workflowExecutionId",
                "experimentTreatment"} <= set(data["metadata"])
        assert Candidate.model_validate(data) == c

    def test_accepts_snake_case_names_and_ignores_unknown_fields(self):
        c = Candidate.model_validate(
            {"customer_id": "C9", "subject": {"type": "PRODUCT", "id": "X"}, "somethingNew": 1}
        )
        assert c.customer_id == "C9" and c.features == {} and c.scores == {}

    def test_key_follows_the_platform_layout(self):
        c = make_candidate("C7", "B99", program_id="reviews", marketplace="UK")
        assert c.key == ("CUSTOMER#C7#PROGRAM#reviews#MARKETPLACE#UK", "SUBJECT#PRODUCT#B99")

    def test_record_carries_score_channels_and_document(self):
        c = make_candidate(channel_eligibility={"email": True, "push": True, "sms": False})
        record = c.to_record(0.42)
        assert (record.pk, record.sk) == c.key
        assert record.score == 0.42
        assert record.channels == frozenset({"email", "push"})
        assert record.data == c.to_json()

    def test_record_fields_are_the_candidates_by_name(self):
        # to_record passes CandidateRecord's fields in their order: a reordered field must not go unnoticed.
        c = make_candidate("C7", "B99", program_id="reviews", marketplace="UK", channel_eligibility={"email": True})
        record = c.to_record(0.42, text='{"x":1}')
        fields = {name: getattr(record, name) for name in CandidateRecord.__dataclass_fields__}
        assert fields == {"customer_id": "C7", "program_id": "reviews", "marketplace": "UK", "subject_type": "PRODUCT",
                          "subject_id": "B99", "score": 0.42, "channels": frozenset({"email"}), "data": {"x": 1},
                          "data_json": '{"x":1}', "consumed": False}

    def test_features_hold_numbers(self):
        c = Candidate.model_validate({"customerId": "C", "subject": {"type": "P", "id": "1"}, "features": {"orderCount": 3}})
        assert c.features == {"orderCount": 3.0}

    def test_score_confidence_must_be_a_probability(self):
        with pytest.raises(ValidationError):
            ModelScore(model_id="m", value=0.5, confidence=1.5, timestamp=NOW)


def test_eligible_channels_are_the_opted_in_ones_within_the_allowed_set():
    c = make_candidate(channel_eligibility={"email": True, "push": True, "sms": False})
    assert eligible_channels(c) == ["email", "push"]
    assert eligible_channels(c, ["push", "sms"]) == ["push"]


def test_timing_window_opens_and_closes_after_delivery():
    window = timing_window_after(datetime(2025, 3, 1, tzinfo=UTC), 2, 10)
    assert (window.start, window.end) == (datetime(2025, 3, 3, tzinfo=UTC), datetime(2025, 3, 11, tzinfo=UTC))


class TestReferenceTime:
    def test_config_as_of_wins(self):
        r = DateRange.model_validate({"start": "2025-03-01", "end": "2025-03-31"})
        assert reference_time({"asOf": "2025-03-10"}, r, VirtualClock(NOW)) == datetime(2025, 3, 10, tzinfo=UTC)

    def test_then_the_end_of_the_date_range(self):
        r = DateRange.model_validate({"start": "2025-03-01", "end": "2025-03-31"})
        assert reference_time({}, r, VirtualClock(NOW)) == datetime(2025, 4, 1, tzinfo=UTC)

    def test_then_the_clock(self):
        assert reference_time({}, None, VirtualClock(NOW)) == NOW

    def test_a_bad_as_of_is_a_permanent_error(self):
        with pytest.raises(PermanentError, match="asOf"):
            reference_time({"asOf": "yesterday"}, None, VirtualClock(NOW))


def test_experiment_arm_is_stable_and_follows_the_share():
    arms = [experiment_arm("reviews", f"C{i}", 30) for i in range(2000)]
    assert arms == [experiment_arm("reviews", f"C{i}", 30) for i in range(2000)]
    assert 0.25 < arms.count("treatment") / len(arms) < 0.35


class _Settings(CamelModel):
    min_score: float = 0.5


def test_load_config_reads_camel_case_keys():
    assert load_config(_Settings, {"minScore": 0.7}, "Reactive").min_score == 0.7


def test_load_config_refuses_bad_values_naming_stage_and_field():
    with pytest.raises(PermanentError, match=r"invalid Reactive stage config: minScore"):
        load_config(_Settings, {"minScore": "high"}, "Reactive")


def test_load_config_warns_about_unknown_keys(caplog):
    with caplog.at_level(logging.WARNING, logger="ceap.stage"):
        load_config(_Settings, {"minScor": 0.7}, "Reactive")
    assert "minScor" in caplog.text and "minScore" in caplog.text


def test_describe_validation_error_names_fields_by_their_json_name():
    with pytest.raises(ValidationError) as caught:
        ModelScore.model_validate({"modelId": "m", "value": "x", "confidence": 0.5})
    text = describe_validation_error(caught.value)
    assert "value: Input should be a valid number" in text and "timestamp: Field required" in text


@pytest.mark.parametrize("context", [
    [],
    [{"type": "program", "id": "reviews"}, {"type": "marketplace", "id": "US"}],
    [{"type": "marketplace", "id": "DE"}, {"type": "program", "id": ""}, {"type": "program", "id": "later"}],
    [{"type": "program", "id": "a"}, {"type": "program", "id": "b"}, {"type": "marketplace", "id": ""}],
    [{"type": "segment", "id": "x"}, {"type": "marketplace", "id": "FR"}],
])
def test_program_and_marketplace_and_the_engagement_key_read_the_context_as_context_id_does(context):
    # The one-pass reads Reactive uses per record must agree with the first-entry rule of context_id,
    # for the model and for the wire Struct (an empty first id is "", not the next entry's id).
    from stages import wire
    from stages.domain import engagement_key, engagement_key_for

    model = make_candidate().model_copy(update={"context": [ContextEntry(**e) for e in context]})
    struct = wire.CANDIDATES.to_wire([model])[0]
    for candidate in (model, struct):
        pair = candidate.program_and_marketplace()
        assert pair == (candidate.context_id("program") or "", candidate.context_id("marketplace") or "")
        assert pair == (candidate.program_id, candidate.marketplace)
        assert engagement_key_for(candidate, *pair) == engagement_key(candidate) == engagement_key(model)

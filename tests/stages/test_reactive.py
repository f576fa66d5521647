import inspect
import json
from datetime import UTC, datetime, timedelta

import pytest

from ceap_engine.errors import StorageError
from ceap_engine.pipeline.stage import PermanentError
from stages import reactive
from stages.domain import Candidate, ModelScore
from stages.reactive import CustomerEvent, EventResult, ReactiveInput, ReactiveOutput, dedup_marker_keys, handle_event

from .conftest import BUCKET, EXECUTION_ID, NOW, RefusingCandidateStore, make_candidate, through_json

PRIMARY = "review-propensity-v1"
ALL_CHANNELS = {"email": True, "push": True, "sms": True, "inApp": True}


def scored(customer_id="C1", value=0.7, subject_id="B01", **attributes) -> Candidate:
    c = make_candidate(customer_id, subject_id, **attributes)
    return c.model_copy(update={"scores": {PRIMARY: ModelScore(model_id=PRIMARY, value=value, confidence=0.6, timestamp=NOW)}})


async def run_reactive(make_context, *candidates, config=None, execution_id=EXECUTION_ID) -> ReactiveOutput:
    payload = ReactiveInput(program_id="reviews", marketplace="US", primary_model=PRIMARY, candidates=list(candidates))
    return await reactive.run(payload, make_context("Reactive", config, execution_id=execution_id))


async def actions_of(objects, out: ReactiveOutput) -> list[dict]:
    body = await objects.get(out.actions_bucket, out.actions_key)
    return [json.loads(line) for line in body.decode("utf-8").splitlines()]


def test_entry_points_are_coroutine_functions_taking_input_and_context():
    for function in (reactive.run, reactive.handle_event):
        assert inspect.iscoroutinefunction(function)
        assert len(inspect.signature(function).parameters) == 2


class TestBatch:
    async def test_actions_are_written_as_json_lines_under_the_execution(self, make_context, objects, clock):
        c = scored(channel_eligibility={"email": True})
        out = await run_reactive(make_context, c, scored("C2", channel_eligibility={"push": True}))
        assert out.actions_bucket == BUCKET and out.actions_key == f"executions/{EXECUTION_ID}/Reactive/actions-00000.jsonl"
        assert out.metrics.model_dump() == {"input_count": 2, "action_count": 2, "actions_by_channel": {"email": 1, "push": 1}}
        first, second = await actions_of(objects, out)
        assert first == {
            "actionId": first["actionId"],
            "executionId": EXECUTION_ID,
            "programId": "reviews",
            "marketplace": "US",
            "customerId": "C1",
            "subject": {"type": "PRODUCT", "id": "B01", "metadata": {}},
            "channel": "email",
            "templateId": "reviews.email",
            "score": 0.7,
            "modelId": PRIMARY,
            "notBefore": c.attributes.timing_window.to_json()["start"],
            "notAfter": c.attributes.timing_window.to_json()["end"],
            "experimentTreatment": None,
            "createdAt": "2025-04-05T08:00:00Z",
        }
        assert len(first["actionId"]) == 32 and second["channel"] == "push"

    async def test_the_first_eligible_channel_in_priority_order_wins(self, make_context, objects):
        out = await run_reactive(make_context, scored(channel_eligibility=ALL_CHANNELS), scored("C2", channel_eligibility={"sms": True, "email": True}))
        assert [a["channel"] for a in await actions_of(objects, out)] == ["push", "email"]
        out = await run_reactive(make_context, scored(channel_eligibility=ALL_CHANNELS), config={"channelPriority": ["sms", "email"]})
        assert [a["channel"] for a in await actions_of(objects, out)] == ["sms"]

    async def test_a_channel_with_a_higher_threshold_gives_way_to_the_next(self, make_context, objects):
        config = {"minScore": 0.5, "channelMinScores": {"push": 0.8}}
        out = await run_reactive(make_context, scored("C1", 0.7, channel_eligibility=ALL_CHANNELS),
                                 scored("C2", 0.9, channel_eligibility=ALL_CHANNELS), config=config)
        assert [(a["customerId"], a["channel"]) for a in await actions_of(objects, out)] == [("C1", "email"), ("C2", "push")]

    async def test_the_inputs_primary_model_decides_else_the_config(self, make_context, objects):
        c = scored(value=0.9).model_copy(update={"scores": {
            PRIMARY: ModelScore(model_id=PRIMARY, value=0.9, confidence=0.6, timestamp=NOW),
            "other": ModelScore(model_id="other", value=0.1, confidence=0.6, timestamp=NOW),
        }})
        from_input = await run_reactive(make_context, c, config={"primaryModel": "other"})
        assert from_input.metrics.action_count == 1
        no_model = ReactiveInput(candidates=[c])
        from_config = await reactive.run(no_model, make_context("Reactive", {"primaryModel": "other"}))
        assert from_config.skipped == {"SCORE_BELOW_THRESHOLD": 1}
        by_default = await reactive.run(no_model, make_context("Reactive"))
        assert by_default.metrics.action_count == 1

    async def test_templates_come_from_config(self, make_context, objects):
        out = await run_reactive(make_context, scored(), config={"templates": {"email": "review-ask-v2"}})
        assert (await actions_of(objects, out))[0]["templateId"] == "review-ask-v2"

    @pytest.mark.parametrize(
        ("candidate", "reason"),
        [
            (scored(consumed=True), "ALREADY_CONSUMED"),
            (make_candidate(), "NO_SCORE"),
            (scored(channel_eligibility={"fax": True}), "NO_ELIGIBLE_CHANNEL"),
            (scored(value=0.49), "SCORE_BELOW_THRESHOLD"),
        ],
        ids=["consumed", "no-score", "no-channel", "low-score"],
    )
    async def test_candidates_without_an_action_are_counted_by_reason(self, make_context, objects, candidate, reason):
        out = await run_reactive(make_context, candidate, scored("C2"))
        assert out.skipped == {reason: 1}
        assert out.metrics.model_dump() == {"input_count": 2, "action_count": 1, "actions_by_channel": {"email": 1}}
        assert [a["customerId"] for a in await actions_of(objects, out)] == ["C2"]

    async def test_the_score_on_the_threshold_qualifies(self, make_context):
        assert (await run_reactive(make_context, scored(value=0.5))).metrics.action_count == 1

    async def test_nothing_is_lost(self, make_context, objects):
        population = [scored(f"C{i}", value=i / 50, channel_eligibility={"email": i % 3 != 0}) for i in range(50)]
        out = await run_reactive(make_context, *population)
        assert out.metrics.input_count == out.metrics.action_count + sum(out.skipped.values()) == 50
        assert sum(out.metrics.actions_by_channel.values()) == out.metrics.action_count == len(await actions_of(objects, out))

    async def test_with_no_actions_an_empty_file_is_still_written(self, make_context, objects):
        out = await run_reactive(make_context, scored(value=0.1))
        assert await objects.get(BUCKET, out.actions_key) == b""
        assert out.metrics.model_dump() == {"input_count": 1, "action_count": 0, "actions_by_channel": {}}

    async def test_a_rerun_writes_the_same_action_ids(self, make_context, objects, clock):
        first = await actions_of(objects, await run_reactive(make_context, scored(), scored("C2")))
        clock.advance(300)
        again = await actions_of(objects, await run_reactive(make_context, scored(), scored("C2")))
        assert [a["actionId"] for a in again] == [a["actionId"] for a in first]
        assert len({a["actionId"] for a in first}) == 2

    async def test_an_action_id_is_what_the_action_is_not_which_execution_made_it(self, make_context, objects):
        mine = await actions_of(objects, await run_reactive(make_context, scored(), execution_id="exec-a"))
        # Another execution on other stores (nothing claimed there): same action, same id.
        context = make_context("Reactive", execution_id="exec-b")
        context.objects, context.candidates = type(objects)(), type(context.candidates)()
        payload = ReactiveInput(program_id="reviews", marketplace="US", primary_model=PRIMARY, candidates=[scored()])
        theirs = await actions_of(context.objects, await reactive.run(payload, context))
        assert [a["actionId"] for a in theirs] == [a["actionId"] for a in mine]
        assert theirs[0]["executionId"] == "exec-b"
        later_window = scored(delivery_date=NOW + timedelta(days=60),
                              timing_window=reactive.timing_window_after(NOW + timedelta(days=60)))
        other = await actions_of(objects, await run_reactive(make_context, later_window, execution_id="exec-c"))
        assert other[0]["actionId"] != mine[0]["actionId"]

    async def test_an_engagement_another_execution_issued_is_skipped(self, make_context, objects, candidates):
        first = await run_reactive(make_context, scored(), scored("C2"), execution_id="exec-a")
        second = await run_reactive(make_context, scored(), scored("C2"), scored("C3"), execution_id="exec-b")
        assert first.metrics.action_count == 2
        assert second.skipped == {"ALREADY_ACTIONED": 2}
        assert [a["customerId"] for a in await actions_of(objects, second)] == ["C3"]
        assert await candidates.claim_engagements([reactive.engagement_key(scored())], "exec-z") == {
            reactive.engagement_key(scored()): "exec-a"}
        # The same execution again (a resume) writes its actions again.
        again = await run_reactive(make_context, scored(), scored("C2"), execution_id="exec-a")
        assert again.metrics.action_count == 2

    async def test_a_candidate_consumed_since_store_gets_no_action(self, make_context, objects, candidates):
        await candidates.put_batch([scored(consumed=True).to_record(0.7)])
        out = await run_reactive(make_context, scored(), scored("C2"))
        assert out.skipped == {"ALREADY_CONSUMED": 1}
        assert [a["customerId"] for a in await actions_of(objects, out)] == ["C2"]

    @pytest.mark.parametrize("reads", ["consumed_many", "get_many", "get"])
    async def test_the_consumed_recheck_reads_through_what_the_store_offers(self, make_context, objects, candidates,
                                                                             reads):
        class GetManyStore(RefusingCandidateStore):
            async def get_many(self, keys):
                return await self.inner.get_many(keys)

        store = {"consumed_many": candidates, "get_many": GetManyStore(candidates, lambda r: None),
                 "get": RefusingCandidateStore(candidates, lambda r: None)}[reads]
        assert hasattr(store, "consumed_many") == (reads == "consumed_many")
        assert hasattr(store, "get_many") == (reads != "get")
        await candidates.put_batch([scored(consumed=True).to_record(0.7), scored("C3").to_record(0.7)])
        payload = ReactiveInput(program_id="reviews", marketplace="US", primary_model=PRIMARY,
                                candidates=[scored(), scored("C2"), scored("C3")])
        out = await reactive.run(payload, make_context("Reactive", candidate_store=store))
        assert out.skipped == {"ALREADY_CONSUMED": 1}
        assert [a["customerId"] for a in await actions_of(objects, out)] == ["C2", "C3"]

    async def test_input_ignores_what_store_adds_and_output_round_trips(self, make_context):
        store_like = {
            "programId": "reviews",
            "primaryModel": PRIMARY,
            "candidates": [scored().to_json()],
            "failed": [],
            "metrics": {"inputCount": 1, "storedCount": 1, "failedCount": 0},
        }
        out = await reactive.run(ReactiveInput.model_validate(store_like), make_context("Reactive"))
        data = out.to_json()
        assert data["metrics"] == {"inputCount": 1, "actionCount": 1, "actionsByChannel": {"email": 1}}
        assert data["actionsKey"] == f"executions/{EXECUTION_ID}/Reactive/actions-00000.jsonl"
        assert through_json(ReactiveOutput, out) == out

    async def test_bad_config_is_a_permanent_error(self, make_context):
        with pytest.raises(PermanentError, match="minScore"):
            await run_reactive(make_context, scored(), config={"minScore": 7})


# -- single events ------------------------------------------------------------


def event(event_id="ev-1", event_type="ORDER_DELIVERED", **fields) -> CustomerEvent:
    return CustomerEvent.model_validate({
        "eventId": event_id,
        "eventType": event_type,
        "customerId": "C1",
        "programId": "reviews",
        "marketplace": "US",
        "subject": {"type": "PRODUCT", "id": "B01"},
        **fields,
    })


async def stored(candidates) -> Candidate:
    record = await candidates.get("CUSTOMER#C1#PROGRAM#reviews#MARKETPLACE#US", "SUBJECT#PRODUCT#B01")
    assert record is not None
    return Candidate.model_validate(record.data)


class TestEvents:
    async def test_a_first_event_creates_the_candidate(self, make_context, candidates, clock):
        delivered = datetime(2025, 4, 4, 18, tzinfo=UTC)
        result = await handle_event(
            event(orderId="O1", orderValue=30.0, currency="USD", deliveryDate=delivered.isoformat(),
                  channelEligibility={"email": True}, customerTrustScore=0.9),
            make_context("Reactive"),
        )
        assert result == EventResult(
            event_id="ev-1", status="CREATED", pk="CUSTOMER#C1#PROGRAM#reviews#MARKETPLACE#US",
            sk="SUBJECT#PRODUCT#B01", version=1,
        )
        c = await stored(candidates)
        a = c.attributes
        assert (a.order_value, a.currency, a.order_ids, a.order_count) == (30.0, "USD", ["O1"], 1)
        assert a.delivery_date == delivered and a.timing_window.start == delivered + timedelta(days=3)
        assert a.event_date == NOW and a.channel_eligibility == {"email": True} and a.customer_trust_score == 0.9
        assert a.source_event_ids == ["ev-1"]
        assert c.metadata.created_at == NOW and c.metadata.version == 1
        assert c.metadata.source_connector_id == "customer-events" and c.metadata.workflow_execution_id == EXECUTION_ID
        assert c.metadata.expires_at == NOW + timedelta(days=30)
        record = await candidates.get(result.pk, result.sk)
        assert record.channels == frozenset({"email"}) and record.score is None

    async def test_the_same_event_id_within_five_minutes_is_deduplicated(self, make_context, candidates, objects, clock):
        context = make_context("Reactive")
        await handle_event(event(orderValue=10.0, orderId="O1"), context)
        before = await objects.list(BUCKET)
        clock.advance(299)
        result = await handle_event(event(orderValue=10.0, orderId="O1"), context)
        assert (result.status, result.reason) == ("DEDUPLICATED", "DUPLICATE_EVENT_ID")
        assert (await stored(candidates)).metadata.version == 1
        assert await objects.list(BUCKET) == before
        assert [json.loads(await objects.get(BUCKET, k))["seenAt"] for k in before] == [NOW.isoformat()] * 2

    async def test_the_same_customer_subject_and_type_within_five_minutes_is_deduplicated(self, make_context, candidates, clock):
        context = make_context("Reactive")
        await handle_event(event("ev-1"), context)
        clock.advance(240)
        result = await handle_event(event("ev-2"), context)
        assert (result.status, result.reason) == ("DEDUPLICATED", "DUPLICATE_WITHIN_WINDOW")
        assert (await stored(candidates)).attributes.source_event_ids == ["ev-1"]

    async def test_after_the_window_a_new_event_updates_the_candidate(self, make_context, candidates, clock):
        context = make_context("Reactive")
        await handle_event(event("ev-1", "ORDER_PLACED", orderId="O1", orderValue=10.0), context)
        clock.advance(301)
        result = await handle_event(event("ev-2", "ORDER_PLACED", orderId="O2", orderValue=5.0), context)
        assert (result.status, result.version) == ("UPDATED", 2)
        c = await stored(candidates)
        assert (c.attributes.order_value, c.attributes.order_count) == (15.0, 2)
        assert c.attributes.event_date == NOW + timedelta(seconds=301) and c.attributes.timing_window is None
        assert c.metadata.created_at == NOW and c.metadata.updated_at == NOW + timedelta(seconds=301)

    async def test_after_the_window_a_redelivered_event_id_is_already_applied(self, make_context, candidates, objects, clock):
        context = make_context("Reactive")
        await handle_event(event(orderId="O1", orderValue=10.0), context)
        markers = {k: await objects.get(BUCKET, k) for k in await objects.list(BUCKET)}
        clock.advance(3600)
        result = await handle_event(event(orderId="O1", orderValue=10.0), context)
        assert (result.status, result.reason, result.version) == ("DEDUPLICATED", "ALREADY_APPLIED", 1)
        assert (await stored(candidates)).attributes.order_value == 10.0
        assert {k: await objects.get(BUCKET, k) for k in await objects.list(BUCKET)} == markers  # nothing written

    async def test_another_event_type_is_not_a_duplicate(self, make_context, candidates, clock):
        context = make_context("Reactive")
        await handle_event(event("ev-1", "ORDER_PLACED", orderId="O1", orderValue=12.0), context)
        clock.advance(60)
        result = await handle_event(event("ev-2", "ORDER_DELIVERED", orderId="O1", orderValue=12.0), context)
        assert result.status == "UPDATED"
        c = await stored(candidates)
        assert c.attributes.order_value == 12.0 and c.attributes.order_count == 1  # one order, counted once
        assert c.attributes.delivery_date == NOW + timedelta(seconds=60)

    async def test_an_engagement_marks_the_candidate_consumed(self, make_context, candidates, clock):
        context = make_context("Reactive")
        await handle_event(event("ev-1"), context)
        clock.advance(30)
        result = await handle_event(event("ev-2", "ENGAGEMENT_CONSUMED", channel="push", occurredAt="2025-04-05T08:00:10Z"), context)
        assert result.status == "UPDATED"
        a = (await stored(candidates)).attributes
        assert (a.consumed, a.consumed_channel, a.consumed_at) == (True, "push", NOW + timedelta(seconds=10))

    async def test_an_update_keeps_scores_and_the_primary_score(self, make_context, candidates, clock):
        existing = scored(value=0.66)
        await candidates.put_batch([existing.to_record(0.66)])
        result = await handle_event(event("ev-9", channelEligibility={"push": True}, fraudFlag=False), make_context("Reactive"))
        assert (result.status, result.version) == ("UPDATED", 2)
        record = await candidates.get(result.pk, result.sk)
        assert record.score == 0.66 and record.channels == frozenset({"email", "push"})
        assert Candidate.model_validate(record.data).scores == existing.scores

    async def test_a_failed_write_raises_and_leaves_no_marker_so_a_retry_succeeds(self, make_context, candidates, objects):
        refusing = RefusingCandidateStore(candidates, lambda r: "throttled")
        with pytest.raises(StorageError, match="throttled"):
            await handle_event(event(), make_context("Reactive", candidate_store=refusing))
        assert await objects.list(BUCKET) == []
        result = await handle_event(event(), make_context("Reactive"))
        assert result.status == "CREATED"

    async def test_markers_live_under_events_dedup(self, make_context, objects):
        await handle_event(event(), make_context("Reactive"))
        keys = dedup_marker_keys(event())
        assert sorted(keys.values()) == await objects.list(BUCKET, "events/dedup/")
        assert all(k.startswith("events/dedup/") and k.endswith(".json") for k in keys.values())

    async def test_an_unreadable_marker_is_ignored(self, make_context, objects):
        await objects.put(BUCKET, dedup_marker_keys(event())["DUPLICATE_EVENT_ID"], b"not json")
        assert (await handle_event(event(), make_context("Reactive"))).status == "CREATED"

    async def test_a_marker_without_offset_is_read_as_utc(self, make_context, objects):
        marker = json.dumps({"eventId": "ev-1", "seenAt": "2025-04-05T07:58:00"}).encode()
        await objects.put(BUCKET, dedup_marker_keys(event())["DUPLICATE_EVENT_ID"], marker)
        assert (await handle_event(event(), make_context("Reactive"))).reason == "DUPLICATE_EVENT_ID"

    async def test_the_window_comes_from_config(self, make_context, clock):
        context = make_context("Reactive", {"dedupWindowSeconds": 30})
        await handle_event(event("ev-1"), context)
        clock.advance(31)
        assert (await handle_event(event("ev-2"), context)).status == "UPDATED"

    async def test_without_a_candidate_store_the_event_fails_permanently(self, make_context):
        with pytest.raises(PermanentError, match="needs a candidate store"):
            await handle_event(event(), make_context("Reactive", candidate_store=None))

    @pytest.mark.parametrize("bad", [{"eventType": "CLICKED"}, {"eventId": ""}, {"orderValue": -1}, {"subject": {"type": "PRODUCT"}}])
    def test_invalid_events_are_refused_by_the_model(self, bad):
        base = {"eventId": "e", "eventType": "ORDER_PLACED", "customerId": "C1", "programId": "p", "marketplace": "US",
                "subject": {"type": "PRODUCT", "id": "B01"}}
        with pytest.raises(ValueError):
            CustomerEvent.model_validate({**base, **bad})


def test_an_action_line_is_an_engagement_action_in_its_json_form():
    """The fast path writes actions as plain JSON: the same fields, order and values as EngagementAction's."""
    from ceap_engine.pipeline.stage import encode_struct
    from stages.wire import CANDIDATES

    candidate = make_candidate().model_copy(update={"scores": {"m": ModelScore(
        model_id="m", value=0.8, confidence=0.9, timestamp=NOW)}})
    config = reactive.ReactiveConfig()
    payload = ReactiveInput(program_id="reviews", marketplace="US", candidates=[])
    action, _ = reactive._action_for(CANDIDATES.to_wire([candidate])[0], payload, config, "m", EXECUTION_ID, NOW)
    model = reactive.EngagementAction.model_validate(action)
    assert encode_struct(action) == model.__pydantic_serializer__.to_json(model, by_alias=True)

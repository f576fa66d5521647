import inspect
from datetime import timedelta

import pytest

from ceap_engine.errors import StorageError
from ceap_engine.pipeline.stage import PermanentError
from ceap_engine.ports import CandidateRecord
from stages import store as store_stage
from stages.domain import Candidate, EncodedDocument, ModelScore
from stages.store import StoreInput, StoreOutput
from stages.wire import CANDIDATES

from .conftest import NOW, RefusingCandidateStore, make_candidate, through_json

PRIMARY = "review-propensity-v1"


def scored(customer_id: str = "C1", subject_id: str = "B01", value: float = 0.7, **attributes) -> Candidate:
    c = make_candidate(customer_id, subject_id, **attributes)
    return c.model_copy(update={"scores": {
        PRIMARY: ModelScore(model_id=PRIMARY, value=value, confidence=0.6, timestamp=NOW),
        "recency-value-v1": ModelScore(model_id="recency-value-v1", value=0.2, confidence=0.5, timestamp=NOW),
    }})


async def run_store(make_context, *candidates, primary_model=PRIMARY, **context_options) -> StoreOutput:
    payload = StoreInput(program_id="reviews", marketplace="US", primary_model=primary_model, candidates=list(candidates))
    return await store_stage.run(payload, make_context("Store", **context_options))


def assert_reconciles(out: StoreOutput) -> None:
    m = out.metrics
    assert m.input_count == m.stored_count + m.failed_count
    assert len(out.candidates) == m.stored_count and len(out.failed) == m.failed_count


def test_run_is_a_coroutine_function_taking_input_and_context():
    assert inspect.iscoroutinefunction(store_stage.run)
    assert list(inspect.signature(store_stage.run).parameters) == ["input", "context"]


async def test_candidates_are_stored_under_the_platform_keys(make_context, candidates):
    c = scored(value=0.7, channel_eligibility={"email": True, "push": True, "sms": False})
    out = await run_store(make_context, c, scored("C2", value=0.4))
    assert out.metrics.model_dump() == {"input_count": 2, "stored_count": 2, "failed_count": 0, "error_count": 0}
    record = await candidates.get("CUSTOMER#C1#PROGRAM#reviews#MARKETPLACE#US", "SUBJECT#PRODUCT#B01")
    assert record is not None
    assert record.score == 0.7 and record.channels == frozenset({"email", "push"})
    stored = Candidate.model_validate(record.data)
    assert stored.scores == c.scores and stored.metadata.updated_at == NOW
    assert [r.customer_id for r in await candidates.query("reviews")] == ["C1", "C2"]  # best score first
    assert [r.customer_id for r in await candidates.query("reviews", "push")] == ["C1"]
    assert out.candidates[0] == stored  # Reactive gets what was stored


async def test_score_is_the_primary_models_value(make_context, candidates):
    await run_store(make_context, scored(value=0.7), primary_model="recency-value-v1")
    [record] = await candidates.query("reviews")
    assert record.score == 0.2


async def test_without_a_primary_model_in_input_the_config_or_default_decides(make_context, candidates):
    out = await run_store(make_context, scored(value=0.7), primary_model=None)
    assert out.primary_model == PRIMARY and (await candidates.query("reviews"))[0].score == 0.7
    out = await run_store(make_context, scored(value=0.7), primary_model=None, config={"primaryModel": "recency-value-v1"})
    assert out.primary_model == "recency-value-v1" and (await candidates.query("reviews"))[0].score == 0.2


async def test_a_candidate_without_the_primary_score_is_stored_without_score(make_context, candidates):
    await run_store(make_context, make_candidate())
    [record] = await candidates.query("reviews")
    assert record.score is None


async def test_rerunning_the_same_execution_duplicates_nothing(make_context, candidates, clock):
    batch = [scored(f"C{i}", value=i / 10) for i in range(5)]
    first = await run_store(make_context, *batch)
    clock.advance(60)
    again = await run_store(make_context, *batch)
    records = await candidates.query("reviews")
    assert len(records) == 5
    assert again.metrics == first.metrics
    assert {Candidate.model_validate(r.data).metadata.version for r in records} == {1}


async def test_a_later_execution_bumps_the_version_and_keeps_created_and_consumed(make_context, candidates, clock):
    created = NOW - timedelta(days=10)
    first = scored().model_copy(update={"metadata": scored().metadata.model_copy(update={"created_at": created})})
    await run_store(make_context, first, execution_id="exec-old")
    # Between runs the customer engaged (as a Reactive event would record it).
    record = await candidates.get(*first.key)
    consumed = Candidate.model_validate(record.data)
    consumed.attributes.consumed, consumed.attributes.consumed_at, consumed.attributes.consumed_channel = True, NOW, "email"
    await candidates.put_batch([consumed.to_record(record.score)])

    clock.advance(86400)
    out = await run_store(make_context, scored(value=0.9), execution_id="exec-new")
    [kept] = out.candidates
    assert kept.metadata.version == 2 and kept.metadata.created_at == created
    assert kept.metadata.workflow_execution_id == "exec-new" and kept.metadata.updated_at == NOW + timedelta(days=1)
    assert (kept.attributes.consumed, kept.attributes.consumed_at, kept.attributes.consumed_channel) == (True, NOW, "email")
    stored = await candidates.get(*first.key)
    assert stored.score == 0.9 and Candidate.model_validate(stored.data) == kept


async def test_an_unreadable_old_document_is_replaced(make_context, candidates):
    c = scored()
    await candidates.put_batch([CandidateRecord("C1", "reviews", "US", "PRODUCT", "B01", data={"garbage": True})])
    out = await run_store(make_context, c)
    assert out.metrics.stored_count == 1 and out.candidates[0].metadata.version == 1


async def test_failed_writes_are_counted_and_listed(make_context, candidates):
    refusing = RefusingCandidateStore(candidates, lambda r: "throttled" if r.customer_id == "C2" else None)
    out = await run_store(make_context, scored("C1"), scored("C2"), scored("C3"), candidate_store=refusing)
    assert out.metrics.model_dump() == {"input_count": 3, "stored_count": 2, "failed_count": 1, "error_count": 0}
    [failed] = out.failed
    assert (failed.customer_id, failed.subject_id, failed.reason) == ("C2", "B01", "throttled")
    assert failed.pk == "CUSTOMER#C2#PROGRAM#reviews#MARKETPLACE#US" and failed.sk == "SUBJECT#PRODUCT#B01"
    assert [c.customer_id for c in out.candidates] == ["C1", "C3"]
    assert refusing.put_calls == 1  # one put_batch; the store splits it into its own batches
    assert_reconciles(out)


async def test_a_non_finite_score_never_reaches_the_store(make_context):
    # Models refuse NaN and infinities where they arise (the backend's own check,
    # encode_candidate_data, stays as the last line and is covered by the contract suite).
    with pytest.raises(ValueError, match="finite number"):
        scored("C1", value=float("nan"))


async def test_when_every_write_fails_the_stage_raises_for_a_retry(make_context, candidates):
    refusing = RefusingCandidateStore(candidates, lambda r: "service unavailable")
    with pytest.raises(StorageError, match="every one of 2 candidate writes failed.*service unavailable"):
        await run_store(make_context, scored("C1"), scored("C2"), candidate_store=refusing)


async def test_without_a_candidate_store_the_stage_fails_permanently(make_context):
    with pytest.raises(PermanentError, match="needs a candidate store"):
        await run_store(make_context, scored(), candidate_store=None)


async def test_duplicate_keys_in_the_input_are_one_upsert_last_wins(make_context, candidates):
    out = await run_store(make_context, scored(value=0.2), scored(value=0.8))
    assert out.metrics.model_dump() == {"input_count": 2, "stored_count": 2, "failed_count": 0, "error_count": 0}
    [record] = await candidates.query("reviews")
    assert record.score == 0.8


async def test_an_empty_input_stores_nothing_and_does_not_fail(make_context, candidates):
    out = await run_store(make_context)
    assert out.metrics.model_dump() == {"input_count": 0, "stored_count": 0, "failed_count": 0, "error_count": 0}


async def test_many_candidates_go_through(make_context, candidates):
    out = await run_store(make_context, *[scored(f"C{i}", value=(i % 100) / 100) for i in range(260)])
    assert out.metrics.stored_count == 260 and len(await candidates.query("reviews")) == 260


async def test_input_ignores_what_score_adds_and_output_round_trips(make_context):
    score_like = {
        "programId": "reviews",
        "primaryModel": PRIMARY,
        "candidates": [scored().to_json()],
        "unscored": [make_candidate("C9").to_json()],
        "fallbacksByModel": {},
        "metrics": {"inputCount": 2, "scoredCount": 1, "fallbackCount": 0, "errorCount": 1},
    }
    out = await store_stage.run(StoreInput.model_validate(score_like), make_context("Store"))
    assert out.to_json()["metrics"] == {"inputCount": 1, "storedCount": 1, "failedCount": 0, "errorCount": 0}
    assert through_json(StoreOutput, out) == out


async def test_on_the_wire_path_a_written_candidate_is_handed_on_as_the_text_stored(make_context, candidates):
    by_key: dict[tuple[str, str], CandidateRecord] = {}
    recording = RefusingCandidateStore(candidates, lambda r: by_key.__setitem__(r.key, r))  # refuses none, keeps them
    batch = [scored("C1", channel_eligibility={"email": True, "sms": False}), scored("C2", value=0.1)]
    payload = CANDIDATES.wire_input(StoreInput(program_id="reviews", primary_model=PRIMARY, candidates=batch))

    out = await store_stage.run.wire.core(payload, make_context("Store", candidate_store=recording))
    written = list(by_key.values())

    assert [type(c) for c in out.candidates] == [bytes, bytes]  # encoded once, not again by the runtime
    assert [r.data_json.encode() for r in written] == out.candidates
    for record, line in zip(written, out.candidates, strict=True):
        decided = CANDIDATES.codec.decode_line(line)
        assert record == decided.to_record(decided.scores[PRIMARY].value)  # keys, score, channels, data
        assert record.data == decided.to_json() and record.version == 1
        stored = await candidates.get(*record.key)
        assert stored.data == record.data and stored.version == 1
    assert written[0].channels == frozenset({"email"})


def test_an_encoded_document_reads_as_the_dict_its_text_says():
    doc = EncodedDocument('{"metadata":{"version":3},"scores":{}}')
    assert dict(doc) == {"metadata": {"version": 3}, "scores": {}} == doc
    assert doc == EncodedDocument('{"scores":{},"metadata":{"version":3}}')  # by value, not by text
    assert doc != {"metadata": {"version": 4}, "scores": {}} and doc != [("metadata", 3)]
    assert list(doc) == ["metadata", "scores"] and len(doc) == 2 and doc.get("missing") is None
    assert repr(doc) == "{'metadata': {'version': 3}, 'scores': {}}"
    assert CandidateRecord("c", "p", "US", "T", "s", data=doc).version == 3


def test_an_encoded_document_parses_its_text_only_when_read():
    doc = EncodedDocument("not JSON")  # nothing parsed yet: a store that does not read data never pays
    with pytest.raises(ValueError):
        doc["metadata"]


def test_wire_same_content_is_content_compared_as_dicts():
    from stages import wire

    base = CANDIDATES.codec.from_model(scored())
    score = base.scores[PRIMARY]
    changes = {
        # What a write changes without changing what is said:
        "version": wire.replace(base, metadata=wire.replace(base.metadata, version=9)),
        "updatedAt": wire.replace(base, metadata=wire.replace(base.metadata, updated_at=NOW + timedelta(days=1),
                                                              created_at=NOW, expires_at=NOW,
                                                              workflow_execution_id="other")),
        "score timestamp": wire.replace(base, scores={**base.scores, PRIMARY: wire.replace(score, timestamp=NOW + timedelta(1))}),
        # What it says:
        "customer": wire.replace(base, customer_id="C9"),
        "score value": wire.replace(base, scores={**base.scores, PRIMARY: wire.replace(score, value=0.1)}),
        "score metadata": wire.replace(base, scores={**base.scores, PRIMARY: wire.replace(score, metadata={"x": 1})}),
        "a score less": wire.replace(base, scores={PRIMARY: score}),
        "consumed": wire.replace(base, attributes=wire.replace(base.attributes, consumed=True)),
        "treatment": wire.replace(base, metadata=wire.replace(base.metadata, experiment_treatment="t2")),
        "rejection": wire.replace(base, rejection_history=[wire.Rejection(filter_id="f", reason="r", reason_code="X",
                                                                          timestamp=NOW)]),
        "features": wire.replace(base, features={"f": 1.0}),
    }
    said = {name: wire.same_content(base, other) for name, other in changes.items()}

    assert said == {name: wire.content(base) == wire.content(other) for name, other in changes.items()}
    assert [name for name, same in said.items() if same] == ["version", "updatedAt", "score timestamp"]
    assert all(wire.same_content(other, other) for other in changes.values())


async def test_a_rerun_decides_on_the_stored_text_without_building_its_dict(make_context, candidates):
    from ceap_engine.ports import document_text

    first = await run_store(make_context, scored("C1"), scored("C2"))
    [record, *_] = await candidates.get_many([c.key for c in first.candidates])
    assert document_text(record) is not None and record.version == 1  # the version read alone
    assert document_text(record) is not None  # ...leaving the document unparsed
    assert store_stage.stored_candidate(record) == CANDIDATES.codec.from_model(first.candidates[0])
    assert document_text(record) is not None  # decoded from the text into the Struct, no dict built

    again = await run_store(make_context, scored("C1"), scored("C2"))
    assert [c.metadata.version for c in again.candidates] == [1, 1]  # nothing rewritten

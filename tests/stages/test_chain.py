"""The five stages end to end on the example data, each output handed on as JSON (as the runtime does)."""

import json
from pathlib import Path

import pytest

from stages import etl, reactive, score, store
from stages import filter as filter_stage
from stages.domain import Candidate

from .conftest import BUCKET, run_etl, through_json

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example_payload(name: str) -> etl.EtlInput:
    path = EXAMPLES / name
    data = json.loads(path.read_text(encoding="utf-8"))
    data["source"] = str(path.parent / data["source"])  # the CLI resolves it against the payload file
    return etl.EtlInput.model_validate(data)


@pytest.mark.parametrize("name", ["payload.json", "payload-batch.json"])
def test_example_payloads_are_valid_etl_input_with_an_existing_source(name):
    payload = example_payload(name)
    assert Path(payload.source).is_file()
    assert payload.program_id and payload.marketplace == "US"


def test_committed_example_data_is_small():
    assert (EXAMPLES / "data" / "orders.jsonl").stat().st_size < 1_000_000


async def test_the_whole_chain_on_the_example_data(make_context, candidates, objects):
    etl_out = await run_etl(example_payload("payload.json"), make_context("ETL"))
    m = etl_out.metrics
    assert etl_out.records_read == 1200
    assert m.processed_count == m.transformed_count + m.error_count
    assert etl_out.records_read == m.processed_count + etl_out.skipped.other_marketplace + etl_out.skipped.outside_date_range
    assert 9 <= m.error_count <= 12 and m.error_count == len(etl_out.errors)
    assert m.transformed_count > 0.85 * etl_out.records_read  # the date range keeps most events
    assert 1 <= etl_out.skipped.other_marketplace and 1 <= etl_out.skipped.outside_date_range
    assert etl_out.duplicate_event_count >= 1
    assert len(etl_out.candidates) < m.transformed_count  # repeat purchases merged
    assert len({c.key for c in etl_out.candidates}) == len(etl_out.candidates)

    filter_in = through_json(filter_stage.FilterInput, etl_out)
    filter_out = filter_stage.run(filter_in, make_context("Filter"))
    fm = filter_out.metrics
    assert fm.input_count == len(etl_out.candidates) == fm.passed_count + fm.rejected_count
    assert fm.passed_count > 0.4 * fm.input_count
    # Every kind of ineligible candidate the generator makes shows up with its code.
    assert set(fm.rejection_reasons) == {
        "CHANNEL_INELIGIBLE", "EVENT_TOO_OLD", "FRAUD_DETECTED", "ORDER_VALUE_LOW",
        "QUALITY_SCORE_LOW", "TIMING_WINDOW_MISSING", "TRUST_SCORE_LOW",
    }
    assert all(c.rejection_history for c in filter_out.rejected)

    score_in = through_json(score.ScoreInput, filter_out)
    score_out = score.run(score_in, make_context("Score"))
    sm = score_out.metrics
    assert sm.input_count == fm.passed_count == sm.scored_count + sm.error_count
    assert sm.error_count == 0 and sm.fallback_count == 0  # filtered candidates carry every model input
    propensities = sorted(c.scores[score_out.primary_model].value for c in score_out.candidates)
    assert 0.3 < propensities[len(propensities) // 2] < 0.9  # a spread a threshold can work with

    store_in = through_json(store.StoreInput, score_out)
    store_out = await store.run(store_in, make_context("Store"))
    stm = store_out.metrics
    assert stm.input_count == sm.scored_count == stm.stored_count + stm.failed_count
    assert stm.failed_count == 0
    assert len(await candidates.query("review-solicitation")) == stm.stored_count

    reactive_in = through_json(reactive.ReactiveInput, store_out)
    reactive_out = await reactive.run(reactive_in, make_context("Reactive"))
    rm = reactive_out.metrics
    assert rm.input_count == stm.stored_count == rm.action_count + sum(reactive_out.skipped.values())
    assert rm.action_count > 0 and len(rm.actions_by_channel) >= 2
    lines = (await objects.get(BUCKET, reactive_out.actions_key)).decode().splitlines()
    assert len(lines) == rm.action_count
    assert all(json.loads(line)["programId"] == "review-solicitation" for line in lines)


async def test_rerunning_the_chain_from_store_is_idempotent(make_context, candidates):
    etl_out = await run_etl(example_payload("payload.json"), make_context("ETL"))
    filter_out = filter_stage.run(through_json(filter_stage.FilterInput, etl_out), make_context("Filter"))
    score_out = score.run(through_json(score.ScoreInput, filter_out), make_context("Score"))
    store_in = through_json(store.StoreInput, score_out)
    first = await store.run(store_in, make_context("Store"))
    second = await store.run(store_in, make_context("Store"))
    assert first.metrics == second.metrics
    records = await candidates.query("review-solicitation")
    assert len(records) == first.metrics.stored_count
    assert {Candidate.model_validate(r.data).metadata.version for r in records} == {1}

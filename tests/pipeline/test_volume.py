"""Stage data at volume: parts, record isolation, and a reconciliation that chains stage to stage."""

import json
from pathlib import Path

import pytest

from ceap_engine.pipeline.stage import StageContext, decode_line
from ceap_engine.pipeline.stage_runtime import make_stage_handler
from ceap_engine.testing import WorkflowTestEnvironment
from ceap_engine.testing.faults import copy_stage_runner
from stages import score
from stages.score import ScoreInput, ScoreOutput

ROOT = Path(__file__).resolve().parents[2]


def dropping_score(input: ScoreInput, context: StageContext) -> ScoreOutput:
    """A broken Score: it scores everything but hands on only every other candidate, silently."""
    out = score.run(input, context)
    return out.model_copy(update={"candidates": out.candidates[::2]})


def event(line: int, **fields) -> dict:
    base = {
        "eventId": f"e{line}", "customerId": f"C{line}", "orderId": f"O{line}", "marketplace": "US",
        "productId": "B01", "orderDate": "2025-03-20T10:00:00Z", "deliveryDate": "2025-03-22T10:00:00Z",
        "orderValue": 20.0, "currency": "USD", "channelOptIns": {"email": True}, "customerTrustScore": 0.9,
    }
    return {**base, **fields}


def payload(source: Path) -> dict:
    return {"programId": "reviews", "marketplace": "US", "dateRange": {"start": "2025-03-01", "end": "2025-04-04"},
            "source": str(source)}


async def read_errors(env: WorkflowTestEnvironment, result, stage: str) -> list[dict]:
    manifest = json.loads(await env.objects.get(result.bucket, result.outputs[stage]))
    return [json.loads(line) for part in manifest["parts"]["errors"]
            for line in (await env.objects.get(result.bucket, part["key"])).splitlines()]


def _runners(workflow: str, env: WorkflowTestEnvironment) -> dict:
    # The batch workflow's HeavyETL (Spark) stands in as a copy of Filter's parts: these tests are about the Lambda stages.
    return {"glue:startJobRun": copy_stage_runner(env.objects)} if workflow == "batch" else {}


@pytest.mark.parametrize("workflow", ["realtime", "batch"])
async def test_hostile_records_are_rejected_with_line_and_reason_and_the_run_succeeds(tmp_path, workflow):
    lines = [
        json.dumps(event(1)),
        json.dumps(event(2, deliveryDate="9999-12-31T00:00:00Z", orderDate="2025-03-20T00:00:00Z")),  # overflows the window
        "[" * 20_000 + "]" * 20_000,                                                                    # nested 20,000 deep
        json.dumps(event(4, customerId="C4", eventId="e4a", orderValue=1.5e308)),
        json.dumps(event(5, customerId="C4", eventId="e4b", orderId="O5", orderValue=1.5e308)),          # sums to Infinity
        '{"eventId": "e6", "orderValue": NaN}',
        json.dumps(event(7)),
    ]
    source = tmp_path / "orders.jsonl"
    source.write_text("\n".join(lines) + "\n")
    env = WorkflowTestEnvironment()
    result = await env.run(workflow, payload(source), runners=_runners(workflow, env))
    assert result.status == "SUCCEEDED", result.execution.cause
    errors = {e["line"]: e for e in await read_errors(env, result, "ETL")}
    assert {line: e["reasonCode"] for line, e in errors.items()} == {2: "OVERFLOW", 3: "TOO_DEEP", 4: "NON_FINITE", 6: "NON_FINITE"}
    assert errors[4]["lines"] == [4, 5] and errors[4]["key"] == "C4/B01"
    assert "64 levels" in errors[3]["reason"]
    etl = result.reconciliation["ETL"]
    assert (etl["in"], etl["out"], etl["errors"]) == (7, 2, 5) and etl["balanced"]
    assert result.counts["Reactive"]["inputCount"] == result.counts["Store"]["storedCount"]
    # Nothing non-finite was written anywhere: every object is strict JSON (or JSON Lines).
    for key in await env.objects.list(result.bucket):
        for line in (await env.objects.get(result.bucket, key)).splitlines():
            decode_line(line)


@pytest.mark.parametrize("workflow", ["realtime", "batch"])
async def test_a_score_that_drops_records_fails_the_reconciliation(example_payload, workflow):
    env = WorkflowTestEnvironment()
    dropping = make_stage_handler("tests.pipeline.test_volume:dropping_score", objects=env.objects,
                                  candidates=env.candidates, clock=env.clock)
    result = await env.run(workflow, example_payload, handlers={"Score": dropping}, runners=_runners(workflow, env))
    assert result.status == "FAILED"
    assert result.execution.error == "Ceap.PermanentError"
    assert "reconciliation failed: Score took in 581 records but accounted for 291" in result.execution.cause
    assert result.failure["stage"] == "Score"
    assert result.reconciliation["Score"]["balanced"] is False
    assert "Store" not in result.outputs  # nothing downstream ran on the short batch


async def test_parts_partition_by_candidate_so_merges_meet_and_no_record_is_lost_or_doubled(tmp_path):
    source = tmp_path / "orders.jsonl"
    # 3,000 events of 1,000 candidates (3 events each, spread over the file), forced into 8 partitions and
    # read in byte ranges of 256 KiB (a candidate's events lie in different ranges).
    source.write_text("".join(
        json.dumps(event(i, customerId=f"C{i % 1000}", orderId=f"O{i}", eventId=f"e{i}")) + "\n" for i in range(3000)
    ))
    env = WorkflowTestEnvironment()
    spec = _with_etl_config("realtime", {"partitions": 8, "partRecords": 150, "rangeBytes": 256 * 1024})
    result = await env.run(spec, payload(source))
    assert result.status == "SUCCEEDED", result.execution.cause
    manifest = json.loads(await env.objects.get(result.bucket, result.outputs["ETL"]))
    plan = json.loads(await env.objects.get(result.bucket, f"executions/{result.execution_id}/ETL/plan.json"))
    assert len(plan["ranges"]) == -(-source.stat().st_size // (256 * 1024)) >= 4
    # One merge call per partition here (8 <= 40), each writing its own parts of at most 150 candidates.
    assert manifest["partitions"] == 8 and len(manifest["parts"]["candidates"]) == 8
    assert all(0 < p["records"] <= 150 for p in manifest["parts"]["candidates"])
    assert result.counts["Filter"]["inputCount"] == 1000  # the Map ran over every part
    keys = []
    for part in manifest["parts"]["candidates"]:
        for line in (await env.objects.get(result.bucket, part["key"])).splitlines():
            candidate = json.loads(line)
            keys.append(candidate["customerId"])
            assert candidate["attributes"]["orderCount"] == 3  # every event of a candidate met in its part
    assert sorted(keys) == sorted(f"C{i}" for i in range(1000))
    assert all(link.get("chained", True) and link["balanced"] for link in result.reconciliation.values())
    assert not [k for k in await env.objects.list(result.bucket) if "/spill/" in k]  # scratch removed


def _with_etl_config(workflow: str, config: dict):
    from ceap_engine.pipeline import builtin

    spec = builtin(workflow)
    stages = tuple(s.model_copy(update={"config": {**s.config, **config}}) if s.name == "ETL" else s for s in spec.stages)
    return spec.model_copy(update={"stages": stages})

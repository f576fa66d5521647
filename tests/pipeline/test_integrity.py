"""Nothing lost, nothing twice: whole workflows under injected faults (issue 12).

Faults come from ceap_engine.testing.faults (wrapped ports and handlers, no
patching): a process killed after each stage, a consumed event racing Store,
concurrent runs over the same candidates, throttled writes, a reused name.
Every scenario runs on the realtime and on the batch workflow (HeavyETL as a
copy stand-in, the Glue job itself has its own tests).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from ceap_engine.errors import ExecutionAlreadyExists
from ceap_engine.pipeline import builtin
from ceap_engine.pipeline.layout import execution_key, execution_record_key
from ceap_engine.pipeline.stage import StageContext
from ceap_engine.runtime.clock import VirtualClock
from ceap_engine.storage.memory import MemoryCandidateStore, MemoryObjectStore
from ceap_engine.storage.objects import read_json
from ceap_engine.testing import WorkflowTestEnvironment
from ceap_engine.testing.faults import FaultyCandidateStore, copy_stage_runner, run_until_killed
from stages.domain import Candidate, same_content
from stages.reactive import CustomerEvent, handle_event

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
T0 = 1_743_800_000.0  # 2025-04-04, the end of the example date range
WORKFLOWS = ["realtime", "batch"]


@pytest.fixture(scope="module")
def small_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 120 US orders of the example data: enough candidates, quick runs."""
    lines = [line for line in (EXAMPLES / "data" / "orders.jsonl").read_text().splitlines() if '"US"' in line][:120]
    path = tmp_path_factory.mktemp("orders") / "orders.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def payload_for(source: Path) -> dict[str, Any]:
    payload = json.loads((EXAMPLES / "payload.json").read_text())
    return dict(payload, source=str(source))


def new_env(objects: Any = None, candidates: Any = None, start: float = T0) -> WorkflowTestEnvironment:
    return WorkflowTestEnvironment(objects=objects or MemoryObjectStore(), candidates=candidates or MemoryCandidateStore(),
                                   clock=VirtualClock(start))


def runners_for(workflow: str, env: WorkflowTestEnvironment) -> dict[str, Any]:
    return {"glue:startJobRun": copy_stage_runner(env.objects)} if workflow == "batch" else {}


async def rows(store: Any, program: str = "review-solicitation") -> dict[tuple[str, str], tuple[Any, ...]]:
    """Every stored candidate: version, score, channels, and what it says (timestamps aside)."""
    out = {}
    for record in await store.query(program):
        candidate = Candidate.model_validate(record.data)
        out[record.key] = (record.version, record.score, record.channels, candidate)
    return out


def same_rows(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[k][:3] == b[k][:3] and same_content(a[k][3], b[k][3]) for k in a
    )


async def actions(env: WorkflowTestEnvironment, workflow: str, name: str) -> list[dict[str, Any]]:
    bucket = builtin(workflow).workflow_bucket
    manifest = json.loads(await env.objects.get(bucket, execution_key(name, "Reactive")))
    lines = [line for part in manifest["parts"]["actions"]
             for line in (await env.objects.get(bucket, part["key"])).decode().splitlines()]
    return sorted(({k: v for k, v in json.loads(line).items() if k != "createdAt"} for line in lines),
                  key=lambda action: action["actionId"])


# -- kill -9 at each stage, then run the name again ------------------------------


@pytest.mark.parametrize("workflow", WORKFLOWS)
async def test_a_run_killed_after_any_stage_resumes_to_the_same_rows_and_actions(workflow, small_source):
    payload = payload_for(small_source)
    reference = new_env()
    clean = await reference.run(workflow, payload, name="daily", runners=runners_for(workflow, reference))
    assert clean.status == "SUCCEEDED", clean.execution.cause
    expected_rows, expected_actions = await rows(reference.candidates), await actions(reference, workflow, "daily")
    assert expected_actions  # the scenario must have effects to duplicate

    for stage in [s.name for s in builtin(workflow).stages]:
        objects, candidates = MemoryObjectStore(), MemoryCandidateStore()
        dying = new_env(objects, candidates)
        await run_until_killed(dying, workflow, payload, name="daily", stage=stage, runners=runners_for(workflow, dying))
        record = await read_json(objects, builtin(workflow).workflow_bucket, execution_record_key("daily"))
        assert record["status"] == "RUNNING"

        later = new_env(objects, candidates, start=T0 + 3600)  # a new process, an hour later
        resumed = await later.run(workflow, payload, name="daily", runners=runners_for(workflow, later))

        assert resumed.status == "SUCCEEDED", (stage, resumed.execution.cause)
        assert resumed.name_claim is not None and resumed.name_claim.resumed, stage
        assert same_rows(await rows(candidates), expected_rows), stage
        assert await actions(later, workflow, "daily") == expected_actions, stage


@pytest.mark.parametrize("workflow", WORKFLOWS)
async def test_the_same_input_again_under_a_new_name_stores_nothing_new_and_acts_on_nothing_twice(workflow, small_source):
    env = new_env()
    payload = payload_for(small_source)
    first = await env.run(workflow, payload, name="monday", runners=runners_for(workflow, env))
    before = await rows(env.candidates)
    second = await env.run(workflow, payload, name="tuesday", runners=runners_for(workflow, env))

    assert first.status == second.status == "SUCCEEDED"
    assert same_rows(await rows(env.candidates), before)
    assert {v[0] for v in before.values()} == {1}
    assert first.counts["Reactive"]["actionCount"] > 0
    assert second.counts["Reactive"]["actionCount"] == 0
    reactive_out = await read_json(env.objects, builtin(workflow).workflow_bucket, execution_key("tuesday", "Reactive"))
    assert reactive_out["skipped"]["ALREADY_ACTIONED"] == first.counts["Reactive"]["actionCount"]


# -- the consumed-during-Store race ------------------------------------------------


@pytest.mark.parametrize("workflow", WORKFLOWS)
async def test_a_candidate_consumed_while_store_writes_stays_consumed_and_gets_no_action(workflow, small_source):
    objects, inner = MemoryObjectStore(), MemoryCandidateStore()
    raced: list[tuple[str, str]] = []

    async def consumed_event_arrives(records):
        if raced:
            return
        target = Candidate.model_validate(records[0].data)
        raced.append(target.key)
        context = StageContext(execution_id="event-1", stage="ReactiveEvent", bucket=builtin(workflow).workflow_bucket,
                               objects=objects, candidates=inner, clock=VirtualClock(T0))
        result = await handle_event(CustomerEvent(
            event_id="ev-consumed", event_type="ENGAGEMENT_CONSUMED", customer_id=target.customer_id,
            program_id=target.program_id, marketplace=target.marketplace, subject=target.subject, channel="email",
        ), context)
        assert result.status == "CREATED"

    env = new_env(objects, FaultyCandidateStore(inner, before_write=consumed_event_arrives))
    result = await env.run(workflow, payload_for(small_source), name="daily", runners=runners_for(workflow, env))

    assert result.status == "SUCCEEDED", result.execution.cause
    [key] = raced
    stored = await inner.get(*key)
    assert stored.data["attributes"]["consumed"] is True
    assert stored.version == 2  # the event's write, then Store's merge on top of it
    acted_on = {(a["customerId"], a["subject"]["id"]) for a in await actions(env, workflow, "daily")}
    assert (stored.customer_id, stored.subject_id) not in acted_on
    reactive_out = await read_json(objects, builtin(workflow).workflow_bucket, execution_key("daily", "Reactive"))
    assert reactive_out["skipped"].get("ALREADY_CONSUMED", 0) >= 1


# -- N concurrent runs of N payloads over the same candidates ------------------------


@pytest.mark.parametrize("workflow", WORKFLOWS)
async def test_concurrent_runs_over_the_same_candidates_lose_no_update(workflow, small_source, tmp_path):
    n = 4
    sources = []
    for i in range(n):
        # The same orders with other values: the same candidates, saying something else in each run.
        lines = [json.loads(line) for line in small_source.read_text().splitlines()]
        for line in lines:
            line["orderValue"] = round(line["orderValue"] * (1 + i / 10) + i, 2)
        path = tmp_path / f"orders-{i}.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        sources.append(path)
    inner = MemoryCandidateStore()
    arrived, everyone = 0, asyncio.Event()

    async def barrier(records):
        # Every run reads before any run writes: the worst interleaving, every time.
        nonlocal arrived
        if everyone.is_set():
            return
        arrived += 1
        if arrived == n:
            everyone.set()
        await everyone.wait()

    store = FaultyCandidateStore(inner, before_write=barrier)
    env = new_env(candidates=store)
    results = await asyncio.gather(*(
        env.run(workflow, payload_for(source), name=f"run-{i}", runners=runners_for(workflow, env))
        for i, source in enumerate(sources)
    ))

    assert [r.status for r in results] == ["SUCCEEDED"] * n, [r.execution.cause for r in results]
    bucket = builtin(workflow).workflow_bucket
    writers: dict[tuple[str, str], int] = {}
    for i in range(n):
        manifest = await read_json(env.objects, bucket, execution_key(f"run-{i}", "Store"))
        for part in manifest["parts"]["candidates"]:
            for line in (await env.objects.get(bucket, part["key"])).splitlines():
                key = Candidate.model_validate(json.loads(line)).key
                writers[key] = writers.get(key, 0) + 1
    stored = await rows(inner)
    # Every run's write of a candidate counted: version = how many runs stored it (the
    # ones whose Filter passed it), never less - no update was lost to a race.
    assert {key: v[0] for key, v in stored.items()} == writers
    assert sum(1 for count in writers.values() if count == n) > len(writers) // 2


# -- throttled writes ---------------------------------------------------------------


def counting_store(env: WorkflowTestEnvironment, workflow: str) -> tuple[dict[str, Any], list[int]]:
    """Store's real handler, counting its attempts on parts (Store runs per part, in Map iterations
    that are child executions on Standard, so the top-level history does not show them all)."""
    real = env.stage_handler(workflow, "Store")
    attempts: list[int] = []

    async def counted(event: Any, context: Any) -> Any:
        if not (isinstance(event, dict) and event.get("assemble")):  # not the manifest assembly
            attempts.append(1)
        return await real(event, context)

    return {"Store": counted}, attempts


@pytest.mark.parametrize("workflow", WORKFLOWS)
async def test_half_the_writes_throttled_once_are_retried_to_completion(workflow, small_source):
    inner = MemoryCandidateStore()
    store = FaultyCandidateStore(inner, throttle_share=0.5, throttle_times=1)
    env = new_env(candidates=store)

    handlers, attempts = counting_store(env, workflow)
    result = await env.run(workflow, payload_for(small_source), name="daily", runners=runners_for(workflow, env),
                           handlers=handlers)

    assert result.status == "SUCCEEDED", result.execution.cause
    assert store.throttled > 0
    assert result.counts["Store"]["failedCount"] == 0
    assert len(await inner.query("review-solicitation")) == result.counts["Store"]["storedCount"]
    assert {v[0] for v in (await rows(inner)).values()} == {1}  # the retry rewrote nothing already stored
    assert len(attempts) == 2  # the first attempt failed, its Retry finished the job (one part)


@pytest.mark.parametrize("workflow", WORKFLOWS)
async def test_writes_throttled_for_good_fail_the_run_with_the_count(workflow, small_source):
    store = FaultyCandidateStore(MemoryCandidateStore(), throttle_share=0.5, throttle_times=None)
    env = new_env(candidates=store)
    handlers, attempts = counting_store(env, workflow)

    result = await env.run(workflow, payload_for(small_source), name="daily", runners=runners_for(workflow, env),
                           handlers=handlers)

    # Every attempt of Store fails: the first and each retry of its workflow's policy (realtime, Express: one
    # retry; batch: two).
    attempts_expected = 1 + next(s for s in builtin(workflow).stages if s.name == "Store").retry_policy.max_attempts
    assert result.status == "FAILED"
    assert len(attempts) == attempts_expected == {"realtime": 2, "batch": 3}[workflow]
    assert result.failure["stage"] == "Store"
    if workflow == "batch":
        # A Distributed Map reports its failed iteration as AWS does; the count is in the child's error.
        assert "States.ExceedToleratedFailureThreshold" in result.execution.cause
        return
    assert "candidate writes failed for a passing reason" in result.execution.cause
    throttled_keys = store.throttled // attempts_expected  # each attempt of Store throttled the same keys
    assert f"{throttled_keys} of " in result.execution.cause


# -- execution names ------------------------------------------------------------------


@pytest.mark.parametrize("workflow", WORKFLOWS)
async def test_a_name_used_with_another_input_is_refused_and_nothing_is_written(workflow, small_source, tmp_path):
    env = new_env()
    uk = payload_for(small_source)
    other = dict(uk, dateRange={"start": "2025-03-10", "end": "2025-04-04"})
    await env.run(workflow, uk, name="daily", runners=runners_for(workflow, env))
    bucket = builtin(workflow).workflow_bucket
    before = {key: await env.objects.get(bucket, key) for key in await env.objects.list(bucket)}

    with pytest.raises(ExecutionAlreadyExists) as refused:
        await env.run(workflow, other, name="daily", runners=runners_for(workflow, env))

    assert "daily" in str(refused.value) and "SUCCEEDED" in str(refused.value) and "--replace" in str(refused.value)
    assert refused.value.earlier["status"] == "SUCCEEDED"
    assert {key: await env.objects.get(bucket, key) for key in await env.objects.list(bucket)} == before

    again = await env.run(workflow, uk, name="daily", runners=runners_for(workflow, env))
    assert again.status == "SUCCEEDED" and again.name_claim.rerun

    replaced = await env.run(workflow, other, name="daily", replace=True, runners=runners_for(workflow, env))
    assert replaced.status == "SUCCEEDED" and replaced.name_claim.replaced
    record = await read_json(env.objects, bucket, execution_record_key("daily"))
    assert record["status"] == "SUCCEEDED"

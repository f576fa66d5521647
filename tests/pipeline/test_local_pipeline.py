"""The realtime workflow end to end on the interpreter, with fault injection and virtual time."""

import json
import time

import pytest

from ceap_engine.pipeline.stage import PermanentError
from ceap_engine.testing import WorkflowTestEnvironment


def scheduled_times(result, state):
    """Virtual times at which a state's task was scheduled (one per attempt)."""
    events = result.execution.history.events
    times, current = [], None
    for e in events:
        if e.type == "TaskStateEntered":
            current = e.details["name"]
        elif e.type == "TaskScheduled" and current == state:
            times.append(e.timestamp)
    return times


async def test_realtime_workflow_reconciles(ceap_workflow_env: WorkflowTestEnvironment, example_payload):
    result = await ceap_workflow_env.run("realtime", example_payload)
    assert result.status == "SUCCEEDED", result.execution.cause
    assert list(result.outputs) == ["ETL", "Filter", "Score", "Store", "Reactive"]
    c = result.counts
    assert c["ETL"]["processedCount"] == c["ETL"]["transformedCount"] + c["ETL"]["errorCount"] > 1000
    assert c["Filter"]["inputCount"] == c["Filter"]["passedCount"] + c["Filter"]["rejectedCount"]
    assert c["Store"]["storedCount"] + c["Store"]["failedCount"] == c["Score"]["scoredCount"] == c["Filter"]["passedCount"]
    assert c["Reactive"]["actionCount"] == sum(c["Reactive"]["actionsByChannel"].values()) > 0
    for stage, key in result.outputs.items():
        doc = json.loads(await ceap_workflow_env.objects.get(result.bucket, key))
        assert doc["metrics"] == c[stage]
    manifest = json.loads(await ceap_workflow_env.objects.get(result.bucket, result.outputs["Reactive"]))
    lines = [line for part in manifest["parts"]["actions"]
             for line in (await ceap_workflow_env.objects.get(result.bucket, part["key"])).splitlines()]
    assert len(lines) == c["Reactive"]["actionCount"] == manifest["counts"]["actions"]
    assert all(link["balanced"] and link.get("chained", True) for link in result.reconciliation.values())
    stored = await ceap_workflow_env.candidates.query("review-solicitation")
    assert len(stored) == c["Store"]["storedCount"]
    # The execution output is small: pointers and counts, never the data.
    assert set(result.execution.output) == {"workflow", "executionId", "input", "stages"}


async def test_rerunning_the_same_execution_does_not_duplicate_candidates(ceap_workflow_env, example_payload):
    first = await ceap_workflow_env.run("realtime", example_payload, name="same-run")
    second = await ceap_workflow_env.run("realtime", example_payload, name="same-run")
    assert first.counts == second.counts
    assert len(await ceap_workflow_env.candidates.query("review-solicitation")) == first.counts["Store"]["storedCount"]


async def test_stage_failing_once_is_retried_after_2_seconds_in_the_express_workflow(ceap_workflow_env, example_payload):
    real = ceap_workflow_env.stage_handler("realtime", "Score")
    calls = []

    async def flaky(event, context):
        calls.append(event["currentStage"])
        if len(calls) <= 1:
            raise ConnectionError("model endpoint unavailable")
        return await real(event, context)

    result = await ceap_workflow_env.run("realtime", example_payload, handlers={"Score": flaky})
    assert result.status == "SUCCEEDED"
    t = scheduled_times(result, "Score.Part")
    assert [b - a for a, b in zip(t, t[1:])] == [2.0]  # Express's budget: one quick retry (docs/cli.md)
    failed = [e for e in result.execution.history.events if e.type == "TaskFailed"]
    assert [e.details["error"] for e in failed] == ["ConnectionError"]


async def test_a_standard_workflow_stage_is_retried_after_20_then_40_seconds(ceap_workflow_env, example_payload):
    from ceap_engine.pipeline import REALTIME

    standard = REALTIME.model_copy(update={"name": "standard-rt", "type": "standard", "stages": tuple(
        s.model_copy(update={"retry": None, "state_timeout_seconds": None, "manifest_timeout_seconds": None})
        for s in REALTIME.stages)})
    real = ceap_workflow_env.stage_handler("realtime", "Score")
    calls = []

    async def flaky(event, context):
        if not event.get("assemble"):  # a part call, not the Manifest step
            calls.append(ceap_workflow_env.clock.time())
            if len(calls) <= 2:
                raise ConnectionError("model endpoint unavailable")
        return await real(event, context)

    began = time.perf_counter()
    result = await ceap_workflow_env.run(standard, example_payload, handlers={"Score": flaky})
    assert time.perf_counter() - began < 30  # 60 s of retry waits, on the virtual clock
    assert result.status == "SUCCEEDED"
    # The part's calls (in a Distributed Map's child execution on Standard): retried after 20 s, then 40 s.
    assert [b - a for a, b in zip(calls, calls[1:])] == [20.0, 40.0]


async def test_stage_that_always_fails_ends_failed_with_its_error_and_leaves_failure_json(ceap_workflow_env, example_payload):
    async def broken(event, context):
        raise TimeoutError("the candidate store did not answer")

    result = await ceap_workflow_env.run("realtime", example_payload, handlers={"Store": broken})
    assert result.status == "FAILED"
    assert result.execution.error == "TimeoutError"
    assert json.loads(result.execution.cause)["errorMessage"] == "the candidate store did not answer"
    assert len(scheduled_times(result, "Store.Part")) == 2  # first attempt and Express's one retry
    assert result.failure == {"Error": "TimeoutError", "Cause": result.execution.cause, "stage": "Store"}
    assert list(result.outputs) == ["ETL", "Filter", "Score"]  # what did run is still pointed to
    assert result.execution.history.types()[-13:] == [
        "MapStateFailed", "MapStateExited",                     # Store's Map gives up, caught
        "PassStateEntered", "PassStateExited",                  # Store.Failed names the stage
        "TaskStateEntered", "TaskScheduled", "TaskStarted",     # RecordFailure writes failure.json
        "TaskSucceeded", "TaskStateExited",
        "ChoiceStateEntered", "ChoiceStateExited",              # Failed: is the error a States.* name?
        "FailStateEntered", "ExecutionFailed",
    ]


async def test_permanent_error_is_not_retried(ceap_workflow_env, example_payload):
    async def rejects(event, context):
        raise PermanentError("model coefficients are missing for program review-solicitation")

    result = await ceap_workflow_env.run("realtime", example_payload, handlers={"Score": rejects})
    assert result.status == "FAILED"
    assert result.execution.error == "Ceap.PermanentError"
    assert len(scheduled_times(result, "Score.Part")) == 1
    assert result.failure["stage"] == "Score"


async def test_bad_source_data_fails_etl_permanently(ceap_workflow_env, example_payload, tmp_path):
    missing = dict(example_payload, source=str(tmp_path / "gone.jsonl"))
    result = await ceap_workflow_env.run("realtime", missing)
    assert result.status == "FAILED" and result.execution.error == "Ceap.PermanentError"
    assert len(scheduled_times(result, "ETL.Plan")) == 1  # the plan finds no source: not retried
    assert "gone.jsonl" in result.execution.cause


async def test_payload_wrapped_in_a_one_element_array_is_unwrapped(ceap_workflow_env, example_payload):
    """An EventBridge Pipe delivers its batch as a JSON array even with batch size 1."""
    result = await ceap_workflow_env.run("realtime", [example_payload])
    assert result.status == "SUCCEEDED", result.execution.cause
    assert result.counts["ETL"]["processedCount"] > 1000


async def test_stage_timing_out_ends_as_ceap_stage_failed_with_the_timeout_in_the_cause(ceap_workflow_env, example_payload):
    async def hangs(event, context):
        await ceap_workflow_env.clock.sleep(3600)  # longer than the Filter part's 10 s

    result = await ceap_workflow_env.run("realtime", example_payload, handlers={"Filter": hangs})
    assert result.status == "FAILED"
    assert result.execution.error == "Ceap.StageFailed"
    assert result.execution.cause.startswith("States.Timeout in stage Filter")
    assert result.failure == {"Error": "States.Timeout", "Cause": "", "stage": "Filter"}
    # Express's budget: two attempts of 10 s (the part state's timeout, below the Lambda's 60 s), a wait of 2 s
    assert result.execution.stop_time - result.execution.start_time == 2 * 10 + 2


async def test_a_failing_glue_job_is_retried_after_300_then_600_seconds_then_recorded(ceap_workflow_env, example_payload):
    from ceap_engine.runtime.tasks import TaskFailed

    runs = []

    async def failing_glue(resource, parameters, context):
        runs.append(context.clock.time())
        raise TaskFailed("States.TaskFailed", json.dumps({"JobName": parameters["JobName"], "JobRunState": "FAILED",
                                                          "ErrorMessage": "AnalysisException: Path does not exist"}))

    result = await ceap_workflow_env.run("batch", example_payload, runners={"glue:startJobRun": failing_glue})
    assert result.status == "FAILED"
    assert [b - a for a, b in zip(runs, runs[1:])] == [300.0, 600.0]
    assert result.failure["stage"] == "HeavyETL" and result.failure["Error"] == "States.TaskFailed"
    assert result.execution.error == "Ceap.StageFailed"  # a States.* error cannot be raised by a Fail state
    assert "AnalysisException" in result.execution.cause
    assert list(result.outputs) == ["ETL", "Filter"]


@pytest.mark.parametrize("clock", ["virtual", "real"])
async def test_a_part_waiting_for_a_free_core_is_not_timed_out_by_the_wait(example_payload, clock):
    """Locally the parts of a Map share the machine's cores; on AWS each gets its own Lambda at once.

    Eight parts of 0.6 s each on one slot (``workers=1``) under a 1 s part timeout: the last one
    starts 4.2 s after the Map did, four timeouts later. Its TimeoutSeconds must count from its start, as a Lambda's
    would, not from the moment it was queued - under the real clock too (``ceap run --clock real``).
    """
    from ceap_engine.pipeline import REALTIME
    from ceap_engine.pipeline.local import LocalPipeline
    from ceap_engine.runtime.clock import RealClock, VirtualClock
    from ceap_engine.storage.memory import MemoryCandidateStore, MemoryObjectStore

    stages = []
    for stage in REALTIME.stages:
        if stage.name == "ETL":
            stage = stage.model_copy(update={"config": {"partRecords": 130}})
        elif stage.name == "Filter":
            stage = stage.model_copy(update={"function": "tests.pipeline.slow_filter:run", "state_timeout_seconds": 1})
        stages.append(stage)
    spec = REALTIME.model_copy(update={"name": "slots", "stages": tuple(stages)})
    pipeline = LocalPipeline(spec, objects=MemoryObjectStore(), candidates=MemoryCandidateStore(), workers=1,
                             clock=RealClock() if clock == "real" else VirtualClock())
    began = time.perf_counter()
    with pipeline:
        result = await pipeline.run(example_payload)
    assert result.status == "SUCCEEDED", result.execution.cause
    parts = -(-result.counts["Filter"]["inputCount"] // 130)
    assert parts == 8  # the example's 1,031 candidates in parts of 130
    assert time.perf_counter() - began >= parts * 0.6  # they did run one after another
    assert result.counts["Store"]["storedCount"] == 581  # the example's counts, whatever the parts

"""The stage runtime: read previous output, validate, call, write, point."""

import pytest

from ceap_engine.pipeline.stage import PermanentError
from ceap_engine.pipeline.stage_runtime import StageLoadError, invoke_stage, load_stage_function
from ceap_engine.storage.memory import MemoryObjectStore
from ceap_engine.storage.objects import write_json
from ceap_engine.testing import StageTestEnvironment

BUCKET = "bucket-1"


def request(stage="Filter", previous="ETL", **extra):
    return {"executionId": "e-1", "currentStage": stage, "previousStage": previous, "workflowBucket": BUCKET, **extra}


async def test_missing_previous_output_is_a_permanent_error_naming_the_key():
    with pytest.raises(PermanentError, match=r"output of the previous stage ETL is missing at s3://bucket-1/executions/e-1/ETL/output.json"):
        await invoke_stage(request(), None, function="stages.filter:run", objects=MemoryObjectStore())


async def test_invalid_previous_output_is_a_permanent_error_naming_the_field():
    store = MemoryObjectStore()
    await write_json(store, BUCKET, "executions/e-1/ETL/output.json", {"candidates": "not a list"})
    with pytest.raises(PermanentError, match="candidates"):
        await invoke_stage(request(), None, function="stages.filter:run", objects=store)
    assert type(PermanentError("x")).__name__ == "Ceap.PermanentError"  # the name Retry/Catch match


async def test_previous_output_that_is_not_json():
    store = MemoryObjectStore()
    await store.put(BUCKET, "executions/e-1/ETL/output.json", b"{oops")
    with pytest.raises(PermanentError, match="is not JSON"):
        await invoke_stage(request(), None, function="stages.filter:run", objects=store)


async def test_bad_request_is_permanent():
    with pytest.raises(PermanentError, match="executionId"):
        await invoke_stage({"currentStage": "Filter"}, None, function="stages.filter:run", objects=MemoryObjectStore())


async def test_writes_output_and_returns_pointer_with_counts(ceap_stage_env: StageTestEnvironment):
    pointer = await ceap_stage_env.invoke("stages.filter:run", stage="Filter", previous="ETL",
                                          previous_output={"candidates": []})
    assert pointer == {
        "stage": "Filter",
        "outputKey": "executions/test-execution/Filter/output.json",
        "counts": {"inputCount": 0, "passedCount": 0, "rejectedCount": 0, "errorCount": 0, "rejectionReasons": {}},
        "partList": "executions/test-execution/Filter/parts.jsonl",
        "partCount": 0,
        "parts": [],
    }
    written = await ceap_stage_env.output_of("Filter")
    assert written["metrics"] == pointer["counts"]
    assert (written["kind"], written["schemaVersion"], written["counts"]) == (
        "ceap.stage-output", 1, {"candidates": 0, "rejected": 0, "errors": 0})


async def test_first_stage_validates_the_execution_input(ceap_stage_env: StageTestEnvironment):
    with pytest.raises(PermanentError, match="dateRange"):
        await ceap_stage_env.invoke("stages.etl:run", stage="ETL", execution_input={"programId": "p", "marketplace": "US", "source": "x"})


def test_load_stage_function_explains_bad_paths():
    with pytest.raises(StageLoadError, match="package.module:function"):
        load_stage_function("nocolon")
    with pytest.raises(StageLoadError, match="cannot import"):
        load_stage_function("no_such_module_xyz:run")
    with pytest.raises(StageLoadError, match="has no function"):
        load_stage_function("stages.filter:nope")
    fn = load_stage_function("stages.filter:run")
    assert fn.input_model.__name__ == "FilterInput" and not fn.is_async


async def test_direct_stage_call_uses_the_workflow_stage_name(ceap_stage_env: StageTestEnvironment, example_payload):
    from ceap_engine.testing import _stage_name

    assert _stage_name("stages.etl:run") == "ETL" and _stage_name("stages.filter:run") == "Filter"
    assert _stage_name("my.pkg.enrich:run") == "Enrich"
    out = await ceap_stage_env.run("stages.etl:run", example_payload)
    assert out.metrics.processed_count == out.metrics.transformed_count + out.metrics.error_count


async def test_a_slices_records_are_gone_before_the_collector_resumes(monkeypatch, example_payload):
    # Objects made while the collector was paused and still alive when it resumes are walked by
    # its next collection (a cost per record, ~6 us a candidate): the runtime drops a slice's
    # input and output - and neither the executor nor a future may keep them - before resuming it.
    import gc

    from ceap_engine.pipeline import record_codec

    objects = MemoryObjectStore()
    ETL = request("ETL", None, input=example_payload)
    await invoke_stage(ETL, None, function="stages.etl:run", objects=objects)
    await invoke_stage(request("Filter", "ETL"), None, function="stages.filter:run", objects=objects)
    young_at_resume: list[int] = []
    enable = gc.enable

    class _Recording:
        def __getattr__(self, name):
            return getattr(gc, name)

        def enable(self):
            young_at_resume.append(gc.get_count()[0])
            enable()

    monkeypatch.setattr(record_codec, "gc", _Recording())
    pointer = await invoke_stage(request("Score", "Filter"), None, function="stages.score:run", objects=objects)
    assert pointer["counts"]["inputCount"] > 500 and young_at_resume
    # Alive, a slice's candidates leave several tracked containers each (3,673 for the example's
    # 1,031 when the runtime still held them); gone, what is left is fewer than one a candidate.
    assert max(young_at_resume) < pointer["counts"]["inputCount"], (young_at_resume, pointer["counts"])

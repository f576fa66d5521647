"""The local Glue runner: GetJobRun-shaped results, AWS-like failures, the HeavyETL state end to end."""

from __future__ import annotations

import asyncio
import json
import random
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from adapters.local import FileObjectStore
from adapters.local.glue import (
    GlueUnavailable,
    LocalGlueRunner,
    find_java,
    glue_problems,
    glue_script_path,
    require_glue,
)
from ceap_engine.asl.definition import load_definition
from ceap_engine.asl.interpreter import Engine
from ceap_engine.ports import TaskContext
from ceap_engine.runtime.clock import VirtualClock
from ceap_engine.runtime.tasks import TaskFailed, TaskRunners, parse_resource
from ceap_engine.storage.memory import MemoryObjectStore
from tests.glue_jobs import orders, spark_session

BUCKET = "ceap-test"
JOB = "ceap-batch-heavy-etl"
SYNC = parse_resource("arn:aws:states:::glue:startJobRun.sync")
START = 1_743_465_600  # 2025-04-01T00:00:00Z, as epoch seconds

spark = spark_session.spark  # the test run's one SparkSession (a session-scoped fixture)


def _context(clock: VirtualClock, seed: int = 7) -> TaskContext:
    return TaskContext(
        resource=SYNC,
        state_name="HeavyETL",
        execution_arn="arn:aws:states:us-east-1:123456789012:execution:batch:exec-1",
        execution_name="exec-1",
        state_machine_arn="arn:aws:states:us-east-1:123456789012:stateMachine:batch",
        clock=clock,
        rng=random.Random(seed),
    )


def _script(folder: Path, body: str) -> Path:
    path = folder / "job.py"
    path.write_text(textwrap.dedent(body))
    return path


def _no_session() -> Any:
    pytest.fail("the runner started Spark for a run that should have been refused first")


async def _run(runner: LocalGlueRunner, parameters: Any, *, seed: int = 7) -> dict:
    clock = VirtualClock(START)
    with clock.activity():
        return await runner(SYNC, parameters, _context(clock, seed))


def _failed_job_run(failure: TaskFailed) -> dict:
    assert failure.error == "States.TaskFailed"
    job_run = json.loads(failure.cause)
    assert job_run["JobRunState"] == "FAILED"
    return job_run


# -- is Glue available? (no Spark) ------------------------------------------------------


def test_glue_problems_say_what_to_install():
    problems = glue_problems(pyspark_installed=lambda: False, java=lambda: None, java_runs=lambda java: None)

    assert len(problems) == 2
    assert "pyspark is not installed" in problems[0] and "pip install 'ceap[glue]'" in problems[0]
    assert "no Java runtime found" in problems[1] and "JAVA_HOME" in problems[1]


def test_a_java_that_does_not_run_is_a_problem():
    problems = glue_problems(
        pyspark_installed=lambda: True, java=lambda: "/opt/java/bin/java", java_runs=lambda java: "exec format error"
    )

    assert problems == ["Java at /opt/java/bin/java does not run ('java -version' failed: exec format error); fix or reinstall it"]


def test_no_problems_when_pyspark_and_java_are_there():
    assert glue_problems(pyspark_installed=lambda: True, java=lambda: "/usr/bin/java", java_runs=lambda java: None) == []


def test_require_glue_names_the_workflow_and_every_problem():
    with pytest.raises(GlueUnavailable) as raised:
        require_glue("batch", check=lambda: ["pyspark is not installed: ...", "no Java runtime found: ..."])

    message = str(raised.value)
    assert message.startswith("workflow 'batch' has a Glue stage, which cannot run on this machine:")
    assert "  - pyspark is not installed" in message and "  - no Java runtime found" in message


def test_require_glue_passes_when_nothing_is_missing():
    require_glue("batch", check=list)


def test_find_java_uses_java_home_before_path(tmp_path):
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    java.chmod(0o755)

    assert find_java({"JAVA_HOME": str(tmp_path / "jdk")}, which=lambda name: "/usr/bin/java") == str(java)
    assert find_java({"JAVA_HOME": str(tmp_path / "empty")}, which=lambda name: "/usr/bin/java") is None
    assert find_java({}, which=lambda name: f"/usr/bin/{name}") == "/usr/bin/java"


def test_the_shipped_job_script_is_found_by_its_relative_path(tmp_path):
    assert glue_script_path("glue_jobs/heavy_etl.py") == Path(__file__).parents[3] / "glue_jobs" / "heavy_etl.py"
    assert glue_script_path(tmp_path / "missing.py") is None


# -- refused before anything runs (no Spark) -----------------------------------------------


@pytest.mark.parametrize(
    ("parameters", "error", "message"),
    [
        ({"Arguments": {}}, "Glue.InvalidInputException", "non-empty string 'JobName'"),
        ({"JobName": JOB, "Arguments": ["--a", "b"]}, "Glue.InvalidInputException", "must be an object of string values"),
        ({"JobName": JOB, "Arguments": {"--count": 3}}, "Glue.InvalidInputException", "not a string: --count"),
        ({"JobName": "no-such-job"}, "Glue.EntityNotFoundException", "no Glue job named 'no-such-job'.*known jobs: ceap-batch-heavy-etl"),
    ],
    ids=["no-job-name", "arguments-not-an-object", "argument-not-a-string", "unknown-job"],
)
async def test_bad_parameters_fail_the_task_before_a_run(tmp_path, parameters, error, message):
    runner = LocalGlueRunner(MemoryObjectStore(), {JOB: _script(tmp_path, "def main(argv, *, spark, storage): pass")}, session=_no_session)

    with pytest.raises(TaskFailed) as raised:
        await _run(runner, parameters)

    assert raised.value.error == error
    assert re.search(message, raised.value.cause)
    assert runner.runs == []


async def test_only_the_sync_integration_runs_locally(tmp_path):
    runner = LocalGlueRunner(MemoryObjectStore(), {JOB: _script(tmp_path, "def main(argv, *, spark, storage): pass")}, session=_no_session)
    clock = VirtualClock(START)

    with pytest.raises(TaskFailed) as raised, clock.activity():
        await runner(parse_resource("arn:aws:states:::glue:startJobRun"), {"JobName": JOB}, _context(clock))

    assert raised.value.error == "States.Runtime"
    assert "startJobRun.sync" in raised.value.cause


async def test_without_pyspark_the_run_fails_saying_what_to_install(tmp_path):
    def missing_pyspark() -> Any:
        require_glue(check=lambda: ["pyspark is not installed: ... install it with pip install 'ceap[glue]'"])

    runner = LocalGlueRunner(MemoryObjectStore(), {JOB: _script(tmp_path, "def main(argv, *, spark, storage): pass")}, session=missing_pyspark)

    with pytest.raises(TaskFailed) as raised:
        await _run(runner, {"JobName": JOB})

    job_run = _failed_job_run(raised.value)
    assert job_run["ErrorMessage"].startswith("GlueUnavailable: a Glue job cannot run on this machine:")
    assert runner.runs == [job_run]


# -- runs on the shared local session --------------------------------------------------------


@pytest.mark.spark
@pytest.mark.parametrize("store_type", ["memory", "file"])
async def test_a_run_returns_a_get_job_run_result_and_sees_the_object_store(spark, tmp_path, store_type):
    objects = MemoryObjectStore() if store_type == "memory" else FileObjectStore(tmp_path / "store")
    await objects.put(BUCKET, "in/order.json", b'{"n": 3}')
    script = _script(
        tmp_path,
        """
        import json
        from pathlib import Path

        def main(argv, *, spark, storage):
            n = json.loads(storage.read("ceap-test", "in/order.json"))["n"]
            storage.write("ceap-test", "out/result.json", json.dumps({"rows": spark.range(n).count()}).encode(), "application/json")
            path = storage.spark_path("s3://ceap-test/in/order.json")
            return {"argv": argv, "path": path, "content": Path(path).read_text()}
        """,
    )
    runner = LocalGlueRunner(objects, {JOB: script}, session=lambda: spark)
    arguments = {"--execution-id": "exec-1", "--extra": "ignored by the job"}

    result = await _run(runner, {"JobName": JOB, "Arguments": arguments})

    assert set(result) >= {"Id", "JobName", "JobRunState", "StartedOn", "CompletedOn", "ExecutionTime", "Arguments", "Attempt"}
    assert re.fullmatch(r"jr_[0-9a-f]{64}", result["Id"])
    assert (result["JobName"], result["JobRunState"], result["Arguments"]) == (JOB, "SUCCEEDED", arguments)
    # Virtual time stood still while the job ran; ExecutionTime is real seconds.
    assert result["StartedOn"] == result["CompletedOn"] == START * 1000
    assert isinstance(result["ExecutionTime"], int) and result["ExecutionTime"] >= 0
    assert "ErrorMessage" not in result
    assert runner.runs == [result]
    seen = runner.summaries[result["Id"]]
    assert seen["argv"] == [str(script), "--JOB_NAME", JOB, "--JOB_RUN_ID", result["Id"], "--execution-id", "exec-1", "--extra", "ignored by the job"]
    assert json.loads(await objects.get(BUCKET, "out/result.json")) == {"rows": 3}
    assert seen["content"] == '{"n": 3}'
    if store_type == "file":
        assert seen["path"] == str(objects.path_of(BUCKET, "in/order.json"))  # Spark reads the object's own file


@pytest.mark.spark
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("def main(argv, *, spark, storage):\n    raise ValueError('boom')\n", "ValueError: boom"),
        ("def run():\n    pass\n", "AttributeError: Glue script .* defines no main"),
        ("def main(argv, *, spark, storage) pass\n", "SyntaxError: "),
    ],
    ids=["raises", "no-main", "syntax-error"],
)
async def test_a_failing_script_fails_the_task_as_glue_reports_a_failed_run(spark, tmp_path, body, message):
    runner = LocalGlueRunner(MemoryObjectStore(), {JOB: _script(tmp_path, body)}, session=lambda: spark)

    with pytest.raises(TaskFailed) as raised:
        await _run(runner, {"JobName": JOB, "Arguments": {"--execution-id": "exec-1"}})

    job_run = _failed_job_run(raised.value)
    assert re.match(message, job_run["ErrorMessage"])
    assert (job_run["JobName"], job_run["Arguments"]) == (JOB, {"--execution-id": "exec-1"})
    assert re.fullmatch(r"jr_[0-9a-f]{64}", job_run["Id"])
    assert runner.runs == [job_run] and runner.summaries == {}


@pytest.mark.spark
async def test_a_long_lived_runner_keeps_only_its_last_runs(spark, tmp_path):
    runner = LocalGlueRunner(
        MemoryObjectStore(), {JOB: _script(tmp_path, "def main(argv, *, spark, storage):\n    return argv[4]\n")},
        session=lambda: spark,
    )
    runner.kept_runs = 2

    ids = [(await _run(runner, {"JobName": JOB}, seed=seed))["Id"] for seed in range(3)]

    assert [run["Id"] for run in runner.runs] == ids[1:]
    assert runner.summaries == {run_id: run_id for run_id in ids[1:]}


class GatedObjectStore(MemoryObjectStore):
    """Holds a read of the key ``gate`` until the test opens it."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = asyncio.Event()
        self.opened = asyncio.Event()

    async def get(self, bucket: str, key: str) -> bytes:
        if key == "gate":
            self.arrived.set()
            await self.opened.wait()
            return b"open"
        return await super().get(bucket, key)


@pytest.mark.spark
async def test_virtual_time_does_not_run_ahead_while_the_job_works(spark, tmp_path):
    objects = GatedObjectStore()
    script = _script(tmp_path, "def main(argv, *, spark, storage):\n    return storage.read('ceap-test', 'gate')\n")
    runner = LocalGlueRunner(objects, {JOB: script}, session=lambda: spark)
    clock = VirtualClock(START)
    job_activity, nap_activity = clock.activity(), clock.activity()

    async def job() -> dict:
        with job_activity:
            return await runner(SYNC, {"JobName": JOB}, _context(clock))

    async def nap() -> float:
        with nap_activity:
            await clock.sleep(300)
            return clock.time()

    running, napping = asyncio.ensure_future(job()), asyncio.ensure_future(nap())
    await objects.arrived.wait()
    for _ in range(20):
        await asyncio.sleep(0)
    assert clock.time() == START and not napping.done()

    objects.opened.set()

    assert (await running)["CompletedOn"] == START * 1000
    assert await napping == START + 300


# -- the batch workflow's HeavyETL state, on the engine ------------------------------------------

HEAVY_ETL_STATE = {
    "Type": "Task",
    "Resource": "arn:aws:states:::glue:startJobRun.sync",
    "Parameters": {
        "JobName": JOB,
        "Arguments": {
            "--execution-id.$": "$$.Execution.Name",
            "--input-bucket": BUCKET,
            "--input-key.$": "States.Format('executions/{}/Filter/output.json', $$.Execution.Name)",
            "--output-bucket": BUCKET,
            "--output-key.$": "States.Format('executions/{}/HeavyETL/output.json', $$.Execution.Name)",
            "--source-uri.$": "$$.Execution.Input.source",
            "--date-start.$": "$$.Execution.Input.dateRange.start",
            "--date-end.$": "$$.Execution.Input.dateRange.end",
        },
    },
    "ResultSelector": {"outputKey.$": "$.Arguments['--output-key']", "jobRunId.$": "$.Id", "jobRunState.$": "$.JobRunState"},
    "ResultPath": "$.stages.HeavyETL",
    "TimeoutSeconds": 7200,
    "Retry": [
        {"ErrorEquals": ["Ceap.PermanentError"], "MaxAttempts": 0},
        {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 300, "MaxAttempts": 2, "BackoffRate": 2.0},
    ],
    "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "HeavyETL.Failed"}],
    "Next": "Score",
}

WORKFLOW = {
    "StartAt": "HeavyETL",
    "States": {
        "HeavyETL": HEAVY_ETL_STATE,
        "Score": {"Type": "Succeed"},
        "HeavyETL.Failed": {"Type": "Fail", "ErrorPath": "$.failure.Error", "CausePath": "$.failure.Cause"},
    },
}


async def _execute(objects: Any, spark: Any) -> tuple[Any, LocalGlueRunner]:
    runners = TaskRunners()
    runner = LocalGlueRunner(objects, {JOB: "glue_jobs/heavy_etl.py"}, session=lambda: spark)
    runners.register("glue:startJobRun", runner)
    engine = Engine(clock=VirtualClock(START), runners=runners, seed=3)
    payload = {
        "programId": orders.PROGRAM,
        "marketplace": orders.MARKETPLACE,
        "dateRange": {"start": orders.DATE_START, "end": orders.DATE_END},
        "source": f"s3://{BUCKET}/sources/orders.jsonl",
    }
    result = await engine.execute(load_definition(WORKFLOW), payload, name="exec-1")
    return result, runner


@pytest.mark.spark
async def test_the_heavy_etl_state_runs_the_job_and_keeps_a_small_result(spark, tmp_path):
    objects = FileObjectStore(tmp_path / "store")
    await objects.put(BUCKET, "sources/orders.jsonl", orders.jsonl_source())
    await objects.put(BUCKET, "executions/exec-1/Filter/output.json", json.dumps(orders.filter_output()).encode())

    result, runner = await _execute(objects, spark)

    assert result.status == "SUCCEEDED", result.cause
    (job_run,) = runner.runs
    assert result.output["stages"]["HeavyETL"] == {
        "outputKey": "executions/exec-1/HeavyETL/output.json",
        "jobRunId": job_run["Id"],
        "jobRunState": "SUCCEEDED",
    }
    output = json.loads(await objects.get(BUCKET, "executions/exec-1/HeavyETL/output.json"))
    assert output["metrics"]["enrichedCount"] == 3 and output["metrics"]["outputCount"] == 4
    assert runner.summaries[job_run["Id"]]["metrics"] == output["metrics"]


@pytest.mark.spark
async def test_a_failing_job_is_retried_after_300_then_600_seconds_then_caught(spark):
    result, runner = await _execute(MemoryObjectStore(), spark)  # no Filter output: every attempt fails

    assert result.status == "FAILED"
    assert result.error == "States.TaskFailed"
    cause = json.loads(result.cause)
    assert cause["JobRunState"] == "FAILED" and cause["JobName"] == JOB
    assert cause["ErrorMessage"].startswith(
        f"HeavyEtlInputError: input s3://{BUCKET}/executions/exec-1/Filter/output.json does not exist"
    )
    scheduled = [event.timestamp - START for event in result.history if event.type == "TaskScheduled"]
    assert scheduled == [0, 300, 900]
    assert [run["JobRunState"] for run in runner.runs] == ["FAILED"] * 3
    assert [run["StartedOn"] for run in runner.runs] == [(START + s) * 1000 for s in (0, 300, 900)]

"""The benchmark scenarios, each a function that runs in its own process and returns result rows.

What each measures (the numbers a row reports are described in
:mod:`benchmarks.measure`):

- ``bound``: the ceiling for any asyncio engine in this Python. One task per
  execution, each awaiting 5 no-op coroutines and appending 10 small history
  tuples, under the same driver and concurrency as ceap. ``bound-yield`` is the
  same with one event-loop turn per state (context only: ceap's no-op runners
  do not yield, so ``bound`` is the fair ceiling).
- ``ceap-realtime-c1`` / ``-c1000``: the realtime workflow's own ASL (its
  Input Choice, 5 ``lambda:invoke`` Tasks with the spec's Retry and Catch, and
  the Summary Pass) on the engine, with no-op task runners registered directly,
  a virtual clock, and the full history of every execution kept while it runs.
- ``moto-5pass`` / ``ceap-5pass``: moto's in-process ASL interpreter and ceap
  on the same 5-Pass-state machine, the same number of executions.
- ``scaling-*``: ceap-realtime at concurrency 1,000 for 1k/10k/100k
  executions; nothing of a finished execution is kept (unless
  ``keep_histories``), so peak memory must stay flat and time grow linearly.
- ``retry-heavy``: every stage fails once (``Lambda.ServiceException``) and
  succeeds on its retry, after the spec's retry interval (2 s, Express) in virtual time.
- ``e2e-*`` (ceap and the floor on the same generated file) and ``stage-speed``
  (each stage on one core): see :mod:`benchmarks.end_to_end`, which runs them.

A *state transition* is a state entered, plus each retry of a Task (AWS bills
both). Every scenario fails loudly if any execution does not succeed, so a
broken engine never reports a fast number.
"""

from __future__ import annotations

import asyncio
import json
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ceap_engine.asl.definition import StateMachine, load_definition
from ceap_engine.asl.history import ExecutionHistory
from ceap_engine.asl.interpreter import EXPRESS, STANDARD, Engine
from ceap_engine.errors import CeapError
from ceap_engine.pipeline import REALTIME, build_definition, substitute, substitution_keys
from ceap_engine.ports import Clock, TaskContext
from ceap_engine.runtime.clock import VirtualClock
from ceap_engine.runtime.tasks import TaskFailed, TaskRunners

from .measure import REQUIRED_KEYS, Run, current_rss_mib, drive, peak_rss_mib, result_row

__all__ = [
    "FIVE_PASS",
    "PAYLOAD",
    "BenchmarkFailed",
    "Scenario",
    "plan",
    "realtime_machine",
    "run_scenario",
    "state_transitions",
]

REPO_ROOT = Path(__file__).resolve().parent.parent

#: The realtime workflow's input, as the examples give it.
PAYLOAD = {
    "programId": "review-solicitation",
    "marketplace": "US",
    "dateRange": {"start": "2025-03-01", "end": "2025-04-04"},
    "source": "examples/data/orders.jsonl",
}

#: Five Pass states in a row: the definition moto and ceap both run.
FIVE_PASS = {
    "Comment": "Five Pass states: interpreter overhead only.",
    "StartAt": "P1",
    "States": {
        "P1": {"Type": "Pass", "Next": "P2"},
        "P2": {"Type": "Pass", "Next": "P3"},
        "P3": {"Type": "Pass", "Next": "P4"},
        "P4": {"Type": "Pass", "Next": "P5"},
        "P5": {"Type": "Pass", "End": True},
    },
}

STAGES = tuple(stage.name for stage in REALTIME.stages)
#: The Lambda calls of one realtime execution whose stages have no parts: the top-level lambda:invoke
#: Tasks of the built workflow (the first stage's Plan and Manifest, each later stage's Manifest; the
#: Maps' part, range and merge calls have no item to run).
STAGE_CALLS = tuple(name for name, state in build_definition(REALTIME)["States"].items()
                    if state["Type"] == "Task" and state.get("Resource", "").endswith(":lambda:invoke"))
WARMUP_EXECUTIONS = 200


class BenchmarkFailed(CeapError):
    """A scenario could not measure what it should (an execution failed, a tool is missing)."""


@dataclass(frozen=True)
class Scenario:
    """One row (or rows) of the results: what to run and how much of it."""

    name: str
    kind: str  # bound | bound-yield | ceap-realtime | five-pass-moto | five-pass-ceap | scaling | retry-heavy | e2e | stage-speed | glue-job
    executions: int = 1
    concurrency: int = 1
    records: int = 0


def _size(n: int) -> str:
    """``1k``, ``100k``, ``1m`` - or the number itself when it is not a round thousand or million."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def plan(mode: str, *, glue_job: bool | None = None) -> list[Scenario]:
    """The scenarios of a run: ``full`` (the published numbers), ``quick`` (smaller counts) or
    ``smoke`` (tiny counts, to check that the harness works).

    >>> [s.name for s in plan("full", glue_job=False)][:3]
    ['bound', 'bound-yield', 'ceap-realtime-c1']
    >>> [s.name for s in plan("full", glue_job=False) if s.kind in ("e2e", "stage-speed")]
    ['e2e-100k', 'e2e-1m', 'stage-speed']
    """
    sizes = {
        #        bound    rt-c1   rt-c1000  5-pass  scaling                retry   e2e records  stage-speed
        "full": (100_000, 20_000, 100_000, 1_000, (1_000, 10_000, 100_000), 10_000, (100_000, 1_000_000), 10_000),
        "quick": (10_000, 1_000, 10_000, 100, (1_000, 2_000, 5_000), 1_000, (10_000,), 5_000),
        "smoke": (50, 5, 50, 3, (20, 40), 10, (1_000,), 300),
    }
    if mode not in sizes:
        raise ValueError(f"unknown mode {mode!r}: use full, quick or smoke")
    bound, rt_c1, rt_c1000, five_pass, scaling, retry, e2e, speed = sizes[mode]
    high = 1000 if mode != "smoke" else 10
    scenarios = [
        Scenario("bound", "bound", bound, high),
        Scenario("bound-yield", "bound-yield", bound, high),
        Scenario("ceap-realtime-c1", "ceap-realtime", rt_c1, 1),
        Scenario(f"ceap-realtime-c{high}", "ceap-realtime", rt_c1000, high),
        Scenario("moto-5pass", "five-pass-moto", five_pass, five_pass),
        Scenario("ceap-5pass", "five-pass-ceap", five_pass, min(five_pass, high)),
        *(Scenario(f"scaling-{_size(n)}", "scaling", n, high) for n in scaling),
        Scenario("retry-heavy", "retry-heavy", retry, high),
        *(Scenario(f"e2e-{_size(n)}", "e2e", records=n) for n in e2e),
        Scenario("stage-speed", "stage-speed", records=speed),
    ]
    if glue_job is None:
        glue_job = (Path(__file__).parent / "glue_job.py").is_file()
    if glue_job:
        scenarios.append(Scenario("glue-job", "glue-job"))
    return scenarios


# -- what the engine runs -----------------------------------------------------------------------


def realtime_machine() -> StateMachine:
    """The realtime workflow's ASL with local names for every ``${...}`` placeholder."""
    names = {
        key: "ceap-benchmark-bucket" if key == "WorkflowBucket" else f"arn:aws:lambda:us-east-1:123456789012:function:{key}"
        for key in substitution_keys(REALTIME)
    }
    return load_definition(substitute(build_definition(REALTIME), names))


#: What every stage call answers: a pointer with no parts, and for the first stage's Plan call no
#: byte range (its Range and Merge Maps then have no item, as the later stages' part Maps).
_STAGE_RESULT = {"Payload": {"outputKey": "executions/e/stage/output.json", "counts": {}, "partList": "executions/e/stage/parts.jsonl",
                             "parts": [], "ranges": [], "groups": [], "rangeCount": 0, "groupCount": 0}}


async def noop_stage(resource: Any, parameters: Any, context: TaskContext) -> Any:
    """A stage that does nothing, shaped like lambda:invoke's result (the Tasks' ResultSelector reads it)."""
    return _STAGE_RESULT


async def flaky_stage(resource: Any, parameters: Any, context: TaskContext) -> Any:
    """A stage that fails its first attempt and succeeds on the retry."""
    if context.retry_count == 0:
        raise TaskFailed("Lambda.ServiceException", "injected: the first attempt of every stage fails")
    return _STAGE_RESULT


async def noop_put_object(resource: Any, parameters: Any, context: TaskContext) -> Any:
    return {"ETag": '"0"'}


def _runners(stage: Callable[..., Any]) -> TaskRunners:
    runners = TaskRunners()
    runners.register("lambda:invoke", stage)
    # RecordFailure's resource: never reached when stages succeed, but the engine checks every resource.
    runners.register("aws-sdk:s3:putObject", noop_put_object)
    return runners


def state_transitions(history: ExecutionHistory) -> int:
    """States entered plus Task retries (each retry schedules the Task again), as AWS counts them."""
    entered = task_entered = scheduled = 0
    for kind in history.types():  # the rows' types: no Event objects built inside the timed run
        if kind.endswith("StateEntered"):
            entered += 1
            if kind == "TaskStateEntered":
                task_entered += 1
        elif kind == "TaskScheduled" or kind == "LambdaFunctionScheduled":
            scheduled += 1
    return entered + max(0, scheduled - task_entered)


async def _run_on_engine(
    scenario: Scenario,
    machine: StateMachine,
    runners: TaskRunners,
    *,
    execution_type: str,
    clock: Clock,
    payload: Any,
    keep_histories: bool = False,
    details: dict[str, Any] | None = None,
    rounds: int = 1,
) -> dict[str, Any]:
    """Run ``scenario.executions`` executions of ``machine`` and make the row.

    ``rounds`` > 1 runs them that many times and reports the median round (by
    wall time), for runs so short that a moment of other work on the machine
    would decide the number; ``details.rounds_executions_per_s`` lists them all.
    """
    engine = Engine(clock=clock, runners=runners, seed=7)
    transitions = 0
    failures: list[str] = []
    kept: list[Any] | None = [] if keep_histories else None

    async def one(_: int) -> None:
        nonlocal transitions
        execution = engine.start(machine, payload, execution_type=execution_type, state_machine_name="benchmark")
        result = await execution.task  # type: ignore[misc]
        if result.status != "SUCCEEDED" and len(failures) < 3:
            failures.append(f"{result.status}: {result.error}: {result.cause}")
        transitions += state_transitions(result.history)
        if kept is not None:
            kept.append(result)

    await drive(min(WARMUP_EXECUTIONS, scenario.executions), scenario.concurrency, one)
    if failures:
        raise BenchmarkFailed(f"{scenario.name}: warm-up executions failed: {failures}")
    rss_before = current_rss_mib()
    measured: list[tuple[Run, int, float]] = []
    for _ in range(rounds):
        transitions = 0
        virtual_start = clock.time()
        run = await drive(scenario.executions, scenario.concurrency, one)
        if failures:
            raise BenchmarkFailed(f"{scenario.name}: executions did not succeed: {failures}")
        measured.append((run, transitions, clock.time() - virtual_start))
    run, transitions, virtual_s = sorted(measured, key=lambda m: m[0].wall_s)[len(measured) // 2]
    extra: dict[str, Any] = {
        "rss_before_mib": _round(rss_before),
        "rss_after_mib": _round(current_rss_mib()),
        "kept_histories": keep_histories,
        **(details or {}),
    }
    if rounds > 1:
        extra["rounds_executions_per_s"] = [round(m[0].executions / m[0].wall_s, 1) for m in measured]
    if isinstance(clock, VirtualClock):
        extra["virtual_s"] = round(virtual_s, 3)
    return result_row(scenario.name, run, transitions=transitions, details=extra)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# -- the scenarios ------------------------------------------------------------------------------


async def bound(scenario: Scenario, *, yield_each_state: bool = False) -> list[dict[str, Any]]:
    """The asyncio ceiling: per execution one task, 5 awaited no-op coroutines, 10 history tuples.

    ``yield_each_state``: each state gives the event loop one turn
    (``asyncio.sleep(0)``), as a task runner doing real I/O would; the
    ``bound-yield`` row, for context only (the ratios use ``bound``).
    """
    now = time.time

    async def noop_state() -> None:
        return None

    async def yielding_state() -> None:
        await asyncio.sleep(0)

    state = yielding_state if yield_each_state else noop_state

    async def execution() -> list[tuple]:
        history: list[tuple] = []
        append = history.append
        event_id = 0
        for _ in range(5):
            append((event_id + 1, event_id, now(), "StateEntered"))
            await state()
            append((event_id + 2, event_id + 1, now(), "StateExited"))
            event_id += 2
        return history

    async def one(_: int) -> None:
        await asyncio.ensure_future(execution())  # its own task, as an engine gives each execution

    await drive(min(WARMUP_EXECUTIONS, scenario.executions), scenario.concurrency, one)
    run = await drive(scenario.executions, scenario.concurrency, one)
    return [result_row(scenario.name, run, transitions=5 * scenario.executions)]


async def ceap_realtime(scenario: Scenario) -> list[dict[str, Any]]:
    return [await _run_on_engine(scenario, realtime_machine(), _runners(noop_stage), execution_type=EXPRESS,
                                 clock=VirtualClock(start=0), payload=PAYLOAD)]


async def scaling(scenario: Scenario, keep_histories: bool = False) -> list[dict[str, Any]]:
    return [await _run_on_engine(scenario, realtime_machine(), _runners(noop_stage), execution_type=EXPRESS,
                                 clock=VirtualClock(start=0), payload=PAYLOAD, keep_histories=keep_histories)]


async def retry_heavy(scenario: Scenario) -> list[dict[str, Any]]:
    return [await _run_on_engine(scenario, realtime_machine(), _runners(flaky_stage), execution_type=EXPRESS,
                                 clock=VirtualClock(start=0), payload=PAYLOAD,
                                 details={"retries_per_execution": len(STAGE_CALLS)})]


async def five_pass_ceap(scenario: Scenario) -> list[dict[str, Any]]:
    # The same executions as moto take ceap a few hundredths of a second: the median of 5 rounds.
    return [await _run_on_engine(scenario, load_definition(FIVE_PASS), TaskRunners(), execution_type=STANDARD,
                                 clock=VirtualClock(start=0), payload={"orderId": 1}, rounds=5)]


def five_pass_moto(scenario: Scenario) -> list[dict[str, Any]]:
    """moto's ASL interpreter in this process: start every execution, then poll until all ended.

    moto runs each execution in a thread of its own, so all ``executions`` are
    in flight at once (that is its concurrency). Latency is from the
    StartExecution call until a DescribeExecution sweep sees the execution
    ended, so it is rounded up to the sweep (about 10 ms plus the sweep itself).
    """
    try:
        import boto3
        from moto import mock_aws
    except ImportError as exc:
        raise BenchmarkFailed(f"moto-5pass needs moto[server] and boto3 installed: {exc}") from None

    n = scenario.executions
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        client = boto3.client("stepfunctions", region_name="us-east-1")
        arn = client.create_state_machine(
            name="five-pass", definition=json.dumps(FIVE_PASS), roleArn="arn:aws:iam::123456789012:role/benchmark"
        )["stateMachineArn"]

        def run_all(prefix: str, count: int) -> tuple[Run, str]:
            latencies = array("d", bytes(8 * count))
            started_at: dict[str, tuple[int, float]] = {}
            clock = time.perf_counter
            cpu_start = time.process_time()  # every thread of this process, moto's workers included
            wall_start = clock()
            for i in range(count):
                t0 = clock()
                execution_arn = client.start_execution(
                    stateMachineArn=arn, name=f"{prefix}-{i}", input=json.dumps({"orderId": i})
                )["executionArn"]
                started_at[execution_arn] = (i, t0)
            pending = dict(started_at)
            failed: list[str] = []
            while pending:
                finished_any = False
                for execution_arn in list(pending):
                    status = client.describe_execution(executionArn=execution_arn)["status"]
                    if status != "RUNNING":
                        index, t0 = pending.pop(execution_arn)
                        latencies[index] = clock() - t0
                        finished_any = True
                        if status != "SUCCEEDED":
                            failed.append(f"{execution_arn}: {status}")
                if pending and not finished_any:
                    time.sleep(0.01)
            if failed:
                raise BenchmarkFailed(f"moto-5pass: executions did not succeed: {failed[:3]}")
            wall = clock() - wall_start
            return Run(count, count, wall, latencies, time.process_time() - cpu_start), next(iter(started_at))

        run_all("warmup", min(5, n))
        run, first_arn = run_all("run", n)
        history = client.get_execution_history(executionArn=first_arn)
        entered = sum(1 for e in history["events"] if e["type"].endswith("StateEntered"))
    if entered != 5:
        raise BenchmarkFailed(f"moto-5pass: expected 5 states entered per execution, moto recorded {entered}")
    return [result_row(scenario.name, run, transitions=entered * n,
                       details={"note": "all executions started, then DescribeExecution sweeps until all ended"})]


# -- the glue job (another harness, when present) ------------------------------------------------


def glue_job(scenario: Scenario, mode: str, module: Any = None) -> list[dict[str, Any]]:
    """Rows from ``benchmarks/glue_job.py`` (or ``module``), which must define
    ``run(mode: str) -> list[dict]`` (``mode`` is full, quick or smoke); each
    row is made complete with :func:`normalise_row`."""
    if module is None:
        import importlib

        module = importlib.import_module("benchmarks.glue_job")
    run = getattr(module, "run", None)
    if not callable(run):
        raise BenchmarkFailed(
            "benchmarks/glue_job.py has no run(mode: str) -> list[dict]: define it to have the Glue job in the results"
        )
    rows = run(mode)
    if isinstance(rows, dict):
        rows = [rows]
    return [normalise_row(row, default_name=scenario.name) for row in rows]


def normalise_row(row: dict[str, Any], *, default_name: str) -> dict[str, Any]:
    """A row from elsewhere in the results' shape: every required key, the rest under ``details``."""
    out: dict[str, Any] = {key: row.get(key) for key in REQUIRED_KEYS}
    out["name"] = out["name"] or default_name
    if out["peak_rss_mib"] is None:
        out["peak_rss_mib"] = round(peak_rss_mib(), 1)
    details = dict(row.get("details") or {})
    details.update({k: v for k, v in row.items() if k not in REQUIRED_KEYS and k != "details"})
    out["details"] = details
    return out


def run_scenario(scenario: Scenario, *, mode: str, keep_histories: bool = False) -> list[dict[str, Any]]:
    """Run one scenario in this process and return its rows."""
    kind = scenario.kind
    if kind == "bound":
        return asyncio.run(bound(scenario))
    if kind == "bound-yield":
        return asyncio.run(bound(scenario, yield_each_state=True))
    if kind == "ceap-realtime":
        return asyncio.run(ceap_realtime(scenario))
    if kind == "five-pass-ceap":
        return asyncio.run(five_pass_ceap(scenario))
    if kind == "five-pass-moto":
        return five_pass_moto(scenario)
    if kind == "scaling":
        return asyncio.run(scaling(scenario, keep_histories))
    if kind == "retry-heavy":
        return asyncio.run(retry_heavy(scenario))
    if kind == "glue-job":
        return glue_job(scenario, mode)
    raise ValueError(f"unknown scenario kind {kind!r}")

"""Hostile definitions end, in bounded time, with the status AWS gives them (issue 14, part 1).

Every case runs under a generous ``asyncio.wait_for``: a regression shows as a
failed test, never as a hung suite.
"""

import asyncio
import json
import threading
import time

import pytest

from ceap_engine.asl.definition import load_definition, validate_definition
from ceap_engine.asl.history import ExecutionHistory
from ceap_engine.asl.interpreter import EXPRESS, EXPRESS_KEPT_EVENTS, STANDARD_MAX_SECONDS, Engine
from ceap_engine.asl.limits import MAX_DEFINITION_BYTES
from ceap_engine.errors import DefinitionError
from ceap_engine.runtime.clock import RealClock, VirtualClock
from ceap_engine.runtime.tasks import LambdaFunctions, TaskRunners

T0 = 1_767_225_600.0
BOUND = 120  # seconds: generous, on a loaded machine

LOOP = {
    "StartAt": "A",
    "States": {
        "A": {"Type": "Pass", "Next": "B"},
        "B": {"Type": "Choice", "Choices": [{"Variable": "$.stop", "IsPresent": True, "Next": "C"}], "Default": "A"},
        "C": {"Type": "Succeed"},
    },
}


def engine(functions=None, clock=None):
    runners = TaskRunners()
    fns = runners.register_lambda(LambdaFunctions())
    for name, handler in (functions or {}).items():
        fns.register(name, handler)
    return Engine(clock=clock or VirtualClock(start=T0), runners=runners, seed=1)


async def bounded(awaitable):
    return await asyncio.wait_for(awaitable, BOUND)


# -- busy loops -------------------------------------------------------------------------


@pytest.mark.parametrize("clock", [VirtualClock(start=T0), RealClock()], ids=["virtual", "real"])
async def test_an_express_infinite_loop_times_out_on_wall_time(clock):
    definition = dict(LOOP, TimeoutSeconds=1)
    started = time.monotonic()
    result = await bounded(engine(clock=clock).execute(load_definition(definition), {}, execution_type=EXPRESS))
    assert result.status == "TIMED_OUT" and result.error == "States.Timeout"
    assert time.monotonic() - started >= 1
    assert result.history.types()[-1] == "ExecutionTimedOut"


async def test_a_real_clock_timeout_is_armed_when_the_execution_first_waits():
    # Pass states run without the loop's turn, then the Wait is where the timeout must fire.
    definition = {"TimeoutSeconds": 1, "StartAt": "P", "States": {
        "P": {"Type": "Pass", "Next": "Q"}, "Q": {"Type": "Pass", "Next": "W"},
        "W": {"Type": "Wait", "Seconds": 60, "End": True}}}
    started = time.monotonic()
    result = await bounded(engine(clock=RealClock()).execute(load_definition(definition), {}, execution_type=EXPRESS))
    assert result.status == "TIMED_OUT" and result.error == "States.Timeout"
    assert 1 <= time.monotonic() - started < 10
    assert result.history.types()[-2:] == ["WaitStateEntered", "ExecutionTimedOut"]


async def test_an_express_loop_keeps_bounded_history_and_ids_keep_counting():
    definition = dict(LOOP, TimeoutSeconds=2)
    result = await bounded(engine().execute(load_definition(definition), {}, execution_type=EXPRESS))
    assert result.status == "TIMED_OUT"
    assert len(result.history) <= 2 * EXPRESS_KEPT_EVENTS + 1
    events = result.history.events
    assert [e.id for e in events] == list(range(events[0].id, events[0].id + len(events)))


async def test_a_standard_loop_stops_at_exactly_25000_events():
    result = await bounded(engine().execute(load_definition(LOOP), {}))
    assert result.status == "FAILED" and result.error == "States.Runtime" and "25000" in result.cause
    assert len(result.history) == 25_000 and result.history.types()[-1] == "ExecutionFailed"


@pytest.mark.parametrize("tolerated", [None, 100])
async def test_an_inline_map_stops_at_exactly_25000_events(tolerated):
    state = {"Type": "Map", "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}, "End": True}
    if tolerated is not None:
        state["ToleratedFailurePercentage"] = tolerated  # a full history is no tolerable failure
    machine = load_definition({"StartAt": "M", "States": {"M": state}})
    result = await bounded(engine().execute(machine, [0] * 8_000))
    assert result.status == "FAILED" and result.error == "States.Runtime"
    assert len(result.history) == 25_000 and result.history.types()[-1] == "ExecutionFailed"


def test_an_express_history_drops_its_oldest_half_when_full():
    history = ExecutionHistory(VirtualClock(start=0), keep=3)
    ids = [history.add("PassStateEntered", 0) for _ in range(7)]
    assert ids == [1, 2, 3, 4, 5, 6, 7]
    assert [e.id for e in history.events] == [4, 5, 6, 7] and history.dropped == 3


# -- hung tasks -------------------------------------------------------------------------


def _hung_task(timeout=1):
    return load_definition({"StartAt": "T", "States": {"T": {
        "Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:hang", "TimeoutSeconds": timeout,
        "End": True,
    }}})


@pytest.mark.parametrize("clock", [VirtualClock(start=T0), RealClock()], ids=["virtual", "real"])
async def test_a_hung_async_task_times_out_after_its_timeout_in_wall_time(clock):
    async def hang(event, context):
        await asyncio.Event().wait()

    result = await bounded(engine({"hang": hang}, clock).execute(_hung_task(), {}))
    assert result.status == "FAILED" and result.error == "States.Timeout"
    assert "LambdaFunctionTimedOut" in result.history.types()


@pytest.mark.parametrize("clock", [VirtualClock(start=T0), RealClock()], ids=["virtual", "real"])
async def test_a_hung_sync_task_times_out_and_leaves_no_thread_to_wait_for(clock):
    release = threading.Event()

    def hang(event, context):
        release.wait(BOUND)

    try:
        result = await bounded(engine({"hang": hang}, clock).execute(_hung_task(), {}))
        assert result.status == "FAILED" and result.error == "States.Timeout"
        # The handler still runs, in a daemon thread: the process may exit without it.
        assert any(t.daemon for t in threading.enumerate() if t.name.startswith("ceap-worker"))
    finally:
        release.set()


async def test_the_wall_backstop_leaves_virtual_waits_alone():
    # A virtual Wait far longer than the timeout: the virtual timer decides, at once.
    definition = {"TimeoutSeconds": 30, "StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}}
    result = await bounded(engine().execute(load_definition(definition), {}))
    assert result.status == "TIMED_OUT" and result.stop_time - result.start_time == 30


# -- the one-year limit -----------------------------------------------------------------


@pytest.mark.parametrize("seconds", [2 * 365 * 86_400, 99_999_999])
async def test_a_standard_execution_ends_timed_out_at_one_year(seconds):
    definition = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": seconds, "End": True}}}
    result = await bounded(engine().execute(load_definition(definition), {}))
    assert result.status == "TIMED_OUT" and result.stop_time - result.start_time == STANDARD_MAX_SECONDS


async def test_a_wait_under_a_year_still_succeeds():
    definition = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 300 * 86_400, "End": True}}}
    result = await bounded(engine().execute(load_definition(definition), {}))
    assert result.status == "SUCCEEDED"


# -- definitions --------------------------------------------------------------------------


def _nested_parallel_text(depth):
    text = '{"StartAt": "P0", "States": {"P0": {"Type": "Pass", "End": true}}}'
    for i in range(1, depth):
        text = f'{{"StartAt": "P{i}", "States": {{"P{i}": {{"Type": "Parallel", "Branches": [{text}], "End": true}}}}}}'
    return text


def test_parallel_nested_3000_deep_is_refused_not_a_recursion_error():
    text = _nested_parallel_text(3000)
    with pytest.raises(DefinitionError) as err:
        load_definition(text)
    assert err.value.problems[0].code == "DEFINITION_TOO_DEEP"
    # The same nesting built in Python (no JSON parser in the way).
    assert [p.code for p in validate_definition(_deep_dict(3000))] == ["DEFINITION_TOO_DEEP"]


def _deep_dict(depth):
    machine = {"StartAt": "P0", "States": {"P0": {"Type": "Pass", "End": True}}}
    for i in range(1, depth):
        machine = {"StartAt": f"P{i}", "States": {f"P{i}": {"Type": "Parallel", "Branches": [machine], "End": True}}}
    return machine


async def test_parallel_nested_50_deep_runs():
    result = await bounded(engine().execute(load_definition(_nested_parallel_text(50)), {"x": 1}))
    assert result.status == "SUCCEEDED"


def test_a_definition_over_one_mebibyte_is_refused():
    def machine(size):
        return {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": "x" * size, "End": True}}}

    base = len(json.dumps(machine(0), separators=(",", ":")))
    assert validate_definition(machine(MAX_DEFINITION_BYTES - base)) == []
    problems = validate_definition(machine(MAX_DEFINITION_BYTES - base + 1))
    assert [p.code for p in problems] == ["DEFINITION_TOO_LARGE"]
    assert [p.code for p in validate_definition(json.dumps(machine(MAX_DEFINITION_BYTES)))] == ["DEFINITION_TOO_LARGE"]


# -- JSONata ------------------------------------------------------------------------------


def _jsonata(expression):
    return {"QueryLanguage": "JSONata", "StartAt": "P", "States": {"P": {"Type": "Pass", "Output": expression, "End": True}}}


def test_jsonata_eval_is_refused_as_aws_refuses_it():
    problems = validate_definition(_jsonata("{% $eval('1 + 1') %}"))
    assert len(problems) == 1 and "$eval is not supported" in problems[0].message
    assert validate_definition(_jsonata("{% $evaluate %}")) == []  # a variable of that name is fine


@pytest.mark.parametrize(
    ("expression", "error_text"),
    [
        ("{% $range(1, 1e8, 1) %}", "the limit is 1000"),
        ("{% $match('" + "a" * 40 + "b', /(a|a)+$/) %}", "took more than"),
        ("{% ($f := function($n){ $n = 0 ? 0 : 1 + $f($n - 1) }; $f(100000)) %}", "deeper than"),
    ],
    ids=["range", "catastrophic-regex", "deep-recursion"],
)
async def test_jsonata_evaluation_is_bounded(expression, error_text):
    started = time.monotonic()
    result = await bounded(engine().execute(load_definition(_jsonata(expression)), {}))
    assert result.status == "FAILED" and result.error == "States.QueryEvaluationError"
    assert error_text in result.cause
    assert time.monotonic() - started < BOUND


@pytest.mark.parametrize(
    ("expression", "output"),
    [
        ("{% $range(1, 1000) ~> $count() %}", 1000),
        ("{% $match('abc', /b/).index %}", 1),
        ("{% $replace('a-b', /-/, '+') %}", "a+b"),
        ("{% $split('a,b', /,/) %}", ["a", "b"]),
        ("{% $contains('abc', /C/i) %}", True),
    ],
)
async def test_bounded_jsonata_still_computes(expression, output):
    result = await bounded(engine().execute(load_definition(_jsonata(expression)), {}))
    assert result.status == "SUCCEEDED" and result.output == output

"""Every state type, I/O processing in AWS's order, errors, timeouts and history - on the virtual clock."""

import asyncio
import json

import pytest

from ceap_engine.asl.definition import load_definition
from ceap_engine.asl.interpreter import EXPRESS, Engine
from ceap_engine.runtime.clock import VirtualClock
from ceap_engine.runtime.tasks import LambdaFunctions, TaskFailed, TaskRunners

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def engine_with(functions=None, runners=None, seed=1):
    task_runners = TaskRunners()
    fns = task_runners.register_lambda(LambdaFunctions())
    for name, handler in (functions or {}).items():
        fns.register(name, handler)
    for key, runner in (runners or {}).items():
        task_runners.register(key, runner)
    return Engine(clock=VirtualClock(start=T0), runners=task_runners, seed=seed)


async def run(definition, input=None, *, functions=None, runners=None, **kwargs):
    engine = engine_with(functions, runners)
    return await engine.execute(load_definition(definition), input if input is not None else {}, **kwargs)


def one(state, **more):
    return {"StartAt": "S", "States": {"S": state, **more}}


# -- Pass and I/O processing -------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "input", "output"),
    [
        ({"Type": "Pass", "End": True}, {"a": 1}, {"a": 1}),
        ({"Type": "Pass", "Result": {"x": 1}, "End": True}, {"a": 1}, {"x": 1}),
        ({"Type": "Pass", "Result": {"x": 1}, "ResultPath": "$.r", "End": True}, {"a": 1}, {"a": 1, "r": {"x": 1}}),
        ({"Type": "Pass", "Result": 5, "ResultPath": None, "End": True}, {"a": 1}, {"a": 1}),
        ({"Type": "Pass", "InputPath": "$.a", "End": True}, {"a": {"b": 2}}, {"b": 2}),
        ({"Type": "Pass", "InputPath": None, "End": True}, {"a": 1}, {}),
        ({"Type": "Pass", "OutputPath": "$.a.b", "End": True}, {"a": {"b": [1, 2]}}, [1, 2]),
        ({"Type": "Pass", "Parameters": {"v.$": "$.a", "lit": "x", "n": {"m.$": "$.b"}}, "End": True},
         {"a": 1, "b": 2}, {"v": 1, "lit": "x", "n": {"m": 2}}),
        ({"Type": "Pass", "InputPath": "$.in", "Parameters": {"got.$": "$"}, "ResultPath": "$.out",
          "OutputPath": "$.out", "End": True}, {"in": {"k": 1}}, {"got": {"k": 1}}),
        ({"Type": "Pass", "Parameters": {"sum.$": "States.MathAdd($.a, $.b)"}, "End": True}, {"a": 2, "b": 40}, {"sum": 42}),
    ],
)
async def test_pass_and_io_processing(state, input, output):
    result = await run(one(state), input)
    assert result.status == "SUCCEEDED" and result.output == output


async def test_context_object():
    result = await run(one({"Type": "Pass", "Parameters": {
        "id.$": "$$.Execution.Id", "name.$": "$$.Execution.Name", "input.$": "$$.Execution.Input",
        "start.$": "$$.Execution.StartTime", "role.$": "$$.Execution.RoleArn", "sm.$": "$$.StateMachine.Name",
        "state.$": "$$.State.Name", "entered.$": "$$.State.EnteredTime"}, "End": True}), {"q": 1},
        name="exec-1", state_machine_name="orders")
    out = result.output
    assert out["id"] == "arn:aws:states:us-east-1:123456789012:execution:orders:exec-1"
    assert (out["name"], out["input"], out["sm"], out["state"]) == ("exec-1", {"q": 1}, "orders", "S")
    assert out["start"] == out["entered"] == "2026-01-01T00:00:00.000Z"
    assert out["role"].startswith("arn:aws:iam::")


async def test_missing_input_path_is_a_runtime_error_with_aws_wording():
    result = await run(one({"Type": "Pass", "InputPath": "$.nope", "End": True}), {"a": 1})
    assert result.status == "FAILED" and result.error == "States.Runtime"
    assert result.cause == ("An error occurred while executing the state 'S' (entered at the event id #2). "
                            "Invalid path '$.nope' : No results for path: $['nope']")


# -- Choice --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "value", "matches"),
    [
        ({"StringEquals": "a"}, "a", True), ({"StringEquals": "a"}, 1, False),
        ({"StringLessThan": "b"}, "a", True), ({"StringGreaterThan": "b"}, "a", False),
        ({"StringLessThanEquals": "a"}, "a", True), ({"StringGreaterThanEquals": "b"}, "c", True),
        ({"StringMatches": "log-*.txt"}, "log-2026.txt", True), ({"StringMatches": "a\\*b"}, "a*b", True),
        ({"StringMatches": "a\\*b"}, "axb", False),
        ({"NumericEquals": 1}, 1.0, True), ({"NumericEquals": 1}, True, False), ({"NumericLessThan": 1}, 0.5, True),
        ({"NumericGreaterThan": 1}, 2, True), ({"NumericLessThanEquals": 1}, 1, True),
        ({"NumericGreaterThanEquals": 2}, 1, False), ({"BooleanEquals": True}, True, True),
        ({"BooleanEquals": True}, 1, False),
        ({"TimestampEquals": "2026-01-01T00:00:00Z"}, "2026-01-01T01:00:00+01:00", True),
        ({"TimestampLessThan": "2026-01-01T00:00:00Z"}, "2025-12-31T23:59:59Z", True),
        ({"TimestampGreaterThan": "2026-01-01T00:00:00Z"}, "not a time", False),
        ({"TimestampLessThanEquals": "2026-01-01T00:00:00Z"}, "2026-01-01T00:00:00Z", True),
        ({"TimestampGreaterThanEquals": "2026-01-01T00:00:00Z"}, "2026-01-01T00:00:00.5Z", True),
        ({"IsNull": True}, None, True), ({"IsNumeric": True}, "1", False), ({"IsString": True}, "1", True),
        ({"IsBoolean": False}, 0, True), ({"IsTimestamp": True}, "2026-01-01T00:00:00Z", True),
        ({"IsPresent": True}, 0, True),
    ],
)
async def test_choice_comparison_operators(rule, value, matches):
    definition = {"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.v", **rule, "Next": "Yes"}], "Default": "No"},
        "Yes": {"Type": "Pass", "Result": "yes", "End": True},
        "No": {"Type": "Pass", "Result": "no", "End": True}}}
    result = await run(definition, {"v": value, "other": value})
    assert result.output == ("yes" if matches else "no")


async def test_choice_path_variants_boolean_rules_and_is_present():
    definition = {"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [
            {"And": [{"Variable": "$.a", "NumericGreaterThanPath": "$.b"},
                     {"Not": {"Variable": "$.s", "StringEqualsPath": "$.t"}},
                     {"Or": [{"Variable": "$.missing", "IsPresent": True}, {"Variable": "$.a", "IsNumeric": True}]}],
             "Next": "Yes"}], "Default": "No"},
        "Yes": {"Type": "Pass", "Result": "yes", "End": True},
        "No": {"Type": "Pass", "Result": "no", "End": True}}}
    assert (await run(definition, {"a": 3, "b": 2, "s": "x", "t": "y"})).output == "yes"
    assert (await run(definition, {"a": 1, "b": 2, "s": "x", "t": "y"})).output == "no"


async def test_choice_without_match_or_default_fails():
    result = await run({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.v", "NumericEquals": 1, "Next": "D"}]},
        "D": {"Type": "Succeed"}}}, {"v": 2})
    assert result.status == "FAILED" and result.error == "States.NoChoiceMatched"


async def test_choice_variable_missing_is_runtime_error():
    result = await run({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.v", "NumericEquals": 1, "Next": "D"}], "Default": "D"},
        "D": {"Type": "Succeed"}}}, {})
    assert result.error == "States.Runtime" and "Invalid path '$.v'" in result.cause


# -- Wait ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "input", "waited"),
    [
        ({"Seconds": 90}, {}, 90),
        ({"SecondsPath": "$.s"}, {"s": 300}, 300),
        ({"Timestamp": "2026-01-01T01:00:00Z"}, {}, 3600),
        ({"TimestampPath": "$.t"}, {"t": "2026-01-01T00:00:10Z"}, 10),
        ({"TimestampPath": "$.t"}, {"t": "2025-01-01T00:00:00Z"}, 0),  # the past: no wait
    ],
)
async def test_wait_on_the_virtual_clock(state, input, waited):
    result = await run(one({"Type": "Wait", **state, "End": True}), input)
    assert result.status == "SUCCEEDED" and result.stop_time - result.start_time == waited
    assert result.history.types() == ["ExecutionStarted", "WaitStateEntered", "WaitStateExited", "ExecutionSucceeded"]
    entered, exited = result.history.events[1:3]
    assert exited.timestamp - entered.timestamp == waited


@pytest.mark.parametrize(
    ("value", "message"),
    [(-1, "references a negative value"), (1.5, "cannot be parsed as a long value"), ("x", "cannot be parsed")],
)
async def test_wait_seconds_path_errors(value, message):
    result = await run(one({"Type": "Wait", "SecondsPath": "$.s", "End": True}), {"s": value})
    assert result.error == "States.Runtime" and message in result.cause


# -- Succeed and Fail ------------------------------------------------------------------


async def test_succeed_applies_input_and_output_path():
    result = await run(one({"Type": "Succeed", "InputPath": "$.a", "OutputPath": "$.b"}), {"a": {"b": 7}})
    assert result.output == 7
    assert result.history.types()[-2:] == ["SucceedStateExited", "ExecutionSucceeded"]


async def test_fail_with_paths_and_intrinsics():
    result = await run(one({"Type": "Fail", "ErrorPath": "$.e", "CausePath": "States.Format('bad {}', $.id)"}),
                       {"e": "Order.Invalid", "id": 7})
    assert (result.status, result.error, result.cause) == ("FAILED", "Order.Invalid", "bad 7")
    assert result.history.types() == ["ExecutionStarted", "FailStateEntered", "ExecutionFailed"]
    assert result.history.to_aws()[-1]["executionFailedEventDetails"] == {"cause": "bad 7", "error": "Order.Invalid"}


# -- Task: Lambda, retries, catch, timeouts -----------------------------------------------


async def test_lambda_invoke_result_shape_and_events():
    result = await run(one({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                            "Parameters": {"FunctionName": "double", "Payload.$": "$"},
                            "ResultSelector": {"v.$": "$.Payload.v", "code.$": "$.StatusCode"}, "End": True}),
                       {"v": 21}, functions={"double": lambda e, c: {"v": e["v"] * 2}})
    assert result.output == {"v": 42, "code": 200}
    assert result.history.types() == ["ExecutionStarted", "TaskStateEntered", "TaskScheduled", "TaskStarted",
                                      "TaskSucceeded", "TaskStateExited", "ExecutionSucceeded"]
    scheduled = result.history.to_aws()[2]["taskScheduledEventDetails"]
    assert scheduled == {"parameters": '{"FunctionName":"double","Payload":{"v":21}}', "region": "us-east-1",
                         "resource": "invoke", "resourceType": "lambda"}


async def test_plain_function_arn_uses_lambda_function_events():
    result = await run(one({"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:echo",
                            "End": True}), {"a": 1}, functions={"echo": lambda e, c: e})
    assert result.output == {"a": 1}
    assert result.history.types()[2:5] == ["LambdaFunctionScheduled", "LambdaFunctionStarted", "LambdaFunctionSucceeded"]


def always_fails(event, context):
    raise ValueError("nope")


async def test_retry_schedule_and_retry_count_then_catch():
    definition = {"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "f"},
              "Retry": [{"ErrorEquals": ["ValueError"], "IntervalSeconds": 3, "MaxAttempts": 2, "BackoffRate": 1.5}],
              "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.err", "Next": "H"}], "End": True},
        "H": {"Type": "Pass", "End": True}}}
    result = await run(definition, {"keep": 1}, functions={"f": always_fails})
    assert result.status == "SUCCEEDED"
    assert result.output["keep"] == 1 and result.output["err"]["Error"] == "ValueError"
    assert json.loads(result.output["err"]["Cause"])["errorMessage"] == "nope"
    times = [e.timestamp - T0 for e in result.history.events if e.type == "TaskScheduled"]
    assert times == [0, 3, 7.5]
    # A retry has no event of its own: Scheduled/Started/Failed repeat, then the catch exits the state.
    assert result.history.types()[2:12] == ["TaskScheduled", "TaskStarted", "TaskFailed"] * 3 + ["TaskStateExited"]


async def test_first_matching_retrier_and_max_attempts_zero():
    definition = one({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "f"},
                      "Retry": [{"ErrorEquals": ["ValueError"], "MaxAttempts": 0},
                                {"ErrorEquals": ["States.ALL"], "MaxAttempts": 5}], "End": True})
    result = await run(definition, functions={"f": always_fails})
    assert result.status == "FAILED" and result.error == "ValueError"
    assert result.history.types().count("TaskScheduled") == 1
    assert result.history.types()[-2:] == ["TaskFailed", "ExecutionFailed"]  # no catch: straight to failure


async def test_retry_count_in_context():
    attempts = []

    def flaky(event, context):
        attempts.append(event)
        if len(attempts) < 3:
            raise RuntimeError("again")
        return "ok"

    definition = one({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                      "Parameters": {"FunctionName": "f", "Payload": {"try.$": "$$.State.RetryCount"}},
                      "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1}], "End": True})
    result = await run(definition, functions={"f": flaky})
    assert result.status == "SUCCEEDED" and [a["try"] for a in attempts] == [0, 1, 2]


async def test_timeout_is_states_timeout_and_task_failed_does_not_match_it():
    async def slow(event, context):
        await asyncio.sleep(0)  # a real await, then a virtual hour
        await context_clock.sleep(3600)
        return "late"

    engine = engine_with()
    context_clock = engine.clock
    engine.runners.register("lambda:invoke", lambda r, p, c: slow(p, c))
    definition = {"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "f"},
              "TimeoutSeconds": 5, "Catch": [{"ErrorEquals": ["States.TaskFailed"], "Next": "Wrong"},
                                             {"ErrorEquals": ["States.Timeout"], "Next": "Right"}], "End": True},
        "Wrong": {"Type": "Fail"}, "Right": {"Type": "Pass", "End": True}}}
    result = await engine.execute(load_definition(definition), {})
    assert result.status == "SUCCEEDED" and result.output == {"Error": "States.Timeout", "Cause": ""}
    assert result.stop_time - result.start_time == 5
    assert "TaskTimedOut" in result.history.types()


async def test_heartbeat_timeout():
    async def silent(resource, parameters, context):
        await context.clock.sleep(100)

    result = await run(one({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "f"},
                            "TimeoutSeconds": 300, "HeartbeatSeconds": 10, "End": True}),
                       runners={"lambda:invoke": silent})
    assert (result.status, result.error) == ("FAILED", "States.HeartbeatTimeout")
    assert result.stop_time - result.start_time == 10


async def test_runtime_errors_are_never_caught():
    definition = {"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "f"},
              "OutputPath": "$.no.such", "Retry": [{"ErrorEquals": ["States.ALL"]}],
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "H"}], "End": True},
        "H": {"Type": "Succeed"}}}
    result = await run(definition, functions={"f": lambda e, c: {}})
    assert result.status == "FAILED" and result.error == "States.Runtime"
    assert result.history.types().count("TaskScheduled") == 1


async def test_task_result_over_256_kib_is_data_limit_exceeded_and_catchable():
    big = "x" * 262_145
    definition = {"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "f"},
              "Catch": [{"ErrorEquals": ["States.DataLimitExceeded"], "Next": "H"}], "End": True},
        "H": {"Type": "Pass", "End": True}}}
    result = await run(definition, functions={"f": lambda e, c: big})
    assert result.status == "SUCCEEDED" and result.output["Error"] == "States.DataLimitExceeded"


async def test_state_output_over_256_kib_fails_the_execution():
    result = await run(one({"Type": "Pass", "Result": "y" * 262_145, "End": True}))
    assert (result.status, result.error) == ("FAILED", "States.DataLimitExceeded")


async def test_runner_error_without_a_name_still_fails_visibly():
    async def buggy(resource, parameters, context):
        raise KeyError("oops")

    result = await run(one({"Type": "Task", "Resource": "arn:aws:states:::glue:startJobRun", "Parameters": {}, "End": True}),
                       runners={"glue:startJobRun": buggy})
    assert (result.status, result.error) == ("FAILED", "KeyError")


async def test_task_failed_from_runner_keeps_error_and_cause():
    async def failing(resource, parameters, context):
        raise TaskFailed("Glue.ConcurrentRunsExceededException", "too many runs")

    result = await run(one({"Type": "Task", "Resource": "arn:aws:states:::glue:startJobRun.sync", "Parameters": {},
                            "End": True}), runners={"glue:startJobRun": failing})
    assert (result.error, result.cause) == ("Glue.ConcurrentRunsExceededException", "too many runs")


# -- Parallel and Map ------------------------------------------------------------------


async def test_parallel_collects_branch_outputs_in_order():
    definition = one({"Type": "Parallel", "End": True, "Branches": [
        {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 10, "Next": "A"}, "A": {"Type": "Pass", "Result": "slow", "End": True}}},
        {"StartAt": "B", "States": {"B": {"Type": "Pass", "Result": "fast", "End": True}}}]})
    result = await run(definition)
    assert result.output == ["slow", "fast"] and result.stop_time - result.start_time == 10


async def test_parallel_branch_failure_fails_the_state_and_stops_the_others():
    definition = one({"Type": "Parallel", "End": True, "Branches": [
        {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 100, "End": True}}},
        {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "BranchBroke", "Cause": "b"}}}]})
    result = await run(definition)
    assert (result.status, result.error, result.cause) == ("FAILED", "BranchBroke", "b")
    assert result.stop_time == result.start_time  # the waiting branch was stopped, not waited for
    assert "WaitStateAborted" in result.history.types() and "ParallelStateFailed" in result.history.types()


async def test_map_items_path_item_selector_and_concurrency():
    definition = one({"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2,
                      "ItemSelector": {"value.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index", "tag.$": "$.tag"},
                      "ItemProcessor": {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 10, "End": True}}},
                      "End": True})
    result = await run(definition, {"items": ["a", "b", "c", "d"], "tag": "t"})
    assert result.output == [{"value": v, "index": i, "tag": "t"} for i, v in enumerate("abcd")]
    assert result.stop_time - result.start_time == 20  # two at a time
    assert result.history.types().count("MapIterationSucceeded") == 4


async def test_map_over_empty_array_and_non_array():
    empty = await run(one({"Type": "Map", "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}, "End": True}), [])
    assert empty.output == []
    bad = await run(one({"Type": "Map", "ItemsPath": "$.x", "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}, "End": True}), {"x": 1})
    assert bad.error == "States.Runtime"


# -- executions ------------------------------------------------------------------------


async def test_history_shape_is_get_execution_history():
    result = await run(one({"Type": "Pass", "Result": {"k": "v"}, "End": True}), {"a": 1}, input_text='{"a": 1}')
    events = result.history.to_aws()
    assert [(e["id"], e["previousEventId"]) for e in events] == [(1, 0), (2, 0), (3, 2), (4, 3)]
    assert events[0]["executionStartedEventDetails"]["input"] == '{"a": 1}'  # as the caller sent it
    assert events[1]["stateEnteredEventDetails"] == {"input": '{"a":1}', "inputDetails": {"truncated": False}, "name": "S"}
    assert events[2]["stateExitedEventDetails"] == {"name": "S", "output": '{"k":"v"}', "outputDetails": {"truncated": False}}
    assert events[3]["executionSucceededEventDetails"]["output"] == '{"k":"v"}'
    assert all(e["timestamp"] == "2026-01-01T00:00:00.000Z" for e in events)


async def test_express_executions_time_out_after_five_minutes():
    result = await run(one({"Type": "Wait", "Seconds": 301, "End": True}), execution_type=EXPRESS)
    assert result.status == "TIMED_OUT" and result.stop_time - result.start_time == 300
    assert result.history.types()[-1] == "ExecutionTimedOut"


async def test_standard_executions_fail_past_25000_events():
    loop = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "Next": "A"}}}
    loop["States"]["B"]["Next"] = "A"
    loop["States"]["C"] = {"Type": "Succeed"}
    loop["States"]["A"] = {"Type": "Choice", "Choices": [{"Variable": "$.stop", "IsPresent": True, "Next": "C"}], "Default": "B"}
    result = await run(loop, {})
    assert result.status == "FAILED" and "25000" in result.cause


async def test_stop_aborts_with_an_event():
    engine = engine_with()
    execution = engine.start(load_definition(one({"Type": "Wait", "Seconds": 3600, "End": True})), {})
    await asyncio.sleep(0)
    execution.stop()
    with pytest.raises(asyncio.CancelledError):
        await execution.task
    result = execution.result()
    assert result.status == "ABORTED" and result.history.types()[-1] == "ExecutionAborted"


async def test_seed_makes_random_things_repeatable():
    definition = one({"Type": "Pass", "Parameters": {"u.$": "States.UUID()", "r.$": "States.MathRandom(0, 1000)"}, "End": True})
    a = await engine_with(seed=5).execute(load_definition(definition), {})
    b = await engine_with(seed=5).execute(load_definition(definition), {})
    c = await engine_with(seed=6).execute(load_definition(definition), {})
    assert a.output == b.output != c.output and a.name == b.name


async def test_outputs_growing_past_the_limit_across_states_are_caught():
    # Each piece is under 256 KiB; together they are over: the size bound must not hide it.
    definition = {"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "f"},
              "ResultSelector": {"blob.$": "$.Payload"}, "ResultPath": "$.r", "Next": "W"},
        "W": {"Type": "Wait", "Seconds": 1, "End": True}}}
    result = await run(definition, {"big": "a" * 200_000}, functions={"f": lambda e, c: "b" * 100_000})
    assert (result.status, result.error) == ("FAILED", "States.DataLimitExceeded")
    assert "'T'" in result.cause


async def test_outputs_just_under_the_limit_pass():
    definition = {"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "f"},
              "ResultSelector": {"blob.$": "$.Payload"}, "ResultPath": "$.r", "OutputPath": "$.r", "Next": "C"},
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.blob", "IsString": True, "Next": "D"}]},
        "D": {"Type": "Succeed"}}}
    result = await run(definition, {"big": "a" * 200_000}, functions={"f": lambda e, c: "b" * 100_000})
    assert result.status == "SUCCEEDED" and len(result.output["blob"]) == 100_000


async def test_runners_may_return_any_awaitable_or_suspend_before_a_timeout():
    async def later(resource, parameters, context):
        await context.clock.sleep(2)
        return {"waited": True}

    def future_runner(resource, parameters, context):
        fut = asyncio.get_running_loop().create_future()
        fut.set_result({"from": "future"})
        return fut

    task = {"Type": "Task", "Resource": "arn:aws:states:::glue:startJobRun", "Parameters": {}, "TimeoutSeconds": 5, "End": True}
    waited = await run(one(task), runners={"glue:startJobRun": later})
    assert waited.output == {"waited": True} and waited.stop_time - waited.start_time == 2
    awaited = await run(one(task), runners={"glue:startJobRun": future_runner})
    assert awaited.output == {"from": "future"}


async def test_a_prepared_execution_runs_in_the_callers_task_with_its_limits():
    engine = Engine(clock=VirtualClock())
    passes = load_definition({"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": {"r": 1}, "End": True}}})
    execution = engine.prepare(passes, {"a": 1}, execution_type=EXPRESS)
    assert execution.task is None and execution.status == "RUNNING"
    result = await execution.run()
    assert (result.status, result.output) == ("SUCCEEDED", {"r": 1})
    assert execution.history.types() == ["ExecutionStarted", "PassStateEntered", "PassStateExited", "ExecutionSucceeded"]
    # Its timeout cancels the caller's task, and the execution ends TIMED_OUT without the caller seeing a cancel.
    slow = load_definition({"TimeoutSeconds": 5, "StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 60, "End": True}}})
    timed = engine.prepare(slow, {}, execution_type=EXPRESS)
    assert (await timed.run()).status == "TIMED_OUT" and timed.error == "States.Timeout"
    assert asyncio.current_task().cancelling() == 0

import types

import pytest

from benchmarks.measure import REQUIRED_KEYS
from benchmarks.scenarios import (
    STAGE_CALLS,
    STAGES,
    BenchmarkFailed,
    Scenario,
    _runners,
    flaky_stage,
    glue_job,
    noop_stage,
    normalise_row,
    plan,
    realtime_machine,
    run_scenario,
    state_transitions,
)
from ceap_engine.asl.definition import load_definition
from ceap_engine.asl.interpreter import EXPRESS, Engine
from ceap_engine.runtime.clock import VirtualClock
from ceap_engine.runtime.tasks import TaskFailed

ISSUE_NAMES = [
    "bound", "bound-yield", "ceap-realtime-c1", "ceap-realtime-c1000", "moto-5pass", "ceap-5pass",
    "scaling-1k", "scaling-10k", "scaling-100k", "retry-heavy", "e2e-100k", "e2e-1m", "stage-speed",
]


def test_the_full_plan_has_every_scenario_the_issue_names_in_order():
    full = plan("full", glue_job=False)
    assert [s.name for s in full] == ISSUE_NAMES
    by_name = {s.name: s for s in full}
    assert by_name["ceap-realtime-c1000"].concurrency == 1000
    assert by_name["moto-5pass"].executions == by_name["ceap-5pass"].executions
    assert [by_name[f"scaling-{k}"].executions for k in ("1k", "10k", "100k")] == [1_000, 10_000, 100_000]
    assert by_name["retry-heavy"].executions == 10_000
    assert [by_name[f"e2e-{k}"].records for k in ("100k", "1m")] == [100_000, 1_000_000]
    assert by_name["stage-speed"].records == 10_000  # order events: each stage's input is one part


def test_quick_and_smoke_plans_are_smaller_and_the_glue_job_joins_when_asked():
    full = {s.name: s for s in plan("full", glue_job=False)}
    for mode in ("quick", "smoke"):
        for s in plan(mode, glue_job=False):
            if s.name in full:
                assert s.executions <= full[s.name].executions and s.records <= full[s.name].records
    assert plan("quick", glue_job=True)[-1] == Scenario("glue-job", "glue-job")


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="full, quick or smoke"):
        plan("fast")


async def _one_realtime(stage):
    engine = Engine(clock=VirtualClock(start=0), runners=_runners(stage))
    return await engine.execute(realtime_machine(), {"programId": "p"}, execution_type=EXPRESS)


def _realtime_transitions() -> int:
    import asyncio

    return state_transitions(asyncio.run(_one_realtime(noop_stage)).history)


async def test_transitions_are_states_entered_plus_task_retries():
    machine = load_definition({
        "StartAt": "Prepare",
        "States": {
            "Prepare": {"Type": "Pass", "Next": "Work"},
            "Work": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                     "Parameters": {"FunctionName": "f"}, "Retry": [{"ErrorEquals": ["States.ALL"]}], "End": True},
        },
    })
    for stage, expected in ((noop_stage, 2), (flaky_stage, 3)):
        result = await Engine(clock=VirtualClock(start=0), runners=_runners(stage)).execute(machine)
        assert result.status == "SUCCEEDED"
        assert state_transitions(result.history) == expected


async def test_in_the_realtime_workflow_every_stage_fails_once_and_is_retried():
    plain = await _one_realtime(noop_stage)
    flaky = await _one_realtime(flaky_stage)

    assert plain.status == flaky.status == "SUCCEEDED"
    # Every stage's Lambda call fails once: ETL's Plan and Manifest, each later stage's manifest.
    assert flaky.history.types().count("TaskFailed") == len(STAGE_CALLS) == len(STAGES) + 1 == 6
    assert state_transitions(flaky.history) == state_transitions(plain.history) + len(STAGE_CALLS)


def _check_row(row, name, executions):
    assert list(row)[: len(REQUIRED_KEYS)] == list(REQUIRED_KEYS)
    assert row["name"] == name and row["executions"] == executions
    assert row["executions_per_s"] > 0 and row["p99_ms"] >= row["p50_ms"] > 0
    assert "error" not in row["details"]


def test_bound_realtime_five_pass_and_scaling_rows_count_their_transitions():
    realtime = _realtime_transitions()
    cases = [
        (Scenario("bound", "bound", 30, 5), 5),
        (Scenario("bound-yield", "bound-yield", 30, 5), 5),
        (Scenario("ceap-realtime-c5", "ceap-realtime", 30, 5), realtime),
        (Scenario("ceap-5pass", "five-pass-ceap", 30, 5), 5),
        (Scenario("scaling-30", "scaling", 30, 5), realtime),
    ]
    for scenario, per_execution in cases:
        [row] = run_scenario(scenario, mode="smoke")
        _check_row(row, scenario.name, 30)
        assert row["details"]["transitions"] == per_execution * 30


def test_the_five_pass_row_is_the_median_of_five_rounds():
    [row] = run_scenario(Scenario("ceap-5pass", "five-pass-ceap", 10, 10), mode="smoke")
    rounds = row["details"]["rounds_executions_per_s"]
    assert len(rounds) == 5
    assert sorted(rounds)[2] == pytest.approx(row["executions_per_s"], rel=0.01)


def test_scaling_keeps_no_history_unless_asked():
    scenario = Scenario("scaling-20", "scaling", 20, 5)
    assert run_scenario(scenario, mode="smoke")[0]["details"]["kept_histories"] is False
    assert run_scenario(scenario, mode="smoke", keep_histories=True)[0]["details"]["kept_histories"] is True


def test_retry_heavy_waits_in_virtual_time_only():
    [row] = run_scenario(Scenario("retry-heavy", "retry-heavy", 20, 5), mode="smoke")
    _check_row(row, "retry-heavy", 20)
    assert row["details"]["transitions"] == (_realtime_transitions() + len(STAGE_CALLS)) * 20
    from ceap_engine.pipeline import REALTIME

    # Four waves of five executions, each with five retry waits (Express: 2 s), none of them waited for.
    waits = sum(s.retry_policy.interval_seconds for s in REALTIME.stages)
    assert row["details"]["virtual_s"] >= (20 // 5) * waits
    assert row["details"]["wall_s"] < row["details"]["virtual_s"]


def test_a_scenario_whose_executions_fail_reports_no_number():
    async def broken(resource, parameters, context):
        raise TaskFailed("Ceap.PermanentError", "always")

    import asyncio

    from benchmarks.scenarios import PAYLOAD, _run_on_engine

    with pytest.raises(BenchmarkFailed, match="FAILED: Ceap.PermanentError"):
        asyncio.run(_run_on_engine(Scenario("x", "ceap-realtime", 5, 2), realtime_machine(), _runners(broken),
                                   execution_type=EXPRESS, clock=VirtualClock(start=0), payload=PAYLOAD))


def test_a_row_from_elsewhere_gets_every_required_key_and_keeps_the_rest_in_details():
    row = normalise_row({"name": "glue-cold", "wall_s": 12.5, "details": {"rows": 3}}, default_name="glue-job")
    assert list(row)[: len(REQUIRED_KEYS)] == list(REQUIRED_KEYS)
    assert row["name"] == "glue-cold" and row["executions_per_s"] is None and row["peak_rss_mib"] > 0
    assert row["details"] == {"rows": 3, "wall_s": 12.5}


def test_the_glue_job_hook_takes_rows_from_run_and_names_its_contract_when_missing():
    seen = []

    def run(mode):
        seen.append(mode)
        return {"executions": 1, "executions_per_s": 0.1}

    [row] = glue_job(Scenario("glue-job", "glue-job"), "quick", module=types.SimpleNamespace(run=run))
    assert seen == ["quick"] and row["name"] == "glue-job" and row["executions_per_s"] == 0.1
    with pytest.raises(BenchmarkFailed, match=r"run\(mode: str\) -> list\[dict\]"):
        glue_job(Scenario("glue-job", "glue-job"), "quick", module=types.SimpleNamespace())

"""The fastest local ASL interpreter we know, side by side with ceap: aws-local-stepfunctions.

``aws-local-stepfunctions`` 3.0.0 (npm, MIT) runs on Node; it is installed with
npm into a cache folder (``$CEAP_BENCHMARK_CACHE``, default
``~/.cache/ceap-benchmarks``) the first time a peer row runs. Without ``node``
and ``npm`` its rows say "not available" instead of failing the run.

Workloads, exactly as issue 14 measured them (Standard type, input ``{"id": i}``):

- ``5pass``: 5 Pass states, each ``Result: {"stage": S}`` and ``ResultPath: "$.S"``;
- ``5task``: 5 Tasks on plain Lambda ARNs with ``ResultPath: "$.S"`` and a Retry on
  States.ALL (IntervalSeconds 20, MaxAttempts 2, BackoffRate 2), served by a local
  async handler returning ``{"ok": true}``;
- ``realtime``: ceap's realtime workflow (Express on ceap; every Task served by a
  handler returning what the benchmark's no-op stage returns).

ceap runs each on its virtual clock with the full history kept; each side at
concurrency 1 and 1,000, in the same ``python -m benchmarks`` run.

Example::

    python -m benchmarks --quick --only ceap-peer-5pass-c1,als-5pass-c1
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from array import array
from pathlib import Path
from typing import Any

from ceap_engine.asl.definition import load_definition
from ceap_engine.asl.interpreter import EXPRESS, STANDARD
from ceap_engine.runtime.clock import VirtualClock
from ceap_engine.runtime.tasks import LambdaFunctions, TaskRunners

from .measure import Run, result_row
from .scenarios import _STAGE_RESULT, BenchmarkFailed, Scenario, _run_on_engine, _runners, noop_stage, realtime_machine

__all__ = ["PEER_PACKAGE", "five_pass", "five_task", "plan", "run_scenario"]

PEER_PACKAGE = "aws-local-stepfunctions@3.0.0"
_STAGES = ("S1", "S2", "S3", "S4", "S5")
_WARMUP = 200


def _chain(states: dict[str, dict[str, Any]]) -> dict[str, Any]:
    names = list(states)
    for i, name in enumerate(names):
        states[name].update({"Next": names[i + 1]} if i + 1 < len(names) else {"End": True})
    return {"StartAt": names[0], "States": states}


def five_pass() -> dict[str, Any]:
    """Five Pass states, each placing ``{"stage": S}`` at ``$.S``."""
    return _chain({s: {"Type": "Pass", "Result": {"stage": s}, "ResultPath": f"$.{s}"} for s in _STAGES})


def five_task() -> dict[str, Any]:
    """Five Tasks on plain Lambda ARNs with a Retry on States.ALL."""
    return _chain({s: {
        "Type": "Task", "Resource": f"arn:aws:lambda:us-east-1:123456789012:function:{s}", "ResultPath": f"$.{s}",
        "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 20, "MaxAttempts": 2, "BackoffRate": 2}],
    } for s in _STAGES})


def plan(mode: str) -> list[Scenario]:
    """The peer's scenarios and ceap's on the same workloads (``peer`` kinds).

    >>> [s.name for s in plan("full")][:2]
    ['ceap-peer-5pass-c1', 'als-5pass-c1']
    """
    counts = {"full": (5_000, 20_000), "quick": (1_000, 5_000), "smoke": (5, 20)}[mode]
    high = 1000 if mode != "smoke" else 10
    scenarios = []
    for workload in ("5pass", "5task", "realtime"):
        for concurrency, executions in ((1, counts[0]), (high, counts[1])):
            if workload == "realtime" and concurrency == 1:
                continue  # ceap's own realtime rows cover concurrency 1
            for side in ("ceap-peer", "als"):
                scenarios.append(Scenario(f"{side}-{workload}-c{concurrency}", f"peer-{side.split('-')[0]}-{workload}",
                                          executions, concurrency))
    return scenarios


# -- ceap -------------------------------------------------------------------------------------


async def _ok(event: Any, context: Any) -> Any:
    return {"ok": True}


async def _ceap(scenario: Scenario, workload: str) -> dict[str, Any]:
    if workload == "realtime":
        return await _run_on_engine(scenario, realtime_machine(), _runners(noop_stage), execution_type=EXPRESS,
                                    clock=VirtualClock(start=0), payload={"id": 0})
    runners = TaskRunners()
    functions = runners.register_lambda(LambdaFunctions())
    for stage in _STAGES:
        functions.register(stage, _ok)
    definition = five_pass() if workload == "5pass" else five_task()
    return await _run_on_engine(scenario, load_definition(definition), runners, execution_type=STANDARD,
                                clock=VirtualClock(start=0), payload={"id": 0})


# -- aws-local-stepfunctions --------------------------------------------------------------------

_DRIVER = r"""
// aws-local-stepfunctions 3 targets Node 22; Node 20 lacks only this helper.
if (!Promise.withResolvers) {
  Promise.withResolvers = function () {
    let resolve, reject;
    const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
    return { promise, resolve, reject };
  };
}
const { StateMachine } = require(process.argv[2]);
const config = JSON.parse(require('fs').readFileSync(process.argv[3], 'utf8'));
const machine = new StateMachine(config.definition);
const handlers = {};
for (const name of config.tasks) handlers[name] = async () => config.result;
const latencies = new Float64Array(config.executions);
async function drive(n, c, record) {
  let next = 0;
  async function worker() {
    while (next < n) {
      const i = next++;
      const t = process.hrtime.bigint();
      // The context object a real start would give (the realtime workflow reads $$.Execution.Name).
      const context = { Execution: { Id: `arn:aws:states:us-east-1:123456789012:execution:benchmark:e${i}`,
                                     Name: `e${i}`, Input: { id: i }, StartTime: new Date().toISOString() } };
      const execution = machine.run({ id: i }, { overrides: { taskResourceLocalHandlers: handlers }, context });
      await execution.result;
      if (record) latencies[i] = Number(process.hrtime.bigint() - t) / 1e9;
    }
  }
  await Promise.all(Array.from({ length: Math.min(c, n) }, worker));
}
(async () => {
  await drive(config.warmup, config.concurrency, false);
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await drive(config.executions, config.concurrency, true);
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  console.log(JSON.stringify({ wall_s: wall, cpu_s: (cpu.user + cpu.system) / 1e6,
                               rss_mib: process.memoryUsage().rss / 1048576, latencies: Array.from(latencies) }));
})().catch((err) => { console.error((err && err.stack) || String(err)); process.exit(1); });
"""


class PeerNotAvailable(Exception):
    """node/npm missing or the package could not be installed."""


def _cache() -> Path:
    return Path(os.environ.get("CEAP_BENCHMARK_CACHE") or Path.home() / ".cache" / "ceap-benchmarks")


def peer_module() -> Path:
    """The installed package's CommonJS entry; installs it with npm on first use."""
    folder = _cache() / PEER_PACKAGE.replace("@", "-")
    entry = folder / "node_modules" / "aws-local-stepfunctions" / "build" / "main.node.cjs"
    if entry.is_file():
        return entry
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        raise PeerNotAvailable("node and npm are not installed")
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(folder), PEER_PACKAGE],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not entry.is_file():
        raise PeerNotAvailable(f"npm install {PEER_PACKAGE} failed: {(done.stderr or done.stdout).strip()[-400:]}")
    return entry


def _task_names(definition: dict[str, Any]) -> list[str]:
    names: list[str] = []
    stack = [definition]
    while stack:
        machine = stack.pop()
        for name, state in machine.get("States", {}).items():
            if state.get("Type") == "Task":
                names.append(name)
            stack.extend(state.get("Branches") or [])
            for key in ("ItemProcessor", "Iterator"):
                if isinstance(state.get(key), dict):
                    stack.append(state[key])
    return names


def _peer(scenario: Scenario, workload: str) -> dict[str, Any]:
    try:
        entry = peer_module()
    except PeerNotAvailable as exc:
        return _not_available(scenario, str(exc))
    node_version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    if workload == "realtime":
        definition, result, states_per = realtime_machine().definition, _STAGE_RESULT, None
    else:
        definition = five_pass() if workload == "5pass" else five_task()
        result, states_per = {"ok": True}, 5
    config = {"definition": definition, "tasks": _task_names(definition), "result": result,
              "executions": scenario.executions, "concurrency": scenario.concurrency,
              "warmup": min(_WARMUP, scenario.executions)}
    with tempfile.TemporaryDirectory() as tmp:
        driver, config_file = Path(tmp) / "driver.cjs", Path(tmp) / "config.json"
        driver.write_text(_DRIVER)
        config_file.write_text(json.dumps(config))
        done = subprocess.run(["node", str(driver), str(entry), str(config_file)], capture_output=True, text=True,
                              timeout=1800)
    if done.returncode != 0:
        raise BenchmarkFailed(f"{scenario.name}: node exited {done.returncode}: {done.stderr.strip()[-600:]}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    run = Run(scenario.executions, scenario.concurrency, measured["wall_s"], array("d", measured["latencies"]),
              measured["cpu_s"])
    # Transitions: states entered (5 per execution; the realtime workflow's own count otherwise).
    transitions = scenario.executions * (states_per or _realtime_states())
    row = result_row(scenario.name, run, transitions=transitions,
                     details={"peer": PEER_PACKAGE, "node": node_version, "node_rss_mib": round(measured["rss_mib"], 1)})
    row["peak_rss_mib"] = round(measured["rss_mib"], 1)  # the node process's, not this one's
    return row


def _realtime_states() -> int:
    """States entered by one realtime execution on ceap (the peer runs the same definition)."""
    import asyncio

    from ceap_engine.asl.interpreter import Engine

    from .scenarios import state_transitions

    async def one() -> int:
        engine = Engine(clock=VirtualClock(start=0), runners=_runners(noop_stage))
        result = await engine.execute(realtime_machine(), {"id": 0}, execution_type=EXPRESS)
        return state_transitions(result.history)

    return asyncio.run(one())


def _not_available(scenario: Scenario, why: str) -> dict[str, Any]:
    return {
        "name": scenario.name, "executions": scenario.executions, "concurrency": scenario.concurrency,
        "executions_per_s": None, "transitions_per_s": None, "p50_ms": None, "p99_ms": None, "peak_rss_mib": None,
        "details": {"not_available": f"{PEER_PACKAGE}: not available ({why})"},
    }


def run_scenario(scenario: Scenario, *, mode: str, keep_histories: bool = False) -> list[dict[str, Any]]:
    """Run one ``peer-*`` scenario in this process and return its rows."""
    import asyncio

    _, side, workload = scenario.kind.split("-", 2)  # peer-<ceap|als>-<workload>
    if side == "ceap":
        return [asyncio.run(_ceap(scenario, workload))]
    return [_peer(scenario, workload)]

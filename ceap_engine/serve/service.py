"""The Step Functions API (``AWSStepFunctions.<Action>``) over the engine.

:class:`StepFunctionsService` checks each request against the API model, then answers it
from :class:`~ceap_engine.serve.machines.StateMachines` (resources) and
:class:`~ceap_engine.serve.runs.ExecutionRuns` (executions), with AWS's semantics:
StartExecution returns at once; Standard StartExecution is idempotent for the same name and
input while that execution runs; Express executions are not visible to DescribeExecution,
ListExecutions or GetExecutionHistory; StartSyncExecution (Express only) returns the result
with ``billingDetails``.

Example::

    service = StepFunctionsService(journal, engine)
    endpoint.mount("AWSStepFunctions", service.handle)
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from ceap_engine._json import loads
from ceap_engine.asl.definition import compile_definition
from ceap_engine.asl.interpreter import EXPRESS, STANDARD, Engine
from ceap_engine.errors import InputError, ValidationFailed
from ceap_engine.ports import ExecutionJournal, ExecutionRecord
from ceap_engine.runtime.mocks import MockConfig
from ceap_engine.serve.callbacks import TaskTokens, with_task_tokens
from ceap_engine.serve.endpoint import Encoded
from ceap_engine.serve.errors import ServiceError
from ceap_engine.serve.machines import StateMachines, check_name, definition_error
from ceap_engine.serve.map_runs import ServedMapRuns
from ceap_engine.serve.replies import sync_reply
from ceap_engine.serve.resume import plan_resume
from ceap_engine.serve.runs import ExecutionRuns, Run
from ceap_engine.serve.shapes import RequestShapes

__all__ = ["StepFunctionsService"]

_STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE")


def _page(items: list[Any], body: dict[str, Any], default: int = 100) -> tuple[list[Any], str | None]:
    """One page of ``items`` and the token of the next (opaque to the caller, as AWS's are)."""
    size = body.get("maxResults") or default
    start = 0
    token = body.get("nextToken")
    if token:
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode())
        except (ValueError, UnicodeDecodeError):
            raise ServiceError("InvalidToken", f"Invalid Token: '{token}'") from None
    chunk = items[start:start + size]
    more = start + size < len(items)
    return chunk, base64.urlsafe_b64encode(str(start + size).encode()).decode() if more else None


def _record_json(record: ExecutionRecord, full: bool = True) -> dict[str, Any]:
    doc: dict[str, Any] = {"executionArn": record.execution_arn, "stateMachineArn": record.state_machine_arn,
                           "name": record.name, "status": record.status, "startDate": record.start_date}
    if record.stop_date is not None:
        doc["stopDate"] = record.stop_date
    extra = record.extra
    for key in ("stateMachineVersionArn", "stateMachineAliasArn", "mapRunArn"):
        if key in extra:
            doc[key] = extra[key]
    if full:
        doc["input"] = record.input
        doc["inputDetails"] = {"included": True}
        if record.output is not None:
            doc["output"] = record.output
            doc["outputDetails"] = {"included": True}
        if record.error is not None:
            doc["error"] = record.error
        if record.cause is not None:
            doc["cause"] = record.cause
        doc["redriveCount"] = extra.get("redriveCount", 0)
        if "redriveDate" in extra:
            doc["redriveDate"] = extra["redriveDate"]
        doc["redriveStatus"] = "REDRIVABLE" if _redrivable(record) else "NOT_REDRIVABLE"
    return doc


class StepFunctionsService:
    """Every Step Functions action, as one async handler for the endpoint."""

    def __init__(self, journal: ExecutionJournal, engine: Engine, *, mock_config: MockConfig | None = None,
                 keep_express_history: bool = False, region: str = "us-east-1", account: str = "123456789012",
                 shapes: RequestShapes | None = None, wait_scale: float = 1.0, tokens: TaskTokens | None = None) -> None:
        self.journal = journal
        self.engine = engine
        self.clock = engine.clock
        self.shapes = shapes or RequestShapes.load("stepfunctions")
        self.machines = StateMachines(journal, engine, engine.clock, region=region, account=account)
        self.runs = ExecutionRuns(journal, keep_express_history=keep_express_history)
        self.map_runs = ServedMapRuns(journal)
        engine.map_runs = self.map_runs
        # ``engine.runners`` should be the CallbackRunners of these tokens, for .waitForTaskToken Tasks.
        self.tokens = tokens if tokens is not None else getattr(engine.runners, "tokens", None) or TaskTokens()
        self.mock_config = mock_config
        self.wait_scale = wait_scale
        self.rng = random.Random()
        engine.runners.register("activity", self.tokens.run_activity)
        self._actions: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any] | Encoded] | dict[str, Any]]] = {
            name[3:]: getattr(self, name) for name in dir(self) if name.startswith("do_")
        }

    async def handle(self, action: str, body: dict[str, Any]) -> tuple[int, dict[str, Any] | Encoded]:
        """The endpoint's handler: ``(action, body) -> (status, document)``."""
        method = self._actions.get(action)
        if method is None:
            known = action in self.shapes.operations
            raise ServiceError("UnknownOperationException" if not known else "UnsupportedOperation",
                               f"{'Unknown' if not known else 'Unsupported'} operation: {action}"
                               + (" (ceap serve does not implement it yet)" if known else ""))
        self.shapes.check(action, body)
        result = method(body)
        if asyncio.iscoroutine(result):
            result = await result
        return 200, result

    # -- startup ------------------------------------------------------------------------
    def register(self, name: str, definition: str, machine_type: str, engine: Engine, role_arn: str) -> str:
        """Register (or refresh) a machine the server provides itself, served by its own ``engine``."""
        arn = self.machines.arn("stateMachine", name)
        engine.map_runs = self.map_runs
        if arn in self.machines.machines:
            doc = self.machines.machines[arn]
            if self.machines.revision(doc["revisionId"]) != definition:
                self.machines.update({"stateMachineArn": arn, "definition": definition})
            self.machines.engines[arn] = engine
        else:
            self.machines.create({"name": name, "definition": definition, "type": machine_type, "roleArn": role_arn},
                                 engine=engine)
        return arn

    def resume(self) -> list[str]:
        """Go on with every execution the journal says was running (after a restart)."""
        resumed = []
        for record in self.runs.running_in_journal():
            try:
                target = self.machines.target_of_revision(record.state_machine_arn, record.extra["revisionId"])
            except (ServiceError, KeyError):
                self.journal.put_execution(_ended(record, "ABORTED", self.clock.time()))
                continue
            mocks = self._mocks(target.name, record.extra.get("testCase"))
            if record.type == EXPRESS:  # at least once, as AWS: run it again from the start
                self.journal.delete_execution(record.execution_arn)
                self.runs.start(target.engine, target.compiled, state_machine_arn=record.state_machine_arn,
                                state_machine_name=target.name, execution_type=EXPRESS, name=record.name,
                                input_value=json.loads(record.input), input_text=record.input, mocks=mocks,
                                extra=dict(record.extra))
                resumed.append(record.execution_arn)
                continue
            events = self.journal.events(record.execution_arn)
            definition = json.loads(target.definition)
            plan = plan_resume(definition, events, now=self.clock.time(), wait_scale=self.wait_scale)
            if plan is None:  # it had ended; only its record was behind
                last = events[-1]
                status = {"ExecutionSucceeded": "SUCCEEDED", "ExecutionFailed": "FAILED",
                          "ExecutionTimedOut": "TIMED_OUT"}.get(last["type"], "ABORTED")
                self.journal.put_execution(_ended(record, status, last["timestamp"]))
                continue
            # The original definition was validated; the derived one only starts elsewhere, so
            # states before the resume point are unreachable on purpose: compile, do not validate.
            self.runs.start(target.engine, compile_definition(with_task_tokens(plan.definition)), state_machine_arn=record.state_machine_arn,
                            state_machine_name=target.name, execution_type=STANDARD, name=record.name,
                            input_value=plan.input, input_text=record.input, mocks=mocks, plan=plan, record=record)
            resumed.append(record.execution_arn)
        return resumed

    def _mocks(self, machine_name: str, test_case: str | None) -> Any:
        if test_case is None:
            return None
        if self.mock_config is None:
            raise ServiceError("InvalidArn", f"Invalid Arn: a '#{test_case}' test case needs --mock-config (or SFN_MOCK_CONFIG)")
        try:
            return self.mock_config.test_case(machine_name, test_case)
        except InputError as exc:
            raise ServiceError("InvalidArn", f"Invalid Arn: {exc.problems[0].message}") from None

    # -- state machines -------------------------------------------------------------
    def do_CreateStateMachine(self, body: dict[str, Any]) -> dict[str, Any]:
        doc = self.machines.create(body)
        out = {"stateMachineArn": doc["stateMachineArn"], "creationDate": doc["creationDate"]}
        if "stateMachineVersionArn" in doc:
            out["stateMachineVersionArn"] = doc["stateMachineVersionArn"]
        return out

    def do_DescribeStateMachine(self, body: dict[str, Any]) -> dict[str, Any]:
        arn = body["stateMachineArn"]
        parts = self.machines.check_arn(arn)
        if len(parts) == 8:  # a version or alias ARN
            if parts[7].isdigit():
                version = self.machines.version(arn)
                doc = self.machines.machine(version["stateMachineArn"])
                return self._describe(doc, version["revisionId"]) | {"stateMachineArn": arn,
                                                                      "description": version.get("description", "")}
            target = self.machines.resolve(arn, self.rng)
            return self._describe(target.machine, target.revision_id)
        doc = self.machines.machine(arn)
        return self._describe(doc, doc["revisionId"])

    def _describe(self, doc: dict[str, Any], revision_id: str) -> dict[str, Any]:
        return {"stateMachineArn": doc["stateMachineArn"], "name": doc["name"], "status": "ACTIVE",
                "definition": self.machines.revision(revision_id), "roleArn": doc["roleArn"], "type": doc["type"],
                "creationDate": doc["creationDate"], "loggingConfiguration": doc["loggingConfiguration"],
                "tracingConfiguration": doc["tracingConfiguration"], "revisionId": revision_id,
                "description": doc.get("description", "")}

    def do_UpdateStateMachine(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.machines.update(body)

    def do_DeleteStateMachine(self, body: dict[str, Any]) -> dict[str, Any]:
        self.machines.delete(body["stateMachineArn"])
        return {}

    def do_ListStateMachines(self, body: dict[str, Any]) -> dict[str, Any]:
        items = [{"stateMachineArn": d["stateMachineArn"], "name": d["name"], "type": d["type"],
                  "creationDate": d["creationDate"]} for d in sorted(self.machines.machines.values(), key=lambda d: d["name"])]
        page, token = _page(items, body)
        return {"stateMachines": page} | ({"nextToken": token} if token else {})

    def do_ValidateStateMachineDefinition(self, body: dict[str, Any]) -> dict[str, Any]:
        problems = validate_definition_problems(body["definition"], body.get("type", STANDARD))
        limit = body.get("maxResults") or 100
        diagnostics = [{"severity": "ERROR", "code": p.code, "message": p.message, "location": p.path}
                       for p in problems[:limit]]
        return {"result": "FAIL" if problems else "OK", "diagnostics": diagnostics, "truncated": len(problems) > limit}

    async def do_TestState(self, body: dict[str, Any]) -> dict[str, Any]:
        from ceap_engine.conformance.teststate import (
            TestStateRejected,
            TestStateRequest,
            run_test_state,
        )

        try:
            return await run_test_state(TestStateRequest.from_api(body), runners=self.engine.runners)
        except TestStateRejected as exc:
            raise ServiceError("ValidationException", str(exc)) from None
        except ValidationFailed as exc:
            raise definition_error(exc.problems) from None

    # -- versions and aliases -------------------------------------------------------------
    def do_PublishStateMachineVersion(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.machines.publish(body["stateMachineArn"], body.get("description", ""), body.get("revisionId"))

    def do_ListStateMachineVersions(self, body: dict[str, Any]) -> dict[str, Any]:
        arn = body["stateMachineArn"]
        self.machines.machine(arn)
        versions = [{"stateMachineVersionArn": v["stateMachineVersionArn"], "creationDate": v["creationDate"]}
                    for v in self.machines.versions.values() if v["stateMachineArn"] == arn]
        versions.reverse()  # newest first, as AWS lists them
        page, token = _page(versions, body)
        return {"stateMachineVersions": page} | ({"nextToken": token} if token else {})

    def do_DeleteStateMachineVersion(self, body: dict[str, Any]) -> dict[str, Any]:
        self.machines.delete_version(body["stateMachineVersionArn"])
        return {}

    def do_CreateStateMachineAlias(self, body: dict[str, Any]) -> dict[str, Any]:
        alias = self.machines.put_alias(body, update=False)
        return {"stateMachineAliasArn": alias["stateMachineAliasArn"], "creationDate": alias["creationDate"]}

    def do_UpdateStateMachineAlias(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"updateDate": self.machines.put_alias(body, update=True)["updateDate"]}

    def do_DescribeStateMachineAlias(self, body: dict[str, Any]) -> dict[str, Any]:
        alias = self.machines.alias(body["stateMachineAliasArn"])
        return {k: alias[k] for k in ("stateMachineAliasArn", "name", "description", "routingConfiguration",
                                      "creationDate", "updateDate") if k in alias}

    def do_DeleteStateMachineAlias(self, body: dict[str, Any]) -> dict[str, Any]:
        self.machines.delete_alias(body["stateMachineAliasArn"])
        return {}

    def do_ListStateMachineAliases(self, body: dict[str, Any]) -> dict[str, Any]:
        arn = body["stateMachineArn"]
        self.machines.machine(arn)
        aliases = [{"stateMachineAliasArn": a["stateMachineAliasArn"], "creationDate": a["creationDate"]}
                   for a in self.machines.aliases.values() if a["stateMachineAliasArn"].rsplit(":", 1)[0] == arn]
        page, token = _page(aliases, body)
        return {"stateMachineAliases": page} | ({"nextToken": token} if token else {})

    # -- executions -----------------------------------------------------------------------
    def _start(self, body: dict[str, Any], *, sync: bool, durable: bool = False) -> Any:
        """Start what ``body`` asks for: ``(run or None if already running, record)``; a sync one not
        ``durable`` gives an awaitable of its record at the end instead (StartSyncExecution: nothing to track)."""
        arn, _, test_case = body["stateMachineArn"].partition("#")
        target = self.machines.resolve(arn, self.rng)
        if sync and target.type != EXPRESS:
            raise ServiceError("StateMachineTypeNotSupported",
                               "This operation is not supported by this type of state machine")
        mocks = self._mocks(target.name, test_case or None)
        name = check_name(body["name"], "Name") if "name" in body else None
        input_text = body.get("input", "{}")
        try:
            value = loads(input_text)
        except json.JSONDecodeError as exc:
            raise ServiceError("InvalidExecutionInput", f"Invalid State Machine Execution Input: '{exc}'") from None
        if name is not None and target.type == STANDARD:
            kind = "execution"
            existing = self.runs.record(f"{self.machines.arn(kind, target.name)}:{name}")
            if existing is not None:
                if existing.status == "RUNNING" and existing.input == input_text:
                    return None, existing  # idempotent while it runs, as AWS
                raise ServiceError("ExecutionAlreadyExists", f"Execution Already Exists: '{existing.execution_arn}'")
        extra: dict[str, Any] = {"revisionId": target.revision_id}
        if target.version_arn:
            extra["stateMachineVersionArn"] = target.version_arn
        if target.alias_arn:
            extra["stateMachineAliasArn"] = target.alias_arn
        if test_case:
            extra["testCase"] = test_case
        try:
            if sync and not durable:
                return self.runs.run_sync(target.engine, target.compiled, state_machine_arn=target.arn,
                                          state_machine_name=target.name, execution_type=target.type, name=name,
                                          input_value=value, input_text=input_text, mocks=mocks, extra=extra)
            run = self.runs.start(target.engine, target.compiled, state_machine_arn=target.arn,
                                  state_machine_name=target.name, execution_type=target.type, name=name,
                                  input_value=value, input_text=input_text, mocks=mocks, extra=extra, sync=sync,
                                  durable=durable)
        except InputError as exc:
            message = "; ".join(p.message for p in exc.problems)
            code = "InvalidExecutionInput" if any(p.path == "/input" for p in exc.problems) else "ValidationException"
            raise ServiceError(code, message) from None
        return run, run.record

    def start_execution(self, state_machine_arn: str, input_text: str, *, sync: bool) -> Run:
        """Start an execution as StartExecution (``sync``: StartSyncExecution) does, for a Pipe of this server.

        A sync one is journaled while it runs (see :mod:`ceap_engine.serve.runs`): a crash of the
        server takes the Pipe down with "Step Functions", and the execution runs again after the
        restart instead of being lost. ``await run.finished`` for the end.
        """
        if not sync:
            self.runs.start_flusher()
        run, _ = self._start({"stateMachineArn": state_machine_arn, "input": input_text}, sync=sync, durable=True)
        assert run is not None  # only a named Standard start can find its execution already running
        return run

    def do_StartExecution(self, body: dict[str, Any]) -> dict[str, Any]:
        self.runs.start_flusher()
        _, record = self._start(body, sync=False)
        return {"executionArn": record.execution_arn, "startDate": record.start_date}

    async def do_StartSyncExecution(self, body: dict[str, Any]) -> Encoded:
        # DescribeExecution's members without the redrive ones, and billingDetails: written as JSON at once.
        return sync_reply(await self._start(body, sync=True))

    def _visible(self, arn: str, *, history: bool = False) -> ExecutionRecord:
        """The execution an API call names (``history``: its events are asked for, which Express has not)."""
        parts = self.machines.check_arn(arn, ("execution", "express"))
        if len(parts) == 8 and "/" in parts[6]:  # a Distributed Map's child: Express ones are shown too
            child = self.map_runs.record(arn)
            if child is None:
                raise ServiceError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'")
            if history and child.type == EXPRESS and not self.runs.keep_express_history:
                raise ServiceError("InvalidArn", "Invalid Arn: 'Resource type not valid in this context: express'")
            return child
        if parts[5] == "express" and not self.runs.keep_express_history:
            raise ServiceError("InvalidArn", "Invalid Arn: 'Resource type not valid in this context: express'")
        record = self.runs.record(arn)
        if record is None or (record.type == EXPRESS and not self.runs.keep_express_history):
            raise ServiceError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'")
        return record

    def do_DescribeExecution(self, body: dict[str, Any]) -> dict[str, Any]:
        return _record_json(self._visible(body["executionArn"]))

    def do_DescribeStateMachineForExecution(self, body: dict[str, Any]) -> dict[str, Any]:
        record = self._visible(body["executionArn"])
        doc = self.machines.machines.get(record.state_machine_arn)
        revision = record.extra.get("revisionId")
        if doc is None or revision is None:
            raise ServiceError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{body['executionArn']}'")
        out = self._describe(doc, revision)
        return {k: out[k] for k in ("stateMachineArn", "name", "definition", "roleArn", "loggingConfiguration",
                                    "tracingConfiguration", "revisionId")} | {"updateDate": doc.get("updateDate", doc["creationDate"])}

    def do_StopExecution(self, body: dict[str, Any]) -> dict[str, Any]:
        record = self._visible(body["executionArn"])
        run = self.runs.live.get(record.execution_arn)
        if run is None or record.status != "RUNNING":
            raise ServiceError("ValidationException", f"Execution is not running: '{record.execution_arn}'")
        run.execution.stop()
        return {"stopDate": self.clock.time()}

    def do_ListExecutions(self, body: dict[str, Any]) -> dict[str, Any]:
        if "mapRunArn" in body and "stateMachineArn" in body:
            raise ServiceError("ValidationException", "Specify either a stateMachineArn or a mapRunArn, not both")
        if "mapRunArn" in body:
            children = self.map_runs.executions(body["mapRunArn"], body.get("statusFilter"))
            page, token = _page([_record_json(r, full=False) for r in children], body)
            return {"executions": page} | ({"nextToken": token} if token else {})
        if "stateMachineArn" not in body:
            raise ServiceError("ValidationException", "Must specify either a stateMachineArn or a mapRunArn")
        arn = body["stateMachineArn"]
        parts = self.machines.check_arn(arn)
        machine_arn = ":".join(parts[:7])
        doc = self.machines.machine(machine_arn)
        if doc["type"] == EXPRESS and not self.runs.keep_express_history:
            raise ServiceError("StateMachineTypeNotSupported", "This operation is not supported by this type of state machine")
        records = self.journal.list_executions(machine_arn, body.get("statusFilter"))
        if len(parts) == 8:
            key = "stateMachineVersionArn" if parts[7].isdigit() else "stateMachineAliasArn"
            records = [r for r in records if r.extra.get(key) == arn]
        page, token = _page([_record_json(r, full=False) for r in records], body)
        return {"executions": page} | ({"nextToken": token} if token else {})

    def do_GetExecutionHistory(self, body: dict[str, Any]) -> dict[str, Any]:
        record = self._visible(body["executionArn"], history=True)
        if "mapRunArn" in record.extra:
            events = self.map_runs.history(record.execution_arn)
        else:
            events = self.runs.history(record.execution_arn)
        if body.get("reverseOrder"):
            events.reverse()
        if body.get("includeExecutionData") is False:
            for event in events:
                for key, details in event.items():
                    if key.endswith("EventDetails") and isinstance(details, dict):
                        for field in ("input", "output"):
                            details.pop(field, None)
        page, token = _page(events, body)
        return {"events": page} | ({"nextToken": token} if token else {})

    def do_RedriveExecution(self, body: dict[str, Any]) -> dict[str, Any]:
        """Run a FAILED, TIMED_OUT or ABORTED Standard execution on from the state that did not finish."""
        record = self._visible(body["executionArn"])
        if not _redrivable(record):
            raise ServiceError("ExecutionNotRedrivable", f"Execution is not redrivable: '{record.execution_arn}' "
                               f"(status {record.status}; only FAILED, TIMED_OUT or ABORTED Standard executions are)")
        target = self.machines.target_of_revision(record.state_machine_arn, record.extra["revisionId"])
        events = self.journal.events(record.execution_arn)
        count = int(record.extra.get("redriveCount", 0)) + 1
        now = self.clock.time()
        redriven = {"timestamp": now, "type": "ExecutionRedriven", "id": events[-1]["id"] + 1,
                    "previousEventId": events[-1]["id"], "executionRedrivenEventDetails": {"redriveCount": count}}
        self.journal.append_events(record.execution_arn, [redriven])
        plan = plan_resume(json.loads(target.definition), [*events, redriven], now=now, wait_scale=self.wait_scale)
        assert plan is not None  # the last event is ExecutionRedriven, never terminal
        again = replace(record, status="RUNNING", stop_date=None, output=None, error=None, cause=None,
                        extra={**record.extra, "redriveCount": count, "redriveDate": now})
        self.runs.start_flusher()
        self.runs.start(target.engine, compile_definition(with_task_tokens(plan.definition)),
                        state_machine_arn=record.state_machine_arn, state_machine_name=target.name,
                        execution_type=STANDARD, name=record.name, input_value=plan.input, input_text=record.input,
                        mocks=self._mocks(target.name, record.extra.get("testCase")), plan=plan, record=again)
        return {"redriveDate": now}

    # -- callbacks and activities -----------------------------------------------------------
    def do_SendTaskSuccess(self, body: dict[str, Any]) -> dict[str, Any]:
        self.tokens.succeed(body["taskToken"], body["output"])
        return {}

    def do_SendTaskFailure(self, body: dict[str, Any]) -> dict[str, Any]:
        self.tokens.fail(body["taskToken"], body.get("error"), body.get("cause"))
        return {}

    def do_SendTaskHeartbeat(self, body: dict[str, Any]) -> dict[str, Any]:
        self.tokens.heartbeat(body["taskToken"])
        return {}

    def do_CreateActivity(self, body: dict[str, Any]) -> dict[str, Any]:
        doc = self.machines.create_activity(body)
        return {"activityArn": doc["activityArn"], "creationDate": doc["creationDate"]}

    def do_DescribeActivity(self, body: dict[str, Any]) -> dict[str, Any]:
        doc = self.machines.activity(body["activityArn"])
        return {"activityArn": doc["activityArn"], "name": doc["name"], "creationDate": doc["creationDate"]}

    def do_DeleteActivity(self, body: dict[str, Any]) -> dict[str, Any]:
        self.machines.delete_activity(body["activityArn"])
        self.tokens.forget_activity(body["activityArn"])
        return {}

    def do_ListActivities(self, body: dict[str, Any]) -> dict[str, Any]:
        items = [{"activityArn": d["activityArn"], "name": d["name"], "creationDate": d["creationDate"]}
                 for d in self.machines.activities.values()]
        page, token = _page(items, body)
        return {"activities": page} | ({"nextToken": token} if token else {})

    async def do_GetActivityTask(self, body: dict[str, Any]) -> dict[str, Any]:
        arn = body["activityArn"]
        self.machines.activity(arn)
        task = await self.tokens.poll(arn, wait_seconds=60.0)
        if task is None:
            return {}
        return {"taskToken": task[0], "input": task[1]}

    # -- map runs ------------------------------------------------------------------------
    def do_ListMapRuns(self, body: dict[str, Any]) -> dict[str, Any]:
        """The Distributed Map runs of an execution, read from its history (MapRunStarted/Succeeded/Failed)."""
        record = self._visible(body["executionArn"])
        runs = []
        for event in self.runs.history(record.execution_arn):
            if event["type"] == "MapRunStarted":
                arn = event["mapRunStartedEventDetails"]["mapRunArn"]
                runs.append({"executionArn": record.execution_arn, "mapRunArn": arn,
                             "stateMachineArn": arn.split("/")[0].replace(":mapRun:", ":stateMachine:"),
                             "startDate": event["timestamp"]})
            elif event["type"] in ("MapRunSucceeded", "MapRunFailed", "MapRunAborted") and runs:
                runs[-1].setdefault("stopDate", event["timestamp"])
        page, token = _page(runs, body)
        return {"mapRuns": page} | ({"nextToken": token} if token else {})

    def do_DescribeMapRun(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.map_runs.describe(body["mapRunArn"])

    def do_UpdateMapRun(self, body: dict[str, Any]) -> dict[str, Any]:
        """Change a running map run's maxConcurrency and tolerated failures (children waiting start at once)."""
        self.map_runs.update(body)
        return {}

    # -- tags -----------------------------------------------------------------------------
    def do_TagResource(self, body: dict[str, Any]) -> dict[str, Any]:
        tags = self.machines.tags(body["resourceArn"])
        tags.update({t["key"]: t.get("value", "") for t in body["tags"]})
        self.machines.set_tags(body["resourceArn"], tags)
        return {}

    def do_UntagResource(self, body: dict[str, Any]) -> dict[str, Any]:
        tags = self.machines.tags(body["resourceArn"])
        for key in body["tagKeys"]:
            tags.pop(key, None)
        self.machines.set_tags(body["resourceArn"], tags)
        return {}

    def do_ListTagsForResource(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"tags": [{"key": k, "value": v} for k, v in self.machines.tags(body["resourceArn"]).items()]}


def validate_definition_problems(definition: str, machine_type: str) -> list[Any]:
    from ceap_engine.asl.definition import load_definition, validate_definition

    problems = validate_definition(definition)
    if not problems and machine_type == EXPRESS:
        problems = list(load_definition(definition).express_problems)
    return problems


def _ended(record: ExecutionRecord, status: str, at: float) -> ExecutionRecord:
    return replace(record, status=status, stop_date=at)


def _redrivable(record: ExecutionRecord) -> bool:
    """AWS redrives Standard executions that FAILED, TIMED_OUT or were ABORTED, up to 1,000 times."""
    return (record.type == STANDARD and record.status in ("FAILED", "TIMED_OUT", "ABORTED")
            and "revisionId" in record.extra and int(record.extra.get("redriveCount", 0)) < 1000)

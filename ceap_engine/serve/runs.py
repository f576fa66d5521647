"""Executions the server runs: starting, journaling, finishing, resuming after a restart.

What is kept where, as AWS keeps it:

- **Standard**: record and every history event go to the :class:`ExecutionJournal` as they
  happen (a flusher writes new events every 50 ms, and before every read), so a
  ``kill -9`` loses at most the last 50 ms of events - the in-flight state re-runs.
- **Express, asynchronous** (StartExecution): the record is journaled while it runs, so
  after a crash it runs again from the start (at least once, as AWS runs Express), then
  forgotten: Express executions are seen through logs, not the API.
- **Express, synchronous** (StartSyncExecution): never journaled; a crash drops the caller's
  connection and the execution with it (at most once) - except those a Pipe of the server
  starts (``durable``): journaled while they run like asynchronous ones, so after a crash they
  run again under their name, as the Step Functions service would have finished them without
  the Pipe.

``keep_express_history`` keeps finished Express executions (record and events) too.

Example::

    runs = ExecutionRuns(journal)
    run = runs.start(entry, entry.compiled, name="e1", input_value={}, input_text="{}")
    await run.finished
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ceap_engine._json import compact_json
from ceap_engine.asl.definition import StateMachine
from ceap_engine.asl.interpreter import STANDARD, Engine, Execution
from ceap_engine.ports import ExecutionJournal, ExecutionRecord
from ceap_engine.serve.resume import ResumePlan

__all__ = ["ExecutionRuns", "Run"]

FLUSH_SECONDS = 0.05
_log = logging.getLogger("ceap.serve")


async def _ended(execution: Execution, state_machine_arn: str, input_text: str, extra: dict[str, Any]) -> ExecutionRecord:
    # Run in the request's task: uvicorn does not cancel it when the client goes (the execution
    # ends all the same); a server shutting down does, and the execution is lost with the caller.
    await execution.run()
    status = execution.status
    return ExecutionRecord(execution.arn, state_machine_arn, execution.name, execution.type, status,
                           execution.start_time, input_text, execution.stop_time,
                           compact_json(execution.output) if status == "SUCCEEDED" else None,
                           execution.error, execution.cause, extra)


async def _record_at_end(run: Run) -> ExecutionRecord:
    await asyncio.shield(run.finished)
    return run.record


@dataclass
class Run:
    """One execution in this process: the engine's :class:`Execution` and what is journaled of it."""

    record: ExecutionRecord
    execution: Execution
    journaled: bool  # record (and, for Standard or kept Express, events) in the journal
    events_journaled: bool
    plan: ResumePlan | None = None
    consumed: int = 0  # rows of execution.history already written
    finished: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class ExecutionRuns:
    """The running executions, and their journal."""

    def __init__(self, journal: ExecutionJournal, *, keep_express_history: bool = False) -> None:
        self.journal = journal
        self.keep_express_history = keep_express_history
        self.live: dict[str, Run] = {}
        self._flusher: asyncio.Task | None = None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Called with every finished run it tracks (a StartSyncExecution nothing journals is no Run).
        self.on_finish: list[Callable[[Run], None]] = []

    # -- lifecycle -----------------------------------------------------------------
    def start_flusher(self) -> None:
        if self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush_forever())

    async def close(self) -> None:
        """Write what is pending; running executions stay RUNNING in the journal (resumed at next start)."""
        self._closed = True  # executions cancelled by the shutdown are not ABORTED: they resume
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        for run in list(self.live.values()):
            if run.events_journaled:
                self.flush(run)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            for run in list(self.live.values()):
                if run.events_journaled and run.consumed < len(run.execution.history):
                    try:
                        self.flush(run)
                    except Exception:  # noqa: BLE001 - keep flushing the others; the next read retries
                        _log.exception("journal write failed for %s", run.record.execution_arn)

    # -- start ---------------------------------------------------------------------
    def start(self, engine: Engine, machine: StateMachine, *, state_machine_arn: str, state_machine_name: str,
              execution_type: str, name: str | None, input_value: Any, input_text: str, mocks: Any = None,
              extra: dict[str, Any] | None = None, sync: bool = False, plan: ResumePlan | None = None,
              record: ExecutionRecord | None = None, durable: bool = False) -> Run:
        """Start an execution (``plan``/``record``: resume a journaled one; ``durable``: journal a sync one)."""
        execution = engine.start(machine, input_value, name=name, state_machine_name=state_machine_name,
                                 execution_type=execution_type, input_text=None if plan else input_text, mocks=mocks)
        if record is None:
            record = ExecutionRecord(
                execution_arn=execution.arn, state_machine_arn=state_machine_arn, name=execution.name,
                type=execution_type, status="RUNNING", start_date=execution.start_time, input=input_text,
                extra=dict(extra or {}),
            )
        standard = execution_type == STANDARD
        keep = standard or self.keep_express_history
        run = Run(record, execution, journaled=keep or not sync or durable, events_journaled=keep, plan=plan)
        if run.journaled:
            self.journal.put_execution(record)
            self.live[record.execution_arn] = run
        assert execution.task is not None
        execution.task.add_done_callback(lambda _task: self._finish(run))
        return run

    def run_sync(self, engine: Engine, machine: StateMachine, *, state_machine_arn: str, state_machine_name: str,
                 execution_type: str, name: str | None, input_value: Any, input_text: str, mocks: Any = None,
                 extra: dict[str, Any] | None = None) -> Awaitable[ExecutionRecord]:
        """Start a StartSyncExecution (errors raise here); await the result for its record at the end.

        Nothing is journaled unless ``keep_express_history`` (at most once: a crash loses it),
        so it is only the engine's execution, run in the awaiting task - no task of its own, no
        :class:`Run`, no record until it ended.
        """
        if self.keep_express_history:
            run = self.start(engine, machine, state_machine_arn=state_machine_arn, state_machine_name=state_machine_name,
                             execution_type=execution_type, name=name, input_value=input_value, input_text=input_text,
                             mocks=mocks, extra=extra, sync=True)
            return _record_at_end(run)
        loop = self._loop
        if loop is None or not loop.is_running():  # the server's loop, looked up once (a system call on 3.11)
            loop = self._loop = asyncio.get_running_loop()
        execution = engine.prepare(machine, input_value, name=name, state_machine_name=state_machine_name,
                                   execution_type=execution_type, input_text=input_text, mocks=mocks, loop=loop)
        return _ended(execution, state_machine_arn, input_text, extra or {})

    def _finish(self, run: Run) -> None:
        if self._closed:
            return
        execution = run.execution
        status = execution.status
        output = compact_json(execution.output) if status == "SUCCEEDED" else None
        run.record = replace(run.record, status=status, stop_date=execution.stop_time, output=output,
                             error=execution.error, cause=execution.cause)
        try:
            if run.events_journaled:
                self.flush(run)
                self.journal.put_execution(run.record)
            elif run.journaled:
                self.journal.delete_execution(run.record.execution_arn)  # Express: seen through logs only
        except Exception:  # noqa: BLE001 - the caller still gets its result; the journal keeps RUNNING
            _log.exception("journal write failed for %s", run.record.execution_arn)
        self.live.pop(run.record.execution_arn, None)
        for hook in self.on_finish:
            hook(run)
        if not run.finished.done():
            run.finished.set_result(run)

    # -- journal -------------------------------------------------------------------
    def flush(self, run: Run) -> None:
        """Write the run's new history events to the journal."""
        events = run.execution.history.events
        if run.consumed >= len(events):
            return
        rendered = [e.to_aws("epoch") for e in events[run.consumed:]]
        if run.plan is not None:
            rendered = [r for r in (run.plan.renumber(e) for e in rendered) if r is not None]
        self.journal.append_events(run.record.execution_arn, rendered)
        run.consumed = len(events)

    def flush_arn(self, execution_arn: str) -> None:
        run = self.live.get(execution_arn)
        if run is not None and run.events_journaled:
            self.flush(run)

    def record(self, execution_arn: str) -> ExecutionRecord | None:
        run = self.live.get(execution_arn)
        return run.record if run is not None else self.journal.get_execution(execution_arn)

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        """Every event of a journaled execution (flushed first, so a running one is current)."""
        self.flush_arn(execution_arn)
        return self.journal.events(execution_arn)

    def running_in_journal(self) -> list[ExecutionRecord]:
        """Executions the journal says are running but this process does not run (after a restart)."""
        return [r for r in self.journal.list_executions(status="RUNNING") if r.execution_arn not in self.live]



"""The Pipes of ``ceap serve``: each workflow's queue starts executions on the served engine, as on AWS.

For every workflow the server registers, :class:`ServedPipes` creates its queue and DLQ
(names from :mod:`ceap_engine.pipeline.names`, settings from the spec's ``queue``) and runs a
:class:`~ceap_engine.queueing.pipe.Pipe` over the queue whose target is the served state
machine - the deployed ``AWS::Pipes::Pipe``'s call, made in-process:

* Express, ``REQUEST_RESPONSE``: StartSyncExecution; the message is deleted when the execution
  SUCCEEDED, else it comes back after the visibility timeout and, after ``maxReceiveCount``
  receives, is in the DLQ. Like every synchronous Express execution it is not journaled: a
  crash loses the execution, not the message (it is still in the queue, in flight).
* Standard, ``FIRE_AND_FORGET``: StartExecution (journaled, resumed after a restart); the
  message is deleted once the execution started, and a failed execution is a FAILED
  execution of ListExecutions - never a DLQ message, as on AWS.

Example::

    pipes = ServedPipes(queues, service, clock=clock)
    await pipes.add(REALTIME, "arn:aws:states:us-east-1:123456789012:stateMachine:Ceap-realtime-Workflow")
    pipes.start()
    ...
    await pipes.stop()
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from ceap_engine.asl.interpreter import EXPRESS
from ceap_engine.ports import Activity, Clock, Queues
from ceap_engine.queueing.pipe import STARTED, Pipe, create_workflow_queues, wake_on_end

__all__ = ["PIPE_POLLERS", "ServedMachineTarget", "ServedPipes"]

PIPE_POLLERS = 5
"""Pollers per queue: each Express message holds one until its execution ends (Pipes runs several too)."""
_log = logging.getLogger("ceap.serve")


class ServedMachineTarget:
    """A :class:`~ceap_engine.queueing.pipe.PipeTarget`: one execution of a served state machine per call."""

    def __init__(self, service: Any, state_machine_arn: str) -> None:
        self.service = service
        self.state_machine_arn = state_machine_arn
        self.express = service.machines.machine(state_machine_arn)["type"] == EXPRESS

    async def __call__(self, execution_input: Any, hold: Activity) -> str:
        text = json.dumps(execution_input, separators=(",", ":"), ensure_ascii=False)
        run = self.service.start_execution(self.state_machine_arn, text, sync=self.express)
        if not self.express:
            return STARTED
        wake_on_end(run.execution, hold)
        await asyncio.shield(run.finished)
        return str(run.record.status)


class ServedPipes:
    """One Pipe per served workflow, polling until :meth:`stop`."""

    def __init__(self, queues: Queues, service: Any, *, clock: Clock, pollers: int = PIPE_POLLERS,
                 region: str = "us-east-1", account: str = "123456789012") -> None:
        self.queues = queues
        self.service = service
        self.clock = clock
        self.pollers = pollers
        self.region = region
        self.account = account
        self.pipes: list[Pipe] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def add(self, spec: Any, state_machine_arn: str) -> Pipe:
        """The Pipe from ``spec``'s queue (created with the spec's settings if needed) to ``state_machine_arn``."""
        queue, _ = await create_workflow_queues(self.queues, spec)
        pipe = Pipe(self.queues, queue, ServedMachineTarget(self.service, state_machine_arn), clock=self.clock,
                    spec_type=spec.type, pollers=self.pollers, region=self.region, account=self.account)
        self.pipes.append(pipe)
        return pipe

    def start(self) -> None:
        for pipe in self.pipes:
            task = asyncio.ensure_future(pipe.run())
            task.add_done_callback(_report)
            self._tasks.append(task)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop polling; a message still being handled after ``grace`` seconds comes back after its visibility timeout."""
        for pipe in self.pipes:
            pipe.stop()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


def _report(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error("a Pipe stopped: %r", task.exception(), exc_info=task.exception())

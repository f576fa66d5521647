"""Task tokens and activities: the work an execution waits on until an API call ends it.

An activity Task puts ``(token, input)`` on its activity's queue and waits;
``GetActivityTask`` (long polling, up to 60 s as on AWS) hands it to a worker, and
``SendTaskSuccess`` / ``SendTaskFailure`` / ``SendTaskHeartbeat`` with that token end it
or keep it alive. While a task waits on a worker its execution counts as busy, so a
virtual clock does not skip time past it.

Example::

    tasks = TaskTokens()
    runners.register("activity", tasks.run_activity)
    token, input_text = await tasks.poll(activity_arn, wait_seconds=60)
    tasks.succeed(token, '{"ok": true}')
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from ceap_engine.ports import ResourceInfo, TaskContext
from ceap_engine.runtime.tasks import TaskFailed
from ceap_engine.serve.errors import ServiceError

__all__ = ["TaskTokens"]


@dataclass
class _Waiting:
    future: asyncio.Future
    context: TaskContext
    execution_arn: str


@dataclass
class _Queue:
    items: asyncio.Queue = field(default_factory=asyncio.Queue)


class TaskTokens:
    """Open task tokens, and the queue of each activity."""

    def __init__(self) -> None:
        self._open: dict[str, _Waiting] = {}
        self._queues: dict[str, _Queue] = {}

    def _queue(self, activity_arn: str) -> _Queue:
        queue = self._queues.get(activity_arn)
        if queue is None:
            queue = self._queues[activity_arn] = _Queue()
        return queue

    def issue(self, context: TaskContext) -> tuple[str, asyncio.Future]:
        """A new token for the task of ``context``, and the future its Send* call resolves."""
        token = uuid.uuid4().hex + uuid.uuid4().hex  # opaque, unguessable, like AWS's
        future = asyncio.get_running_loop().create_future()
        self._open[token] = _Waiting(future, context, context.execution_arn)
        return token, future

    async def wait(self, token: str, future: asyncio.Future) -> Any:
        try:
            return await future
        finally:
            self._open.pop(token, None)

    async def run_activity(self, resource: ResourceInfo, parameters: Any, context: TaskContext) -> Any:
        """The runner of ``arn:aws:states:...:activity:NAME`` Task states."""
        token, future = self.issue(context)
        self._queue(resource.arn).items.put_nowait((token, json.dumps(parameters, separators=(",", ":"))))
        return await self.wait(token, future)

    async def poll(self, activity_arn: str, wait_seconds: float = 60.0) -> tuple[str, str] | None:
        """The next task of an activity, waiting up to ``wait_seconds``; ``None`` if none came."""
        queue = self._queue(activity_arn).items
        while True:
            try:
                token, input_text = await asyncio.wait_for(queue.get(), wait_seconds)
            except TimeoutError:
                return None
            if token in self._open:  # a task whose execution stopped meanwhile is skipped
                return token, input_text

    def forget_activity(self, activity_arn: str) -> None:
        self._queues.pop(activity_arn, None)

    def _waiting(self, token: str) -> _Waiting:
        if not isinstance(token, str) or len(token) < 1:
            raise ServiceError("InvalidToken", "Invalid token")
        waiting = self._open.get(token)
        if waiting is None or waiting.future.done():
            raise ServiceError("TaskDoesNotExist", "Task Timed Out: 'Provided task does not exist anymore'")
        return waiting

    def succeed(self, token: str, output: str) -> None:
        waiting = self._waiting(token)
        try:
            value = json.loads(output)
        except json.JSONDecodeError as exc:
            raise ServiceError("InvalidOutput", f"Invalid Output: '{exc}'") from None
        waiting.future.set_result(value)

    def fail(self, token: str, error: str | None, cause: str | None) -> None:
        self._waiting(token).future.set_exception(TaskFailed(error or "", cause or ""))

    def heartbeat(self, token: str) -> None:
        self._waiting(token).context.heartbeat()

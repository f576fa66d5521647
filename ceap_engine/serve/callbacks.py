"""Task tokens and activities: the work an execution waits on until an API call ends it.

An activity Task puts ``(token, input)`` on its activity's queue and waits;
``GetActivityTask`` (long polling, up to 60 s as on AWS) hands it to a worker, and
``SendTaskSuccess`` / ``SendTaskFailure`` / ``SendTaskHeartbeat`` with that token end it
or keep it alive. While a task waits on a worker its execution counts as busy, so a
virtual clock does not skip time past it.

``.waitForTaskToken`` Tasks get their token through :func:`with_task_tokens` and wait
through :class:`CallbackRunners`.

Example::

    tasks = TaskTokens()
    runners.register("activity", tasks.run_activity)
    token, input_text = await tasks.poll(activity_arn, wait_seconds=60)
    tasks.succeed(token, '{"ok": true}')
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from ceap_engine.ports import ResourceInfo, TaskContext, TaskRunner
from ceap_engine.runtime.tasks import TaskFailed, TaskRunners
from ceap_engine.serve.errors import ServiceError

__all__ = ["CallbackRunners", "TaskTokens", "tokens_in", "with_task_tokens"]


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
        return token, self.register(token, context)

    def register(self, token: str, context: TaskContext) -> asyncio.Future:
        """Open ``token`` for the task of ``context``; the future its Send* call resolves."""
        future = asyncio.get_running_loop().create_future()
        self._open[token] = _Waiting(future, context, context.execution_arn)
        return future

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


# -- .waitForTaskToken -------------------------------------------------------------------
TOKEN_PREFIX = "ceap-token-"
_TOKEN_RE = re.compile(re.escape(TOKEN_PREFIX) + r"[0-9a-f-]{36}")
_JSONPATH_TOKEN = f"States.Format('{TOKEN_PREFIX}{{}}', States.UUID())"
_JSONATA_TOKEN = f"('{TOKEN_PREFIX}' & $uuid())"


def with_task_tokens(definition: dict[str, Any]) -> dict[str, Any]:
    """The definition with ``$$.Task.Token`` of every ``.waitForTaskToken`` Task made a fresh token.

    The engine's context object has no ``Task.Token``; this gives every attempt of a
    callback Task a new, unique token (``ceap-token-<uuid>``) computed where the
    definition reads it, so the token shows in the TaskScheduled event as on AWS and the
    runner finds it in the parameters it is called with.

    >>> with_task_tokens({"StartAt": "T", "States": {"T": {"Type": "Task", "End": True,
    ...   "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
    ...   "Parameters": {"MessageBody": {"token.$": "$$.Task.Token"}}}}})["States"]["T"]["Parameters"]
    {'MessageBody': {'token.$': "States.Format('ceap-token-{}', States.UUID())"}}
    """
    out = copy.deepcopy(definition)
    _rewrite_machine(out)
    return out


def _rewrite_machine(machine: dict[str, Any]) -> None:
    for state in (machine.get("States") or {}).values():
        if not isinstance(state, dict):
            continue
        if state.get("Type") == "Task" and str(state.get("Resource", "")).endswith(".waitForTaskToken"):
            for key in ("Parameters", "Arguments"):
                if key in state:
                    state[key] = _rewrite_value(state[key], jsonpath_key=False)
        for branch in state.get("Branches") or ():
            if isinstance(branch, dict):
                _rewrite_machine(branch)
        for key in ("Iterator", "ItemProcessor"):
            if isinstance(state.get(key), dict):
                _rewrite_machine(state[key])


def _rewrite_value(value: Any, jsonpath_key: bool) -> Any:
    if isinstance(value, dict):
        return {k: _rewrite_value(v, k.endswith(".$")) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite_value(v, False) for v in value]
    if isinstance(value, str):
        if jsonpath_key and "$$.Task.Token" in value:
            return _JSONPATH_TOKEN if value.strip() == "$$.Task.Token" else value.replace("$$.Task.Token", _JSONPATH_TOKEN)
        if "$states.context.Task.Token" in value:
            return value.replace("$states.context.Task.Token", _JSONATA_TOKEN)
    return value


def tokens_in(value: Any) -> list[str]:
    """Every ``ceap-token-<uuid>`` in a parameters document."""
    return _TOKEN_RE.findall(json.dumps(value))


class CallbackRunners(TaskRunners):
    """Task runners that also serve ``.waitForTaskToken``: call the integration, then wait for the token.

    A callback Task whose integration has no runner here (``sqs:sendMessage`` without an
    SQS) only waits: its token is in its TaskScheduled event, for a test to send back.
    """

    def __init__(self, tokens: TaskTokens, fallback: Any = None) -> None:
        super().__init__()
        self.tokens = tokens
        #: Serves what no registered runner does (``serves(info)`` and ``__call__``): AWS APIs.
        self.fallback = fallback

    def _registered(self, info: ResourceInfo) -> bool:
        return super().supports(info) or (self.fallback is not None and self.fallback.serves(info))

    def supports(self, info: ResourceInfo) -> bool:
        return info.pattern == "waitForTaskToken" or self._registered(info)

    def _runner(self, info: ResourceInfo) -> TaskRunner:
        if not super().supports(info) and self.fallback is not None and self.fallback.serves(info):
            return self.fallback
        return super().runner_for(info)

    def runner_for(self, info: ResourceInfo) -> TaskRunner:
        if info.pattern != "waitForTaskToken":
            return self._runner(info)
        inner = self._runner(info) if self._registered(info) else None
        tokens = self.tokens

        async def callback(resource: ResourceInfo, parameters: Any, context: TaskContext) -> Any:
            found = tokens_in(parameters)
            if not found:
                raise TaskFailed("States.Runtime", "A .waitForTaskToken Task must pass $$.Task.Token in its Parameters")
            future = tokens.register(found[0], context)
            if inner is not None:
                await inner(resource, parameters, context)  # delivers the token; its result is not the task's
            return await tokens.wait(found[0], future)

        return callback

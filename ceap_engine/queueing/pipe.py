"""The EventBridge Pipe from a workflow's queue to its state machine, run as AWS runs it.

A :class:`Pipe` polls a :class:`~ceap_engine.ports.Queues` queue and starts one
execution per message through an injected :class:`PipeTarget`, the way the deployed
``AWS::Pipes::Pipe`` does (``adapters/aws/template.py``):

* the SQS record Pipes builds (``messageId``, ``body``, ``attributes`` ...) goes
  through the same ``InputTemplate`` (:data:`PIPE_INPUT_TEMPLATE`, ``<$.body>``: the
  body's JSON object, a body that is valid JSON being parsed), and a batch - of one
  message, ``BatchSize: 1`` - reaches the state machine as a JSON array, so the
  execution input is ``[{...payload...}]``;
* Express, ``REQUEST_RESPONSE``: the message is deleted when the execution
  SUCCEEDED; a failed, timed-out or aborted execution leaves it, so it comes back
  after the visibility timeout and, after ``maxReceiveCount`` receives, moves to the DLQ;
* Standard, ``FIRE_AND_FORGET``: the message is deleted once the execution started;
  a Standard execution that fails never reaches the DLQ (as on AWS) - it shows as a
  FAILED execution instead;
* the Pipe's own errors (the target could not be invoked: a start that raises)
  are retried inside the Pipe, with backoff on the clock and the message kept
  hidden, so they do not count towards ``maxReceiveCount``; only after
  ``internal_retries`` attempts is the message left to come back.

Everything waits on the injected clock: under a
:class:`~ceap_engine.runtime.clock.VirtualClock` a 10-minute visibility timeout costs
no wall time. :class:`LocalPipelineTarget` runs executions on a
:class:`~ceap_engine.pipeline.local.LocalPipeline`.

Example::

    pipe = Pipe(queues, queue_name(spec), LocalPipelineTarget(pipeline), spec_type=spec.type, clock=clock)
    await queues.send(queue_name(spec), OutgoingMessage(json.dumps(payload)))
    await pipe.drain()   # until the queue is empty and every execution ended
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from ceap_engine.ports import Activity, Clock, Queues, ReceivedMessage
from ceap_engine.runtime.clock import VirtualClock
from ceap_engine.storage.queue import queue_arn

__all__ = [
    "FIRE_AND_FORGET",
    "PIPE_BATCH_SIZE",
    "PIPE_INPUT_TEMPLATE",
    "REQUEST_RESPONSE",
    "STARTED",
    "Delivery",
    "Pipe",
    "PipeStats",
    "PipeTarget",
    "apply_input_template",
    "create_workflow_queues",
    "execution_name_for",
    "LocalPipelineTarget",
    "invocation_type",
    "sqs_record",
    "wake_on_end",
]

_log = logging.getLogger("ceap.pipe")

PIPE_INPUT_TEMPLATE = "<$.body>"
"""The deployed Pipe's ``TargetParameters.InputTemplate``: the message body's JSON object."""
PIPE_BATCH_SIZE = 1
"""The deployed Pipe's ``SqsQueueParameters.BatchSize``: one execution per message."""
REQUEST_RESPONSE = "REQUEST_RESPONSE"
FIRE_AND_FORGET = "FIRE_AND_FORGET"
STARTED = "STARTED"


def invocation_type(workflow_type: str) -> str:
    """``REQUEST_RESPONSE`` for an express workflow, ``FIRE_AND_FORGET`` for a standard one.

    >>> invocation_type("express")
    'REQUEST_RESPONSE'
    """
    return REQUEST_RESPONSE if workflow_type.lower() == "express" else FIRE_AND_FORGET


class PipeTarget(Protocol):
    """Starts one execution with ``execution_input``.

    For ``REQUEST_RESPONSE`` it returns the execution's final status (``SUCCEEDED``,
    ``FAILED``, ``TIMED_OUT``, ``ABORTED``); for ``FIRE_AND_FORGET`` it returns once the
    execution started. Raising means the Pipe could not invoke the target (a Pipe
    error, retried by the Pipe). ``hold`` is the Pipe's activity for this message:
    a target that waits for an execution on a virtual clock wakes it before the
    execution's own activity ends (see :class:`LocalPipelineTarget`), so virtual
    time cannot jump past the message's deletion.
    """

    async def __call__(self, execution_input: Any, hold: Activity) -> str: ...


@dataclass(frozen=True)
class Delivery:
    """One delivery of one message and what came of it (``STARTED`` for fire-and-forget)."""

    message_id: str
    receive_count: int
    status: str
    execution_input: Any
    deleted: bool


@dataclass
class PipeStats:
    received: int = 0
    succeeded: int = 0
    failed: int = 0
    started: int = 0
    internal_errors: int = 0
    deleted: int = 0


_PATH = re.compile(r"<(\$(?:\.[A-Za-z0-9_-]+)*)>")


def _lookup(record: Mapping[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split(".")[1:]:
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def apply_input_template(template: str, record: Mapping[str, Any]) -> Any:
    """What Pipes makes of one record with ``InputTemplate`` ``template``.

    A template that is one ``<$.path>`` yields the value itself (an object stays an
    object); otherwise each ``<$.path>`` is replaced - a string by its text, anything
    else by its JSON - and the result is JSON if it parses, else text.

    >>> apply_input_template("<$.body>", {"body": {"programId": "p1"}})
    {'programId': 'p1'}
    >>> apply_input_template('{"id": "<$.messageId>"}', {"messageId": "m-1"})
    {'id': 'm-1'}
    """
    whole = _PATH.fullmatch(template.strip())
    if whole:
        return _lookup(record, whole.group(1))

    def text(match: re.Match[str]) -> str:
        value = _lookup(record, match.group(1))
        return value if isinstance(value, str) else json.dumps(value)

    rendered = _PATH.sub(text, template)
    try:
        return json.loads(rendered)
    except ValueError:
        return rendered


def sqs_record(message: ReceivedMessage, queue: str, *, region: str = "us-east-1",
               account: str = "123456789012") -> dict[str, Any]:
    """The record Pipes hands a target for an SQS message; a body that is valid JSON is parsed."""
    try:
        body: Any = json.loads(message.body)
    except ValueError:
        body = message.body
    attributes = {
        "ApproximateReceiveCount": str(message.receive_count),
        "SentTimestamp": str(int(message.sent_at * 1000)),
        "SenderId": account,
        "ApproximateFirstReceiveTimestamp": str(int((message.first_received_at or message.sent_at) * 1000)),
    }
    message_attributes = {
        name: {"dataType": a.data_type, "stringValue": a.string_value, "binaryValue": a.binary_value,
               "stringListValues": [], "binaryListValues": []}
        for name, a in message.attributes.items()
    }
    return {
        "messageId": message.message_id, "receiptHandle": message.receipt_handle, "body": body,
        "attributes": attributes, "messageAttributes": message_attributes, "md5OfBody": message.md5_of_body,
        "eventSource": "aws:sqs", "eventSourceARN": queue_arn(queue, region, account), "awsRegion": region,
    }


class Pipe:
    """Polls ``queue`` and starts executions through ``target``, as the deployed Pipe does.

    ``spec_type`` (``express``/``standard``) picks the invocation type, or pass
    ``invocation`` itself. ``pollers`` receive concurrently (Pipes scales its
    pollers up; one keeps order simple). ``observer`` sees every :class:`Delivery`.
    """

    def __init__(
        self,
        queues: Queues,
        queue: str,
        target: PipeTarget,
        *,
        clock: Clock,
        spec_type: str = "express",
        invocation: str | None = None,
        input_template: str = PIPE_INPUT_TEMPLATE,
        batch_size: int = PIPE_BATCH_SIZE,
        pollers: int = 1,
        wait_seconds: int = 20,
        internal_retries: int = 5,
        region: str = "us-east-1",
        account: str = "123456789012",
        observer: Callable[[Delivery], None] | None = None,
    ) -> None:
        self.queues = queues
        self.queue = queue
        self.target = target
        self.clock = clock
        self.invocation = invocation or invocation_type(spec_type)
        if self.invocation not in (REQUEST_RESPONSE, FIRE_AND_FORGET):
            raise ValueError(f"invocation must be {REQUEST_RESPONSE} or {FIRE_AND_FORGET}, not {self.invocation!r}")
        self.input_template = input_template
        self.batch_size = batch_size
        self.pollers = pollers
        self.wait_seconds = wait_seconds
        self.internal_retries = internal_retries
        self.region = region
        self.account = account
        self.observer = observer
        self.stats = PipeStats()
        self._visibility: int | None = None
        self._handling = 0
        self._stopping = False
        self._waiting: set[asyncio.Task[Any]] = set()

    def execution_input(self, messages: list[ReceivedMessage]) -> list[Any]:
        """The execution input of a batch: the template applied to each record, as a JSON array."""
        return [apply_input_template(self.input_template, sqs_record(m, self.queue, region=self.region,
                                                                      account=self.account)) for m in messages]

    async def _invoke(self, messages: list[ReceivedMessage], execution_input: Any, hold: Activity) -> str | None:
        """Invoke the target, retrying the Pipe's own errors with the messages kept hidden."""
        # A target that names its executions after the messages (LocalPipelineTarget) gets their ids.
        extra = {"message_ids": [m.message_id for m in messages]} if getattr(self.target, "takes_message_ids", False) else {}
        for attempt in range(self.internal_retries + 1):
            try:
                with hold.idle():
                    return await self.target(execution_input, hold, **extra)
            except Exception:  # noqa: BLE001 - any failure to invoke is the Pipe's, whatever the target raised
                self.stats.internal_errors += 1
                if attempt == self.internal_retries:
                    return None
                await self.clock.sleep(min(2.0**attempt, 60.0))
                if self._visibility:
                    for m in messages:  # restart the visibility timeout: the receive count stays as it is
                        try:
                            await self.queues.change_visibility(self.queue, m.receipt_handle, self._visibility)
                        except Exception:  # noqa: BLE001 - the message came back meanwhile; its next receive counts
                            pass
        return None

    async def handle(self, messages: list[ReceivedMessage]) -> None:
        """Start the execution of one received batch and settle its messages."""
        self.stats.received += len(messages)
        execution_input = self.execution_input(messages)
        hold = self.clock.activity()
        self._handling += 1
        try:
            with hold:
                status = await self._invoke(messages, execution_input, hold)
                done = status == "SUCCEEDED" or (status is not None and self.invocation == FIRE_AND_FORGET)
                if status == "SUCCEEDED" and self.invocation == REQUEST_RESPONSE:
                    self.stats.succeeded += 1
                elif status is not None and self.invocation == REQUEST_RESPONSE:
                    self.stats.failed += 1
                elif status is not None:
                    self.stats.started += 1
                if done:
                    for m in messages:
                        await self.queues.delete(self.queue, m.receipt_handle)
                        self.stats.deleted += 1
                if self.observer is not None:
                    for m in messages:
                        self.observer(Delivery(m.message_id, m.receive_count, status or "PIPE_ERROR",
                                               execution_input, done))
        finally:
            self._handling -= 1

    async def poll_once(self, wait_seconds: int | None = None) -> int:
        """One receive (long polling up to ``wait_seconds``) and the handling of what came; returns the count."""
        if self._visibility is None:
            self._visibility = (await self.queues.settings(self.queue)).visibility_timeout
        task = asyncio.current_task()
        if task is not None:
            self._waiting.add(task)
        try:
            messages = await self.queues.receive(self.queue, self.batch_size,
                                                 wait_seconds=self.wait_seconds if wait_seconds is None else wait_seconds)
        finally:
            if task is not None:
                self._waiting.discard(task)
        if messages:
            await self.handle(messages)
        return len(messages)

    async def _poller(self, until_empty: bool) -> None:
        while not self._stopping:
            wait = None
            if not until_empty and self._skips_time:
                # Polling until stopped on a virtual clock: with nothing in flight or delayed, no timer
                # can make a message visible, so do not wait on the clock - an idle `ceap serve` would
                # otherwise move virtual time 20 s per poll, and retention with it.
                counts = await self.queues.counts(self.queue)
                if not (counts.in_flight or counts.delayed):
                    wait = 0
            try:
                got = await self.poll_once(wait)
            except asyncio.CancelledError:
                if self._stopping:
                    return
                raise
            except Exception:
                if until_empty:
                    raise
                # Polling until stopped (`ceap serve`): a failing receive (the queue file locked by another
                # process for longer than its busy timeout, say) is retried, as Pipes retries its polls.
                _log.exception("the Pipe of %s could not poll; trying again in 1 s", self.queue)
                await asyncio.sleep(1.0)
                continue
            if got:
                continue
            if until_empty and await self._drained():
                self.stop()
            elif not until_empty and (wait == 0 or not self._skips_time):
                # A pause of real time keeps an idle `ceap serve` from spinning (a real clock has waited
                # out wait_seconds already); a virtual wait for a message in flight needs none.
                await asyncio.sleep(0.05)

    @property
    def _skips_time(self) -> bool:
        clock = self.clock
        while hasattr(clock, "inner"):  # a ScaledClock around the virtual one
            clock = clock.inner
        return isinstance(clock, VirtualClock)

    async def _drained(self) -> bool:
        counts = await self.queues.counts(self.queue)
        return self._handling == 0 and counts.visible == counts.in_flight == counts.delayed == 0 \
            and not getattr(self.target, "running", 0)

    def stop(self) -> None:
        """Stop polling: pollers waiting in a receive stop now, the others after the message they handle."""
        self._stopping = True
        for task in list(self._waiting):
            task.cancel()

    async def run(self) -> None:
        """Poll until :meth:`stop` (``ceap serve``'s loop)."""
        self._stopping = False
        await asyncio.gather(*(self._poller(False) for _ in range(self.pollers)))

    async def drain(self) -> PipeStats:
        """Poll until the queue is empty, nothing is in flight and every started execution ended."""
        self._stopping = False
        await asyncio.gather(*(self._poller(True) for _ in range(self.pollers)))
        waiter = getattr(self.target, "wait", None)
        if waiter is not None:
            await waiter()
        return self.stats


@dataclass
class _WakesOnEnd:
    """An execution's activity that wakes the Pipe's activity right before it ends.

    Without it, the instant between the execution's end and the Pipe deleting the
    message has no busy activity, and a virtual clock would jump - possibly past the
    message's visibility timeout, delivering it again for nothing.
    """

    inner: Any
    hold: Activity

    def __enter__(self) -> _WakesOnEnd:
        self.inner.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.hold.wake()
        self.inner.__exit__(*exc)

    def idle(self) -> Any:
        return self.inner.idle()

    def wake(self) -> None:
        self.inner.wake()


def wake_on_end(execution: Any, hold: Activity) -> None:
    """Make a just-started execution wake the Pipe's activity ``hold`` right before its own activity ends.

    Call it before the execution's task first runs (right after ``Engine.start``), for a
    REQUEST_RESPONSE target that waits for the execution's end on a virtual clock.
    """
    execution.activity = _WakesOnEnd(execution.activity, hold)


@dataclass
class LocalPipelineTarget:
    """A :class:`PipeTarget` that runs executions on a LocalPipeline (or anything with its ``start``).

    ``executions`` keeps every started execution's result (status, name) in order of
    ending, so tests and ``ceap status`` can show failed Standard executions.
    """

    pipeline: Any
    results: list[Any] = field(default_factory=list)
    running: int = 0
    _tasks: set[asyncio.Future[Any]] = field(default_factory=set)
    #: The Pipe hands this target the ids of the messages it starts an execution for.
    takes_message_ids: ClassVar[bool] = True

    async def __call__(self, execution_input: Any, hold: Activity, message_ids: Sequence[str] = ()) -> str:
        # The execution is named after its message, under ceap's execution-name rule: a message
        # delivered again (its execution failed, or the process running it was killed) resumes or
        # re-runs that execution instead of starting another, so Reactive's engagement claims,
        # which belong to the execution, still let it write the actions a dead run had claimed.
        waits = self.pipeline.execution_type != "STANDARD"

        def started(execution: Any) -> None:
            if waits:
                wake_on_end(execution, hold)

        name = execution_name_for(message_ids)
        named = name is not None and hasattr(self.pipeline, "start_checked")
        if named:
            execution = await self.pipeline.start_checked(execution_input, name=name, started=started)
        else:
            execution = self.pipeline.start(execution_input)
            started(execution)
        self.running += 1
        task = asyncio.ensure_future(self._recorded(execution.task)) if named else execution.task

        def ended(done: asyncio.Future[Any]) -> None:
            self.running -= 1
            self._tasks.discard(done)
            if not done.cancelled() and done.exception() is None:
                self.results.append(done.result())

        task.add_done_callback(ended)
        if not waits:
            self._tasks.add(task)
            return STARTED
        result = await task
        return result.status

    async def _recorded(self, task: Any) -> Any:
        """The execution's result, once its end is recorded under its name (the name rule's record)."""
        result = await task
        await self.pipeline.collect(result)
        return result

    async def wait(self) -> None:
        """Wait for every fire-and-forget execution to end."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def execution_name_for(message_ids: Sequence[str]) -> str | None:
    """The execution name of a batch of messages: ``msg-`` and the message id (a digest for several).

    >>> execution_name_for(["0d6c0f2e-8e5f-4a8c-9e0a-1b2c3d4e5f60"])
    'msg-0d6c0f2e-8e5f-4a8c-9e0a-1b2c3d4e5f60'
    >>> execution_name_for([]) is None, len(execution_name_for(["a", "b"]))
    (True, 36)
    """
    if not message_ids:
        return None
    if len(message_ids) == 1 and re.fullmatch(r"[A-Za-z0-9_-]{1,76}", message_ids[0]):
        return f"msg-{message_ids[0]}"
    return "msg-" + hashlib.sha256("\n".join(message_ids).encode()).hexdigest()[:32]


async def create_workflow_queues(queues: Queues, spec: Any) -> tuple[str, str]:
    """Create (if needed) a workflow's queue and DLQ with the spec's settings; returns their names.

    ``spec`` is a :class:`~ceap_engine.pipeline.spec.WorkflowSpec`: names from
    :mod:`ceap_engine.pipeline.names`, settings from ``spec.queue`` - the numbers the
    stack deploys.
    """
    from ceap_engine.pipeline.names import dlq_name, queue_name

    queue, dlq = queue_name(spec), dlq_name(spec)
    await queues.create_queue(dlq, spec.queue.dlq_settings())
    await queues.create_queue(queue, spec.queue.settings(dlq))
    return queue, dlq

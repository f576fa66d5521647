"""Queues in memory, with SQS semantics, on an injected clock (the test kit's default queue).

Example::

    queues = MemoryQueues(clock=VirtualClock(start=0))
    await queues.create_queue("jobs", QueueSettings(visibility_timeout=600))
    await queues.send("jobs", OutgoingMessage('{"programId": "p1"}'))
    [message] = await queues.receive("jobs", wait_seconds=20)
    await queues.delete("jobs", message.receipt_handle)
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from ceap_engine.errors import QueueError, QueueNotFound
from ceap_engine.ports import (
    BatchEntryFailure,
    Clock,
    MessageAttribute,
    OutgoingMessage,
    QueueCounts,
    QueueSettings,
    ReceivedMessage,
    SendBatchResult,
    SentMessage,
)
from ceap_engine.storage import queue as rules

__all__ = ["MemoryQueues"]


@dataclass
class _Stored:
    message_id: str
    body: str
    attributes: Mapping[str, MessageAttribute]
    sent_at: float
    visible_at: float
    seq: int
    receive_count: int = 0
    first_received_at: float | None = None
    receipt: str | None = None
    dead_letter_source: str | None = None

    def received(self, queue: str) -> ReceivedMessage:
        return ReceivedMessage(
            message_id=self.message_id, receipt_handle=self.receipt or "", body=self.body,
            md5_of_body=rules.md5_of_body(self.body), receive_count=self.receive_count, sent_at=self.sent_at,
            first_received_at=self.first_received_at, attributes=dict(self.attributes),
            md5_of_attributes=rules.md5_of_attributes(self.attributes), dead_letter_source=self.dead_letter_source,
        )


@dataclass
class _Queue:
    settings: QueueSettings
    messages: dict[str, _Stored] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class MemoryQueues:
    """A :class:`~ceap_engine.ports.Queues` in dicts; time is ``clock``'s (a VirtualClock in tests, RealClock else)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._queues: dict[str, _Queue] = {}
        self._seq = itertools.count()

    def _queue(self, name: str) -> _Queue:
        found = self._queues.get(name)
        if found is None:
            raise QueueNotFound(name)
        return found

    async def create_queue(self, name: str, settings: QueueSettings | None = None) -> None:
        rules.check_queue_name(name)
        settings = rules.check_settings(settings or QueueSettings())
        existing = self._queues.get(name)
        if existing is not None:
            if existing.settings != settings:
                raise QueueError("QueueNameExists", f"A queue named {name!r} already exists with different attributes.")
            return
        self._queues[name] = _Queue(settings)

    async def settings(self, name: str) -> QueueSettings:
        return self._queue(name).settings

    async def list_queues(self, prefix: str = "") -> list[str]:
        return sorted(n for n in self._queues if n.startswith(prefix))

    def _enqueue(self, queue: _Queue, message: OutgoingMessage, *, sent_at: float | None = None,
                 source: str | None = None) -> _Stored:
        now = self.clock.time()
        delay = queue.settings.delay_seconds if message.delay_seconds is None else message.delay_seconds
        stored = _Stored(uuid.uuid4().hex, message.body, dict(message.attributes or {}),
                         now if sent_at is None else sent_at, now + delay, next(self._seq), dead_letter_source=source)
        queue.messages[stored.message_id] = stored
        queue.wake.set()
        return stored

    async def send(self, queue: str, message: OutgoingMessage) -> SentMessage:
        target = self._queue(queue)
        rules.check_message(message, target.settings.maximum_message_size)
        stored = self._enqueue(target, message)
        return SentMessage(message.id, stored.message_id, rules.md5_of_body(stored.body),
                           rules.md5_of_attributes(stored.attributes))

    async def send_batch(self, queue: str, messages: Sequence[OutgoingMessage]) -> SendBatchResult:
        self._queue(queue)
        rules.check_send_batch(messages)
        sent, failed = [], []
        for message in messages:
            try:
                sent.append(await self.send(queue, message))
            except QueueError as exc:
                failed.append(BatchEntryFailure(message.id, exc.code, exc.message, exc.sender_fault))
        return SendBatchResult(tuple(sent), tuple(failed))

    def _take(self, name: str, max_messages: int, visibility: int) -> list[ReceivedMessage]:
        queue = self._queue(name)
        now = self.clock.time()
        delivered: list[_Stored] = []
        leaving: list[tuple[_Stored, str]] = []
        # A dict keeps insertion order, which is arrival order (a dead-lettered message arrives anew);
        # the scan stops as soon as it has enough, so a long queue costs what its head costs.
        for stored in queue.messages.values():
            if len(delivered) >= max_messages:
                break
            verdict = rules.delivery(sent_at=stored.sent_at, visible_at=stored.visible_at,
                                     receive_count=stored.receive_count, settings=queue.settings, now=now)
            if verdict == rules.DELIVER:
                delivered.append(stored)
            elif verdict != rules.WAIT:
                leaving.append((stored, verdict))
        for stored, verdict in leaving:
            del queue.messages[stored.message_id]
            if verdict == rules.DEAD_LETTER:
                dlq = self._queues.get(queue.settings.redrive.dead_letter_queue)  # type: ignore[union-attr]
                if dlq is not None:  # as on SQS, a redrive policy naming a deleted DLQ drops the message
                    moved = replace(stored, visible_at=now, receipt=None, seq=next(self._seq), dead_letter_source=name)
                    dlq.messages[moved.message_id] = moved
                    dlq.wake.set()
        out = []
        for stored in delivered:
            stored.receive_count += 1
            if stored.first_received_at is None:
                stored.first_received_at = now
            stored.visible_at = now + visibility
            stored.receipt = rules.new_receipt_handle(name, stored.message_id)
            out.append(stored.received(name))
        return out

    async def receive(self, queue: str, max_messages: int = 1, *, visibility_timeout: int | None = None,
                      wait_seconds: int | None = None) -> list[ReceivedMessage]:
        target = self._queue(queue)
        rules.check_max_messages(max_messages)
        visibility = target.settings.visibility_timeout if visibility_timeout is None else visibility_timeout
        rules.check_visibility(visibility)
        wait = target.settings.receive_wait_seconds if wait_seconds is None else rules.check_wait_seconds(wait_seconds)

        async def take() -> list[ReceivedMessage]:
            return self._take(queue, max_messages, visibility)

        async def next_due() -> float | None:
            return min((m.visible_at for m in target.messages.values()), default=None)

        return await rules.long_poll(self.clock, take, wait, next_due=next_due, wake=target.wake)

    def _in_flight(self, queue: str, receipt_handle: str) -> _Stored | None:
        message_id = rules.parse_receipt_handle(queue, receipt_handle)
        stored = self._queue(queue).messages.get(message_id)
        return stored if stored is not None and stored.receipt == receipt_handle else None

    async def delete(self, queue: str, receipt_handle: str) -> None:
        stored = self._in_flight(queue, receipt_handle)
        if stored is not None:  # a stale handle (the message was received again since) deletes nothing
            del self._queue(queue).messages[stored.message_id]

    async def change_visibility(self, queue: str, receipt_handle: str, visibility_timeout: int) -> None:
        rules.check_visibility(visibility_timeout)
        stored = self._in_flight(queue, receipt_handle)
        now = self.clock.time()
        if stored is None or stored.visible_at <= now:
            raise QueueError("MessageNotInflight", "The message referred to is not in flight.")
        stored.visible_at = now + visibility_timeout
        if visibility_timeout == 0:
            self._queue(queue).wake.set()

    async def purge(self, queue: str) -> None:
        self._queue(queue).messages.clear()

    async def counts(self, queue: str) -> QueueCounts:
        now = self.clock.time()
        visible = in_flight = delayed = 0
        for m in self._queue(queue).messages.values():
            if m.visible_at <= now:
                visible += 1
            elif m.receive_count:
                in_flight += 1
            else:
                delayed += 1
        return QueueCounts(visible, in_flight, delayed)

    async def peek(self, queue: str, limit: int = 100) -> list[ReceivedMessage]:
        messages = sorted(self._queue(queue).messages.values(), key=lambda m: m.seq)[:limit]
        return [replace(m.received(queue), receipt_handle="") for m in messages]

    async def dead_letter_sources(self, queue: str) -> list[str]:
        self._queue(queue)
        return sorted(n for n, q in self._queues.items()
                      if q.settings.redrive is not None and q.settings.redrive.dead_letter_queue == queue)

    async def move_messages(self, source: str, destination: str | None = None) -> int:
        dlq = self._queue(source)
        if destination is not None:
            self._queue(destination)
        elif not await self.dead_letter_sources(source):
            raise QueueError("InvalidParameterValue", f"{source!r} is not the dead-letter queue of any queue: "
                             "name a destination queue")
        moved = 0
        for stored in sorted(dlq.messages.values(), key=lambda m: m.seq):
            target = destination or stored.dead_letter_source
            if target is None or target not in self._queues:
                continue  # no known source queue: the message stays in the DLQ
            del dlq.messages[stored.message_id]
            self._enqueue(self._queues[target], OutgoingMessage(stored.body, attributes=stored.attributes,
                                                                delay_seconds=0))
            moved += 1
        return moved

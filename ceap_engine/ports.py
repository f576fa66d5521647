"""Ports: every interface between the engine, the stages and their backends.

One module holds them all, so a newcomer reads the whole contract in one place:

- :class:`Clock` (and the :class:`Activity` it tracks, the :class:`TimerHandle` it returns):
  time for the interpreter; :mod:`ceap_engine.runtime.clock` has ``RealClock`` and
  ``VirtualClock``.
- :class:`TaskRunner` (called with a :class:`ResourceInfo` and a :class:`TaskContext`):
  what runs a Task state; :mod:`ceap_engine.runtime.tasks` has the registry and the
  in-process Lambda runner.
- :class:`ObjectStore`: bytes by (bucket, key) with S3 semantics.
- :class:`CandidateStore`: candidates (:class:`CandidateRecord`) by (pk, sk).
- :class:`ExecutionJournal`: durable executions (:class:`ExecutionRecord`), their history
  events and the resources around them (state machines, activities); ``ceap serve`` keeps
  Standard executions in it so they survive a restart.
- :class:`Queues`: named message queues with SQS semantics (:class:`QueueSettings`,
  :class:`OutgoingMessage`, :class:`ReceivedMessage`); the rules and limits every
  implementation applies are in :mod:`ceap_engine.storage.queue`.

Each storage port has an in-memory implementation in :mod:`ceap_engine.storage.memory`,
an embedded one in :mod:`adapters.local` and an AWS one in :mod:`adapters.aws`; one
contract test suite (``tests/contract``) runs against all of them. The rules every
implementation applies (key validation, candidate encoding) live in
:mod:`ceap_engine.storage`; the key layout of stage data in :mod:`ceap_engine.pipeline.layout`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from ceap_engine.storage.documents import EncodedDocument, document_text, document_version

__all__ = [
    "Activity",
    "CandidateRecord",
    "CandidateStore",
    "Clock",
    "EncodedDocument",
    "ExecutionJournal",
    "ExecutionRecord",
    "MessageAttribute",
    "ObjectStore",
    "OutgoingMessage",
    "PutResult",
    "QueueCounts",
    "QueueSettings",
    "Queues",
    "ReceivedMessage",
    "RedrivePolicy",
    "SendBatchResult",
    "SentMessage",
    "BatchEntryFailure",
    "ResourceInfo",
    "TaskContext",
    "TaskRunner",
    "TimerHandle",
    "document_text",
    "document_version",
]


# -- time ----------------------------------------------------------------------
class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Activity(Protocol):
    """One unit of work a clock counts as busy (virtual time stands still while any is).

    Used as a context manager around the work; ``idle()`` marks a wait on something
    the clock itself will end (a timer, a sibling task); ``wake()`` makes it busy again.
    """

    def __enter__(self) -> Activity: ...

    def __exit__(self, *exc: object) -> None: ...

    def idle(self) -> Any: ...

    def wake(self) -> None: ...


@runtime_checkable
class Clock(Protocol):
    """What the engine needs of time. ``time()`` is epoch seconds."""

    def time(self) -> float: ...

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle: ...

    def activity(self) -> Activity: ...


# -- tasks ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ResourceInfo:
    """A Task resource, parsed.

    ``kind`` is ``service`` (``arn:aws:states:::glue:startJobRun.sync``),
    ``lambda`` (a plain function ARN) or ``activity``. ``resource_type`` and
    ``resource`` are what AWS puts in Task* events (``glue`` /
    ``startJobRun.sync``); ``key`` is what runners are registered under
    (``glue:startJobRun``, ``lambda:function``).
    """

    arn: str
    kind: str
    key: str
    resource_type: str
    resource: str
    pattern: str = ""  # "", "sync", "sync:2" or "waitForTaskToken"
    function_name: str | None = None


@dataclass(slots=True)
class TaskContext:
    """What a runner knows about the task it runs."""

    resource: ResourceInfo
    state_name: str
    execution_arn: str
    execution_name: str
    state_machine_arn: str
    clock: Clock
    rng: random.Random
    region: str = "us-east-1"
    account: str = "123456789012"
    timeout_seconds: float | None = None
    heartbeat_seconds: float | None = None
    task_token: str | None = None
    retry_count: int = 0
    _heartbeat: Callable[[], None] | None = None

    def heartbeat(self) -> None:
        """Tell the engine the task is alive (resets ``HeartbeatSeconds``)."""
        if self._heartbeat is not None:
            self._heartbeat()


class TaskRunner(Protocol):
    async def __call__(self, resource: ResourceInfo, parameters: Any, context: TaskContext) -> Any: ...


# -- storage -------------------------------------------------------------------
@runtime_checkable
class ObjectStore(Protocol):
    """Bytes by (bucket, key), with S3 semantics: last write wins, no partial objects."""

    async def get(self, bucket: str, key: str) -> bytes:
        """The object's bytes; :class:`~ceap_engine.errors.ObjectNotFound` if absent."""
        ...

    async def put(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Store ``data`` atomically at ``key`` (replacing what was there)."""
        ...

    async def list(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key under ``prefix``, sorted."""
        ...

    async def delete(self, bucket: str, key: str) -> None:
        """Remove ``key``; removing an absent key is not an error (as in S3)."""
        ...

    async def size(self, bucket: str, key: str) -> int:
        """The object's length in bytes (S3 HeadObject); :class:`~ceap_engine.errors.ObjectNotFound` if absent."""
        ...

    async def get_range(self, bucket: str, key: str, start: int, end: int) -> bytes:
        """Bytes ``start`` up to (not including) ``end`` of the object, clipped to its length (S3 GetObject
        with a ``Range``): empty when ``start`` is at or past the end; ``ObjectNotFound`` if absent."""
        ...


@dataclass(frozen=True, slots=True)
class CandidateRecord:
    """A candidate as the store keeps it: its keys, what queries need, the whole document.

    ``pk``/``sk`` are the platform's key layout
    (``CUSTOMER#{c}#PROGRAM#{p}#MARKETPLACE#{m}`` / ``SUBJECT#{type}#{id}``).
    ``score`` orders queries (highest first); ``channels`` are the channels the
    candidate is eligible for; ``data`` is the full candidate JSON.
    """

    customer_id: str
    program_id: str
    marketplace: str
    subject_type: str
    subject_id: str
    score: float | None = None
    channels: frozenset[str] = field(default_factory=frozenset)
    data: Mapping[str, Any] = field(default_factory=dict)
    #: ``data`` already encoded as compact JSON by its writer (the stages' wire encoder), so a
    #: store need not encode it again; it must say exactly what ``data`` says. ``None``: encode ``data``.
    data_json: str | None = field(default=None, compare=False, repr=False)
    #: Whether ``data`` says the candidate was consumed (``attributes.consumed`` is ``true``), given
    #: by a writer that knows it without reading ``data`` (the stages' Structs); like ``data_json``
    #: it must say what ``data`` says. ``None``: a store that keeps the flag apart reads ``data``.
    consumed: bool | None = field(default=None, compare=False, repr=False)

    @property
    def pk(self) -> str:
        return f"CUSTOMER#{self.customer_id}#PROGRAM#{self.program_id}#MARKETPLACE#{self.marketplace}"

    @property
    def sk(self) -> str:
        return f"SUBJECT#{self.subject_type}#{self.subject_id}"

    @property
    def key(self) -> tuple[str, str]:
        """``(pk, sk)``."""
        return self.pk, self.sk

    @property
    def version(self) -> int:
        """``data.metadata.version`` (what conditional writes compare), 0 when ``data`` has none.

        >>> CandidateRecord("c", "p", "US", "ORDER", "o", data={"metadata": {"version": 3}}).version
        3
        """
        text = document_text(self)
        if text is not None:
            return document_version(text)
        metadata = self.data.get("metadata") if isinstance(self.data, Mapping) else None
        version = metadata.get("version") if isinstance(metadata, Mapping) else None
        return version if isinstance(version, int) and not isinstance(version, bool) else 0


@dataclass(frozen=True, slots=True)
class PutResult:
    """What a batch write did, record by record.

    ``stored``: keys written (or already holding exactly that record); ``failed``:
    keys not written, with the reason; ``retryable``: the keys of ``failed`` that
    failed for a passing reason (throttling, a busy backend) after the store's own
    retries, so writing them again later may succeed - the others were refused for
    what they are (a limit, a bad value) and will be refused again; ``conflicts``:
    keys whose condition (``expected_versions``) did not hold, with the version
    found (``None``: no record) - re-read them and decide again.
    """

    stored: tuple[tuple[str, str], ...] = ()
    failed: tuple[tuple[tuple[str, str], str], ...] = ()
    conflicts: tuple[tuple[tuple[str, str], int | None], ...] = ()
    retryable: tuple[tuple[str, str], ...] = ()


@runtime_checkable
class CandidateStore(Protocol):
    """Candidates keyed by (pk, sk); writes are idempotent upserts, optionally conditional.

    Optimistic concurrency: a record's version is ``data.metadata.version``
    (:attr:`CandidateRecord.version`). A writer reads a record, decides the new
    one (version + 1) and writes it with ``expected_versions={key: version read}``
    (``None``: "only if there is no record yet"); if another writer got there
    first the key comes back in :attr:`PutResult.conflicts` and nothing of it is
    written. :func:`ceap_engine.storage.candidates.write_candidates` is that loop.

    A store may also offer ``async get_many(keys) -> list[CandidateRecord | None]``
    (:meth:`get` of many keys in one call, in the keys' order; the SQLite, memory and
    DynamoDB stores do): the Store and Reactive stages read through it when it is there, and
    key by key (16 at a time) when it is not.
    It may offer ``async consumed_many(keys) -> list[bool]`` too: for each key whether its
    record says the candidate was consumed (``data.attributes.consumed`` is ``true``,
    :func:`ceap_engine.storage.candidates.record_consumed`; ``False`` where there is no record),
    reading no more of the document than that (the three stores do); Reactive re-checks the
    candidates it is about to act on through it, else through ``get_many``.
    """

    async def put_batch(
        self,
        records: Sequence[CandidateRecord],
        *,
        expected_versions: Mapping[tuple[str, str], int | None] | None = None,
    ) -> PutResult:
        """Upsert records (the store splits them into batches of 25).

        Every record lands in ``stored``, ``failed`` (with its reason, see
        :func:`encode_candidate_data` and :func:`check_dynamodb_limits`) or
        ``conflicts``, in input order; a record that fails does not stop the
        others. A record whose key is in ``expected_versions`` is written only if
        the stored record's version equals the expected one (``None``: no stored
        record); other records are written unconditionally. Writing a record
        identical to the stored one changes nothing (and meets its condition if
        the stored version is the expected one). Of two records with the same key
        in one call, the later wins; give such a key no condition.
        """
        ...

    async def get(self, pk: str, sk: str) -> CandidateRecord | None:
        """The record at (pk, sk), or ``None``. ``data`` comes back as parsed JSON (a fresh dict)."""
        ...

    async def query(
        self,
        program_id: str,
        channel: str | None = None,
        *,
        marketplace: str | None = None,
        limit: int | None = None,
    ) -> list[CandidateRecord]:
        """Candidates of a program (optionally eligible for ``channel``), best score first.

        Records without a score come last; ``limit`` (>= 1) caps the count.
        """
        ...

    async def delete(self, pk: str, sk: str) -> None:
        """Remove the record at (pk, sk); removing an absent record is not an error."""
        ...

    async def claim_engagements(self, keys: Sequence[str], execution_id: str) -> dict[str, str]:
        """Claim each engagement key for ``execution_id``; return every key's holder.

        An engagement (one customer, subject and window, see
        ``stages.domain.engagement_key``) is issued by one execution only: the
        first to claim a key holds it for good, atomically, however many
        executions claim it at once; claiming a key one already holds returns
        oneself again (a resumed execution). Claims are kept apart from the
        candidates (``query`` never returns them).
        """
        ...


# -- executions ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    """One execution as DescribeExecution sees it; times are epoch seconds.

    ``input``/``output`` are JSON text, as the API returns them. ``extra`` holds what a
    server needs to run it again after a restart (``mapRunArn``, ``redriveCount``,
    ``testCase``, ...), JSON-serialisable.
    """

    execution_arn: str
    state_machine_arn: str
    name: str
    type: str  # "STANDARD" or "EXPRESS"
    status: str  # RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED
    start_date: float
    input: str = "{}"
    stop_date: float | None = None
    output: str | None = None
    error: str | None = None
    cause: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class ExecutionJournal(Protocol):
    """Durable executions: records, their history events (GetExecutionHistory shape), resources.

    Calls are short local writes, made inline (SQLite: a transaction is well under a
    millisecond). Events are AWS-shaped dicts (``id``, ``previousEventId``, ``type``,
    ``timestamp`` as epoch seconds, ``<type>EventDetails``); each execution's ids run
    1, 2, 3 ... without gaps, so a reader can page by id.

    Example::

        journal.put_execution(record)
        journal.append_events(record.execution_arn, [{"id": 1, "previousEventId": 0, ...}])
        journal.events(record.execution_arn, after_id=0, limit=100)
    """

    def put_execution(self, record: ExecutionRecord) -> None:
        """Insert or replace the record of ``record.execution_arn``."""
        ...

    def get_execution(self, execution_arn: str) -> ExecutionRecord | None:
        """The record, or ``None``."""
        ...

    def list_executions(self, state_machine_arn: str | None = None, status: str | None = None) -> list[ExecutionRecord]:
        """Records, newest start first (ties: by ARN), optionally of one state machine / status."""
        ...

    def delete_execution(self, execution_arn: str) -> None:
        """Forget an execution and its events (absent: not an error)."""
        ...

    def append_events(self, execution_arn: str, events: Sequence[Mapping[str, Any]]) -> None:
        """Append events; the first id must follow the last stored one (``ValueError`` otherwise)."""
        ...

    def events(self, execution_arn: str, after_id: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Events with ``id > after_id`` in id order, at most ``limit``."""
        ...

    def put_resource(self, kind: str, arn: str, document: Mapping[str, Any]) -> None:
        """Insert or replace a resource document (``kind``: ``stateMachine``, ``activity`` ...)."""
        ...

    def delete_resource(self, kind: str, arn: str) -> None:
        """Remove a resource (absent: not an error)."""
        ...

    def resources(self, kind: str) -> list[dict[str, Any]]:
        """Every document of ``kind``, in the order they were first stored."""
# -- queues --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RedrivePolicy:
    """Where a message goes after ``max_receive_count`` receives: the dead-letter queue's name."""

    dead_letter_queue: str
    max_receive_count: int


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """A queue's attributes, with SQS's defaults (seconds; sizes in bytes)."""

    visibility_timeout: int = 30
    retention_seconds: int = 4 * 24 * 3600
    delay_seconds: int = 0
    receive_wait_seconds: int = 0
    maximum_message_size: int = 262_144
    redrive: RedrivePolicy | None = None


@dataclass(frozen=True, slots=True)
class MessageAttribute:
    """One message attribute: ``data_type`` is ``String``, ``Number`` or ``Binary`` (``.label`` allowed)."""

    data_type: str
    string_value: str | None = None
    binary_value: bytes | None = None


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message to send; ``id`` names it within a batch (``SendMessageBatch``'s entry id)."""

    body: str
    id: str = "0"
    delay_seconds: int | None = None
    attributes: Mapping[str, MessageAttribute] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SentMessage:
    """What a send returns: the entry id, the new message id and the MD5 digests SQS returns."""

    id: str
    message_id: str
    md5_of_body: str
    md5_of_attributes: str | None = None


@dataclass(frozen=True, slots=True)
class BatchEntryFailure:
    """One entry of a batch that failed: SQS's error code and message."""

    id: str
    code: str
    message: str
    sender_fault: bool = True


@dataclass(frozen=True, slots=True)
class SendBatchResult:
    successful: tuple[SentMessage, ...] = ()
    failed: tuple[BatchEntryFailure, ...] = ()


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A delivered message. ``sent_at``/``first_received_at`` are epoch seconds of the queue's clock.

    ``receive_count`` counts this delivery; ``dead_letter_source`` is the queue a
    dead-lettered message came from.
    """

    message_id: str
    receipt_handle: str
    body: str
    md5_of_body: str
    receive_count: int
    sent_at: float
    first_received_at: float | None = None
    attributes: Mapping[str, MessageAttribute] = field(default_factory=dict)
    md5_of_attributes: str | None = None
    dead_letter_source: str | None = None


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """``ApproximateNumberOfMessages``, ``...NotVisible`` and ``...Delayed``."""

    visible: int = 0
    in_flight: int = 0
    delayed: int = 0


@runtime_checkable
class Queues(Protocol):
    """Named queues with SQS standard-queue semantics, on an injected :class:`Clock`.

    At-least-once delivery; a received message is invisible for the visibility
    timeout, then delivered again unless deleted; with a :class:`RedrivePolicy` a
    message received ``max_receive_count`` times moves to the dead-letter queue on
    the next receive, keeping its original enqueue time (so the DLQ's retention
    counts from the first send). Every argument is checked by
    :mod:`ceap_engine.storage.queue`, and every error is a
    :class:`~ceap_engine.errors.QueueError` carrying SQS's error code.
    """

    async def create_queue(self, name: str, settings: QueueSettings | None = None) -> None:
        """Create ``name`` (again with the same settings: no-op; with other settings: ``QueueNameExists``)."""
        ...

    async def settings(self, name: str) -> QueueSettings: ...

    async def list_queues(self, prefix: str = "") -> list[str]:
        """Queue names starting with ``prefix``, sorted."""
        ...

    async def send(self, queue: str, message: OutgoingMessage) -> SentMessage: ...

    async def send_batch(self, queue: str, messages: Sequence[OutgoingMessage]) -> SendBatchResult:
        """Up to 10 messages of distinct ids; an entry that breaks a rule fails alone."""
        ...

    async def receive(
        self,
        queue: str,
        max_messages: int = 1,
        *,
        visibility_timeout: int | None = None,
        wait_seconds: int | None = None,
    ) -> list[ReceivedMessage]:
        """Up to ``max_messages`` (1-10) visible messages; waits up to ``wait_seconds`` (long polling) for one."""
        ...

    async def delete(self, queue: str, receipt_handle: str) -> None:
        """Delete the message of this receive; a handle of a deleted message is no error."""
        ...

    async def change_visibility(self, queue: str, receipt_handle: str, visibility_timeout: int) -> None:
        """Make the in-flight message visible ``visibility_timeout`` seconds from now (0: at once)."""
        ...

    async def purge(self, queue: str) -> None: ...

    async def counts(self, queue: str) -> QueueCounts: ...

    async def peek(self, queue: str, limit: int = 100) -> list[ReceivedMessage]:
        """Messages waiting in ``queue``, oldest first, without taking them (for ``ceap dlq list``)."""
        ...

    async def dead_letter_sources(self, queue: str) -> list[str]:
        """The queues whose redrive policy names ``queue``."""
        ...

    async def move_messages(self, source: str, destination: str | None = None) -> int:
        """Move every message of dead-letter queue ``source`` back (to its source queue, or ``destination``).

        Moved messages are sent anew: receive count 0, enqueued now. Returns how many moved.
        """
        ...

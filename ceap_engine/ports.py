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

__all__ = [
    "Activity",
    "CandidateRecord",
    "CandidateStore",
    "Clock",
    "ObjectStore",
    "PutResult",
    "ResourceInfo",
    "TaskContext",
    "TaskRunner",
    "TimerHandle",
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

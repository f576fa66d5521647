"""In-memory storage backends: the defaults of the test kit and the benchmarks.

They follow the same contract as the file, SQLite, S3 and DynamoDB backends
(``tests/contract`` runs one suite over all of them), so a test that passes in
memory means the same thing on disk and on AWS. Nothing a caller holds can
change what is stored: objects are kept as immutable ``bytes`` and candidate
documents as JSON text, parsed afresh on every read.

Example::

    objects = MemoryObjectStore()
    await objects.put("ceap-local", "executions/e-1/ETL/output.json", b"{}")
    assert await objects.list("ceap-local", "executions/e-1/") == ["executions/e-1/ETL/output.json"]
"""

from __future__ import annotations

import threading
from bisect import bisect_left, insort
from collections.abc import Mapping, Sequence

from ceap_engine.errors import InputError, ObjectNotFound
from ceap_engine.ports import CandidateRecord, EncodedDocument, PutResult
from ceap_engine.storage.candidates import (
    document_consumed,
    document_version,
    encode_candidate_data,
    failure_reason,
    validate_claim,
    validate_query_limit,
)
from ceap_engine.storage.objects import check_range, validate_bucket, validate_key

__all__ = ["MemoryCandidateStore", "MemoryObjectStore"]


def _as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    # bytes(...) of a bytes object is the object itself (no copy); a bytearray
    # or memoryview is copied, so a caller mutating its buffer later cannot
    # change the stored object.
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(
            f"object data must be bytes, got {type(data).__name__}; "
            "encode text first, or use ceap_engine.ports.write_json for JSON values"
        )
    return bytes(data)


class _Bucket:
    """Objects of one bucket plus their keys kept sorted, so prefix listing is a range scan."""

    __slots__ = ("keys", "objects")

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.keys: list[str] = []


class MemoryObjectStore:
    """An :class:`~ceap_engine.ports.ObjectStore` in a dict, with S3 semantics.

    Buckets come into being on first write; keys are validated like on every
    backend; ``list`` is a range scan over sorted keys (code-point order, which
    is S3's UTF-8 byte order). Safe to share between threads.

    >>> import asyncio
    >>> store = MemoryObjectStore()
    >>> asyncio.run(store.put("ceap-local", "a/b.json", b"{}"))
    >>> asyncio.run(store.get("ceap-local", "a/b.json"))
    b'{}'
    """

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._valid_buckets: set[str] = set()
        # The stores are used from one event loop in the common case, but the
        # local Glue runner and sync stages may reach them from worker threads;
        # an uncontended lock costs far less than the coroutine call around it.
        self._lock = threading.Lock()

    def _check_bucket(self, bucket: str) -> None:
        # The regex costs about as much as the whole get; a bucket name seen once is fine for good.
        if bucket not in self._valid_buckets:
            validate_bucket(bucket)
            self._valid_buckets.add(bucket)

    async def get(self, bucket: str, key: str) -> bytes:
        self._check_bucket(bucket)
        validate_key(key)
        with self._lock:
            found = self._buckets.get(bucket)
            data = found.objects.get(key) if found is not None else None
        if data is None:
            raise ObjectNotFound(bucket, key)
        return data

    async def put(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self._check_bucket(bucket)
        validate_key(key)
        data = _as_bytes(data)
        with self._lock:
            found = self._buckets.get(bucket)
            if found is None:
                found = self._buckets[bucket] = _Bucket()
            if key not in found.objects:
                insort(found.keys, key)
            found.objects[key] = data

    async def list(self, bucket: str, prefix: str = "") -> list[str]:
        self._check_bucket(bucket)
        with self._lock:
            found = self._buckets.get(bucket)
            if found is None:
                return []
            keys = found.keys
            start = bisect_left(keys, prefix)
            end = start
            while end < len(keys) and keys[end].startswith(prefix):
                end += 1
            return keys[start:end]

    async def size(self, bucket: str, key: str) -> int:
        return len(await self.get(bucket, key))

    async def get_range(self, bucket: str, key: str, start: int, end: int) -> bytes:
        check_range(start, end)
        return (await self.get(bucket, key))[start:end]

    async def delete(self, bucket: str, key: str) -> None:
        self._check_bucket(bucket)
        validate_key(key)
        with self._lock:
            found = self._buckets.get(bucket)
            if found is None or found.objects.pop(key, None) is None:
                return
            del found.keys[bisect_left(found.keys, key)]


class _StoredCandidate:
    """A candidate as kept in memory: the query columns, and the document as JSON text.

    A plain slots class, set once in ``__init__`` and never changed (a frozen
    dataclass sets each field through ``object.__setattr__``: a third of a write's
    cost). The version is read from the text when a conditional write first asks
    for it, so a write whose record nobody overwrites never parses its document.
    """

    __slots__ = ("channels", "customer_id", "data_json", "marketplace", "program_id", "rank", "score",
                 "subject_id", "subject_type", "_consumed", "_version")

    def __init__(self, record: CandidateRecord, key: tuple[str, str], data_json: str) -> None:
        score = record.score
        if score is not None:
            score = float(score)
        self.customer_id = record.customer_id
        self.program_id = record.program_id
        self.marketplace = record.marketplace
        self.subject_type = record.subject_type
        self.subject_id = record.subject_id
        self.score: float | None = score
        channels = record.channels
        self.channels: frozenset[str] = channels if type(channels) is frozenset else frozenset(channels)
        self.data_json = data_json
        self._version: int | None = None
        self._consumed: bool | None = record.consumed  # the writer's word, else read from the text when asked
        # Highest score first, no score last, then by key, so that ties come out in
        # the same order as from the SQLite store.
        self.rank: tuple[bool, float, str, str] = (score is None, -score if score is not None else 0.0, key[0], key[1])

    @property
    def version(self) -> int:
        """``metadata.version`` of the stored document (:attr:`CandidateRecord.version` of :meth:`to_record`)."""
        if self._version is None:
            self._version = document_version(self.data_json)
        return self._version

    @property
    def consumed(self) -> bool:
        """:func:`~ceap_engine.storage.candidates.record_consumed` of :meth:`to_record`."""
        if self._consumed is None:
            self._consumed = document_consumed(self.data_json)
        return self._consumed

    def to_record(self) -> CandidateRecord:
        return CandidateRecord(
            customer_id=self.customer_id,
            program_id=self.program_id,
            marketplace=self.marketplace,
            subject_type=self.subject_type,
            subject_id=self.subject_id,
            score=self.score,
            channels=self.channels,
            # Parsed if read (a reader may decode the text into its own types instead: document_text);
            # a new object per record, so a caller that mutates what it read changes nothing stored.
            # No data_json or consumed beside it: a caller may change the document it read and write
            # the record back, and then the changed document is what counts.
            data=EncodedDocument(self.data_json),
        )


def _rank(entry: _StoredCandidate) -> tuple[bool, float, str, str]:
    return entry.rank


class _Program:
    """The keys of one program, and (until the next write) its candidates best first."""

    __slots__ = ("keys", "ranked")

    def __init__(self) -> None:
        self.keys: set[tuple[str, str]] = set()
        # Built by the first query after a write and never mutated, only
        # replaced: a query may walk it outside the lock.
        self.ranked: list[_StoredCandidate] | None = None


class MemoryCandidateStore:
    """A :class:`~ceap_engine.ports.CandidateStore` in a dict, indexed by program.

    Records are checked with :func:`~ceap_engine.ports.encode_candidate_data`
    (the ones that cannot be stored land in ``PutResult.failed``), kept as
    JSON text and parsed afresh on every read, so a caller that mutates a
    record's ``data`` changes neither the store nor other readers. Query
    order: score descending, no score last, ties by (pk, sk). A program's
    ranking is sorted once and reused until its next write, so a run of
    queries (one per channel, say) costs one sort.

    >>> import asyncio
    >>> store = MemoryCandidateStore()
    >>> record = CandidateRecord("c-1", "p-1", "US", "ORDER", "o-1", score=0.9, channels=frozenset({"email"}))
    >>> asyncio.run(store.put_batch([record])).stored
    (('CUSTOMER#c-1#PROGRAM#p-1#MARKETPLACE#US', 'SUBJECT#ORDER#o-1'),)
    """

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], _StoredCandidate] = {}
        self._programs: dict[str, _Program] = {}
        self._claims: dict[str, str] = {}
        self._lock = threading.Lock()

    async def put_batch(
        self,
        records: Sequence[CandidateRecord],
        *,
        expected_versions: Mapping[tuple[str, str], int | None] | None = None,
    ) -> PutResult:
        stored: list[tuple[str, str]] = []
        failed: list[tuple[tuple[str, str], str]] = []
        conflicts: list[tuple[tuple[str, str], int | None]] = []
        expected_versions = expected_versions or {}
        # Checked and built outside the lock; then the whole batch goes in under one lock
        # (one acquisition, not one a record), each condition checked just before its write.
        entries: list[tuple[tuple[str, str], _StoredCandidate]] = []
        for record in records:
            key = (record.pk, record.sk)
            try:
                data_json = encode_candidate_data(record)
            except InputError as error:
                failed.append((key, failure_reason(error)))
                continue
            entries.append((key, _StoredCandidate(record, key, data_json)))
        with self._lock:
            for key, entry in entries:
                if key in expected_versions:
                    # Check and write under one lock: the memory twin of a conditional put.
                    now = self._records.get(key)
                    found = None if now is None else now.version
                    if found != expected_versions[key]:
                        conflicts.append((key, found))
                        continue
                self._remove(key)
                self._records[key] = entry
                program = self._programs.get(entry.program_id)
                if program is None:
                    program = self._programs[entry.program_id] = _Program()
                program.keys.add(key)
                program.ranked = None
                stored.append(key)
        return PutResult(stored=tuple(stored), failed=tuple(failed), conflicts=tuple(conflicts))

    async def get(self, pk: str, sk: str) -> CandidateRecord | None:
        with self._lock:
            entry = self._records.get((pk, sk))
        return entry.to_record() if entry is not None else None

    async def get_many(self, keys: Sequence[tuple[str, str]]) -> list[CandidateRecord | None]:
        """The records at ``keys`` (``None`` where there is none): :meth:`get` for many keys in one call."""
        with self._lock:
            entries = [self._records.get(key) for key in keys]
        return [entry.to_record() if entry is not None else None for entry in entries]

    async def consumed_many(self, keys: Sequence[tuple[str, str]]) -> list[bool]:
        """Whether the candidate at each key is consumed (``False`` where there is none), from the
        stored text's ``attributes.consumed`` alone: :func:`~ceap_engine.storage.candidates.record_consumed`
        of :meth:`get_many`, without building the documents."""
        with self._lock:
            entries = [self._records.get(key) for key in keys]
        return [entry is not None and entry.consumed for entry in entries]

    async def query(
        self,
        program_id: str,
        channel: str | None = None,
        *,
        marketplace: str | None = None,
        limit: int | None = None,
    ) -> list[CandidateRecord]:
        validate_query_limit(limit)
        with self._lock:
            program = self._programs.get(program_id)
            if program is None:
                return []
            ranked = program.ranked
            if ranked is None:
                ranked = program.ranked = sorted((self._records[key] for key in program.keys), key=_rank)
        matches: list[CandidateRecord] = []
        for entry in ranked:
            if (marketplace is None or entry.marketplace == marketplace) and (
                channel is None or channel in entry.channels
            ):
                matches.append(entry.to_record())
                if len(matches) == limit:
                    break
        return matches

    async def delete(self, pk: str, sk: str) -> None:
        with self._lock:
            self._remove((pk, sk))

    async def claim_engagements(self, keys: Sequence[str], execution_id: str) -> dict[str, str]:
        validate_claim(keys, execution_id)
        with self._lock:
            return {key: self._claims.setdefault(key, execution_id) for key in keys}

    def _remove(self, key: tuple[str, str]) -> None:
        """Forget ``key`` and its program index entry; the caller holds the lock."""
        entry = self._records.pop(key, None)
        if entry is None:
            return
        program = self._programs[entry.program_id]
        program.keys.discard(key)
        program.ranked = None
        if not program.keys:
            del self._programs[entry.program_id]

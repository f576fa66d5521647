"""Stage data as bounded JSON Lines parts and a small manifest, over the ObjectStore port.

A stage's output is never one big object: its records go to part objects of at most
:data:`MAX_PART_RECORDS` records and :data:`MAX_PART_BYTES` bytes, written as they fill,
and a manifest lists them with their record counts and sizes. Readers fetch one part at a
time, so memory is bounded by a part, not by the batch::

    writer = PartWriter(store, "b", lambda n: f"executions/e-1/Filter/part-{n:05d}.jsonl")
    await writer.add({"customerId": "C1"})
    parts = await writer.close()          # [PartInfo(key=..., records=1, bytes=18)]
    [r async for r in iter_records(store, "b", parts)]

Records are encoded with the standard library's C encoder and ``allow_nan=False``: a
non-finite number (``Infinity``, ``NaN``) raises :class:`NonFiniteNumber` instead of being
written as invalid JSON. Decoding refuses them too (``parse_constant``), so nothing
non-finite ever enters a stage from a part either.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ceap_engine.errors import CeapError
from ceap_engine.ports import ObjectStore

__all__ = [
    "MANIFEST_KIND",
    "MAX_PART_BYTES",
    "MAX_PART_RECORDS",
    "SCHEMA_VERSION",
    "ManifestError",
    "NonFiniteNumber",
    "PartInfo",
    "PartWriter",
    "SharedBudget",
    "decode_line",
    "encode_record",
    "iter_lines",
    "iter_records",
    "read_manifest",
    "split_lines",
]

#: The manifest format; a reader refuses a manifest of a newer version.
SCHEMA_VERSION = 1
MANIFEST_KIND = "ceap.stage-output"
#: A part holds at most this many records ...
MAX_PART_RECORDS = 10_000
#: ... and at most this many bytes (whichever comes first).
MAX_PART_BYTES = 32 * 1024 * 1024
#: JSON nested deeper than this is refused as a record (AWS stages would hit recursion limits).
MAX_NESTING = 64


class NonFiniteNumber(ValueError):
    """A record holds Infinity or NaN, which JSON cannot carry."""


class ManifestError(CeapError):
    """An object is not a stage manifest this version of ceap can read."""


_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str)


def encode_record(record: Any) -> bytes:
    """One record as a compact JSON line (without the newline).

    >>> encode_record({"a": 1.5})
    b'{"a":1.5}'
    >>> encode_record({"a": float("inf")})
    Traceback (most recent call last):
    ...
    ceap_engine.storage.parts.NonFiniteNumber: the record holds a non-finite number (Infinity or NaN)
    """
    try:
        return _encoder.encode(record).encode("utf-8")
    except ValueError as exc:
        if "Out of range float" in str(exc):
            raise NonFiniteNumber("the record holds a non-finite number (Infinity or NaN)") from None
        raise


def _refuse_constant(name: str) -> Any:
    raise NonFiniteNumber(f"the record holds {name}, which is not a finite number")


_decoder = json.JSONDecoder(parse_constant=_refuse_constant)


def decode_line(line: bytes | str) -> Any:
    """Parse one JSON line; ``Infinity``/``NaN`` raise :class:`NonFiniteNumber`.

    >>> decode_line(b'{"a":[1,2]}')
    {'a': [1, 2]}
    """
    text = line.decode("utf-8") if isinstance(line, (bytes, bytearray)) else line
    return _decoder.decode(text)


def nesting_depth_exceeds(line: bytes | str, limit: int = MAX_NESTING) -> bool:
    """Whether the JSON text opens more than ``limit`` brackets at once (a cheap pre-check
    that keeps a 20,000-deep line from ever reaching the recursive decoder).

    >>> nesting_depth_exceeds("[[[]]]", 2), nesting_depth_exceeds("[[[]]]", 3)
    (True, False)
    """
    # Counted on the bytes as they are: '[' and '{' never occur inside a multi-byte UTF-8 sequence.
    brackets = (b"[", b"{") if isinstance(line, (bytes, bytearray)) else ("[", "{")
    if line.count(brackets[0]) + line.count(brackets[1]) <= limit:  # type: ignore[arg-type]
        return False
    text = line.decode("utf-8", "replace") if isinstance(line, (bytes, bytearray)) else line
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


@dataclass(frozen=True, slots=True)
class PartInfo:
    """One part object: where it is, how many records and bytes it holds."""

    key: str
    records: int
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "records": self.records, "bytes": self.bytes}

    @classmethod
    def from_json(cls, value: Any) -> PartInfo:
        if not isinstance(value, Mapping) or not isinstance(value.get("key"), str):
            raise ManifestError(f"a part entry must be an object with a key, got {value!r:.200}")
        return cls(value["key"], int(value.get("records", 0)), int(value.get("bytes", 0)))


class PartWriter:
    """Buffers JSON lines and writes a part each time one is full (records or bytes).

    ``key_for(n)`` names the n-th part (0, 1, ...). :meth:`close` writes the last one and
    returns every part written; ``always_one`` makes it write an empty part when nothing
    was added (so a stream always names at least one object).
    """

    def __init__(
        self,
        store: ObjectStore,
        bucket: str,
        key_for: Callable[[int], str],
        *,
        max_records: int = MAX_PART_RECORDS,
        max_bytes: int = MAX_PART_BYTES,
        always_one: bool = False,
    ) -> None:
        self.store = store
        self.bucket = bucket
        self.key_for = key_for
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.always_one = always_one
        self.parts: list[PartInfo] = []
        self._lines: list[bytes] = []
        self._size = 0
        self.records = 0

    async def add(self, record: Any) -> None:
        """Encode and buffer one record (:class:`NonFiniteNumber` if it cannot be JSON)."""
        await self.add_line(encode_record(record))

    @property
    def buffered_bytes(self) -> int:
        """Bytes of the part being filled (its lines and their newlines), not yet written."""
        return self._size

    def try_add(self, line: bytes) -> bool:
        """Buffer ``line`` if the part being filled has room, without awaiting; False if it is full.

        The per-record path of every stage: ``if not writer.try_add(line): await writer.add_line(line)``
        costs no coroutine for the lines that fit (all but one a part).
        """
        if self._lines and (len(self._lines) >= self.max_records or self._size + len(line) + 1 > self.max_bytes):
            return False
        self._lines.append(line)
        self._size += len(line) + 1
        self.records += 1
        return True

    async def add_line(self, line: bytes) -> None:
        """Buffer one already encoded JSON line (no newline)."""
        if self._lines and (len(self._lines) >= self.max_records or self._size + len(line) + 1 > self.max_bytes):
            await self.flush()
        self._lines.append(line)
        self._size += len(line) + 1
        self.records += 1

    async def add_lines(self, lines: Iterable[bytes]) -> None:
        """Buffer many encoded lines, in order: as :meth:`add_line` each, in one step when they all fit."""
        if isinstance(lines, list | tuple) and lines:
            size = sum(map(len, lines)) + len(lines)
            if len(self._lines) + len(lines) <= self.max_records and self._size + size <= self.max_bytes:
                self._lines.extend(lines)
                self._size += size
                self.records += len(lines)
                return
        for line in lines:
            if not self.try_add(line):
                await self.add_line(line)

    async def flush(self) -> None:
        """Write the buffered lines as the next part (nothing if the buffer is empty)."""
        if not self._lines:
            return
        # The body ends with a newline: an empty last line joins it in one copy (joining and then
        # adding b"\n" copied the whole part a second time, ~4 ms a 3.5 MB part here).
        self._lines.append(b"")
        body = b"\n".join(self._lines)
        self._lines.pop()
        await self._write(body, len(self._lines))
        self._lines = []
        self._size = 0

    async def _write(self, body: bytes, records: int) -> None:
        key = self.key_for(len(self.parts))
        await self.store.put(self.bucket, key, body, content_type="application/x-ndjson")
        self.parts.append(PartInfo(key, records, len(body)))

    async def close(self) -> list[PartInfo]:
        await self.flush()
        if not self.parts and self.always_one:
            await self._write(b"", 0)
        return self.parts


class SharedBudget:
    """Part writers (one a hash partition, say) that buffer at most ``budget`` bytes together.

    Each writer writes a part whenever it is full on its own; :meth:`trim`, called between
    batches of adds, also writes the fullest buffers once all of them together hold more than
    ``budget``, down to half of it. So the buffers stay within the budget plus one batch,
    however many writers there are (a per-writer share of the budget would not: with many
    partitions each share is too small to flush at all). Parts are written ``concurrency`` at
    a time, each write holding its joined part too.

    >>> import asyncio
    >>> from ceap_engine.storage.memory import MemoryObjectStore
    >>> store = MemoryObjectStore()
    >>> writers = SharedBudget([PartWriter(store, "bkt", lambda n, p=p: f"p{p}-{n}") for p in range(3)], budget=8)
    >>> for p in (0, 1, 0, 2): _ = writers[p].try_add(b"12345")
    >>> asyncio.run(writers.trim()); writers.buffered_bytes <= 4
    True
    >>> [[part.key for part in parts] for parts in asyncio.run(writers.close())]
    [['p0-0'], ['p1-0'], ['p2-0']]
    """

    def __init__(self, writers: Sequence[PartWriter], *, budget: int, concurrency: int = 4) -> None:
        self.writers = list(writers)
        self.budget = budget
        self.concurrency = concurrency

    def __getitem__(self, index: int) -> PartWriter:
        return self.writers[index]

    def __len__(self) -> int:
        return len(self.writers)

    @property
    def buffered_bytes(self) -> int:
        """Bytes the writers hold together, not yet written."""
        return sum(writer.buffered_bytes for writer in self.writers)

    async def trim(self) -> None:
        """Write the fullest buffers if the writers hold more than the budget, until they hold half of it."""
        total = self.buffered_bytes
        if total <= self.budget:
            return
        fullest: list[PartWriter] = []
        for writer in sorted(self.writers, key=lambda w: w.buffered_bytes, reverse=True):
            if total <= self.budget // 2:
                break
            fullest.append(writer)
            total -= writer.buffered_bytes
        await self._each(fullest, PartWriter.flush)

    async def close(self) -> list[list[PartInfo]]:
        """Close every writer (:meth:`PartWriter.close`); the parts of each, in the writers' order."""
        return await self._each(self.writers, PartWriter.close)

    async def _each(self, writers: Sequence[PartWriter], action: Callable[[PartWriter], Any]) -> list[Any]:
        slots = asyncio.Semaphore(self.concurrency)

        async def one(writer: PartWriter) -> Any:
            async with slots:
                return await action(writer)

        return list(await asyncio.gather(*(one(writer) for writer in writers)))


def split_lines(data: bytes) -> list[bytes]:
    """The non-blank lines of a JSON Lines object.

    >>> split_lines(b'{"a":1}\\n\\n \\t\\r\\n{"a":2} \\n')
    [b'{"a":1}', b'{"a":2} ']
    """
    # split(b"\n"), not splitlines(): U+2028 may appear unescaped inside JSON strings. A blank line is
    # empty or ASCII whitespace only (what strip() empties), asked without copying the line as strip() does.
    return [line for line in data.split(b"\n") if line and not line.isspace()]


async def iter_lines(store: ObjectStore, bucket: str, parts: Sequence[PartInfo]) -> AsyncIterator[bytes]:
    """Every record line of ``parts``, one part in memory at a time."""
    for part in parts:
        for line in split_lines(await store.get(bucket, part.key)):
            yield line


async def iter_records(store: ObjectStore, bucket: str, parts: Sequence[PartInfo]) -> AsyncIterator[Any]:
    """Every record of ``parts``, decoded, one part in memory at a time."""
    async for line in iter_lines(store, bucket, parts):
        yield decode_line(line)


def records_of(data: bytes) -> Iterator[Any]:
    """The decoded records of one part object's bytes."""
    for line in split_lines(data):
        yield decode_line(line)


async def read_manifest(store: ObjectStore, bucket: str, key: str) -> dict[str, Any]:
    """Read a stage manifest and check its format; :class:`ManifestError` if it is none.

    The ``parts`` mapping comes back with :class:`PartInfo` values::

        manifest = await read_manifest(store, "b", "executions/e-1/Filter/output.json")
        manifest["parts"]["candidates"][0].records
    """
    try:
        document = json.loads(await store.get(bucket, key))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"s3://{bucket}/{key} is not JSON: {exc}") from None
    return parse_manifest(document, f"s3://{bucket}/{key}")


def parse_manifest(document: Any, where: str = "the manifest") -> dict[str, Any]:
    """Check a manifest document (see :func:`read_manifest`)."""
    if not isinstance(document, Mapping) or document.get("kind") != MANIFEST_KIND:
        raise ManifestError(f"{where} is not a stage manifest (no \"kind\": \"{MANIFEST_KIND}\")")
    version = document.get("schemaVersion")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ManifestError(
            f"{where} has schemaVersion {version!r}; this ceap reads up to {SCHEMA_VERSION}: upgrade ceap"
        )
    parts = document.get("parts")
    if not isinstance(parts, Mapping):
        raise ManifestError(f"{where} has no 'parts' mapping")
    out = dict(document)
    out["parts"] = {
        stream: [PartInfo.from_json(p) for p in entries] for stream, entries in parts.items() if isinstance(entries, list)
    }
    return out


def manifest_document(
    *,
    stage: str,
    execution_id: str,
    header: Mapping[str, Any],
    metrics: Mapping[str, Any],
    parts: Mapping[str, Sequence[PartInfo]],
    part_list: str | None = None,
    reconciliation: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A manifest: format, the stage's header fields and metrics, and its parts per stream.

    >>> manifest_document(stage="Filter", execution_id="e", header={}, metrics={"inputCount": 1},
    ...                   parts={"candidates": [PartInfo("k", 1, 9)]})["counts"]
    {'candidates': 1}
    """
    doc: dict[str, Any] = {
        "schemaVersion": SCHEMA_VERSION,
        "kind": MANIFEST_KIND,
        "stage": stage,
        "executionId": execution_id,
        **dict(header),
        "metrics": dict(metrics),
        "counts": {stream: sum(p.records for p in entries) for stream, entries in parts.items()},
        "parts": {stream: [p.to_json() for p in entries] for stream, entries in parts.items()},
    }
    if part_list is not None:
        doc["partList"] = part_list
    if reconciliation is not None:
        doc["reconciliation"] = dict(reconciliation)
    return doc

"""Ports: the small interfaces between the engine, the stages and storage.

Each port has an in-memory implementation in :mod:`ceap_engine.memory`, an
embedded one in :mod:`adapters.local` and an AWS one in :mod:`adapters.aws`;
one contract test suite (``tests/contract``) runs against all of them.

Object keys follow S3's rules plus the layout contract of the platform:
``executions/{executionId}/{stage}/output.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .errors import InputError, InvalidKey, Problem

__all__ = [
    "CandidateRecord",
    "CandidateStore",
    "ObjectStore",
    "PutResult",
    "encode_candidate_data",
    "execution_key",
    "read_json",
    "validate_bucket",
    "validate_key",
    "validate_query_limit",
    "write_json",
]

MAX_KEY_BYTES = 1024


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe object key, else raise :class:`InvalidKey`.

    Refused: empty keys, keys over 1,024 UTF-8 bytes or not valid UTF-8,
    absolute paths, ``..`` or ``.`` segments, backslashes, empty segments
    (``a//b``, ``a/``) and NUL or other control characters - anything that
    could leave its bucket on a file system or that S3 would store under a
    different name.

    >>> validate_key("executions/e-1/ETL/output.json")
    'executions/e-1/ETL/output.json'
    """
    if not isinstance(key, str) or not key:
        raise InvalidKey("object key must be a non-empty string")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKey(f"object key is not valid UTF-8 (it holds a lone surrogate): {key!r}") from None
    if len(encoded) > MAX_KEY_BYTES:
        raise InvalidKey(f"object key is longer than {MAX_KEY_BYTES} bytes: {key[:60]!r}...")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        raise InvalidKey(f"object key contains a NUL or control character: {key!r}")
    if key.startswith("/") or "\\" in key or (len(key) > 1 and key[1] == ":"):
        raise InvalidKey(f"object key must be relative, without backslashes or drive letters: {key!r}")
    for segment in key.split("/"):
        if segment in ("..", "."):
            raise InvalidKey(f"object key must not contain '.' or '..' segments: {key!r}")
    if "//" in key or key.endswith("/"):
        raise InvalidKey(f"object key must not contain empty segments ('//' or a trailing '/'): {key!r}")
    return key


def validate_bucket(bucket: str) -> str:
    """Return ``bucket`` if it is a valid S3 bucket name (3-63 chars, lowercase)."""
    import re

    if not isinstance(bucket, str) or not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket) or ".." in bucket:
        raise InvalidKey(
            f"invalid bucket name {bucket!r}: use 3-63 lowercase letters, digits, '.' or '-', "
            "starting and ending with a letter or digit"
        )
    return bucket


def execution_key(execution_id: str, stage: str, name: str = "output.json") -> str:
    """The object key of a stage's artefact: ``executions/{id}/{stage}/{name}``."""
    return validate_key(f"executions/{execution_id}/{stage}/{name}")


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


async def read_json(store: ObjectStore, bucket: str, key: str) -> Any:
    """Read and parse a JSON object from ``store``."""
    return json.loads(await store.get(bucket, key))


async def write_json(store: ObjectStore, bucket: str, key: str, value: Any) -> int:
    """Serialise ``value`` as compact UTF-8 JSON at ``key``; return its size in bytes."""
    data = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")
    await store.put(bucket, key, data, content_type="application/json")
    return len(data)


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


@dataclass(frozen=True, slots=True)
class PutResult:
    """What a batch write did: keys stored, and keys that failed with the reason."""

    stored: tuple[tuple[str, str], ...] = ()
    failed: tuple[tuple[tuple[str, str], str], ...] = ()


_CANDIDATE_KEY_FIELDS = ("customer_id", "program_id", "marketplace", "subject_type", "subject_id")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def encode_candidate_data(record: CandidateRecord) -> str:
    """Check that ``record`` can be stored and return its ``data`` as compact JSON.

    Every :class:`CandidateStore` calls this before writing, so all backends
    refuse the same records and report them in :attr:`PutResult.failed` with
    the same reason. Refused: empty or non-string key parts, a score that is
    not a finite number, channels that are not non-empty strings, ``data``
    that is not a JSON object of JSON values (``NaN``, ``datetime``, ``set``
    ...). All problems of the record are collected into one :class:`InputError`;
    backends report ``"; ".join(p.message for p in error.problems)`` as the
    record's failure reason.

    >>> encode_candidate_data(CandidateRecord("c-1", "p-1", "US", "ORDER", "o-1", data={"x": 1}))
    '{"x":1}'
    """
    problems: list[Problem] = []
    for name in _CANDIDATE_KEY_FIELDS:
        value = getattr(record, name)
        if not isinstance(value, str) or not value or not _is_utf8(value):
            problems.append(Problem(f"/{name}", f"{name} must be a non-empty UTF-8 string, got {value!r}"))
    score = record.score
    if score is not None and (
        isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score)
    ):
        problems.append(Problem("/score", f"score must be a finite number or None, got {score!r}"))
    channels = record.channels
    if (
        isinstance(channels, str | bytes)
        or not isinstance(channels, Iterable)
        or not all(isinstance(c, str) and c and _is_utf8(c) for c in channels)
    ):
        problems.append(
            Problem("/channels", f"channels must be a set of non-empty channel names, got {channels!r}")
        )
    text = ""
    if not isinstance(record.data, Mapping):
        problems.append(Problem("/data", f"data must be a JSON object (a mapping), got {type(record.data).__name__}"))
    else:
        try:
            text = json.dumps(dict(record.data), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            problems.append(
                Problem(
                    "/data",
                    f"data is not JSON-serialisable ({exc}); convert it first, e.g. with model_dump(mode='json')",
                )
            )
        else:
            if not _is_utf8(text):
                problems.append(Problem("/data", "data holds a string that is not valid UTF-8 (a lone surrogate)"))
    if problems:
        raise InputError(problems, f"candidate {record.pk} {record.sk}")
    return text


def validate_query_limit(limit: int | None) -> int | None:
    """Return ``limit`` if it is ``None`` or a whole number >= 1, else raise :class:`InputError`.

    >>> validate_query_limit(10)
    10
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError(
            [Problem("/limit", f"limit must be a whole number >= 1, or None for no limit; got {limit!r}")],
            "candidate query",
        )
    return limit


@runtime_checkable
class CandidateStore(Protocol):
    """Candidates keyed by (pk, sk); writes are idempotent upserts."""

    async def put_batch(self, records: Sequence[CandidateRecord]) -> PutResult:
        """Upsert records (the store splits them into batches of 25).

        Every record lands in ``stored`` or in ``failed`` with its reason (see
        :func:`encode_candidate_data`), in input order; a record that fails
        does not stop the others. Of two records with the same key in one
        call, the later wins.
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

"""Rules every CandidateStore applies, so all backends behave alike.

- :func:`encode_candidate_data`: what a store refuses before it writes, including
  DynamoDB's limits (:func:`check_dynamodb_limits`), so a record that passes on
  SQLite or in memory also passes on AWS - one rule, one message, every backend;
- :func:`write_candidates`: the optimistic-concurrency loop over any store (read,
  decide, conditional write, re-read the keys that conflicted, decide again);
- :func:`document_version`: a record's version read from its JSON text, for a store
  that keeps the text (memory) and need not parse the rest;
- :func:`document_consumed` / :func:`record_consumed`: whether a record says its candidate
  was consumed (``data.attributes.consumed`` is ``true``), what ``consumed_many`` answers;
  :func:`written_consumed`: the same for a record being written, from its writer's hint when it has one.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ceap_engine._json import strict_json
from ceap_engine.errors import ConditionFailed, InputError, Problem
from ceap_engine.ports import CandidateRecord, CandidateStore, EncodedDocument, document_text, document_version

__all__ = [
    "MAX_ITEM_BYTES",
    "MAX_PARTITION_KEY_BYTES",
    "MAX_SORT_KEY_BYTES",
    "CandidateWrites",
    "check_dynamodb_limits",
    "document_consumed",
    "document_version",
    "encode_candidate_data",
    "failure_reason",
    "item_size",
    "record_consumed",
    "ranking_key_size",
    "validate_claim",
    "validate_query_limit",
    "write_candidates",
    "written_consumed",
]

MAX_PARTITION_KEY_BYTES = 2048
"""DynamoDB's limit on a partition key value (``pk``)."""
MAX_SORT_KEY_BYTES = 1024
"""DynamoDB's limit on a sort key value (``sk``, and the ranking index key)."""
MAX_ITEM_BYTES = 400_000
"""DynamoDB's limit on an item ("400 KB"), attribute names plus values, read as 400,000 bytes.

AWS's own check lets a little more through (about 409 KB in practice); the decimal
reading is the safe side that AWS, DynamoDB Local and moto all accept."""
# DynamoDB numbers: magnitudes from 1E-130 to below 1E+126 (and zero).
_MIN_NUMBER, _MAX_NUMBER = 1e-130, 1e126
# What the item holds besides the keys and data (names as in adapters/aws/candidates.py).
_ITEM_NAMES = ("pk", "sk", "customerId", "programId", "marketplace", "subjectType", "subjectId", "rank", "data")
_NUMBER_BYTES = 21  # DynamoDB stores a number in at most 21 bytes


_CANDIDATE_KEY_FIELDS = ("customer_id", "program_id", "marketplace", "subject_type", "subject_id")


def _utf8_size(text: str) -> int | None:
    """Bytes of ``text`` in UTF-8, ``None`` if it has none (a lone surrogate)."""
    if text.isascii():  # a flag of the string: no encoding needed
        return len(text)
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None


def _is_utf8(text: str) -> bool:
    return _utf8_size(text) is not None


class _ConsumedAttributes(msgspec.Struct):
    consumed: Any = None


class _Consumable(msgspec.Struct):
    attributes: _ConsumedAttributes | None = None


# Parses a document's "attributes.consumed" and skips the rest (a sixth of a full decode).
_CONSUMABLE = msgspec.json.Decoder(_Consumable)


def record_consumed(record: CandidateRecord | None) -> bool:
    """Whether ``record`` says its candidate was consumed: ``data.attributes.consumed`` is ``true``.

    ``False`` for no record, and for any document without that ``true`` (no attributes, attributes
    that are not an object, ``consumed`` false, missing or not a boolean).

    >>> record_consumed(CandidateRecord("c", "p", "US", "ORDER", "o", data={"attributes": {"consumed": True}}))
    True
    >>> record_consumed(None), record_consumed(CandidateRecord("c", "p", "US", "ORDER", "o", data={"attributes": 1}))
    (False, False)
    """
    if record is None:
        return False
    text = document_text(record)
    if text is not None:
        return document_consumed(text)  # the flag alone, not the whole document
    attributes = record.data.get("attributes") if isinstance(record.data, Mapping) else None
    return isinstance(attributes, Mapping) and attributes.get("consumed") is True


def document_consumed(data_json: str | bytes) -> bool:
    """:func:`record_consumed` of the record whose ``data`` is this JSON object, without building all of it.

    >>> document_consumed('{"attributes":{"orderIds":["o-1"],"consumed":true}}'), document_consumed('{"attributes":[1]}')
    (True, False)
    """
    try:
        attributes = _CONSUMABLE.decode(data_json).attributes
    except msgspec.ValidationError:  # attributes that are not an object: not consumed
        return False
    return attributes is not None and attributes.consumed is True


def written_consumed(record: CandidateRecord, data_json: str) -> bool:
    """:func:`record_consumed` of a record being written as ``data_json`` (its checked text): the
    writer's :attr:`~ceap_engine.ports.CandidateRecord.consumed` when it gave one, else read from the text.

    >>> written_consumed(CandidateRecord("c", "p", "US", "ORDER", "o", consumed=True), "{}")
    True
    >>> written_consumed(CandidateRecord("c", "p", "US", "ORDER", "o"), '{"attributes":{"consumed":true}}')
    True
    """
    consumed = record.consumed
    return document_consumed(data_json) if consumed is None else consumed


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
    text = _plainly_valid_data_json(record)
    if text is not None:
        return text
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
    # Encoded by the writer (see CandidateRecord.data_json), or read back and not changed since.
    given = record.data_json if isinstance(record.data_json, str) else document_text(record)
    text = ""
    if not isinstance(record.data, Mapping):
        problems.append(Problem("/data", f"data must be a JSON object (a mapping), got {type(record.data).__name__}"))
    elif given is not None:
        text = given
        if _utf8_size(text) is None:
            problems.append(Problem("/data", "data holds a string that is not valid UTF-8 (a lone surrogate)"))
    else:
        try:
            text = strict_json(dict(record.data))
        except (TypeError, ValueError, RecursionError) as exc:
            problems.append(
                Problem(
                    "/data",
                    f"data is not JSON-serialisable ({exc}); convert it first, e.g. with model_dump(mode='json')",
                )
            )
        else:
            if not _is_utf8(text):
                problems.append(Problem("/data", "data holds a string that is not valid UTF-8 (a lone surrogate)"))
    if not problems:
        # Every part is valid UTF-8 by now; each size is counted once.
        pk, sk = record.pk, record.sk
        problems.extend(_limit_problems(record, _utf8_size(pk) or 0, _utf8_size(sk) or 0, _utf8_size(text) or 0))
    if problems:
        raise InputError(problems, f"candidate {record.pk} {record.sk}")
    return text


def _plainly_valid_data_json(record: CandidateRecord) -> str | None:
    """``record.data_json`` when the record is plainly storable, else ``None`` (then the full check decides).

    What a Store part writes: ASCII ids, a float score, a frozenset of ASCII channel
    names, the data encoded by its writer, within every limit. For such a record
    the full check of :func:`encode_candidate_data` finds no problem and returns
    ``data_json``; this says so without its UTF-8 size counting and JSON checks,
    applying the same limit rule (:func:`_limit_problems`). Anything it is not sure
    of - a non-ASCII id, an int score, a record over a limit - goes to the full
    check, which alone words the problems.
    """
    text = record.data_json
    if text is None:
        text = document_text(record)  # a record read back and written unchanged: the text it was read as
    if type(text) is not str or not text.isascii():
        return None
    customer, program, marketplace = record.customer_id, record.program_id, record.marketplace
    subject_type, subject_id = record.subject_type, record.subject_id
    for value in (customer, program, marketplace, subject_type, subject_id):
        if type(value) is not str or not value or not value.isascii():
            return None
    score = record.score
    if score is not None and (type(score) is not float or not math.isfinite(score)):
        return None
    channels = record.channels
    if type(channels) is not frozenset:
        return None
    for channel in channels:
        if type(channel) is not str or not channel or not channel.isascii():
            return None
    data = record.data
    if type(data) is not EncodedDocument and not isinstance(data, Mapping):  # an ABC check: ~0.25 us
        return None
    # The key layout of CandidateRecord.pk and .sk, counted without building them (ASCII: a byte a
    # character). DynamoDB's limits as _limit_problems has them, asked only "is every one met?":
    ids_bytes = len(customer) + len(program) + len(marketplace)
    pk_bytes = ids_bytes + _PK_FIXED_BYTES
    sk_bytes = len(subject_type) + len(subject_id) + _SK_FIXED_BYTES
    if 10 + pk_bytes + sk_bytes > MAX_SORT_KEY_BYTES:  # the ranking key; within it, pk and sk are within theirs
        return None
    if score is not None and score != 0 and not _MIN_NUMBER <= abs(score) < _MAX_NUMBER:
        return None
    size = _sized(pk_bytes, sk_bytes, len(text), ids_bytes + len(subject_type) + len(subject_id), score is not None,
                  sum(map(len, channels)) if channels else None)
    return text if size <= MAX_ITEM_BYTES else None


# The characters of CandidateRecord.pk and .sk besides the ids.
_PK_FIXED_BYTES = len(CandidateRecord("c", "p", "m", "t", "s").pk) - 3
_SK_FIXED_BYTES = len(CandidateRecord("c", "p", "m", "t", "s").sk) - 2


def failure_reason(error: InputError) -> str:
    """The reason a store reports in :attr:`PutResult.failed` for a refused record."""
    return "; ".join(p.message for p in error.problems)


def ranking_key_size(record: CandidateRecord) -> int:
    """Bytes of the ranking index key (score, pk, sk) that the DynamoDB adapter writes."""
    return 9 + len(record.pk.encode("utf-8")) + 1 + len(record.sk.encode("utf-8"))


_ITEM_NAMES_BYTES = sum(len(name) for name in _ITEM_NAMES)


def item_size(record: CandidateRecord, data_json: str) -> int:
    """The record's size as DynamoDB counts it (attribute names plus values), in bytes.

    >>> item_size(CandidateRecord("c", "p", "US", "ORDER", "o"), "{}") < 300
    True
    """
    return _item_size(record, len(record.pk.encode("utf-8")), len(record.sk.encode("utf-8")),
                      len(data_json.encode("utf-8")))


def _item_size(record: CandidateRecord, pk_bytes: int, sk_bytes: int, data_bytes: int) -> int:
    """:func:`item_size` from the UTF-8 sizes of the keys and the data, each counted once by the caller."""
    fields = (record.customer_id, record.program_id, record.marketplace, record.subject_type, record.subject_id)
    fields_bytes = len("".join(fields).encode("utf-8"))  # UTF-8 sizes add up over a concatenation
    channels_bytes = sum(len(c.encode("utf-8")) for c in record.channels) if record.channels else None
    return _sized(pk_bytes, sk_bytes, data_bytes, fields_bytes, record.score is not None, channels_bytes)


def _sized(pk_bytes: int, sk_bytes: int, data_bytes: int, fields_bytes: int, scored: bool,
           channels_bytes: int | None) -> int:
    """:func:`_item_size` from the UTF-8 sizes of its parts (``channels_bytes``: ``None`` for no channels)."""
    # The ranking key (9 + pk + 1 + sk bytes) is binary; counted as its base64 text (4/3 of
    # its bytes), as DynamoDB emulators do, so that the rule errs on the safe side of AWS's own.
    size = _ITEM_NAMES_BYTES + -(-(10 + pk_bytes + sk_bytes) // 3) * 4 + pk_bytes + sk_bytes + data_bytes
    size += fields_bytes + len("version") + _NUMBER_BYTES
    if scored:
        size += len("score") + _NUMBER_BYTES
    if channels_bytes is not None:
        size += len("channels") + channels_bytes
    return size


def check_dynamodb_limits(record: CandidateRecord, data_json: str) -> list[Problem]:
    """What about ``record`` DynamoDB would refuse: key and item sizes, the number range of ``score``.

    Every store applies it (see :func:`encode_candidate_data`): a run that stores
    its candidates locally stores them on AWS too.

    >>> [p.path for p in check_dynamodb_limits(CandidateRecord("c", "p", "US", "ORDER", "o" * 2000), "{}")]
    ['/sk']
    """
    pk, sk = record.pk, record.sk
    return _limit_problems(record, len(pk.encode("utf-8")), len(sk.encode("utf-8")), len(data_json.encode("utf-8")))


def _limit_problems(record: CandidateRecord, pk_bytes: int, sk_bytes: int, data_bytes: int) -> list[Problem]:
    """:func:`check_dynamodb_limits` from the UTF-8 sizes of the keys and the data."""
    problems = []
    if pk_bytes > MAX_PARTITION_KEY_BYTES:
        problems.append(Problem(
            "/pk", f"the partition key ({pk_bytes} bytes, {record.pk[:60]!r}...) is over DynamoDB's "
            f"{MAX_PARTITION_KEY_BYTES}-byte partition key limit; shorten the customer, program or marketplace id",
            "LIMIT_EXCEEDED"))
    if sk_bytes > MAX_SORT_KEY_BYTES:
        problems.append(Problem(
            "/sk", f"the sort key ({sk_bytes} bytes, {record.sk[:60]!r}...) is over DynamoDB's "
            f"{MAX_SORT_KEY_BYTES}-byte sort key limit; shorten the subject type or id", "LIMIT_EXCEEDED"))
    if not problems and 10 + pk_bytes + sk_bytes > MAX_SORT_KEY_BYTES:  # ranking_key_size
        problems.append(Problem(
            "/rank", "customer, program, marketplace and subject ids are too long together: the ranking key "
            f"is over DynamoDB's {MAX_SORT_KEY_BYTES}-byte sort key limit; shorten the ids", "LIMIT_EXCEEDED"))
    score = record.score
    if isinstance(score, int | float) and math.isfinite(score) and score != 0 and not (
        _MIN_NUMBER <= abs(score) < _MAX_NUMBER
    ):
        problems.append(Problem(
            "/score", f"score {score!r} is outside DynamoDB's number range (1E-130 to 1E+126 in magnitude)",
            "LIMIT_EXCEEDED"))
    size = _item_size(record, pk_bytes, sk_bytes, data_bytes)
    if size > MAX_ITEM_BYTES:
        problems.append(Problem(
            "/data", f"the candidate is {size} bytes, over DynamoDB's 400 KB item limit ({MAX_ITEM_BYTES} bytes); "
            "store less in data", "LIMIT_EXCEEDED"))
    return problems


def validate_claim(keys: Sequence[str], execution_id: str) -> None:
    """Refuse engagement claims that no store could keep: empty or non-string keys or execution ids.

    >>> validate_claim(["a1b2"], "daily")
    """
    problems = [
        Problem(f"/keys/{n}", f"an engagement key must be a non-empty string of at most 1,000 characters, got {key!r}")
        for n, key in enumerate(keys)
        if not isinstance(key, str) or not key or len(key) > 1000
    ]
    if not isinstance(execution_id, str) or not execution_id:
        problems.append(Problem("/executionId", f"the execution id must be a non-empty string, got {execution_id!r}"))
    if problems:
        raise InputError(problems, "engagement claims")


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


Key = tuple[str, str]
Decide = Callable[[Key, CandidateRecord | None], CandidateRecord | None]


@dataclass
class CandidateWrites:
    """What :func:`write_candidates` did, key by key.

    ``current``: each key's record as the store now holds it (the one written, or the
    stored one when there was nothing to change); ``unchanged``: keys left as they were;
    ``failed``: keys not written, with the reason; ``retryable``: the keys of ``failed``
    that may succeed later (throttled, or still conflicting after every attempt);
    ``conflicts``: how many conditional writes lost a race and were decided again.
    """

    current: dict[Key, CandidateRecord] = field(default_factory=dict)
    unchanged: set[Key] = field(default_factory=set)
    failed: dict[Key, str] = field(default_factory=dict)
    retryable: set[Key] = field(default_factory=set)
    conflicts: int = 0


async def write_candidates(
    store: CandidateStore,
    keys: Sequence[Key],
    decide: Decide,
    *,
    max_attempts: int = 8,
    read_concurrency: int = 16,
) -> CandidateWrites:
    """Read each key, ``decide`` its new record, write it only if nobody wrote in between; repeat on conflict.

    ``decide(key, stored)`` gets the stored record (``None``: none) and returns the
    record to write at that key - with ``metadata.version`` one above the stored one - or ``None``
    when nothing needs to change (then nothing is written, which keeps re-runs from
    churning versions). A key another writer changed between the read and the write
    is read again and decided again, up to ``max_attempts`` times; after that it is
    reported failed and retryable with the :class:`~ceap_engine.errors.ConditionFailed`
    message. No update is lost: every write is conditional on the version read.

    >>> import asyncio
    >>> from ceap_engine.storage.memory import MemoryCandidateStore
    >>> store = MemoryCandidateStore()
    >>> new = CandidateRecord("c", "p", "US", "ORDER", "o", data={"metadata": {"version": 1}})
    >>> done = asyncio.run(write_candidates(store, [new.key], lambda key, old: new if old is None else None))
    >>> done.current[new.key].version, done.unchanged
    (1, set())
    """
    writes = CandidateWrites()
    limit = asyncio.Semaphore(read_concurrency)

    async def read(key: Key) -> CandidateRecord | None:
        async with limit:
            return await store.get(*key)

    get_many = getattr(store, "get_many", None)  # a store that reads many keys in one call (SQLite, memory, DynamoDB)

    async def read_all(keys: list[Key]) -> list[CandidateRecord | None]:
        if get_many is not None:
            return list(await get_many(keys))
        return list(await asyncio.gather(*(read(key) for key in keys)))

    pending = list(dict.fromkeys(keys))
    last_conflict: dict[Key, tuple[int | None, int | None]] = {}
    for _attempt in range(max_attempts):
        if not pending:
            break
        stored = await read_all(pending)
        by_key: dict[Key, CandidateRecord] = {}  # the records to write, by the key they were decided for
        expected: dict[Key, int | None] = {}
        for key, before in zip(pending, stored, strict=True):
            after = decide(key, before)
            if after is None:
                if before is not None:
                    writes.current[key] = before
                writes.unchanged.add(key)
                continue
            by_key[key] = after
            expected[key] = None if before is None else before.version
        pending = []
        if not by_key:
            break
        result = await store.put_batch(list(by_key.values()), expected_versions=expected)
        current, failed = writes.current, writes.failed
        for key in result.stored:
            current[key] = by_key[key]
            if failed:  # an earlier attempt's failure of this key is over
                failed.pop(key, None)
        retryable = set(result.retryable)
        for key, reason in result.failed:
            writes.failed[key] = reason
            if key in retryable:
                writes.retryable.add(key)
        for key, found in result.conflicts:
            writes.conflicts += 1
            last_conflict[key] = (expected[key], found)
            pending.append(key)
    for key in pending:
        want, found = last_conflict[key]
        writes.failed[key] = str(ConditionFailed(key, want, found, max_attempts))
        writes.retryable.add(key)
    return writes

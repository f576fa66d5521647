"""DynamoDB as a :class:`~ceap_engine.ports.CandidateStore`.

Table layout (one table per workflow, made by the stack; :func:`candidate_table_schema`)::

    pk  (S, hash)   CUSTOMER#{customerId}#PROGRAM#{programId}#MARKETPLACE#{marketplace}
    sk  (S, range)  SUBJECT#{subjectType}#{subjectId}
    customerId, programId, marketplace, subjectType, subjectId (S)
    score (N, absent when unscored), channels (SS, absent when none)
    data (S)        the candidate document as JSON text (kept byte-exact; DynamoDB
                    would turn floats into Decimals and drop empty strings in maps)
    rank (B)        score descending, unscored last, then pk, then sk - see rank_key()

Queries go to the global secondary index ``ByProgramRank`` (hash ``programId``,
range ``rank``), so "best candidates of a program" is one ordered Query, not a
scan and a sort. Like every GSI it is eventually consistent: on AWS a write
shows up in queries after a short delay (usually well under a second); ``get``
reads the table itself with ConsistentRead.

    version (N)     metadata.version of data, what conditional writes compare

Engagement claims (``claim_engagements``) are items of the same table with
``pk = ENGAGEMENT#{key}``, ``sk = CLAIM`` and ``executionId``; having no
``programId`` they stay out of the ranking index, so queries never see them.
Each claim is a PutItem with ``attribute_not_exists(pk) OR executionId = :me``.

Unconditional writes are BatchWriteItem calls of at most 25 items. Items that
DynamoDB returns as UnprocessedItems (throttling) are sent again with
exponential backoff; what is still unprocessed after ``max_attempts`` calls is
reported in ``PutResult.failed`` (and ``retryable``), never dropped. Puts
replace whole items, so writing the same batch again leaves the same table:
idempotent.

``get_many`` reads through BatchGetItem: the keys without duplicates (DynamoDB
refuses a repeated key in one call), at most 100 a call, ``read_concurrency``
(8) calls in flight, each with ConsistentRead like ``get``. UnprocessedKeys
(and a call throttled whole) are asked for again after the same doubling
waits, each jittered down by up to half so parallel readers spread out; keys
still unread after ``max_attempts`` calls raise :class:`AwsStorageError`,
never come back as ``None``.
``consumed_many`` makes the same calls with a ProjectionExpression of the keys
and ``data``, and reads ``attributes.consumed`` out of each document.

Conditional writes (``expected_versions``) cannot go through BatchWriteItem,
which takes no conditions: each is a PutItem with ``ConditionExpression``
(``attribute_not_exists(pk)`` or ``#version = :expected``), sent
``write_concurrency`` at a time; ConditionalCheckFailedException becomes a
``PutResult.conflicts`` entry, throttling is retried with the same backoff.
The waits go through the injected clock (``clock.sleep``).

What DynamoDB refuses (key and item sizes, the number range) is checked before
any call by :func:`ceap_engine.storage.candidates.encode_candidate_data`, the
rule every candidate store applies, so the local stores refuse the same records
with the same reason.

Example::

    async with AwsClients(settings) as aws:
        store = DynamoDBCandidateStore(await aws.client("dynamodb"), "ceap-workflow-demo-candidates")
        result = await store.put_batch(records)
"""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

from ceap_engine.errors import InputError
from ceap_engine.ports import CandidateRecord, Clock, EncodedDocument, PutResult
from ceap_engine.storage.candidates import (
    document_consumed,
    document_version,
    encode_candidate_data,
    failure_reason,
    validate_claim,
    validate_query_limit,
)

from .errors import AwsStorageError, aws_errors, error_code
from .schema import RANK_INDEX, candidate_table_schema

__all__ = ["RANK_INDEX", "DynamoDBCandidateStore", "candidate_table_schema", "rank_key"]

BATCH_SIZE = 25  # BatchWriteItem's limit
READ_BATCH_SIZE = 100  # BatchGetItem's limit
_THROTTLED = {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
              "InternalServerError", "ServiceUnavailable"}

Key = tuple[str, str]


def _descending_score_bytes(score: float) -> bytes:
    """8 bytes that sort (as unsigned bytes) from the highest score to the lowest."""
    x = float(score) + 0.0  # -0.0 -> 0.0: equal scores must give equal bytes
    bits = struct.unpack(">Q", struct.pack(">d", x))[0]
    # IEEE 754 bits sort like the numbers once negatives are inverted and positives get the sign bit set.
    ascending = bits ^ 0xFFFF_FFFF_FFFF_FFFF if bits >> 63 else bits | (1 << 63)
    return (0xFFFF_FFFF_FFFF_FFFF - ascending).to_bytes(8, "big")


def rank_key(score: float | None, pk: str, sk: str) -> bytes:
    """The index sort key: best score first, unscored last, ties by (pk, sk) as the other stores order them.

    >>> rank_key(0.9, "a", "b") < rank_key(0.1, "a", "b") < rank_key(None, "a", "b")
    True
    """
    head = b"\x01" + bytes(8) if score is None else b"\x00" + _descending_score_bytes(score)
    # NUL sorts below every other character, so "pk" + NUL + "sk" orders like the tuple (pk, sk).
    return head + pk.encode("utf-8") + b"\x00" + sk.encode("utf-8")


def _item(record: CandidateRecord, data_json: str) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": {"S": record.pk},
        "sk": {"S": record.sk},
        "customerId": {"S": record.customer_id},
        "programId": {"S": record.program_id},
        "marketplace": {"S": record.marketplace},
        "subjectType": {"S": record.subject_type},
        "subjectId": {"S": record.subject_id},
        "rank": {"B": rank_key(record.score, record.pk, record.sk)},
        "data": {"S": data_json},
        "version": {"N": str(document_version(data_json))},  # record.version, read from the text it writes
    }
    if record.score is not None:
        item["score"] = {"N": repr(float(record.score) + 0.0)}
    if record.channels:
        item["channels"] = {"SS": sorted(record.channels)}
    return item


# What consumed_many reads of an item ("data" is a DynamoDB reserved word).
_KEYS_AND_DATA = {"ProjectionExpression": "pk, sk, #data", "ExpressionAttributeNames": {"#data": "data"}}


def _record(item: dict[str, Any]) -> CandidateRecord:
    return CandidateRecord(
        customer_id=item["customerId"]["S"],
        program_id=item["programId"]["S"],
        marketplace=item["marketplace"]["S"],
        subject_type=item["subjectType"]["S"],
        subject_id=item["subjectId"]["S"],
        score=float(item["score"]["N"]) if "score" in item else None,
        channels=frozenset(item.get("channels", {}).get("SS", ())),
        data=EncodedDocument(item["data"]["S"]),  # parsed if read (see document_text)
    )


def backoff_delays(attempts: int, base_seconds: float = 0.05, max_seconds: float = 2.0) -> list[float]:
    """The waits before each resend of unprocessed items: doubling from ``base_seconds``, capped.

    >>> backoff_delays(4, 0.05, 0.3)
    [0.05, 0.1, 0.2, 0.3]
    """
    return [min(base_seconds * 2**n, max_seconds) for n in range(attempts)]


class DynamoDBCandidateStore:
    """A :class:`~ceap_engine.ports.CandidateStore` over an aiobotocore DynamoDB client.

    The waits between resends of throttled writes go through ``clock.sleep``
    (or ``sleep``; inject a fake in tests); ``max_attempts`` bounds the calls
    per chunk of 25 (and per conditional item, and per BatchGetItem chunk of
    100); ``write_concurrency`` is how many conditional PutItem calls are in
    flight at once, ``read_concurrency`` how many BatchGetItem calls.
    ``jitter`` gives a number in [0, 1) per read wait (default: ``random.random``).
    """

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        max_attempts: int = 8,
        base_delay_seconds: float = 0.05,
        max_delay_seconds: float = 2.0,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
        clock: Clock | None = None,
        write_concurrency: int = 16,
        read_concurrency: int = 8,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.client = client
        self.table_name = table_name
        self.max_attempts = max_attempts
        self.delays = backoff_delays(max(max_attempts - 1, 0), base_delay_seconds, max_delay_seconds)
        self.sleep = sleep or (clock.sleep if clock is not None else asyncio.sleep)
        self.write_concurrency = write_concurrency
        self.read_concurrency = read_concurrency
        self.jitter = jitter

    def _where(self) -> str:
        return f"DynamoDB table {self.table_name}"

    async def put_batch(
        self,
        records: Sequence[CandidateRecord],
        *,
        expected_versions: Mapping[Key, int | None] | None = None,
    ) -> PutResult:
        expected_versions = expected_versions or {}
        order: list[tuple[Key, str | None]] = []  # every record's key, with its failure reason if refused
        latest: dict[Key, dict[str, Any]] = {}
        conditional: dict[Key, dict[str, Any]] = {}
        for record in records:
            key = (record.pk, record.sk)
            try:
                data_json = encode_candidate_data(record)
            except InputError as error:
                order.append((key, failure_reason(error)))
                continue
            order.append((key, None))
            target = conditional if key in expected_versions else latest
            # BatchWriteItem refuses two puts of one key in a call; the later record wins, as on every store.
            target.pop(key, None)
            target[key] = _item(record, data_json)

        unwritten: dict[Key, str] = {}
        retryable: set[Key] = set()
        items = list(latest.items())
        for start in range(0, len(items), BATCH_SIZE):
            chunk_failures, chunk_retryable = await self._write_chunk(items[start : start + BATCH_SIZE])
            unwritten.update(chunk_failures)
            retryable |= chunk_retryable
        conflicts: dict[Key, int | None] = {}
        if conditional:
            limit = asyncio.Semaphore(self.write_concurrency)

            async def put(key: Key, item: dict[str, Any]) -> None:
                async with limit:
                    outcome = await self._put_conditional(item, expected_versions[key])
                if outcome == "ok":
                    return
                if isinstance(outcome, tuple):
                    conflicts[key] = outcome[1]
                else:
                    unwritten[key] = outcome
                    retryable.add(key)

            await asyncio.gather(*(put(key, item) for key, item in conditional.items()))

        stored: list[Key] = []
        failed: list[tuple[Key, str]] = []
        for key, reason in order:
            if key in conflicts:
                continue
            reason = reason or unwritten.get(key)
            if reason is None:
                stored.append(key)
            else:
                failed.append((key, reason))
        return PutResult(
            stored=tuple(stored),
            failed=tuple(failed),
            conflicts=tuple(conflicts.items()),
            retryable=tuple(key for key, _ in failed if key in retryable),
        )

    async def _put_conditional(self, item: dict[str, Any], expected: int | None) -> str | tuple[str, int | None]:
        """PutItem if the stored version is ``expected``: ``"ok"``, ``("conflict", found)`` or a failure reason."""
        request: dict[str, Any] = {"TableName": self.table_name, "Item": item,
                                   "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
        if expected is None:
            request["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            # Items written before versions were kept have no version attribute: the first
            # conditional write of each is let through (and gives it one).
            request["ConditionExpression"] = (
                "#version = :expected OR (attribute_exists(pk) AND attribute_not_exists(#version))"
            )
            request["ExpressionAttributeNames"] = {"#version": "version"}
            request["ExpressionAttributeValues"] = {":expected": {"N": str(expected)}}
        for attempt in range(self.max_attempts):
            try:
                await self.client.put_item(**request)
                return "ok"
            except ClientError as exc:
                code = error_code(exc)
                if code == "ConditionalCheckFailedException":
                    old = exc.response.get("Item")
                    found = None
                    if old:
                        found = int(old["version"]["N"]) if "version" in old else 0
                    elif expected is None:
                        found = 0  # it exists (that is why the condition failed); re-read tells the rest
                    return ("conflict", found)
                if code not in _THROTTLED:
                    with aws_errors("DynamoDB PutItem", self._where(), storage=True):
                        raise
            if attempt < len(self.delays):
                await self.sleep(self.delays[attempt])
        return (
            f"DynamoDB throttled the conditional write {self.max_attempts} times; "
            "write it again later or raise the table's capacity"
        )

    async def _write_chunk(self, items: list[tuple[Key, dict[str, Any]]]) -> tuple[dict[Key, str], set[Key]]:
        """Write up to 25 items; return the keys that could not be written, with why, and the retryable ones."""
        by_pk_sk = {key: item for key, item in items}
        pending = [{"PutRequest": {"Item": item}} for _, item in items]
        for attempt in range(self.max_attempts):
            try:
                response = await self.client.batch_write_item(RequestItems={self.table_name: pending})
            except ClientError as exc:
                code = error_code(exc)
                if code == "ValidationException" and len(pending) > 1:
                    # One item DynamoDB refuses fails the whole call: write them one by one to find it.
                    return await self._write_one_by_one(by_pk_sk), set()
                if code not in _THROTTLED:
                    with aws_errors("DynamoDB BatchWriteItem", self._where(), storage=True):
                        raise
                unprocessed = pending
            else:
                unprocessed = response.get("UnprocessedItems", {}).get(self.table_name, [])
            if not unprocessed:
                return {}, set()
            pending = unprocessed
            if attempt < len(self.delays):
                await self.sleep(self.delays[attempt])
        reason = (
            f"DynamoDB left the item unprocessed {self.max_attempts} times (throttled); "
            "write it again later or raise the table's capacity"
        )
        left = {(p["PutRequest"]["Item"]["pk"]["S"], p["PutRequest"]["Item"]["sk"]["S"]): reason for p in pending}
        return left, set(left)

    async def _write_one_by_one(self, items: dict[Key, dict[str, Any]]) -> dict[Key, str]:
        failures: dict[Key, str] = {}
        for key, item in items.items():
            try:
                await self.client.put_item(TableName=self.table_name, Item=item)
            except ClientError as exc:
                if error_code(exc) != "ValidationException":
                    with aws_errors("DynamoDB PutItem", self._where(), storage=True):
                        raise
                failures[key] = f"DynamoDB refused the item: {exc.response.get('Error', {}).get('Message', exc)}"
        return failures

    async def claim_engagements(self, keys: Sequence[str], execution_id: str) -> dict[str, str]:
        validate_claim(keys, execution_id)
        limit = asyncio.Semaphore(self.write_concurrency)
        holders: dict[str, str] = {}

        async def claim(key: str) -> None:
            request = {
                "TableName": self.table_name,
                "Item": {"pk": {"S": f"ENGAGEMENT#{key}"}, "sk": {"S": "CLAIM"}, "executionId": {"S": execution_id}},
                "ConditionExpression": "attribute_not_exists(pk) OR executionId = :me",
                "ExpressionAttributeValues": {":me": {"S": execution_id}},
            }
            async with limit:
                for attempt in range(self.max_attempts):
                    try:
                        await self.client.put_item(**request)
                        holders[key] = execution_id
                        return
                    except ClientError as exc:
                        code = error_code(exc)
                        if code == "ConditionalCheckFailedException":
                            with aws_errors("DynamoDB GetItem", self._where(), storage=True):
                                found = await self.client.get_item(
                                    TableName=self.table_name, ConsistentRead=True,
                                    Key={"pk": {"S": f"ENGAGEMENT#{key}"}, "sk": {"S": "CLAIM"}},
                                )
                            holders[key] = found["Item"]["executionId"]["S"]
                            return
                        if code not in _THROTTLED:
                            with aws_errors("DynamoDB PutItem", self._where(), storage=True):
                                raise
                    if attempt < len(self.delays):
                        await self.sleep(self.delays[attempt])
            raise AwsStorageError(
                f"DynamoDB throttled the engagement claim {key} {self.max_attempts} times on {self._where()}; "
                "claiming is idempotent: retry later or raise the table's capacity",
                code="ThrottlingException", operation="DynamoDB PutItem",
            )

        await asyncio.gather(*(claim(key) for key in dict.fromkeys(keys)))
        return {key: holders[key] for key in keys}

    async def get(self, pk: str, sk: str) -> CandidateRecord | None:
        with aws_errors("DynamoDB GetItem", self._where(), storage=True):
            response = await self.client.get_item(
                TableName=self.table_name, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
            )
        item = response.get("Item")
        return _record(item) if item else None

    async def get_many(self, keys: Sequence[Key]) -> list[CandidateRecord | None]:
        """The records at ``keys`` (``None`` where there is none), in the keys' order: BatchGetItem calls of 100."""
        found = await self._read_items(keys)
        # Decoded per position: a key asked twice gives two records, not one shared (mutable) object.
        return [_record(found[key]) if key in found else None for key in map(tuple, keys)]

    async def consumed_many(self, keys: Sequence[Key]) -> list[bool]:
        """Whether the candidate at each key is consumed (``False`` where there is none): the same
        BatchGetItem calls as :meth:`get_many`, asking for the keys and ``data`` only
        (:func:`~ceap_engine.storage.candidates.record_consumed` of :meth:`get_many`)."""
        found = await self._read_items(keys, projection=_KEYS_AND_DATA)
        return [key in found and document_consumed(found[key]["data"]["S"]) for key in map(tuple, keys)]

    async def _read_items(self, keys: Sequence[Key], projection: dict[str, Any] | None = None) -> dict[Key, dict[str, Any]]:
        """The items at ``keys`` by key (absent keys give none): each key once, ``read_concurrency`` calls at a time."""
        unique = [{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in dict.fromkeys(keys)]
        limit = asyncio.Semaphore(self.read_concurrency)
        found: dict[Key, dict[str, Any]] = {}

        async def read(chunk: list[dict[str, Any]]) -> None:
            async with limit:
                for item in await self._read_chunk(chunk, projection):
                    found[(item["pk"]["S"], item["sk"]["S"])] = item

        reads = [asyncio.ensure_future(read(unique[start : start + READ_BATCH_SIZE]))
                 for start in range(0, len(unique), READ_BATCH_SIZE)]
        try:
            await asyncio.gather(*reads)
        except BaseException:
            for pending in reads:
                pending.cancel()
            await asyncio.gather(*reads, return_exceptions=True)
            raise
        return found

    async def _read_chunk(self, keys: list[dict[str, Any]], projection: dict[str, Any] | None = None
                          ) -> list[dict[str, Any]]:
        """The items of up to 100 distinct keys (absent keys give none), asking again for unprocessed ones.

        ``projection``: the BatchGetItem ``ProjectionExpression`` and its ``ExpressionAttributeNames``.
        """
        items: list[dict[str, Any]] = []
        pending = keys
        for attempt in range(self.max_attempts):
            request = {self.table_name: {"Keys": pending, "ConsistentRead": True, **(projection or {})}}
            try:
                response = await self.client.batch_get_item(RequestItems=request)
            except ClientError as exc:
                if error_code(exc) not in _THROTTLED:
                    with aws_errors("DynamoDB BatchGetItem", self._where(), storage=True):
                        raise
                unprocessed = pending
            else:
                items.extend(response.get("Responses", {}).get(self.table_name, ()))
                unprocessed = response.get("UnprocessedKeys", {}).get(self.table_name, {}).get("Keys", [])
            if not unprocessed:
                return items
            pending = unprocessed
            if attempt < len(self.delays):
                await self.sleep(self.delays[attempt] * (1 - self.jitter() / 2))
        raise AwsStorageError(
            f"DynamoDB BatchGetItem on {self._where()} left {len(pending)} keys unread (throttled) after "
            f"{self.max_attempts} calls; reading is safe to retry: retry later or raise the table's capacity",
            code="ProvisionedThroughputExceededException", operation="DynamoDB BatchGetItem",
        )

    async def query(
        self,
        program_id: str,
        channel: str | None = None,
        *,
        marketplace: str | None = None,
        limit: int | None = None,
    ) -> list[CandidateRecord]:
        validate_query_limit(limit)
        names = {"#program": "programId"}
        values: dict[str, Any] = {":program": {"S": program_id}}
        filters = []
        if marketplace is not None:
            names["#marketplace"] = "marketplace"
            values[":marketplace"] = {"S": marketplace}
            filters.append("#marketplace = :marketplace")
        if channel is not None:
            names["#channels"] = "channels"
            values[":channel"] = {"S": channel}
            filters.append("contains(#channels, :channel)")
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": RANK_INDEX,
            "KeyConditionExpression": "#program = :program",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": True,
        }
        if filters:
            request["FilterExpression"] = " AND ".join(filters)
        elif limit is not None:
            # Without a filter every item read is a match, so DynamoDB may stop at the limit.
            request["Limit"] = limit
        matches: list[CandidateRecord] = []
        with aws_errors("DynamoDB Query", f"{self._where()} (index {RANK_INDEX})", storage=True):
            while True:
                response = await self.client.query(**request)
                for item in response.get("Items", ()):
                    matches.append(_record(item))
                    if limit is not None and len(matches) >= limit:
                        return matches
                last = response.get("LastEvaluatedKey")
                if not last:
                    return matches
                request["ExclusiveStartKey"] = last

    async def delete(self, pk: str, sk: str) -> None:
        with aws_errors("DynamoDB DeleteItem", self._where(), storage=True):
            await self.client.delete_item(TableName=self.table_name, Key={"pk": {"S": pk}, "sk": {"S": sk}})
